"""The ``depth`` task: one model run per image, then everything is drawn from the float map.

`estimate` runs a depth model on an image. `run` does it for the Depth tab and the ``depth``
endpoint: it writes the downloads (16-bit PNG + JSON sidecar whose values can be recovered, the
float32 ``.npy``, a ``.ply`` point cloud, the colourised PNG) once, and returns a `DepthRun`
that the tab keeps per session, so colormap, invert and field of view re-render without
running the model again (`view_files`, `read_pixel`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from model_loaders.core.errors import InputError
from model_loaders.core.images import DecodedImage
from model_loaders.core.results import DepthResult, Timings
from model_loaders.core.specs import ModelSpec
from model_loaders.core.validate import finite_number
from model_loaders.tasks import depth_export as dx
from model_loaders.tasks.base import checked_spec, image_of, model_for, run_batched

_STEM = re.compile(r"[^A-Za-z0-9_-]+")


def depth_spec(ctx: Any, model: Any) -> ModelSpec:
    """The spec of a model that can estimate depth and run here (checked before anything loads)."""
    return checked_spec(ctx, model, "depth", "one of the Depth tab's models")


def estimate(ctx: Any, image: Any, model: Any, timings: Timings | None = None) -> DepthResult:
    """A depth map at the image's (working) size, from any model that can estimate depth."""
    spec = depth_spec(ctx, model)
    timings = timings if timings is not None else Timings()
    with timings.stage("preprocess"):
        decoded = image_of(ctx, image)
    with model_for(ctx, spec, "depth", timings) as estimator:
        result = run_batched(ctx, spec.key, estimator, decoded.array, timings,
                             lambda: estimator.estimate(decoded.array, timings))  # fmt: skip
    result.timings = timings
    return result


def colormap(value: Any) -> str:
    """A known colormap name.

    Raises:
        InputError: for anything else.
    """
    if value not in dx.COLORMAPS:
        raise InputError(f"Unknown colormap {str(value)[:40]!r}; choose one of {', '.join(dx.COLORMAPS)}.")
    return str(value)


def flag(value: Any, name: str) -> bool:
    """A true/false request value (``None`` is false)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise InputError(f"{name} must be true or false.")


def fov(value: Any) -> float:
    """The assumed horizontal field of view in degrees, within `depth_export.FOV_RANGE`."""
    if value is None:
        return dx.DEFAULT_FOV_DEG
    return finite_number(value, "Field of view", *dx.FOV_RANGE)


def file_stem(image: Any) -> str:
    """A safe file-name stem from an upload's name ("image" when there is none)."""
    name = ""
    if isinstance(image, dict):
        name = str(image.get("orig_name") or image.get("path") or "")
    elif isinstance(image, (str, Path)):
        name = str(image)
    return _STEM.sub("_", Path(name).stem)[:40].strip("_") or "image"


@dataclass
class DepthRun:
    """One run kept per session: the float map, the image, and the files written for it.

    Everything the view needs is here, so re-rendering never runs the model. Files written for a
    (colormap, invert) or field-of-view choice are reused while their folder exists, and written
    again if the output space pruned it.
    """

    depth: np.ndarray
    image: np.ndarray
    kind: str
    max_depth: float | None
    model: str
    scale: float
    folder: str
    stem: str
    timings: dict[str, Any]
    original_size: tuple[int, int] = (0, 0)
    notes: list[str] = field(default_factory=list)
    png16: str = ""
    sidecar: str = ""
    npy: str = ""
    colour_files: dict[str, str] = field(default_factory=dict)
    ply_files: dict[str, str] = field(default_factory=dict)

    @property
    def value_range(self) -> tuple[float, float]:
        """(min, max) of the finite values."""
        return dx.value_range(self.depth)


def run(ctx: Any, image: Any, model: Any, cmap: Any = dx.DEFAULT_COLORMAP, invert: Any = False,
        fov_deg: Any = dx.DEFAULT_FOV_DEG) -> tuple[DepthRun, list[str], dict[str, Any]]:  # fmt: skip
    """Run the model once and write every download.

    Returns:
        (the run to keep, the download paths, summary stats for the API).

    Raises:
        InputError / ModelUnavailable: bad images, unknown or non-depth model keys, bad options.
    """
    spec = depth_spec(ctx, model)
    cmap, invert, fov_deg = colormap(cmap), flag(invert, "Invert"), fov(fov_deg)
    timings = Timings()
    with timings.stage("preprocess"):
        decoded: DecodedImage = image_of(ctx, image)
    result = estimate(ctx, decoded, spec.key, timings)
    notes = list(decoded.notes)
    with timings.stage("postprocess"):
        depth, kind = result.depth, result.kind
        lo, hi = dx.value_range(depth)
        flat = not hi > lo
        if int(np.ptp(decoded.array)) == 0:
            notes.append("the image is a single flat colour, so there is no depth to see")
        if flat:
            notes.append("the depth map is flat (one value everywhere): nothing to tell apart")
        kept = DepthRun(
            depth=depth, image=decoded.array, kind=kind, max_depth=spec.max_depth_m if kind == "metric" else None,
            model=spec.key, scale=decoded.scale, folder="", stem=file_stem(image), timings={}, notes=notes,
            original_size=decoded.size,
        )  # fmt: skip
        files = view_files(ctx, kept, cmap, invert, fov_deg)
        q = dx.quantise16(depth)
    kept.timings = timings.as_dict()
    stats = {
        "model": spec.key,
        "kind": kind,
        "units": "m" if kind == "metric" else "unitless",
        "meaning": dx.KIND_TEXT[kind],
        "min": lo,
        "max": hi,
        "mean": float(np.mean(depth)),
        "flat": flat,
        "width": decoded.size[0],
        "height": decoded.size[1],
        "png16_scale": q.scale,
        "png16_offset": q.offset,
        "notes": notes,
        "timings": kept.timings,
        "weights_warning": ctx.weights_warning,
    }
    return kept, files, stats


def _folder(ctx: Any, kept: DepthRun) -> Path:
    # The output space may have pruned an old run's folder: write into a fresh one then.
    folder = Path(kept.folder) if kept.folder else None
    if folder is None or not folder.is_dir():
        folder = ctx.outputs.new_dir("depth")
        kept.folder = str(folder)
    return folder


def data_files(ctx: Any, kept: DepthRun) -> list[str]:
    """The 16-bit PNG, its JSON sidecar and the float32 ``.npy`` (written again if they were pruned)."""
    if kept.npy and all(Path(p).exists() for p in (kept.png16, kept.sidecar, kept.npy)):
        return [kept.png16, kept.sidecar, kept.npy]
    folder = _folder(ctx, kept)
    q = dx.quantise16(kept.depth)
    meta = dx.sidecar(q, kept.kind, kept.model, kept.original_size)  # type: ignore[arg-type]
    png16, side, npy = (folder / f"{kept.stem}_depth16.png", folder / f"{kept.stem}_depth16.json",
                        folder / f"{kept.stem}_depth_float32.npy")  # fmt: skip
    dx.write_png16(png16, q, meta)
    side.write_text(json.dumps(meta, indent=2))
    np.save(npy, kept.depth)
    kept.png16, kept.sidecar, kept.npy = str(png16), str(side), str(npy)
    return [kept.png16, kept.sidecar, kept.npy]


def colour_file(ctx: Any, kept: DepthRun, cmap: str, invert: bool, colour: np.ndarray | None = None) -> str:
    """The colourised PNG for (colormap, invert), written once per run and choice."""
    tag = f"{cmap}{'_inverted' if invert else ''}"
    cached = kept.colour_files.get(tag)
    if cached and Path(cached).exists():
        return cached
    if colour is None:
        colour = dx.colourise(kept.depth, kept.kind, cmap, invert)  # type: ignore[arg-type]
    path = _folder(ctx, kept) / f"{kept.stem}_depth_{tag}.png"
    Image.fromarray(colour).save(path, format="PNG", compress_level=1)
    kept.colour_files[tag] = str(path)
    return str(path)


def ply_file(ctx: Any, kept: DepthRun, fov_deg: float) -> str:
    """The ``.ply`` point cloud; relative maps do not depend on the field of view, metric maps do."""
    tag = f"fov{fov_deg:g}" if kept.kind == "metric" else "grid"
    cached = kept.ply_files.get(tag)
    if cached and Path(cached).exists():
        return cached
    grid = dx.point_grid(kept.depth, kept.image, kept.kind, fov_deg=fov_deg)  # type: ignore[arg-type]
    suffix = f"_fov{fov_deg:g}" if kept.kind == "metric" else ""
    path = _folder(ctx, kept) / f"{kept.stem}_points{suffix}.ply"
    dx.write_ply(path, grid, comments=(f"model {kept.model}",))
    kept.ply_files[tag] = str(path)
    return str(path)


def view_files(ctx: Any, kept: DepthRun, cmap: str, invert: bool, fov_deg: float,
               colour: np.ndarray | None = None) -> list[str]:  # fmt: skip
    """The downloads for the current view: colour PNG, 16-bit PNG + sidecar, float32 .npy, .ply."""
    return [colour_file(ctx, kept, cmap, invert, colour), *data_files(ctx, kept), ply_file(ctx, kept, fov_deg)]


def read_pixel(kept: DepthRun | None, x: Any, y: Any) -> str:
    """The value under a clicked point (working-image pixels) as a sentence."""
    if kept is None:
        return "Run depth first, then click the map."
    depth = kept.depth
    h, w = depth.shape
    xi = int(np.clip(round(finite_number(x, "x")), 0, w - 1))
    yi = int(np.clip(round(finite_number(y, "y")), 0, h - 1))
    value = float(depth[yi, xi])
    ox, oy = xi / kept.scale, yi / kept.scale
    if kept.kind == "metric":
        what = f"**{value:.3f} m** from the camera"
        nearer = float((depth < value).mean() * 100.0)
    else:
        what = f"relative inverse depth **{value:.4g}** (larger is nearer; unitless)"
        nearer = float((depth > value).mean() * 100.0)
    return f"Pixel ({ox:.0f}, {oy:.0f}) of the image: {what}. {nearer:.0f}% of the image is nearer than this point."
