"""Where a request's download files are written: one fresh private folder per request, in a
capped space that is cleaned oldest-first.

The app points the space at a folder inside Gradio's upload/cache folder, so Gradio serves the
files where they were written instead of copying them (each file is written once). The space
has a total byte cap: before a new folder is made, folders older than ``max_age_s`` go, then
the oldest ones until the rest fit the cap. Folders are created ``0700`` (files inside are only
reachable through the app, never by other local users).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_CAP_MB = 2048
DEFAULT_MAX_AGE_S = 3600.0


def _tree_bytes(path: Path) -> int:
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


@dataclass
class OutputSpace:
    """A capped folder of per-request output folders.

    Attributes:
        root: the folder that holds every request's folder (``root/<kind>/<random>/``).
        cap_bytes: the most all request folders together may hold.
        max_age_s: folders older than this are removed whatever the total.
    """

    root: Path
    cap_bytes: int = DEFAULT_CAP_MB * 2**20
    max_age_s: float = DEFAULT_MAX_AGE_S
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def new_dir(self, kind: str) -> Path:
        """A new private folder for one request's files (a random name, so users never share one)."""
        with self._lock:
            self.prune()
            parent = self.root / kind
            parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            return Path(tempfile.mkdtemp(dir=parent))  # mkdtemp creates it 0700

    def folders(self) -> list[tuple[float, int, Path]]:
        """(modified time, bytes, path) of every request folder, oldest first."""
        out = []
        if not self.root.is_dir():
            return out
        for kind in self.root.iterdir():
            if not kind.is_dir() or kind.is_symlink():
                continue
            for folder in kind.iterdir():
                try:
                    mtime = folder.stat(follow_symlinks=False).st_mtime
                except OSError:
                    continue
                out.append((mtime, _tree_bytes(folder), folder))
        return sorted(out)

    def used_bytes(self) -> int:
        """Bytes held by every request folder now."""
        return sum(size for _, size, _ in self.folders())

    def prune(self) -> int:
        """Remove expired folders, then the oldest until the rest fit the cap; returns bytes freed."""
        folders = self.folders()
        total = sum(size for _, size, _ in folders)
        cutoff = time.time() - self.max_age_s
        freed = 0
        for mtime, size, folder in folders:
            if mtime >= cutoff and total <= self.cap_bytes:
                break
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
            freed += size
        if freed:
            log.info("output space: removed %.1f MB of old request files (%.1f MB kept, cap %.0f MB)",
                     freed / 2**20, total / 2**20, self.cap_bytes / 2**20)  # fmt: skip
        return freed
