"""Memory admission with real registry sizes (``random`` weights) and a fake machine.

No 7B model is ever built here: the family loaders are replaced by one that fails the test if
it is called, so a refusal that came only after loading would show up as a failure.
"""

from __future__ import annotations

from typing import Any

import pytest

import app
from model_loaders.core import availability as adapters
from model_loaders.core import context
from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.registry import REGISTRY, get_spec
from tests.conftest import free_port
from tests.rawqueue import call

GB = 2**30


@pytest.fixture()
def no_loading(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace every family loader with one that records the call and fails."""
    calls: list[str] = []

    class Refuse:
        @staticmethod
        def load(spec: Any, settings: Any) -> Any:
            calls.append(spec.key)
            raise AssertionError(f"{spec.key} was loaded although admission should refuse it")

    monkeypatch.setattr(context, "family_module", lambda spec: Refuse)  # where the cache's loader looks it up
    return calls


def small_machine(budget_gb: float = 8, free_gb: float = 6) -> Any:
    return app.make_context("random", "cpu", budget_bytes=int(budget_gb * GB), available=lambda: int(free_gb * GB))


@pytest.mark.parametrize("key", ["qwen2.5-vl-7b", "llama-3.2-11b-vision-instruct", "qwen2.5-vl-72b"])
def test_a_model_too_large_for_the_budget_is_refused_before_loading(no_loading, key):
    ctx = small_machine()
    spec = get_spec(key)
    avail = ctx.availability(spec)
    assert not avail.ok and avail.kind == "too_large"
    assert avail.reason.startswith(f"{spec.name} needs about ") and "this server has 8.0 GB for models" in avail.reason
    with pytest.raises(ModelUnavailable) as info:
        with ctx.use(key):
            pass
    assert info.value.kind == "too_large"
    assert no_loading == []


def test_the_need_counts_weights_at_the_load_dtype_plus_working_memory():
    ctx = small_machine()
    need = ctx.memory_need(get_spec("qwen2.5-vl-7b"))
    assert need.weights == int(get_spec("qwen2.5-vl-7b").params_m * 1e6 * 4), "float32 on CPU"
    assert need.working > 0 and need.total == need.weights + need.working
    assert small_machine().memory_need(get_spec("gemini-2.5-flash")) is None, "API models hold nothing here"
    assert app.make_context("tiny", "cpu").memory_need(get_spec("qwen2.5-vl-7b")) is None, "tiny sizes are measured"


def test_every_model_that_fits_is_offered_and_every_one_that_does_not_says_why():
    ctx = small_machine(budget_gb=4, free_gb=4)
    for spec in REGISTRY.values():
        avail = ctx.availability(spec)
        need = ctx.memory_need(spec)
        if need is not None and need.total > 4 * GB and adapters.availability(spec, "random").ok:
            assert avail.kind == "too_large" and "needs about" in avail.reason, spec.key
        elif need is not None and adapters.availability(spec, "random").ok:
            assert avail.ok, (spec.key, avail.reason)


def test_little_free_memory_gives_a_busy_message_not_an_overload(no_loading):
    ctx = small_machine(budget_gb=8, free_gb=0.5)  # the budget allows it; the machine has no room now
    with pytest.raises(ModelUnavailable) as info:
        with ctx.use("depth-anything-v2-large"):
            pass
    assert info.value.kind == "busy" and "free for models right now" in info.value.message
    assert no_loading == []


@pytest.fixture(scope="module")
def small_app() -> Any:
    ctx = small_machine()
    demo = app.build_app(ctx)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options(port=free_port()))
    try:
        yield ctx, url.rstrip("/")
    finally:
        demo.close()


def test_the_api_refuses_a_too_large_model_with_a_message_and_keeps_serving(small_app):
    ctx, url = small_app
    image = {"path": str(app.ASSETS / "cat.jpg")}
    outcome = call(url, "ask", [image, "qwen2.5-vl-7b", "What is this?", ""])
    assert outcome.success is False
    assert "needs about" in outcome.error and "for models" in outcome.error, outcome.error
    assert ctx.cache.snapshot() == [], "nothing was loaded, nothing was evicted"
    status = call(url, "status", [])
    assert status.success


def test_the_models_tab_labels_too_large_models(small_app):
    from model_loaders.core.registry import REGISTRY
    from tabs.models import table_rows

    ctx, _ = small_app
    rows = dict(zip(REGISTRY, (row[-1] for row in table_rows(ctx)), strict=True))
    assert rows["qwen2.5-vl-7b"].startswith("too large here")
    assert rows["depth-anything-v2-small"] == "ready"
