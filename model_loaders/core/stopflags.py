"""Stop requests that reach a running generation even when it runs in another process.

Ask's Stop button is a separate, quick event. In one process it could set a ``threading.Event``
the stream polls; on a ZeroGPU Space the stream runs in a forked GPU worker, where an event set
in the web server's process is never seen. A stop request is therefore also a file in a private
folder, named after the browser session: the generation polls ``is_set()`` once per token (a
``stat``, microseconds), in whichever process it runs. Gradio-free.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from pathlib import Path
from typing import Any


class StopFlag:
    """A stop flag with the ``threading.Event`` methods generation uses (``is_set``, ``set``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.Event()

    def is_set(self) -> bool:
        """True once this process set it or another process requested a stop for the session."""
        return self._local.is_set() or self.path.exists()

    def set(self) -> None:
        """Stop (this process: a closed stream, a time limit)."""
        self._local.set()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "set": self._local.is_set()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._local = threading.Event()
        if state["set"]:
            self._local.set()


class StopFlags:
    """Per-session stop requests, in a private folder made once (before any worker forks)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder or tempfile.mkdtemp(prefix="vp-stop-"))
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, session: str) -> Path:
        return self.folder / hashlib.sha256(session.encode("utf-8", "replace")).hexdigest()[:32]

    def start(self, session: str | None) -> StopFlag:
        """The flag of a generation starting now for ``session`` (an earlier request is forgotten).

        Without a session (an API call) nobody can press Stop: the flag is this process's only.
        """
        if not session:
            return StopFlag(self.folder / "no-session")  # never created: only ``set()`` stops it
        flag = StopFlag(self._path(session))
        flag.path.unlink(missing_ok=True)
        return flag

    def request(self, session: str) -> None:
        """Ask the session's running generation to stop at its next token."""
        self._path(session).touch(mode=0o600)

    def finish(self, flag: StopFlag) -> None:
        """The generation ended: set its flag and forget the request."""
        flag.set()
        flag.path.unlink(missing_ok=True)
