"""First click vs later clicks in the Segment tab (SAM 2.1, random weights at real size).

The first click on an image runs the image encoder; later clicks reuse the session's cached
embedding and only run the prompt encoder + mask decoder. Measured through the tab's own
handlers (`tasks.segment_session.click` + the tab's `render`, as the server runs them) on one example image,
after one warm-up image so one-off costs (model load, first-call kernels) are not counted.

Usage: .venv/bin/python benchmarks/segment.py [--models tiny,large] [--clicks 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    """Print first-click ms, median later-click ms and their ratio per model."""
    import torch

    import app
    from model_loaders.tasks import segment_session as ss
    from tabs import segment as S
    from tabs._examples import example_paths

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny,large", help="comma-separated Hiera sizes")
    p.add_argument("--clicks", type=int, default=10, help="later clicks to time")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    ctx = app.make_context("random", args.device)
    warm_path, image_path = example_paths()[1], example_paths()[0]
    print(f"device={ctx.settings.device} torch={torch.__version__} threads={torch.get_num_threads()} weights=random")
    rows = []
    for size in args.models.split(","):
        key = f"sam2.1-hiera-{size.strip()}"
        t0 = time.perf_counter()
        with ctx.use(key):
            pass
        load_s = time.perf_counter() - t0
        # Warm-up on another image: first-call costs are not what a user pays per image.
        warm = ss.set_image(ctx, ss.SegmentSession(), {"path": warm_path})
        ss.click(ctx, warm, 50, 50, False, True, key)
        S.render(ctx, warm)

        session = ss.set_image(ctx, ss.SegmentSession(), {"path": image_path})
        w, h = session.image.size  # type: ignore[union-attr]
        start = time.perf_counter()
        ss.click(ctx, session, w * 0.5, h * 0.5, False, True, key)
        S.render(ctx, session)
        first_ms = (time.perf_counter() - start) * 1000.0
        first_line = S.step_line(ctx, session)
        later: list[float] = []
        decode: list[float] = []
        for i in range(args.clicks):
            x, y = w * (0.2 + 0.06 * i), h * (0.3 + 0.04 * i)
            start = time.perf_counter()
            ss.click(ctx, session, x, y, False, i % 3 != 2, key)
            S.render(ctx, session)
            later.append((time.perf_counter() - start) * 1000.0)
            decode.append(session.prediction.decode_ms)  # type: ignore[union-attr]
            assert session.step.encoded_ms is None, "the encoder must not run again"  # type: ignore[union-attr]
        median = statistics.median(later)
        rows.append((key, load_s, first_ms, median, median / first_ms))
        print(f"{key}: load {load_s:.1f} s | first click {first_ms:,.0f} ms ({first_line.split(' · ')[0]})")
        print(
            f"    later clicks (n={len(later)}): median {median:,.0f} ms, min {min(later):,.0f}, "
            f"max {max(later):,.0f}; of which mask decoding: median {statistics.median(decode):,.0f} ms"
        )
        ctx.cache.evict_unpinned()  # free the model before loading the next size

    print()
    print(f"{'model':<24} {'first click ms':>15} {'median later ms':>16} {'ratio':>7}  (goal <= 0.05)")
    for key, _, first_ms, median, ratio in rows:
        print(f"{key:<24} {first_ms:>15,.0f} {median:>16,.0f} {ratio:>7.3f}")


if __name__ == "__main__":
    main()
