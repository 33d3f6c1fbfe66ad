"""Make assets/coffee-pan.mp4, the Track tab's example clip: a slow camera pan and zoom over
`assets/coffee.jpg` (CC0), so the cup moves and grows in the frame. H.264, 12 fps, 3 s.

    .venv/bin/python tools/make_example_video.py
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "assets" / "coffee.jpg"
TARGET = ROOT / "assets" / "coffee-pan.mp4"
FPS, FRAMES, SIZE = 12, 36, (384, 256)


def main() -> None:
    photo = Image.open(SOURCE).convert("RGB")
    pw, ph = photo.size
    with av.open(str(TARGET), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.options = {"crf": "26", "preset": "slow", "movflags": "+faststart"}
        for t in range(FRAMES):
            s = t / (FRAMES - 1)
            zoom = 1.0 - 0.25 * s  # the window shrinks: the cup grows
            w, h = pw * 0.8 * zoom, ph * 0.8 * zoom
            x = (pw - w) * (0.1 + 0.8 * s)  # and slides: the cup moves across the frame
            y = (ph - h) * 0.5
            frame = photo.crop((round(x), round(y), round(x + w), round(y + h))).resize(SIZE, Image.Resampling.LANCZOS)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    print(f"{TARGET} ({TARGET.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
