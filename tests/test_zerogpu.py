"""ZeroGPU: every model-running handler is a GPU call with a duration sized to its work, and every
tab works across the process boundary ZeroGPU puts around such calls.

The boundary harness is the app's own ``fork`` boundary (`tabs._gpu.forked`): each call runs in
a freshly forked child, arguments and results pickled through a pipe, nothing the child changes
reaching the server except what it returns (stricter than ZeroGPU, whose worker may be reused).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

import app
from model_loaders.core.gpu_time import MAX_SECONDS, MIN_SECONDS, GpuJob, gpu_seconds
from tabs._gpu import GPU_ATTR, on_gpu
from tests.browsing import (
    ASK_TIMING,
    ask_for_a_long_answer,
    detect_first_example,
    open_tab,
    pick_example,
    refilter_to_zero_confidence,
    segment_click,
)
from tests.conftest import free_port

IMAGE = app.ASSETS / "cat.jpg"


def _model_events(demo: Any) -> list[Any]:
    return [f for f in demo.fns.values() if str(f.concurrency_id or "").startswith("lane-")]


def test_every_model_running_event_is_a_gpu_call(served: tuple[Any, str]) -> None:
    demo, _ = served
    events = _model_events(demo)
    # Segment 6, Depth 2, Detect 2, Ask 3, Compare 2, Workflow 3: a missed registration fails.
    assert len(events) >= 18, [f.name for f in events]
    unwrapped = [f.name for f in events if not hasattr(f.fn, GPU_ATTR)]
    assert not unwrapped, f"model events without the GPU wrapper: {unwrapped}"
    light = [f.name for f in demo.fns.values() if f not in events and hasattr(f.fn, GPU_ATTR)]
    assert not light, f"GPU calls outside the model lanes (they would queue behind nothing): {light}"


def test_durations_follow_the_models_and_the_input(ctx: Any) -> None:
    sam = gpu_seconds(ctx, [GpuJob("sam2.1-hiera-tiny")])
    short_answer = gpu_seconds(ctx, [GpuJob("qwen2.5-vl-3b", tokens=64)])
    long_answer = gpu_seconds(ctx, [GpuJob("qwen2.5-vl-3b", tokens=1024)])
    big_model = gpu_seconds(ctx, [GpuJob("qwen2.5-vl-72b", tokens=1024)])
    assert MIN_SECONDS <= sam < short_answer < long_answer <= big_model == MAX_SECONDS
    two = gpu_seconds(ctx, [GpuJob("depth-anything-v2-small"), GpuJob("depth-anything-v2-base")])
    assert two >= gpu_seconds(ctx, [GpuJob("depth-anything-v2-small")]) + 4, "a comparison asks for the sum"
    assert gpu_seconds(ctx, [GpuJob("no-such-model")]) >= MIN_SECONDS  # refused by the handler, quickly


def test_each_handler_asks_for_its_own_duration(served: tuple[Any, str]) -> None:
    demo, _ = served
    by_name = {f.name: f.fn for f in _model_events(demo)}
    ask = getattr(by_name["ask"], GPU_ATTR)
    depth = getattr(by_name["depth"], GPU_ATTR)
    compare = getattr(by_name["compare"], GPU_ATTR)
    assert ask(None, "qwen2.5-vl-7b", "hi", "") > depth(None, "depth-anything-v2-small", "gray", False, 60)
    one = depth(None, "depth-anything-v2-large", "gray", False, 60)
    both = compare(None, "depth", "depth-anything-v2-large,depth-anything-v2-small", "", 0.3, "")
    assert both > one
    assert depth(None, object(), None, None, None) >= MIN_SECONDS  # a bad input never breaks the estimate


def test_zerogpu_errors_reach_the_user_short(ctx: Any) -> None:
    from spaces.zero.gradio import error  # the very function the spaces package raises them with

    raised = {
        "quota": error("ZeroGPU quota exceeded", "You have exceeded your free ZeroGPU quota (60s requested vs. "
                       "12s left). Try again in 0:03:12. Subscribe to Hugging Face PRO to get 40 min ..."),
        "duration": error("ZeroGPU illegal duration", "The requested GPU duration (400s) is larger than the "
                          "maximum allowedSubscribe to Hugging Face PRO to allow GPU tasks up to 25 min - https://..."),
        "aborted": error("ZeroGPU worker error", "GPU task aborted"),
    }  # fmt: skip
    for what, err in raised.items():

        def handler(image: Any, model: Any, err: gr.Error = err) -> None:
            raise err

        wrapped = on_gpu(ctx, handler, lambda *a: [GpuJob("sam2.1-hiera-tiny")])
        with pytest.raises(gr.Error) as caught:
            wrapped(None, "sam2.1-hiera-tiny")
        text = caught.value.message
        assert len(text) < 120 and "http" not in text and "Subscribe" not in text, (what, text)
        expected = {"quota": "try again in 0:03:12", "duration": "400 s", "aborted": "stopped before it finished"}
        assert expected[what] in text, (what, text)


def test_embeddings_cross_a_process_boundary_on_the_cpu(ctx: Any, upload_path: Path) -> None:
    import pickle

    import torch

    from model_loaders.tasks import segment as seg
    from model_loaders.tasks.base import image_of

    decoded = image_of(ctx, {"path": str(IMAGE)})
    embedding, _ = seg.embed(ctx, decoded, "sam2.1-hiera-tiny")
    if torch.cuda.is_available():  # what ZeroGPU would hand back: features made on the GPU
        embedding.features = [f.cuda() for f in embedding.features]
    copy = pickle.loads(pickle.dumps(embedding))
    assert all(f.device.type == "cpu" for f in copy.features)
    a = seg.decode(ctx, embedding, [(100, 100)], [1])
    b = seg.decode(ctx, copy, [(100, 100)], [1])
    assert (a.masks == b.masks).all() and (a.scores == b.scores).all()


# --- every tab across the boundary ----------------------------------------------------------


@pytest.fixture(scope="module")
def boundary_url(ctx: Any) -> Any:
    """The app with every model call run in a forked child (same models and folders as ``ctx``)."""
    fork_ctx = dataclasses.replace(ctx, options={**ctx.options, "gpu_boundary": "fork"})
    demo = app.build_app(fork_ctx)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True,
                            **app.launch_options(port=free_port(), ctx=fork_ctx, demo=demo))  # fmt: skip
    try:
        yield url.rstrip("/")
    finally:
        demo.close()


def _example_args(url: str) -> dict[str, list[Any]]:
    from gradio_client import handle_file

    from tests.test_app import fetch

    info = json.loads(fetch(url + "/gradio_api/info")[1])
    calls = {}
    for name, endpoint in info["named_endpoints"].items():
        args = []
        for param in endpoint["parameters"]:
            value = param.get("example_input")
            if isinstance(value, dict) and "path" in value:
                value = handle_file(str(app.ASSETS / "coffee-pan.mp4" if param["component"] == "Video" else IMAGE))
            args.append(value)
        calls[name] = args
    return calls


def test_every_endpoint_gives_the_same_answer_across_the_boundary(boundary_url: str, app_url: str) -> None:
    """The public API (Segment, Depth, Detect, Ask, Compare, Workflow, Track) run in a forked child gives
    what the same models give in-process."""
    from gradio_client import Client

    calls = _example_args(boundary_url)
    assert {"/segment", "/depth", "/detect", "/ask", "/compare", "/workflow", "/track"} <= set(calls)
    inside, across = Client(app_url, verbose=False), Client(boundary_url, verbose=False)
    try:
        for name in ("/segment", "/detect", "/ask", "/workflow", "/compare", "/depth", "/track"):
            a = inside.predict(*calls[name], api_name=name)
            b = across.predict(*calls[name], api_name=name)
            assert _comparable(a) == _comparable(b), name
    finally:
        inside.close()
        across.close()


def _comparable(value: Any) -> Any:
    """An output without what differs between two runs of the same models: times and file names."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if "ms" not in k and "tim" not in k and k != "path"}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, str) and (value.startswith("/") or " ms" in value):
        return "…"
    if isinstance(value, float):
        return round(value, 4)
    return value


@pytest.fixture()
def boundary_page(browser: Any, boundary_url: str) -> Any:
    """A fresh page of the fork-boundary app."""
    page = browser.new_page()
    page.set_default_timeout(90_000)
    page.goto(boundary_url)
    try:
        yield page
    finally:
        page.close()


@pytest.mark.browser
def test_segment_and_ask_flows_across_the_boundary(boundary_page: Any) -> None:
    """Click, click, undo (the embedding comes back in the session: no re-encode), then an Ask
    stream stopped by the user (the stop request reaches the child)."""
    page = boundary_page
    open_tab(page, "Segment")
    pick_example(page, "segment-examples")
    segment_click(page, 0.4, 0.4, points=1)
    assert "encode" in page.locator("#segment-timing").inner_text()
    segment_click(page, 0.6, 0.6, points=2)
    timing = page.locator("#segment-timing").inner_text()
    assert "encode: cached" in timing, f"the second click re-encoded across the boundary: {timing!r}"
    page.get_by_role("button", name="↶ Undo").click()
    page.locator("#segment-summary").get_by_text("1 point(s)").wait_for()

    open_tab(page, "Ask")
    ask_for_a_long_answer(page)
    line = ASK_TIMING
    outcomes: list[str] = []
    for attempt in range(3):  # a tiny model may finish 1,024 tokens before the click lands: ask again
        if attempt:
            page.get_by_role("button", name="Clear chat").click()
            page.wait_for_function(f"() => !({line})().includes('tokens/s')")
            page.locator("#ask-question textarea").fill("Describe everything you see.")
            page.locator("#ask-send").click()
            page.wait_for_function(f"() => ({line})().includes('streaming')")
        page.locator("#ask-stop").click()
        page.wait_for_function(f"() => ({line})().includes('tokens/s')", timeout=60_000)
        outcomes.append(page.evaluate(line))
        if "stopped by you" in outcomes[-1]:
            break
    assert "stopped by you" in outcomes[-1], f"Stop never reached the stream in its child: {outcomes}"


def test_a_model_loaded_inside_the_gpu_call_says_so(ctx: Any) -> None:
    from tabs._timing import timing_line

    space = dataclasses.replace(ctx, options={**ctx.options, "on_demand_note": True,
                                              "preloaded": frozenset({"sam2.1-hiera-tiny"})})  # fmt: skip
    assert "loaded on demand" in timing_line(space, {"model": "sam2.1-hiera-large", "load_ms": 900.0})
    assert "loaded on demand" not in timing_line(space, {"model": "sam2.1-hiera-tiny", "load_ms": 900.0})
    assert "loaded on demand" not in timing_line(space, {"model": "sam2.1-hiera-large", "load_ms": 0.0})
    assert "loaded on demand" not in timing_line(ctx, {"model": "sam2.1-hiera-large", "load_ms": 900.0})


@pytest.mark.browser
def test_depth_and_detect_state_comes_back_from_the_gpu_call(boundary_page: Any) -> None:
    """The run's kept state (the float depth map, the raw boxes) returns from the child: a colormap
    change and a typed confidence re-render it in the server without running the model again."""
    from tests.browsing import error_badges

    page = boundary_page
    open_tab(page, "Depth")
    pick_example(page, "depth-examples")
    page.locator("#depth-input img").first.wait_for()
    page.locator("#depth-run").click()
    page.locator("#depth-timing").get_by_text("inference").wait_for()
    page.locator("#depth-slider img").first.wait_for()
    before = page.locator("#depth-slider img").last.get_attribute("src")
    page.locator("#depth-invert input").check()
    page.wait_for_function("(src) => [...document.querySelectorAll('#depth-slider img')].pop()?.src !== src",
                           arg=before)  # fmt: skip
    assert not error_badges(page)

    open_tab(page, "Detect")
    detect_first_example(page)
    refilter_to_zero_confidence(page)
    assert not error_badges(page)
