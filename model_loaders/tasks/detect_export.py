"""Detections as files people download: JSON, CSV and COCO JSON, with parsers for the round trip.

Boxes are written in original-image pixels (working-size boxes divided by the image's scale).
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np
import supervision as sv

from model_loaders.core.detections import class_names_of


def to_records(det: sv.Detections, scale: float = 1.0, size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """One dict per detection: class, class_id, score and box (xyxy) in original-image pixels,
    and for models that give masks (SAM 3) the mask as COCO RLE at the original size.

    Args:
        det: detections at working size.
        scale: working size / original size (boxes are divided by it).
        size: (width, height) of the original image (masks are resized to it).
    """
    from model_loaders.tasks.segment import resize_mask, rle_encode

    names = class_names_of(det)
    out = []
    for i in range(len(det)):
        box = [round(float(v) / scale, 1) for v in det.xyxy[i]]
        record: dict[str, Any] = {
            "class": names[i],
            "class_id": int(det.class_id[i]) if det.class_id is not None else -1,
            "score": round(float(det.confidence[i]), 4) if det.confidence is not None else None,
            "box": box,
        }
        if det.mask is not None:
            mask = resize_mask(det.mask[i], size) if size is not None else np.asarray(det.mask[i], dtype=bool)
            record["segmentation"] = rle_encode(mask)
            record["mask_area"] = int(mask.sum())
        out.append(record)
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
                "area": r.get("mask_area", round(w * h, 1)),
                "score": r["score"],
                "iscrowd": 0,
                **({"segmentation": r["segmentation"]} if "segmentation" in r else {}),
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
