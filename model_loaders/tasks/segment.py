"""The ``segment`` task: promptable masks with the image encoded once per (image, model).

`embed` runs the image encoder (or takes the embedding from the caller's per-session
`EmbeddingCache`), `decode` turns prompts into candidate masks on that embedding; `segment`
does both for a stateless call. Prompts are validated here, before any tensor is built (an
out-of-range index on CUDA would poison the process). Masks are exported as COCO RLE with
pycocotools, the reference implementation every COCO tool reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_loaders.core.embeddings import EmbeddingCache
from model_loaders.core.errors import InputError
from model_loaders.core.images import DecodedImage
from model_loaders.core.results import ImageEmbedding, MaskPrediction, Timings
from model_loaders.core.specs import ModelSpec
from model_loaders.tasks.base import checked_spec, image_of, model_for

MAX_POINTS = 64
Point = tuple[float, float]
Box = tuple[float, float, float, float]


def validate_prompts(points: Sequence[Point], labels: Sequence[int], box: Box | None, size: tuple[int, int]) -> None:
    """Check prompts against an image of ``size`` = (width, height).

    Raises:
        InputError: with a short message for each kind of bad prompt.
    """
    w, h = size
    if not points and box is None:
        raise InputError("Add at least one point or a box.")
    if len(points) > MAX_POINTS:
        raise InputError(f"Too many points ({len(points)}; max {MAX_POINTS}).")
    if len(labels) != len(points):
        raise InputError(f"Got {len(labels)} labels for {len(points)} points; give one label per point.")
    for label in labels:
        if isinstance(label, bool) or label not in (0, 1):
            raise InputError("Labels must be 1 (include) or 0 (exclude).")
    for x, y in points:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InputError("Point coordinates must be finite numbers.")
        if not (0 <= x <= w and 0 <= y <= h):
            raise InputError(f"Point ({x:g}, {y:g}) is outside the image ({w}×{h}).")
    if box is not None:
        if not all(math.isfinite(v) for v in box):
            raise InputError("Box coordinates must be finite numbers.")
        x1, y1, x2, y2 = box
        if x2 < x1 or y2 < y1:
            raise InputError("Box must be [x1, y1, x2, y2] with x2 ≥ x1 and y2 ≥ y1.")
        if x2 - x1 < 1 or y2 - y1 < 1:
            raise InputError("Box has zero area.")
        if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
            raise InputError(f"Box is outside the image ({w}×{h}).")


def segment_spec(ctx: Any, model: Any) -> ModelSpec:
    """The spec of a model that can segment and run here (checked before anything loads)."""
    return checked_spec(ctx, model, "segment", "one of the Segment tab's models")


def embed(
    ctx: Any, image: DecodedImage, model: str, cache: EmbeddingCache | None = None, timings: Timings | None = None
) -> tuple[ImageEmbedding, bool]:
    """The embedding of ``image`` by ``model``: from ``cache`` when there, else encoded (and stored).

    Returns:
        (embedding, cached): ``cached`` is True when the encoder did not run.
    """
    spec = segment_spec(ctx, model)
    if cache is not None:
        hit = cache.get(image.digest, spec.key)
        if hit is not None:
            return hit, True
    timings = timings if timings is not None else Timings()
    with model_for(ctx, spec, "segment", timings) as segmenter, timings.stage("inference"):
        embedding = segmenter.encode(image.array, image.digest)
    if cache is not None:
        cache.put(embedding)
    return embedding, False


def decode(
    ctx: Any,
    embedding: ImageEmbedding,
    points: Sequence[Point],
    labels: Sequence[int],
    box: Box | None = None,
    multimask: bool = True,
    timings: Timings | None = None,
) -> MaskPrediction:
    """Candidate masks for prompts (pixels of the embedded image); the image encoder does not run.

    Raises:
        InputError: for bad prompts (see `validate_prompts`).
    """
    h, w = embedding.image_size
    validate_prompts(points, labels, box, (w, h))
    spec = segment_spec(ctx, embedding.model_key)
    timings = timings if timings is not None else Timings()
    with model_for(ctx, spec, "segment", timings) as segmenter, timings.stage("inference"):
        return segmenter.decode(embedding, list(points), list(labels), box, bool(multimask))


@dataclass
class Segmentation:
    """One stateless segment call: the candidates, the embedding they came from, the image and prompts."""

    prediction: MaskPrediction
    embedding: ImageEmbedding
    image: DecodedImage
    cached: bool
    timings: Timings
    points: tuple[Point, ...] = ()
    labels: tuple[int, ...] = ()
    box: Box | None = None


def segment(
    ctx: Any,
    image: Any,
    model: Any,
    points: Sequence[Point] = (),
    labels: Sequence[int] = (),
    box: Box | None = None,
    multimask: bool = True,
    cache: EmbeddingCache | None = None,
) -> Segmentation:
    """Masks for prompts on an image (a request value or a decoded image), encoding it once."""
    spec = segment_spec(ctx, model)
    decoded = image_of(ctx, image)
    validate_prompts(points, labels, box, decoded.size)
    timings = Timings()
    embedding, cached = embed(ctx, decoded, spec.key, cache, timings)
    prediction = decode(ctx, embedding, points, labels, box, multimask, timings)
    return Segmentation(prediction, embedding, decoded, cached, timings, tuple(points), tuple(labels), box)


def segment_points(ctx: Any, image: Any, model: Any, points: Sequence[Point], timings: Timings | None = None) -> Any:
    """One object per point (each point is its own prompt), as ``supervision.Detections`` with masks.

    Masks line up by prompt across models (Compare); each is the candidate with the best
    predicted IoU, with its bounding box.
    """
    import supervision as sv

    if not points:
        raise InputError("Add at least one point.")
    spec = segment_spec(ctx, model)
    decoded = image_of(ctx, image)
    timings = timings if timings is not None else Timings()
    embedding, _ = embed(ctx, decoded, spec.key, None, timings)
    preds = [decode(ctx, embedding, [p], [1], None, True, timings) for p in points]
    with timings.stage("postprocess"):
        masks = np.stack([p.masks[p.best] for p in preds]).astype(bool)
        scores = np.array([float(p.scores[p.best]) for p in preds], dtype=np.float32)
        det = sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks, confidence=scores)
        det.data["class_name"] = np.array([f"point {i + 1}" for i in range(len(points))], dtype=object)
    det.metadata.update(model=spec.key, timings=timings.as_dict())
    return det


# --- the stateless request (API, MCP) -------------------------------------------------------------


def parse_prompts(points: Any, labels: Any, box: Any) -> tuple[list[Point], list[int], Box | None]:
    """Validate a request's points / labels / box (JSON values or JSON text).

    Raises:
        InputError: for every malformed, non-finite, nested or inconsistent value.
    """
    from model_loaders.core.jsontext import loads
    from model_loaders.core.validate import finite_number

    def parsed(value: Any, name: str) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return loads(text, name, max_chars=100_000) if text else None
        return value

    points, labels, box = parsed(points, "points") or [], parsed(labels, "labels"), parsed(box, "box")
    if not isinstance(points, list):
        raise InputError("points must be a list of [x, y] pairs.")
    if len(points) > MAX_POINTS:
        raise InputError(f"Too many points ({len(points)}; max {MAX_POINTS}).")
    pts: list[Point] = []
    for p in points:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise InputError("points must be a list of [x, y] pairs.")
        pts.append((finite_number(p[0], "Point x"), finite_number(p[1], "Point y")))
    if labels is None:
        labels = [1] * len(pts)
    if not isinstance(labels, list):
        raise InputError("labels must be a list of 1 (include) or 0 (exclude).")
    if len(labels) != len(pts):
        raise InputError(f"Got {len(labels)} labels for {len(pts)} points; give one label per point.")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or v not in (0, 1) for v in labels):
        raise InputError("Labels must be 1 (include) or 0 (exclude).")
    bx: Box | None = None
    if box not in (None, []):
        if not isinstance(box, list) or len(box) != 4:
            raise InputError("box must be [x1, y1, x2, y2].")
        x1, y1, x2, y2 = (finite_number(v, "Box coordinate") for v in box)
        if x2 < x1 or y2 < y1:
            raise InputError("Box must be [x1, y1, x2, y2] with x2 ≥ x1 and y2 ≥ y1.")
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            raise InputError("The box has zero area.")
        bx = (x1, y1, x2, y2)
    if not pts and bx is None:
        raise InputError("Give at least one point or a box.")
    return pts, [int(v) for v in labels], bx


def segment_request(
    ctx: Any, image: Any, model: Any, points: Any, labels: Any, box: Any, multimask: Any = True
) -> tuple[dict[str, Any], Segmentation]:
    """The stateless ``segment`` endpoint: prompts and masks in original-image pixels.

    Returns:
        (JSON with every candidate as COCO RLE at the original size, the scores, the best index and
        timings; the segmentation, for drawing).
    """
    spec = segment_spec(ctx, model)
    pts, labs, bx = parse_prompts(points, labels, box)
    decoded = image_of(ctx, image)
    ow, oh = decoded.original_size
    for x, y in pts:
        if not (0 <= x <= ow and 0 <= y <= oh):
            raise InputError(f"Point ({x:g}, {y:g}) is outside the image ({ow}×{oh}).")
    if bx is not None and (bx[0] < 0 or bx[1] < 0 or bx[2] > ow or bx[3] > oh):
        raise InputError(f"The box is outside the image ({ow}×{oh}).")
    wpts = [decoded.to_working(x, y) for x, y in pts]
    wbox = (*decoded.to_working(bx[0], bx[1]), *decoded.to_working(bx[2], bx[3])) if bx is not None else None
    result = segment(ctx, decoded, spec.key, wpts, labs, wbox, bool(multimask))  # type: ignore[arg-type]
    pred, timings = result.prediction, result.timings
    with timings.stage("postprocess"):
        masks = [rle_encode(pred.mask_at(i, (ow, oh))) for i in range(len(pred.scores))]
    doc = {
        "model": spec.key,
        "width": ow,
        "height": oh,
        "scores": [round(float(s), 4) for s in pred.scores],
        "best": pred.best,
        "masks": masks,
        "timings": {**timings.as_dict(), "encode_ms": round(result.embedding.encode_ms, 1),
                    "decode_ms": round(pred.decode_ms, 1)},  # fmt: skip
        "weights_warning": ctx.weights_warning,
        "notes": list(decoded.notes),
    }
    return doc, result


# --- COCO RLE (pycocotools) ----------------------------------------------------------------------


def _encode(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as coco_mask

    return coco_mask.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO run-length encoding of a bool (H, W) mask: ``{"size": [H, W], "counts": "<string>"}`` (JSON-ready)."""
    rle = _encode(mask)
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask resized (nearest neighbour) to ``size`` = (width, height)."""
    from PIL import Image

    mask = np.asarray(mask, dtype=bool)
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(tuple(size), Image.Resampling.NEAREST)) > 127


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """A bool (H, W) mask from COCO RLE (compressed string or uncompressed list of counts).

    Raises:
        ValueError: counts that do not cover the mask exactly.
    """
    from pycocotools import mask as coco_mask

    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        if sum(int(c) for c in counts) != h * w:
            raise ValueError(f"RLE counts sum to {sum(int(c) for c in counts)}, expected {h * w}")
        compressed = coco_mask.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
    else:
        compressed = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return coco_mask.decode(compressed).astype(bool)


def coco_annotation(index: int, mask: np.ndarray, score: float, **extra: Any) -> dict[str, Any]:
    """One COCO annotation (RLE segmentation, area, xywh bbox) for a bool mask at the original size."""
    from pycocotools import mask as coco_mask

    rle = _encode(mask)
    return {
        "id": index,
        "image_id": 1,
        "category_id": 1,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "area": int(coco_mask.area(rle)),
        "bbox": [float(v) for v in coco_mask.toBbox(rle)],
        "iscrowd": 0,
        "predicted_iou": round(float(score), 4),
        **extra,
    }
