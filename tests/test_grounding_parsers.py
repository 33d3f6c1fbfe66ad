"""Table-driven tests of the VLM box parsers on each model's documented output format.

Each case gives the raw answer, the image size and the exact boxes expected; malformed answers
must come back as parse failures, never as an empty list that reads as "no objects".
"""

from __future__ import annotations

import numpy as np
import pytest

from model_loaders.core.errors import InputError
from model_loaders.families.grounding import (
    box_to_florence_locs,
    detections_to_json,
    parse_florence,
    parse_gemini,
    parse_paligemma,
    parse_qwen,
)
from model_loaders.tasks.structured import PRESETS, extract_json, load_schema, validate_answer


def boxes(g):  # noqa: ANN001, ANN201 - tiny helper
    return np.round(g.detections.xyxy, 2).tolist()


def labels(g):  # noqa: ANN001, ANN201
    return [str(x) for x in g.detections.data["class_name"]]


# --- Florence-2: post_process_generation dicts ------------------------------------------------
FLORENCE_CASES = [
    ("od", {"<OD>": {"bboxes": [[10.5, 20.5, 300.5, 400.5]], "labels": ["cat"]}}, [[10.5, 20.5, 300.5, 400.5]], ["cat"]),
    ("two", {"<DENSE_REGION_CAPTION>": {"bboxes": [[0, 0, 5, 5], [1, 2, 3, 4]], "labels": ["a", "b"]}},
     [[0, 0, 5, 5], [1, 2, 3, 4]], ["a", "b"]),
    ("grounding", {"<CAPTION_TO_PHRASE_GROUNDING>": {"bboxes": [[1, 1, 9, 9]], "labels": ["dog"]}}, [[1, 1, 9, 9]], ["dog"]),
    ("ovd", {"<OPEN_VOCABULARY_DETECTION>": {"bboxes": [[2, 3, 4, 5]], "bboxes_labels": ["red car"], "polygons": [],
                                              "polygons_labels": []}}, [[2, 3, 4, 5]], ["red car"]),
    ("proposal", {"<REGION_PROPOSAL>": {"bboxes": [[5, 6, 7, 8]], "labels": [""]}}, [[5, 6, 7, 8]], [""]),
    ("ocr-quad", {"<OCR_WITH_REGION>": {"quad_boxes": [[10, 10, 50, 10, 50, 30, 10, 30]], "labels": ["HELLO"]}},
     [[10, 10, 50, 30]], ["HELLO"]),
    ("od-empty", {"<OD>": {"bboxes": [], "labels": []}}, [], []),
]  # fmt: skip


@pytest.mark.parametrize(("name", "result", "want", "want_labels"), FLORENCE_CASES, ids=[c[0] for c in FLORENCE_CASES])
def test_florence_dicts(name: str, result: dict, want: list, want_labels: list) -> None:
    g = parse_florence(result, (640, 480))
    assert g.error is None
    assert boxes(g) == want
    assert labels(g) == want_labels


def test_florence_text_task_has_no_boxes_and_no_error() -> None:
    g = parse_florence({"<CAPTION>": "A cat on a table."}, (640, 480))
    assert g.detections is None and g.error is None


@pytest.mark.parametrize("bad", [{"<OD>": {"bboxes": [[1, 2, 3]], "labels": ["x"]}}, {"<OD>": {"labels": ["x"]}}, {}])
def test_florence_malformed_is_a_parse_failure(bad: dict) -> None:
    g = parse_florence(bad, (640, 480))
    assert g.error and g.detections is None


# --- Qwen2.5-VL / Qwen3-VL JSON -----------------------------------------------------------------
QWEN_CASES = [
    ("fenced", '```json\n[\n  {"bbox_2d": [10, 20, 110, 220], "label": "cat"}\n]\n```', [[10, 20, 110, 220]], ["cat"]),
    ("bare", '[{"bbox_2d": [0, 0, 50, 50], "label": "cup"}, {"bbox_2d": [50, 50, 100, 100], "label": "dog"}]',
     [[0, 0, 50, 50], [50, 50, 100, 100]], ["cup", "dog"]),
    ("prose", 'Sure! Here are the boxes: [{"bbox_2d": [1, 2, 3, 4], "label": "a"}] Hope this helps.',
     [[1, 2, 3, 4]], ["a"]),
    ("single-object", '{"bbox_2d": [4, 4, 8, 8], "label": "x"}', [[4, 4, 8, 8]], ["x"]),
    ("explicit-empty", '```json\n[]\n```\nno bbox_2d found', [], []),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "want", "want_labels"), QWEN_CASES, ids=[c[0] for c in QWEN_CASES])
def test_qwen_json(name: str, text: str, want: list, want_labels: list) -> None:
    # Input space == output space here, so coordinates pass through unchanged.
    g = parse_qwen(text, (200, 300), (200, 300))
    assert g.error is None
    assert boxes(g) == want
    assert labels(g) == want_labels


def test_qwen_scales_from_model_input_to_image() -> None:
    g = parse_qwen('[{"bbox_2d": [14, 28, 140, 280], "label": "cat"}]', (280, 560), (1000, 2000))
    assert boxes(g) == [[50.0, 100.0, 500.0, 1000.0]]


def test_qwen3_grid_1000() -> None:
    g = parse_qwen('[{"bbox_2d": [100, 250, 500, 1000], "label": "cat"}]', (1000, 1000), (640, 480))
    assert boxes(g) == [[64.0, 120.0, 320.0, 480.0]]


QWEN_BAD = [
    ("truncated", '```json\n[{"bbox_2d": [10, 20, 110, 2'),
    ("three-numbers", '[{"bbox_2d": [10, 20, 110], "label": "cat"}]'),
    ("string-coords", '[{"bbox_2d": ["a", 20, 110, 9], "label": "cat"}]'),
    ("not-a-list", '{"bbox_2d": "everywhere"}'),
    ("no-json", "the bbox_2d is at the top left"),
]


@pytest.mark.parametrize(("name", "text"), QWEN_BAD, ids=[c[0] for c in QWEN_BAD])
def test_qwen_malformed_is_a_parse_failure(name: str, text: str) -> None:
    g = parse_qwen(text, (100, 100), (100, 100))
    assert g.error, "a malformed answer must not read as 'no objects'"
    assert g.detections is None


def test_answer_without_boxes_is_not_an_error() -> None:
    g = parse_qwen("A cat sitting on a table.", (100, 100), (100, 100))
    assert g.detections is None and g.error is None


# --- PaliGemma <locXXXX> ------------------------------------------------------------------------
PALI_CASES = [
    ("one", "<loc0256><loc0512><loc0768><loc1023> cat", [[256.0, 64.0, 511.5, 192.0]], ["cat"]),
    ("two", "<loc0000><loc0000><loc0512><loc0512> cat ; <loc0512><loc0512><loc1024><loc1024> dog",
     [[0.0, 0.0, 256.0, 128.0], [256.0, 128.0, 512.0, 256.0]], ["cat", "dog"]),
    ("multiword", "<loc0100><loc0200><loc0300><loc0400> red car", [[100.0, 25.0, 200.0, 75.0]], ["red car"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "want", "want_labels"), PALI_CASES, ids=[c[0] for c in PALI_CASES])
def test_paligemma_locs(name: str, text: str, want: list, want_labels: list) -> None:
    g = parse_paligemma(text, (512, 256))
    assert g.error is None
    assert boxes(g) == want
    assert labels(g) == want_labels


@pytest.mark.parametrize("text", ["<loc0100><loc0200><loc0300> cat", "<loc0001><loc0002><loc0003><loc0004> a ; <loc0005>"])
def test_paligemma_partial_group_is_a_parse_failure(text: str) -> None:
    g = parse_paligemma(text, (512, 256))
    assert g.error and g.detections is None


def test_paligemma_plain_answer_has_no_boxes() -> None:
    g = parse_paligemma("a cat", (512, 256))
    assert g.detections is None and g.error is None


# --- Gemini box_2d (y1, x1, y2, x2 on 0..1000) ------------------------------------------------
GEMINI_CASES = [
    ("fenced", '```json\n[{"box_2d": [100, 200, 500, 800], "label": "cat"}]\n```', [[200.0, 50.0, 800.0, 250.0]], ["cat"]),
    ("bare-two", '[{"box_2d": [0, 0, 1000, 1000], "label": "all"}, {"box_2d": [500, 500, 600, 700], "label": "x"}]',
     [[0.0, 0.0, 1000.0, 500.0], [500.0, 250.0, 700.0, 300.0]], ["all", "x"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "want", "want_labels"), GEMINI_CASES, ids=[c[0] for c in GEMINI_CASES])
def test_gemini_box_2d(name: str, text: str, want: list, want_labels: list) -> None:
    g = parse_gemini(text, (1000, 500))
    assert g.error is None
    assert boxes(g) == want
    assert labels(g) == want_labels


@pytest.mark.parametrize("text", ['[{"box_2d": [1, 2, 3], "label": "x"}]', '```json\n[{"box_2d": [1, 2,', "box_2d: none"])
def test_gemini_malformed_is_a_parse_failure(text: str) -> None:
    g = parse_gemini(text, (1000, 500))
    assert g.error and g.detections is None


# --- helpers ------------------------------------------------------------------------------------
def test_region_to_florence_locs() -> None:
    # Corners in any order; bins are floor(v / size * 1000) clamped to 0..999.
    assert box_to_florence_locs((300, 200, 60, 20), (600, 400)) == "<loc_100><loc_50><loc_500><loc_500>"
    assert box_to_florence_locs((0, 0, 600, 400), (600, 400)) == "<loc_0><loc_0><loc_999><loc_999>"


def test_boxes_json_maps_back_to_original_pixels() -> None:
    g = parse_qwen('[{"bbox_2d": [10, 20, 30, 40], "label": "a"}]', (100, 100), (100, 100))
    assert detections_to_json(g.detections, scale=0.5) == [{"label": "a", "xyxy": [20.0, 40.0, 60.0, 80.0]}]


# --- structured output --------------------------------------------------------------------------
BOOK = '{"title": "Dune", "author": "Frank Herbert", "publisher": "Chilton"}'


@pytest.mark.parametrize(
    "text",
    [BOOK, f"```json\n{BOOK}\n```", f"Here is the JSON you asked for:\n{BOOK}\nAnything else?", f"Note [1]: {BOOK}"],
    ids=["bare", "fenced", "prose", "stray-bracket"],
)
def test_lenient_extraction_then_valid(text: str) -> None:
    r = validate_answer(text, PRESETS["book"])
    assert r.valid and r.data["author"] == "Frank Herbert"


def test_schema_violation_is_invalid_with_path() -> None:
    r = validate_answer('{"title": "Dune", "author": 7}', PRESETS["book"])
    assert not r.valid
    assert any("author" in e for e in r.errors) and any("publisher" in e for e in r.errors)


def test_no_json_is_invalid_not_crash() -> None:
    r = validate_answer("I cannot read the cover.", PRESETS["book"])
    assert not r.valid and r.data is None and r.errors


def test_extract_json_fails_loudly() -> None:
    with pytest.raises(ValueError):
        extract_json("{not json")


@pytest.mark.parametrize("bad", ['{"type": 5}', "{not json", "[1, 2]", '{"type": "object", "required": "title"}'])
def test_invalid_schema_is_input_error(bad: str) -> None:
    with pytest.raises(InputError):
        load_schema(bad)


def test_preset_name_and_empty_schema() -> None:
    assert load_schema("book") is PRESETS["book"]
    assert load_schema("  ") is None
