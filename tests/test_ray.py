"""The Ray Serve backend on a real local Ray cluster (started once for this module; tiny weights).

Every main flow through Ray gives the local backend's outputs for the same inputs; concurrent
requests share forward passes on the replica; SAM's embeddings stay on the cluster (a later click
does not encode again; an evicted one is re-encoded transparently); a killed replica is survived;
an unreachable cluster or a deployment that cannot be placed is a short message.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import app
from model_loaders.backends.ray_serve import RayBackend, config_for, frontend_config, load_config
from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.registry import get_spec
from model_loaders.tasks import depth as td
from model_loaders.tasks import detect as tdet
from model_loaders.tasks import segment_session as ss
from tests.browsing import open_tab, pick_example, segment_click
from tests.conftest import free_port

pytestmark = pytest.mark.ray  # `make test` runs these in a pytest process of their own

CAT = {"path": str(app.ASSETS / "cat.jpg")}
DEPTH, DETECT, OPEN, SAM = "depth-anything-v2-small", "rf-detr-nano", "owlv2-base", "sam2.1-hiera-tiny"


@pytest.fixture(scope="module")
def http_port() -> int:
    """Serve's HTTP proxy port (the front-end test's address)."""
    return free_port()


@pytest.fixture(scope="module")
def cluster(http_port: int) -> Iterator[RayBackend]:
    import ray
    from ray import serve

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)  # logical CPUs: room for 4 small replicas
    serve.start(http_options={"host": "127.0.0.1", "port": http_port})  # the backend's own start then joins it
    backend = RayBackend(None, "tiny", "cpu", {"default": {"num_cpus": 0.5}})
    assert backend.connect(), backend.error
    try:
        yield backend
    finally:
        backend.shutdown()
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_ctx(cluster: RayBackend) -> Any:
    return app.make_context("tiny", "cpu", backends=[cluster])


def test_depth_and_detect_through_ray_give_the_local_results(ray_ctx: Any, ctx: Any) -> None:
    remote, local = td.estimate(ray_ctx, CAT, DEPTH), td.estimate(ctx, CAT, DEPTH)
    np.testing.assert_allclose(remote.depth, local.depth, rtol=1e-4, atol=1e-4)
    assert remote.timings.device.startswith("ray") and remote.timings.inference_ms > 0
    for key, classes in ((DETECT, []), (OPEN, ["cat"])):
        a, b = tdet.detections(ray_ctx, CAT, key, classes, 0.0), tdet.detections(ctx, CAT, key, classes, 0.0)
        assert len(a) == len(b) > 0, key
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)
    from model_loaders.tasks.concepts import segment_concepts  # SAM 3 by words, exemplar box included

    a, b = (segment_concepts(c, CAT, "cat", [[100, 50, 300, 250]], 0.0) for c in (ray_ctx, ctx))
    assert a["count"] == b["count"] > 0 and [i["score"] for i in a["instances"]] == [i["score"] for i in b["instances"]]
    assert ray_ctx.cache.snapshot() == []  # nothing loaded in the app's process


def test_a_later_click_sends_only_its_prompts(ray_ctx: Any, ctx: Any, cluster: RayBackend) -> None:
    spec = get_spec(SAM)
    remote = ss.set_image(ray_ctx, ss.SegmentSession(), CAT)
    local = ss.set_image(ctx, ss.SegmentSession(), CAT)
    before = cluster.replica_info(spec)["calls"].get("encode_items", 0)
    for x, y in ((200, 150), (240, 120), (120, 200)):
        ss.click(ray_ctx, remote, x, y, False, True, SAM)
        ss.click(ctx, local, x, y, False, True, SAM)
        np.testing.assert_allclose(remote.prediction.scores, local.prediction.scores, atol=1e-4)
        assert (remote.prediction.masks != local.prediction.masks).mean() < 1e-3
    info = cluster.replica_info(spec)
    assert info["calls"]["encode_items"] - before == 1, "three clicks, one encoding on the cluster"
    assert remote.embeddings.nbytes == remote.image.array.nbytes  # the app holds the image, not the features
    cluster.forget(spec)  # the replica evicts it: the next click encodes again, unseen
    ss.click(ray_ctx, remote, 100, 100, False, False, SAM)
    assert cluster.replica_info(spec)["calls"]["encode_items"] - before == 2 and remote.prediction is not None
    assert cluster.encoded_again[SAM] == 1


def test_with_two_sam_replicas_each_image_stays_on_the_replica_that_encoded_it(cluster: RayBackend, ctx: Any) -> None:
    key = "sam2.1-hiera-small"
    two = RayBackend(None, "tiny", "cpu", {"default": {"num_cpus": 0.25}, key: {"num_replicas": 2}})
    assert two.connect()
    ray_ctx = app.make_context("tiny", "cpu", backends=[two])
    images = [CAT, *({"path": str(p)} for p in sorted(app.ASSETS.glob("*.jpg")) if p.name != "cat.jpg")][:4]
    assert len(images) >= 3
    try:
        for image in images:
            remote, local = ss.set_image(ray_ctx, ss.SegmentSession(), image), ss.set_image(ctx, ss.SegmentSession(), image)
            for fx, fy in ((0.5, 0.5), (0.3, 0.6), (0.7, 0.4), (0.2, 0.2)):
                x, y = fx * local.image.array.shape[1], fy * local.image.array.shape[0]
                ss.click(ray_ctx, remote, x, y, False, True, key)
                ss.click(ctx, local, x, y, False, True, key)
                np.testing.assert_allclose(remote.prediction.scores, local.prediction.scores, atol=1e-4)
        # 16 clicks on 4 images over 2 replicas: sent anywhere, about half would miss the embedding
        assert two.encoded_again[key] == 0, "every click reached the replica holding its image"
    finally:
        two.shutdown()


def test_concurrent_requests_share_forward_passes(ray_ctx: Any, cluster: RayBackend) -> None:
    spec = get_spec(DEPTH)
    td.estimate(ray_ctx, CAT, DEPTH)
    before = cluster.replica_info(spec)["calls"]
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(td.estimate(ray_ctx, CAT, DEPTH))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = cluster.replica_info(spec)["calls"]
    assert len(results) == 6 and after["forward_items"] - before["forward_items"] == 6
    assert after["forward"] - before["forward"] < 6, "six concurrent users, fewer forward passes"
    for r in results[1:]:
        np.testing.assert_allclose(r.depth, results[0].depth, atol=1e-4)  # each caller its own, right result


def test_a_killed_replica_is_survived(ray_ctx: Any, cluster: RayBackend) -> None:
    spec = get_spec(DETECT)
    expected = tdet.detections(ray_ctx, CAT, DETECT, (), 0.0)
    os.kill(cluster.replica_info(spec)["pid"], signal.SIGKILL)
    outcomes: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            again = tdet.detections(ray_ctx, CAT, DETECT, (), 0.0)
            break
        except ModelUnavailable as exc:  # while Serve replaces the replica: one short sentence
            outcomes.append(str(exc))
            assert len(str(exc)) < 200 and "Traceback" not in str(exc)
            time.sleep(2)
    else:
        pytest.fail(f"the replica was not replaced: {outcomes[-3:]}")
    np.testing.assert_allclose(again.xyxy, expected.xyxy, atol=1e-3)
    assert cluster.replica_info(spec)["pid"] > 0


def test_an_unreachable_cluster_and_an_unplaceable_model_are_short_messages(cluster: RayBackend) -> None:
    down = RayBackend("127.0.0.1:9", "tiny", "cpu")
    assert not down.connect() and "unreachable" in down.error
    ctx = app.make_context("tiny", "cpu", backends=[down])
    assert ctx.availability(get_spec(DEPTH)).status == "Ray cluster unreachable"
    with pytest.raises(ModelUnavailable, match="unreachable"):
        td.estimate(ctx, CAT, DEPTH)
    assert any("unreachable" in line for line in down.status_lines())
    greedy = RayBackend(None, "tiny", "cpu", {"depth-anything-v2-base": {"num_gpus": 1}}, place_timeout_s=15)
    assert greedy.connect()
    with pytest.raises(ModelUnavailable, match="could not be deployed"):
        td.estimate(app.make_context("tiny", "cpu", backends=[greedy]), CAT, "depth-anything-v2-base")


def test_status_lists_deployments_and_the_config_file_is_checked(cluster: RayBackend, tmp_path: Any) -> None:
    lines = "\n".join(cluster.status_lines())
    assert "Ray Serve" in lines and f"`{DEPTH}`" in lines and "running" in lines
    path = tmp_path / "serve.yaml"
    path.write_text("default: {num_cpus: 2}\nsam2.1-hiera-large: {num_replicas: 3, num_gpus: 0.5}\n")
    overrides = load_config(path)
    large = config_for(overrides, get_spec("sam2.1-hiera-large"), "cuda")
    assert (large.num_replicas, large.num_gpus, large.num_cpus) == (3, 0.5, 2.0)
    assert config_for(overrides, get_spec(DEPTH), "cuda").num_gpus == 0.1  # the size default: small model
    path.write_text("depth-anything-v2-small: {replicas: 2}\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_config(path)
    path.write_text("frontend: {num_cpus: 1}\n")
    assert frontend_config(load_config(path), 3).options("frontend")["ray_actor_options"]["num_cpus"] == 1.0
    path.write_text("frontend: {autoscaling: {max_replicas: 4}}\n")  # a new count would move sessions
    with pytest.raises(ValueError, match="unknown setting"):
        load_config(path)


# --- the app itself as a Serve ingress with two replicas ---------------------------------------


@pytest.fixture(scope="module")
def frontend(cluster: RayBackend, http_port: int, tmp_path_factory: Any) -> Iterator[str]:
    """``app.py --backend ray --frontend-replicas 2`` on the module's cluster; yields its URL."""
    from ray import serve

    from ray_frontend import FRONTEND_APP, frontend_app

    config = tmp_path_factory.mktemp("frontend") / "serve.yaml"
    config.write_text("default: {num_cpus: 0.5}\nfrontend: {num_cpus: 0.25}\n")
    argv = ["--weights", "tiny", "--device", "cpu", "--backend", "ray", "--ray-config", str(config),
            "--frontend-replicas", "2"]  # fmt: skip
    serve.run(frontend_app(argv, frontend_config(load_config(config), 2)), name=FRONTEND_APP, route_prefix="/")
    try:
        yield f"http://127.0.0.1:{http_port}"
    finally:
        serve.delete(FRONTEND_APP)


def _replica(url: str, cookies: Any) -> str:
    """The front-end replica that answers a request carrying ``cookies``."""
    import httpx

    return httpx.get(f"{url}/health", cookies=cookies, timeout=30).headers["x-vp-frontend"]


def _clients_on_each_replica(url: str) -> dict[str, Any]:
    """One gradio_client session per front-end replica (each session keeps the cookie its first
    request got; which replica that means is up to the hash, so sessions are opened until both are hit)."""
    from gradio_client import Client

    found: dict[str, Any] = {}
    for _ in range(24):
        c = Client(url, verbose=False)
        seen = {_replica(url, c.cookies) for _ in range(4)}
        assert len(seen) == 1, f"one session's requests reached {len(seen)} replicas"
        found.setdefault(seen.pop(), c)
        if len(found) == 2:
            return found
    pytest.fail(f"24 sessions all reached {list(found)}")


def _without_timings(value: Any) -> Any:
    """An endpoint's JSON without what differs between runs and places (times, where it ran, file paths)."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in {"timings", "timing", "device"}}
    if isinstance(value, list | tuple):
        return [_without_timings(v) for v in value]
    if isinstance(value, float):
        return round(value, 3)
    return value


def test_two_front_end_replicas_keep_each_session_and_give_the_local_outputs(frontend: str, client: Any,
                                                                            cluster: RayBackend) -> None:
    import httpx
    from gradio_client import handle_file

    first = httpx.get(frontend, timeout=30)
    assert first.status_code == 200 and first.cookies.get("vp_session") and first.headers["x-vp-frontend"]
    again = httpx.get(f"{frontend}/health", cookies=first.cookies, timeout=30)
    assert "set-cookie" not in again.headers, "a session keeps its routing cookie"

    sessions = _clients_on_each_replica(frontend)
    cat = handle_file(CAT["path"])
    calls = [
        ((cat, DEPTH), "/depth"),
        ((cat, DETECT, 0.0, 0.7, ""), "/detect"),
        ((cat, OPEN, 0.0, 0.7, "cat"), "/detect"),
        ((cat, [[200, 150], [120, 200]], [1, 0], None, SAM, True), "/segment"),
        ((cat, "detect", f"{DETECT}, {OPEN}", "cat", 0.3, ""), "/compare"),
    ]
    for replica, remote in sessions.items():
        for args, endpoint in calls:
            got, want = remote.predict(*args, api_name=endpoint), client.predict(*args, api_name=endpoint)
            if endpoint == "/depth":  # downloads: the float32 map itself
                floats = [np.load(next(f for f in files if f.endswith(".npy"))) for files in (got[0], want[0])]
                np.testing.assert_allclose(*floats, atol=1e-4)
                got, want = got[1], want[1]
            elif endpoint in ("/detect", "/segment"):
                got, want = got[0], want[0]  # the JSON (the overlay image is drawn from it)
            assert _without_timings(got) == _without_timings(want), f"{endpoint} on front-end {replica}"
        assert _replica(frontend, remote.cookies) == replica, "the session stayed on its replica"
    status = "\n".join(cluster.status_lines())  # the Models tab's panel, in any front-end
    assert "front-end: 2 running" in status and f"`{SAM}`: running" in status and "in flight: 0" in status


@pytest.mark.browser
def test_a_browser_stays_on_one_front_end_and_the_embeddings_are_shared(frontend: str, browser: Any,
                                                                         cluster: RayBackend) -> None:  # fmt: skip
    spec = get_spec(SAM)

    def encodings() -> int:
        return cluster.replica_info(spec)["calls"].get("encode_items", 0)

    def session(avoid: str | None) -> tuple[Any, str, set[str]]:
        """A browser whose routing cookie lands on a replica other than ``avoid``, opened on Segment."""
        for _ in range(16):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.request.get(f"{frontend}/health")  # the first answer sets the cookie
            replica = context.request.get(f"{frontend}/health").headers["x-vp-frontend"]
            if replica == avoid:
                context.close()
                continue
            page = context.new_page()
            page.set_default_timeout(60_000)
            answered: set[str] = set()
            page.on("response", lambda r, seen=answered: r.url.startswith(frontend)
                    and seen.add(r.headers.get("x-vp-frontend", "?")))  # fmt: skip
            page.goto(frontend)
            open_tab(page, "Segment")
            pick_example(page, "segment-examples")
            return page, replica, answered
        pytest.fail("16 browsers all landed on one front-end replica")

    page, first, answered = session(None)
    segment_click(page, 0.4, 0.4, points=1)
    encoded = encodings()
    segment_click(page, 0.6, 0.5, points=2)  # the session (two points) lives on this replica
    assert answered == {first}, f"every request of the page reached one replica, not {answered} (cookie's: {first})"
    assert encodings() == encoded, "a later click did not encode again"

    other, second, answered_other = session(first)
    segment_click(other, 0.4, 0.4, points=1)
    assert answered_other == {second} != {first}, f"{answered_other} (cookie's: {second}; first browser's: {first})"
    assert encodings() == encoded, "another front-end's click on the same image used the cluster's embedding"
    for p in (page, other):
        p.context.close()
