"""One GPU wrapper for every handler that runs a model (ZeroGPU Spaces, and a test harness for them).

On a ZeroGPU Space a handler gets a GPU only inside ``spaces.GPU``, which runs it in a forked
worker process: its arguments, results and session state are pickled across, and it asks for a
*duration* up front. `on_gpu` applies that to a handler with a duration computed from the models
and input of each call (`model_loaders.core.gpu_time`). Elsewhere it changes nothing, except
under the ``fork`` boundary, which runs each call in a freshly forked child the way ZeroGPU does
(arguments and results pickled, nothing the child changes reaches the parent except what it
returns) so that tests prove every tab survives the boundary.

Rules this imposes on handlers (all of them follow them):
- state changes are returned, never only made in place (a worker's changes to its copy are lost);
- no CUDA tensors in results or state (`ImageEmbedding` pickles its features on the CPU);
- events data (``gr.SelectData``) crosses without its ``target`` component;
- a flag the user sets while a call runs (Ask's Stop) is a file, not a ``threading.Event``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import multiprocessing
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import gradio as gr

from model_loaders.core.gpu_time import GpuJob, gpu_seconds, on_zero_gpu
from tabs._errors import user_errors

log = logging.getLogger(__name__)

GPU_ATTR = "__vp_gpu__"  # set on every wrapped handler: its duration callable (tests enumerate it)
BOUNDARIES = ("none", "fork", "zerogpu")
FALLBACK_SECONDS = 60  # when a call's models cannot be read from its input (it is refused quickly)


def boundary(ctx: Any) -> str:
    """Which process boundary model calls cross: ``zerogpu`` on a ZeroGPU Space, ``fork`` when
    asked for (``VP_GPU_BOUNDARY=fork``: the test harness), else ``none``."""
    chosen = str(ctx.options.get("gpu_boundary") or os.environ.get("VP_GPU_BOUNDARY", "")).strip().lower()
    if chosen in BOUNDARIES:
        return chosen
    return "zerogpu" if on_zero_gpu() else "none"


class PlainEventData:
    """What a handler reads of a ``gr.EventData`` (``index``, ``value``, ``selected``...), without
    the component that fired it. ``gr.EventData`` itself does not pickle (its ``__getattr__``
    recurses while unpickling), and its ``target`` would drag the whole Blocks tree along."""

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.__dict__.update(attributes)


def _plain_event_data(value: Any) -> Any:
    if isinstance(value, gr.EventData):
        return PlainEventData({**{k: v for k, v in vars(value).items() if k != "target"}, "target": None})
    return value


def _plain_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return tuple(_plain_event_data(a) for a in args), {k: _plain_event_data(v) for k, v in kwargs.items()}


def on_gpu(ctx: Any, fn: Callable[..., Any], jobs: Callable[..., Iterable[GpuJob]]) -> Callable[..., Any]:
    """``fn`` (a handler, generator or not) as a GPU call.

    Args:
        ctx: the app context (models' sizes, what is loaded, which boundary).
        fn: the handler; it keeps its name, signature and docstring (API docs, MCP tool).
        jobs: called with the handler's arguments, returns the model calls it will make
            (`GpuJob`), from which the requested duration is computed.
    """

    def duration(*args: Any, **kwargs: Any) -> int:
        try:
            return gpu_seconds(ctx, list(jobs(*args, **kwargs)))
        except Exception:  # noqa: BLE001 - a bad input is refused by the handler itself
            return FALLBACK_SECONDS

    mode = boundary(ctx)
    if mode == "zerogpu":
        import spaces  # type: ignore[import-not-found]

        inner = spaces.GPU(fn, duration=duration)
    elif mode == "fork":
        inner = forked(fn)
    else:
        inner = fn

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_call(*args: Any, **kwargs: Any) -> Iterator[Any]:
            args, kwargs = _plain_args(args, kwargs)
            yield from inner(*args, **kwargs)

        wrapped: Callable[..., Any] = gen_call
    else:

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = _plain_args(args, kwargs)
            return inner(*args, **kwargs)

        wrapped = call
    wrapped = user_errors(wrapped)  # ZeroGPU's own errors (quota, duration) become short messages
    setattr(wrapped, GPU_ATTR, duration)
    return wrapped


# --- the fork boundary: ZeroGPU's process model, for tests and for trying it locally --------

_FORK = multiprocessing.get_context("fork")


class WorkerDied(RuntimeError):
    """The forked GPU call ended without a result (killed, crashed)."""


def _send(conn: Any, message: tuple[str, Any]) -> None:
    # Plain pickle, bytes through the pipe: torch's multiprocessing reducers would pass tensors as
    # shared-memory handles that die with the child; ZeroGPU pickles values too.
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _child(conn: Any, stop: Any, fn: Callable[..., Any], generator: bool) -> None:
    try:
        args, kwargs = pickle.loads(conn.recv_bytes())
        if generator:
            gen = fn(*args, **kwargs)
            for item in gen:
                if stop.is_set():
                    gen.close()
                    break
                _send(conn, ("item", item))
        else:
            _send(conn, ("ok", fn(*args, **kwargs)))
    except BaseException as exc:  # noqa: BLE001 - sent to the parent, which raises it
        try:
            _send(conn, ("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            _send(conn, ("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    _send(conn, ("end", None))
    conn.close()


def _start(
    fn: Callable[..., Any], generator: bool, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Any, Any]:
    parent, child = _FORK.Pipe()
    stop = _FORK.Event()
    proc = _FORK.Process(target=_child, args=(child, stop, fn, generator), daemon=True)
    proc.start()
    child.close()
    parent.send_bytes(pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL))  # as ZeroGPU does
    return proc, parent, stop


def _receive(conn: Any) -> tuple[str, Any]:
    try:
        return pickle.loads(conn.recv_bytes())
    except EOFError:
        raise WorkerDied("the GPU worker ended without a result") from None


def forked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run in a freshly forked child per call; arguments and results cross pickled."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_call(*args: Any, **kwargs: Any) -> Iterator[Any]:
            proc, conn, stop = _start(fn, True, args, kwargs)
            try:
                while True:
                    kind, value = _receive(conn)
                    if kind == "item":
                        yield value
                    elif kind == "error":
                        raise value
                    else:
                        return
            finally:
                stop.set()  # a closed stream (Stop, page closed) ends the child at its next item
                conn.close()
                proc.join(timeout=30)

        return gen_call

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        proc, conn, _ = _start(fn, False, args, kwargs)
        try:
            kind, value = _receive(conn)
            if kind == "error":
                raise value
            return value
        finally:
            conn.close()
            proc.join(timeout=30)

    return call


def model_at(position: int, tokens_at: int | None = None, tokens: int = 0) -> Callable[..., list[GpuJob]]:
    """The jobs of a handler that runs the one model whose key is its argument at ``position``;
    a generating handler gives its max new tokens at ``tokens_at`` (or a fixed ``tokens``)."""

    def jobs(*args: Any, **kwargs: Any) -> list[GpuJob]:
        asked = int(args[tokens_at]) if tokens_at is not None else tokens
        return [GpuJob(str(args[position]), tokens=asked)]

    return jobs


def models_at(position: int, task_at: int) -> Callable[..., list[GpuJob]]:
    """The jobs of a comparison: each model named at ``position`` (a list or comma-separated keys)
    runs once; on the ``ask`` task each writes up to the comparison's token limit."""
    from model_loaders.tasks.compare import ASK_MAX_NEW_TOKENS

    def jobs(*args: Any, **kwargs: Any) -> list[GpuJob]:
        keys = args[position]
        keys = keys.split(",") if isinstance(keys, str) else list(keys or [])
        tokens = ASK_MAX_NEW_TOKENS if args[task_at] == "ask" else 0
        return [GpuJob(str(k).strip(), tokens=tokens) for k in keys if str(k).strip()]

    return jobs


WORKFLOW_CROPS = 8  # crops a workflow's duration is asked for (the count is known only after detection)


def workflow_jobs(detector_at: int, vlm_at: int) -> Callable[..., list[GpuJob]]:
    """The jobs of a workflow: one detection, then one VLM answer per crop."""
    from model_loaders.tasks.workflow import MAX_NEW_TOKENS

    def jobs(*args: Any, **kwargs: Any) -> list[GpuJob]:
        return [GpuJob(str(args[detector_at])), GpuJob(str(args[vlm_at]), tokens=MAX_NEW_TOKENS, calls=WORKFLOW_CROPS)]

    return jobs
