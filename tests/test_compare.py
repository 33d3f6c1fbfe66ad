"""Compare: request checks, sequential runs that evict between models, and the tab with tiny models."""

from __future__ import annotations

from typing import Any

import pytest

from model_loaders import context as context_module
from model_loaders.adapters import Availability, LoadSettings
from model_loaders.cache import ModelCache
from model_loaders.context import AppContext
from model_loaders.errors import InputError, ModelUnavailable
from model_loaders.results import Timings
from model_loaders.runners import check_compare_keys, run_sequentially

# -- sequential runs through the shared cache, with a fake loader and sizer ---------------------


class FakeModel:
    def __init__(self, key: str, nbytes: int) -> None:
        self.key, self.nbytes = key, nbytes


def fake_context(sizes: dict[str, int], budget: int, fail: set[str] = frozenset()) -> tuple[AppContext, list[str]]:
    calls: list[str] = []

    def loader(ck: Any) -> FakeModel:
        calls.append(ck.key)
        if ck.key in fail:
            raise ModelUnavailable(ck.key, "offline", f"{ck.key} is not cached and the Hub is offline.")
        return FakeModel(ck.key, sizes[ck.key])

    cache = ModelCache(loader, budget, sizer=lambda m: m.nbytes, release=lambda: None)
    return AppContext(settings=LoadSettings(weights="tiny", device="cpu"), cache=cache), calls


@pytest.fixture()
def all_available(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake loader stands in for the family modules, so availability must not depend on them.
    monkeypatch.setattr(context_module, "availability", lambda spec, weights: Availability(True, "ready"))


KEYS = ["depth-anything-v2-small", "depth-anything-v2-base", "depth-anything-v2-large"]


def test_comparison_larger_than_the_budget_completes_by_evicting_between_runs(all_available):
    ctx, calls = fake_context({k: 80 for k in KEYS}, budget=100)
    seen: list[tuple[str, list[tuple[str, bool]]]] = []

    def run(bundle: FakeModel, spec: Any, timings: Timings) -> str:
        resident = [(str(i.key), i.pinned) for i in ctx.cache.snapshot()]
        seen.append((bundle.key, resident))
        return f"result of {bundle.key}"

    runs = run_sequentially(ctx, KEYS, run)
    assert [r.result for r in runs] == [f"result of {k}" for k in KEYS]
    assert all(r.ok for r in runs)
    assert calls == KEYS, "each model loads once"
    for key, resident in seen:
        # while a model runs it is the only one in memory, and it is pinned
        assert resident == [(key, True)]
    assert [(str(i.key), i.pinned) for i in ctx.cache.snapshot()] == [(KEYS[-1], False)], "nothing stays pinned"
    assert all(r.timings.model == k for r, k in zip(runs, KEYS))


def test_models_that_fit_stay_cached_and_a_second_comparison_loads_nothing(all_available):
    ctx, calls = fake_context({k: 10 for k in KEYS}, budget=100)
    run_sequentially(ctx, KEYS, lambda b, s, t: b.key)
    run_sequentially(ctx, KEYS, lambda b, s, t: b.key)
    assert calls == KEYS


def test_one_model_failing_to_load_does_not_lose_the_others(all_available):
    ctx, _ = fake_context({k: 10 for k in KEYS}, budget=100, fail={KEYS[1]})
    runs = run_sequentially(ctx, KEYS, lambda b, s, t: b.key)
    assert [r.ok for r in runs] == [True, False, True]
    assert "offline" in runs[1].error and runs[1].result is None


def test_an_input_error_stops_the_comparison(all_available):
    ctx, _ = fake_context({k: 10 for k in KEYS}, budget=100)

    def run(bundle: FakeModel, spec: Any, timings: Timings) -> str:
        raise InputError("bad prompt")

    with pytest.raises(InputError):
        run_sequentially(ctx, KEYS, run)
    assert not any(i.pinned for i in ctx.cache.snapshot())


# -- request checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "keys", "message"),
    [
        ("depth", ["depth-anything-v2-small"], "at least 2"),
        ("depth", [], "at least 2"),
        ("depth", None, "at least 2"),
        ("detect", ["rf-detr-nano", "d-fine-nano", "rt-detrv2-r18", "owlv2-base", "rf-detr-medium"], "at most 4"),
        ("depth", ["depth-anything-v2-small", "depth-anything-v2-small"], "listed twice"),
        ("depth", ["depth-anything-v2-small", "rf-detr-nano"], "cannot depth"),
        ("depth", ["depth-anything-v2-small", "no-such-model"], "Unknown model"),
        ("dance", ["depth-anything-v2-small", "depth-anything-v2-base"], "Pick a task"),
        ("ask", ["florence-2-base", "cogvlm-chat"], "remote code"),
    ],
)
def test_bad_compare_requests_are_refused_before_anything_loads(task, keys, message):
    with pytest.raises(InputError, match=message):
        check_compare_keys(task, keys, "tiny")


def test_models_from_other_tasks_that_can_do_it_are_accepted():
    specs = check_compare_keys("detect", ["rf-detr-nano", "florence-2-base"], "tiny")
    assert [s.key for s in specs] == ["rf-detr-nano", "florence-2-base"]
