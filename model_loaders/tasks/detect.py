"""The ``detect`` task: run a detector once, then re-filter its boxes without running it again.

A scored detector keeps every box above a low floor (``RAW_FLOOR``); the confidence, IoU and
class filter are applied by `refilter` on the kept boxes, so sliders are instant. Open-vocabulary
detectors and VLMs are told what to find in words (`parse_prompt`); VLM boxes carry no score.
`detections` gives the filtered boxes at the model's default thresholds (from its spec): the
same model with the same settings gives the same boxes in Detect, Compare and Workflow.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import supervision as sv

from model_loaders.core.detections import COCO_CLASSES, class_names_of
from model_loaders.core.errors import InputError
from model_loaders.core.images import DecodedImage
from model_loaders.core.results import Timings
from model_loaders.core.specs import ModelSpec
from model_loaders.tasks.base import checked_spec, image_of, model_for, run_batched

# Open-vocabulary prompts: more classes than this are cut (with a message), not refused.
MAX_PROMPT_CLASSES = 50
MAX_CLASS_CHARS = 60
MAX_PROMPT_CHARS = 10_000

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
        raise InputError("Type the classes to find, separated by commas (for example: book, mug, laptop).")
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


def refilter(raw: sv.Detections, confidence: float, iou: float, classes: list[str] | None = None) -> Filtered:
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
    if len(det) and det.confidence is not None:  # VLM boxes have no score: no threshold applies
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


def detect_spec(ctx: Any, model: Any, what: str = "") -> ModelSpec:
    """The spec of a model that can detect and run here (checked before anything loads)."""
    return checked_spec(ctx, model, "detect", what or "one of the Detect tab's models")


def known_classes(spec: ModelSpec) -> tuple[str, ...]:
    """The classes a closed-set detector can filter by (empty for open-vocabulary models)."""
    return () if spec.open_vocabulary else COCO_CLASSES


@dataclass
class DetectRun:
    """One model run kept per session: raw detections and what re-filtering and exports need.

    Attributes:
        spec: the model.
        detections: raw ``Detections`` at working size (scored: every box above the floor).
        image: the working image the boxes refer to.
        scale: working size / original size.
        original_size: (width, height) of the upload.
        classes: what the model looked for (open vocabulary) or can report (closed set).
        timings: the run's stage times.
        notes: what the user should know (downscaled, classes cut, a parse failure).
    """

    spec: ModelSpec
    detections: Any
    image: np.ndarray
    scale: float
    original_size: tuple[int, int]
    classes: tuple[str, ...]
    timings: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def scored(self) -> bool:
        """True when the boxes carry a confidence (thresholds apply)."""
        return self.detections.confidence is not None or self.spec.scores_boxes


def run(ctx: Any, image: Any, model: Any, prompt: Any = None, timings: Timings | None = None) -> DetectRun:
    """Run a detector once on an image and keep its raw detections.

    Args:
        ctx: the app context.
        image: a request value (through the upload gate) or a decoded image.
        model: the model's registry key.
        prompt: for open-vocabulary models and VLMs, the classes to find as text
            ("book, mug") or a list; ignored by closed-set detectors.
        timings: filled with the run's stage times.

    Raises:
        InputError / ModelUnavailable: with a message for the user, before the model runs.
    """
    from model_loaders.core.validate import clean_text

    spec = detect_spec(ctx, model)
    notes: list[str] = []
    wanted: list[str] | None = None
    if spec.open_vocabulary:
        if isinstance(prompt, (list, tuple)):
            prompt = ", ".join(str(p) for p in prompt)
        wanted, notes = parse_prompt(clean_text(prompt, "The classes to find", MAX_PROMPT_CHARS))
    timings = timings if timings is not None else Timings()
    with timings.stage("preprocess"):
        decoded: DecodedImage = image_of(ctx, image)
    notes = list(decoded.notes) + notes
    with model_for(ctx, spec, "detect", timings) as detector:
        raw = run_batched(ctx, spec.key, detector, decoded.array, timings,
                          lambda: detector.detect(decoded.array, timings, wanted))  # fmt: skip
        reported = tuple(getattr(detector, "class_names", ()) or ())
    dropped = raw.metadata.get("dropped_classes") or []
    if dropped:
        notes.append(f"These classes did not fit in the model's text limit and were not searched: {', '.join(dropped)}.")
    if raw.metadata.get("parse_error"):
        notes.append(f"{spec.name}'s boxes could not be read ({raw.metadata['parse_error']}).")
    raw.metadata.update(model=spec.key, timings=timings.as_dict())
    classes = tuple(wanted) if wanted is not None else (reported or known_classes(spec))
    return DetectRun(spec, raw, decoded.array, decoded.scale, decoded.original_size, classes, timings.as_dict(), notes)


def filtered(run_: DetectRun, confidence: float | None = None, iou: float | None = None,
             class_filter: Any = None) -> Filtered:  # fmt: skip
    """The run's boxes at the given thresholds (the model's defaults when not given) and class filter."""
    defaults = run_.spec.thresholds
    conf = confidence if confidence is not None else (defaults.confidence if defaults else 0.0)
    nms = iou if iou is not None else (defaults.iou if defaults else 1.0)
    keep = parse_class_filter(class_filter, run_.classes) if class_filter not in (None, "", []) else None
    return refilter(run_.detections, conf, nms, keep or None)


def detections(ctx: Any, image: Any, model: Any, classes: Sequence[str] = (), confidence: float | None = None,
               iou: float | None = None, timings: Timings | None = None) -> Any:  # fmt: skip
    """Filtered boxes of any detecting model on an image: the same result everywhere.

    ``classes`` are what to find for open-vocabulary models and VLMs, and a class filter for
    closed-set detectors; thresholds default to the model's own (its spec).
    """
    spec = detect_spec(ctx, model, "a model that can detect")
    timings = timings if timings is not None else Timings()
    kept = run(ctx, image, spec.key, list(classes) if spec.open_vocabulary else None, timings)
    with timings.stage("postprocess"):
        det = filtered(kept, confidence, iou, None if spec.open_vocabulary else list(classes)).detections
    det.metadata.update(model=spec.key, timings=timings.as_dict())
    return det


def summary(run_: DetectRun, shown: Filtered, confidence: float, iou: float, class_filter: list[str]) -> dict[str, Any]:
    """The JSON of one filtering of a run (what the ``detect`` endpoint returns, and the JSON download)."""
    from model_loaders.tasks.detect_export import to_records

    w, h = run_.original_size
    return {
        "model": run_.spec.key,
        "weights": run_.timings.get("weights", ""),
        "image": {"width": w, "height": h},
        "confidence": confidence,
        "iou": iou,
        "class_filter": class_filter,
        "classes": list(run_.classes) if run_.spec.open_vocabulary else None,
        "count": len(shown.detections),
        "counts": shown.counts,
        "timings": run_.timings,
        "notes": run_.notes + shown.notes,
        "detections": to_records(shown.detections, run_.scale, run_.original_size),
    }


def write_exports(ctx: Any, run_: DetectRun, info: dict[str, Any]) -> list[str]:
    """detections.json, detections.csv and detections_coco.json (original-image pixels); their paths."""
    from model_loaders.tasks import detect_export as dx

    folder = ctx.outputs.new_dir("detect")
    w, h = run_.original_size
    records = info["detections"]
    files = {
        "detections.json": dx.to_json(records, {k: v for k, v in info.items() if k != "detections"}),
        "detections.csv": dx.to_csv(records),
        "detections_coco.json": dx.to_coco(records, run_.classes, w, h),
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return [str(folder / n) for n in files]
