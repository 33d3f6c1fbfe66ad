"""Compare: request checks, sequential runs that evict between models, and the tab with tiny models."""

from __future__ import annotations

from typing import Any

import pytest

from model_loaders.core import context as context_module
from model_loaders.core.availability import Availability, LoadSettings
from model_loaders.core.cache import ModelCache
from model_loaders.core.context import AppContext
from model_loaders.core.errors import InputError, ModelUnavailable
from model_loaders.core.registry import get_spec
from model_loaders.core.results import Timings
from model_loaders.tasks.compare import check_models as check_compare_keys
from model_loaders.tasks.compare import run_each


def run_sequentially(ctx: Any, keys: list[str], fn: Any) -> Any:
    """Each model pinned in the cache only while ``fn(bundle, spec, timings)`` runs on it."""

    def run(key: str, timings: Timings) -> Any:
        with ctx.use(key, timings) as bundle:
            return fn(bundle, get_spec(key), timings)

    return run_each(ctx, keys, run)

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
    assert all(r.timings.model == k for r, k in zip(runs, KEYS, strict=False))


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
        ("depth", ["depth-anything-v2-small", "rf-detr-nano"], "cannot estimate depth"),
        ("depth", ["depth-anything-v2-small", "no-such-model"], "Unknown model"),
        ("dance", ["depth-anything-v2-small", "depth-anything-v2-base"], "Pick a task"),
        ("ask", ["florence-2-base", "cogvlm-chat"], "never executes"),
    ],
)
def test_bad_compare_requests_are_refused_before_anything_loads(ctx, task, keys, message):
    with pytest.raises((InputError, ModelUnavailable), match=message):
        check_compare_keys(ctx, task, keys)


def test_models_from_other_tasks_that_can_do_it_are_accepted(ctx):
    specs = check_compare_keys(ctx, "detect", ["rf-detr-nano", "florence-2-base"])
    assert [s.key for s in specs] == ["rf-detr-nano", "florence-2-base"]


# -- the tab's comparison with tiny models (the session `ctx`) ---------------------------------

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from model_loaders.tasks import base as task_base  # noqa: E402
from model_loaders.tasks import compare as tc  # noqa: E402
from tabs import compare  # noqa: E402

CAT = str(Path(__file__).resolve().parent.parent / "assets" / "cat.jpg")


def test_detect_comparison_runs_each_model_and_fills_a_symmetric_f1_matrix(ctx):
    keys = ["rf-detr-nano", "owlv2-base", "florence-2-base"]  # closed set, open vocabulary, a VLM
    cmp = tc.compare(ctx, CAT, "detect", keys, classes="cat", confidence=0.0)
    assert [r.key for r in cmp.runs] == keys and all(r.ok for r in cmp.runs)
    m = cmp.matrix
    assert m.shape == (3, 3)
    # A VLM's boxes depend on what it wrote before its time limit: with none (or unreadable ones)
    # it has no agreement number, not even with itself (0 vs 0 is NaN by design).
    usable = [i for i, r in enumerate(cmp.runs) if not r.result.metadata.get("parse_error") and len(r.result)]
    assert usable[:2] == [0, 1]
    for i in usable:
        assert m[i, i] == 1.0, "a model agrees with itself"
    np.testing.assert_allclose(m[np.ix_(usable, usable)], m[np.ix_(usable, usable)].T)
    assert all(0.0 <= v <= 1.0 for v in m[np.ix_(usable, usable)].ravel())
    items = compare.gallery_items(cmp, ctx.weights_warning)
    assert len(items) == 3
    assert "Apache-2.0" in items[0][1] and "MIT" in items[2][1] and " ms" in items[0][1]
    assert items[0][0].shape == cmp.image.array.shape
    # latency: load kept apart from inference, one bar per model and stage
    fig = compare.latency_figure(cmp)
    assert [t.name for t in fig.data] == ["load", "preprocess", "inference", "postprocess"]
    assert list(fig.data[0].x) == [r.timings.load_ms for r in cmp.runs]
    assert list(fig.data[2].x) == [r.timings.inference_ms for r in cmp.runs]
    assert len(compare.agreement_rows(cmp)) == 3  # three pairs


def test_depth_comparison_aligns_maps_and_reports_abs_rel(ctx):
    keys = ["depth-anything-v2-small", "depth-anything-v2-metric-indoor-small"]
    cmp = tc.compare(ctx, CAT, "depth", keys)
    assert all(r.result.depth.shape == cmp.image.array.shape[:2] for r in cmp.runs)
    for i in range(2):
        if not np.isnan(cmp.matrix[i, i]):
            assert cmp.matrix[i, i] == pytest.approx(1.0)
            assert cmp.abs_rel[i, i] == pytest.approx(0.0, abs=1e-6)
    rows = compare.agreement_rows(cmp)
    assert len(rows) == 1 and len(rows[0]) == 5  # pair, correlation, abs-rel both ways
    assert "depth" in compare.api_payload(ctx, cmp)["models"][1]
    assert compare.api_payload(ctx, cmp)["models"][1]["depth"]["kind"] == "metric"


def test_segment_comparison_uses_the_same_point_prompts_for_every_model(ctx):
    keys = ["sam2.1-hiera-tiny", "sam2.1-hiera-small"]
    cmp = tc.compare(ctx, CAT, "segment", keys, points="100, 80; 300, 200")
    assert cmp.points == [(100.0, 80.0), (300.0, 200.0)]  # the example is not downscaled
    for r in cmp.runs:
        assert r.result.mask.shape == (2, *cmp.image.array.shape[:2]) and r.result.mask.dtype == bool
    assert cmp.matrix[0, 0] == 1.0 and 0.0 <= cmp.matrix[0, 1] <= 1.0


def test_ask_comparison_shows_answers_side_by_side_with_tokens(ctx):
    cmp = tc.compare(ctx, CAT, "ask", ["florence-2-base", "qwen2.5-vl-3b"], question="What animal is this?")
    assert cmp.matrix is None
    figure = compare.agreement_figure(cmp)  # says why there is no number instead of an empty plot
    assert not figure.data and "no agreement score" in figure.layout.annotations[0].text
    rows = compare.agreement_rows(cmp)
    assert [r[0] for r in rows] == ["Florence-2 Base", "Qwen2.5-VL 3B Instruct"]
    assert all(r[1] > 0 for r in rows), "token counts are shown"
    assert any("Florence-2 Base does not take free questions" in n for n in cmp.notes)


def test_the_image_is_decoded_once_per_comparison(ctx, monkeypatch):
    calls = []
    real = task_base.decode_image

    def counting(source, *a, **kw):
        calls.append(source)
        return real(source, *a, **kw)

    monkeypatch.setattr(task_base, "decode_image", counting)
    tc.compare(ctx, CAT, "depth", ["depth-anything-v2-small", "depth-anything-v2-metric-outdoor-small"])
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "segment", "points": "5000, 10"}, "Point x must be between"),
        ({"task": "segment", "points": "10; 20"}, "x, y"),
        ({"task": "segment", "points": "; ".join(["10, 10"] * 9)}, "Too many points"),
        ({"task": "detect", "confidence": float("nan")}, "finite"),
        ({"task": "ask", "question": "   "}, "question"),
    ],
)
def test_bad_prompts_are_refused(ctx, kwargs, message):
    task = kwargs.pop("task")
    keys = {"segment": ["sam2.1-hiera-tiny", "sam2.1-hiera-small"], "detect": ["rf-detr-nano", "d-fine-nano"],
            "ask": ["florence-2-base", "qwen2.5-vl-3b"]}[task]  # fmt: skip
    with pytest.raises(InputError, match=message):
        tc.compare(ctx, CAT, task, keys, **kwargs)


def test_no_image_is_an_input_error(ctx):
    with pytest.raises(InputError, match="Upload an image"):
        tc.compare(ctx, None, "depth", ["depth-anything-v2-small", "depth-anything-v2-base"])


# -- through the served app ----------------------------------------------------------------------


def test_compare_api_endpoint(client):
    from gradio_client import handle_file

    payload = client.predict(handle_file(CAT), "depth", "depth-anything-v2-small, depth-anything-v2-base", "", 0.3,
                             "", api_name="/compare")  # fmt: skip
    assert payload["task"] == "depth" and payload["weights_warning"]
    assert [m["key"] for m in payload["models"]] == ["depth-anything-v2-small", "depth-anything-v2-base"]
    assert payload["models"][1]["licence"] == "CC-BY-NC-4.0"
    assert all("inference_ms" in m["timings"] for m in payload["models"])
    assert len(payload["agreement"]["matrix"]) == 2
    with pytest.raises(Exception, match="at least 2"):
        client.predict(handle_file(CAT), "depth", "depth-anything-v2-small", "", 0.3, "", api_name="/compare")
    with pytest.raises(Exception, match="cannot estimate depth"):
        client.predict(handle_file(CAT), "depth", "depth-anything-v2-small, rf-detr-nano", "", 0.3, "",
                       api_name="/compare")  # fmt: skip


@pytest.mark.browser
def test_browser_compares_two_depth_models(page, app_url, artifacts):
    page.goto(app_url)
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-image").wait_for()
    page.locator("#compare-examples .gallery-item").first.click()
    page.locator("#compare-image img").first.wait_for()
    page.locator("#compare-task").get_by_text("depth", exact=True).click()
    models = page.locator("#compare-models")
    models.get_by_text("Depth Anything V2 Small").first.wait_for()
    page.locator("#compare-run").click()
    page.locator("#compare-gallery img").nth(1).wait_for(timeout=120_000)
    assert page.locator("#compare-gallery img").count() >= 2
    page.locator("#compare-heatmap .js-plotly-plot, #compare-heatmap .plotly").first.wait_for(timeout=60_000)
    page.locator("#compare-latency .js-plotly-plot, #compare-latency .plotly").first.wait_for(timeout=60_000)
    summary = page.locator("#compare-summary").inner_text()
    assert "Apache-2.0" in summary
    page.get_by_text("tiny random weights").first.wait_for()
    page.screenshot(path=str(artifacts / "compare.png"), full_page=True)
