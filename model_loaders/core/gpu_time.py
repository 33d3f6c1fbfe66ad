"""How long a GPU call will take: the duration a ZeroGPU Space asks for before each model call.

ZeroGPU checks the requested duration against the visitor's remaining quota and the tier's
cap *before* the call runs, and queues shorter requests first. Asking for the default 60 s for
a SAM click wastes priority; asking 60 s for a 7B model writing 1,000 tokens gets the call
aborted. So each call asks for what its models and input need, from the registry's sizes:

- a vision forward pass (segment, depth, detect) is memory-bound and small: a floor of
  ``VISION_SECONDS``;
- generation reads every weight once per token: ``tokens x weight bytes / effective bandwidth``,
  the effective bandwidth being ~30 % of half an RTX Pro 6000's 1.8 TB/s (what HF ``generate``
  reaches, `reference/performance.md` §4c), plus a prefill allowance;
- a model outside the preload set is read from disk inside the call: ``LOAD_S_PER_GB`` each GB;
- a comparison or a workflow asks for the sum of its calls.

The result is clamped to ``[MIN_SECONDS, MAX_SECONDS]``: ZeroGPU refuses a request above the
tier's cap ("illegal duration") even when the real work would be shorter. Gradio-free.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

MIN_SECONDS = 5
MAX_SECONDS = 120  # under the cap every logged-in tier allows; a longer call is stopped, not refused
VISION_SECONDS = 5.0
PREFILL_SECONDS = 3.0
EFFECTIVE_BANDWIDTH = 0.3 * 0.9e12  # bytes/s: ~30 % of half an RTX Pro 6000 (ZeroGPU "large")
LOAD_S_PER_GB = 1.5
UNKNOWN_SECONDS = 30.0  # a call whose model cannot be read (the handler refuses it at once anyway)


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space (the variable the ``spaces`` package reads)."""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("true", "1")


@dataclass(frozen=True)
class GpuJob:
    """One model call inside a GPU request: the model and, for generation, the tokens asked for."""

    key: str
    tokens: int = 0
    calls: int = 1


def job_seconds(ctx: object, job: GpuJob) -> float:
    """Seconds one job needs: its passes or its tokens, plus loading when the model is not held."""
    try:
        spec = ctx.spec(job.key)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - an unknown key is refused by the handler, quickly
        return UNKNOWN_SECONDS
    if spec.is_api:
        return 0.0  # answered elsewhere: the GPU is not used
    weights = spec.estimated_bytes(ctx.settings.dtype_name(spec)) or 0  # type: ignore[attr-defined]
    if spec.task == "ask" or job.tokens:
        per_call = PREFILL_SECONDS + max(job.tokens, 1) * weights / EFFECTIVE_BANDWIDTH
    else:
        per_call = VISION_SECONDS
    seconds = per_call * max(job.calls, 1)
    if not ctx.cache.is_loaded(ctx.cache_key(spec)):  # type: ignore[attr-defined]
        seconds += LOAD_S_PER_GB * weights / 1e9
    return seconds


def gpu_seconds(ctx: object, jobs: Iterable[GpuJob]) -> int:
    """The duration to request for ``jobs`` run in one GPU call, clamped to what ZeroGPU accepts."""
    total = sum(job_seconds(ctx, job) for job in jobs)
    return int(min(MAX_SECONDS, max(MIN_SECONDS, round(total + 0.5))))
