"""The one renderer of boxes, masks and prompts on images, for every tab.

supervision's annotators are stateless, so each distinct style (line thickness, text size,
colour lookup) is built once and reused. Colours come from one palette: a class keeps its
colour across the image, the table, the chart and every tab.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

SMART_LABELS_MAX = 40  # label placement that avoids overlaps is quadratic: only for few boxes


@functools.lru_cache(maxsize=32)
def _annotators(thickness: int, text_scale: float, by_index: bool, smart: bool) -> tuple[Any, Any, Any]:
    import supervision as sv

    lookup = sv.ColorLookup.INDEX if by_index else sv.ColorLookup.CLASS
    return (
        sv.BoxAnnotator(thickness=thickness, color_lookup=lookup),
        sv.LabelAnnotator(text_scale=text_scale, text_thickness=thickness, smart_position=smart, color_lookup=lookup),
        sv.MaskAnnotator(opacity=0.5, color_lookup=lookup),
    )


def _style(image: np.ndarray) -> tuple[int, float]:
    side = max(image.shape[:2])
    return max(1, round(side / 400)), round(max(0.4, side / 1400), 2)


def colour_hex(index: int) -> str:
    """The palette colour of class (or instance) ``index`` as ``#rrggbb``."""
    import supervision as sv

    return sv.ColorPalette.DEFAULT.by_idx(index).as_hex()


def colour_rgb(index: int) -> tuple[int, int, int]:
    """The palette colour of ``index`` as (r, g, b)."""
    import supervision as sv

    return sv.ColorPalette.DEFAULT.by_idx(index).as_rgb()


def class_colours(names: Sequence[str]) -> dict[str, str]:
    """Each class name's colour (by its position in the model's class list)."""
    return {name: colour_hex(i) for i, name in enumerate(names)}


def _names(det: Any) -> list[str]:
    names = det.data.get("class_name") if det.data else None
    return [str(n) for n in names] if names is not None else ["object"] * len(det)


def boxes(image: np.ndarray, det: Any, classes: Sequence[str] | None = None) -> np.ndarray:
    """Boxes with "class score" labels (just the class for boxes without a score, e.g. a VLM's).

    Args:
        image: (H, W, 3) uint8 RGB (not modified).
        det: ``supervision.Detections`` in the image's pixels.
        classes: the model's class list: a class keeps its colour everywhere. Without it, each
            box gets its own colour.
    """
    import supervision as sv

    scene = np.array(image, copy=True)
    if det is None or len(det) == 0:
        return scene
    names = _names(det)
    if classes is not None:
        index = {n: i for i, n in enumerate(classes)}
        ids = np.array([index.get(n, len(index)) for n in names], dtype=int)
    else:
        ids = np.arange(len(det))
    styled = sv.Detections(xyxy=det.xyxy, confidence=det.confidence, class_id=ids, mask=det.mask)
    scores = det.confidence if det.confidence is not None else [None] * len(det)
    labels = [n if s is None else f"{n} {float(s):.2f}" for n, s in zip(names, scores, strict=True)]
    box, label, _ = _annotators(*_style(image), classes is None, len(det) <= SMART_LABELS_MAX)
    return label.annotate(box.annotate(scene, styled), styled, labels=labels)


def masks(image: np.ndarray, mask_list: Sequence[np.ndarray], first_colour: int = 0) -> np.ndarray:
    """Bool masks drawn on ``image``, one palette colour each, starting at ``first_colour``."""
    import supervision as sv

    scene = np.array(image, copy=True)
    if not len(mask_list):
        return scene
    stack = np.stack([np.asarray(m, dtype=bool) for m in mask_list])
    det = sv.Detections(xyxy=sv.mask_to_xyxy(stack).astype(np.float32), mask=stack,
                        class_id=np.arange(first_colour, first_colour + len(stack)))  # fmt: skip
    _, _, mask = _annotators(*_style(image), False, False)
    return mask.annotate(scene, det)


def prompts(
    image: np.ndarray,
    points: Sequence[tuple[float, float]] = (),
    labels: Sequence[int] = (),
    box: tuple[float, float, float, float] | None = None,
    corner: tuple[float, float] | None = None,
) -> np.ndarray:
    """Click prompts: include points (green, "+") and exclude points (red, "−"), a box, a pending corner."""
    import cv2

    out = np.ascontiguousarray(np.array(image, copy=True))
    r = max(4, round(max(out.shape[:2]) / 120))
    thick = max(2, r // 3)
    if box is not None:
        x1, y1, x2, y2 = (round(v) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (255, 255, 255), thick + 2)
        cv2.rectangle(out, (x1, y1), (x2, y2), (30, 144, 255), thick)
    if corner is not None:
        cx, cy = (round(v) for v in corner)
        cv2.drawMarker(out, (cx, cy), (255, 255, 255), cv2.MARKER_CROSS, r * 4, thick + 2)
        cv2.drawMarker(out, (cx, cy), (30, 144, 255), cv2.MARKER_CROSS, r * 4, thick)
    labels = list(labels) or [1] * len(points)
    for (x, y), label in zip(points, labels, strict=False):
        centre = (round(x), round(y))
        colour = (40, 200, 60) if label == 1 else (230, 40, 40)
        cv2.circle(out, centre, r + thick, (255, 255, 255), -1)
        cv2.circle(out, centre, r, colour, -1)
        # "+" or "−" inside the dot, so polarity does not rely on colour alone
        half, line = r // 2, max(1, thick // 2)
        cv2.line(out, (centre[0] - half, centre[1]), (centre[0] + half, centre[1]), (255, 255, 255), line)
        if label == 1:
            cv2.line(out, (centre[0], centre[1] - half), (centre[0], centre[1] + half), (255, 255, 255), line)
    return out


def region(image: np.ndarray, corners: Sequence[Sequence[float]]) -> np.ndarray:
    """A region being drawn: its first corner, or the rectangle once both corners are set."""
    if len(corners) >= 2:
        (ax, ay), (bx, by) = corners[:2]
        return prompts(image, box=(min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)))
    if len(corners) == 1:
        return prompts(image, corner=(float(corners[0][0]), float(corners[0][1])))
    return np.array(image, copy=True)
