"""User JSON Schemas are hostile input: each attack gets a short message naming the offending part,
and no schema or answer can hold the server.

Tests that would hang without the protection carry a pytest timeout: with Python's ``re`` the
ReDoS pattern below never finishes, with RE2 it takes microseconds.
"""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import pytest

from model_loaders.core.errors import InputError
from model_loaders.core.jsontext import loads
from model_loaders.tasks import workflow as wf
from model_loaders.tasks.structured import (
    MAX_SCHEMA_DEPTH,
    PRESETS,
    load_schema,
    validate,
    validate_answer,
)
from tests.rawqueue import call

REDOS = {"type": "object", "properties": {"title": {"type": "string", "pattern": "^(a+)+$"}}}
EVIL = "a" * 5000 + "!"


@pytest.mark.timeout(20)
def test_a_catastrophic_pattern_is_checked_in_linear_time():
    schema = load_schema(json.dumps(REDOS))
    errors = validate({"title": EVIL}, schema)
    assert len(errors) == 1 and errors[0].startswith("title: ")
    assert validate({"title": "aaaa"}, schema) == []


@pytest.mark.timeout(20)
def test_pattern_properties_and_additional_properties_use_the_same_engine():
    schema = load_schema(json.dumps({"type": "object", "patternProperties": {"^(a+)+$": {"type": "string"}},
                                     "additionalProperties": False}))  # fmt: skip
    assert validate({"aaa": "x"}, schema) == []
    errors = validate({EVIL: "x"}, schema)
    assert errors and "not allowed" in errors[0]


@pytest.mark.timeout(20)
def test_workflow_save_edits_with_a_redos_schema_stays_fast():
    schema = wf.parse_schema(json.dumps(REDOS))
    assert "does not match" in wf.validate_fields({"title": EVIL}, schema)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "string", "pattern": "(?=a)b"}, "look-ahead"),
        ({"type": "string", "pattern": "(a)\\1"}, "back-references"),
        ({"$ref": "#"}, "refers back to itself"),
        ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"},
         "endless loop"),
        ({"$ref": "https://evil.example/schema.json"}, "points outside the schema"),
        ({"$ref": "#/$defs/missing"}, "does not point to anything"),
        ({"properties": {"a": {"$dynamicRef": "#meta"}}}, "$dynamicRef at #/properties/a is not supported"),
        ({"type": 5}, "not a valid JSON Schema"),
        ("[]", "must be a JSON object"),
    ],
    ids=["lookahead", "backref", "ref-to-root", "ref-cycle", "remote-ref", "dangling-ref", "dynamic-ref",
         "invalid", "not-object"],
)  # fmt: skip
def test_unsafe_schemas_are_refused_naming_the_part(schema, message):
    with pytest.raises(InputError) as info:
        load_schema(schema if isinstance(schema, str) else json.dumps(schema))
    assert message in str(info.value), str(info.value)
    assert len(str(info.value)) < 300


def test_a_recursive_schema_that_steps_into_the_answer_is_fine():
    tree = {"type": "object", "properties": {"name": {"type": "string"},
                                             "children": {"type": "array", "items": {"$ref": "#"}}}}  # fmt: skip
    schema = load_schema(json.dumps(tree))
    assert validate({"name": "a", "children": [{"name": "b", "children": []}]}, schema) == []
    assert validate({"name": "a", "children": [{"name": 5}]}, schema) == ["children/0/name: 5 is not of type 'string'"]


@pytest.mark.timeout(20)
def test_references_that_multiply_are_refused():
    # Each level applies the next twice to the same value: 2**30 checks for one string.
    defs = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(30)}
    defs["d30"] = {"type": "string"}
    with pytest.raises(InputError, match="expand to too many checks"):
        load_schema(json.dumps({"$defs": defs, "$ref": "#/$defs/d0"}))


@pytest.mark.timeout(20)
@pytest.mark.parametrize("levels", [MAX_SCHEMA_DEPTH + 1, 3000])
def test_deep_nesting_is_refused_before_parsing(levels):
    text = '{"enum": [' + "[" * levels + "]" * levels + "]}"
    with pytest.raises(InputError, match="nested too deeply"):
        load_schema(text)


@pytest.mark.timeout(20)
def test_deeply_nested_answers_and_api_values_get_a_message_not_a_recursion_error():
    answer = "[" * 3000 + "]" * 3000
    result = validate_answer(answer, PRESETS["book"])
    assert not result.valid and "nested too deeply" in result.errors[0]
    with pytest.raises(InputError, match="nested too deeply"):
        loads("[" * 3000 + "]" * 3000, "points", max_chars=100_000)


def test_one_size_cap_for_every_schema():
    huge = json.dumps({"type": "object", "properties": {f"f{i}": {"type": "string"} for i in range(2000)}})
    for check in (load_schema, wf.parse_schema):
        with pytest.raises(InputError, match="too long"):
            check(huge)


# --- through the running app ---------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_hostile_schema_is_refused_at_once_and_the_page_stays_fast(app_url):
    ask = [{"path": "unused"}, "qwen2.5-vl-3b", "What is the title?", json.dumps({"$ref": "#"})]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        hostile = pool.submit(call, app_url, "ask", ask)
        start = time.perf_counter()
        page = httpx.get(app_url + "/", timeout=30)
        page_s = time.perf_counter() - start
        outcome = hostile.result(timeout=30)
    assert page.status_code == 200 and page_s < 1.0, page_s
    assert outcome.success is False and "refers back to itself" in outcome.error, outcome.error
