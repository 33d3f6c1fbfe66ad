"""Detection helpers with no UI: prompt parsing, filtering, annotation, exports and their parsers.

A detector runs once at a low internal threshold (``RAW_FLOOR``) and its raw
``supervision.Detections`` are kept; everything the user changes afterwards (confidence, IoU,
class filter) is applied here, on the kept detections, without running the model again.
Exports (JSON, CSV, COCO JSON) have parsers so tests can check the round trip.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import supervision as sv

from model_loaders.core.detections import class_names_of
from model_loaders.core.errors import InputError

# Open-vocabulary prompts: more classes than this are cut (with a message), not refused.
MAX_PROMPT_CLASSES = 50
MAX_CLASS_CHARS = 60
# Label placement that avoids overlaps is quadratic in the number of boxes: only for few boxes.
SMART_LABELS_MAX = 40

_SPLIT = re.compile(r"[,;\n.]+")


@dataclass
class Filtered:
    """What the user sees after filtering: detections, counts and notes."""

    detections: sv.Detections
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)


def parse_prompt(text: str, max_classes: int = MAX_PROMPT_CLASSES) -> tuple[list[str], list[str]]:
    """Split an open-vocabulary prompt ("book, mug. laptop") into class names.

    Classes are separated by commas, semicolons, full stops or new lines; blanks and duplicates
    (case-insensitive) are dropped, order is kept.

    Returns:
        (classes, notes): at most ``max_classes`` classes, and notes on anything cut.

    Raises:
        InputError: when no class is left (an empty prompt).
    """
    seen: set[str] = set()
    classes: list[str] = []
    long_cut = False
    for part in _SPLIT.split(text or ""):
        name = " ".join(part.split())
        if not name:
            continue
        if len(name) > MAX_CLASS_CHARS:
            name, long_cut = name[:MAX_CLASS_CHARS].rstrip(), True
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        classes.append(name)
    if not classes:
        raise InputError("Please type the classes to find, separated by commas (for example: book, mug, laptop).")
    notes = []
    if long_cut:
        notes.append(f"Class names longer than {MAX_CLASS_CHARS} characters were shortened.")
    if len(classes) > max_classes:
        notes.append(f"Your prompt has {len(classes)} classes; only the first {max_classes} were used.")
        classes = classes[:max_classes]
    return classes, notes


def parse_class_filter(value: Any, known: list[str] | tuple[str, ...]) -> list[str]:
    """Turn the class filter (a list, or comma-separated text from the API) into known class names.

    An empty filter means "all classes". Matching ignores case.

    Raises:
        InputError: naming (a few of) the classes the model does not know.
    """
    if value is None or value == "":
        return []
    if isinstance(value, str):
        items = [" ".join(p.split()) for p in value.split(",")]
    elif isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            raise InputError("The class filter must be a list of class names.")
        items = [" ".join(v.split()) for v in value]
    else:
        raise InputError("The class filter must be a list of class names.")
    items = [i for i in items if i]
    lookup = {k.lower(): k for k in known}
    unknown = [i for i in items if i.lower() not in lookup]
    if unknown:
        shown = ", ".join(repr(u[:40]) for u in unknown[:5]) + (" …" if len(unknown) > 5 else "")
        raise InputError(f"This model does not know these classes: {shown}. Pick classes from the model's list.")
    out: list[str] = []
    for i in items:
        name = lookup[i.lower()]
        if name not in out:
            out.append(name)
    return out


def filter_detections(raw: sv.Detections, confidence: float, iou: float, classes: list[str] | None = None) -> Filtered:
    """Apply the user's confidence, class filter and per-class NMS to the kept raw detections.

    Order: class filter, then confidence (``score >= confidence``), then NMS at ``iou``
    (a box is dropped when it overlaps a better box of the same class by more than ``iou``;
    ``iou`` 1.0 keeps everything).

    Returns:
        `Filtered` with detections sorted by score and counts per class.
    """
    det = raw
    if len(det) and classes:
        wanted = set(classes)
        det = det[np.array([n in wanted for n in class_names_of(det)], dtype=bool)]
    if len(det):
        det = det[det.confidence >= confidence]
    if len(det) > 1 and iou < 1.0:
        det = det.with_nms(threshold=iou, class_agnostic=False)
    if len(det):
        det = det[np.argsort(-det.confidence, kind="stable")]
    det.metadata.update(raw.metadata)
    counts = Counter(class_names_of(det))
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    notes: list[str] = []
    if len(det) == 0:
        notes.append(
            "No detections at these settings. Try a lower confidence"
            + (", fewer excluded classes" if classes else "")
            + (" or other class names" if raw.metadata.get("open_vocabulary") else "")
            + "."
        )
    return Filtered(det, ordered, notes)


def class_colors(names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """One stable hex colour per class, the same in the image and the chart."""
    palette = sv.ColorPalette.DEFAULT
    return {n: palette.by_idx(i).as_hex() for i, n in enumerate(names)}


def annotate(image: np.ndarray, det: sv.Detections, all_classes: list[str] | tuple[str, ...]) -> np.ndarray:
    """Draw boxes and "class score" labels, one colour per class (by the model's class index)."""
    scene = image.copy()
    if len(det) == 0:
        return scene
    index = {n: i for i, n in enumerate(all_classes)}
    names = class_names_of(det)
    colour_ids = np.array([index.get(n, len(index)) for n in names], dtype=int)
    det = sv.Detections(xyxy=det.xyxy, confidence=det.confidence, class_id=colour_ids)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    scale = max(0.4, max(image.shape[:2]) / 1400)
    labels = [f"{n} {s:.2f}" for n, s in zip(names, det.confidence, strict=True)]
    scene = sv.BoxAnnotator(thickness=thickness).annotate(scene, det)
    return sv.LabelAnnotator(text_scale=scale, text_thickness=thickness, smart_position=len(det) <= SMART_LABELS_MAX).annotate(
        scene, det, labels=labels
    )


def to_records(det: sv.Detections, scale: float = 1.0) -> list[dict[str, Any]]:
    """One dict per detection: class, class_id, score and box (xyxy) in original-image pixels.

    Args:
        det: detections at working size.
        scale: working size / original size (boxes are divided by it).
    """
    names = class_names_of(det)
    out = []
    for i in range(len(det)):
        box = [round(float(v) / scale, 1) for v in det.xyxy[i]]
        out.append(
            {
                "class": names[i],
                "class_id": int(det.class_id[i]) if det.class_id is not None else -1,
                "score": round(float(det.confidence[i]), 4) if det.confidence is not None else None,
                "box": box,
            }
        )
    return out


def to_json(records: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """Detections JSON (also what the ``detect`` API endpoint returns, as a dict)."""
    return json.dumps({**info, "detections": records}, indent=2)


CSV_FIELDS = ("class", "class_id", "score", "x1", "y1", "x2", "y2")


def to_csv(records: list[dict[str, Any]]) -> str:
    """Detections as CSV: class, class_id, score, x1, y1, x2, y2 (original-image pixels)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in records:
        w.writerow([r["class"], r["class_id"], r["score"], *r["box"]])
    return buf.getvalue()


def to_coco(
    records: list[dict[str, Any]], classes: list[str] | tuple[str, ...], width: int, height: int, file_name: str = "image"
) -> str:
    """Detections as a COCO results-style JSON (one image; bbox is [x, y, w, h]; ids start at 1)."""
    anns = []
    for i, r in enumerate(records, start=1):
        x1, y1, x2, y2 = r["box"]
        w, h = round(x2 - x1, 1), round(y2 - y1, 1)
        anns.append(
            {
                "id": i,
                "image_id": 1,
                "category_id": r["class_id"] + 1,
                "bbox": [x1, y1, w, h],
                "area": round(w * h, 1),
                "score": r["score"],
                "iscrowd": 0,
            }
        )
    doc = {
        "images": [{"id": 1, "width": width, "height": height, "file_name": file_name}],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(classes)],
        "annotations": anns,
    }
    return json.dumps(doc, indent=2)


def parse_json(text: str) -> list[dict[str, Any]]:
    """Records from `to_json` output (strict: a malformed file raises, it is never "no objects")."""
    doc = json.loads(text)
    recs = doc["detections"]
    if not isinstance(recs, list):
        raise ValueError("'detections' must be a list")
    return [_check_record(r) for r in recs]


def parse_csv(text: str) -> list[dict[str, Any]]:
    """Records from `to_csv` output."""
    rows = list(csv.DictReader(io.StringIO(text)))
    out = []
    for row in rows:
        out.append(
            _check_record(
                {
                    "class": row["class"],
                    "class_id": int(row["class_id"]),
                    "score": float(row["score"]),
                    "box": [float(row[k]) for k in ("x1", "y1", "x2", "y2")],
                }
            )
        )
    return out


def parse_coco(text: str) -> list[dict[str, Any]]:
    """Records from `to_coco` output (bbox converted back to xyxy)."""
    doc = json.loads(text)
    names = {c["id"]: c["name"] for c in doc["categories"]}
    out = []
    for a in doc["annotations"]:
        x, y, w, h = a["bbox"]
        out.append(
            _check_record(
                {
                    "class": names[a["category_id"]],
                    "class_id": a["category_id"] - 1,
                    "score": a["score"],
                    "box": [x, y, round(x + w, 1), round(y + h, 1)],
                }
            )
        )
    return out


def _check_record(r: dict[str, Any]) -> dict[str, Any]:
    box = [float(v) for v in r["box"]]
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise ValueError(f"bad box {r['box']!r}")
    return {"class": str(r["class"]), "class_id": int(r["class_id"]), "score": float(r["score"]), "box": box}
