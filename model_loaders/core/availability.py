"""Whether a model can run in this process, and which adapter module runs it.

Each family module in ``model_loaders/families/`` exposes ``load(spec, settings)``, returning a
bundle that implements the task protocols of ``core.protocols`` for the tasks the family
supports. The same ``load`` serves all three weights modes; only where the weights come from
differs. Which module runs which family is the registry's ``FAMILIES`` table.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Protocol

from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.registry import FAMILIES
from model_loaders.core.specs import ModelSpec, WeightsMode


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
    """Whether a model can run in this process, and if not, why (short text).

    Attributes:
        ok: it can run.
        status: a few words for tables and pickers ("ready", "gated: set HF_TOKEN", ...).
        reason: a sentence for the user, naming the model and what to do.
        kind: machine-readable reason (an ``UnavailableKind``), "" when ok.
    """

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
    return importlib.import_module(FAMILIES[spec.family].module)  # type: ignore[arg-type,return-value]


def availability(spec: ModelSpec, weights: WeightsMode) -> Availability:
    """Can ``spec`` run here under ``weights``, memory aside? Cheap: nothing is imported or loaded.

    The order follows what a user must fix first: code missing, extra missing, key missing,
    then gating (only for real Hub weights). Memory is checked by ``AppContext.availability``.
    """
    from model_loaders.core.hub import hf_token

    family = FAMILIES.get(spec.family)
    if family is not None and family.not_run is not None:
        status, why = family.not_run
        return Availability(False, status, f"{spec.name} {why}", "remote_code")
    if spec.needs_remote_code:
        return Availability(False, "needs its authors' code", f"{spec.name} runs only with its own code from the Hub, "
                            "which this app never executes.", "remote_code")  # fmt: skip
    if family is None or family.module is None or not _module_exists(family.module):
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
