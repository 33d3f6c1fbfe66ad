"""Shared fixtures. Everything runs offline on CPU: a test that would download must fail."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Set before gradio / huggingface_hub / ultralytics are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "False"
# An empty Hub cache: hub-mode tests must see "not cached", whatever this machine downloaded before.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="vp-hf-home-")
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="vp-gradio-"))
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="vp-yolo-"))

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ctx() -> Any:
    """The app context with tiny models on CPU, shared by the session (its cache too)."""
    import app

    return app.make_context("tiny", "cpu")


def _upload_folder() -> Path:
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture()
def upload_path() -> Path:
    """A fresh folder inside Gradio's upload folder: files written here are "uploads" that the
    app's upload gate accepts (as files Gradio received through its upload route are)."""
    return Path(tempfile.mkdtemp(dir=_upload_folder()))


@pytest.fixture(scope="session")
def upload_path_session() -> Path:
    """Like `upload_path`, shared by a whole test session."""
    return Path(tempfile.mkdtemp(dir=_upload_folder()))


@pytest.fixture(scope="session")
def gate(ctx: Any) -> Any:
    """The app's upload gate (Gradio's upload folder and the shipped examples)."""
    return ctx.uploads


@pytest.fixture(scope="session")
def served(ctx: Any) -> Iterator[tuple[Any, str]]:
    """The whole app launched in-process with the safe launch options: (demo, url)."""
    import app

    demo = app.build_app(ctx)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options(port=free_port(), ctx=ctx, demo=demo))
    try:
        yield demo, url.rstrip("/")
    finally:
        demo.close()


@pytest.fixture(scope="session")
def app_url(served: tuple[Any, str]) -> str:
    """Base URL of the served app."""
    return served[1]


@pytest.fixture()
def client(app_url: str) -> Iterator[Any]:
    """A fresh gradio_client session against the served app."""
    from gradio_client import Client

    c = Client(app_url, verbose=False)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (its own browser download does not work here)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser page (own context, so no state leaks between tests)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = context.new_page()
    p.set_default_timeout(60_000)
    try:
        yield p
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for screenshots and other test artifacts."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
