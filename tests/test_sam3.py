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
def counted(monkeypatch: Any) -> dict[str, int]:
    """How often the image encoder and the whole model run."""
    from transformers import Sam3Model

    calls = {"vision": 0, "forward": 0}
    vision, forward = Sam3Model.get_vision_features, Sam3Model.forward

    def count_vision(self: Any, *a: Any, **k: Any) -> Any:
        calls["vision"] += 1
        return vision(self, *a, **k)

    def count_forward(self: Any, *a: Any, **k: Any) -> Any:
        calls["forward"] += 1
        return forward(self, *a, **k)

    monkeypatch.setattr(Sam3Model, "get_vision_features", count_vision)
    monkeypatch.setattr(Sam3Model, "forward", count_forward)
    return calls


def test_several_concepts_in_one_call_share_one_image_encoding(ctx: Any, counted: dict[str, int]) -> None:
    run = td.run(ctx, CAT, KEY, "cat, sofa, ear")
    det = run.detections
    assert counted == {"vision": 1, "forward": 3}, counted
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
    result = tc.compare(ctx, CAT, "detect", ["sam3", "owlv2-base"], "cat", 0.0, "")
    assert [r.ok for r in result.runs] == [True, True], [r.error for r in result.runs]
    assert result.matrix is not None and result.matrix.shape == (2, 2)


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
