"""Detect tab: filtering, exports, tiny detectors end to end, bad inputs, API and browser."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from model_loaders.core.detections import COCO_CLASSES, class_names_of, make_detections
from model_loaders.core.errors import InputError
from model_loaders.tasks import detect as du
from model_loaders.tasks import detect_export as dx
from tabs import detect
from tabs._examples import example_paths

CAT = example_paths()[0]


def _fixed() -> Any:
    """Hand-built raw detections: two overlapping cats, a dog overlapping cat 0, a far mug."""
    xyxy = [
        [10, 10, 110, 110],  # cat 0.90
        [15, 12, 112, 108],  # cat 0.60, IoU with the first ~0.86
        [12, 10, 108, 112],  # dog 0.55, overlaps cat but another class
        [200, 200, 240, 260],  # mug 0.25
        [300, 10, 340, 50],  # cat 0.10
    ]
    return make_detections(xyxy, [0.9, 0.6, 0.55, 0.25, 0.10], [0, 0, 1, 2, 0], ["cat", "dog", "mug"])


@pytest.fixture(scope="module")
def handlers(ctx: Any) -> dict[str, Any]:
    return detect.make_handlers(ctx)


def _message(exc_info: Any) -> str:
    return str(getattr(exc_info.value, "message", exc_info.value))


# ----- filtering on fixed detections --------------------------------------------------------


@pytest.mark.parametrize(
    ("conf", "iou", "classes", "expected"),
    [
        (0.0, 1.0, [], [0.9, 0.6, 0.55, 0.25, 0.10]),  # nothing removed
        (0.25, 1.0, [], [0.9, 0.6, 0.55, 0.25]),  # threshold is inclusive
        (0.26, 1.0, [], [0.9, 0.6, 0.55]),
        (0.0, 0.5, [], [0.9, 0.55, 0.25, 0.10]),  # NMS drops the second cat, not the dog
        (0.0, 0.9, [], [0.9, 0.6, 0.55, 0.25, 0.10]),  # IoU 0.86 < 0.9: both cats stay
        (0.0, 0.5, ["cat"], [0.9, 0.10]),
        (0.5, 1.0, ["mug", "dog"], [0.55]),
        (0.95, 0.7, [], []),
    ],
)
def test_filter_honours_thresholds_and_classes_exactly(conf: float, iou: float, classes: list[str], expected: list[float]) -> None:
    out = du.refilter(_fixed(), conf, iou, classes)
    assert out.detections.confidence.tolist() == pytest.approx(expected)
    if classes:
        assert set(class_names_of(out.detections)) <= set(classes)
    assert sum(out.counts.values()) == len(expected)
    assert bool(out.notes) == (not expected)  # an empty result explains itself


def test_counts_per_class() -> None:
    out = du.refilter(_fixed(), 0.0, 1.0, [])
    assert out.counts == {"cat": 3, "dog": 1, "mug": 1}


def test_exports_round_trip() -> None:
    out = du.refilter(_fixed(), 0.0, 1.0, [])
    records = dx.to_records(out.detections, scale=0.5)  # boxes mapped back to the original
    assert records[0]["box"] == [20.0, 20.0, 220.0, 220.0]
    from_json = dx.parse_json(dx.to_json(records, {"model": "x"}))
    from_csv = dx.parse_csv(dx.to_csv(records))
    from_coco = dx.parse_coco(dx.to_coco(records, ["cat", "dog", "mug"], 800, 600))
    for parsed in (from_json, from_csv, from_coco):
        assert [r["class"] for r in parsed] == [r["class"] for r in records]
        assert [r["class_id"] for r in parsed] == [r["class_id"] for r in records]
        assert [r["score"] for r in parsed] == pytest.approx([r["score"] for r in records])
        for got, want in zip(parsed, records, strict=True):
            assert got["box"] == pytest.approx(want["box"], abs=0.11)
    coco = json.loads(dx.to_coco(records, ["cat", "dog", "mug"], 800, 600))
    assert coco["images"][0]["width"] == 800 and {c["name"] for c in coco["categories"]} == {"cat", "dog", "mug"}
    assert coco["annotations"][0]["bbox"] == pytest.approx([20.0, 20.0, 200.0, 200.0])


def test_malformed_export_is_an_error_not_no_objects() -> None:
    with pytest.raises((ValueError, KeyError)):
        dx.parse_json('{"detections": [{"class": "cat", "class_id": 0, "score": 1, "box": [1, 2, "x", 4]}]}')
    with pytest.raises((ValueError, KeyError)):
        dx.parse_json('{"nothing": []}')


def test_prompt_parsing_and_cap() -> None:
    classes, notes = du.parse_prompt("Book, mug.  laptop;\nbook ,, ")
    assert classes == ["Book", "mug", "laptop"] and notes == []
    many = ", ".join(f"thing{i}" for i in range(300))
    classes, notes = du.parse_prompt(many)
    assert len(classes) == du.MAX_PROMPT_CLASSES and "300 classes" in notes[0]
    with pytest.raises(InputError, match="Type the classes"):
        du.parse_prompt(" , . ;")


def test_unknown_classes_in_filter_are_named() -> None:
    assert du.parse_class_filter("CAT, dog", ["cat", "dog"]) == ["cat", "dog"]
    assert du.parse_class_filter([], ["cat"]) == []
    with pytest.raises(InputError, match="'unicorn'"):
        du.parse_class_filter(["cat", "unicorn"], ["cat", "dog"])


# ----- tiny models end to end ---------------------------------------------------------------


def _well_formed(payload: dict[str, Any], image_wh: tuple[int, int], classes: set[str] | None = None) -> None:
    w, h = image_wh
    assert payload["count"] == len(payload["detections"])
    for d in payload["detections"]:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= w + 0.1 and 0 <= y1 <= y2 <= h + 0.1
        assert payload["confidence"] <= d["score"] <= 1.0
        if classes is not None:
            assert d["class"] in classes


def test_rf_detr_runs_once_and_refilters_without_the_model(ctx: Any, handlers: dict[str, Any]) -> None:
    calls = []
    with ctx.use("rf-detr-medium") as bundle:
        hook = bundle.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        image, table, fig, files, info, run, filter_update = handlers["detect"](
            {"path": CAT}, "rf-detr-medium", 0.0, 1.0, [], ""
        )
        assert len(calls) == 1
        assert image.ndim == 3 and image.shape[2] == 3
        assert table and all(len(row) == 6 for row in table)
        assert "inference" in info and "tiny random weights" in info and "`cpu`" in info
        assert [Path(f).name for f in files] == ["detections.json", "detections.csv", "detections_coco.json"]
        saved = dx.parse_json(Path(files[0]).read_text())
        assert [[r["class"], r["score"], *r["box"]] for r in saved] == table
        assert sum(fig.data[0].y) == len(table)
        assert filter_update["choices"] == list(run.classes)

        # Move the sliders and the class filter: outputs change, the model does not run again.
        top = table[0][0]
        _, t2, fig2, _, _ = handlers["refilter"](run, 0.0, 1.0, [top])
        assert t2 and {row[0] for row in t2} == {top}
        _, t3, _, _, info3 = handlers["refilter"](run, 1.0, 0.7, [])
        assert t3 == [] and "No detections" in info3  # a plain note, not an error
        _, t4, _, _, _ = handlers["refilter"](run, table[1][1], 0.7, [])
        assert t4 and min(row[1] for row in t4) >= table[1][1]
        assert len(calls) == 1
    finally:
        hook.remove()


@pytest.mark.parametrize("key", ["owlv2-base", "grounding-dino-tiny"])
def test_open_vocabulary_tiny(handlers: dict[str, Any], key: str) -> None:
    payload, annotated = handlers["api"](CAT, key, 0.0, 0.7, "cat, coffee mug, book")
    assert payload["classes"] == ["cat", "coffee mug", "book"]
    assert annotated.ndim == 3
    _well_formed(payload, (payload["image"]["width"], payload["image"]["height"]), {"cat", "coffee mug", "book"})
    assert payload["count"] > 0  # random weights still score every query above the floor


def test_yolo_built_from_yaml(ctx: Any, handlers: dict[str, Any]) -> None:
    import ultralytics  # noqa: F401 - the yolo extra is part of the test install
    with ctx.use("yolov12n") as bundle:
        assert bundle.class_names[0] == "person" and len(bundle.class_names) == 80
    payload, annotated = handlers["api"](CAT, "yolov12n", 0.0, 0.7, "")
    _well_formed(payload, (payload["image"]["width"], payload["image"]["height"]), set(COCO_CLASSES))
    assert annotated.ndim == 3
    if payload["count"] == 0:
        assert "No detections" in " ".join(payload["notes"])


# ----- bad inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((CAT, "rf-detr-medium", math.nan, 0.5, ""), "Confidence must be a finite number"),
        ((CAT, "rf-detr-medium", 0.5, 1.5, ""), "IoU must be between 0 and 1"),
        ((CAT, "rf-detr-medium", "abc", 0.5, ""), "Confidence must be a number"),
        ((CAT, "rf-detr-medium", 0.5, 0.5, "cat, unicorn"), "does not know these classes: 'unicorn'"),
        ((CAT, "owlv2-base", 0.5, 0.5, "   "), "Type the classes"),
        ((CAT, "no-such-model", 0.5, 0.5, ""), "Unknown model"),
        ((None, "rf-detr-medium", 0.5, 0.5, ""), "Upload an image"),
    ],
)
def test_bad_inputs_give_messages(handlers: dict[str, Any], args: tuple[Any, ...], needle: str) -> None:
    with pytest.raises(gr.Error) as exc:
        handlers["api"](*args)
    assert needle in _message(exc)


def test_hundreds_of_classes_are_capped_with_a_message(handlers: dict[str, Any]) -> None:
    prompt = ", ".join(f"object {i}" for i in range(400))
    payload, _ = handlers["api"](CAT, "owlv2-base", 0.0, 0.7, prompt)
    assert len(payload["classes"]) == du.MAX_PROMPT_CLASSES
    assert any("400 classes" in n for n in payload["notes"])


def test_yolo_without_the_extra_says_how_to_enable_it(ctx: Any, handlers: dict[str, Any], monkeypatch: Any) -> None:
    import model_loaders.core.availability as adapters

    real = adapters._module_exists
    monkeypatch.setattr(adapters, "_module_exists", lambda name: name != "ultralytics" and real(name))
    with pytest.raises(gr.Error) as exc:
        handlers["api"](CAT, "yolov12s", 0.25, 0.7, "")
    assert "`yolo` extra" in _message(exc)
    from model_loaders.tasks.base import models_for
    from tabs._picker import picker_note

    ready, not_here = models_for(ctx, "detect", detect.offered)
    assert "yolov12s" not in {s.key for s in ready}, "it cannot be picked to fail later"
    assert dict((s.key, why) for s, why in not_here)["yolov12s"] == "install the `yolo` extra"
    assert "rf-detr-medium" in {s.key for s in ready}  # every other model still works
    assert "YOLOv12-S (install the `yolo` extra)" in picker_note(ctx, "detect", "rf-detr-medium", detect.offered)


# ----- through the served app ---------------------------------------------------------------


def test_api_endpoint(client: Any) -> None:
    from gradio_client import handle_file

    payload, image_path = client.predict(
        handle_file(CAT), "rf-detr-medium", 0.0, 0.7, "cat, dog", api_name="/detect"
    )
    assert payload["model"] == "rf-detr-medium" and payload["class_filter"] == ["cat", "dog"]
    assert {d["class"] for d in payload["detections"]} <= {"cat", "dog"}
    assert payload["warning"] and Path(image_path).is_file()
    with pytest.raises(Exception, match="IoU must be between"):
        client.predict(handle_file(CAT), "rf-detr-medium", 0.5, -1, "", api_name="/detect")


def test_browser_detects_an_example(page: Any, app_url: str, artifacts: Path) -> None:
    from playwright.sync_api import expect

    page.goto(app_url)
    page.get_by_role("tab", name="Detect").click()
    page.locator("#detect-image").wait_for()
    # Pick the first example image, let every box through, and run.
    page.locator("#detect-examples .gallery-item").first.click()
    page.locator("#detect-image img").first.wait_for()  # the example is loaded before running
    conf = page.locator("#detect-conf input[type='number']")
    conf.fill("0")
    conf.press("Enter")
    page.locator("#detect-run").click()
    try:
        page.locator("#detect-info").get_by_text("inference").wait_for(timeout=120_000)
        # Rows of boxes: a class name followed by a score and four coordinates.
        expect(page.locator("#detect-table")).to_contain_text(re.compile(r"[a-z]+\s+0\.\d+\s+\d+(\.\d)?\s"))
    finally:
        page.screenshot(path=str(artifacts / "detect.png"), full_page=True)
    assert "RF-DETR Medium" in page.locator("#detect-info").inner_text()
    page.locator("#detect-chart .js-plotly-plot, #detect-chart .plotly").first.wait_for(timeout=60_000)
    page.locator("#detect-info").get_by_text("tiny random weights").wait_for()


def test_importing_ultralytics_leaves_pil_open_alone(upload_path, gate):
    """Ultralytics patches PIL.Image.open globally; bad uploads in every tab must still get their message."""
    from PIL import Image

    from model_loaders.core.images import ImageInputError, decode_image
    from model_loaders.families.yolo import _ultralytics

    before = Image.open
    _ultralytics()
    assert Image.open is before
    bad = upload_path / "x.png"
    bad.write_bytes(b"hello" * 10)
    with pytest.raises(ImageInputError, match="not a readable image"):
        decode_image({"path": str(bad)}, gate=gate)


def test_the_same_model_and_thresholds_give_the_same_boxes_in_detect_compare_and_workflow(ctx, handlers) -> None:
    import numpy as np

    from model_loaders.tasks import compare as tc
    from model_loaders.tasks import workflow as wf

    payload, _ = handlers["api"](CAT, "rf-detr-nano", 0.0, 0.7, "")
    detect_boxes = np.array([d["box"] for d in payload["detections"]])
    assert len(detect_boxes) > 10
    cmp = tc.compare(ctx, CAT, "detect", ["rf-detr-nano", "d-fine-nano"], confidence=0.0)  # IoU: the model's 0.7
    compare_boxes = cmp.runs[0].result.xyxy / cmp.image.scale
    np.testing.assert_allclose(np.round(compare_boxes, 1), detect_boxes, atol=0.051)
    run = wf.run_workflow(ctx, CAT, "rf-detr-nano", "", 0.0, 0, "qwen2.5-vl-3b", wf.schema_json(wf.BOOK_SCHEMA),
                          max_new_tokens=2)  # fmt: skip
    merged = wf.merge_duplicates(cmp.runs[0].result)
    np.testing.assert_allclose(run.detections.xyxy, merged.xyxy[: len(run.detections)])
    assert len(run.rows) == min(len(merged), 32)
