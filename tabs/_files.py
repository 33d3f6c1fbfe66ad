"""Where a request's download files are written: one fresh private folder per request."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(tempfile.gettempdir()) / "vision-playground"
MAX_AGE_S = 3600.0  # folders older than this are removed when the next one is made


def request_dir(kind: str) -> Path:
    """A new folder for one request's files (random name, so users never share one).

    Files live under the system temp folder, which Gradio may serve; they are never kept in
    per-user module state. Folders of ``kind`` older than an hour are removed first.
    """
    root = ROOT / kind
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - MAX_AGE_S
    for child in root.iterdir():
        try:
            if child.is_dir() and child.stat().st_mtime < cutoff:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:  # another request removed it first
            continue
    return Path(tempfile.mkdtemp(dir=root))
