"""Depth Anything V2 (relative and metric) through transformers' `DepthAnythingForDepthEstimation`.

One code path for every weights mode; only where the weights come from differs:

- ``hub``: the pinned checkpoint and its own image processor;
- ``random``: the real architecture at real size (Small / Base / Large DINOv2 backbones and
  their DPT heads, metric heads with ``max_depth`` 20 m indoor / 80 m outdoor), random weights;
- ``tiny``: the same classes shrunk to a few narrow layers, for fast tests.

The bundle implements the ``DepthEstimator`` protocol: ``estimate`` returns the float32 map at
the input image's size as a `DepthResult`. The architecture comes from the spec's ``variant``
(``small`` / ``base`` / ``large``), what the values mean from its ``depth_kind`` and
``max_depth_m``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_loaders.core.availability import LoadSettings
from model_loaders.core.errors import InputError, ModelUnavailable
from model_loaders.core.results import DepthKind, DepthResult, Timings
from model_loaders.core.specs import ModelSpec

log = logging.getLogger(__name__)

# DINOv2 backbone + DPT head sizes of the published V2 checkpoints (their config.json files).
# out_indices are 1-based hidden-state indices (index 0 is the patch embedding).
_ARCH: dict[str, dict[str, Any]] = {
    "small": {
        "hidden_size": 384,
        "num_attention_heads": 6,
        "num_hidden_layers": 12,
        "out_indices": [3, 6, 9, 12],
        "neck_hidden_sizes": [48, 96, 192, 384],
        "fusion_hidden_size": 64,
    },
    "base": {
        "hidden_size": 768,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "out_indices": [3, 6, 9, 12],
        "neck_hidden_sizes": [96, 192, 384, 768],
        "fusion_hidden_size": 128,
    },
    "large": {
        "hidden_size": 1024,
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "out_indices": [5, 12, 18, 24],
        "neck_hidden_sizes": [256, 512, 1024, 1024],
        "fusion_hidden_size": 256,
    },
    # Shrunken for tests: same classes, a few narrow layers.
    "tiny": {
        "hidden_size": 32,
        "num_attention_heads": 2,
        "num_hidden_layers": 4,
        "out_indices": [1, 2, 3, 4],
        "neck_hidden_sizes": [8, 16, 32, 32],
        "fusion_hidden_size": 16,
        "head_hidden_size": 8,
    },
}

INPUT_SIZE = 518  # the checkpoints' processor size (short side fitted, multiple of 14)
_MEAN = (0.485, 0.456, 0.406)  # ImageNet default mean/std, as in the checkpoints' processor config
_STD = (0.229, 0.224, 0.225)


@dataclass
class DepthBundle:
    """A loaded Depth Anything model and how to call it.

    Attributes:
        key: registry key.
        model: the ``DepthAnythingForDepthEstimation`` module (eval mode, on ``device``).
        processor: the ``DPTImageProcessor``.
        kind: ``relative_inverse`` or ``metric`` (metres), read from the model's config.
        max_depth: the metric head's range in metres (``None`` for relative models).
        device: torch device string.
        dtype: torch dtype of the weights.
    """

    key: str
    model: Any
    processor: Any
    kind: DepthKind
    max_depth: float | None
    device: str
    dtype: Any

    def estimate(self, image: np.ndarray, timings: Timings) -> DepthResult:
        """Depth for one (H, W, 3) uint8 RGB image, at the image's size (``DepthEstimator``)."""
        return estimate_depth(self, image, timings)

    # Batching (``core.batching``): prepare in the request's thread, one pass for many, finish.
    def prepare(self, image: np.ndarray, timings: Timings) -> Any:
        """See `prepare`."""
        return prepare(self, image, timings)

    def forward_batch(self, inputs: list[Any]) -> list[Any]:
        """See `forward_batch`."""
        return forward_batch(self, inputs)

    def finish(self, output: Any, size: tuple[int, int], timings: Timings) -> DepthResult:
        """See `finish`."""
        return finish(self, output, size, timings)


def build_config(size: str, max_depth: float | None) -> Any:
    """The `DepthAnythingConfig` of one architecture size (``small``/``base``/``large``/``tiny``).

    Args:
        size: a key of ``_ARCH``.
        max_depth: metres for a metric head (20 indoor, 80 outdoor), ``None`` for relative depth.
    """
    from transformers import DepthAnythingConfig, Dinov2Config

    arch = _ARCH[size]
    backbone = Dinov2Config(
        image_size=INPUT_SIZE,
        patch_size=14,
        hidden_size=arch["hidden_size"],
        num_attention_heads=arch["num_attention_heads"],
        num_hidden_layers=arch["num_hidden_layers"],
        mlp_ratio=4,
        layerscale_value=1.0,
        out_indices=arch["out_indices"],
        reshape_hidden_states=False,
    )
    kwargs: dict[str, Any] = {
        "backbone_config": backbone,
        "reassemble_hidden_size": arch["hidden_size"],
        "neck_hidden_sizes": arch["neck_hidden_sizes"],
        "fusion_hidden_size": arch["fusion_hidden_size"],
        "head_hidden_size": arch.get("head_hidden_size", 32),
    }
    if max_depth is not None:
        kwargs.update(depth_estimation_type="metric", max_depth=max_depth)
    return DepthAnythingConfig(**kwargs)


def build_processor() -> Any:
    """The image processor the V2 checkpoints ship, built offline (random/tiny modes)."""
    from transformers import DPTImageProcessor
    from transformers.image_utils import PILImageResampling

    return DPTImageProcessor(
        do_resize=True,
        size={"height": INPUT_SIZE, "width": INPUT_SIZE},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=PILImageResampling.BICUBIC,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(_MEAN),
        image_std=list(_STD),
        do_pad=False,
    )


def offline_parts(spec: ModelSpec, tiny: bool) -> tuple[Any, Any]:
    """(config, processor) built in code for ``spec``'s variant: real size, or shrunken (``tiny``).

    Raises:
        ModelUnavailable: an unknown variant (never a silent fallback to another size).
    """
    if spec.variant not in _ARCH or spec.variant == "tiny":
        raise ModelUnavailable(spec.key, "load_failed", f"{spec.name}: unknown Depth Anything variant {spec.variant!r}.")
    max_depth = int(spec.max_depth_m) if spec.depth_kind == "metric" and spec.max_depth_m else None  # config wants int metres
    return build_config("tiny" if tiny else spec.variant, max_depth), build_processor()


def architecture(spec: ModelSpec, tiny: bool = False) -> Any:
    """The checkpoint's architecture (real size, or shrunken with ``tiny``), random weights."""
    from transformers import DepthAnythingForDepthEstimation

    return DepthAnythingForDepthEstimation(offline_parts(spec, tiny)[0])


def load(spec: ModelSpec, settings: LoadSettings) -> DepthBundle:
    """Load a Depth Anything V2 model for ``spec`` under ``settings``.

    Raises:
        ModelUnavailable: unknown depth model, or (hub mode) checkpoint not available.
    """
    import torch
    from transformers import DepthAnythingForDepthEstimation

    dtype = getattr(torch, settings.dtype_name(spec))
    if settings.weights == "hub":
        from transformers import AutoImageProcessor

        from model_loaders.core.hub import hub_errors, pretrained_kwargs

        with hub_errors(spec):
            model = DepthAnythingForDepthEstimation.from_pretrained(
                spec.checkpoint, **pretrained_kwargs(spec), dtype=dtype
            )
            processor = AutoImageProcessor.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec))
    else:
        config, processor = offline_parts(spec, tiny=settings.weights == "tiny")
        torch.manual_seed(0)  # the same random weights in every process (a Ray replica and the app agree)
        model = DepthAnythingForDepthEstimation(config).to(dtype)
    model.eval().to(settings.device)
    cfg = model.config
    kind: DepthKind = "metric" if cfg.depth_estimation_type == "metric" else "relative_inverse"
    return DepthBundle(
        key=spec.key,
        model=model,
        processor=processor,
        kind=kind,
        max_depth=float(cfg.max_depth) if kind == "metric" else None,
        device=settings.device,
        dtype=dtype,
    )


def estimate_depth(bundle: DepthBundle, image_rgb: np.ndarray, timings: Timings | None = None) -> DepthResult:
    """Estimate depth for one RGB image, returned at the image's own size.

    Args:
        bundle: from `load`.
        image_rgb: (H, W, 3) uint8 RGB.
        timings: filled with preprocess / inference / postprocess milliseconds.

    Returns:
        A `DepthResult` whose float32 map is (H, W). Relative maps are >= 0; metric maps are
        within [0, max_depth] metres (bicubic upsampling can overshoot, so values are clipped).

    Raises:
        InputError: if ``image_rgb`` is not an (H, W, 3) uint8 array.
    """
    timings = timings if timings is not None else Timings()
    pixel_values = prepare(bundle, image_rgb, timings)
    with timings.stage("inference"):
        (predicted,) = forward_batch(bundle, [pixel_values])
    return finish(bundle, predicted, image_rgb.shape[:2], timings)


def prepare(bundle: DepthBundle, image_rgb: np.ndarray, timings: Timings) -> Any:
    """The model's input for one image: ``pixel_values`` of batch size 1 on the model's device
    (its shape follows the image's aspect ratio: only same-shaped inputs share a pass)."""
    if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise InputError("Depth needs an RGB image.")
    with timings.stage("preprocess"):
        if not image_rgb.flags.writeable:  # torch.from_numpy warns on read-only arrays
            image_rgb = image_rgb.copy()
        inputs = bundle.processor(images=image_rgb, device=bundle.device, return_tensors="pt")  # resized on the GPU there
        return inputs["pixel_values"].to(bundle.device, bundle.dtype)


def forward_batch(bundle: DepthBundle, inputs: list[Any]) -> list[Any]:
    """One forward pass over same-shaped inputs; one low-resolution map per input."""
    import torch

    with torch.inference_mode():
        predicted = bundle.model(pixel_values=torch.cat(inputs)).predicted_depth
        if bundle.device.startswith("cuda"):
            torch.cuda.synchronize()  # so inference time is the GPU's, not the launch's
    return list(predicted.unbind(0))


def finish(bundle: DepthBundle, predicted: Any, size: tuple[int, int], timings: Timings) -> DepthResult:
    """A model's low-resolution map upsampled to the image's ``size`` = (H, W) and checked."""
    import torch

    h, w = size
    with timings.stage("postprocess"), torch.inference_mode():
        # Upsample in float32: half-precision bicubic on large maps loses resolution.
        up = torch.nn.functional.interpolate(
            predicted.float()[None, None], size=(h, w), mode="bicubic", align_corners=False
        )[0, 0]
        hi = bundle.max_depth if bundle.kind == "metric" else None
        depth = up.clamp(min=0.0, max=hi).cpu().numpy().astype(np.float32, copy=False)
        if not np.isfinite(depth).all():
            # Half precision can overflow; keep the map usable and say so in the log.
            log.warning("%s produced %d non-finite depth values", bundle.key, int((~np.isfinite(depth)).sum()))
            depth = np.nan_to_num(depth, nan=0.0, posinf=hi or float(np.finfo(np.float32).max), neginf=0.0)
    return DepthResult(depth=np.ascontiguousarray(depth), kind=bundle.kind, timings=timings)
