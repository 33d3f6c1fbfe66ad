"""Family adapters: which code loads which model, and whether it can run here.

Each family module (for example ``model_loaders/sam2.py``) exposes
``load(spec: ModelSpec, settings: LoadSettings) -> object`` plus its own task functions. The
same ``load`` serves all three weights modes; only the source of the weights differs.
A family whose module does not exist yet shows as "coming" in the Models tab.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Protocol

from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.specs import ModelSpec, WeightsMode

# family -> module that implements it (one module may serve several families).
FAMILY_MODULES: dict[str, str | None] = {
    "sam2": "model_loaders.families.sam2",
    "depth_anything": "model_loaders.families.depth_anything",
    "hf_detector": "model_loaders.families.detectors",
    "zero_shot_detector": "model_loaders.families.detectors",
    "yolo": "model_loaders.families.yolo",
    "florence2": "model_loaders.families.florence2",
    "qwen2_5_vl": "model_loaders.families.vlm",
    "paligemma": "model_loaders.families.vlm",
    "mllama": "model_loaders.families.vlm",
    "qwen3_vl": "model_loaders.families.vlm",
    "smolvlm": "model_loaders.families.vlm",
    "gemini": "model_loaders.families.gemini",
    # Families that are registered (so users see them and their licences) but never run here.
    "cogvlm": None,
    "rfdetr_plus": None,
}

NOT_RUN_HERE: dict[str, tuple[str, str]] = {
    "cogvlm": ("needs remote code", "needs its own remote code (trust_remote_code), which this app never runs: not run locally."),
    "rfdetr_plus": (
        "not run here",
        "ships only in Roboflow's rfdetr-plus package under its Platform Model License: not run here.",
    ),
}


@dataclass(frozen=True)
class LoadSettings:
    """What changes the loaded object, besides the spec (and so part of the cache key).

    Attributes:
        weights: ``hub`` (real checkpoint), ``random`` (real size) or ``tiny`` (shrunken).
        device: torch device string (``cpu``, ``cuda``, ``cuda:0``, ``mps``).
    """

    weights: WeightsMode
    device: str

    def dtype_name(self, spec: ModelSpec) -> str:
        """float32 on CPU/MPS; the spec's preferred dtype on CUDA."""
        return spec.cuda_dtype if self.device.startswith("cuda") else "float32"


class FamilyModule(Protocol):
    """What a family adapter module provides."""

    def load(self, spec: ModelSpec, settings: LoadSettings) -> Any: ...


@dataclass(frozen=True)
class Availability:
    """Whether a model can run in this process, and if not, why (short text)."""

    ok: bool
    status: str
    reason: str = ""
    kind: str = ""


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def family_module(spec: ModelSpec) -> FamilyModule:
    """Import and return the adapter module for ``spec``.

    Raises:
        ModelUnavailable: when the family has no adapter (yet, or by design).
    """
    avail = availability(spec, weights="random")
    if not avail.ok and avail.kind in ("coming", "remote_code", "missing_extra"):
        raise ModelUnavailable(spec.key, avail.kind, avail.reason)  # type: ignore[arg-type]
    return importlib.import_module(FAMILY_MODULES[spec.family])  # type: ignore[arg-type,return-value]


def hf_token() -> str | None:
    """The Hugging Face token from the environment, if any."""
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None


def availability(spec: ModelSpec, weights: WeightsMode) -> Availability:
    """Can ``spec`` run here under ``weights``? Checks are cheap: nothing is imported or loaded.

    The order follows what a user must fix first: code missing, extra missing, key missing,
    then gating (only for real Hub weights).
    """
    if spec.needs_remote_code or spec.family in NOT_RUN_HERE:
        status, why = NOT_RUN_HERE.get(spec.family, NOT_RUN_HERE["cogvlm"])
        return Availability(False, status, f"{spec.name} {why}", "remote_code")
    module = FAMILY_MODULES.get(spec.family)
    if module is None or not _module_exists(module):
        return Availability(False, "coming", f"{spec.name}: support is coming in a later release.", "coming")
    if spec.extra_module and not _module_exists(spec.extra_module):
        return Availability(
            False,
            f"install the `{spec.extra}` extra",
            f"{spec.name} needs the optional `{spec.extra}` extra: pip install 'vision-playground[{spec.extra}]'.",
            "missing_extra",
        )
    if spec.env_key and not os.environ.get(spec.env_key):
        return Availability(
            False, f"set {spec.env_key}", f"{spec.name} needs the {spec.env_key} environment variable.", "missing_key"
        )
    if weights == "hub" and spec.gated and not hf_token():
        return Availability(
            False,
            "gated: set HF_TOKEN",
            f"{spec.name} is gated: accept its terms on {spec.hub_url} and set HF_TOKEN.",
            "gated",
        )
    if weights != "hub" and spec.is_api:
        return Availability(True, "ready (calls the API)")
    return Availability(True, "ready")
