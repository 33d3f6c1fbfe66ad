"""SAM 3 by words: what feature reuse buys, and what the task layer costs over the bare model.

``random`` weights at real size (840 M parameters, 1008 px input), one photo:

1. **A new prompt on the same image / the first prompt**: the first ``tasks.detect.run`` encodes
   the image (and the concept); a second call with other concepts finds the image's features in
   the model bundle and runs only the text encoder and decoder (goal: <= 0.2).
2. **Handler / raw forward**: the task-layer call on a fresh image (decode, preprocessing, the
   model, post-processing to masks at the image's size) against the bare ``Sam3Model`` forward
   on the same pixel values and tokens (goal: <= 1.10).

3. With ``--video N``: **Track by words** (``tasks.track.track_words``, SAM 3's video model) over
   a synthetic N-frame clip: ms per frame, and whether what the model's session holds stops
   growing once its memory window is full (held at the end / held at frame 24).

Usage: .venv/bin/python benchmarks/sam3.py [--device cpu] [--repeats 3] [--video 0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY = "sam3"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--weights", default="random", choices=("random", "tiny"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--video", type=int, default=0, help="frames of a clip to track by words (0: skip)")
    p.add_argument("--skip-image", action="store_true", help="only the video part")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.video:
        video(args)
    if args.skip_image:
        return
    import torch

    import app
    from model_loaders.tasks import detect as td
    from model_loaders.tasks.base import image_of

    ctx = app.make_context(args.weights, args.device)
    device = ctx.settings.device
    photo = {"path": str(ROOT / "assets" / "books-desk.jpg")}
    concepts = ["book", "mug", "pen", "lamp", "phone", "plant"]

    def timed(fn: object) -> float:
        _sync(device)
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        _sync(device)
        return time.perf_counter() - t

    with ctx.use(KEY) as bundle:
        bundle.forget()
    td.run(ctx, photo, KEY, "warm up")  # load, first-call costs
    firsts, seconds, handler = [], [], []
    for i in range(args.repeats):
        with ctx.use(KEY) as bundle:
            bundle.forget()
        firsts.append(timed(lambda i=i: td.run(ctx, photo, KEY, concepts[(2 * i) % len(concepts)])))
        seconds.append(timed(lambda i=i: td.run(ctx, photo, KEY, concepts[(2 * i + 1) % len(concepts)])))
        with ctx.use(KEY) as bundle:
            bundle.forget()
        handler.append(timed(lambda: td.run(ctx, photo, KEY, "book")))

    decoded = image_of(ctx, photo)
    raw = []
    with ctx.use(KEY) as bundle, torch.inference_mode():
        proc = bundle.processor
        pixels = proc(images=decoded.array, return_tensors="pt")["pixel_values"].to(device, bundle.model.dtype)
        tokens = {k: v.to(device) for k, v in proc(text="book", return_tensors="pt").items()}
        bundle.model(pixel_values=pixels, **tokens)
        for _ in range(args.repeats):
            raw.append(timed(lambda: bundle.model(pixel_values=pixels, **tokens)))
        dtype = str(bundle.model.dtype).replace("torch.", "")
    first, second = statistics.median(firsts), statistics.median(seconds)
    hand, bare = statistics.median(handler), statistics.median(raw)
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"{device} ({os.cpu_count()} cores)"
    print(f"\nSAM 3 ({args.weights} weights, {dtype}) on {name}, image {decoded.array.shape[1]}×{decoded.array.shape[0]}\n")
    print(f"first prompt (encode + decode)      {first * 1000:9,.0f} ms")
    print(f"new prompt, same image (decode)     {second * 1000:9,.0f} ms   second/first {second / first:.3f}  (goal <= 0.2)")
    print(f"handler, one concept, fresh image   {hand * 1000:9,.0f} ms")
    print(f"bare Sam3Model forward              {bare * 1000:9,.0f} ms   handler/raw  {hand / bare:.3f}  (goal <= 1.10)")


def video(args: argparse.Namespace) -> None:
    """Track by words over a synthetic clip: ms per frame and whether the session's memory is flat."""
    import torch

    import app
    from model_loaders.families.sam3 import Sam3VideoBundle
    from model_loaders.tasks import track as tt

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from synthetic import moving_square

    ctx = app.make_context(args.weights, args.device)
    clip = moving_square(args.video, Path(tempfile.mkdtemp(prefix="vp-bench-")), (640, 360), (120, 220), 90, 5)
    s = tt.TrackSession(video=clip)
    s.folder = s.video.frames.path.parent
    times, held = [], []
    last = time.perf_counter()
    for _ in tt.track_words(ctx, s, "square"):
        _sync(ctx.settings.device)
        now = time.perf_counter()
        times.append(now - last)
        last = now
        held.append(Sam3VideoBundle.held(s.engine))
    steady = statistics.median(times[2:]) if len(times) > 2 else statistics.median(times)
    name = torch.cuda.get_device_name(0) if ctx.settings.device.startswith("cuda") else f"cpu ({os.cpu_count()} cores)"
    print(f"\nTrack by words (SAM 3 video, {args.weights} weights) on {name}: {len(times)} frames of 640×360, "
          f"{len(s.objects)} object(s)")
    print(f"first frame {times[0] * 1000:,.0f} ms, then {steady * 1000:,.0f} ms a frame ({1 / steady:.1f} frames/s)")
    mark = min(24, len(held)) - 1
    print(f"session holds {held[mark]} frame outputs at frame {mark}, {held[-1]} at the end "
          f"(ratio {held[-1] / max(held[mark], 1):.2f}: flat once the window is full)")
    s.close()


if __name__ == "__main__":
    main()
