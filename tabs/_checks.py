"""Input checks that run before a model does (Gradio validators).

A mistake that needs no model to find (no image, no classes, an empty question, a schema that
is not valid, fewer than two models) is shown on the input it concerns; nothing runs and the
results on screen stay as they are. The checks are the task layer's own (the same functions the
run calls), so the UI and the API refuse the same things with the same words.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import gradio as gr

from model_loaders.core.errors import InputError, ModelUnavailable
from model_loaders.core.images import ImageInputError, decode_image
from model_loaders.tasks.base import NO_IMAGE, checked_spec

log = logging.getLogger(__name__)


def problem(check: Callable[[], Any]) -> str | None:
    """The user-facing message ``check()`` raises, or ``None`` when it passes.

    Only the app's own input errors count; anything else is left for the run to report (a
    check must never block a request by crashing).
    """
    try:
        check()
    except (InputError, ModelUnavailable) as exc:
        return str(exc)
    except Exception:  # noqa: BLE001 - the run reports it with its own message
        log.exception("input check %s failed", getattr(check, "__qualname__", check))
    return None


def no_image(value: Any) -> str | None:
    """The message when an image input is empty (decoding is the run's job)."""
    empty = value is None or value == "" or (isinstance(value, dict) and not value.get("path") and not value.get("url"))
    return NO_IMAGE if empty else None


def model_problem(ctx: Any, task: Any, key: Any, what: str = "") -> str | None:
    """Why ``key`` cannot do ``task`` here, or ``None``."""
    return problem(lambda: checked_spec(ctx, key, task, what))


def validator(fn: Callable[..., dict[str, str | None]]) -> Callable[..., list[dict[str, Any]]]:
    """Turn ``fn(*inputs) -> {parameter name: message or None}`` into a Gradio validator.

    The validator answers one ``gr.validate`` per input, in the order of ``fn``'s parameters, so
    each message shows on its own input.
    """
    names = [p.name for p in inspect.signature(fn).parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]  # fmt: skip

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        try:
            found = fn(*args, **kwargs) or {}
        except Exception:  # noqa: BLE001 - never block a request because a check crashed
            log.exception("validator %s failed", fn.__qualname__)
            found = {}
        messages = [found.get(names[i]) if i < len(names) else None for i in range(len(args))]
        return [gr.validate(not m, m or "") for m in messages]

    return run


def readable_upload(ctx: Any, value: Any) -> str | None:
    """Why an uploaded file cannot be used as an image, or ``None`` (decodes it once, cheaply)."""
    if no_image(value):
        return None
    try:
        decode_image(value, gate=ctx.uploads, working_max_side=64)
    except ImageInputError as exc:
        return str(exc)
    return None


def guard_upload(ctx: Any, image: Any) -> None:
    """Refuse a file that is not a usable image as soon as it lands in ``image``.

    The input goes back to the last good image (or empty) instead of showing a broken picture,
    the reason is a short toast, and nothing else on the page changes.
    """
    last_good = gr.State(None)

    def check(value: Any, previous: Any, request: gr.Request) -> tuple[Any, Any]:
        why = readable_upload(ctx, value)
        if why is None:
            return gr.skip(), value
        if _first_report(getattr(request, "session_hash", None), value):
            gr.Warning(why, duration=6)
        return previous, gr.skip()

    image.change(check, [image, last_good], [image, last_good], api_visibility="private", preprocess=False,
                 postprocess=False, show_progress="hidden", concurrency_limit=4)  # fmt: skip


_REPORTED: dict[tuple[Any, Any], float] = {}
_REPORTED_LOCK = threading.Lock()
REPORT_WINDOW_S = 10.0


def _first_report(session: Any, value: Any) -> bool:
    """True the first time a refused file is reported to a session (the browser announces one
    upload as two changes, which may run at the same time: one message, not two)."""
    key = (session, value.get("path") if isinstance(value, dict) else repr(value)[:200])
    now = time.monotonic()
    with _REPORTED_LOCK:
        for old in [k for k, t in _REPORTED.items() if now - t > REPORT_WINDOW_S]:
            del _REPORTED[old]
        if key in _REPORTED:
            return False
        _REPORTED[key] = now
        return True
