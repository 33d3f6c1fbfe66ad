"""Segment by words: every instance of named concepts (and/or exemplar boxes) as masks (SAM 3). Gradio-free.

The same model call as Detect with SAM 3, plus exemplar boxes (include or exclude), returned as
instances: concept, score, box and COCO RLE mask at the original image's size.
"""

from __future__ import annotations

from typing import Any

from model_loaders.core.errors import InputError
from model_loaders.core.results import Timings
from model_loaders.core.validate import clean_text, finite_number
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
