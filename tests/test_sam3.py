"""SAM 3: every instance of a typed concept as a mask, as an open-vocabulary detector with masks
(tiny weights built offline). Detect, Compare, the Workflow and the API take it unchanged."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import app
from model_loaders.core.availability import availability
from model_loaders.core.errors import InputError
from model_loaders.core.registry import get_spec
from model_loaders.tasks import compare as tc
from model_loaders.tasks import detect as td
from model_loaders.tasks.segment import rle_decode

KEY = "sam3"
CAT = {"path": str(app.ASSETS / "cat.jpg")}


@pytest.fixture()
def counted(ctx: Any, monkeypatch: Any) -> dict[str, int]:
    """How often the image encoder, the text encoder and the whole model run (features forgotten first)."""
    from transformers import Sam3Model

    with ctx.use(KEY) as bundle:
        bundle.forget()
    calls = {"vision": 0, "text": 0, "forward": 0}
    for name, method in (("vision", "get_vision_features"), ("text", "get_text_features"), ("forward", "forward")):
        real = getattr(Sam3Model, method)

        def count(self: Any, *a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            calls[_name] += 1
            return _real(self, *a, **k)

        monkeypatch.setattr(Sam3Model, method, count)
    return calls


def test_several_concepts_in_one_call_share_one_image_encoding(ctx: Any, counted: dict[str, int]) -> None:
    run = td.run(ctx, CAT, KEY, "cat, sofa, ear")
    det = run.detections
    assert counted == {"vision": 1, "text": 3, "forward": 3}, counted
    assert run.classes == ("cat", "sofa", "ear") and len(det) > 0
    assert det.mask is not None and det.mask.shape[1:] == run.image.shape[:2] and det.mask.dtype == bool
    assert set(det.data["class_name"]) <= {"cat", "sofa", "ear"}
    assert np.all(det.confidence[:-1] >= det.confidence[1:])  # best first


def test_the_threshold_refilters_without_running_the_model(ctx: Any, counted: dict[str, int]) -> None:
    run = td.run(ctx, CAT, KEY, "cat")
    ran = dict(counted)
    everything = td.filtered(run, confidence=0.0, iou=1.0).detections
    strict = td.filtered(run, confidence=float(np.median(run.detections.confidence)), iou=1.0).detections
    assert counted == ran, "re-filtering ran the model"
    assert 0 < len(strict) < len(everything) and strict.mask is not None and len(strict.mask) == len(strict)


def test_the_detect_endpoint_returns_masks_at_the_original_size(client: Any) -> None:
    from gradio_client import handle_file

    out, _ = client.predict(handle_file(CAT["path"]), KEY, 0.0, 1.0, "cat", api_name="/detect")
    found = out["detections"]
    assert found and out["image"] == {"width": 451, "height": 300}
    mask = rle_decode(found[0]["segmentation"])
    assert mask.shape == (300, 451) and found[0]["mask_area"] == int(mask.sum())


def test_sam3_next_to_detectors_in_compare(ctx: Any) -> None:
    from model_loaders.tasks import agreement
    from model_loaders.tasks import segment as seg

    result = tc.compare(ctx, CAT, "detect", ["sam3", "owlv2-base"], "cat", 0.0, "")
    assert [r.ok for r in result.runs] == [True, True], [r.error for r in result.runs]
    assert result.matrix is not None and result.matrix.shape == (2, 2)
    # SAM 2.1 prompted with SAM 3's boxes: one IoU per instance, the mean in a note
    [check] = result.mask_checks
    det = result.runs[0].result
    assert check.key == "sam3" and len(check.ious) == min(len(det), tc.MASK_CHECK_MAX) > 0
    embedding, _ = seg.embed(ctx, result.image, check.segmenter)
    first = seg.decode(ctx, embedding, [], [], tuple(float(v) for v in det.xyxy[0]), False)
    assert check.ious[0] == pytest.approx(agreement.mask_iou(first.masks[first.best], det.mask[0]))
    assert any("mean mask IoU" in n and f"{check.mean:.2f}" in n for n in result.notes)
    assert tc.compare(ctx, CAT, "detect", ["owlv2-base", "grounding-dino-tiny"], "cat", 0.0, "").mask_checks == []


def test_bad_concepts_and_gating(ctx: Any) -> None:
    for prompt in ("", " , ;. ", None):
        with pytest.raises(InputError, match="classes to find|Type"):
            td.run(ctx, CAT, KEY, prompt)
    many = ", ".join(f"thing{i}" for i in range(60))
    run = td.run(ctx, CAT, KEY, many)
    assert len(run.classes) < 60 and any("classes" in n for n in run.notes)  # capped, and said so
    gated = availability(get_spec(KEY), "hub")
    if not gated.ok:  # no HF_TOKEN here: the reason says what to do
        assert gated.kind == "gated" and "HF_TOKEN" in gated.reason
    spec = get_spec(KEY)
    assert spec.gated and spec.licence == "SAM License" and spec.commercial == "conditions"


def test_segment_concepts_with_words_boxes_and_a_threshold(ctx: Any) -> None:
    from model_loaders.tasks.concepts import segment_concepts

    everything = segment_concepts(ctx, CAT, "cat, ear", threshold=0.0)
    assert everything["concepts"] == ["cat", "ear"] and everything["count"] > 0
    first = everything["instances"][0]
    assert first["class"] in {"cat", "ear"} and rle_decode(first["segmentation"]).shape == (300, 451)
    scores = sorted(i["score"] for i in everything["instances"])
    strict = segment_concepts(ctx, CAT, "cat, ear", threshold=scores[len(scores) // 2])
    assert 0 < strict["count"] < everything["count"]
    by_box = segment_concepts(ctx, CAT, "", boxes=[[100, 50, 300, 250], [0, 0, 40, 40, 0]], threshold=0.0)
    assert by_box["count"] > 0 and {i["class"] for i in by_box["instances"]} == {"exemplar"}
    none = segment_concepts(ctx, CAT, "cat", threshold=1.0)
    assert none["count"] == 0 and any("No instance found" in n for n in none["notes"])  # a note, not an error
    for concepts, boxes, message in (("", None, "classes to find|Type"), (" ,;. ", None, "classes to find|Type"),
                                     ("cat", [[0, 0, 900, 10]], "outside the image"),
                                     ("cat", [[1, 2, 3]], "Each box")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            segment_concepts(ctx, CAT, concepts, boxes=boxes)
    with pytest.raises(InputError, match="cannot segment by words"):
        segment_concepts(ctx, CAT, "cat", model="owlv2-base")


def test_the_segment_concepts_endpoint(client: Any) -> None:
    from gradio_client import handle_file

    out = client.predict(handle_file(CAT["path"]), "cat", None, 0.0, api_name="/segment_concepts")
    assert out["count"] == len(out["instances"]) > 0 and out["image"] == {"width": 451, "height": 300}


def test_a_new_prompt_on_the_same_image_runs_only_the_decoder(ctx: Any, counted: dict[str, int]) -> None:
    first = td.run(ctx, CAT, KEY, "cat, sofa").detections
    second = td.run(ctx, CAT, KEY, "ear, cat").detections
    assert counted == {"vision": 1, "text": 3, "forward": 4}, counted  # the image once; "cat" once
    again = td.run(ctx, CAT, KEY, "cat, sofa").detections  # reused features give the same answer
    assert np.allclose(first.confidence, again.confidence) and np.array_equal(first.mask, again.mask)
    assert len(second) > 0
    td.run(ctx, {"path": str(app.ASSETS / "coffee.jpg")}, KEY, "cat")  # another image is encoded
    assert counted["vision"] == 2


# --- the Segment tab's "by words" session ----------------------------------------------------------


def _session(ctx: Any, source: Any = CAT) -> Any:
    from model_loaders.tasks import segment_session as ss

    return ss.set_image(ctx, ss.SegmentSession(), source)


def test_find_by_words_then_refilter_switch_off_and_keep(ctx: Any, counted: dict[str, int]) -> None:
    from model_loaders.tasks import concepts as cc
    from model_loaders.tasks import segment_session as ss

    session = cc.find(ctx, _session(ctx), "cat, ear")
    found = session.instances
    assert found is not None and found.source == "words" and len(found.scores) > 1
    assert found.mask(0).shape == session.image.array.shape[:2] and set(found.names) <= {"cat", "ear"}
    ran = dict(counted)
    cc.set_threshold(session, 0.0)
    assert session.instances.shown == list(range(len(found.scores)))
    cc.set_threshold(session, float(np.median(found.scores)) + 1e-6)
    strict = session.instances.shown
    assert 0 < len(strict) < len(found.scores) and all(found.scores[i] > np.median(found.scores) for i in strict)
    cc.set_threshold(session, 0.0)
    labels = [session.instances.label(i) for i in session.instances.above]
    cc.set_shown(session, labels[1:])  # the first one switched off
    assert session.instances.shown == list(range(1, len(found.scores)))
    assert counted == ran, "re-filtering and switching ran the model"
    shown = [o.label for o in ss.current_objects(session)]
    assert len(shown) == len(found.scores) - 1  # what is on screen is what would be exported
    cc.keep(session)
    assert len(session.state.objects) == len(found.scores) - 1 and session.instances is None  # nothing left to show
    assert {o.label for o in session.state.objects} <= {"cat", "ear"}
    ss.undo(ctx, session, "sam2.1-hiera-tiny")
    assert session.state.objects == ()  # keeping is undoable


def test_refine_one_instance_with_clicks_changes_only_that_one(ctx: Any) -> None:
    from model_loaders.tasks import concepts as cc
    from model_loaders.tasks import segment_session as ss

    session = cc.set_threshold(cc.find(ctx, _session(ctx), "cat"), 0.0)
    found = session.instances
    assert len(found.shown) >= 3
    target = found.shown[1]
    cc.refine(ctx, session, target, "sam2.1-hiera-tiny")
    others = [i for i in found.shown if i != target]
    kept = session.state.objects
    assert [o.score for o in kept] == [float(found.scores[i]) for i in others]
    assert all(np.array_equal(o.mask, found.mask(i)) for o, i in zip(kept, others, strict=True))  # untouched
    x1, y1, x2, y2 = (float(v) for v in found.boxes[target])
    assert session.state.prompts.box == (x1, y1, x2, y2) and session.prediction is not None  # SAM 2.1 on its box
    before = session.prediction.masks[session.selected].copy()
    ss.click(ctx, session, (x1 + x2) / 2, (y1 + y2) / 2, False, False, "sam2.1-hiera-tiny")  # exclude its centre
    assert session.state.prompts.points and not np.array_equal(before, session.prediction.masks[session.selected])
    ss.new_object(session)
    assert len(session.state.objects) == len(others) + 1
    assert all(np.array_equal(o.mask, found.mask(i)) for o, i in zip(session.state.objects, others, strict=False))


def test_exports_carry_each_instance_with_its_concept(ctx: Any) -> None:
    import json

    from model_loaders.tasks import concepts as cc
    from model_loaders.tasks import segment_session as ss

    session = cc.set_threshold(cc.find(ctx, _session(ctx), "cat, ear"), 0.0)
    ss.click(ctx, session, 30, 30, False, True, "sam2.1-hiera-tiny")  # and one clicked object
    files = ss.export(ctx, session)
    doc = json.loads(open(files[2]).read())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    assert set(names.values()) >= {"object"} and set(names.values()) <= {"object", "cat", "ear"}
    assert len(doc["annotations"]) == len(session.instances.shown) + 1
    for ann in doc["annotations"]:
        assert rle_decode(ann["segmentation"]).shape == (300, 451)  # the original size
    assert [names[a["category_id"]] for a in doc["annotations"][1:]] == [session.instances.names[i] for i in session.instances.shown]


def test_a_click_on_a_found_instance_keeps_it(ctx: Any) -> None:
    from model_loaders.tasks import concepts as cc
    from model_loaders.tasks import everything as ev

    session = _session(ctx)
    result = ev.collect(ctx, session.image, "sam2.1-hiera-tiny", per_side=6, score_floor=0.0, min_area=0.0)
    cc.show_everything(session, result)
    found = session.instances
    assert found.source == "everything" and len(found.shown) == len(result.masks) > 0
    smallest = int(np.argmin(result.masks.reshape(len(result.masks), -1).sum(1)))
    ys, xs = np.nonzero(result.masks[smallest])
    x, y = float(xs[len(xs) // 2]), float(ys[len(ys) // 2])
    hit = cc.instance_at(session, x, y)
    assert hit is not None and result.masks[hit][int(y), int(x)]
    assert result.masks[hit].sum() <= min(m.sum() for m in result.masks if m[int(y), int(x)])  # the smallest under it
    cc.keep(session, [hit])
    assert np.array_equal(session.state.objects[-1].mask, result.masks[hit])
    assert hit not in session.instances.shown if session.instances else True


def test_find_refuses_what_it_cannot_do(ctx: Any) -> None:
    from model_loaders.tasks import concepts as cc
    from model_loaders.tasks import segment_session as ss

    with pytest.raises(InputError, match="image first"):
        cc.find(ctx, ss.SegmentSession(), "cat")
    session = _session(ctx)
    for text, box, message in (("", False, "classes to find|Type"), (" ;,. ", False, "classes to find|Type"),
                               ("cat", True, "Draw the example box")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            cc.find(ctx, session, text, use_box=box)
    with pytest.raises(InputError, match="Find something first"):
        cc.set_threshold(session, 0.3)
    cc.find(ctx, session, "cat")
    with pytest.raises(InputError, match="threshold"):
        cc.set_threshold(session, 3)
    ss.click(ctx, session, 10, 10, True, True, "sam2.1-hiera-tiny")
    ss.click(ctx, session, 200, 150, True, True, "sam2.1-hiera-tiny")  # a box drawn: the example
    cc.find(ctx, session, "", use_box=True, include=True)
    assert session.instances.names and set(session.instances.names) == {"exemplar"}
    assert session.state.prompts.box is None  # the box was the example, not an object


@pytest.mark.browser
def test_find_by_words_in_the_segment_tab(page: Any, app_url: str) -> None:
    from tests.browsing import error_badges, open_tab, pick_example

    page.goto(app_url)
    open_tab(page, "Segment")
    pick_example(page, "segment-examples")
    page.locator("#segment-canvas img").wait_for()
    page.locator("#segment-words-text input").fill("cat, ear")
    page.locator("#segment-words-text input").press("Enter")
    page.locator("#segment-threshold input[type='number']").wait_for()
    slider = page.locator("#segment-threshold input[type='number']")
    slider.fill("0")
    slider.press("Enter")
    summary = page.locator("#segment-summary")
    summary.get_by_text("instance(s)").wait_for()
    toggles = page.locator("#segment-toggles input[type='checkbox']")
    count = toggles.count()
    assert count > 1
    toggles.first.uncheck()
    summary.get_by_text("1 switched off").wait_for()
    page.locator("#segment-keep").click()
    summary.get_by_text(f"{count - 1} kept object(s)").wait_for()
    assert error_badges(page) == []


def test_workflow_masked_crops_show_only_the_object(ctx: Any) -> None:
    from model_loaders.tasks import workflow as wf

    schema = wf.schema_json(wf.BOOK_SCHEMA)
    run = wf.run_workflow(ctx, CAT, "sam3", "cat", 0.0, 8, "qwen2.5-vl-3b", schema, True, max_new_tokens=2)
    assert run.rows and run.detections.mask is not None
    image = run.image.array
    for row, mask in zip(run.rows, run.detections.mask, strict=False):
        x1, y1, x2, y2 = row.crop_box
        inside = mask[y1:y2, x1:x2]
        assert row.crop.shape[:2] == inside.shape
        assert np.array_equal(row.crop[inside], image[y1:y2, x1:x2][inside])  # the object as it is
        assert np.all(row.crop[~inside] == wf.MASK_FILL)  # its surroundings grey
    plain = wf.run_workflow(ctx, CAT, "sam3", "cat", 0.0, 8, "qwen2.5-vl-3b", schema, False, max_new_tokens=2)
    x1, y1, x2, y2 = plain.rows[0].crop_box
    assert np.array_equal(plain.rows[0].crop, image[y1:y2, x1:x2])
    boxes_only = wf.run_workflow(ctx, CAT, "owlv2-base", "cat", 0.0, 8, "qwen2.5-vl-3b", schema, True, max_new_tokens=2)
    assert any("boxes only" in n for n in boxes_only.notes)


def test_our_post_processing_keeps_what_transformers_would(ctx: Any) -> None:
    """`Sam3Bundle._instances` (top instances first, bool masks) against transformers' own
    post-processing of the same outputs, best first."""
    import torch
    from PIL import Image

    from model_loaders.families import sam3

    image = np.asarray(Image.open(CAT["path"]).convert("RGB"))
    h, w = image.shape[:2]
    with ctx.use(KEY) as bundle, torch.inference_mode():
        pixels = bundle.processor(images=image, return_tensors="pt")["pixel_values"]
        outs = [bundle.model(pixel_values=pixels, **bundle.processor(text=t, return_tensors="pt")) for t in ("cat", "ear")]
        ours = bundle._instances(outs, (h, w), ["cat", "ear"])
        theirs = [bundle.processor.post_process_instance_segmentation(o, threshold=sam3.MASK_FLOOR,
                  mask_threshold=sam3.MASK_THRESHOLD, target_sizes=[(h, w)])[0] for o in outs]  # fmt: skip
    scores = torch.cat([t["scores"] for t in theirs])
    order = torch.argsort(scores, descending=True, stable=True)[: sam3.MAX_INSTANCES]
    masks = torch.cat([t["masks"] for t in theirs])[order].bool().numpy()
    boxes = torch.cat([t["boxes"] for t in theirs])[order].numpy()
    boxes[:, [0, 2]], boxes[:, [1, 3]] = boxes[:, [0, 2]].clip(0, w), boxes[:, [1, 3]].clip(0, h)
    assert len(ours) == len(order) > 0
    np.testing.assert_allclose(ours.confidence, scores[order].numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours.xyxy, boxes, rtol=1e-5, atol=1e-3)
    assert np.array_equal(ours.mask, masks)
