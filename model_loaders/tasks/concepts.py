"""Segment by words: every instance of named concepts (and/or exemplar boxes) as masks (SAM 3). Gradio-free.

The same model call as Detect with SAM 3, plus exemplar boxes (include or exclude), returned as
instances: concept, score, box and COCO RLE mask at the original image's size
(`segment_concepts`, the API). The Segment tab's session side (`find`, then re-filter, switch
off, keep, or refine one instance with clicks) works on ``segment_session.Instances``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from model_loaders.core.detections import class_names_of
from model_loaders.core.errors import InputError
from model_loaders.core.results import Timings
from model_loaders.core.validate import clean_text, finite_number
from model_loaders.tasks import segment_session as ss
from model_loaders.tasks.base import checked_spec, image_of, model_for
from model_loaders.tasks.detect import MAX_PROMPT_CHARS, parse_prompt
from model_loaders.tasks.detect_export import to_records

MAX_BOXES = 16
DEFAULT_MODEL = "sam3"


def _boxes(value: Any, scale: float, size: tuple[int, int]) -> list[tuple[float, float, float, float, int]]:
    """Exemplar boxes [[x1, y1, x2, y2] or [x1, y1, x2, y2, 1|0], ...] in original pixels -> working pixels."""
    if value in (None, "", []):
        return []
    if not isinstance(value, list) or len(value) > MAX_BOXES:
        raise InputError(f"Boxes: a list of at most {MAX_BOXES} [x1, y1, x2, y2] (optionally a 5th value: 1 include, 0 exclude).")
    w, h = size
    out = []
    for item in value:
        if not isinstance(item, list) or len(item) not in (4, 5):
            raise InputError("Each box is [x1, y1, x2, y2] or [x1, y1, x2, y2, 1|0] in the image's pixels.")
        x1, y1, x2, y2 = (finite_number(v, "A box coordinate", -1e9, 1e9) for v in item[:4])
        label = int(item[4]) if len(item) == 5 else 1
        x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
        if x1 < 0 or y1 < 0 or x2 > w or y2 > h or x2 - x1 < 1 or y2 - y1 < 1 or label not in (0, 1):
            raise InputError(f"A box lies outside the image ({w}×{h}) or is empty.")
        out.append((x1 * scale, y1 * scale, x2 * scale, y2 * scale, label))
    return out


def segment_concepts(ctx: Any, image: Any, concepts: Any, boxes: Any = None, threshold: Any = None,
                     model: Any = DEFAULT_MODEL) -> dict[str, Any]:  # fmt: skip
    """Every instance of each concept (comma-separated) and/or like the exemplar boxes.

    Raises:
        InputError: no concept and no box, punctuation only, a box outside the image, a bad threshold.
    """
    spec = checked_spec(ctx, model, "detect", "SAM 3")
    if not (spec.open_vocabulary and spec.accepts("box")):
        raise InputError(f"{spec.name} cannot segment by words: use sam3.")
    decoded = image_of(ctx, image)
    text = clean_text(concepts if isinstance(concepts, str) else ", ".join(map(str, concepts or [])),
                      "The concepts", MAX_PROMPT_CHARS)  # fmt: skip
    exemplars = _boxes(boxes, decoded.scale, decoded.original_size)
    classes, notes = parse_prompt(text) if text or not exemplars else ([], [])
    floor = spec.thresholds.confidence if spec.thresholds else 0.5
    floor = floor if threshold in (None, "") else finite_number(threshold, "The threshold", 0.0, 1.0)
    timings = Timings()
    with model_for(ctx, spec, "detect", timings) as segmenter:
        found = segmenter.detect(decoded.array, timings, classes, boxes=exemplars)
    kept = found[found.confidence >= floor] if len(found) else found
    if not len(kept):
        notes.append("No instance found at this threshold" + (": try a lower one." if len(found) else "."))
    w, h = decoded.original_size
    return {"model": spec.key, "image": {"width": w, "height": h}, "concepts": classes, "threshold": floor,
            "count": len(kept), "notes": list(decoded.notes) + notes, "timings": timings.as_dict(),
            "instances": to_records(kept, decoded.scale, decoded.original_size)}  # fmt: skip


# --- the Segment tab's session: find by words, re-filter, toggle, keep, refine --------------------


def find(ctx: Any, session: ss.SegmentSession, concepts: Any, use_box: bool = False, include: bool = True,
         model: Any = DEFAULT_MODEL) -> ss.SegmentSession:  # fmt: skip
    """Every instance of the concepts (and/or like the box drawn in Box mode) on the session's image.

    The instances are shown beside the kept objects; the image's and each concept's features stay
    in the model, so another prompt on the same image runs only the decoder.

    Raises:
        InputError: no image, no concept and no box, punctuation only, a model that cannot do it.
    """
    spec = checked_spec(ctx, model, "detect", "SAM 3")
    if not (spec.open_vocabulary and spec.accepts("box")):
        raise InputError(f"{spec.name} cannot segment by words: use sam3.")
    if session.image is None:
        raise InputError("Upload or pick an image first.")
    text = clean_text(concepts if isinstance(concepts, str) else "", "The concepts", MAX_PROMPT_CHARS)
    box = session.state.prompts.box if use_box else None
    if use_box and box is None:
        raise InputError("Draw the example box first: Box mode, then two clicks on opposite corners.")
    exemplars = [(*box, 1 if include else 0)] if box is not None else []
    classes, notes = parse_prompt(text) if text or not exemplars else ([], [])
    timings = Timings()
    with model_for(ctx, spec, "detect", timings) as segmenter:
        found = segmenter.detect(session.image.array, timings, classes, boxes=exemplars)
    if found.mask is None:
        raise InputError(f"{spec.name} gives boxes, not masks: use sam3.")
    threshold = spec.thresholds.confidence if spec.thresholds else 0.5
    names = tuple(class_names_of(found))
    session.instances = ss.Instances.of("words", spec.key, found.mask, found.xyxy, found.confidence, names,
                                        threshold, timings=timings, notes=tuple(notes))  # fmt: skip
    if box is not None:  # the box was the example: the SAM 2.1 candidate it made goes
        session.commit(replace(session.state, prompts=ss.Prompts()), None)
    return session


def show_everything(session: ss.SegmentSession, result: Any) -> ss.SegmentSession:
    """Show segment-everything's masks as instances (each can be kept with a click on it)."""
    import supervision as sv

    boxes = sv.mask_to_xyxy(result.masks).astype(np.float32) if len(result.masks) else np.zeros((0, 4), np.float32)
    session.instances = ss.Instances.of("everything", result.model, result.masks, boxes, result.scores,
                                        ("object",) * len(result.masks), 0.0, timings=result.timings,
                                        notes=(f"{result.grid}×{result.grid} grid of points",))  # fmt: skip
    return session


def _instances(session: ss.SegmentSession) -> ss.Instances:
    if session.instances is None:
        raise InputError("Find something first: type what to find and press Find.")
    return session.instances


def set_threshold(session: ss.SegmentSession, threshold: Any) -> ss.SegmentSession:
    """Show only instances scoring at least ``threshold`` (no model run)."""
    found = _instances(session)
    session.instances = replace(found, threshold=finite_number(threshold, "The threshold", 0.0, 1.0))
    return session


def set_shown(session: ss.SegmentSession, labels: Any) -> ss.SegmentSession:
    """Switch instances on or off by their labels ('#3 book 0.91'); the others above the threshold stay."""
    found = _instances(session)
    wanted = set(labels or []) if isinstance(labels, list) else set()
    hidden = {i for i in found.above if found.label(i) not in wanted}
    session.instances = replace(found, hidden=frozenset(hidden | (found.hidden - set(found.above))))
    return session


def keep(session: ss.SegmentSession, indices: list[int] | None = None) -> ss.SegmentSession:
    """Keep the shown instances (or ``indices``) as objects (undoable); the rest stay shown (the find
    ends when nothing at or above the threshold is left)."""
    found = _instances(session)
    chosen = found.shown if indices is None else indices
    if not chosen:
        raise InputError("No instance is shown: lower the threshold or switch one on.")
    objects = (*session.state.objects, *(found.as_object(i) for i in chosen))
    if len(objects) > ss.MAX_OBJECTS:
        raise InputError(f"Too many objects (max {ss.MAX_OBJECTS}): keep fewer instances.")
    session.commit(replace(session.state, objects=objects), session.prediction)
    rest = frozenset(found.hidden | set(chosen))
    session.instances = replace(found, hidden=rest) if set(found.above) - rest else None
    return session


def instance_at(session: ss.SegmentSession, x: float, y: float) -> int | None:
    """The smallest shown instance whose mask covers working pixel (x, y), or ``None``."""
    found = session.instances
    if found is None:
        return None
    h, w = found.packed.shape[1], found.width
    col, row = int(min(max(x, 0), w - 1)), int(min(max(y, 0), h - 1))
    under = [i for i in found.shown if found.packed[i, row, col // 8] & (0x80 >> (col % 8))]  # the bit of (row, col)
    return min(under, key=lambda i: int(np.unpackbits(found.packed[i]).sum())) if under else None


def refine(ctx: Any, session: ss.SegmentSession, index: Any, model: str) -> ss.SegmentSession:
    """Refine one instance with clicks: its box prompts ``model`` (SAM 2.1); the other shown ones are kept.

    Later clicks add points to that box; *New object* keeps the result. Undo brings nothing back
    from the instances (they are kept as objects first).
    """
    found = _instances(session)
    i = int(finite_number(index, "The instance", 0, len(found.scores) - 1))
    if i not in found.shown:
        raise InputError("That instance is not shown: pick one from the list.")
    others = tuple(found.as_object(j) for j in found.shown if j != i)
    if len(session.state.objects) + len(others) >= ss.MAX_OBJECTS:
        raise InputError(f"Too many objects (max {ss.MAX_OBJECTS}).")
    box = tuple(float(v) for v in found.boxes[i])
    snapshot = ss.Snapshot(ss.Prompts(box=box), (*session.state.objects, *others))  # type: ignore[arg-type]
    ss.apply(ctx, session, model, snapshot)  # nothing changes if the decode fails
    session.instances = None
    return session
