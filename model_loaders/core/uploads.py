"""The one gate for every file a request names (images now, videos next).

Events run with ``preprocess=False``, and Gradio only checks payloads that carry its
file-data marker, so a hand-made request can name any path on the server. Every such
path passes this gate before a byte is read:

- it must resolve (symlinks followed, ``..`` removed) to a file inside one of the gate's roots:
  Gradio's upload folder and the shipped examples; a link that points out of them is refused;
- folders the app writes its own outputs to are not uploads and are refused too;
- it is opened without following a last-moment symlink and without blocking (a FIFO or a
  device never hangs the server), then checked on the open descriptor: a regular file, no
  larger than the cap, before anything is read.

Every refusal of a path outside the roots, a missing file, a folder, a device or a FIFO gives
the same short message, so a client cannot use the app to learn which paths exist.
No Gradio import here: the app passes the folders in (``app.make_context``).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_loaders.core.errors import InputError

log = logging.getLogger(__name__)

MAX_UPLOAD_MB = 20  # the launch's max_file_size is set from this too (one cap in one place)
UPLOAD_AGAIN = "The file could not be read; please upload it again."
NOT_A_FILE = "Send the image as an uploaded file."


class UploadRefused(InputError):
    """A request named a file that is not one of this server's uploads (message shown as is)."""


def _real(folder: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(folder))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def path_of(source: Any) -> str:
    """The path a request's file value names: a FileData dict (or a video's ``{"video": FileData}``),
    an object with ``.path``, or text.

    Raises:
        UploadRefused: for anything else (numbers, lists, a dict without a text ``path``).
    """
    if isinstance(source, dict) and isinstance(source.get("video"), dict):  # Gradio's VideoData
        source = source["video"]
    if isinstance(source, dict):
        source = source.get("path")
    elif hasattr(source, "path") and not isinstance(source, (str, os.PathLike)):
        source = source.path
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source or "\x00" in source:
        raise UploadRefused(UPLOAD_AGAIN)
    return source


@dataclass(frozen=True)
class UploadGate:
    """Which files a request may name, and how large they may be.

    Attributes:
        roots: real paths of the folders whose files are accepted (Gradio's upload folder,
            the shipped examples).
        excluded: real paths of folders under the roots that are refused (the app's outputs).
        max_bytes: the largest file accepted.
    """

    roots: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    max_bytes: int = MAX_UPLOAD_MB * 2**20

    @classmethod
    def for_folders(
        cls, roots: Iterable[str | os.PathLike[str]], excluded: Iterable[str | os.PathLike[str]] = (), **kw: Any
    ) -> UploadGate:
        """A gate accepting files under ``roots`` (resolved now) but not under ``excluded``."""
        return cls(tuple(_real(r) for r in roots), tuple(_real(e) for e in excluded), **kw)

    def allows(self, path: str) -> bool:
        """True when the resolved ``path`` lies in a root and not in an excluded folder."""
        real = _real(path)
        return any(_inside(real, r) for r in self.roots) and not any(_inside(real, e) for e in self.excluded)

    def read(self, source: Any, max_bytes: int | None = None) -> tuple[bytes, str]:
        """Read the file ``source`` names, if the gate lets it through.

        Args:
            source: a Gradio FileData dict, an object with ``.path``, or a path.
            max_bytes: this kind of file's own cap (videos take more than images), else the gate's.

        Returns:
            (content, file name).

        Raises:
            UploadRefused: the same message for a path outside the roots, a missing file, a
                folder, a FIFO or a device; "too large" for a file over the cap.
        """
        path = path_of(source)
        cap = max_bytes or self.max_bytes
        if not self.allows(path):
            log.warning("refused a file outside the upload folders: %r", path[:200])
            raise UploadRefused(UPLOAD_AGAIN)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(_real(path), flags)
        except OSError as exc:
            log.info("could not open upload %r: %s", path[:200], exc.strerror)
            raise UploadRefused(UPLOAD_AGAIN) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                log.warning("refused a non-regular file: %r", path[:200])
                raise UploadRefused(UPLOAD_AGAIN)
            if info.st_size > cap:
                raise UploadRefused(f"The file is too large ({info.st_size / 2**20:.0f} MB; max {cap // 2**20} MB).")
            chunks, left = [], cap + 1  # read at most one byte past the cap: the file may have grown
            while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
                chunks.append(chunk)
                left -= len(chunk)
            data = b"".join(chunks)
        finally:
            os.close(fd)
        if len(data) > cap:
            raise UploadRefused(f"The file is too large (max {cap // 2**20} MB).")
        return data, Path(path).name
