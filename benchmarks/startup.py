"""Cold start: seconds from `python app.py` to a served page, no model loaded (median of N).

Usage: .venv/bin/python benchmarks/startup.py [--runs 5] [--weights tiny]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_start(weights: str) -> float:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--weights", weights, "--device", "cpu", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while time.perf_counter() - start < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    if resp.status == 200 and b"Vision Playground" in resp.read():
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("app did not serve within 120 s")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--weights", default="tiny")
    args = parser.parse_args()
    times = [one_start(args.weights) for _ in range(args.runs)]
    print(f"cold start to served page ({args.weights} weights, no model loaded), {args.runs} runs:")
    print("  runs: " + ", ".join(f"{t:.2f}s" for t in times))
    print(f"  median: {statistics.median(times):.2f}s  min: {min(times):.2f}s  max: {max(times):.2f}s")


if __name__ == "__main__":
    main()
