"""The workflow pipeline without models: merging, crops, rows, validation, exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import supervision as sv

from model_loaders.core.errors import InputError
from model_loaders.tasks.workflow import (
    BOOK_SCHEMA,
    ResultRow,
    apply_table_edits,
    build_prompt,
    crop,
    merge_duplicates,
    parse_answer,
    parse_schema,
    rows_from_csv,
    rows_from_json,
    rows_to_csv,
    rows_to_json,
    rows_to_table,
    run_pipeline,
    schema_json,
)

IMAGE = np.arange(100 * 160 * 3, dtype=np.uint32).reshape(100, 160, 3).astype(np.uint8)


def dets(boxes: list[list[float]], conf: list[float] | None = None, names: list[str] | None = None) -> sv.Detections:
    d = sv.Detections(
        xyxy=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        confidence=None if conf is None else np.asarray(conf, dtype=np.float32),
    )
    if names is not None:
        d.data["class_name"] = np.asarray(names)
    return d


GOOD = '{"title": "Dune", "author": "Frank Herbert", "publisher": "Chilton"}'


# -- merging -----------------------------------------------------------------------------------


def test_overlapping_duplicates_merge_to_the_most_confident_box():
    d = dets(
        [[10, 10, 50, 90], [12, 11, 51, 88], [100, 10, 140, 90]],
        conf=[0.6, 0.9, 0.8],
        names=["book", "notebook", "book"],
    )
    kept = merge_duplicates(d)
    assert len(kept) == 2
    np.testing.assert_allclose(kept.xyxy[0], [12, 11, 51, 88])  # the 0.9 duplicate wins
    assert list(kept.data["class_name"]) == ["notebook", "book"]


def test_separate_objects_are_not_merged_and_boxes_without_scores_keep_their_order():
    d = dets([[0, 0, 10, 10], [20, 0, 30, 10], [0, 0, 10, 10.5]])
    kept = merge_duplicates(d)
    assert len(kept) == 2
    np.testing.assert_allclose(kept.xyxy, [[0, 0, 10, 10], [20, 0, 30, 10]])


# -- crops -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "padding", "expected"),
    [
        ([20, 30, 60, 70], 0, (20, 30, 60, 70)),
        ([20, 30, 60, 70], 5, (15, 25, 65, 75)),
        ([20.4, 30.6, 59.2, 69.9], 0, (20, 30, 60, 70)),  # rounded outwards: the object stays whole
        ([2, 3, 158, 98], 10, (0, 0, 160, 100)),  # clipped to the image
    ],
)
def test_crops_are_box_plus_padding_clipped_to_the_image(box, padding, expected):
    pixels, cb = crop(IMAGE, box, padding)
    assert cb == expected
    x1, y1, x2, y2 = cb
    assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 100
    np.testing.assert_array_equal(pixels, IMAGE[y1:y2, x1:x2])


def test_a_box_outside_the_image_is_an_input_error():
    with pytest.raises(InputError):
        crop(IMAGE, [500, 500, 600, 600], 0)


# -- schema ------------------------------------------------------------------------------------


def test_book_preset_parses_and_lists_its_fields():
    schema = parse_schema(schema_json(BOOK_SCHEMA))
    assert list(schema["properties"]) == ["title", "author", "publisher"]
    assert "JSON" in build_prompt(schema) and '"title"' in build_prompt(schema)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Write the JSON Schema"),
        ("{not json", "not valid JSON"),
        ('{"type": "object", "properties": {"a": {"type": 5}}}', "not a valid JSON Schema"),
        ('{"type": "nonsense"}', "not a valid JSON Schema"),
        ('{"type": "string"}', "object with"),
        ("[1, 2]", "JSON object"),
        ('{"type": "object", "properties": {"raw": {"type": "string"}}}', "clash"),
        ("x" * 21_000, "too long"),
    ],
)
def test_bad_schemas_are_refused_with_a_clear_message(text, message):
    with pytest.raises(InputError, match=message):
        parse_schema(text)


# -- answers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "valid", "fields"),
    [
        (GOOD, True, {"title": "Dune", "author": "Frank Herbert", "publisher": "Chilton"}),
        ("```json\n" + GOOD + "\n```", True, {"title": "Dune", "author": "Frank Herbert", "publisher": "Chilton"}),
        ("Sure! " + GOOD + " Hope this helps.", True, {"title": "Dune", "author": "Frank Herbert", "publisher": "Chilton"}),
        ("[" + GOOD + "]", True, {"title": "Dune", "author": "Frank Herbert", "publisher": "Chilton"}),
        ('{"title": "Dune", "author": "Frank Herbert"}', False, {"title": "Dune", "author": "Frank Herbert"}),
        ('{"title": 42, "author": "x", "publisher": "y"}', False, {"title": 42, "author": "x", "publisher": "y"}),
        ("I cannot read the spine.", False, {}),
        ('{"title": "Du', False, {}),
        ("[1, 2]", False, {}),
        ("", False, {}),
    ],
)
def test_answers_are_parsed_and_validated(raw, valid, fields):
    parsed = parse_answer(raw, BOOK_SCHEMA)
    assert parsed.valid is valid
    assert parsed.fields == fields
    assert (parsed.error == "") is valid


# -- the pipeline ------------------------------------------------------------------------------


def test_one_row_per_kept_detection_and_invalid_output_is_flagged_with_raw_text_kept():
    d = dets(
        [[10, 10, 50, 90], [11, 10, 50, 90], [60, 10, 100, 90], [110, 10, 150, 90]],
        conf=[0.9, 0.5, 0.8, 0.7],
        names=["book"] * 4,
    )
    answers = iter([GOOD, "garbled <<<", '{"title": "Emma", "author": "Jane Austen", "publisher": ""}'])
    seen_shapes: list[tuple[int, ...]] = []

    def ask(pixels: np.ndarray) -> str:
        seen_shapes.append(pixels.shape)
        return next(answers)

    kept, rows = run_pipeline(IMAGE, d, ask, BOOK_SCHEMA, padding=4)
    assert len(kept) == 3 and len(rows) == 3, "the duplicate is merged before any VLM call"
    assert len(seen_shapes) == 3
    assert [r.index for r in rows] == [0, 1, 2]
    assert rows[0].valid and rows[0].fields["title"] == "Dune"
    assert not rows[1].valid and rows[1].raw == "garbled <<<" and rows[1].fields == {}
    assert rows[1].error
    assert rows[2].valid and rows[2].fields["publisher"] == ""
    for r in rows:
        x1, y1, x2, y2 = r.crop_box
        assert r.crop is not None and r.crop.shape == (y2 - y1, x2 - x1, 3)
        assert (x1, y1) == (max(0, int(r.box[0]) - 4), max(0, int(r.box[1]) - 4))


def test_no_detections_gives_no_rows_and_no_vlm_call():
    def ask(pixels: np.ndarray) -> str:
        raise AssertionError("the VLM must not be called")

    kept, rows = run_pipeline(IMAGE, dets([]), ask, BOOK_SCHEMA)
    assert len(kept) == 0 and rows == []


# -- edits and exports -------------------------------------------------------------------------


def sample_rows() -> list[ResultRow]:
    return [
        ResultRow(0, (10.0, 10.0, 50.0, 90.0), (6, 6, 54, 94), "book", 0.9,
                  {"title": "Dune", "author": "Frank Herbert", "publisher": "Chilton"}, True, "", GOOD),
        ResultRow(1, (60.0, 10.0, 100.0, 90.0), (56, 6, 104, 94), "book", 0.8, {}, False,
                  "no JSON in the answer", 'garbled, "quoted"\nsecond line'),
        ResultRow(2, (110.5, 10.25, 150.0, 90.0), (106, 6, 154, 94), "book", None,
                  {"title": "Emma", "author": "Jane Austen"}, False, "'publisher' is a required property",
                  '{"title": "Emma", "author": "Jane Austen"}'),
    ]


def test_editing_a_field_revalidates_the_row_and_keeps_the_raw_text():
    rows = sample_rows()
    table = rows_to_table(rows, BOOK_SCHEMA)
    assert table[1][-1] == rows[1].raw and table[1][-3] == "no"
    table[2][5] = "Penguin"  # columns: #, class, box, title, author, publisher, ...
    table[1][3] = "Ulysses"
    edited = apply_table_edits(rows, table, BOOK_SCHEMA)
    assert edited[2].valid and edited[2].edited and edited[2].fields["publisher"] == "Penguin"
    assert edited[2].raw == rows[2].raw
    assert not edited[1].valid and edited[1].edited, "author and publisher are still missing"
    assert edited[1].fields["title"] == "Ulysses"
    assert not edited[0].edited and edited[0].fields == rows[0].fields
    assert rows[2].fields.get("publisher") is None, "the original rows are not modified"


def test_json_export_round_trips():
    rows = sample_rows()
    back = rows_from_json(rows_to_json(rows, {"detector": "x", "schema": BOOK_SCHEMA}))
    assert back == rows
    assert json.loads(rows_to_json(rows))["rows"][1]["raw"] == rows[1].raw


def test_csv_export_round_trips_with_typed_fields():
    rows = sample_rows()
    assert rows_from_csv(rows_to_csv(rows, BOOK_SCHEMA), BOOK_SCHEMA) == rows
    schema = {
        "type": "object",
        "properties": {"pages": {"type": "integer"}, "tags": {"type": "array"}, "note": {"type": "string"}},
    }
    typed = [ResultRow(0, (1.0, 2.0, 3.0, 4.0), (0, 0, 5, 6), "x", 0.5, {"pages": 312, "tags": ["a", "b"], "note": "12"}, True)]
    assert rows_from_csv(rows_to_csv(typed, schema), schema) == typed
