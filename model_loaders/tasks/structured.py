"""Structured output: pull JSON out of a model answer and validate it against a JSON Schema.

Models wrap JSON in code fences or prose ("Sure! Here it is: ..."); extraction is lenient,
validation is strict. A schema that is not itself valid JSON Schema is the user's input error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from model_loaders.core.errors import InputError
from model_loaders.families.grounding import extract_json_text

MAX_SCHEMA_CHARS = 20_000

PRESETS: dict[str, dict[str, Any]] = {
    "book": {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "author": {"type": "string"},
            "publisher": {"type": "string"},
        },
        "required": ["title", "author", "publisher"],
    },
    "objects": {
        "type": "object",
        "properties": {
            "objects": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "count": {"type": "integer", "minimum": 0}},
                    "required": ["name"],
                },
            }
        },
        "required": ["objects"],
    },
    "receipt": {
        "type": "object",
        "properties": {
            "merchant": {"type": "string"},
            "date": {"type": "string"},
            "total": {"type": "number"},
            "currency": {"type": "string"},
        },
        "required": ["merchant", "total"],
    },
}


@dataclass
class StructuredResult:
    """The JSON found in an answer and whether it fits the schema.

    Attributes:
        data: the parsed JSON value, or ``None`` when no JSON could be read.
        valid: True only when JSON was found and it validates.
        errors: why it is invalid (no JSON, or schema violations with their paths).
    """

    data: Any = None
    valid: bool = False
    errors: list[str] = field(default_factory=list)


def load_schema(schema: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """Parse and check a user's JSON Schema (text or dict); a preset name is accepted too.

    Returns:
        The schema dict, or ``None`` when no schema was given.

    Raises:
        InputError: not JSON, not an object, or not a valid JSON Schema.
    """
    import jsonschema

    if schema is None or (isinstance(schema, str) and not schema.strip()):
        return None
    if isinstance(schema, str):
        text = schema.strip()
        if text in PRESETS:
            return PRESETS[text]
        if len(text) > MAX_SCHEMA_CHARS:
            raise InputError(f"The JSON schema is too long (max {MAX_SCHEMA_CHARS:,} characters).")
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"The JSON schema is not valid JSON: {exc.msg} (line {exc.lineno}).") from None
    if not isinstance(schema, dict):
        raise InputError("The JSON schema must be a JSON object.")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InputError(f"The JSON schema is not a valid JSON Schema: {exc.message}") from None
    return schema


def extract_json(text: str) -> Any:
    """The first JSON value in ``text`` (inside a code fence, or after prose).

    Raises:
        ValueError: when no JSON value can be read.
    """
    snippet = extract_json_text(text or "")
    if snippet is None:
        raise ValueError("no JSON found in the answer")
    decoder = json.JSONDecoder()
    last_error: json.JSONDecodeError | None = None
    best: tuple[int, Any] | None = None
    # Try each opening bracket and keep the longest value: prose may hold a stray "[1]"
    # before the real JSON. Starts inside an already-found value are skipped.
    i = 0
    while i < len(snippet):
        if snippet[i] in "[{":
            try:
                value, end = decoder.raw_decode(snippet, i)
            except json.JSONDecodeError as exc:
                last_error = last_error or exc
            else:
                if best is None or end - i > best[0]:
                    best = (end - i, value)
                i = end
                continue
        i += 1
    if best is not None:
        return best[1]
    raise ValueError(f"could not parse JSON: {last_error.msg if last_error else 'no object'}")


def validate_answer(text: str, schema: dict[str, Any]) -> StructuredResult:
    """Extract JSON from ``text`` and validate it against ``schema`` (already checked)."""
    import jsonschema

    try:
        data = extract_json(text)
    except ValueError as exc:
        return StructuredResult(None, False, [str(exc)])
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'/'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
        for err in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    ]
    return StructuredResult(data, not errors, errors)


def schema_instruction(schema: dict[str, Any]) -> str:
    """Text appended to the question so the model answers with matching JSON."""
    return "\nAnswer only with JSON that matches this JSON Schema:\n" + json.dumps(schema, separators=(",", ":"))
