"""Turn every failure into a short, specific `gr.Error`; tracebacks go to the log only."""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from model_loaders.core.cache import is_out_of_memory, release_memory
from model_loaders.core.errors import InputError, ModelUnavailable

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def zero_gpu_message(err: gr.Error) -> str | None:
    """A short message for an error the ``spaces`` package raised on a ZeroGPU Space (its own are
    long, with links and hints meant for API callers); ``None`` for any other error."""
    title = str(getattr(err, "title", "") or "")
    if not title.startswith("ZeroGPU"):
        return None
    text = str(err.message if hasattr(err, "message") else err)
    wait = re.search(r"[Tt]ry again in ([0-9:]+)", text)
    if "illegal duration" in title:
        asked = re.search(r"\((\d+)s\)", text)
        size = f" ({asked.group(1)} s)" if asked else ""
        return (f"This run needs more GPU time{size} than this Space allows: "
                "ask for fewer tokens, models or crops.")  # fmt: skip
    if "quota" in title:
        if "Space app has reached its GPU limit" in text:
            return "This Space has used up its GPU time for now; try again later."
        return "Your GPU time on this Space is used up" + (f"; try again in {wait.group(1)}." if wait else " for now.")
    if "pending credits" in title:
        return "Too many of your GPU runs are waiting; try again when one has finished."
    if "aborted" in text:
        return "The GPU run was stopped before it finished (it took longer than asked for); try again."
    return "The GPU run failed; try again."


def to_user_error(exc: BaseException) -> gr.Error:
    """Map an exception to the message a user sees."""
    if isinstance(exc, gr.Error):
        short = zero_gpu_message(exc)
        return exc if short is None else gr.Error(short, print_exception=False, duration=8)
    if isinstance(exc, (InputError, ModelUnavailable)):
        return gr.Error(str(exc), print_exception=False, duration=8)
    if is_out_of_memory(exc):
        return gr.Error("Out of memory: try a smaller image or a smaller model.", print_exception=False, duration=8)
    return gr.Error(f"Something went wrong ({type(exc).__name__}); it has been logged.", print_exception=False, duration=8)


def _handle(fn: Callable[..., Any], exc: Exception) -> gr.Error:
    err = to_user_error(exc)
    if not isinstance(exc, (gr.Error, InputError, ModelUnavailable)):
        log.exception("unexpected error in %s", fn.__qualname__)
    elif isinstance(exc, ModelUnavailable):
        log.warning("%s: model unavailable: %s", fn.__qualname__, exc)
    return err


def user_errors(fn: F) -> F:
    """Decorate an event handler (function or generator) so users only see `gr.Error`s.

    Out-of-memory also frees cached memory (after leaving the ``except`` block) so the next
    request can succeed.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            err: gr.Error | None = None
            oom = False
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - mapped to a user message
                err, oom = _handle(fn, exc), is_out_of_memory(exc)
            if oom:
                release_memory()
            if err is not None:
                raise err

        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        err: gr.Error | None = None
        oom = False
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped to a user message
            err, oom = _handle(fn, exc), is_out_of_memory(exc)
        if oom:
            release_memory()
        raise err

    return wrapper  # type: ignore[return-value]
