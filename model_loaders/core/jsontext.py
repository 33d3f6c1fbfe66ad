"""JSON text from users and models, parsed with a size and nesting cap.

Python's ``json`` parser recurses once per nesting level: 3,000 nested brackets end in a
``RecursionError`` deep in the parser (caught only by a catch-all, with a useless message). Every
JSON the app parses from a request or a model answer is measured first with `json_depth`, a
linear scan, and refused with a short message when it is nested deeper than the cap.
"""

from __future__ import annotations

import json
from typing import Any

from model_loaders.core.errors import InputError

MAX_JSON_DEPTH = 64  # nesting of any JSON the app parses from users or models




def json_depth(text: str, stop_at: int | None = None) -> int:
    """Deepest nesting of ``[``/``{`` in JSON ``text`` (brackets inside strings do not count).

    A linear scan, run before ``json.loads`` so that deeply nested input is refused with a
    message instead of a ``RecursionError`` deep inside the parser.
    """
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_at is not None and deepest > stop_at:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def loads(text: str, what: str, max_chars: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse user JSON ``text`` with a size and nesting cap.

    Raises:
        InputError: too long, nested too deeply, or not JSON, naming ``what``.
    """
    if len(text) > max_chars:
        raise InputError(f"{what} is too long ({len(text):,} characters; max {max_chars:,}).")
    if json_depth(text, stop_at=max_depth) > max_depth:
        raise InputError(f"{what} is nested too deeply (max {max_depth} levels).")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}).") from None


def value_depth(value: Any, stop_at: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of an already-parsed JSON value (lists and dicts), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            if deepest > stop_at:
                return deepest
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest
