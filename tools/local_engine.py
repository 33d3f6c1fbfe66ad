"""A real OpenAI-compatible server on this machine, for tests and benchmarks: `transformers serve`
serving the app's tiny (or random) VLMs, saved where it loads them.

    python tools/local_engine.py --port 8000     # serve the tiny Qwen2.5-VL and Qwen3-VL until Ctrl-C
    python app.py --weights tiny --vlm-endpoint http://127.0.0.1:8000

Models are saved under the names an engine serves them by (``Qwen/Qwen2.5-VL-3B-Instruct``), so
the app recognises them as registry models. Needs ``transformers[serving]`` (the test extra).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TINY_SERVED = {"qwen2.5-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct", "qwen3-vl-2b": "Qwen/Qwen3-VL-2B-Instruct"}


def save_models(ctx: Any, served: Mapping[str, str], root: Path) -> dict[str, Path]:
    """Save each registry model of ``ctx`` (its weights mode) under ``root / <served name>``."""
    paths = {}
    for key, name in served.items():
        with ctx.use(key) as bundle:
            out = root / name
            bundle.model.save_pretrained(out)
            bundle.processor.save_pretrained(out)
            paths[key] = out
    return paths


def start(root: Path, models: list[str], port: int, force: str | None = None, timeout_s: float = 120.0,
          extra_args: tuple[str, ...] = ()) -> subprocess.Popen:  # fmt: skip
    """Start `transformers serve` on 127.0.0.1:``port`` and load ``models`` (folders) into it.

    Loaded models are what its ``/v1/models`` lists. ``force`` pins the server to one model;
    ``extra_args`` go to `transformers serve` (e.g. ``--continuous-batching``).

    Raises:
        RuntimeError: it did not come up, or a model did not load.
    """
    import httpx

    exe = Path(sys.executable).with_name("transformers")
    cmd = [str(exe), "serve", *([force] if force else []), "--host", "127.0.0.1", "--port", str(port),
           "--device", "cpu", "--model-timeout", "100000", *extra_args]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(root / "hf-home")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("transformers serve did not start")
        time.sleep(0.3)
    for path in models:
        with httpx.stream("POST", f"{url}/load_model", json={"model": path}, timeout=timeout_s) as r:
            for line in r.iter_lines():
                if '"error"' in line:
                    proc.kill()
                    raise RuntimeError(f"{path} did not load: {line[:200]}")
                if '"ready"' in line:
                    break
    return proc


def main() -> None:
    """Serve the tiny VLMs until interrupted."""
    import tempfile

    import app

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--weights", choices=("tiny", "random"), default="tiny")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = Path(tempfile.mkdtemp(prefix="vp-engine-"))
    paths = save_models(app.make_context(args.weights, "cpu"), TINY_SERVED, root)
    proc = start(root, [str(p) for p in paths.values()], args.port)
    print(f"serving {', '.join(TINY_SERVED.values())} on http://127.0.0.1:{args.port}/v1 (Ctrl-C stops)")
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()


if __name__ == "__main__":
    main()
