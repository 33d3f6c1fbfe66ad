"""Check the Space install path: Python 3.12, requirements.txt alone, the environment a Space sets.

    python tools/check_space.py                    # venv in .space-check/, reused while requirements.txt is unchanged
    python tools/check_space.py --python /path/to/python3.12 --venv /tmp/space-venv

What it does, as Hugging Face Spaces does it:
1. copies exactly what `tools/deploy_space.py` would upload into a fresh folder;
2. creates a Python 3.12 virtual environment and runs ``pip install -r requirements.txt``
   there, nothing else (torch comes from PyPI, or from a local wheel folder: ``PIP_FIND_LINKS``);
3. starts ``python app.py`` in that folder with ``SYSTEM=spaces``, ``SPACE_ID``,
   ``GRADIO_SERVER_NAME=0.0.0.0`` (and ``VP_WEIGHTS=tiny``: no model hub here);
4. waits for ``/health``, loads the page, and runs one Depth call through ``gradio_client``
   from the Space's own environment.
It prints one line per step with its time and exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy_space import ROOT, stage  # noqa: E402

CLIENT_CALL = """
import json, sys
from gradio_client import Client, handle_file
client = Client(sys.argv[1], verbose=False)
files, stats, timing = client.predict(handle_file(sys.argv[2]), "depth-anything-v2-small", "Spectral_r", False, 60,
                                      api_name="/depth")
print(json.dumps({"files": len(files), "timing": timing}))
"""


def find_python312() -> str:
    """A Python 3.12 interpreter: ``VP_SPACE_PYTHON``, pyenv's 3.12, or ``python3.12`` on PATH."""
    import glob

    candidates = [os.environ.get("VP_SPACE_PYTHON"),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")), reverse=True),
                  shutil.which("python3.12"), "/usr/bin/python3.12"]  # fmt: skip
    for candidate in filter(None, candidates):
        env = {**os.environ, "PYENV_VERSION": "3.12"}  # for pyenv's shim; a real binary ignores it
        try:
            probe = subprocess.run([candidate, "-c", "import sys; print(sys.executable, sys.version_info[:2])"],
                                   capture_output=True, text=True, env=env, timeout=30)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0 and "(3, 12)" in probe.stdout:
            return probe.stdout.split()[0]
    raise SystemExit("no Python 3.12 found: set VP_SPACE_PYTHON to one")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def step(name: str, start: float) -> float:
    now = time.perf_counter()
    print(f"{name}: {now - start:.1f} s", flush=True)
    return now


def install(python: str, venv: Path, requirements: Path) -> Path:
    """The venv with requirements.txt installed (reused when it was made from the same file)."""
    digest = hashlib.sha256(requirements.read_bytes() + python.encode()).hexdigest()
    stamp = venv / ".requirements-sha256"
    pip = venv / "bin" / "pip"
    if stamp.exists() and stamp.read_text() == digest and pip.exists():
        print(f"venv {venv} already has this requirements.txt")
        return venv / "bin" / "python"
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(pip), "install", "--quiet", "--disable-pip-version-check", "-r", str(requirements)],
                   check=True)  # fmt: skip
    stamp.write_text(digest)
    return venv / "bin" / "python"


def get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return resp.status, resp.read().decode("utf-8", "replace")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", help="a Python 3.12 interpreter (default: found)")
    parser.add_argument("--venv", type=Path, default=ROOT / ".space-check" / "venv")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the app to answer")
    args = parser.parse_args(argv)
    python = args.python or find_python312()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vp-space-check-") as tmp:
        space = Path(tmp) / "space"
        files = stage(ROOT, space)
        t = step(f"staged {len(files)} files (the upload)", t0)
        space_python = install(python, args.venv, space / "requirements.txt")
        versions = subprocess.run([str(space_python), "-c", "import sys, torch, gradio, transformers; print("
                                   "sys.version.split()[0], torch.__version__, gradio.__version__, "
                                   "transformers.__version__)"], capture_output=True, text=True, check=True)  # fmt: skip
        t = step(f"installed from requirements.txt alone (python, torch, gradio, transformers: "
                 f"{versions.stdout.strip()})", t)  # fmt: skip
        port = free_port()
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("VP_", "GRADIO_", "PYTEST", "VIRTUAL_ENV"))
        }
        env.update(SYSTEM="spaces", SPACE_ID="local/vision-playground", SPACE_HOST="localhost",
                   GRADIO_SERVER_NAME="0.0.0.0", GRADIO_SERVER_PORT=str(port), VP_WEIGHTS="tiny",
                   HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")  # fmt: skip
        log = open(Path(tmp) / "app.log", "w+")  # noqa: SIM115 - read after the process ends
        proc = subprocess.Popen([str(space_python), "app.py"], cwd=space, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + args.timeout
            health = None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    health = json.loads(get(url + "/health")[1])
                    break
                except OSError:
                    time.sleep(1.0)
            if health is None:
                log.seek(0)
                print(log.read()[-4000:], file=sys.stderr)
                raise SystemExit("the app never answered /health")
            t = step(f"serving (device {health['device']}, weights {health['weights']}, "
                     f"model budget {health['memory_mb']['budget']:,} MB)", t)  # fmt: skip
            status, page = get(url + "/")
            if status != 200 or "Vision Playground" not in page:
                raise SystemExit(f"the page did not load: HTTP {status}")
            t = step("page loaded", t)
            call = subprocess.run([str(space_python), "-c", CLIENT_CALL, url, str(space / "assets" / "cat.jpg")],
                                  capture_output=True, text=True, timeout=args.timeout)  # fmt: skip
            if call.returncode != 0:
                raise SystemExit(f"the Depth call failed:\n{call.stderr[-2000:]}")
            result = json.loads(call.stdout.strip().splitlines()[-1])
            if result["files"] < 3:
                raise SystemExit(f"the Depth call returned {result}")
            step("a Depth call through gradio_client answered", t)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"Space install check passed in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
