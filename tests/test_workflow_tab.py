"""Workflow tab with tiny models: detect -> crop -> VLM -> rows, bad inputs, edits, re-run, exports, API, browser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from model_loaders.core.errors import InputError
from model_loaders.tasks import workflow as wf
from tabs import workflow

BOOKS = str(Path(__file__).resolve().parent.parent / "assets" / "books-desk.jpg")
SCHEMA = wf.schema_json(wf.BOOK_SCHEMA)
TOKENS = 8  # tiny VLM answers: short is enough to check the plumbing


def run(ctx: Any, **kw: Any) -> workflow.WorkflowRun:
    args = {"image": BOOKS, "detector": "owlv2-base", "classes": "book", "confidence": 0.0, "padding": 8,
            "vlm": "qwen2.5-vl-3b", "schema_text": SCHEMA, "max_new_tokens": TOKENS}  # fmt: skip
    args.update(kw)
    return workflow.run_workflow(ctx, **args)


@pytest.fixture(scope="module")
def books_run(ctx: Any) -> workflow.WorkflowRun:
    return run(ctx)


def test_the_example_runs_end_to_end_with_one_row_per_kept_detection(books_run):
    r = books_run
    assert len(r.detections) >= 1 and len(r.rows) == len(r.detections)
    h, w = r.image.array.shape[:2]
    for row, box in zip(r.rows, r.detections.xyxy, strict=True):
        x1, y1, x2, y2 = row.crop_box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, "crops lie inside the image"
        assert row.crop_box == wf.padded_box(box, 8, w, h), "crop = box + padding, clipped"
        assert row.crop.shape == (y2 - y1, x2 - x1, 3)
        assert row.raw, "the raw VLM text is kept"
        # tiny random weights do not write valid JSON: every row is flagged invalid, with a reason
        assert row.valid is False and row.error
    assert r.timings["detector"]["model"] == "owlv2-base" and r.timings["vlm"]["model"] == "qwen2.5-vl-3b"


def test_views_show_crops_table_and_the_weights_warning(ctx, books_run):
    annotated, gallery, table, status = workflow.views(ctx, books_run)
    assert annotated.shape == books_run.image.array.shape
    assert len(gallery) == len(books_run.rows) and "invalid" in gallery[0][1]
    assert len(table.value["data"]) == len(books_run.rows)
    assert table.value["headers"][3:6] == ["title", "author", "publisher"]
    assert "tiny random weights" in status


def test_an_edit_makes_a_row_valid_and_exports_round_trip(ctx, books_run, upload_path):
    r = workflow.WorkflowRun(**{**books_run.__dict__, "rows": list(books_run.rows)})
    table = wf.rows_to_table(r.rows, r.schema)
    table[0][3:6] = ["Moby-Dick", "Herman Melville", "Harper & Brothers"]
    r.rows = wf.apply_table_edits(r.rows, table, r.schema)
    assert r.rows[0].valid and r.rows[0].edited and r.rows[0].raw == books_run.rows[0].raw
    paths = workflow.write_exports(ctx, r)
    as_json = wf.rows_from_json(Path(paths[0]).read_text())
    as_csv = wf.rows_from_csv(Path(paths[1]).read_text(), r.schema)
    assert as_json == as_csv
    assert as_json[0].fields == {"title": "Moby-Dick", "author": "Herman Melville", "publisher": "Harper & Brothers"}
    assert len(as_json) == len(r.rows)
    info = json.loads(Path(paths[0]).read_text())["info"]
    assert info["detector"] == "owlv2-base" and info["schema"] == wf.BOOK_SCHEMA


def test_rerun_one_crop_replaces_only_that_row(ctx, books_run):
    r = workflow.WorkflowRun(**{**books_run.__dict__, "rows": list(books_run.rows)})
    before = list(r.rows)
    again = workflow.rerun_row(ctx, r, 0, max_new_tokens=4)
    assert again.rows[0] is not before[0] and again.rows[0].index == 0 and again.rows[0].raw
    assert again.rows[1:] == before[1:]
    assert r.rows == before, "the earlier run is left as it was (a new run is returned)"
    with pytest.raises(InputError, match="no row #999"):
        workflow.rerun_row(ctx, r, 999)


def test_no_detections_gives_an_empty_table_and_a_note_without_loading_the_vlm(ctx, monkeypatch):
    loaded: list[str] = []
    real = ctx.use

    def spy(key, timings=None, part=""):
        loaded.append(key)
        return real(key, timings, part)

    monkeypatch.setattr(ctx, "use", spy)
    r = run(ctx, detector="rf-detr-nano", confidence=1.0)
    assert r.rows == [] and any("No book found" in n for n in r.notes)
    assert loaded == ["rf-detr-nano"], "no VLM call when nothing was detected"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schema_text": "{not json"}, "not valid JSON"),
        ({"schema_text": '{"type": "object", "properties": {"a": {"type": 7}}}'}, "not a valid JSON Schema"),
        ({"schema_text": '{"type": "string"}'}, "properties"),
        ({"detector": "depth-anything-v2-small"}, "cannot detect"),
        ({"vlm": "florence-2-base"}, "cannot answer with JSON"),
        ({"vlm": "rf-detr-nano"}, "cannot answer questions"),
        ({"detector": "no-such-model"}, "Unknown model"),
        ({"padding": float("nan")}, "finite"),
        ({"padding": 10_000}, "between"),
        ({"image": None}, "Upload an image"),
        ({"classes": "x" * 600}, "too long"),
    ],
)
def test_bad_inputs_are_refused_before_models_run(ctx, kwargs, message):
    with pytest.raises(InputError, match=message):
        run(ctx, **kwargs)


def test_workflow_api_endpoint_returns_the_rows(client):
    from gradio_client import handle_file

    out = client.predict(handle_file(BOOKS), "owlv2-base", "book", 0.0, 8, "qwen2.5-vl-3b", SCHEMA,
                         api_name="/workflow")  # fmt: skip
    assert out["info"]["vlm"] == "qwen2.5-vl-3b"
    assert len(out["rows"]) >= 1
    row = out["rows"][0]
    assert set(row) >= {"box", "crop_box", "fields", "valid", "raw", "error"}
    assert row["valid"] is False and isinstance(row["raw"], str)
    with pytest.raises(Exception, match="not valid JSON"):
        client.predict(handle_file(BOOKS), "owlv2-base", "book", 0.0, 8, "qwen2.5-vl-3b", "{oops",
                       api_name="/workflow")  # fmt: skip


@pytest.mark.browser
def test_browser_runs_the_book_example(page, app_url, artifacts):
    page.goto(app_url)
    page.get_by_role("tab", name="Workflow").click()
    page.locator("#workflow-image").wait_for()
    page.locator("#workflow-examples tbody tr, #workflow-examples .gallery-item").first.click()
    page.locator("#workflow-image img").first.wait_for()
    conf = page.locator("#workflow-conf input[type='number']")
    conf.fill("0")
    conf.press("Enter")
    page.locator("#workflow-run").click()
    page.locator("#workflow-status").get_by_text("row(s)").wait_for(timeout=180_000)
    page.locator("#workflow-crops img").first.wait_for(timeout=60_000)
    table = page.locator("#workflow-table").inner_text()
    assert "book" in table and "no" in table  # class column, and the validity flag "no" (tiny weights)
    status = page.locator("#workflow-status").inner_text()
    assert "row(s)" in status and "tiny random weights" in status
    page.locator("#workflow-export").click()
    page.locator("#workflow-files").get_by_text(".csv").first.wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts / "workflow.png"), full_page=True)
