"""Hugging Face Spaces: what is uploaded, that it installs from requirements.txt alone on Python
3.12 and serves with the environment a Space sets, and what a 16 GB CPU Space offers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import app
from model_loaders.core.registry import DEFAULTS, REGISTRY, ZEROGPU_PRELOAD

ROOT = Path(__file__).resolve().parent.parent


def test_deploy_dry_run_sends_the_app_and_nothing_else() -> None:
    out = subprocess.run([sys.executable, "tools/deploy_space.py", "--repo", "me/vision-playground", "--dry-run"],
                         cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    files = set(out.stdout.split())
    needed = {"app.py", "requirements.txt", "README.md", "LICENSE", "model_loaders/core/registry.py",
              "tabs/ask.py", "tabs/style.css", "assets/cat.jpg", "assets/ATTRIBUTION.md"}  # fmt: skip
    assert needed <= files, needed - files
    leaked = [f for f in files if f.split("/")[0] in ("tests", "benchmarks", ".venv", ".ci", "test-artifacts",
                                                       ".space-check", "tools", "docs") or "__pycache__" in f]  # fmt: skip
    assert not leaked, leaked
    # Every Python module the app imports is in the upload.
    modules = {p.relative_to(ROOT).as_posix() for d in ("model_loaders", "tabs") for p in (ROOT / d).rglob("*.py")}
    assert modules <= files, modules - files


def test_the_space_installs_from_requirements_alone_and_serves() -> None:
    """A fresh Python 3.12 venv, `pip install -r requirements.txt`, `python app.py` with SYSTEM=spaces:
    /health, the page and a Depth call through gradio_client (several GB the first time)."""
    venv = os.environ.get("VP_SPACE_VENV", str(ROOT / ".space-check" / "venv"))
    result = subprocess.run([sys.executable, "tools/check_space.py", "--venv", venv], cwd=ROOT, capture_output=True,
                            text=True, timeout=1500)  # fmt: skip
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "3.12" in result.stdout and "Space install check passed" in result.stdout


def test_a_16_gb_cpu_space_offers_only_what_fits() -> None:
    """CPU basic (16 GB; the cache gets 60 % of it): every picker offers and preselects only models
    that run there; 7B+ VLMs are "too large here"."""
    import gradio as gr

    ctx = app.make_context("random", "cpu", budget_bytes=int(16 * 2**30 * 0.6))
    for key in ("qwen2.5-vl-7b", "llama-3.2-11b-vision-instruct", "qwen2.5-vl-72b"):
        avail = ctx.availability(REGISTRY[key])
        assert not avail.ok and avail.kind == "too_large", (key, avail)
    demo = app.build_app(ctx)
    pickers = [b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.choices
               and all(value in REGISTRY for _, value in b.choices)]  # fmt: skip
    assert len(pickers) >= 7  # Segment, Depth, Detect, Ask, Compare, Workflow's detector and VLM
    for picker in pickers:
        offered = [value for _, value in picker.choices]
        chosen = picker.value if isinstance(picker.value, list) else [picker.value]
        assert set(chosen) <= set(offered), picker.elem_id
        for key in offered:
            assert ctx.availability(ctx.spec(key)).ok, (picker.elem_id, key)
    preselected = {p.elem_id: p.value for p in pickers}
    print(preselected)
    assert preselected["segment-model"] == DEFAULTS["segment"] and preselected["depth-model"] == DEFAULTS["depth"]


def test_zerogpu_preload_set_fits_a_large_slice_and_is_used(monkeypatch: Any) -> None:
    ctx = app.make_context("random", "cpu")
    total = sum(REGISTRY[k].estimated_bytes("bfloat16") or 0 for k in ZEROGPU_PRELOAD)
    assert set(DEFAULTS.values()) <= set(ZEROGPU_PRELOAD) and total < 0.25 * 48e9
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert app.preload_keys("") == ",".join(ZEROGPU_PRELOAD)
    assert app.preload_keys("sam2.1-hiera-large") == "sam2.1-hiera-large"  # VP_PRELOAD wins
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert app.preload_keys("") == ""  # nothing preloaded elsewhere unless asked
    app.preload(ctx, "sam2.1-hiera-tiny, no-such-model")
    assert ctx.options["preloaded"] == frozenset({"sam2.1-hiera-tiny"})
