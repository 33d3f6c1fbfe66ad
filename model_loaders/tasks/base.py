"""What every task shares: checking a user's model pick, decoding the image once, and the seam
where backends plug in.

The task layer is the only place that runs a model. Each task module (``segment``, ``depth``,
``detect``, ``ask``) asks `model_for` for an object implementing its protocol
(``core.protocols``) and never cares where it runs:

- the ``LocalBackend`` (the default) pins the model in this process's shared cache;
- a remote backend (an OpenAI-compatible engine for ``ask``, Ray Serve for the vision tasks)
  registers itself in ``ctx.backends`` and is asked first; it says which (model, task) pairs
  it serves.

Tabs, the API, MCP tools, Compare and Workflow all call the task functions, so the same model
with the same settings gives the same result everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np

from model_loaders.core.errors import InputError, ModelUnavailable
from model_loaders.core.images import DecodedImage, decode_image
from model_loaders.core.protocols import TASK_PROTOCOLS, Batchable
from model_loaders.core.registry import get_spec
from model_loaders.core.results import Timings
from model_loaders.core.specs import ModelSpec, Task

NO_IMAGE = "Upload an image or pick an example first."
DOING = {"ask": "answer questions", "detect": "detect objects", "segment": "segment", "depth": "estimate depth",
         "track": "track objects in a video"}  # fmt: skip
# The part of a model a task loads (SAM 2.1: the image model, or the video model with its memory).
PART_OF_TASK = {"track": "video"}


class Backend(Protocol):
    """Somewhere models run. ``serves`` says which (model, task) pairs; ``model`` yields one."""

    name: str

    def serves(self, spec: ModelSpec, task: Task) -> bool:
        """True when this backend runs ``spec`` for ``task``."""
        ...

    def model(self, ctx: Any, spec: ModelSpec, task: Task, timings: Timings) -> contextlib.AbstractContextManager[Any]:
        """A context manager yielding an object implementing ``task``'s protocol."""
        ...


class LocalBackend:
    """In this process, through the shared model cache (pinned for the duration of the block)."""

    name = "local"

    def serves(self, spec: ModelSpec, task: Task) -> bool:
        """The local backend runs everything that can run here."""
        return True

    def model(self, ctx: Any, spec: ModelSpec, task: Task, timings: Timings) -> contextlib.AbstractContextManager[Any]:
        """Pin ``spec``'s model (the part ``task`` needs) in ``ctx``'s cache."""
        return ctx.use(spec.key, timings, part=PART_OF_TASK.get(task, ""))


LOCAL = LocalBackend()


def backend_for(ctx: Any, spec: ModelSpec, task: Task) -> Backend:
    """The first configured backend that serves (``spec``, ``task``); the local one otherwise."""
    for backend in getattr(ctx, "backends", ()):
        if backend.serves(spec, task):
            return backend
    return LOCAL


@contextlib.contextmanager
def model_for(ctx: Any, spec: ModelSpec, task: Task, timings: Timings) -> Iterator[Any]:
    """An object implementing ``task``'s protocol for ``spec``, from whichever backend serves it.

    Raises:
        ModelUnavailable: the model cannot run (here or on its backend).
    """
    with backend_for(ctx, spec, task).model(ctx, spec, task, timings) as model:
        if not isinstance(model, TASK_PROTOCOLS[task]):
            raise ModelUnavailable(spec.key, "load_failed", f"{spec.name} cannot {DOING[task]} here.")
        yield model


def _shapes(value: Any) -> Any:
    """What must match for two inputs to stack: their tensors' shapes."""
    if isinstance(value, dict):
        return tuple((k, _shapes(v)) for k, v in sorted(value.items()))
    return tuple(getattr(value, "shape", ())) or type(value).__name__


def run_batched(ctx: Any, key: str, model: Any, image: np.ndarray, timings: Timings, alone: Callable[[], Any]) -> Any:
    """``model`` on ``image`` through the model's batching queue when this app batches and the
    model can (`Batchable`): the forward pass is shared with concurrent requests; preprocessing
    and postprocessing stay here. Otherwise ``alone()``, the model's own single-image call.

    The "inference" time of a batched request includes its wait for the others (at most the
    batcher's ``max_wait_s``).
    """
    batchers = getattr(ctx, "batchers", None)
    if batchers is None or not batchers.enabled or not isinstance(model, Batchable):
        return alone()
    prepared = model.prepare(image, timings)
    if prepared is None:
        return alone()
    with timings.stage("inference"):
        group = (id(model), _shapes(prepared))
        output = batchers.get(key).submit(model.forward_batch, prepared, group)
    return model.finish(output, image.shape[:2], timings)


def checked_spec(ctx: Any, key: Any, task: Task, what: str = "") -> ModelSpec:
    """The spec of a user-picked ``key`` that can do ``task`` and run here, before anything loads.

    Raises:
        InputError: no model picked, an unknown model, or one that cannot do ``task``.
        ModelUnavailable: a model that cannot run here (with the reason).
    """
    if not isinstance(key, str) or not key.strip():
        raise InputError("Choose a model.")
    try:
        spec = ctx.spec(key.strip()) if hasattr(ctx, "spec") else get_spec(key.strip())
    except ModelUnavailable as exc:
        raise InputError(exc.message) from None
    if task not in spec.tasks:
        raise InputError(f"{spec.name} cannot {DOING[task]}: pick {what or f'a model of the {task} task'}.")
    avail = ctx.availability(spec)
    if not avail.ok:
        raise ModelUnavailable(spec.key, avail.kind, avail.reason)  # type: ignore[arg-type]
    return spec


def image_of(ctx: Any, source: Any, **kwargs: Any) -> DecodedImage:
    """A decoded image from a request's value (through the upload gate), or one decoded already."""
    if isinstance(source, DecodedImage):
        return source
    if source is None:
        raise InputError(NO_IMAGE)
    return decode_image(source, gate=ctx.uploads, **kwargs)


def models_for(
    ctx: Any, task: Task, where: Any = None
) -> tuple[list[ModelSpec], list[tuple[ModelSpec, str]]]:
    """Models that can do ``task`` (home-task models first, registry order; then models only a
    serving engine knows).

    Args:
        ctx: the app context (its availability checks: code, extras, keys, gating, memory).
        task: the task.
        where: an optional capability test on the spec (e.g. "scores its boxes").

    Returns:
        (runnable here, [(not runnable here, why)]).
    """
    from model_loaders.core.registry import specs_for_task

    ready: list[ModelSpec] = []
    not_here: list[tuple[ModelSpec, str]] = []
    extra = [s for s in getattr(ctx, "extra_specs", list)() if task in s.tasks]
    for spec in [*specs_for_task(task), *extra]:
        if where is not None and not where(spec):
            continue
        avail = ctx.availability(spec)
        if avail.ok:
            ready.append(spec)
        else:
            not_here.append((spec, avail.status))
    return ready, not_here
