"""Building ``supervision.Detections`` results: the one box/mask result type every detector returns.

A detector runs once at a low internal threshold (``RAW_FLOOR``) and keeps its best ``RAW_TOP_K``
boxes; the task layer re-filters them at the user's thresholds without running the model again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import supervision as sv

# Raw detections keep every box scoring at least this much (and at most RAW_TOP_K of them), so
# any confidence the user picks at or above it is honoured exactly without re-running the model.
RAW_FLOOR = 0.001
RAW_TOP_K = 300
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

def class_names_of(det: sv.Detections) -> list[str]:
    """Class name of each detection (``data['class_name']``, else the class id as text)."""
    names = det.data.get("class_name") if det.data else None
    if names is not None:
        return [str(n) for n in names]
    if det.class_id is None:
        return ["object"] * len(det)
    return [str(int(c)) for c in det.class_id]


def make_detections(
    xyxy: Any, scores: Any, class_ids: Any, class_names: list[str] | tuple[str, ...], metadata: dict[str, Any] | None = None
) -> sv.Detections:
    """Build ``sv.Detections`` with ``data['class_name']`` from arrays and the model's class list."""
    xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    ids = np.asarray(class_ids, dtype=int).reshape(-1)
    names = np.array([class_names[i] if 0 <= i < len(class_names) else str(i) for i in ids], dtype=object)
    det = sv.Detections(xyxy=xyxy, confidence=scores, class_id=ids, data={"class_name": names})
    det.metadata.update(metadata or {})
    return det


def keep_top(det: sv.Detections, floor: float = RAW_FLOOR, top_k: int = RAW_TOP_K) -> sv.Detections:
    """The raw set that is kept per session: scores >= ``floor``, best ``top_k``, sorted by score."""
    if len(det) == 0:
        return det
    det = det[det.confidence >= floor]
    order = np.argsort(-det.confidence, kind="stable")[:top_k]
    return det[order]
