"""Structured output: user JSON Schemas checked before use, JSON pulled out of model answers, and
answers validated so that no schema and no answer can block the server.

A user's schema is hostile input. Before it is used it must pass `check_schema`:

- size and shape: at most ``MAX_SCHEMA_CHARS`` of JSON text, ``MAX_SCHEMA_DEPTH`` levels of
  nesting (checked on the text before parsing, so 3,000 nested brackets never reach the parser)
  and ``MAX_SCHEMA_NODES`` subschemas;
- references: only local ``$ref`` (``#`` or ``#/...``) that point at something in the schema; no
  remote fetching, no ``$dynamicRef``; a ``$ref`` that loops back to itself without stepping
  into the answer (``{"$ref": "#"}``, a -> b -> a) is refused by name;
- regular expressions (``pattern``, ``patternProperties``) must compile with RE2, a linear-time
  engine: matching takes time proportional to the text, whatever the pattern, so ``^(a+)+$``
  cannot freeze the process (Python's ``re`` backtracks exponentially on it and holds the GIL,
  which stalls every other request). RE2 has no look-around or back-references; such patterns
  are refused with a message that says so. Chosen over a time limit per match because Python's
  ``re`` cannot be interrupted and a thread running it still blocks the whole server.

Validation then runs on a validator whose regex keywords use the compiled RE2 patterns (Python's
``re`` is never called on user patterns) and which counts its steps: an answer that would take
more than ``MAX_CHECK_STEPS`` keyword checks (a schema whose references fan out) gets a short
"too complex" error instead of running on. Answers are parsed with the same nesting cap.
There is one validator, one preset table and one size cap for the whole app (Ask, Compare,
Workflow and the API).
"""

from __future__ import annotations

import contextvars
import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from model_loaders.core.errors import InputError
from model_loaders.core.jsontext import MAX_JSON_DEPTH, json_depth, loads, value_depth
from model_loaders.families.grounding import extract_json_text

MAX_SCHEMA_CHARS = 20_000
MAX_SCHEMA_DEPTH = 32
MAX_SCHEMA_NODES = 2_000
MAX_PATTERN_CHARS = 1_000
MAX_CHECK_STEPS = 100_000  # keyword checks for one answer (~0.1 s); beyond, "too complex"
MAX_CHECK_NESTING = 100  # keyword calls inside each other (a guard below Python's recursion limit)

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
    "product": {
        "type": "object",
        "properties": {
            "brand": {"type": "string"},
            "product": {"type": "string"},
            "colour": {"type": "string"},
        },
        "required": ["brand", "product"],
    },
    "sign": {
        "type": "object",
        "properties": {"text": {"type": "string"}, "language": {"type": "string"}},
        "required": ["text"],
    },
}

# Keywords whose subschemas apply to the *same* instance (a loop through them never ends) ...
_SAME_INSTANCE_LISTS = ("allOf", "anyOf", "oneOf")
_SAME_INSTANCE_ONE = ("not", "if", "then", "else")
# ... and keywords whose subschemas apply to parts of the instance (one level deeper).
_CHILD_MAPS = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")
_CHILD_ONE = ("items", "additionalProperties", "contains", "propertyNames", "unevaluatedItems",
              "unevaluatedProperties", "additionalItems")  # fmt: skip
_CHILD_LISTS = ("prefixItems",)


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


# --------------------------------------------------------------------------------------------
# regular expressions: RE2 only
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _re2(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (linear-time matching); ``ValueError`` when RE2 cannot."""
    import re2

    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(reason) from None


def _check_pattern(pattern: Any, where: str) -> None:
    if not isinstance(pattern, str):
        raise InputError(f"The JSON schema's pattern at {where} must be text.")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise InputError(f"The JSON schema's pattern at {where} is too long (max {MAX_PATTERN_CHARS} characters).")
    try:
        _re2(pattern)
    except ValueError as exc:
        raise InputError(
            f"The JSON schema's pattern {pattern[:60]!r} at {where} cannot be used ({exc}); look-ahead, "
            "look-behind and back-references are not supported."
        ) from None


# --------------------------------------------------------------------------------------------
# checking a user's schema
# --------------------------------------------------------------------------------------------


def _pointer(path: tuple[str, ...]) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path) if path else "#"


def _resolve(root: Any, ref: str) -> tuple[str, ...] | None:
    """The path a local ``$ref`` points to, or ``None`` when it points at nothing."""
    if ref == "#":
        return ()
    if not ref.startswith("#/"):
        return None
    from urllib.parse import unquote

    node, path = root, []
    for raw in ref[2:].split("/"):
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        path.append(part)
    return tuple(path)


def _subschemas(node: dict[str, Any], path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any, bool]]:
    """(path, subschema, same_instance) for every subschema directly under ``node``."""
    for key in _SAME_INSTANCE_LISTS:
        if isinstance(node.get(key), list):
            for i, sub in enumerate(node[key]):
                yield (*path, key, str(i)), sub, True
    for key in _SAME_INSTANCE_ONE:
        if key in node:
            yield (*path, key), node[key], True
    for key in _CHILD_MAPS:
        if isinstance(node.get(key), dict):
            for name, sub in node[key].items():
                yield (*path, key, str(name)), sub, key == "dependentSchemas"
    for key in _CHILD_ONE:
        if key in node:
            sub = node[key]
            if isinstance(sub, list):  # old-style "items": [...]
                for i, s in enumerate(sub):
                    yield (*path, key, str(i)), s, False
            else:
                yield (*path, key), sub, False
    for key in _CHILD_LISTS:
        if isinstance(node.get(key), list):
            for i, sub in enumerate(node[key]):
                yield (*path, key, str(i)), sub, False


def _at(root: Any, path: tuple[str, ...]) -> Any:
    node = root
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def check_schema(schema: dict[str, Any]) -> None:
    """Refuse a schema that could hurt the server, naming the offending part.

    Raises:
        InputError: too deep, too many subschemas, a remote / dangling / looping ``$ref``, a
            pattern RE2 cannot run, or a keyword this app does not support safely.
    """
    import jsonschema

    if not isinstance(schema, dict):
        raise InputError("The JSON schema must be a JSON object.")
    if value_depth(schema, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH:
        raise InputError(f"The JSON schema is nested too deeply (max {MAX_SCHEMA_DEPTH} levels).")
    nodes: dict[tuple[str, ...], dict[str, Any]] = {}
    refs: dict[tuple[str, ...], tuple[str, ...]] = {}  # $ref location -> target path
    has_pattern_properties = has_unevaluated = False
    stack: list[tuple[tuple[str, ...], Any]] = [((), schema)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, bool) or path in nodes:
            continue
        where = _pointer(path)
        if not isinstance(node, dict):
            raise InputError(f"The JSON schema has something that is not a schema at {where}.")
        nodes[path] = node
        if len(nodes) > MAX_SCHEMA_NODES:
            raise InputError(f"The JSON schema has too many parts (max {MAX_SCHEMA_NODES} subschemas).")
        for key in ("$dynamicRef", "$recursiveRef"):
            if key in node:
                raise InputError(f"The JSON schema's {key} at {where} is not supported; use a local $ref.")
        if "$id" in node and path:
            raise InputError(f"The JSON schema's nested $id at {where} is not supported.")
        if "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise InputError(
                    f"The JSON schema's $ref {str(ref)[:80]!r} at {where} points outside the schema; "
                    "only local references (#/...) are allowed."
                )
            target = _resolve(schema, ref)
            if target is None:
                raise InputError(f"The JSON schema's $ref {ref[:80]!r} at {where} does not point to anything.")
            refs[path] = target
            stack.append((target, _at(schema, target)))  # a $ref may point under an unknown keyword
        if "pattern" in node:
            _check_pattern(node["pattern"], where + "/pattern")
        if isinstance(node.get("patternProperties"), dict):
            has_pattern_properties = True
            for pattern in node["patternProperties"]:
                _check_pattern(pattern, where + "/patternProperties")
        has_unevaluated = has_unevaluated or "unevaluatedProperties" in node
        stack.extend((p, sub) for p, sub, _ in _subschemas(node, path))
    if has_pattern_properties and has_unevaluated:
        raise InputError("The JSON schema combines patternProperties with unevaluatedProperties; this is not supported.")
    _check_ref_loops(schema, nodes, refs)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InputError(f"The JSON schema is not a valid JSON Schema: {exc.message[:200]}") from None
    _check_fan_out(schema, nodes, refs)


def _same_instance_edges(schema: Any, nodes: dict, refs: dict, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    node = nodes.get(path)
    if node is None:
        return []
    out = [p for p, sub, same in _subschemas(node, path) if same and isinstance(sub, dict)]
    if path in refs:
        out.append(refs[path])
    return [p for p in out if p in nodes]


def _check_ref_loops(schema: Any, nodes: dict, refs: dict) -> None:
    """Refuse a $ref that comes back to itself without stepping into the instance (an endless check)."""
    state: dict[tuple[str, ...], int] = {}  # 1 on the stack, 2 done
    for start in refs:
        if state.get(start):
            continue
        stack = [(start, iter(_same_instance_edges(schema, nodes, refs, start)))]
        state[start] = 1
        while stack:
            path, edges = stack[-1]
            nxt = next(edges, None)
            if nxt is None:
                state[path] = 2
                stack.pop()
                continue
            if state.get(nxt) == 1:
                loop_at = next((p for p, _ in stack if p in refs), path)
                raise InputError(
                    f"The JSON schema's $ref {nodes[loop_at]['$ref'][:80]!r} at {_pointer(loop_at)} refers back to "
                    "itself without going into the answer (an endless loop)."
                )
            if not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(_same_instance_edges(schema, nodes, refs, nxt))))


def _check_fan_out(schema: Any, nodes: dict, refs: dict, limit: int = MAX_SCHEMA_NODES * 5) -> None:
    """Refuse references that multiply: the schema checked against one value, refs expanded."""
    sizes: dict[tuple[str, ...], int] = {}

    def size(root: tuple[str, ...]) -> int:  # post-order over a DAG (loops were refused before)
        stack = [(root, False)]
        while stack:
            path, children_done = stack.pop()
            if path in sizes:
                continue
            kids = _same_instance_edges(schema, nodes, refs, path)
            if children_done:
                sizes[path] = min(limit + 1, 1 + sum(sizes[k] for k in kids))
            else:
                stack.append((path, True))
                stack.extend((k, False) for k in kids if k not in sizes)
        return sizes[root]

    for path in nodes:
        if size(path) > limit:
            raise InputError(
                f"The JSON schema's references at {_pointer(path)} expand to too many checks "
                f"(more than {limit:,}); simplify it."
            )


def load_schema(schema: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """Parse and check a user's JSON Schema (text or dict); a preset name is accepted too.

    Returns:
        The schema dict, or ``None`` when no schema was given.

    Raises:
        InputError: not JSON, too large or deep, not an object, not a valid JSON Schema, or
            unsafe (see `check_schema`).
    """
    if schema is None or (isinstance(schema, str) and not schema.strip()):
        return None
    if isinstance(schema, str):
        text = schema.strip()
        if text in PRESETS:
            return PRESETS[text]
        schema = loads(text, "The JSON schema", MAX_SCHEMA_CHARS, MAX_SCHEMA_DEPTH)
    elif isinstance(schema, dict) and len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
        raise InputError(f"The JSON schema is too long (max {MAX_SCHEMA_CHARS:,} characters).")
    if not isinstance(schema, dict):
        raise InputError("The JSON schema must be a JSON object.")
    check_schema(schema)
    return schema


# --------------------------------------------------------------------------------------------
# validation with RE2 and a step budget
# --------------------------------------------------------------------------------------------


class _TooComplex(Exception):
    """Raised inside validation when the step budget or the nesting guard runs out."""


@dataclass
class _Budget:
    steps: int = 0
    nesting: int = 0


_BUDGET: contextvars.ContextVar[_Budget] = contextvars.ContextVar("schema_budget")


def _counted(fn: Callable[..., Any]) -> Callable[..., Any]:
    def keyword(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
        budget = _BUDGET.get()
        budget.steps += 1
        budget.nesting += 1
        try:
            if budget.steps > MAX_CHECK_STEPS or budget.nesting > MAX_CHECK_NESTING:
                raise _TooComplex
            result = fn(validator, value, instance, schema)
            if result is not None:
                yield from result
        finally:
            budget.nesting -= 1

    return keyword


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema import ValidationError

    if validator.is_type(instance, "string") and not _re2(pattern).search(instance):
        yield ValidationError(f"{instance[:80]!r} does not match {pattern[:80]!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        rx = _re2(pattern)
        for key, value in instance.items():
            if rx.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, extra_schema: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema import ValidationError

    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = [_re2(p) for p in schema.get("patternProperties", {})]
    extras = [k for k in instance if k not in known and not any(rx.search(k) for rx in patterns)]
    if validator.is_type(extra_schema, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra_schema, path=key)
    elif not extra_schema and extras:
        shown = ", ".join(repr(k[:40]) for k in sorted(extras)[:5])
        yield ValidationError(f"Additional properties are not allowed ({shown} {'was' if len(extras) == 1 else 'were'} "
                              "unexpected)")  # fmt: skip


@functools.cache
def _safe_validator(base: type) -> type:
    """``base`` with RE2 regex keywords and every keyword counted against the step budget."""
    import jsonschema

    replaced = {"pattern": _pattern, "patternProperties": _pattern_properties, "additionalProperties": _additional_properties}
    keywords = {kw: _counted(replaced.get(kw, fn)) for kw, fn in base.VALIDATORS.items()}
    return jsonschema.validators.extend(base, keywords)


def validate(instance: Any, schema: dict[str, Any], max_errors: int = 20) -> list[str]:
    """Violations of an already-checked ``schema`` by ``instance``, as short texts (empty: valid).

    Never runs Python's ``re`` on a user pattern and never runs longer than the step budget.
    """
    import jsonschema

    if value_depth(instance) > MAX_JSON_DEPTH:
        return [f"(root): the value is nested too deeply (max {MAX_JSON_DEPTH} levels)"]
    validator = _safe_validator(jsonschema.validators.validator_for(schema))(schema)
    token = _BUDGET.set(_Budget())
    errors: list[Any] = []
    try:
        for err in validator.iter_errors(instance):
            errors.append(err)
            if len(errors) >= max_errors:
                break
    except _TooComplex:
        return ["(root): the schema is too complex to check this answer against"]
    except RecursionError:
        return ["(root): the schema is too complex to check this answer against"]
    finally:
        _BUDGET.reset(token)
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:200]}" for e in errors]


# --------------------------------------------------------------------------------------------
# answers
# --------------------------------------------------------------------------------------------


def extract_json(text: str) -> Any:
    """The first JSON value in ``text`` (inside a code fence, or after prose).

    Raises:
        ValueError: when no JSON value can be read (or it is nested too deeply).
    """
    snippet = extract_json_text(text or "")
    if snippet is None:
        raise ValueError("no JSON found in the answer")
    if json_depth(snippet, stop_at=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ValueError(f"the JSON in the answer is nested too deeply (max {MAX_JSON_DEPTH} levels)")
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
    try:
        data = extract_json(text)
    except ValueError as exc:
        return StructuredResult(None, False, [str(exc)])
    errors = validate(data, schema)
    return StructuredResult(data, not errors, errors)


def schema_instruction(schema: dict[str, Any]) -> str:
    """Text appended to the question so the model answers with matching JSON."""
    return "\nAnswer only with JSON that matches this JSON Schema:\n" + json.dumps(schema, separators=(",", ":"))
