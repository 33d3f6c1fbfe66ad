"""`ModelSpec`: everything the UI shows, the loader needs and the tabs may do with one model.

Capabilities live here, not in side tables: the architecture variant a family builds for
``random``/``tiny`` weights, the prompt kinds a model accepts, whether it is open-vocabulary,
what its depth values mean, its default detection thresholds and how a VLM writes boxes. Tabs
read these to decide what to show; they never test family names or registry keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Task = Literal["segment", "depth", "detect", "ask", "track"]
Commercial = Literal["yes", "no", "conditions"]
WeightsMode = Literal["hub", "random", "tiny"]
# What a user can prompt a model with: clicks, a box, class names to find, a free question, a
# fixed task menu (Florence-2's task tokens), a region of the image.
PromptKind = Literal["points", "box", "classes", "question", "task", "region"]
# How a VLM writes boxes in its answers (each needs its own parser and coordinate system).
GroundingFormat = Literal["florence_loc", "qwen2_5_abs", "qwen3_rel1000", "paligemma_loc", "gemini_yx1000"]
DepthKind = Literal["relative_inverse", "metric"]

PROMPT_KINDS: tuple[PromptKind, ...] = ("points", "box", "classes", "question", "task", "region")
# What each task gives back (the typed results of DESIGN.md).
OUTPUT_OF_TASK: dict[str, str] = {"segment": "masks", "depth": "depth map", "detect": "boxes", "ask": "text",
                                  "track": "masks per video frame"}  # fmt: skip

TASKS: tuple[Task, ...] = ("segment", "depth", "detect", "ask", "track")
# The tasks Compare runs side by side on one image.
IMAGE_TASKS: tuple[Task, ...] = ("segment", "depth", "detect", "ask")
WEIGHTS_MODES: tuple[WeightsMode, ...] = ("hub", "random", "tiny")
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_BYTES_PER_PARAM = {"float32": 4, "bfloat16": 2, "float16": 2}
# Working memory one run takes on top of the weights (activations, pre- and post-processing, a
# working image up to 2048 px), as (fixed MB, share of the weight bytes): activations grow with
# the model's width. Measured on CPU in float32 with `benchmarks/memory.py --calibrate`.
_WORKING: dict[str, tuple[int, float]] = {
    "segment": (500, 0.2),
    "depth": (400, 0.35),
    "detect": (300, 0.5),
    "ask": (600, 0.3),
}


@dataclass(frozen=True)
class Thresholds:
    """Default filtering of a detector's scored boxes; the same everywhere the model runs.

    Attributes:
        confidence: boxes scoring below are hidden.
        iou: per-class non-maximum suppression overlap.
    """

    confidence: float = 0.25
    iou: float = 0.7


@dataclass(frozen=True)
class ModelSpec:
    """One model: identity, licence, and how to load it.

    Attributes:
        key: unique registry key, used in the UI, the API and the cache.
        name: human-readable name.
        family: its family in the registry's ``FAMILIES`` (the adapter module that runs it).
        tasks: what the model can do here; the first is its home tab.
        checkpoint: Hugging Face repo id (or the upstream weights name for non-Hub families);
            ``None`` for API-only models.
        revision: pinned 40-hex commit of ``checkpoint``; ``None`` only where no Hub repo exists
            (API models) or where ``revision_note`` says why.
        params_m: parameters in millions; ``None`` when the vendor does not publish it.
        licence: licence name as on the model card (SPDX id where one exists).
        licence_url: where the licence text is.
        commercial: ``yes``, ``no`` or ``conditions`` (read ``commercial_note``).
        commercial_note: one short sentence on the conditions.
        gated: the Hub repo needs accepted terms and an HF token.
        paper: URL of the source paper or technical report.
        extra: optional pip extra the family needs (``yolo``, ``gemini``), if any.
        extra_module: the importable module that proves the extra is installed.
        env_key: environment variable the model needs (an API key), if any.
        needs_remote_code: the checkpoint only runs with remote code enabled,
            which this app never uses.
        cuda_dtype: dtype used on CUDA (CPU always uses float32).
        revision_note: why the revision is not a commit sha, if it is not.
        notes: anything else a user should know (one line).
        variant: the architecture variant its family builds for ``random``/``tiny`` weights
            (the family's own size names, e.g. ``base-plus``, ``3b``); unknown variants are
            errors in the family, never a silent fallback.
        prompts: what a user can prompt it with (see ``PromptKind``).
        open_vocabulary: it is told what to find in words (vs a fixed set of classes).
        depth_kind: for depth models, what the values mean.
        max_depth_m: for metric depth models, the head's range in metres.
        thresholds: default detection thresholds for models that score their boxes.
        grounding: how a VLM writes boxes in its answers (``None``: it does not).
    """

    key: str
    name: str
    family: str
    tasks: tuple[Task, ...]
    checkpoint: str | None
    revision: str | None
    params_m: float | None
    licence: str
    licence_url: str
    commercial: Commercial
    paper: str
    commercial_note: str = ""
    gated: bool = False
    extra: str | None = None
    extra_module: str | None = None
    env_key: str | None = None
    needs_remote_code: bool = False
    cuda_dtype: str = "bfloat16"
    revision_note: str = ""
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())
    variant: str = ""
    prompts: tuple[PromptKind, ...] = ()
    open_vocabulary: bool = False
    depth_kind: DepthKind | None = None
    max_depth_m: float | None = None
    thresholds: Thresholds | None = None
    grounding: GroundingFormat | None = None

    def __post_init__(self) -> None:
        if not self.tasks or any(t not in TASKS for t in self.tasks):
            raise ValueError(f"{self.key}: tasks must be a non-empty subset of {TASKS}")
        if self.commercial not in ("yes", "no", "conditions"):
            raise ValueError(f"{self.key}: bad commercial value {self.commercial!r}")
        if self.revision is not None and not (_SHA.match(self.revision) or self.revision_note):
            raise ValueError(f"{self.key}: revision must be a 40-hex commit sha")
        if self.cuda_dtype not in _BYTES_PER_PARAM:
            raise ValueError(f"{self.key}: unknown dtype {self.cuda_dtype}")
        if any(p not in PROMPT_KINDS for p in self.prompts):
            raise ValueError(f"{self.key}: prompts must be among {PROMPT_KINDS}")
        if "depth" in self.tasks and self.depth_kind is None:
            raise ValueError(f"{self.key}: a depth model must say what its values mean (depth_kind)")
        if self.depth_kind == "metric" and not self.max_depth_m:
            raise ValueError(f"{self.key}: a metric depth model needs max_depth_m")
        if "detect" in self.tasks and self.thresholds is None and self.grounding is None:
            raise ValueError(f"{self.key}: a detector needs default thresholds, a VLM a grounding format")
        if "segment" in self.tasks and "points" not in self.prompts:
            raise ValueError(f"{self.key}: a segmenter takes points")
        if "ask" in self.tasks and not {"question", "task"} & set(self.prompts):
            raise ValueError(f"{self.key}: a VLM takes a question or a task")

    @property
    def outputs(self) -> tuple[str, ...]:
        """What it gives back, per task (masks, depth map, boxes, text)."""
        return tuple(OUTPUT_OF_TASK[t] for t in self.tasks)

    @property
    def scores_boxes(self) -> bool:
        """True for detectors whose boxes carry a confidence (VLM boxes have none)."""
        return self.thresholds is not None

    def accepts(self, prompt: PromptKind) -> bool:
        """True when a user can prompt this model with ``prompt``."""
        return prompt in self.prompts

    @property
    def task(self) -> Task:
        """The model's home task."""
        return self.tasks[0]

    @property
    def is_api(self) -> bool:
        """True for models served by a vendor API rather than loaded here."""
        return self.checkpoint is None

    def estimated_bytes(self, dtype: str = "float32") -> int | None:
        """Rough weight bytes at ``dtype``; the cache measures real sizes after loading."""
        if self.params_m is None or self.is_api:
            return None
        return int(self.params_m * 1e6 * _BYTES_PER_PARAM[dtype])

    def working_bytes(self, dtype: str = "float32") -> int:
        """Memory one run of the home task needs on top of the weights (0 for API models)."""
        if self.is_api:
            return 0
        fixed_mb, share = _WORKING[self.task]
        return int(fixed_mb * 2**20 + share * (self.estimated_bytes(dtype) or 0))

    @property
    def hub_url(self) -> str | None:
        """Model card URL for Hub checkpoints (``owner/name``; not a path an engine serves from)."""
        if self.checkpoint and _REPO_ID.match(self.checkpoint):
            return f"https://huggingface.co/{self.checkpoint}"
        return None
