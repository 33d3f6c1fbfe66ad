"""Typed results shared by every tab (the Compare tab depends on these).

Boxes and masks are ``supervision.Detections`` (masks as bool, ``metadata`` holding the model
key and timings); depth and text have small dataclasses here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_loaders.core.specs import DepthKind

ENGINE_WEIGHTS = "engine"  # Timings.weights of an answer from a serving engine (its own real weights)


@dataclass
class Timings:
    """Milliseconds per stage of one run, and where it ran (``weights``: this app's weights mode,
    or `ENGINE_WEIGHTS` when a serving engine answered)."""

    device: str = ""
    weights: str = ""
    model: str = ""
    load_ms: float = 0.0
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a block into ``<name>_ms`` (a field, or ``extra`` for other names)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            ms = (time.perf_counter() - start) * 1000.0
            if hasattr(self, f"{name}_ms"):
                setattr(self, f"{name}_ms", getattr(self, f"{name}_ms") + ms)
            else:
                self.extra[name] = self.extra.get(name, 0.0) + ms

    @property
    def total_ms(self) -> float:
        """All stages, load included."""
        return self.load_ms + self.preprocess_ms + self.inference_ms + self.postprocess_ms + sum(self.extra.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "model": self.model,
            "device": self.device,
            "weights": self.weights,
            "load_ms": round(self.load_ms, 1),
            "preprocess_ms": round(self.preprocess_ms, 1),
            "inference_ms": round(self.inference_ms, 1),
            "postprocess_ms": round(self.postprocess_ms, 1),
            **{f"{k}_ms": round(v, 1) for k, v in self.extra.items()},
        }


@dataclass
class DepthResult:
    """A depth map at the input image's size.

    Attributes:
        depth: float32 (H, W) map.
        kind: ``relative_inverse`` (disparity, larger is nearer, unitless) or ``metric`` (metres).
    """

    depth: np.ndarray
    kind: DepthKind
    timings: Timings = field(default_factory=Timings)

    @property
    def units(self) -> str:
        """Units of the values."""
        return "m" if self.kind == "metric" else "unitless (relative inverse depth)"


@dataclass
class TextResult:
    """A VLM answer: the text, any parsed grounding, and the raw generated text kept as is.

    Attributes:
        text: the answer shown to the user.
        raw: the raw generated text (never dropped, even when parsing succeeds).
        detections: parsed boxes as ``supervision.Detections`` or ``None`` if the answer has none.
        parse_error: why grounding parsing failed, if it did (never reported as "no objects").
    """

    text: str
    raw: str = ""
    detections: Any = None
    parse_error: str | None = None
    tokens: int = 0
    timings: Timings = field(default_factory=Timings)


@dataclass
class ImageEmbedding:
    """The image encoder's multi-level features for one image and one model.

    Attributes:
        model_key: registry key of the model that made it.
        digest: content hash of the image it was computed from.
        features: the feature maps ``Sam2Model.get_image_embeddings`` returns (on the model's device).
        image_size: (height, width) of the image that was encoded.
        encode_ms: how long encoding took.
    """

    model_key: str
    digest: str
    features: list[Any] = field(repr=False)
    image_size: tuple[int, int]
    encode_ms: float = 0.0

    @property
    def nbytes(self) -> int:
        """Bytes held by the feature maps."""
        return int(sum(f.numel() * f.element_size() for f in self.features))

    def __getstate__(self) -> dict[str, Any]:
        # Crossing a process boundary (a ZeroGPU call's result, a pickled session): CUDA tensors
        # must not leave the GPU worker, so the features travel on the CPU; the model moves them
        # back to its device when it decodes.
        state = dict(self.__dict__)
        state["features"] = [f.detach().cpu() if getattr(f, "is_cuda", False) else f for f in self.features]
        return state


@dataclass
class MaskPrediction:
    """Candidate masks for one prompt set.

    Attributes:
        logits: (K, h, w) float32 low-resolution mask logits (the decoder's native output).
        scores: (K,) predicted IoU of each candidate.
        masks: (K, H, W) bool masks at the encoded image's size.
        decode_ms: prompt encoding + mask decoding + upscaling time.
    """

    logits: np.ndarray
    scores: np.ndarray
    masks: np.ndarray
    decode_ms: float = 0.0

    @property
    def best(self) -> int:
        """Index of the candidate with the highest predicted IoU."""
        return int(np.argmax(self.scores))

    def mask_at(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """Candidate ``index`` as a bool mask at ``size`` = (width, height), e.g. the original image's."""
        return mask_at_size(self.logits[index], size)


def upscale_logits(logits: Any, size: tuple[int, int]) -> Any:
    """Bilinear-upscale (K, h, w) mask logits to ``size`` = (width, height) and threshold at 0.

    SAM resizes the whole image to a square without padding, so the low-resolution mask covers
    the whole image and scales to any target size directly (as ``post_process_masks`` does).
    """
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(logits, dtype=torch.float32)
    w, h = size
    with torch.inference_mode():
        return F.interpolate(t[None], (h, w), mode="bilinear", align_corners=False)[0] > 0.0


def mask_at_size(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One (h, w) logit map as a bool mask at ``size`` = (width, height)."""
    return upscale_logits(np.asarray(logits)[None], size)[0].numpy()


@dataclass
class GenerationStats:
    """What one generation did, for the timing line."""

    first_token_ms: float | None = None
    tokens: int = 0
    total_ms: float = 0.0
    stopped: str = ""  # "", "eos", "max_new_tokens", "max_time", "user"
    output_ids: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        """Decode speed after the first token (0 when fewer than two tokens)."""
        if self.first_token_ms is None or self.tokens < 2:
            return 0.0
        span = (self.total_ms - self.first_token_ms) / 1000.0
        return (self.tokens - 1) / span if span > 0 else 0.0


@dataclass
class AskChunk:
    """One streamed update: the answer so far, and on the last update the full result.

    Attributes:
        text: the answer text so far (cleaned for display).
        result: the final ``TextResult`` (raw text, parsed boxes, timings), last update only.
        stats: generation statistics (time to first token, tokens, why it stopped).
        input_wh: size of the image the boxes refer to (the working image).
    """

    text: str
    result: Any = None
    stats: GenerationStats | None = None
    input_wh: tuple[int, int] | None = None
