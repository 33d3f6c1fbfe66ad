"""The safe video decoder (PyAV): caps checked before decoding, frames at a working size on disk.

A clip is opened through the upload gate's checks (a regular file inside the allowed folders,
size-capped), probed (a video stream, its frame rate, duration, size and rotation), checked
against the caps below *before* frames are decoded, then decoded once: rotation metadata
applied, each frame downscaled so its long side is at most ``WORKING_LONG_SIDE`` (the scale is
kept, like images), and written to a `FrameStore` (a memory-mapped file), so a long clip costs
disk, not RAM. A clip longer than the caps can be trimmed to a frame range instead of refused.
Timestamps come from each frame's own ``pts`` (variable frame rate is kept, not assumed away).
Gradio-free.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_loaders.core.errors import InputError

MAX_VIDEO_MB = 100  # the official SAM 2 demo takes 70 MB
MAX_SECONDS = 300.0  # of the chosen range; a longer clip is trimmed by choosing a range
MAX_FRAMES = 9000  # 5 minutes at 30 fps
MAX_SIDE = 4096  # pixels of the original frame's long side
WORKING_LONG_SIDE = 640

NOT_A_VIDEO = "That file is not a video this app can read: try an MP4, MOV or WebM file."
NO_VIDEO_TRACK = "That file has no video track (is it audio only?)."
TOO_SHORT = "A video needs at least 2 frames to track anything."


@dataclass
class VideoInfo:
    """What the probe found (before decoding)."""

    width: int  # as displayed (rotation applied)
    height: int
    fps: float
    frames: int  # in the whole clip (counted or estimated from duration x fps)
    seconds: float
    rotation: int  # degrees counter-clockwise, as the file says
    codec: str
    variable_rate: bool = False


class FrameStore:
    """Decoded frames (T, h, w, 3) uint8 in a memory-mapped file: read one frame at a time.

    Pickles as its path and shape (a ZeroGPU worker reopens the same file), never as the pixels.
    """

    def __init__(self, path: Path, shape: tuple[int, int, int, int]) -> None:
        self.path = Path(path)
        self.shape = shape
        self._array: np.memmap | None = None

    @classmethod
    def create(cls, folder: Path, shape: tuple[int, int, int, int]) -> FrameStore:
        """An empty store of ``shape`` in ``folder``."""
        fd, name = tempfile.mkstemp(prefix="frames-", suffix=".u8", dir=folder)
        os.close(fd)
        store = cls(Path(name), shape)
        store._array = np.memmap(name, dtype=np.uint8, mode="w+", shape=shape)
        return store

    @property
    def array(self) -> np.memmap:
        """The frames (opened read-write on first use)."""
        if self._array is None:
            self._array = np.memmap(self.path, dtype=np.uint8, mode="r+", shape=self.shape)
        return self._array

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self.array[index])

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "shape": self.shape}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.shape, self._array = state["path"], tuple(state["shape"]), None


@dataclass
class DecodedVideo:
    """A decoded range of a clip.

    Attributes:
        frames: the frames at working size.
        times: each frame's time in seconds (from its pts).
        start: index of the first decoded frame in the clip.
        info: the probe's findings.
        scale: working size / displayed original size.
        notes: what was changed (downscaled, rotated, trimmed).
    """

    frames: FrameStore
    times: list[float]
    start: int
    info: VideoInfo
    scale: float
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the working frames."""
        return self.frames.shape[2], self.frames.shape[1]

    @property
    def original_size(self) -> tuple[int, int]:
        """(width, height) of the displayed original frames."""
        return self.info.width, self.info.height


def _open(data: bytes) -> Any:
    import io

    import av

    try:
        return av.open(io.BytesIO(data), metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        raise InputError(NOT_A_VIDEO) from None


def probe(data: bytes) -> VideoInfo:
    """Read what a clip is without decoding its frames.

    Raises:
        InputError: not a video, no video track, too large a frame, fewer than 2 frames.
    """
    import av

    container = _open(data)
    try:
        if not container.streams.video:
            raise InputError(NO_VIDEO_TRACK)
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise InputError(NOT_A_VIDEO)
        if max(width, height) > MAX_SIDE:
            raise InputError(f"The video is {width}×{height}; the most this app takes is {MAX_SIDE} pixels a side.")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        seconds = 0.0
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration:
            seconds = container.duration / 1e6
        frames = int(stream.frames or 0) or (int(round(seconds * fps)) if fps and seconds else 0)
        rotation = 0
        try:
            first = next(container.decode(video=0), None)
        except (av.FFmpegError, ValueError):
            first = None
        if first is None:
            raise InputError(TOO_SHORT if frames <= 1 else NOT_A_VIDEO)
        rotation = int(getattr(first, "rotation", 0) or 0)
        if rotation % 180:
            width, height = height, width
        guessed = float(stream.guessed_rate) if stream.guessed_rate else fps
        variable = bool(fps and guessed and abs(fps - guessed) > 0.01 * fps)
        return VideoInfo(width, height, fps or 25.0, frames, seconds, rotation, ctx.name or "?", variable)
    finally:
        container.close()


def frame_range(info: VideoInfo, start: Any = None, end: Any = None) -> tuple[int, int]:
    """[start, end) frame indices: the whole clip by default, checked against the caps.

    Raises:
        InputError: an empty or inverted range, or one longer than the caps.
    """
    total = max(info.frames, 1)
    try:
        lo = 0 if start in (None, "") else int(float(start))
        hi = total if end in (None, "") else int(float(end))
    except (TypeError, ValueError):
        raise InputError("The frame range must be two whole numbers.") from None
    lo, hi = max(0, lo), min(total, hi)
    if hi - lo < 2:
        raise InputError(TOO_SHORT if total < 2 else "Choose a frame range of at least 2 frames.")
    seconds = (hi - lo) / info.fps if info.fps else 0.0
    if hi - lo > MAX_FRAMES or seconds > MAX_SECONDS:
        most = min(MAX_FRAMES, int(MAX_SECONDS * info.fps))
        raise InputError(f"That range is {hi - lo:,} frames ({seconds:,.0f} s); the most is {most:,} frames "
                         f"({MAX_SECONDS:.0f} s): choose a shorter range.")  # fmt: skip
    return lo, hi


def _rotate(frame: np.ndarray, rotation: int) -> np.ndarray:
    k = int(round(rotation / 90)) % 4
    return np.ascontiguousarray(np.rot90(frame, k)) if k else frame


def decode(data: bytes, folder: Path, start: Any = None, end: Any = None,
           long_side: int = WORKING_LONG_SIDE) -> DecodedVideo:  # fmt: skip
    """Decode frames [start, end) of the clip ``data`` (the file's bytes) into a `FrameStore` in ``folder``.

    Raises:
        InputError: see `probe` and `frame_range`; a clip whose frames cannot be decoded.
    """
    import av
    from PIL import Image

    info = probe(data)
    lo, hi = frame_range(info, start, end)
    scale = min(1.0, long_side / max(info.width, info.height))
    w, h = max(2, round(info.width * scale)), max(2, round(info.height * scale))
    store = FrameStore.create(folder, (hi - lo, h, w, 3))
    times: list[float] = []
    container = _open(data)
    count = 0
    try:
        for index, frame in enumerate(container.decode(video=0)):
            if index < lo:
                continue
            if index >= hi:
                break
            rgb = _rotate(frame.to_ndarray(format="rgb24"), int(getattr(frame, "rotation", 0) or info.rotation))
            if rgb.shape[:2] != (h, w):
                rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))
            store.array[count] = rgb
            times.append(float(frame.time) if frame.time is not None else index / info.fps)
            count += 1
    except (av.FFmpegError, ValueError):
        if count < 2:
            raise InputError("The video could not be decoded (is the file complete?).") from None
    finally:
        container.close()
    if count < 2:
        raise InputError(TOO_SHORT if info.frames < 2 or lo == 0 else "The chosen range has fewer than 2 frames.")
    if count < hi - lo:  # fewer frames than the header said (truncated, or an estimate)
        store.array.flush()
        old = store
        store = FrameStore.create(folder, (count, h, w, 3))
        store.array[:] = old.array[:count]
        old.path.unlink(missing_ok=True)
    store.array.flush()
    notes = []
    if scale < 1.0:
        notes.append(f"frames tracked at {w}×{h} (original {info.width}×{info.height}); masks are exported at the original size")
    if info.rotation % 360:
        notes.append(f"rotated {info.rotation}° as the file says")
    if lo or hi < info.frames:
        notes.append(f"frames {lo}–{lo + count - 1} of {info.frames}")
    if info.variable_rate:
        notes.append("variable frame rate: each frame keeps its own time")
    if math.isclose(scale, 1.0):
        scale = 1.0
    return DecodedVideo(store, times, lo, info, scale, notes)
