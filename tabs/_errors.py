"""Turn every failure into a short, specific `gr.Error`; tracebacks go to the log only."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from model_loaders.core.cache import is_out_of_memory, release_memory
from model_loaders.core.errors import InputError, ModelUnavailable

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def to_user_error(exc: BaseException) -> gr.Error:
    """Map an exception to the message a user sees."""
    if isinstance(exc, gr.Error):
        return exc
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
