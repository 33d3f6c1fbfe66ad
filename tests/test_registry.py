"""Registry integrity: every spec, every licence fact the issue names, availability reasons."""

from __future__ import annotations

import dataclasses
import re

import pytest

from model_loaders.core import availability as adapters
from model_loaders.core.availability import availability
from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.registry import DEFAULTS, FAMILIES, REGISTRY, _build, get_spec, specs_for_task
from model_loaders.core.specs import TASKS

SHA = re.compile(r"^[0-9a-f]{40}$")
ALL = list(REGISTRY.values())


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.key)
def test_every_spec_is_complete(spec):
    assert re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", spec.key), "keys are lowercase, URL- and CLI-safe"
    assert spec.name and spec.family
    assert spec.tasks and set(spec.tasks) <= set(TASKS)
    assert spec.licence and spec.licence_url.startswith("https://")
    assert spec.paper.startswith("https://")
    assert spec.commercial in ("yes", "no", "conditions")
    if spec.commercial != "yes":
        assert spec.commercial_note, "a restriction must say what it is"
    if spec.is_api:
        assert spec.env_key, "API models need a key"
    else:
        assert spec.params_m and spec.params_m > 0
    family = FAMILIES[spec.family]  # every spec's family is registered
    assert family.module is not None or family.not_run, f"family {spec.family} has no adapter and no reason"


@pytest.mark.parametrize("spec", [s for s in ALL if s.hub_url], ids=lambda s: s.key)
def test_hub_checkpoints_are_pinned(spec):
    assert (spec.revision and SHA.match(spec.revision)) or spec.revision_note, (
        f"{spec.key}: pin a 40-hex commit or say why not"
    )


def test_unpinned_exceptions_are_few_and_explained():
    unpinned = {s.checkpoint for s in ALL if s.hub_url and not (s.revision and SHA.match(s.revision))}
    assert len(unpinned) <= 2, unpinned  # repositories (SAM 3's concept model and tracker share one)


def test_duplicate_keys_are_rejected():
    spec = ALL[0]
    with pytest.raises(ValueError, match="duplicate"):
        _build([spec, dataclasses.replace(spec, name="other")])


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ALL[0].key = "x"  # type: ignore[misc]


def test_bad_revision_is_rejected():
    with pytest.raises(ValueError, match="revision"):
        dataclasses.replace(ALL[0], revision="main")


def test_seed_article_models_are_all_registered():
    families = {
        "RF-DETR": ["rf-detr-nano", "rf-detr-medium", "rf-detr-large", "rf-detr-xlarge", "rf-detr-2xlarge"],
        "YOLOv12": [f"yolov12{s}" for s in "nsmlx"],
        "PaliGemma 2": [f"paligemma2-{s}-mix-448" for s in ("3b", "10b", "28b")],
        "Florence-2": ["florence-2-base", "florence-2-large"],
        "SAM 2.1": [f"sam2.1-hiera-{s}" for s in ("tiny", "small", "base-plus", "large")],
        "Gemini 2.5": ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"],
        "Llama 3.2 Vision": ["llama-3.2-11b-vision-instruct", "llama-3.2-90b-vision-instruct"],
        "Qwen2.5-VL": ["qwen2.5-vl-3b", "qwen2.5-vl-7b", "qwen2.5-vl-72b"],
        "Depth Anything V2": ["depth-anything-v2-small", "depth-anything-v2-base", "depth-anything-v2-large"],
        "CogVLM": ["cogvlm-chat", "cogvlm2-llama3-chat-19b"],
    }
    missing = [k for keys in families.values() for k in keys if k not in REGISTRY]
    assert not missing


@pytest.mark.parametrize(
    ("key", "licence", "commercial"),
    [
        ("depth-anything-v2-small", "Apache-2.0", "yes"),
        ("depth-anything-v2-base", "CC-BY-NC-4.0", "no"),
        ("depth-anything-v2-large", "CC-BY-NC-4.0", "no"),
        ("qwen2.5-vl-3b", "Qwen Research License", "no"),
        ("qwen2.5-vl-7b", "Apache-2.0", "yes"),
        ("qwen2.5-vl-72b", "Qwen License", "conditions"),
        ("yolov12n", "AGPL-3.0", "conditions"),
        ("rf-detr-medium", "Apache-2.0", "yes"),
        ("rf-detr-xlarge", "Roboflow Platform Model License 1.0", "conditions"),
        ("florence-2-base", "MIT", "yes"),
        ("sam2.1-hiera-large", "Apache-2.0", "yes"),
        ("gemini-2.5-pro", "Gemini API Terms (proprietary)", "conditions"),
    ],
)
def test_per_checkpoint_licences(key, licence, commercial):
    spec = get_spec(key)
    assert (spec.licence, spec.commercial) == (licence, commercial)


def test_gated_models_are_marked():
    gated = {s.key for s in ALL if s.gated}
    assert {"paligemma2-3b-mix-448", "llama-3.2-11b-vision-instruct", "llama-3.2-90b-vision-instruct"} <= gated
    assert not any(get_spec(k).gated for k in DEFAULTS.values())


def test_defaults_are_registered_permissive_and_on_task():
    for task, key in DEFAULTS.items():
        spec = get_spec(key)
        assert task in spec.tasks and spec.commercial == "yes" and not spec.gated


def test_unknown_key_is_a_typed_error():
    with pytest.raises(ModelUnavailable) as info:
        get_spec("no-such-model")
    assert info.value.kind == "unknown_model" and "no-such-model" in str(info.value)


def test_specs_for_task_lists_home_models_first():
    detect = specs_for_task("detect")
    assert detect[0].task == "detect"
    assert any(s.key == "florence-2-base" for s in detect), "Florence-2 grounding counts as a detector"
    homes = [s.task == "detect" for s in detect]
    assert homes == sorted(homes, reverse=True)


def test_remote_code_models_are_never_runnable():
    for key in ("cogvlm-chat", "cogvlm2-llama3-chat-19b"):
        avail = availability(get_spec(key), "hub")
        assert not avail.ok and avail.kind == "remote_code" and "authors' code" in avail.status


def test_api_model_without_key_says_which_variable(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setattr(adapters, "_module_exists", lambda name: True)
    avail = availability(get_spec("gemini-2.5-flash"), "hub")
    assert not avail.ok and avail.kind == "missing_key" and "GEMINI_API_KEY" in avail.reason


def test_gated_model_without_token_in_hub_mode(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(adapters, "_module_exists", lambda name: True)
    spec = get_spec("paligemma2-3b-mix-448")
    avail = availability(spec, "hub")
    assert not avail.ok and avail.kind == "gated" and "HF_TOKEN" in avail.reason
    assert availability(spec, "tiny").ok, "offline weights need no token"
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    assert availability(spec, "hub").ok


def test_missing_extra_names_the_extra(monkeypatch):
    monkeypatch.setattr(adapters, "_module_exists", lambda name: name != "ultralytics")
    avail = availability(get_spec("yolov12n"), "hub")
    assert not avail.ok and avail.kind == "missing_extra" and "[yolo]" in avail.reason


def test_family_without_module_shows_coming(monkeypatch):
    import model_loaders.core.availability as availability_module
    from model_loaders.core.registry import Family

    families = dict(FAMILIES, sam2=Family("model_loaders.not_written_yet", FAMILIES["sam2"].caps))
    monkeypatch.setattr(availability_module, "FAMILIES", families)
    avail = availability(get_spec("sam2.1-hiera-tiny"), "tiny")
    assert not avail.ok and avail.status == "coming"
