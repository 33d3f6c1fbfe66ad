"""Segment everything: every object in an image as a mask, with no prompt (SAM 2.1). Gradio-free.

The recipe of SAM's automatic mask generator: a grid of single-point prompts decoded in batches
on the image's one cached embedding (the encoder runs once), each point's best candidate kept
when its predicted IoU and its area pass the floors, then overlapping masks removed by mask NMS
(supervision's ``mask_non_max_suppression``). `run` is a generator (progress per batch; a stop
flag keeps what was found so far); `collect` runs it to the end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_loaders.core.errors import InputError
from model_loaders.core.images import DecodedImage
from model_loaders.core.results import Timings
from model_loaders.tasks.base import image_of, model_for
from model_loaders.tasks.segment import EmbeddingCache, embed, segment_spec

GRID_CPU, GRID_GPU = 12, 32  # points per side: 144 prompts on a CPU, 1,024 on a GPU
MAX_GRID = 64
BATCH = 64
SCORE_FLOOR = 0.7  # predicted IoU (SAM's generator uses 0.88 with real weights)
MIN_AREA = 0.0005  # of the image
NMS_IOU = 0.7
MAX_MASKS = 200


@dataclass
class Everything:
    """The masks found (largest first) with their predicted IoU and the grid point each came from."""

    image: DecodedImage
    model: str
    masks: np.ndarray  # (K, H, W) bool at working size
    scores: np.ndarray
    points: np.ndarray  # (K, 2) working pixels
    grid: int
    timings: Timings = field(default_factory=Timings)
    stopped: bool = False


@dataclass
class Progress:
    """Batches decoded so far and masks kept so far."""

    done: int
    total: int
    kept: int


def grid_points(size: tuple[int, int], per_side: int) -> np.ndarray:
    """A ``per_side`` × ``per_side`` grid of point prompts at cell centres of an image of ``size`` (w, h)."""
    w, h = size
    offsets = (np.arange(per_side) + 0.5) / per_side
    xs, ys = np.meshgrid(offsets * w, offsets * h)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _finish(image: DecodedImage, model: str, masks: list[np.ndarray], scores: list[float], points: list[Any],
            grid: int, timings: Timings, stopped: bool) -> Everything:  # fmt: skip
    import supervision as sv

    h, w = image.array.shape[:2]
    if not masks:
        return Everything(image, model, np.zeros((0, h, w), bool), np.zeros(0), np.zeros((0, 2)), grid, timings, stopped)
    stack, score, point = np.stack(masks), np.asarray(scores, np.float32), np.asarray(points, np.float32)
    with timings.stage("postprocess"):
        predictions = np.concatenate([sv.mask_to_xyxy(stack).astype(np.float32), score[:, None]], axis=1)
        keep = sv.mask_non_max_suppression(predictions, stack, iou_threshold=NMS_IOU, mask_dimension=256)
        stack, score, point = stack[keep], score[keep], point[keep]
        order = np.argsort(-stack.reshape(len(stack), -1).sum(1), kind="stable")[:MAX_MASKS]  # largest first
    return Everything(image, model, stack[order], score[order], point[order], grid, timings, stopped)


def run(ctx: Any, image: Any, model: Any, per_side: Any = None, score_floor: float = SCORE_FLOOR,
        min_area: float = MIN_AREA, cache: EmbeddingCache | None = None,
        stop: threading.Event | None = None) -> Iterator[Progress | Everything]:  # fmt: skip
    """Yield `Progress` after each batch of grid points, then the `Everything` found.

    Raises:
        InputError: a bad model, image or grid size.
    """
    spec = segment_spec(ctx, model)
    try:
        grid = int(per_side) if per_side not in (None, "", 0) else (GRID_GPU if ctx.settings.device == "cuda" else GRID_CPU)
    except (TypeError, ValueError):
        raise InputError("The grid is a whole number of points per side.") from None
    if not 2 <= grid <= MAX_GRID:
        raise InputError(f"The grid takes 2 to {MAX_GRID} points per side.")
    timings = Timings()
    decoded = image_of(ctx, image)
    h, w = decoded.array.shape[:2]
    embedding, _ = embed(ctx, decoded, spec.key, cache, timings)
    points = grid_points((w, h), grid)
    batches = [points[i : i + BATCH] for i in range(0, len(points), BATCH)]
    masks: list[np.ndarray] = []
    scores: list[float] = []
    origins: list[Any] = []
    stopped = False
    with model_for(ctx, spec, "segment", timings) as segmenter:
        if not hasattr(segmenter, "decode_points"):
            raise InputError(f"{spec.name} cannot segment everything: choose a SAM 2.1 model.")
        for done, batch in enumerate(batches, 1):
            if stop is not None and stop.is_set():
                stopped = True
                break
            with timings.stage("inference"):
                found, found_scores = segmenter.decode_points(embedding, [tuple(p) for p in batch])
            areas = found.reshape(len(found), -1).mean(1)
            for i in np.flatnonzero((found_scores >= score_floor) & (areas >= min_area)):
                masks.append(found[i])
                scores.append(float(found_scores[i]))
                origins.append(batch[i])
            yield Progress(done, len(batches), len(masks))
    yield _finish(decoded, spec.key, masks, scores, origins, grid, timings, stopped)


def collect(ctx: Any, image: Any, model: Any, **kw: Any) -> Everything:
    """`run` to the end: the masks found."""
    result = None
    for result in run(ctx, image, model, **kw):  # noqa: B007 - the last item is the result
        pass
    assert isinstance(result, Everything)
    return result


def document(result: Everything) -> dict[str, Any]:
    """The masks as COCO RLE at the original image's size, with score, area and the grid point."""
    from model_loaders.tasks.segment import resize_mask, rle_encode

    image = result.image
    size = image.original_size
    out = []
    for mask, score, point in zip(result.masks, result.scores, result.points, strict=True):
        full = resize_mask(mask, size)
        ys, xs = np.nonzero(full)
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if len(xs) else [0, 0, 0, 0]
        out.append({"segmentation": rle_encode(full), "score": round(float(score), 4), "area": int(full.sum()),
                    "box": box, "point": [round(float(v) / image.scale, 1) for v in point]})  # fmt: skip
    return {"model": result.model, "image": {"width": size[0], "height": size[1]}, "grid": result.grid,
            "count": len(out), "stopped": result.stopped, "timings": result.timings.as_dict(), "masks": out}  # fmt: skip
