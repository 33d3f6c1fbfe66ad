"""The serving-engine path vs the same model in this process, and Workflow crops sent at once vs one by one.

Starts a real `transformers serve` on this machine (tools/local_engine.py) with the app's Qwen2.5-VL
(tiny by default; ``--weights random`` for real size), then, interleaved per round so drift hits
both alike:

- in-process: `tasks.ask.stream` on the model loaded here;
- engine: the same call with the engine as the backend (image encoded as JPEG, HTTP, SSE).

It prints the medians of time to first token and total time and their engine / in-process
ratios, then the Workflow's VLM stage over N crops with the engine: crops sent 4 at once vs one by
one (the engine batches concurrent requests).

Usage: .venv/bin/python benchmarks/remote_vqa.py [--rounds 5] [--tokens 64] [--crops 8] [--weights tiny]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KEY = "qwen2.5-vl-3b"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _timed_stream(ctx: object, decoded: object, request: object) -> tuple[float, float, int]:
    from model_loaders.tasks import ask as ta

    start = time.perf_counter()
    first = None
    tokens = 0
    for chunk in ta.stream(ctx, decoded, KEY, request):
        if first is None and chunk.text:
            first = time.perf_counter() - start
        if chunk.result is not None:
            tokens = chunk.stats.tokens
    return (first or 0.0) * 1000.0, (time.perf_counter() - start) * 1000.0, tokens


def main() -> None:
    """Print in-process vs engine medians and ratios, and concurrent vs serial crops."""
    import numpy as np

    import app
    from model_loaders.backends.openai_compat import backend_from_settings
    from model_loaders.core.images import decode_image
    from model_loaders.core.results import Timings
    from model_loaders.tasks import ask as ta
    from model_loaders.tasks import workflow as wf
    from tools import local_engine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--crops", type=int, default=8)
    p.add_argument("--weights", choices=("tiny", "random"), default="tiny")
    p.add_argument("--continuous-batching", action="store_true", help="start the engine with continuous batching")
    args = p.parse_args()

    local = app.make_context(args.weights, "cpu")
    root = Path(tempfile.mkdtemp(prefix="vp-bench-engine-"))
    paths = local_engine.save_models(local, {KEY: local_engine.TINY_SERVED[KEY]}, root)
    port = _port()
    extra = ("--continuous-batching",) if args.continuous_batching else ()
    proc = local_engine.start(root, [str(paths[KEY])], port, extra_args=extra)
    try:
        engine = app.make_context(args.weights, "cpu", backends=[backend_from_settings([f"http://127.0.0.1:{port}"])])
        image = str(Path(__file__).resolve().parent.parent / "assets" / "cat.jpg")
        decoded = decode_image(image, gate=local.uploads)
        request, _ = ta.build_request(local.spec(KEY), decoded, "Describe the image.", max_new_tokens=args.tokens)
        _timed_stream(local, decoded, request), _timed_stream(engine, decoded, request)  # warm-up
        here, there = [], []
        for _ in range(args.rounds):
            here.append(_timed_stream(local, decoded, request))
            there.append(_timed_stream(engine, decoded, request))
        med = statistics.median
        print(f"weights={args.weights} model={KEY} tokens={args.tokens} rounds={args.rounds} "
              f"continuous batching={args.continuous_batching} (medians, ms)")
        for name, runs in (("in-process", here), ("engine", there)):
            print(f"{name:11s} first token {med(r[0] for r in runs):8.1f}   total {med(r[1] for r in runs):8.1f}"
                  f"   tokens {runs[-1][2]}")  # fmt: skip
        print(f"engine / in-process: first token {med(r[0] for r in there) / med(r[0] for r in here):.2f}, "
              f"total {med(r[1] for r in there) / med(r[1] for r in here):.2f}")

        rng = np.random.default_rng(0)
        crops = [rng.integers(0, 255, (160, 120, 3), dtype=np.uint8) for _ in range(args.crops)]
        boxes = np.array([[i * 120, 0, i * 120 + 120, 160] for i in range(args.crops)], dtype=np.float32)  # apart
        import supervision as sv

        det = sv.Detections(xyxy=boxes, confidence=np.linspace(0.9, 0.5, args.crops))
        canvas = np.concatenate(crops, axis=1)
        asker = wf._asker(engine, KEY, wf.BOOK_SCHEMA, Timings(), args.tokens)
        times = {}
        for workers in (1, 4, 1, 4):
            start = time.perf_counter()
            wf.run_pipeline(canvas, det, asker, wf.BOOK_SCHEMA, 0, merge_iou=1.0, workers=workers)
            times.setdefault(workers, []).append((time.perf_counter() - start) * 1000.0)
        serial, parallel = min(times[1]), min(times[4])
        print(f"workflow VLM stage, {args.crops} crops on the engine: one by one {serial:.0f} ms, "
              f"4 at once {parallel:.0f} ms, speed-up {serial / parallel:.2f}x")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
