"""Dynamic batching: throughput of concurrent Depth API users, with batching vs without.

Starts the app twice in a child process (``random`` weights at real size), once with
``--batch-size 1`` and once with ``--batch-size N``; each time ``--users`` threads (default 8)
each make ``--calls`` ``/depth`` calls through ``gradio_client`` with the same 640×480 photo,
all at once. Prints calls per second for each, their ratio (the goal on a GPU: at least 3x;
on a CPU, where a pass on 8 images costs about 8 single passes, little), and how many forward
passes served the calls (from ``/health``).

Usage: .venv/bin/python benchmarks/batching.py [--device cpu] [--users 8] [--calls 3] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _photo(folder: Path) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 640)[None, :, None].repeat(480, 0).repeat(3, 2)
    path = folder / "photo.jpg"
    Image.fromarray((ramp + rng.integers(0, 30, ramp.shape)).clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def measure(batch: int, args: argparse.Namespace, photo: Path) -> dict[str, float]:
    """Serve with ``--batch-size batch``; ``users`` threads x ``calls`` /depth calls at once."""
    from gradio_client import Client, handle_file

    port = _port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "app.py", "--weights", "random", "--device", args.device, "--port", str(port),
           "--batch-size", str(batch), "--preload", args.model, "--queue-size", "64"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        clients = [Client(url, verbose=False) for _ in range(args.users)]
        one = (handle_file(str(photo)), args.model, "Spectral_r", False, 60)
        clients[0].predict(*one, api_name="/depth")  # warm-up: first-call costs are not batching's
        latencies: list[float] = []
        lock = threading.Lock()
        start_line = threading.Barrier(args.users)

        def user(client: Client) -> None:
            start_line.wait()
            for _ in range(args.calls):
                t = time.perf_counter()
                client.predict(*one, api_name="/depth")
                with lock:
                    latencies.append(time.perf_counter() - t)

        threads = [threading.Thread(target=user, args=(c,)) for c in clients]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        health = httpx.get(url + "/health", timeout=10).json()
        passes = health.get("batching", {}).get(args.model, {}).get("passes")
        for c in clients:
            c.close()
        n = args.users * args.calls
        return {"calls_per_s": n / wall, "p50_s": statistics.median(latencies), "wall_s": wall, "calls": n,
                "passes": float(passes) if passes is not None else float("nan")}  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="depth-anything-v2-small")
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photo = _photo(Path(tmp))
        without = measure(1, args, photo)
        with_ = measure(args.batch, args, photo)
    print(f"{args.users} concurrent /depth users x {args.calls} calls, {args.model}, random weights, {args.device}")
    print(f"{'':22}{'calls/s':>9}{'p50 s':>8}{'passes':>8}")
    for name, r in (("without batching", without), (f"batch up to {args.batch}", with_)):
        passes = "–" if r["passes"] != r["passes"] else f"{r['passes']:.0f}"
        print(f"{name:22}{r['calls_per_s']:9.2f}{r['p50_s']:8.2f}{passes:>8}")
    print(f"throughput with / without batching: {with_['calls_per_s'] / without['calls_per_s']:.2f}x")


if __name__ == "__main__":
    main()
