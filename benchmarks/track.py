"""Track tab: per-frame cost through the tab's code vs the bare model, and memory vs clip length.

1. ``random`` weights at real size (SAM 2.1 tiny by default) over a short synthetic clip: the
   median ms per frame of `tasks.track.propagate` (frame read, preprocessing, the model, masks
   to RLE, pruning) against the bare ``Sam2VideoModel`` call per frame on the same session state
   (goal: ratio <= 1.15).
2. ``tiny`` weights: peak memory (resident; on CUDA, the GPU's) of a fresh process tracking 100 vs 1,000 frames
   (goal: ratio <= 1.2, i.e. memory does not grow with the clip).

Usage: .venv/bin/python benchmarks/track.py [--device cpu] [--frames 8] [--model sam2.1-hiera-tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _setup(weights: str, device: str, frames: int, folder: Path) -> tuple[object, object]:
    from synthetic import moving_square

    import app
    from model_loaders.tasks import track as tt

    ctx = app.make_context(weights, device)
    return ctx, tt.TrackSession(video=moving_square(frames, folder))  # a clip already decoded: tracking is measured


def per_frame(args: argparse.Namespace) -> tuple[float, float]:
    """(tab ms per frame, bare model ms per frame), medians."""
    import torch

    from model_loaders.tasks import track as tt

    with tempfile.TemporaryDirectory(prefix="vp-bench-") as tmp:
        ctx, s = _setup("random", args.device, args.frames + 1, Path(tmp))
        tt.add_prompt(ctx, s, args.model, 0, point=(45, 120))
        tab: list[float] = []
        last = time.perf_counter()
        for _ in tt.propagate(ctx, s, args.model, "forward"):
            now = time.perf_counter()
            tab.append(now - last)
            last = now
        tab = tab[1:]  # the first step is the clicked frame (already prompted)
        # The bare call: the model on each frame, frames already preprocessed, nothing converted.
        with ctx.use(args.model, part="video") as tracker:
            engine = tracker.new_session(s.video.size[::-1], len(s.video.frames))
            tracker.prompt(engine, s.video.frames[0], 0, {1: ([(45.0, 120.0)], [1], None)})
            pixels = [tracker.processor(images=s.video.frames[f].copy(), device="cpu", return_tensors="pt").pixel_values[0]
                      for f in range(1, len(s.video.frames))]  # fmt: skip
            bare = []
            for f, pv in enumerate(pixels, 1):
                engine.add_new_frame(pv, f)
                start = time.perf_counter()
                with torch.inference_mode():
                    tracker.model(inference_session=engine, frame_idx=f)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                bare.append(time.perf_counter() - start)
        s.close()
    return statistics.median(tab) * 1000, statistics.median(bare) * 1000


def child(frames: int, device: str, model: str) -> None:
    """Track ``frames`` frames with tiny weights; print the peak RSS in MB (JSON)."""

    from model_loaders.tasks import track as tt

    with tempfile.TemporaryDirectory(prefix="vp-bench-") as tmp:
        ctx, s = _setup("tiny", device, frames, Path(tmp))
        tt.add_prompt(ctx, s, model, 0, point=(45, 120))
        start = time.perf_counter()
        for _ in tt.propagate(ctx, s, model, "forward"):
            pass
        took = time.perf_counter() - start
        s.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.startswith("cuda"):
        import torch

        peak = torch.cuda.max_memory_allocated() / 2**20  # on a GPU: what the GPU held at most
    print(json.dumps({"frames": frames, "peak_mb": peak, "seconds": took}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="sam2.1-hiera-tiny")
    p.add_argument("--frames", type=int, default=8, help="frames for the per-frame comparison (real size)")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        child(args.child, args.device, args.model)
        return
    tab, bare = per_frame(args)
    runs = {}
    for n in (100, 1000):
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--device", args.device, "--model", args.model],
                             capture_output=True, text=True, check=True, cwd=ROOT)  # fmt: skip
        runs[n] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"Track, {args.model}, {args.device}")
    print(f"per frame (random weights, real size, {args.frames} frames): tab {tab:,.0f} ms, bare model {bare:,.0f} ms, "
          f"ratio {tab / bare:.2f}")  # fmt: skip
    print(f"peak memory (tiny weights): 100 frames {runs[100]['peak_mb']:,.0f} MB ({runs[100]['seconds']:.1f} s), "
          f"1,000 frames {runs[1000]['peak_mb']:,.0f} MB ({runs[1000]['seconds']:.1f} s), "
          f"ratio {runs[1000]['peak_mb'] / runs[100]['peak_mb']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
