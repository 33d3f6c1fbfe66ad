"""`--weights hub` offline with an empty cache: a clear per-model error, never a crash or a fallback."""

from __future__ import annotations

import pytest

import app
from model_loaders.core.availability import availability
from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.registry import REGISTRY

HUB_RUNNABLE = [
    s for s in REGISTRY.values() if not s.is_api and availability(s, "hub").ok
]


@pytest.fixture(scope="module")
def hub_ctx():
    # A machine big enough for every model, so that what is tested is the offline error.
    return app.make_context("hub", "cpu", budget_bytes=2**50, available=lambda: 2**50)


@pytest.mark.parametrize("spec", HUB_RUNNABLE, ids=lambda s: s.key)
def test_offline_without_cache_is_a_typed_error_naming_the_model(hub_ctx, spec):
    with pytest.raises(ModelUnavailable) as info:
        with hub_ctx.use(spec.key):
            pass
    err = info.value
    assert err.kind == "offline", (err.kind, str(err))
    assert spec.name in str(err) and "--weights random" in str(err)
    assert not hub_ctx.cache.is_loaded(hub_ctx.cache_key(spec)), "a failed load caches nothing"


def test_gated_model_without_token_is_refused_before_any_download(hub_ctx, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(ModelUnavailable) as info:
        with hub_ctx.use("llama-3.2-11b-vision-instruct"):
            pass
    assert info.value.kind == "gated" and "HF_TOKEN" in str(info.value)
