"""The server under load: is a full queue refused at once, and do pages stay fast while models run?

Starts the app in a child process (``random`` weights at real size, CPU), uploads one image, then:

1. one caller: N ``/depth`` calls in a row (the per-call baseline);
2. idle page latency: ``GET /`` and ``GET /health`` with nothing running;
3. load: ``--callers`` concurrent callers (default 24, more than the queue holds) each make one
   ``/depth`` call through the raw queue protocol, while a prober fetches ``/`` and ``/health``
   every 100 ms.

Prints p50/p95 of a completed call under load vs one caller, how long a "queue is full"
refusal took, and page / health latency idle vs under load (the goal: a refusal in well under
a second, pages within a few times their idle latency).

Usage: .venv/bin/python benchmarks/load.py [--callers 24] [--queue-size 16] [--model depth-anything-v2-small]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def upload(url: str) -> dict[str, object]:
    """Upload a 640×480 PNG through Gradio's upload route; returns the FileData to send."""
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(buf, "PNG")
    resp = httpx.post(f"{url}/gradio_api/upload", files={"files": ("load.png", buf.getvalue(), "image/png")}, timeout=60)
    resp.raise_for_status()
    return {"path": resp.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": "load.png"}


# One client for every caller: a new httpx client per call costs ~20 ms of client CPU (its SSL
# context), which 24 threads would pay under the GIL and count as server latency.
HTTP = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=100, max_keepalive_connections=100))


def depth_call(url: str, fn_index: int, image: dict[str, object], model: str) -> tuple[str, float, float]:
    """One ``/depth`` call: (outcome, seconds until the join answered, seconds until done)."""
    session = uuid.uuid4().hex[:12]
    body = {"data": [image, model, "Spectral_r", False, 60], "fn_index": fn_index, "session_hash": session}
    start = time.perf_counter()
    resp = HTTP.post(f"{url}/gradio_api/queue/join", json=body)
    joined = time.perf_counter() - start
    if resp.status_code != 200:
        return ("full" if resp.status_code == 503 else f"http {resp.status_code}"), joined, joined
    with HTTP.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return ("ok" if msg.get("success") else "error"), joined, time.perf_counter() - start
    return "lost", joined, time.perf_counter() - start


def join_only(url: str, fn_index: int, image: dict[str, object], model: str) -> tuple[int, float]:
    """Join the queue without waiting for the result: (HTTP status, seconds to the answer)."""
    body = {"data": [image, model, "Spectral_r", False, 60], "fn_index": fn_index, "session_hash": uuid.uuid4().hex[:12]}
    start = time.perf_counter()
    status = HTTP.post(f"{url}/gradio_api/queue/join", json=body).status_code
    return status, time.perf_counter() - start


def main() -> None:
    """Start the app, measure one caller, then many; print the ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--callers", type=int, default=24)
    p.add_argument("--queue-size", type=int, default=16)
    p.add_argument("--single", type=int, default=4, help="calls in a row for the one-caller baseline")
    p.add_argument("--model", default="depth-anything-v2-small")
    args = p.parse_args()

    port = _port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--weights", "random", "--device", "cpu", "--port", str(port),
         "--queue-size", str(args.queue_size), "--preload", args.model],  # fmt: skip
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # fmt: skip
    )
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        config = httpx.get(url + "/config", timeout=30).json()
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "depth")
        image = upload(url)

        depth_call(url, fn_index, image, args.model)  # warm-up
        single = [depth_call(url, fn_index, image, args.model)[2] for _ in range(args.single)]

        def probe(path: str, n: int = 10) -> list[float]:
            out = []
            for _ in range(n):
                start = time.perf_counter()
                HTTP.get(url + path)
                out.append(time.perf_counter() - start)
            return out

        idle_page, idle_health = probe("/"), probe("/health")

        results: list[tuple[str, float, float]] = []
        loaded_page: list[float] = []
        loaded_health: list[float] = []
        stop = threading.Event()

        def prober() -> None:
            while not stop.is_set():
                loaded_page.extend(probe("/", 1))
                loaded_health.extend(probe("/health", 1))
                time.sleep(0.1)

        def caller() -> None:
            results.append(depth_call(url, fn_index, image, args.model))

        watcher = threading.Thread(target=prober)
        watcher.start()
        callers = [threading.Thread(target=caller) for _ in range(args.callers)]
        for t in callers:
            t.start()
        # Once the burst has filled the queue: late arrivals, one at a time (what a user arriving
        # at a full queue waits for the refusal, without the burst's own client-side contention).
        time.sleep(3.0)
        late = []
        for _ in range(5):
            late.append(join_only(url, fn_index, image, args.model))
            time.sleep(0.2)
        for t in callers:
            t.join()
        stop.set()
        watcher.join()
    finally:
        server.terminate()
        server.wait(30)

    done = [total for outcome, _, total in results if outcome == "ok"]
    accepted = [joined for outcome, joined, _ in results if outcome == "ok"]
    refused = [joined for outcome, joined, _ in results if outcome == "full"]
    other = [outcome for outcome, _, _ in results if outcome not in ("ok", "full")]
    one = statistics.median(single)
    print(f"machine: {os.cpu_count()} CPUs · weights=random · model {args.model} · queue {args.queue_size} · "
          f"{args.callers} concurrent callers")  # fmt: skip
    print(f"one caller: median {one * 1000:.0f} ms per call")
    print(f"under load: {len(done)} completed, p50 {_pct(done, 0.5) * 1000:.0f} ms / p95 {_pct(done, 0.95) * 1000:.0f} ms "
          f"(p50 / one caller: {_pct(done, 0.5) / one:.1f}x; waiting in the queue included)")  # fmt: skip
    print(f"queue full: {len(refused)} refused, p50 {_pct(refused, 0.5) * 1000:.0f} ms / "
          f"p95 {_pct(refused, 0.95) * 1000:.0f} ms to the refusal" + (f"; other: {other}" if other else ""))  # fmt: skip
    late_refused = [seconds for status, seconds in late if status == 503]
    print(f"late arrival at a full queue: {len(late_refused)}/5 refused, p50 {_pct(late_refused, 0.5) * 1000:.0f} ms / "
          f"max {max(late_refused, default=float('nan')) * 1000:.0f} ms to the refusal")  # fmt: skip
    print(f"joining the queue (accepted calls): p50 {_pct(accepted, 0.5) * 1000:.0f} ms / p95 {_pct(accepted, 0.95) * 1000:.0f} ms")
    for name, idle, loaded in (("page GET /", idle_page, loaded_page), ("GET /health", idle_health, loaded_health)):
        print(f"{name}: idle p50 {_pct(idle, 0.5) * 1000:.0f} ms; under load p50 {_pct(loaded, 0.5) * 1000:.0f} ms / "
              f"p95 {_pct(loaded, 0.95) * 1000:.0f} ms (p95 / idle p50: {_pct(loaded, 0.95) / _pct(idle, 0.5):.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
