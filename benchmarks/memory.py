"""Memory: what each model really holds and needs while it runs, and whether the cache keeps the
process within its budget.

Two parts, each in fresh child processes so one model's allocator state does not colour another's:

1. ``--calibrate``: for each model (random weights at real size, CPU), the resident memory of the
   process before loading, after loading, and at its peak during one run on a 1024×768 image,
   next to the registry's estimate (weights) and working reserve. "fits" says whether the
   registry's estimate + reserve covered what the run really took.
2. the budget run (default): one process with a small memory budget runs a sequence of models
   whose weights together exceed it; a sampler thread records the process's peak resident memory.
   It prints peak growth over the baseline next to budget + the largest working reserve
   (the goal: growth <= budget + reserve) and which models the admission check refused.

Usage: .venv/bin/python benchmarks/memory.py [--calibrate] [--budget-mb 1200] [--models a,b,c]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CALIBRATE = (
    "sam2.1-hiera-tiny,sam2.1-hiera-large,depth-anything-v2-small,depth-anything-v2-large,rf-detr-medium,"
    "d-fine-xlarge,owlv2-base,florence-2-base,smolvlm-256m-instruct"
)
SEQUENCE = "depth-anything-v2-small,sam2.1-hiera-large,depth-anything-v2-large,rf-detr-medium,owlv2-base,florence-2-base"


def rss() -> int:
    """Resident bytes of this process now."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler:
    """Samples this process's resident memory every few milliseconds; ``peak`` is the highest seen."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.every_s, self.peak, self._stop = every_s, rss(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(self.every_s)

    def __enter__(self) -> PeakSampler:
        self.peak = rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def _image() -> object:
    import numpy as np

    from model_loaders.core.images import decode_image

    rng = np.random.default_rng(0)
    return decode_image(rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8))


def run_once(ctx: object, key: str, image: object) -> None:
    """One run of ``key``'s home task through the task layer."""
    from model_loaders.core.registry import get_spec
    from model_loaders.tasks import ask, depth, detect, segment

    spec = get_spec(key)
    if spec.task == "segment":
        segment.segment_points(ctx, image, key, [(300.0, 200.0)])
    elif spec.task == "depth":
        depth.estimate(ctx, image, key)
    elif spec.task == "detect":
        detect.detections(ctx, image, key, ["cat"] if spec.open_vocabulary else [])
    else:
        ask.answer(ctx, image, key, ask.default_request(spec, "What is in this image?", max_new_tokens=8))


def child_calibrate(key: str) -> dict[str, object]:
    """In a fresh process: RSS before/after load and peak during one run of ``key``."""
    import gc

    import app
    from model_loaders.core.registry import get_spec

    image = _image()
    warm = app.make_context("tiny", "cpu")
    run_once(warm, key, image)  # import and warm the libraries with a tiny build of the same family
    warm.cache.evict_unpinned()
    del warm
    ctx = app.make_context("random", "cpu", budget_bytes=64 * 2**30)
    spec = get_spec(key)
    need = ctx.memory_need(spec)
    gc.collect()
    before = rss()
    with ctx.use(key):
        pass
    loaded = rss()
    with PeakSampler() as sampler:
        run_once(ctx, key, image)
    measured = ctx.cache.used_bytes()
    return {
        "model": key,
        "weights_estimate_mb": need.weights / 2**20,
        "reserve_mb": need.working / 2**20,
        "measured_weights_mb": measured / 2**20,
        "load_growth_mb": (loaded - before) / 2**20,
        "run_peak_over_loaded_mb": (sampler.peak - loaded) / 2**20,
        "fits": (sampler.peak - before) <= need.total,
    }


def child_budget(keys: list[str], budget_mb: int) -> dict[str, object]:
    """In a fresh process: run ``keys`` in turn under a ``budget_mb`` cache budget; peak RSS growth."""
    import gc

    import app
    from model_loaders.core.errors import ModelUnavailable
    from model_loaders.core.registry import get_spec

    ctx = app.make_context("random", "cpu", budget_bytes=budget_mb * 2**20)
    image = _image()
    run_once(ctx, keys[0], image)  # warm the libraries (first-call allocations are not models)
    ctx.cache.evict_unpinned()
    gc.collect()
    base = rss()
    refused, ran, reserve = [], [], 0
    with PeakSampler() as sampler:
        for key in keys:
            need = ctx.memory_need(get_spec(key))
            try:
                run_once(ctx, key, image)
                ran.append(key)
                reserve = max(reserve, need.working)
            except ModelUnavailable as exc:
                refused.append(f"{key}: {exc.message}")
    return {
        "budget_mb": budget_mb,
        "largest_reserve_mb": reserve / 2**20,
        "peak_growth_mb": (sampler.peak - base) / 2**20,
        "ran": ran,
        "refused": refused,
        "loaded_at_end": [str(i.key) for i in ctx.cache.snapshot()],
    }


def _child(args: list[str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(out.stderr[-2000:])


def main() -> None:
    """Print the calibration table or the budget run's result."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calibrate", action="store_true")
    p.add_argument("--models", default="")
    p.add_argument("--budget-mb", type=int, default=1200)
    p.add_argument("--child", nargs="*")
    args = p.parse_args()
    if args.child is not None:
        import logging

        logging.basicConfig(level=logging.WARNING)
        kind, *rest = args.child
        result = child_calibrate(rest[0]) if kind == "calibrate" else child_budget(rest[1].split(","), int(rest[0]))
        print(json.dumps(result))
        return
    import platform

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, weights=random, device=cpu")
    if args.calibrate:
        print(f"{'model':40} {'estimate':>9} {'measured':>9} {'load +':>8} {'run peak +':>10} {'reserve':>8}  fits")
        for key in (args.models or CALIBRATE).split(","):
            r = _child(["calibrate", key])
            print(f"{key:40} {r['weights_estimate_mb']:8.0f}M {r['measured_weights_mb']:8.0f}M "
                  f"{r['load_growth_mb']:7.0f}M {r['run_peak_over_loaded_mb']:9.0f}M {r['reserve_mb']:7.0f}M  "
                  f"{'yes' if r['fits'] else 'NO'}")  # fmt: skip
        return
    r = _child(["budget", str(args.budget_mb), args.models or SEQUENCE])
    limit = r["budget_mb"] + r["largest_reserve_mb"]
    print(f"budget {r['budget_mb']} MB + largest working reserve {r['largest_reserve_mb']:.0f} MB = {limit:.0f} MB")
    print(f"peak resident growth over the baseline: {r['peak_growth_mb']:.0f} MB "
          f"(ratio to budget + reserve: {r['peak_growth_mb'] / limit:.2f}; goal <= 1.00)")  # fmt: skip
    print(f"ran: {', '.join(r['ran'])}")
    print(f"refused before loading: {r['refused'] or 'none'}")
    print(f"loaded at the end: {', '.join(r['loaded_at_end'])}")


if __name__ == "__main__":
    main()
