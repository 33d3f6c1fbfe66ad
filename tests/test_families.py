"""Every registered model, the timm way: each family adapter, built and run for every entry.

- every model that can run here is built with ``tiny`` weights and runs each of its tasks once
  through the task layer, returning its typed result;
- every model with a published parameter count has a real-size architecture (built on the meta
  device: shapes only) within 5% of that count;
- the ``hub`` code path, offline: for each family a tiny model is saved in the shape the Hub
  checkpoint has (its ``config.json`` model type, file names, processor files) and loaded back
  through the adapter's own hub path from that folder: no missing or unexpected weights,
  identical tensors, a working processor, and the task runs.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_loaders.core.availability import LoadSettings, availability
from model_loaders.core.images import DecodedImage
from model_loaders.core.protocols import TASK_PROTOCOLS, AskRequest
from model_loaders.core.registry import FAMILIES, REGISTRY, get_spec
from model_loaders.core.results import DepthResult, TextResult, Timings
from model_loaders.tasks import ask, depth, detect, segment

RUNNABLE = [s for s in REGISTRY.values() if availability(s, "tiny").ok and not s.is_api]
PUBLISHED = [s for s in REGISTRY.values() if s.params_m and not s.is_api and FAMILIES[s.family].module]


def module_of(spec: Any) -> Any:
    return importlib.import_module(FAMILIES[spec.family].module)


@pytest.fixture(scope="module")
def picture() -> DecodedImage:
    rng = np.random.default_rng(3)
    return DecodedImage.of_array(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))


def test_every_model_this_app_can_run_is_tested() -> None:
    families = {s.family for s in RUNNABLE}
    runnable_families = {f for f, fam in FAMILIES.items() if fam.module and f != "gemini"}
    assert families == runnable_families, runnable_families - families


@pytest.mark.parametrize("spec", RUNNABLE, ids=lambda s: s.key)
def test_every_model_builds_tiny_and_runs_each_of_its_tasks(ctx: Any, spec: Any, picture: DecodedImage) -> None:
    import supervision as sv

    for task in spec.tasks:
        if task == "segment":
            result = segment.segment(ctx, picture, spec.key, [(40.0, 30.0)], [1])
            assert result.prediction.masks.shape[1:] == (96, 128) and result.prediction.masks.dtype == bool
        elif task == "depth":
            result = depth.estimate(ctx, picture, spec.key)
            assert isinstance(result, DepthResult) and result.depth.shape == (96, 128)
            assert result.kind == spec.depth_kind
        elif task == "track" and spec.accepts("points"):  # the video model: a click, then the next frame tracked
            with ctx.use(spec.key, part="video") as tracker:
                session = tracker.new_session((96, 128), 2)
                first = tracker.prompt(session, picture.array, 0, {1: ([(40.0, 30.0)], [1], None)})
                second = tracker.step(session, picture.array, 1)
            for found in (first, second):
                mask, score = found[1]
                assert mask.shape == (96, 128) and mask.dtype == bool and 0.0 <= score <= 1.0
        elif task == "track":  # by words: a concept found on the first frame, followed into the next
            with ctx.use(spec.key, part="video") as tracker:
                session = tracker.new_session((96, 128), 2)
                tracker.add_concepts(session, ["cat"])
                frames = [tracker.step(session, picture.array, i) for i in range(2)]
            for found in frames:
                assert found and all(m.shape == (96, 128) and m.dtype == bool and 0.0 <= s <= 1.0
                                     for m, s in found.values())  # fmt: skip
        elif task == "detect":
            result = detect.detections(ctx, picture, spec.key, ["cat"] if spec.open_vocabulary else [])
            assert isinstance(result, sv.Detections) and result.metadata["model"] == spec.key
            assert (result.confidence is not None) == spec.scores_boxes or len(result) == 0
        else:
            assert task == "ask", task
            request = ask.default_request(spec, "What is this?", max_new_tokens=4)
            result = ask.answer(ctx, picture, spec.key, request)
            assert isinstance(result, TextResult) and result.raw and result.timings.model == spec.key


@pytest.mark.parametrize("spec", PUBLISHED, ids=lambda s: s.key)
def test_real_size_architecture_has_the_registered_parameter_count(spec: Any) -> None:
    import torch

    module = module_of(spec)
    if getattr(module, "ARCHITECTURE_ON_META", True):
        with torch.device("meta"):  # shapes only: no memory, no init time
            model = module.architecture(spec)
    else:
        model = module.architecture(spec)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params_m - spec.params_m) / spec.params_m < 0.05, f"{spec.key}: {params_m:.1f} M vs {spec.params_m} M"


def test_an_unknown_variant_is_an_error_not_a_fallback() -> None:
    from model_loaders.core.errors import ModelUnavailable

    for key in ("sam2.1-hiera-tiny", "depth-anything-v2-small", "rf-detr-nano", "qwen2.5-vl-3b", "florence-2-base"):
        spec = dataclasses.replace(get_spec(key), variant="huge")
        with pytest.raises(ModelUnavailable, match="unknown"):
            module_of(spec).offline_parts(spec, tiny=False)


# --- the hub path, offline: a tiny checkpoint in the Hub's shape ------------------------------------

# One entry per family (per architecture for the detectors): what the Hub checkpoint's config says it is.
HUB_SHAPES = {
    "sam2.1-hiera-tiny": "sam2_video",  # the SAM 2.1 checkpoints are video configs; Sam2Model reads them
    "depth-anything-v2-small": "depth_anything",
    "rf-detr-nano": "rf_detr",
    "d-fine-nano": "d_fine",
    "rt-detrv2-r18": "rt_detr_v2",
    "owlv2-base": "owlv2",
    "grounding-dino-tiny": "grounding-dino",
    "florence-2-base": "florence2",
    "qwen2.5-vl-3b": "qwen2_5_vl",
    "qwen3-vl-2b": "qwen3_vl",
    "paligemma2-3b-mix-448": "paligemma",
    "smolvlm-256m-instruct": "idefics3",
    "llama-3.2-11b-vision-instruct": "mllama",
    "sam3": "sam3",  # the concept model's part of the release (a video config would be "sam3_video")
    "sam3-tracker": "sam3_tracker",  # its click tracker
}


def _run_once(spec: Any, bundle: Any, picture: DecodedImage) -> None:
    task = spec.task
    assert isinstance(bundle, TASK_PROTOCOLS[task])
    t = Timings()
    if task == "segment":
        emb = bundle.encode(picture.array, picture.digest)
        assert bundle.decode(emb, [(40.0, 30.0)], [1], None, True).masks.shape[1:] == (96, 128)
    elif task == "depth":
        assert bundle.estimate(picture.array, t).depth.shape == (96, 128)
    elif task == "detect":
        bundle.detect(picture.array, t, ["cat"] if spec.open_vocabulary else None)
    else:
        request = ask.default_request(spec, "What is this?", max_new_tokens=3)
        chunks = list(bundle.ask(picture.pil(), request, t, None))
        assert chunks[-1].result is not None and chunks[-1].result.raw


@pytest.mark.parametrize(("key", "model_type"), list(HUB_SHAPES.items()), ids=list(HUB_SHAPES))
def test_the_hub_path_loads_a_checkpoint_saved_in_the_hub_shape(key: str, model_type: str, tmp_path: Path,
                                                               picture: DecodedImage) -> None:  # fmt: skip
    import json

    import torch

    spec = get_spec(key)
    module = module_of(spec)
    torch.manual_seed(1)
    saved = module.architecture(spec, tiny=True).eval()
    _, processor = module.offline_parts(spec, tiny=True)
    saved.save_pretrained(tmp_path, safe_serialization=True)
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == model_type
    assert (tmp_path / "model.safetensors").exists()

    local = dataclasses.replace(spec, checkpoint=str(tmp_path), revision=None)
    bundle = module.load(local, LoadSettings("hub", "cpu"))
    loaded = bundle.model.state_dict()
    reference = saved.state_dict()
    missing = sorted(set(loaded) - set(reference))
    assert not missing, f"weights the checkpoint does not have (left random): {missing[:5]}"
    for name, tensor in loaded.items():
        assert torch.equal(tensor, reference[name]), f"{name} differs from the checkpoint"
    if model_type != "sam2_video":  # Sam2Model reads the image part of a video checkpoint
        assert set(loaded) == set(reference), sorted(set(reference) - set(loaded))[:5]
    _run_once(spec, bundle, picture)


def test_a_task_request_for_a_model_without_that_protocol_fails_clearly(ctx: Any, picture: DecodedImage) -> None:
    from model_loaders.core.errors import InputError

    with pytest.raises(InputError, match="cannot answer questions"):
        ask.answer(ctx, picture, "sam2.1-hiera-tiny", AskRequest(question="hi"))
