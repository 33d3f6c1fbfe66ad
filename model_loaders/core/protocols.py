"""One protocol per task: what a loaded model (a family's bundle) must do to serve that task.

Every family adapter returns, from ``load(spec, settings)``, a bundle implementing the
protocols of the tasks its models support (the spec's ``tasks``). The task layer
(``model_loaders.tasks``) is the only caller: it pins the model, times the stages, and turns
the bundle's typed results into what tabs, the API, Compare and Workflow show. A remote backend
(an OpenAI-compatible engine, a Ray Serve deployment) implements the same calls behind the
task layer's seam, so nothing above it knows which backend answered.

Coordinates are pixels of the image handed in (the task layer maps them to the original).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from model_loaders.core.results import AskChunk, DepthResult, ImageEmbedding, MaskPrediction, Timings


@runtime_checkable
class Segmenter(Protocol):
    """Promptable segmentation with a reusable image embedding (SAM-style encode once, decode often)."""

    def encode(self, image: np.ndarray, digest: str) -> ImageEmbedding:
        """Run the image encoder once on an (H, W, 3) uint8 RGB image."""
        ...

    def decode(
        self,
        embedding: ImageEmbedding,
        points: Sequence[tuple[float, float]],
        labels: Sequence[int],
        box: tuple[float, float, float, float] | None,
        multimask: bool,
    ) -> MaskPrediction:
        """Masks for prompts on an embedding this model made (the encoder does not run)."""
        ...


@runtime_checkable
class DepthEstimator(Protocol):
    """Monocular depth."""

    def estimate(self, image: np.ndarray, timings: Timings) -> DepthResult:
        """A depth map at the image's size."""
        ...


@runtime_checkable
class Batchable(Protocol):
    """A model whose forward pass can serve several requests at once (``core.batching``).

    ``prepare`` runs in the request's thread and returns an input of batch size 1 (or ``None``
    when this input cannot be batched: the caller then runs it alone); ``forward_batch`` runs one
    pass over inputs of the same shape and returns one output per input, in order; ``finish``
    turns a request's output into its result, in the request's thread.
    """

    def prepare(self, image: np.ndarray, timings: Timings) -> Any: ...

    def forward_batch(self, inputs: list[Any]) -> list[Any]: ...

    def finish(self, output: Any, size: tuple[int, int], timings: Timings) -> Any: ...


@runtime_checkable
class Detector(Protocol):
    """Boxes for an image: closed-set classes, or the classes named in ``classes`` (open vocabulary).

    Scored detectors return every box above a low floor (the task layer filters at the user's
    thresholds without running the model again); VLMs return the boxes they wrote, with no score.
    """

    def detect(self, image: np.ndarray, timings: Timings, classes: Sequence[str] | None) -> Any:
        """Raw ``supervision.Detections`` in the image's pixels."""
        ...


@dataclass(frozen=True)
class AskRequest:
    """What a VLM is asked.

    Attributes:
        question: the user's question (already capped), or a task's phrase.
        history: earlier chat turns about the same image (``{"role", "content"}`` dicts).
        task: a task token for models with a task menu (Florence-2), else "".
        region: (x1, y1, x2, y2) in image pixels for region tasks.
        max_new_tokens: cap on the answer's length.
        temperature: 0 for greedy decoding.
        max_time: seconds after which generation stops.
        json_schema: the JSON Schema the answer must match (already checked; its instruction is
            in ``question`` too). A serving engine may also enforce it while generating.
    """

    question: str = ""
    history: tuple[dict[str, Any], ...] = ()
    task: str = ""
    region: tuple[float, float, float, float] | None = None
    max_new_tokens: int = 256
    temperature: float = 0.0
    max_time: float = 60.0
    json_schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class TaskPrompt:
    """One entry of a model's fixed task menu (Florence-2's task tokens), as a user sees it.

    Attributes:
        label: what the menu shows.
        token: the task token sent to the model.
        needs_text: the user's phrase completes the prompt (grounding, open-vocabulary).
        needs_region: a region drawn by the user completes the prompt.
    """

    label: str
    token: str
    needs_text: bool = False
    needs_region: bool = False


@runtime_checkable
class Asker(Protocol):
    """Visual question answering, streamed; the last chunk carries the full ``TextResult``."""

    def ask(
        self, image: Any, request: AskRequest, timings: Timings, stop: threading.Event | None
    ) -> Iterator[AskChunk]:
        """Stream an answer about a PIL image."""
        ...


@runtime_checkable
class Tracker(Protocol):
    """Objects followed through a video, one frame at a time (frames in working pixels).

    ``new_session`` starts a clip; ``prompt`` sets each object's clicks/box on one frame and
    returns every object's (mask, score) there; ``step`` tracks into the next frame (``reverse``
    when going backwards). A session's memory stays bounded however long the clip.
    """

    def new_session(self, size: tuple[int, int], frames: int) -> Any: ...

    def prompt(self, session: Any, frame: np.ndarray, frame_idx: int, prompts: dict[int, Any]) -> dict[int, Any]: ...

    def step(self, session: Any, frame: np.ndarray, frame_idx: int, reverse: bool = False) -> dict[int, Any]: ...


TASK_PROTOCOLS: dict[str, type] = {"segment": Segmenter, "depth": DepthEstimator, "detect": Detector, "ask": Asker,
                                   "track": Tracker}  # fmt: skip
