"""Typed results shared by every tab (the Compare tab depends on these).

Boxes and masks are ``supervision.Detections`` (masks as bool, ``metadata`` holding the model
key and timings); depth and text have small dataclasses here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

DepthKind = Literal["relative_inverse", "metric"]


@dataclass
class Timings:
    """Milliseconds per stage of one run, and where it ran."""

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
