"""Dynamic batching: concurrent Depth and Detect requests share forward passes, and each request
gets exactly what it would have got alone."""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import app
from model_loaders.core.batching import Batcher, Batchers
from model_loaders.tasks import depth as td
from model_loaders.tasks import detect as tdet


def test_each_request_gets_its_own_row_and_passes_are_shared() -> None:
    seen: list[list[int]] = []

    def forward(items: list[int]) -> list[int]:
        seen.append(list(items))
        time.sleep(0.02)
        return [i * 10 for i in items]

    batcher = Batcher("t", max_batch=8, max_wait_s=0.05)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: batcher.submit(forward, i, "same"), range(16)))
    assert results == [i * 10 for i in range(16)]
    assert batcher.stats.requests == 16 and batcher.stats.passes < 16 and batcher.stats.largest > 1
    assert all(len(batch) <= 8 for batch in seen)


def test_inputs_that_cannot_stack_never_share_a_pass() -> None:
    def forward(items: list[tuple[str, int]]) -> list[str]:
        assert len({kind for kind, _ in items}) == 1, f"mixed shapes in one pass: {items}"
        return [f"{kind}{n}" for kind, n in items]

    batcher = Batcher("t", max_batch=8, max_wait_s=0.05)
    jobs = [("a" if i % 2 else "b", i) for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda job: batcher.submit(forward, job, job[0]), jobs))
    assert results == [f"{k}{n}" for k, n in jobs]


def test_a_failing_pass_gives_each_request_its_own_outcome() -> None:
    def forward(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad input")
        return items

    batcher = Batcher("t", max_batch=8, max_wait_s=0.05)

    def one(i: int) -> Any:
        try:
            return batcher.submit(forward, i, None)
        except ValueError as exc:
            return str(exc)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, [1, 2, -1, 3, 4, 5]))
    assert results == [1, 2, "bad input", 3, 4, 5]


def _images(folder: Path, n: int, size: tuple[int, int] = (320, 240)) -> list[dict[str, str]]:
    """``n`` different images of ``size`` (different patterns and noise)."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        base = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
        pixels = (base * (i + 1) % 255 + rng.integers(0, 40, base.shape)).astype(np.uint8)
        path = folder / f"img{size[0]}x{size[1]}-{i}.png"
        Image.fromarray(pixels).save(path)
        out.append({"path": str(path)})
    return out


@pytest.fixture()
def batched_ctx(ctx: Any) -> Any:
    """The session's context (same models) with batching on."""
    return dataclasses.replace(ctx, batchers=Batchers(8, max_wait_s=0.05))


def _concurrently(fn: Any, items: list[Any]) -> list[Any]:
    start = threading.Barrier(len(items))

    def call(item: Any) -> Any:
        start.wait()
        return fn(item)

    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(call, items))


def test_concurrent_depth_requests_share_passes_and_get_their_own_maps(ctx: Any, batched_ctx: Any,
                                                                        upload_path: Path) -> None:  # fmt: skip
    images = _images(upload_path, 8) + _images(upload_path, 2, size=(200, 300))  # two shapes
    key = "depth-anything-v2-small"
    alone = [td.estimate(ctx, img, key).depth for img in images]
    together = _concurrently(lambda img: td.estimate(batched_ctx, img, key).depth, images)
    for a, b in zip(alone, together, strict=True):  # tiny random maps are ~1e-7: compare to scale
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-3 * np.abs(a).max()
    # Each map is its own image's: every other image's map is far from it.
    for i, b in enumerate(together):
        errors = [np.abs(b - a).mean() / np.abs(a).mean() if a.shape == b.shape else np.inf for a in alone]
        assert int(np.argmin(errors)) == i and sorted(errors)[1] > 100 * errors[i], errors
    stats = batched_ctx.batchers.get(key).stats
    assert stats.requests == 10 and stats.passes < 10 and stats.largest > 1, stats


def test_concurrent_detect_requests_share_passes(ctx: Any, batched_ctx: Any, upload_path: Path) -> None:
    images = _images(upload_path, 6, size=(400, 300)) + _images(upload_path, 2, size=(200, 500))
    key = "rf-detr-medium"
    alone = [tdet.run(ctx, img, key).detections for img in images]
    together = _concurrently(lambda img: tdet.run(batched_ctx, img, key).detections, images)
    assert len(alone[0]) > 0 and not np.allclose(together[0].confidence, together[1].confidence)
    for a, b in zip(alone, together, strict=True):
        assert len(a) == len(b)
        assert np.allclose(a.xyxy, b.xyxy, atol=0.05) and np.allclose(a.confidence, b.confidence, atol=1e-4)
    stats = batched_ctx.batchers.get(key).stats
    assert stats.requests == 8 and stats.passes < 8, stats


def test_open_vocabulary_detectors_run_alone(batched_ctx: Any, upload_path: Path) -> None:
    (image,) = _images(upload_path, 1)
    tdet.run(batched_ctx, image, "owlv2-base", "cat, dog")
    assert batched_ctx.batchers.get("owlv2-base").stats.requests == 0


def test_batch_size_defaults() -> None:
    assert app.batch_size(None, "cuda") == app.DEFAULT_GPU_BATCH and app.batch_size(None, "cpu") == 1
    assert app.batch_size(4, "cpu") == 4


def test_the_api_endpoints_take_a_batch_at_once_when_batching(ctx: Any) -> None:
    demo = app.build_app(dataclasses.replace(ctx, batchers=Batchers(8)))
    by_api = {f.api_name: f for f in demo.fns.values()}
    for name in ("depth", "detect"):
        assert by_api[name].concurrency_id == "lane-batched" and by_api[name].concurrency_limit == 8
    assert by_api["segment"].concurrency_id == "lane-single"  # not batched: its own lane
