"""A clip already decoded, for the video benchmarks: a red square moving across grey.

No codec is involved (the benchmarks measure tracking, not decoding), so they need neither PyAV
nor a video file: the frames go straight into a `core.video.FrameStore`, as `core.video.decode`
would leave them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def moving_square(frames: int, folder: Path, size: tuple[int, int] = (320, 240), rows: tuple[int, int] = (90, 150),
                  width: int = 50, step: int = 3, fps: float = 25.0) -> Any:  # fmt: skip
    """A `DecodedVideo` of ``frames`` frames of ``size`` = (w, h): the square spans ``rows`` and
    starts at x = 20, moving ``step`` pixels a frame (wrapping before the right edge)."""
    import numpy as np

    from model_loaders.core.video import DecodedVideo, FrameStore, VideoInfo

    w, h = size
    store = FrameStore.create(folder, (frames, h, w, 3))
    for t in range(frames):
        frame = np.full((h, w, 3), 90, np.uint8)
        x = 20 + (step * t) % (w - width - 30)
        frame[rows[0] : rows[1], x : x + width] = (220, 40, 40)
        store.array[t] = frame
    store.array.flush()
    return DecodedVideo(store, [t / fps for t in range(frames)], 0, VideoInfo(w, h, fps, frames, frames / fps, 0, "raw"), 1.0)
