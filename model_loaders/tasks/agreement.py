"""How much models agree on one image: box F1, depth correlation after alignment, mask IoU.

Pure numpy (plus scipy's Hungarian solver, a dependency of supervision); no model, no Gradio.
Every function here takes typed results (``supervision.Detections``, float maps, bool masks)
so the Compare tab can fill a pairwise matrix without knowing which model produced what.

Conventions, chosen so that a pairwise matrix is meaningful:

- Boxes are matched one-to-one by the Hungarian algorithm on IoU (optimal, not greedy: greedy
  matching depends on the order boxes arrive in). A pair counts only at IoU >= the threshold.
  Matching is class-aware when both sides carry class names (``data["class_name"]``; compared
  case-insensitively), class-agnostic otherwise (a VLM's labels and a COCO detector's rarely
  share a vocabulary, and the user can still see "same boxes, different names").
- F1 = 2 * matches / (len(a) + len(b)); symmetric. Two empty results agree (F1 = 1).
- Depth: the row map is aligned to the column map by least squares (scale and shift), then
  Pearson correlation and abs-rel are measured on the aligned map. Metric depth (metres) is
  turned into inverse depth first when compared with relative inverse depth, so both say
  "larger is nearer". Abs-rel is not symmetric (it divides by the reference).
- Mask IoU: two empty masks agree (IoU = 1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

log = logging.getLogger(__name__)

T = TypeVar("T")

IOU_THRESHOLD = 0.5


# --------------------------------------------------------------------------------------------
# boxes
# --------------------------------------------------------------------------------------------


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), xyxy; shape (N, M).

    supervision's ``box_iou_batch``, plus one rule of ours: identical boxes agree even when they
    are degenerate (zero width or height, e.g. clipped at an image edge), where IoU is 0/0.
    """
    import supervision as sv

    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.nan_to_num(sv.box_iou_batch(a, b), nan=0.0)
    same = np.all(a[:, None, :] == b[None, :, :], axis=-1)
    return np.where(same, 1.0, iou)


def class_names(det: Any) -> list[str] | None:
    """Lower-cased class names of a ``Detections``, or ``None`` when it has none for every box."""
    names = getattr(det, "data", {}).get("class_name") if hasattr(det, "data") else None
    if names is None or len(names) != len(det):
        return None
    out = [str(n).strip().lower() for n in names]
    if len(out) and not all(out):
        return None
    return out


def match_boxes(a: Any, b: Any, iou_threshold: float = IOU_THRESHOLD) -> list[tuple[int, int, float]]:
    """One-to-one matches between two ``Detections`` at IoU >= ``iou_threshold``.

    Returns:
        ``(index_in_a, index_in_b, iou)`` for each matched pair, sorted by ``index_in_a``.
    """
    from scipy.optimize import linear_sum_assignment

    iou = box_iou_matrix(a.xyxy, b.xyxy)
    if iou.size == 0:
        return []
    names_a, names_b = class_names(a), class_names(b)
    if names_a is not None and names_b is not None:
        same = np.array([[na == nb for nb in names_b] for na in names_a], dtype=bool)
        iou = np.where(same, iou, 0.0)
    # Maximise total IoU over pairs that clear the threshold; the rest cost nothing.
    gain = np.where(iou >= iou_threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(gain, maximize=True)
    pairs = [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols, strict=False) if gain[r, c] > 0]
    return sorted(pairs)


def detection_f1(a: Any, b: Any, iou_threshold: float = IOU_THRESHOLD) -> float:
    """Matched-box F1 between two ``Detections`` (symmetric).

    Two models that both found nothing have nothing to agree on: NaN, not a perfect 1.0.
    """
    total = len(a) + len(b)
    if total == 0:
        return float("nan")
    return 2.0 * len(match_boxes(a, b, iou_threshold)) / total


# --------------------------------------------------------------------------------------------
# depth
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DepthAgreement:
    """How well one depth map, aligned by scale and shift, matches a reference map.

    Attributes:
        pearson: correlation of the aligned map with the reference (NaN if either is flat).
        abs_rel: mean ``|aligned - ref| / |ref|`` over pixels where the reference is not ~0.
        scale: least-squares scale applied to the map.
        shift: least-squares shift applied to the map.
    """

    pearson: float
    abs_rel: float
    scale: float
    shift: float


def _as_inverse(depth: np.ndarray) -> np.ndarray:
    # Metric depth in metres -> inverse depth, so it points the same way as disparity.
    return 1.0 / np.maximum(depth, 1e-6)


def _resize_to(depth: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if depth.shape == shape:
        return depth
    import cv2

    return cv2.resize(depth.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def align_scale_shift(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Least-squares ``(scale, shift)`` minimising ``|scale * pred + shift - ref|^2``."""
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if mask is not None:
        p, r = p[mask], r[mask]
    p, r = p.ravel(), r.ravel()
    if p.size == 0:
        return 1.0, 0.0
    p_mean, r_mean = p.mean(), r.mean()
    var = float(((p - p_mean) ** 2).sum())
    if var <= 0.0:
        return 0.0, float(r_mean)  # a flat map can only predict the mean
    scale = float(((p - p_mean) * (r - r_mean)).sum() / var)
    return scale, float(r_mean - scale * p_mean)


def depth_agreement(
    pred: np.ndarray,
    ref: np.ndarray,
    pred_kind: str = "relative_inverse",
    ref_kind: str = "relative_inverse",
) -> DepthAgreement:
    """Align ``pred`` to ``ref`` by scale and shift, then measure correlation and abs-rel.

    Args:
        pred: (H, W) float map to align.
        ref: (H, W) float reference map (``pred`` is resized to it if shapes differ).
        pred_kind: ``relative_inverse`` or ``metric`` (metres).
        ref_kind: same, for ``ref``.
    """
    p = _resize_to(np.asarray(pred, dtype=np.float32), np.shape(ref)).astype(np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if pred_kind != ref_kind:
        if pred_kind == "metric":
            p = _as_inverse(p)
        if ref_kind == "metric":
            r = _as_inverse(r)
    finite = np.isfinite(p) & np.isfinite(r)
    scale, shift = align_scale_shift(p, r, finite)
    aligned = scale * p + shift
    a, b = aligned[finite], r[finite]
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        pearson = float("nan")
    else:
        pearson = float(np.corrcoef(a, b)[0, 1])
    # Pixels whose reference is ~0 would dominate a relative error; leave them out.
    valid = np.abs(b) > 1e-6 * max(float(np.abs(b).max(initial=0.0)), 1e-12)
    abs_rel = float(np.mean(np.abs(a[valid] - b[valid]) / np.abs(b[valid]))) if valid.any() else float("nan")
    return DepthAgreement(pearson=pearson, abs_rel=abs_rel, scale=scale, shift=shift)


# --------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks of one shape (both empty -> 1.0)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def masks_iou(a: Any, b: Any) -> float:
    """Mean IoU of two models' masks for the same prompts (mask ``i`` answers prompt ``i``).

    ``a`` and ``b`` are ``Detections`` with ``.mask`` (N, H, W) or bool arrays of that shape.
    A prompt answered by one model only counts as IoU 0.
    """
    ma = getattr(a, "mask", a)
    mb = getattr(b, "mask", b)
    ma = np.zeros((0, 1, 1), bool) if ma is None else np.asarray(ma, dtype=bool)
    mb = np.zeros((0, 1, 1), bool) if mb is None else np.asarray(mb, dtype=bool)
    n = max(len(ma), len(mb))
    if n == 0:
        return 1.0
    ious = [mask_iou(ma[i], mb[i]) if i < len(ma) and i < len(mb) else 0.0 for i in range(n)]
    return float(np.mean(ious))


# --------------------------------------------------------------------------------------------
# pairwise
# --------------------------------------------------------------------------------------------


def pairwise(items: Sequence[T], metric: Callable[[T, T], float], symmetric: bool = True) -> np.ndarray:
    """Matrix ``m[i, j] = metric(items[i], items[j])`` (upper triangle mirrored if symmetric)."""
    n = len(items)
    out = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            if symmetric and j < i:
                out[i, j] = out[j, i]
                continue
            out[i, j] = metric(items[i], items[j])
    return out
