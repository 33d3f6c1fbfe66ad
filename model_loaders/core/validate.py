"""Server-side validation of text and numbers from requests (the UI enforces neither a text cap nor finite numbers)."""

from __future__ import annotations

import math
from typing import Any

from model_loaders.core.errors import InputError


def finite_number(value: Any, name: str, lo: float | None = None, hi: float | None = None) -> float:
    """Return ``value`` as a finite float within [lo, hi].

    Raises:
        InputError: for non-numbers, NaN, infinities and values out of range.
    """
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number.") from None
    if not math.isfinite(number):
        raise InputError(f"{name} must be a finite number.")
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise InputError(f"{name} must be between {lo:g} and {hi:g}.")
    return number


def clean_text(value: Any, name: str, max_chars: int, *, required: bool = False, truncate: bool = False,
               missing: str = "") -> str:
    """Return ``value`` stripped and capped at ``max_chars``.

    NUL characters and lone surrogates are refused (they break tokenisers and logs).

    Args:
        value: the raw input (``None`` is treated as empty).
        name: field name for messages.
        max_chars: the cap.
        required: refuse empty/whitespace-only text.
        truncate: cut at the cap instead of refusing.
        missing: the message for empty text when ``required`` (default: "<name> is empty.").

    Raises:
        InputError: with a short message.
    """
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text.")
    if "\x00" in value:
        raise InputError(f"{name} contains a NUL character.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{name} contains invalid characters.") from None
    text = value.strip()
    if required and not text:
        raise InputError(missing or f"{name} is empty.")
    if len(text) > max_chars:
        if not truncate:
            raise InputError(f"{name} is too long ({len(text):,} characters; max {max_chars:,}).")
        text = text[:max_chars]
    return text
