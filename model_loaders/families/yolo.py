"""YOLOv12 through the optional ``yolo`` extra (ultralytics, AGPL-3.0).

Ultralytics must never install packages or reach the network at run time: its offline,
no-auto-install and no-analytics settings are set before it is imported. ``random`` builds the
real-size model from its yaml (``yolo12{variant}.yaml`` for the spec's variant ``n``/``s``/``m``/
``l``/``x``, shipped in the wheel), ``tiny`` builds the ``n`` scale; ``hub`` loads the released ``.pt`` file, which must already be on disk
(the current folder or ultralytics' weights folder): it is never downloaded here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_loaders.core.availability import LoadSettings
from model_loaders.core.detections import COCO_CLASSES, RAW_FLOOR, RAW_TOP_K, keep_top, make_detections
from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.results import Timings
from model_loaders.core.specs import ModelSpec

log = logging.getLogger(__name__)

# Ultralytics' own NMS runs at this IoU when collecting raw boxes (it cannot be skipped);
# the user's IoU slider then applies our NMS on top, so values above it change nothing.
INTERNAL_IOU = 0.9
IMGSZ = 640
SCALES = ("n", "s", "m", "l", "x")
ARCHITECTURE_ON_META = False  # ultralytics reads tensor values while building: count parameters on the CPU


def _ultralytics() -> Any:
    """Import ultralytics with network, auto-install and analytics off."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    from PIL import Image

    pil_open = Image.open
    try:
        import ultralytics
        import ultralytics.utils.patches  # noqa: F401 - imported here so its patch is undone below
        from ultralytics import YOLO  # noqa: F401
        from ultralytics.utils import SETTINGS
    except ImportError as exc:
        raise ModelUnavailable(
            "yolo", "missing_extra", "YOLOv12 needs the optional `yolo` extra: pip install 'vision-playground[yolo]'."
        ) from exc
    finally:
        # Importing ultralytics replaces PIL.Image.open process-wide with a wrapper that, on any
        # unreadable file, tries to pip-install and import pi-heif. That would turn every bad
        # upload in every tab into an unexpected error; we feed YOLO arrays, so undo the patch.
        Image.open = pil_open
    if SETTINGS.get("sync", False):
        SETTINGS.update({"sync": False})
    return ultralytics


@dataclass
class YoloBundle:
    """A loaded ultralytics YOLO model.

    Attributes:
        spec: the registry entry.
        model: ``ultralytics.YOLO``.
        class_names: class names in id order.
        device: torch device string.
    """

    spec: ModelSpec
    model: Any
    class_names: tuple[str, ...]
    device: str = "cpu"
    half: bool = False

    open_vocabulary = False

    def detect(self, image: np.ndarray, timings: Timings, classes: Any = None) -> Any:
        """Run once on an RGB uint8 image; return raw ``sv.Detections`` in working pixels (``Detector``)."""
        with timings.stage("preprocess"):
            bgr = np.ascontiguousarray(image[:, :, ::-1])  # ultralytics reads numpy arrays as BGR
        with timings.stage("inference"):
            results = self.model.predict(
                bgr,
                conf=RAW_FLOOR,
                iou=INTERNAL_IOU,
                max_det=RAW_TOP_K,
                imgsz=IMGSZ,
                device=self.device,
                half=self.half,
                verbose=False,
            )
        with timings.stage("postprocess"):
            boxes = results[0].boxes
            det = make_detections(
                boxes.xyxy.float().cpu().numpy(),
                boxes.conf.float().cpu().numpy(),
                boxes.cls.cpu().numpy().astype(int),
                self.class_names,
                {"nms_iou_floor": INTERNAL_IOU},
            )
            return keep_top(det)


def _local_weights(name: str) -> Path | None:
    from ultralytics.utils import SETTINGS

    for folder in (Path.cwd(), Path(SETTINGS.get("weights_dir", "weights"))):
        if (folder / name).is_file():
            return folder / name
    return None


def architecture(spec: ModelSpec, tiny: bool = False) -> Any:
    """The released architecture (real size, or the ``n`` scale with ``tiny``), random weights."""
    return load(spec, LoadSettings("tiny" if tiny else "random", "cpu")).model.model


def load(spec: ModelSpec, settings: LoadSettings) -> YoloBundle:
    """Build (random/tiny, from yaml, offline) or load (hub, local ``.pt``) a YOLOv12 model."""
    _ultralytics()
    from ultralytics import YOLO

    if spec.variant not in SCALES:
        raise ModelUnavailable(spec.key, "load_failed", f"{spec.name}: unknown YOLOv12 scale {spec.variant!r}.")
    if settings.weights == "hub":
        path = _local_weights(str(spec.checkpoint))
        if path is None:
            raise ModelUnavailable(
                spec.key,
                "offline",
                f"{spec.name}: {spec.checkpoint} is not on disk and is never downloaded at run time. "
                f"Put it in the working folder (from ultralytics/assets release {spec.revision}) "
                "or run with --weights random|tiny.",
            )
        model = YOLO(str(path), task="detect")
    else:
        model = YOLO(f"yolo12{'n' if settings.weights == 'tiny' else spec.variant}.yaml", task="detect")
        # Untrained models name their classes '0', '1', ...; use COCO's names like the real weights.
        model.model.names = dict(enumerate(COCO_CLASSES))
    model.model.eval()
    model.to(settings.device)
    names = model.model.names
    class_names = tuple(str(names[i]) for i in range(len(names)))
    return YoloBundle(spec, model, class_names, settings.device, half=settings.dtype_name(spec) == "float16")
