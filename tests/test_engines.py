"""Ask, Compare and Workflow on a serving engine: a real `transformers serve` (tiny models saved to a
folder) for the flows, and a stub in vLLM's response format for coordinate conventions and
broken servers.

The engine serves tiny Qwen2.5-VL and Qwen3-VL under their checkpoint names (so they are the
registry's models) and a SmolVLM under a name the registry does not know.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_loaders.backends import openai_compat as oc
from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.images import decode_image
from model_loaders.tasks import ask as ta
from model_loaders.tasks import compare as tc
from model_loaders.tasks import workflow as wf
from model_loaders.tasks.base import models_for
from tests import engine_stub
from tests.conftest import free_port
from tools import local_engine

CAT = str(Path(__file__).resolve().parent.parent / "assets" / "cat.jpg")
BOOKS = str(Path(__file__).resolve().parent.parent / "assets" / "books-desk.jpg")
KEY = "sk-test-never-shown-5678"
SERVED = {**local_engine.TINY_SERVED, "smolvlm-256m-instruct": "acme/tiny-vlm"}  # the last is not in the registry


def _serve(root: Path, *models: str, force: str | None = None) -> tuple[subprocess.Popen, str]:
    """A real `transformers serve` on a free loopback port with ``models`` (folders) loaded."""
    port = free_port()
    try:
        return local_engine.start(root, list(models), port, force=force), f"http://127.0.0.1:{port}"
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def saved_models(ctx: Any, tmp_path_factory: Any) -> dict[str, Path]:
    """The tiny models, saved where an engine loads them, under the names it will serve them by."""
    return local_engine.save_models(ctx, SERVED, tmp_path_factory.mktemp("engine-models"))


@pytest.fixture(scope="session")
def engine(saved_models: dict[str, Path]) -> Iterator[str]:
    """One real `transformers serve` for the session, serving the three tiny models."""
    proc, url = _serve(next(iter(saved_models.values())).parents[1], *(str(p) for p in saved_models.values()))
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def engine_ctx(engine: str) -> Any:
    import app

    return app.make_context("tiny", "cpu", backends=[oc.backend_from_settings([engine], KEY, timeout_s=30)])


@pytest.fixture(scope="module")
def stub() -> Iterator[engine_stub.Stub]:
    s = engine_stub.start(free_port())
    try:
        yield s
    finally:
        s.server.should_exit = True


@pytest.fixture()
def stub_ctx(stub: engine_stub.Stub) -> Any:
    import app

    stub.mode, stub.answer = "ok", "A cat."
    stub.requests.clear()
    return app.make_context("tiny", "cpu", backends=[oc.backend_from_settings([stub.url], engine_stub.KEY, timeout_s=3)])


def _decoded(ctx: Any, path: str = CAT) -> Any:
    return decode_image(path, gate=ctx.uploads)


# --- the real engine ---------------------------------------------------------------------------


def test_served_models_are_the_registry_models_and_the_rest_is_unregistered(engine_ctx: Any) -> None:
    from tabs._picker import choice_label
    from tabs.models import status_markdown, table_rows

    ready, _ = models_for(engine_ctx, "ask")
    status = {s.key: engine_ctx.availability(s).status for s in ready}
    host = oc.host_of(engine_ctx.backends[0].endpoints[0].url)
    assert status["qwen2.5-vl-3b"] == status["qwen3-vl-2b"] == f"served by {host}"
    assert status["smolvlm-256m-instruct"] == "ready", "a model the engine does not serve still runs here"
    unregistered = [s for s in ready if s.family == "engine"]
    assert len(unregistered) == 1 and unregistered[0].checkpoint.endswith("acme/tiny-vlm")
    assert unregistered[0].licence == "unregistered: licence unknown"
    assert f"served by {host}" in choice_label(engine_ctx.spec("qwen2.5-vl-3b"), engine_ctx)
    rows = table_rows(engine_ctx, "tiny-vlm")
    assert len(rows) == 1 and "unregistered: licence unknown" in rows[0][3]
    assert f"{host}: 3 model(s)" in status_markdown(engine_ctx)


@pytest.mark.parametrize("key", ["qwen2.5-vl-3b", "qwen3-vl-2b"])
def test_an_answer_streams_from_the_engine(engine_ctx: Any, key: str) -> None:
    from tabs._timing import timing_line

    decoded = _decoded(engine_ctx)
    spec = ta.ask_spec(engine_ctx, key)
    request, _ = ta.build_request(spec, decoded, "What is in the picture?", max_new_tokens=24)
    chunks = list(ta.stream(engine_ctx, decoded, key, request))
    assert len(chunks) > 2 and chunks[-1].result is not None
    stats, timings = chunks[-1].stats, chunks[-1].result.timings
    assert stats.tokens == 24 and stats.stopped == "max_new_tokens", "the server's own token count"
    assert stats.first_token_ms is not None and stats.first_token_ms < stats.total_ms
    assert timings.device.startswith("engine 127.0.0.1") and timings.weights == "engine" and timings.load_ms == 0
    line = timing_line(engine_ctx, timings)
    assert "engine 127.0.0.1" in line and "meaningless" not in line, "an engine's answer is not from our tiny weights"


def test_stop_ends_the_answer_on_the_server_and_it_keeps_serving(engine_ctx: Any) -> None:
    decoded = _decoded(engine_ctx)
    spec = ta.ask_spec(engine_ctx, "qwen2.5-vl-3b")
    request, _ = ta.build_request(spec, decoded, "Describe everything.", max_new_tokens=1000)
    stop = threading.Event()
    chunks = []
    for chunk in ta.stream(engine_ctx, decoded, spec.key, request, stop):
        chunks.append(chunk)
        if len(chunks) == 3:
            stop.set()
    assert chunks[-1].stats.stopped == "user" and chunks[-1].stats.tokens < 1000
    again, _ = ta.build_request(spec, decoded, "And now?", max_new_tokens=5)
    assert ta.answer(engine_ctx, decoded, spec.key, again).tokens == 5


def test_compare_puts_an_engine_model_next_to_a_local_one(engine_ctx: Any) -> None:
    cmp = tc.compare(engine_ctx, CAT, "ask", ["qwen2.5-vl-3b", "smolvlm-256m-instruct"], question="What is it?")
    assert all(r.ok for r in cmp.runs), [r.error for r in cmp.runs]
    assert cmp.runs[0].timings.device.startswith("engine") and cmp.runs[1].timings.device == "cpu"


def test_the_workflow_reads_crops_on_the_engine_several_at_once(engine_ctx: Any, monkeypatch: Any) -> None:
    busy, peak, lock = [0], [0], threading.Lock()
    real = oc.RemoteVLM.ask

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            busy[0] += 1
            peak[0] = max(peak[0], busy[0])
        try:
            yield from real(self, *args, **kwargs)
        finally:
            with lock:
                busy[0] -= 1

    monkeypatch.setattr(oc.RemoteVLM, "ask", counting)
    run = wf.run_workflow(engine_ctx, BOOKS, "owlv2-base", "book", 0.0, 8, "qwen2.5-vl-3b",
                          wf.schema_json(wf.BOOK_SCHEMA), max_new_tokens=8)  # fmt: skip
    assert len(run.rows) >= 2 and all(r.raw for r in run.rows)
    assert peak[0] >= 2, "crops go to the engine concurrently (it batches them)"
    assert run.timings["vlm"]["device"].startswith("engine")


def test_a_server_killed_mid_answer_gives_a_short_message_and_the_app_goes_on(saved_models: dict[str, Path],
                                                                               ctx: Any) -> None:  # fmt: skip
    import app

    folder = saved_models["qwen2.5-vl-3b"]
    proc, url = _serve(folder.parents[1], force=str(folder))
    try:
        backend = oc.backend_from_settings([url], KEY, timeout_s=30)
        kctx = app.make_context("tiny", "cpu", backends=[backend])
        decoded = _decoded(kctx)
        spec = ta.ask_spec(kctx, "qwen2.5-vl-3b")
        request, _ = ta.build_request(spec, decoded, "Describe everything.", max_new_tokens=1000)
        with pytest.raises(ModelUnavailable) as err:
            for i, _chunk in enumerate(ta.stream(kctx, decoded, spec.key, request)):
                if i == 2:
                    proc.send_signal(signal.SIGKILL)
        host = oc.host_of(url)
        assert host in err.value.message and "mid-answer" in err.value.message and KEY not in err.value.message
        assert kctx.availability(spec).status == f"{host} unreachable"
        assert ta.answer(kctx, decoded, "smolvlm-256m-instruct", ta.default_request(ctx.spec("smolvlm-256m-instruct"),
                         "What?", 4)).text is not None, "other models keep working"  # fmt: skip
    finally:
        proc.kill()
        proc.wait(timeout=30)


# --- the stub: coordinate conventions, JSON, broken servers ------------------------------------


def test_qwen25_boxes_are_pixels_of_the_image_the_engine_was_sent(stub: engine_stub.Stub, stub_ctx: Any) -> None:
    stub.answer = '[{"bbox_2d": [56, 28, 280, 196], "label": "cat"}]'
    decoded = _decoded(stub_ctx)
    spec = stub_ctx.spec("qwen2.5-vl-72b")
    assert stub_ctx.availability(spec).status.startswith("served by"), "a 72B model runs on the engine"
    request, _ = ta.build_request(spec, decoded, "Where is the cat?")
    result = ta.answer(stub_ctx, decoded, spec.key, request)
    sw, sh = stub.sent_image_size()
    assert sw % 28 == 0 and sh % 28 == 0 and sw * sh <= 1024 * 28 * 28, "sent at the size its processor uses"
    w, h = decoded.size
    expected = [56 * w / sw, 28 * h / sh, 280 * w / sw, 196 * h / sh]
    np.testing.assert_allclose(result.detections.xyxy[0], expected, atol=1.0)
    assert result.tokens == 42, "vLLM's usage chunk gives the token count"


def test_qwen3_boxes_are_on_a_0_to_1000_grid(stub: engine_stub.Stub, stub_ctx: Any) -> None:
    stub.answer = '[{"bbox_2d": [100, 250, 500, 750], "label": "cat"}]'
    decoded = _decoded(stub_ctx)
    result = ta.answer(stub_ctx, decoded, "qwen3-vl-2b", ta.build_request(stub_ctx.spec("qwen3-vl-2b"), decoded,
                       "Where is the cat?")[0])  # fmt: skip
    sw, sh = stub.sent_image_size()
    assert sw % 32 == 0 and sh % 32 == 0
    w, h = decoded.size
    np.testing.assert_allclose(result.detections.xyxy[0], [0.1 * w, 0.25 * h, 0.5 * w, 0.75 * h], atol=1.0)


def test_a_schema_goes_as_response_format_or_in_the_prompt_only(stub: engine_stub.Stub, stub_ctx: Any) -> None:
    schema = {"type": "object", "properties": {"animal": {"type": "string"}}, "required": ["animal"]}
    stub.answer = '{"animal": "cat"}'
    decoded = _decoded(stub_ctx)
    spec = stub_ctx.spec("qwen2.5-vl-72b")
    request, _ = ta.build_request(spec, decoded, "Which animal?", schema=schema)
    result = ta.answer(stub_ctx, decoded, spec.key, request)
    assert stub.requests[-1]["body"]["response_format"]["json_schema"]["schema"] == schema
    assert ta.check_answer(result, decoded, schema).valid is True
    stub.mode = "reject_response_format"  # a server that does not take it: asked again without, once
    result = ta.answer(stub_ctx, decoded, spec.key, request)
    assert ta.check_answer(result, decoded, schema).valid is True
    assert "response_format" in stub.requests[-2]["body"] and "response_format" not in stub.requests[-1]["body"]
    ta.answer(stub_ctx, decoded, spec.key, request)
    assert "response_format" not in stub.requests[-1]["body"], "remembered for this endpoint"


@pytest.mark.parametrize(("mode", "words"), [
    ("http500", "HTTP 500"),
    ("malformed", "cannot read"),
    ("stall", "did not answer within 3 s"),
])  # fmt: skip
def test_a_broken_engine_gives_a_short_message_naming_its_host(stub: engine_stub.Stub, stub_ctx: Any, mode: str,
                                                               words: str, caplog: Any) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    stub.mode = mode
    decoded = _decoded(stub_ctx)
    spec = stub_ctx.spec("qwen2.5-vl-72b")
    with pytest.raises(ModelUnavailable) as err:
        ta.answer(stub_ctx, decoded, spec.key, ta.build_request(spec, decoded, "What?")[0])
    message = err.value.message
    assert words in message and oc.host_of(stub.url) in message and len(message) < 240, message
    assert engine_stub.KEY not in message and engine_stub.KEY not in caplog.text, "the key is never shown or logged"
    assert stub.requests[-1]["authorization"] == f"Bearer {engine_stub.KEY}", "the key only travels as the header"
    assert message in stub_ctx.backends[0].status_lines()[0], "the status panel says what went wrong, and when"


def test_a_wrong_key_and_a_down_endpoint_say_so(stub: engine_stub.Stub) -> None:
    import app

    wrong = app.make_context("tiny", "cpu", backends=[oc.backend_from_settings([stub.url], "sk-wrong", timeout_s=3)])
    assert wrong.availability(wrong.spec("qwen2.5-vl-3b")).status == "ready", "nothing listed: local rules apply"
    line = wrong.backends[0].status_lines()[0]
    assert "unreachable" in line and "refused the API key" in line and "sk-wrong" not in line
    down = app.make_context("tiny", "cpu", backends=[oc.backend_from_settings([f"http://127.0.0.1:{free_port()}"])])
    assert down.availability(down.spec("qwen2.5-vl-3b")).status == "ready", "local models are unaffected"
    assert "unreachable" in down.backends[0].status_lines()[0] and "not answering" in down.backends[0].status_lines()[0]


def test_endpoint_urls_are_checked() -> None:
    assert oc.normalise_url("http://gpu-box:8000/") == "http://gpu-box:8000/v1"
    assert oc.normalise_url("https://router.example/v1") == "https://router.example/v1"
    with pytest.raises(ValueError, match="http"):
        oc.normalise_url("file:///etc/passwd")
    assert oc.host_of("https://user:pw@router.example:8443/v1?key=1") == "router.example:8443"
    assert json.dumps(oc.unregistered_spec("org/model", "h:1").licence) == '"unregistered: licence unknown"'


def test_the_ask_endpoint_answers_from_the_engine_through_the_app(engine_ctx: Any) -> None:
    from gradio_client import Client, handle_file

    import app

    demo = app.build_app(engine_ctx)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True,
                            **app.launch_options(port=free_port(), ctx=engine_ctx, demo=demo))  # fmt: skip
    try:
        client = Client(url, verbose=False)
        answer, _, _ = client.predict(handle_file(CAT), "qwen2.5-vl-3b", "What is it?", "", api_name="/ask")
        assert answer.strip()
        unregistered = next(s.key for s in engine_ctx.extra_specs())
        answer, _, _ = client.predict(handle_file(CAT), unregistered, "What is it?", "", api_name="/ask")
        assert answer.strip(), "a model only the engine knows answers too"
        assert "model(s), checked" in client.predict(api_name="/status")
        client.close()
    finally:
        demo.close()
