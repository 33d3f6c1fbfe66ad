"""Turn a float depth map into what people download and look at. No Gradio here.

- colourised RGB (several colormaps, near/far invertible, flat maps handled);
- a 16-bit PNG that uses the full 0–65535 range, with ``scale`` and ``offset`` stored both in
  a JSON sidecar and in the PNG's text chunks so ``value = offset + scale * pixel`` recovers
  the float map (the official demo truncates instead, and users read it as a black image);
- the float32 map as ``.npy``;
- a downsampled point grid (metric maps are unprojected with an assumed field of view;
  relative maps become a height field), written as a binary ``.ply`` and shown as a plotly
  3D figure.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from model_loaders.core.results import DepthKind

log = logging.getLogger(__name__)

COLORMAPS: tuple[str, ...] = ("Spectral_r", "inferno", "turbo", "viridis", "magma", "plasma", "cividis", "gray")
DEFAULT_COLORMAP = "Spectral_r"
PLY_MAX_SIDE = 256  # point cloud / .ply grid: long side in points
PLOT_MAX_SIDE = 128  # the in-browser 3D view stays responsive at ~12k points
DEFAULT_FOV_DEG = 60.0
FOV_RANGE = (20.0, 150.0)
PNG16_MAX = 65535

KIND_TEXT: dict[str, str] = {
    "relative_inverse": "relative inverse depth (disparity): larger is nearer, unitless",
    "metric": "metric depth in metres: distance from the camera, larger is farther",
}


@functools.cache
def colormap_lut(name: str) -> np.ndarray:
    """A (256, 3) uint8 RGB lookup table for ``name`` (one of `COLORMAPS`), read-only.

    Raises:
        ValueError: for an unknown colormap name.
    """
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}")
    ramp = np.arange(256, dtype=np.uint8)
    if name == "gray":
        lut = np.repeat(ramp[:, None], 3, axis=1)
    elif name == "Spectral_r":
        # ColorBrewer Spectral (11 classes), reversed and linearly interpolated, as matplotlib does.
        from plotly.colors import diverging, unlabel_rgb

        anchors = np.array([unlabel_rgb(c) for c in diverging.Spectral], dtype=np.float64)[::-1]
        pos = np.linspace(0.0, 255.0, len(anchors))
        lut = np.stack([np.interp(ramp, pos, anchors[:, ch]) for ch in range(3)], axis=1)
        lut = np.clip(np.rint(lut), 0, 255).astype(np.uint8)
    else:
        import cv2

        code = getattr(cv2, f"COLORMAP_{name.upper()}")
        lut = cv2.applyColorMap(ramp.reshape(256, 1), code).reshape(256, 3)[:, ::-1]
    lut = np.ascontiguousarray(lut, dtype=np.uint8)
    lut.setflags(write=False)
    return lut


def value_range(depth: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values; (0, 0) when there are none."""
    finite = depth[np.isfinite(depth)]
    if finite.size == 0:
        return 0.0, 0.0
    return float(finite.min()), float(finite.max())


def is_flat(depth: np.ndarray) -> bool:
    """True when the map has a single value (or none): no depth differences to show."""
    lo, hi = value_range(depth)
    return not hi > lo


def nearness(depth: np.ndarray, kind: DepthKind) -> np.ndarray:
    """Map values to [0, 1] with 1 = nearest (min-max in this image; 0.5 everywhere if flat).

    Relative inverse depth grows towards the camera; metric depth grows away from it, so the
    metric map is flipped to keep "near" at the same end of every colormap.
    """
    lo, hi = value_range(depth)
    clean = np.where(np.isfinite(depth), depth, lo).astype(np.float32, copy=False)
    if not hi > lo:
        return np.full(depth.shape, 0.5, dtype=np.float32)
    t = (clean - lo) / np.float32(hi - lo)
    return (1.0 - t) if kind == "metric" else t


def colourise(depth: np.ndarray, kind: DepthKind, colormap: str = DEFAULT_COLORMAP, invert: bool = False) -> np.ndarray:
    """Colour a depth map: near at the high end of ``colormap`` (far, if ``invert``).

    Returns:
        (H, W, 3) uint8 RGB. A flat map gets the colormap's middle colour everywhere.
    """
    t = nearness(depth, kind)
    if invert:
        t = 1.0 - t
    index = np.clip(np.rint(t * 255.0), 0, 255).astype(np.uint8)
    return colormap_lut(colormap)[index]


@dataclass(frozen=True)
class Quantised:
    """A depth map stored as uint16: ``value = offset + scale * pixel``.

    Attributes:
        pixels: (H, W) uint16, min -> 0 and max -> 65535 (all 0 for a flat map).
        scale: units per step (0 for a flat map).
        offset: the value of pixel 0 (the map's minimum).
    """

    pixels: np.ndarray
    scale: float
    offset: float

    def restore(self) -> np.ndarray:
        """The float32 map recovered from the pixels (error at most ``scale / 2``)."""
        return (self.offset + self.scale * self.pixels.astype(np.float64)).astype(np.float32)


def quantise16(depth: np.ndarray) -> Quantised:
    """Scale the finite range of ``depth`` to the full uint16 range (non-finite values -> 0)."""
    lo, hi = value_range(depth)
    clean = np.where(np.isfinite(depth), depth, lo).astype(np.float64)
    if not hi > lo:
        return Quantised(np.zeros(depth.shape, dtype=np.uint16), 0.0, lo)
    scale = (hi - lo) / PNG16_MAX
    q = np.clip(np.rint((clean - lo) / scale), 0, PNG16_MAX).astype(np.uint16)
    return Quantised(q, scale, lo)


def sidecar(q: Quantised, kind: DepthKind, model: str, image_size: tuple[int, int]) -> dict[str, Any]:
    """The JSON metadata that makes the 16-bit PNG recoverable (also written as PNG text)."""
    lo = q.offset
    return {
        "format": "vision-playground depth16 v1",
        "formula": "value = offset + scale * pixel",
        "scale": q.scale,
        "offset": q.offset,
        "min": lo,
        "max": lo + q.scale * PNG16_MAX,
        "kind": kind,
        "units": "m" if kind == "metric" else "unitless",
        "meaning": KIND_TEXT[kind],
        "flat": q.scale == 0.0,
        "model": model,
        "width": image_size[0],
        "height": image_size[1],
    }


def write_png16(path: Path, q: Quantised, meta: dict[str, Any]) -> None:
    """Write ``q.pixels`` as a 16-bit grayscale PNG with ``meta`` in its text chunks."""
    info = PngImagePlugin.PngInfo()
    for key in ("formula", "scale", "offset", "kind", "units", "meaning", "model"):
        info.add_text(f"depth_{key}", repr(meta[key]) if isinstance(meta[key], float) else str(meta[key]))
    info.add_text("depth_json", json.dumps(meta))
    # A uint16 (H, W) array becomes mode "I;16", saved as a 16-bit grayscale PNG.
    Image.fromarray(q.pixels).save(path, format="PNG", pnginfo=info, compress_level=1)


def read_png16(path: Path, sidecar_path: Path | None = None) -> np.ndarray:
    """Read a depth16 PNG back to float32, using the sidecar JSON or the PNG's own text chunks."""
    with Image.open(path) as im:
        pixels = np.asarray(im, dtype=np.float64)
        meta = json.loads(Path(sidecar_path).read_text()) if sidecar_path else json.loads(im.info["depth_json"])
    return (float(meta["offset"]) + float(meta["scale"]) * pixels).astype(np.float32)


def downsample(array: np.ndarray, max_side: int) -> np.ndarray:
    """Area-average ``array`` so its long side is at most ``max_side`` (nearest for uint8 colour)."""
    import cv2

    h, w = array.shape[:2]
    f = min(1.0, max_side / max(h, w))
    if f >= 1.0:
        return array
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class PointGrid:
    """One 3D point per pixel of a downsampled map, with its image colour.

    Attributes:
        xyz: (N, 3) float32. Metric: metres in camera axes (x right, y up, z towards the
            scene). Relative: x, y in working-image pixels (y up) and z = the map value.
        rgb: (N, 3) uint8 colours from the image.
        shape: (rows, cols) of the grid; N = rows * cols.
        kind: the map's kind.
        fov_deg: the assumed horizontal field of view (metric only).
    """

    xyz: np.ndarray
    rgb: np.ndarray
    shape: tuple[int, int]
    kind: DepthKind
    fov_deg: float | None


def point_grid(
    depth: np.ndarray,
    image_rgb: np.ndarray,
    kind: DepthKind,
    max_side: int = PLY_MAX_SIDE,
    fov_deg: float = DEFAULT_FOV_DEG,
) -> PointGrid:
    """Downsample ``depth`` and build one finite point per grid cell.

    Metric maps are unprojected with a pinhole camera of horizontal field of view ``fov_deg``
    centred on the image (an assumption: the photo's real intrinsics are unknown). Relative
    inverse depth has no scale or shift, so it is not unprojected: it becomes a height field.
    """
    lo, _ = value_range(depth)
    clean = np.where(np.isfinite(depth), depth, lo).astype(np.float32)
    d = downsample(clean, max_side)
    rgb = downsample(image_rgb, max_side)
    rows, cols = d.shape
    h, w = depth.shape
    # Centres of the downsampled cells, in working-image pixel coordinates.
    u = (np.arange(cols, dtype=np.float32) + 0.5) * (w / cols)
    v = (np.arange(rows, dtype=np.float32) + 0.5) * (h / rows)
    uu, vv = np.meshgrid(u, v)
    if kind == "metric":
        f = (w / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
        z = d
        x = (uu - w / 2.0) * z / f
        y = -(vv - h / 2.0) * z / f
        xyz = np.stack([x, y, z], axis=-1)
        fov: float | None = float(fov_deg)
    else:
        xyz = np.stack([uu, h - vv, d], axis=-1)
        fov = None
    return PointGrid(
        xyz=xyz.reshape(-1, 3).astype(np.float32),
        rgb=np.ascontiguousarray(rgb.reshape(-1, 3), dtype=np.uint8),
        shape=(rows, cols),
        kind=kind,
        fov_deg=fov,
    )


def write_ply(path: Path, grid: PointGrid, comments: tuple[str, ...] = ()) -> None:
    """Write ``grid`` as a binary little-endian PLY point cloud with RGB colours."""
    n = grid.xyz.shape[0]
    header = ["ply", "format binary_little_endian 1.0"]
    header += [f"comment {c}" for c in comments]
    if grid.kind == "metric":
        header.append(f"comment metric depth, metres; pinhole camera, horizontal fov {grid.fov_deg:g} deg")
    else:
        header.append("comment relative inverse depth as a height field: x,y = pixels, z = value (larger is nearer)")
    header += [
        f"comment grid {grid.shape[1]}x{grid.shape[0]}",
        f"element vertex {n}",
        "property float x",
        "property float y",
        "property float z",
        "property uchar red",
        "property uchar green",
        "property uchar blue",
        "end_header",
    ]
    vertex = np.empty(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = grid.xyz[:, 0], grid.xyz[:, 1], grid.xyz[:, 2]
    vertex["r"], vertex["g"], vertex["b"] = grid.rgb[:, 0], grid.rgb[:, 1], grid.rgb[:, 2]
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(vertex.tobytes())


def read_ply(path: Path) -> tuple[list[str], np.ndarray]:
    """Read a PLY written by `write_ply`: (header lines, structured vertex array)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    count = next(int(line.split()[2]) for line in header if line.startswith("element vertex"))
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    return header, np.frombuffer(data, dtype=dtype, count=count, offset=end)


def _plotly_colorscale(colormap: str, invert: bool, stops: int = 17) -> list[list[Any]]:
    lut = colormap_lut(colormap)
    idx = np.linspace(0, 255, stops).round().astype(int)
    if invert:
        idx = idx[::-1]
    return [[i / (stops - 1), f"rgb({lut[j, 0]},{lut[j, 1]},{lut[j, 2]})"] for i, j in enumerate(idx)]


def figure_3d(
    depth: np.ndarray,
    image_rgb: np.ndarray,
    kind: DepthKind,
    colormap: str = DEFAULT_COLORMAP,
    invert: bool = False,
    fov_deg: float = DEFAULT_FOV_DEG,
    max_side: int = PLOT_MAX_SIDE,
) -> Any:
    """An interactive plotly figure of the map, downsampled to ``max_side``.

    Relative maps: a surface whose height is the relative inverse depth, coloured with
    ``colormap`` (near at the high end). Metric maps: a point cloud unprojected with the
    assumed field of view, coloured with ``colormap`` by depth.
    """
    import plotly.graph_objects as go

    grid = point_grid(depth, image_rgb, kind, max_side=max_side, fov_deg=fov_deg)
    rows, cols = grid.shape
    if kind == "metric":
        x, y, z = grid.xyz[:, 0], grid.xyz[:, 1], grid.xyz[:, 2]
        # Numeric colours with a colorscale: per-point RGB strings cost ~1 s of plotly validation.
        trace = go.Scatter3d(
            x=x,
            y=z,
            z=y,
            mode="markers",
            marker={
                "size": 2,
                "color": nearness(z, kind),
                "cmin": 0.0,
                "cmax": 1.0,
                "colorscale": _plotly_colorscale(colormap, invert),
            },
            hovertemplate="x %{x:.2f} m, y %{z:.2f} m<br>depth %{y:.2f} m<extra></extra>",
            name="points",
        )
        title = f"{rows * cols:,} points · assumed horizontal field of view {fov_deg:g}°"
        scene = {
            "xaxis_title": "x (m)",
            "yaxis_title": "depth (m)",
            "zaxis_title": "y (m)",
            "aspectmode": "data",
            "camera": {"eye": {"x": 0.0, "y": -1.6, "z": 0.4}, "up": {"x": 0, "y": 0, "z": 1}},
        }
    else:
        z = grid.xyz[:, 2].reshape(rows, cols)
        near = nearness(z, kind)
        trace = go.Surface(
            x=grid.xyz[:cols, 0],
            y=grid.xyz[::cols, 1],
            z=z,
            surfacecolor=near,
            cmin=0.0,
            cmax=1.0,
            colorscale=_plotly_colorscale(colormap, invert),
            showscale=False,
            hovertemplate="x %{x:.0f}px, y %{y:.0f}px<br>value %{z:.4g}<extra></extra>",
        )
        title = f"Relative inverse depth as height (higher is nearer) · {cols}×{rows} grid"
        scene = {
            "xaxis_title": "x (px)",
            "yaxis_title": "y (px)",
            "zaxis_title": "value",
            "aspectmode": "manual",
            "aspectratio": {"x": 1.0, "y": rows / cols, "z": 0.35},
            "camera": {"eye": {"x": 0.2, "y": -1.15, "z": 0.75}},
        }
    fig = go.Figure(trace)
    fig.update_layout(
        title={"text": title, "font": {"size": 13}}, scene=scene, margin={"l": 0, "r": 0, "t": 36, "b": 0}, height=480
    )
    return fig
