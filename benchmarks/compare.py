"""Overhead of the Compare tab: a 3-model comparison vs the three single runs, in one process.

Random weights at real size (same compute as the real checkpoints), models warm in the cache
(the first, loading round is not timed). Each round times the comparison (decode once, three
models in turn, agreement matrix, gallery and charts) and then each model alone (decode +
run, what a single tab does). Prints medians and the ratio; the goal is <= 1.05.

    .venv/bin/python benchmarks/compare.py [--task detect|depth] [--rounds 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

MODELS = {
    "detect": ["rf-detr-nano", "d-fine-small", "rt-detrv2-r18"],
    "depth": ["depth-anything-v2-small", "depth-anything-v2-metric-indoor-small", "depth-anything-v2-base"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(MODELS), default="detect")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image", default=str(ROOT / "assets" / "coffee.jpg"))
    args = parser.parse_args()

    import app
    from model_loaders.core.device import resolve_device
    from model_loaders.tasks import compare as tc
    from model_loaders.tasks import depth, detect
    from model_loaders.tasks.base import image_of
    from tabs import compare

    ctx = app.make_context("random", resolve_device(args.device))
    keys = MODELS[args.task]
    kwargs = {"confidence": 0.3} if args.task == "detect" else {}

    def single(key: str) -> None:
        decoded = image_of(ctx, args.image)
        if args.task == "detect":
            detect.detections(ctx, decoded, key, confidence=0.3)
        else:
            depth.estimate(ctx, decoded, key)

    extra_ms: list[float] = []  # what a comparison adds on top of the runs: agreement + views

    def comparison() -> None:
        cmp = tc.compare(ctx, args.image, args.task, keys, **kwargs)
        assert all(r.ok for r in cmp.runs), [r.error for r in cmp.runs]
        t = time.perf_counter()
        tc.compute_agreement(args.task, cmp.runs)
        compare.gallery_items(cmp, ctx.weights_warning)
        compare.latency_figure(cmp)
        compare.agreement_figure(cmp)
        extra_ms.append((time.perf_counter() - t) * 1000)

    start = time.perf_counter()
    comparison()  # loads all three (not timed as part of the rounds)
    print(f"device={ctx.settings.device} weights=random task={args.task} models={', '.join(keys)}")
    print(f"first comparison incl. loading: {time.perf_counter() - start:.2f} s")
    loaded = [str(i.key) for i in ctx.cache.snapshot()]
    assert all(k in loaded for k in keys), "all three must stay cached, or the rounds would time loading"

    cmp_times: list[float] = []
    singles: dict[str, list[float]] = {k: [] for k in keys}
    ratios: list[float] = []
    for i in range(args.rounds):
        # Alternate which goes first, so drift in machine load does not favour one side.
        round_single = 0.0
        for part in (("cmp", "single") if i % 2 == 0 else ("single", "cmp")):
            if part == "cmp":
                t = time.perf_counter()
                comparison()
                cmp_times.append(time.perf_counter() - t)
            else:
                for key in keys:
                    t = time.perf_counter()
                    single(key)
                    singles[key].append(time.perf_counter() - t)
                    round_single += singles[key][-1]
        ratios.append(cmp_times[-1] / round_single)
    med_cmp = statistics.median(cmp_times)
    med_single = {k: statistics.median(v) for k, v in singles.items()}
    total = sum(med_single.values())
    for k, v in med_single.items():
        print(f"  single {k:40s} median {v * 1000:8.1f} ms")
    print(f"sum of single runs (medians)      {total * 1000:8.1f} ms")
    print(f"3-model comparison (median)       {med_cmp * 1000:8.1f} ms  over {args.rounds} rounds")
    print(f"ratio comparison / sum of singles {med_cmp / total:8.3f}  (goal <= 1.05)")
    print(f"agreement + gallery + charts      {statistics.median(extra_ms[1:]):8.1f} ms (median, inside the comparison)")
    print(f"median of per-round ratios        {statistics.median(ratios):8.3f}  (rounds: "
          + ", ".join(f"{r:.3f}" for r in ratios) + ")")


if __name__ == "__main__":
    main()
