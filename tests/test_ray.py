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
from model_loaders.backends.ray_serve import RayBackend, config_for, load_config
from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.registry import get_spec
from model_loaders.tasks import depth as td
from model_loaders.tasks import detect as tdet
from model_loaders.tasks import segment_session as ss

pytestmark = pytest.mark.ray  # `make test` runs these in a pytest process of their own

CAT = {"path": str(app.ASSETS / "cat.jpg")}
DEPTH, DETECT, OPEN, SAM = "depth-anything-v2-small", "rf-detr-nano", "owlv2-base", "sam2.1-hiera-tiny"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayBackend]:
    import ray
    from ray import serve

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)  # logical CPUs: room for 4 small replicas
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
