"""Run any model key on a decoded image, one task at a time, through the shared cache.

The Compare and Workflow tabs use these thin functions; the model code itself lives in the
family modules (``sam2``, ``depth_anything``, ``detectors``, ``yolo``, ``florence2``, ``vlm``).
Each run pins its model only while it runs (``ctx.use``), so a comparison whose models
together exceed the memory budget still completes: the cache evicts between runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from model_loaders.adapters import availability
from model_loaders.errors import InputError, ModelUnavailable
from model_loaders.registry import get_spec
from model_loaders.results import Timings
from model_loaders.specs import TASKS, ModelSpec

log = logging.getLogger(__name__)

MIN_COMPARE = 2
MAX_COMPARE = 4

# ``run(bundle, spec, timings) -> typed result``: the part of a run that needs the loaded model.
BundleRun = Callable[[Any, ModelSpec, Timings], Any]


@dataclass
class ModelRun:
    """One model's outcome in a comparison.

    Attributes:
        key: registry key.
        result: the typed result (``Detections``, ``DepthResult``, ``TextResult``) or ``None``.
        timings: load / preprocess / inference / postprocess milliseconds.
        error: short user-facing reason when this model failed (the others still ran).
    """

    key: str
    result: Any = None
    timings: Timings = field(default_factory=Timings)
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when the model produced a result."""
        return not self.error


def check_compare_keys(task: str, keys: Sequence[str] | None, weights: str) -> list[ModelSpec]:
    """Validate a comparison request before anything loads.

    Raises:
        InputError: unknown task; fewer than 2 or more than 4 models; a model listed twice;
            an unknown model; a model that cannot do ``task``; a model that cannot run here.
    """
    if task not in TASKS:
        raise InputError(f"Pick a task: one of {', '.join(TASKS)}.")
    keys = [str(k) for k in (keys or [])]
    if len(keys) < MIN_COMPARE:
        raise InputError(f"Pick at least {MIN_COMPARE} models to compare.")
    if len(keys) > MAX_COMPARE:
        raise InputError(f"Pick at most {MAX_COMPARE} models to compare (you picked {len(keys)}).")
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise InputError(f"Each model can be picked once: {', '.join(dupes)} is listed twice.")
    specs: list[ModelSpec] = []
    for key in keys:
        try:
            spec = get_spec(key)
        except ModelUnavailable as exc:
            raise InputError(exc.message) from None
        if task not in spec.tasks:
            raise InputError(f"{spec.name} cannot {task}: pick models of the {task} task.")
        avail = availability(spec, weights)  # type: ignore[arg-type]
        if not avail.ok:
            raise InputError(avail.reason)
        specs.append(spec)
    return specs


def run_model(ctx: Any, key: str, run: BundleRun, timings: Timings | None = None) -> Any:
    """Pin ``key`` for exactly the duration of ``run`` and return its typed result.

    Raises:
        ModelUnavailable: the model cannot load here.
    """
    timings = timings if timings is not None else Timings()
    spec = get_spec(key)
    with ctx.use(key, timings) as bundle:
        result = run(bundle, spec, timings)
    if hasattr(result, "metadata") and isinstance(getattr(result, "metadata"), dict):
        result.metadata.setdefault("model", key)
        result.metadata["timings"] = timings.as_dict()
    return result


def run_sequentially(ctx: Any, keys: Sequence[str], run: BundleRun) -> list[ModelRun]:
    """Run ``keys`` one after another on the same input, each pinned only while it runs.

    A model that fails (cannot load, out of memory) gets its error in its `ModelRun`; the
    others still run. Input errors (bad prompt, bad image) stop the whole comparison, since
    they would fail for every model.
    """
    from model_loaders.cache import is_out_of_memory, release_memory

    runs: list[ModelRun] = []
    for key in keys:
        timings = Timings()
        err = ""
        result = None
        try:
            result = run_model(ctx, key, run, timings)
        except ModelUnavailable as exc:
            err = exc.message
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - one model's crash must not lose the others' results
            if is_out_of_memory(exc):
                err = f"{key}: out of memory; try fewer or smaller models."
            else:
                log.exception("compare: %s failed", key)
                err = f"{key} failed ({type(exc).__name__}); it has been logged."
        if err and "out of memory" in err:
            release_memory()  # outside the except block, so the frames holding tensors are gone
        runs.append(ModelRun(key=key, result=result, timings=timings, error=err))
    return runs
