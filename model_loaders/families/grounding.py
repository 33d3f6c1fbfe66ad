"""Parse boxes out of VLM answers into ``supervision.Detections`` (no UI here).

Each VLM family writes boxes its own way:

- Florence-2: ``post_process_generation`` dicts (``{"<OD>": {"bboxes": ..., "labels": ...}}``),
  parsed with ``sv.Detections.from_vlm``.
- Qwen2.5-VL: JSON ``[{"bbox_2d": [x1, y1, x2, y2], "label": ...}]`` in absolute pixels of the
  *resized model input*, often inside a ```json fence; Qwen3-VL uses the same JSON on a 0..1000 grid.
- PaliGemma: ``<locY1><locX1><locY2><locX2> label`` with 4-digit bins on a 0..1023 grid,
  several objects separated by `` ; ``.
- Gemini: JSON ``[{"box_2d": [y1, x1, y2, x2], "label": ...}]`` on a 0..1000 grid.

The rule that matters: an answer that *tries* to give boxes but cannot be read is a parse
failure (``Grounding.error``), never an empty detection list that would read as "no objects".
An answer with no box syntax at all has ``detections is None`` and no error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv

from model_loaders.core.jsontext import MAX_JSON_DEPTH, json_depth

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_PALI_BOX = re.compile(r"<loc(\d{4})><loc(\d{4})><loc(\d{4})><loc(\d{4})>\s*([^<;]*)")
_PALI_LOC = re.compile(r"<loc\d{4}>")
_FLORENCE_BOX_TASKS = (
    "<OD>",
    "<DENSE_REGION_CAPTION>",
    "<REGION_PROPOSAL>",
    "<CAPTION_TO_PHRASE_GROUNDING>",
    "<OPEN_VOCABULARY_DETECTION>",
    "<OCR_WITH_REGION>",
)


@dataclass
class Grounding:
    """Boxes parsed from an answer.

    Attributes:
        detections: the boxes (possibly empty when the model said so explicitly), or ``None``
            when the answer contains no box syntax.
        error: why parsing failed, when the answer has box syntax that could not be read.
    """

    detections: sv.Detections | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when parsing did not fail."""
        return self.error is None


def _detections(xyxy: Any, labels: list[str], source: str) -> sv.Detections:
    boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    names = np.array([str(x) for x in labels], dtype=object)
    det = sv.Detections(
        xyxy=boxes,
        class_id=np.arange(len(boxes), dtype=int),
        data={"class_name": names} if len(boxes) else {"class_name": np.array([], dtype=object)},
    )
    det.metadata["source"] = source
    return det


def _check_wh(resolution_wh: tuple[int, int]) -> tuple[int, int]:
    w, h = int(resolution_wh[0]), int(resolution_wh[1])
    if w <= 0 or h <= 0:
        raise ValueError(f"resolution must be positive, got {resolution_wh}")
    return w, h


def parse_florence(result: dict[str, Any], resolution_wh: tuple[int, int]) -> Grounding:
    """Boxes from a Florence-2 ``post_process_generation`` dict.

    Tasks without boxes (captions, OCR, region-to-text) give ``detections=None``.
    """
    if not isinstance(result, dict) or len(result) != 1:
        return Grounding(error="Florence-2 result is not a single-task dict.")
    task = next(iter(result))
    if task not in _FLORENCE_BOX_TASKS:
        return Grounding()
    try:
        det = sv.Detections.from_vlm(sv.VLM.FLORENCE_2, result, resolution_wh=_check_wh(resolution_wh))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        return Grounding(error=f"Could not read Florence-2 boxes: {exc}")
    names = det.data.get("class_name")
    labels = [str(x) for x in names] if names is not None else [""] * len(det)
    out = _detections(det.xyxy, labels, "florence2")
    return Grounding(out)


def extract_json_text(text: str) -> str | None:
    """The JSON part of a model answer: inside a code fence, else from the first ``[``/``{``.

    Returns ``None`` when the text has no JSON-looking part.
    """
    fence = _FENCE.search(text)
    if fence:
        return fence.group(1).strip()
    # An unterminated fence (generation cut off) still holds the JSON after it.
    if "```" in text:
        text = re.sub(r"^.*?```(?:json|JSON)?", "", text, count=1, flags=re.DOTALL)
    starts = [i for i in (text.find("["), text.find("{")) if i != -1]
    if not starts:
        return None
    return text[min(starts) :].strip()


def _load_json_prefix(snippet: str) -> Any:
    """Parse JSON at the start of ``snippet``, ignoring prose after it (nesting capped)."""
    if json_depth(snippet, stop_at=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise json.JSONDecodeError(f"nested deeper than {MAX_JSON_DEPTH} levels", snippet, 0)
    obj, _ = json.JSONDecoder().raw_decode(snippet)
    return obj


def _box_items(text: str, key: str, family: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The list of box dicts in a JSON answer, or an error when the boxes cannot be read."""
    if key not in text:
        return None, None
    snippet = extract_json_text(text)
    if snippet is None:
        return None, f"The {family} answer mentions {key} but holds no JSON."
    try:
        data = _load_json_prefix(snippet)
    except json.JSONDecodeError as exc:
        return None, f"Could not parse the {family} boxes as JSON ({exc.msg} at char {exc.pos})."
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return None, f"The {family} boxes are not a JSON list."
    return data, None


def _numbers(value: Any) -> list[float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value):
        return None
    return [float(v) for v in value]


def parse_qwen(text: str, input_wh: tuple[int, int], resolution_wh: tuple[int, int]) -> Grounding:
    """Boxes from a Qwen-VL answer (JSON ``bbox_2d``, with or without a code fence).

    Args:
        text: the raw answer.
        input_wh: the coordinate space of ``bbox_2d``: the resized model input in pixels
            for Qwen2.5-VL, ``(1000, 1000)`` for Qwen3-VL.
        resolution_wh: the image size to map boxes to.
    """
    items, err = _box_items(text, "bbox_2d", "Qwen")
    if err or items is None:
        return Grounding(error=err)
    in_w, in_h = _check_wh(input_wh)
    out_w, out_h = _check_wh(resolution_wh)
    boxes, labels = [], []
    for i, item in enumerate(items):
        box = _numbers(item.get("bbox_2d")) if isinstance(item, dict) else None
        if box is None:
            return Grounding(error=f"Qwen box {i + 1} is not four numbers: {str(item)[:80]}")
        x1, y1, x2, y2 = box
        boxes.append([x1 / in_w * out_w, y1 / in_h * out_h, x2 / in_w * out_w, y2 / in_h * out_h])
        labels.append(str(item.get("label", "")))
    return Grounding(_detections(boxes, labels, "qwen"))


def parse_gemini(text: str, resolution_wh: tuple[int, int]) -> Grounding:
    """Boxes from a Gemini answer: ``box_2d`` = [y1, x1, y2, x2] on a 0..1000 grid."""
    items, err = _box_items(text, "box_2d", "Gemini")
    if err or items is None:
        return Grounding(error=err)
    w, h = _check_wh(resolution_wh)
    boxes, labels = [], []
    for i, item in enumerate(items):
        box = _numbers(item.get("box_2d")) if isinstance(item, dict) else None
        if box is None:
            return Grounding(error=f"Gemini box {i + 1} is not four numbers: {str(item)[:80]}")
        y1, x1, y2, x2 = box
        boxes.append([x1 / 1000 * w, y1 / 1000 * h, x2 / 1000 * w, y2 / 1000 * h])
        labels.append(str(item.get("label", "")))
    return Grounding(_detections(boxes, labels, "gemini"))


def parse_paligemma(text: str, resolution_wh: tuple[int, int]) -> Grounding:
    """Boxes from PaliGemma ``<locY1><locX1><locY2><locX2> label`` strings (0..1023 bins).

    Every ``<locXXXX>`` token must belong to a complete group of four; stray ones are a
    parse failure (a cut-off answer), not fewer objects.
    """
    loc_count = len(_PALI_LOC.findall(text))
    if loc_count == 0:
        return Grounding()
    w, h = _check_wh(resolution_wh)
    matches = _PALI_BOX.findall(text)
    if loc_count != 4 * len(matches):
        return Grounding(
            error=f"PaliGemma answer has {loc_count} location tokens, not whole groups of four "
            f"({len(matches)} complete boxes)."
        )
    boxes, labels = [], []
    for y1, x1, y2, x2, label in matches:
        boxes.append([int(x1) / 1024 * w, int(y1) / 1024 * h, int(x2) / 1024 * w, int(y2) / 1024 * h])
        labels.append(label.strip())
    return Grounding(_detections(boxes, labels, "paligemma"))


def box_to_florence_locs(box: tuple[float, float, float, float], image_wh: tuple[int, int]) -> str:
    """A region (x1, y1, x2, y2 in pixels) as Florence-2 ``<loc_N>`` tokens (0..999 bins)."""
    w, h = _check_wh(image_wh)
    x1, y1, x2, y2 = box
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))

    def q(v: float, size: int) -> int:
        return int(min(max(v / size * 1000.0, 0), 999))

    return f"<loc_{q(x1, w)}><loc_{q(y1, h)}><loc_{q(x2, w)}><loc_{q(y2, h)}>"


def detections_to_json(det: sv.Detections | None, scale: float = 1.0) -> list[dict[str, Any]]:
    """Boxes as JSON rows; ``scale`` maps working-size pixels back to the original image."""
    if det is None:
        return []
    names = det.data.get("class_name", [""] * len(det))
    return [
        {"label": str(name), "xyxy": [round(float(v) / scale, 1) for v in box]}
        for box, name in zip(det.xyxy, names, strict=False)
    ]
