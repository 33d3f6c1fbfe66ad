"""The GPU benchmark: one command on a CUDA machine, ``random`` weights at real size, one table.

    .venv/bin/python benchmarks/gpu.py                 # on a CUDA GPU
    .venv/bin/python benchmarks/gpu.py --device cpu --quick   # the same steps on a CPU (a smoke run)

Rows:
- **Segment click** through ``gradio_client`` against a served app: the first click (encodes the
  image) and a cached click (decoder only); their ratio is what "a second click must not
  re-encode" buys.
- **Depth / Detect handler vs raw forward**: the task-layer call (decode, preprocess, forward,
  postprocess, as a request runs it) against the model's bare forward pass on the same input,
  in the device's dtype (bf16 on CUDA): the overhead the app adds.
- **8 concurrent Depth users**: calls per second with batching vs without (`benchmarks/batching.py`).
- **Peak memory per model**: ``torch.cuda.max_memory_allocated`` after loading and one run
  (CPU: the resident set's growth).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SEGMENT = "sam2.1-hiera-large"
DEPTH = "depth-anything-v2-large"
DETECT = "rf-detr-medium"


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(device: str, rss_before: int) -> float:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before) / 2**20


def segment_clicks(ctx: Any, photo: Path, repeats: int) -> tuple[float, float]:
    """(first click ms, cached click ms) through gradio_client against a served app."""
    from batching import _port
    from gradio_client import Client, handle_file

    import app
    from tabs.segment import INCLUDE, POINT_MODE

    demo = app.build_app(ctx)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options(port=_port(), ctx=ctx, demo=demo))
    client = Client(url, verbose=False)
    try:
        firsts, cached = [], []
        for i in range(repeats):
            client.predict(handle_file(str(photo)), api_name="/segment_image")
            t = time.perf_counter()
            client.predict(200 + i, 150, POINT_MODE, INCLUDE, SEGMENT, api_name="/segment_click")
            firsts.append(time.perf_counter() - t)
            for j in range(3):
                t = time.perf_counter()
                client.predict(260 + j, 180, POINT_MODE, INCLUDE, SEGMENT, api_name="/segment_click")
                cached.append(time.perf_counter() - t)
            client.predict(handle_file(str(ROOT / "assets" / "cat.jpg")), api_name="/segment_image")  # new image
        return _ms(firsts), _ms(cached)
    finally:
        client.close()
        demo.close()


def handler_vs_forward(ctx: Any, photo: Path, task: str, key: str, repeats: int) -> tuple[float, float]:
    """(task-layer call ms, bare forward ms) for one depth or detect model."""
    import torch

    from model_loaders.core.results import Timings
    from model_loaders.tasks import depth as td
    from model_loaders.tasks import detect as tdet
    from model_loaders.tasks.base import image_of

    device = ctx.settings.device
    call = (lambda: td.estimate(ctx, {"path": str(photo)}, key)) if task == "depth" else \
        (lambda: tdet.run(ctx, {"path": str(photo)}, key))  # fmt: skip
    call()  # load and warm up
    handler = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        _sync(device)
        handler.append(time.perf_counter() - t)
    decoded = image_of(ctx, {"path": str(photo)})
    with ctx.use(key) as bundle:
        inputs = bundle.prepare(decoded.array, Timings())
        batch = inputs if isinstance(inputs, dict) else {"pixel_values": inputs}
        forward = []
        with torch.inference_mode():
            bundle.model(**batch)
            for _ in range(repeats):
                _sync(device)
                t = time.perf_counter()
                bundle.model(**batch)
                _sync(device)
                forward.append(time.perf_counter() - t)
    return _ms(handler), _ms(forward)


def peak_memory(weights: str, device: str, photo: Path) -> dict[str, float]:
    """Peak memory of each model: loaded alone in a fresh cache, then run once."""
    import resource

    import app
    from model_loaders.tasks import depth as td
    from model_loaders.tasks import detect as tdet
    from model_loaders.tasks import segment as seg
    from model_loaders.tasks.base import image_of

    out = {}
    for key, run in ((SEGMENT, lambda c: seg.embed(c, image_of(c, {"path": str(photo)}), SEGMENT)),
                     (DEPTH, lambda c: td.estimate(c, {"path": str(photo)}, DEPTH)),
                     (DETECT, lambda c: tdet.run(c, {"path": str(photo)}, DETECT))):  # fmt: skip
        ctx = app.make_context(weights, device)
        _peak_reset(device)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        run(ctx)
        _sync(device)
        out[key] = _peak_mb(device, before)
        ctx.cache.evict_unpinned()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--weights", default="random", choices=("random", "tiny"))
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="fewer repeats, 2 users x 1 call (a smoke run)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    repeats = 2 if args.quick else args.repeats
    import numpy as np
    from PIL import Image

    import app

    rows: list[tuple[str, str, str]] = []
    ctx = app.make_context(args.weights, args.device)
    from gradio.utils import get_upload_folder

    # In Gradio's upload folder: the app's upload gate reads files from there only.
    with tempfile.TemporaryDirectory(dir=get_upload_folder()) as tmp:
        photo = Path(tmp) / "photo.jpg"
        rng = np.random.default_rng(0)
        ramp = np.linspace(0, 255, 1280)[None, :, None].repeat(960, 0).repeat(3, 2)
        Image.fromarray((ramp + rng.integers(0, 30, ramp.shape)).clip(0, 255).astype(np.uint8)).save(photo)
        device = ctx.settings.device
        name = device
        if device.startswith("cuda"):
            import torch

            name = torch.cuda.get_device_name(0)
        def segment_row() -> None:
            first, cached = segment_clicks(ctx, photo, max(1, repeats // 3))
            rows.append((f"Segment click ({SEGMENT}) via gradio_client", f"first {first:,.0f} ms, cached {cached:,.0f} ms",
                         f"cached/first {cached / first:.2f}"))  # fmt: skip

        def forward_rows() -> None:
            for task, key in (("depth", DEPTH), ("detect", DETECT)):
                handler, forward = handler_vs_forward(ctx, photo, task, key, repeats)
                rows.append((f"{task.capitalize()} handler vs raw forward ({key}, {ctx.settings.dtype_name(ctx.spec(key))})",
                             f"handler {handler:,.1f} ms, forward {forward:,.1f} ms",
                             f"handler/forward {handler / forward:.2f}"))  # fmt: skip
            ctx.cache.evict_unpinned()

        def batching_row() -> None:
            from batching import measure

            users, calls = (2, 1) if args.quick else (8, 3)
            opts = argparse.Namespace(device=args.device, model="depth-anything-v2-small", users=users, calls=calls)
            without = measure(1, opts, photo)
            with_ = measure(8, opts, photo)
            rows.append((f"{opts.users} concurrent Depth users ({opts.model})",
                         f"{without['calls_per_s']:.2f} -> {with_['calls_per_s']:.2f} calls/s",
                         f"batched/unbatched {with_['calls_per_s'] / without['calls_per_s']:.2f}x"))  # fmt: skip

        def memory_rows() -> None:
            for key, mb in peak_memory(args.weights, args.device, photo).items():
                rows.append((f"Peak memory: {key}", f"{mb:,.0f} MB", ""))

        # One row failing (a first run on a new machine) is printed and the others still run.
        for row in (segment_row, forward_rows, batching_row, memory_rows):
            try:
                row()
            except Exception as exc:  # noqa: BLE001 - reported in the table, traceback on stderr
                traceback.print_exc()
                rows.append((row.__name__, f"failed: {type(exc).__name__}: {str(exc)[:60]}", ""))
    print(f"\nGPU benchmark on {name}, {args.weights} weights\n")
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'measure':{width}}{'value':42}ratio")
    for what, value, ratio in rows:
        print(f"{what:{width}}{value:42}{ratio}")


if __name__ == "__main__":
    main()
