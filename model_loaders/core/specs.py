"""`ModelSpec`: everything the UI shows and the loader needs about one model."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Task = Literal["segment", "depth", "detect", "ask"]
Commercial = Literal["yes", "no", "conditions"]
WeightsMode = Literal["hub", "random", "tiny"]

TASKS: tuple[Task, ...] = ("segment", "depth", "detect", "ask")
WEIGHTS_MODES: tuple[WeightsMode, ...] = ("hub", "random", "tiny")
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
class ModelSpec:
    """One model: identity, licence, and how to load it.

    Attributes:
        key: unique registry key, used in the UI, the API and the cache.
        name: human-readable name.
        family: adapter family; ``model_loaders.core.adapters.FAMILY_MODULES`` maps it to code.
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

    def __post_init__(self) -> None:
        if not self.tasks or any(t not in TASKS for t in self.tasks):
            raise ValueError(f"{self.key}: tasks must be a non-empty subset of {TASKS}")
        if self.commercial not in ("yes", "no", "conditions"):
            raise ValueError(f"{self.key}: bad commercial value {self.commercial!r}")
        if self.revision is not None and not (_SHA.match(self.revision) or self.revision_note):
            raise ValueError(f"{self.key}: revision must be a 40-hex commit sha")
        if self.cuda_dtype not in _BYTES_PER_PARAM:
            raise ValueError(f"{self.key}: unknown dtype {self.cuda_dtype}")

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
        """Model card URL for Hub checkpoints."""
        if self.checkpoint and "/" in self.checkpoint:
            return f"https://huggingface.co/{self.checkpoint}"
        return None
