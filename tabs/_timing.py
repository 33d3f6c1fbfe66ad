"""The one timing line under every result: what took how long, where, with which model and weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from model_loaders.core.registry import REGISTRY
from model_loaders.core.results import ENGINE_WEIGHTS, Timings

ON_DEMAND_MS = 50.0
# ZeroGPU: a model outside the preload set was read from disk inside this GPU call.
ON_DEMAND_NOTE = ("loaded on demand: this model is not kept ready on this Space (VP_PRELOAD), so its weights "
                  "were loaded inside this GPU call, which made it slower")  # fmt: skip


def _ms(value: float) -> str:
    return f"{value:,.0f} ms"


def timing_line(ctx: Any, timings: Timings | dict[str, Any] | None, lead: Sequence[str] = (), stages: bool = True) -> str:
    """One line: task-specific parts first, then stage times, device, model and weights mode.

    Args:
        ctx: the app context (device and weights mode when the timings lack them, the warning).
        timings: the run's `Timings` (or its ``as_dict()``); ``None`` for a line without a run.
        lead: parts that come first ("encode: cached", "first token 210 ms", ...).
        stages: include preprocess / inference / postprocess times.
    """
    t = timings.as_dict() if isinstance(timings, Timings) else dict(timings or {})
    parts = list(lead)
    if stages and t:
        parts += [f"{name} {_ms(t.get(f'{name}_ms', 0.0))}" for name in ("preprocess", "inference", "postprocess")]
        parts += [f"{k.removesuffix('_ms')} {_ms(v)}" for k, v in t.items()
                  if k.endswith("_ms") and k not in ("load_ms", "preprocess_ms", "inference_ms", "postprocess_ms")]  # fmt: skip
    model = str(t.get("model") or "")
    if t.get("load_ms", 0.0) >= 1:
        parts.append(f"model load {_ms(t['load_ms'])}")
    on_demand = t.get("load_ms", 0.0) >= ON_DEMAND_MS and ctx.options.get("on_demand_note") and model
    if on_demand and model not in ctx.options.get("preloaded", ()):
        parts.append(ON_DEMAND_NOTE)
    spec = REGISTRY.get(model)
    if spec is None and model:  # a model only a serving engine knows
        spec = next((s for s in getattr(ctx, "extra_specs", list)() if s.key == model), None)
    parts += [f"device `{t.get('device') or ctx.settings.device}`"]
    if model:
        parts.append(f"model **{spec.name if spec else model}**")
    parts.append(f"weights `{t.get('weights') or ctx.settings.weights}`")
    line = " · ".join(parts)
    if ctx.weights_warning and t.get("weights") != ENGINE_WEIGHTS:  # an engine runs its own real weights
        line += f"\n\n⚠️ **{ctx.weights_warning}**"
    return line
