"""Depth tab: Depth Anything V2 with a before/after slider, colormaps, pixel read-out, a 3D view
and downloads that keep the float values recoverable.

The model runs once per image; colormap, invert and field of view re-render from the float
map kept in ``gr.State`` (per session) without running the model again.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from model_loaders.core.context import AppContext
from model_loaders.core.errors import InputError
from model_loaders.core.images import decode_image
from model_loaders.core.registry import DEFAULTS, get_spec, specs_for_task
from model_loaders.core.results import DepthResult, Timings
from model_loaders.core.specs import ModelSpec
from model_loaders.families.depth_anything import estimate_depth
from model_loaders.tasks import depth_export as dx
from tabs._components import ImageInput
from tabs._errors import user_errors
from tabs._events import LIGHT_EVENT, MODEL_EVENT
from tabs._examples import example_paths
from tabs._validate import finite_number

log = logging.getLogger(__name__)

TITLE = "Depth"

INTRO = (
    "Estimate depth from one photo with **Depth Anything V2**. Drag the slider to compare the image "
    "with its depth map; change the colours without re-running the model; click the map to read a "
    "value; explore it in 3D; download it as a picture, a 16-bit PNG whose values can be recovered, "
    "a float32 `.npy` array or a `.ply` point cloud."
)
MEANING = {
    "relative_inverse": (
        "**What the values mean: relative inverse depth (disparity).** Larger values are *nearer*. "
        "They have no unit and are only comparable within this image: they are not metres, and the "
        "same object can get different values in another photo."
    ),
    "metric": (
        "**What the values mean: metric depth in metres.** Each value is the model's estimate of the "
        "distance from the camera (larger is farther), up to {max:g} m for this model. The 3D view "
        "and the `.ply` assume a horizontal field of view of {fov:g}°; set it to your camera's if you know it."
    ),
}
PENDING_MEANING = (
    "**Values:** the relative models give relative inverse depth (disparity: larger is nearer, no unit); "
    "the metric models give metres."
)
_STEM = re.compile(r"[^A-Za-z0-9_-]+")


def model_choices() -> list[tuple[str, str]]:
    """(label, key) for every depth model, with size and licence terms in the label."""
    out = []
    for spec in specs_for_task("depth"):
        terms = " · non-commercial" if spec.commercial == "no" else ""
        size = f" · {spec.params_m:g} M" if spec.params_m else ""
        out.append((f"{spec.name}{size} · {spec.licence}{terms}", spec.key))
    return out


def _depth_spec(model_key: Any) -> ModelSpec:
    spec = get_spec(str(model_key) if model_key is not None else "")
    if "depth" not in spec.tasks:
        raise InputError(f"{spec.name} is not a depth model; pick one from the Depth tab's list.")
    return spec


def _colormap(value: Any) -> str:
    if value not in dx.COLORMAPS:
        raise InputError(f"Unknown colormap {str(value)[:40]!r}; choose one of {', '.join(dx.COLORMAPS)}.")
    return str(value)


def _flag(value: Any, name: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise InputError(f"{name} must be true or false.")


def _fov(value: Any) -> float:
    if value is None:
        return dx.DEFAULT_FOV_DEG
    return finite_number(value, "Field of view", *dx.FOV_RANGE)


def _stem(image: Any) -> str:
    name = ""
    if isinstance(image, dict):
        name = str(image.get("orig_name") or image.get("path") or "")
    elif isinstance(image, (str, Path)):
        name = str(image)
    stem = _STEM.sub("_", Path(name).stem)[:40].strip("_")
    return stem or "image"


def _fmt(value: float, kind: str) -> str:
    return f"{value:.3f} m" if kind == "metric" else f"{value:.4g}"


def _colour_file(state: dict[str, Any], colormap: str, invert: bool, colour: np.ndarray | None = None) -> str:
    """Path of the colourised PNG for (colormap, invert), written once per session and choice."""
    tag = f"{colormap}{'_inverted' if invert else ''}"
    cached = state["colour_files"].get(tag)
    if cached and Path(cached).exists():
        return cached
    if colour is None:
        colour = dx.colourise(state["depth"], state["kind"], colormap, invert)
    path = Path(state["dir"]) / f"{state['stem']}_depth_{tag}.png"
    from PIL import Image

    Image.fromarray(colour).save(path, format="PNG", compress_level=1)
    state["colour_files"][tag] = str(path)
    return str(path)


def _ply_file(state: dict[str, Any], fov: float) -> str:
    """Path of the .ply; relative maps do not depend on the field of view, metric maps do."""
    tag = f"fov{fov:g}" if state["kind"] == "metric" else "grid"
    cached = state["ply_files"].get(tag)
    if cached and Path(cached).exists():
        return cached
    grid = dx.point_grid(state["depth"], state["image"], state["kind"], fov_deg=fov)
    suffix = f"_fov{fov:g}" if state["kind"] == "metric" else ""
    path = Path(state["dir"]) / f"{state['stem']}_points{suffix}.ply"
    dx.write_ply(path, grid, comments=(f"model {state['model']}",))
    state["ply_files"][tag] = str(path)
    return str(path)


def _files(
    state: dict[str, Any], colormap: str, invert: bool, fov: float, colour: np.ndarray | None = None
) -> list[str]:
    return [
        _colour_file(state, colormap, invert, colour),
        state["png16"],
        state["sidecar"],
        state["npy"],
        _ply_file(state, fov),
    ]


def timing_line(timings: Timings, spec: ModelSpec, warning: str) -> str:
    """One line: stage times, device, model, weights mode, and the random-weights warning."""
    t = timings
    load = f" · load {t.load_ms:,.0f} ms" if t.load_ms >= 1 else ""
    line = (
        f"preprocess {t.preprocess_ms:,.0f} ms · inference {t.inference_ms:,.0f} ms · "
        f"postprocess {t.postprocess_ms:,.0f} ms{load} · device `{t.device}` · model {spec.name} · "
        f"weights `{t.weights}`"
    )
    if warning:
        line += f" · ⚠️ **{warning}**"
    return line


def compute(
    ctx: AppContext,
    image: Any,
    model_key: Any,
    colormap: Any = dx.DEFAULT_COLORMAP,
    invert: Any = False,
    fov: Any = dx.DEFAULT_FOV_DEG,
) -> tuple[list[str], dict[str, Any], str, dict[str, Any]]:
    """Run the model once and write every download.

    Returns:
        (files, stats, timing markdown, session state).

    Raises:
        InputError / ModelUnavailable: for bad images, unknown or non-depth model keys.
    """
    spec = _depth_spec(model_key)
    colormap, invert, fov = _colormap(colormap), _flag(invert, "Invert"), _fov(fov)
    timings = Timings()
    with timings.stage("preprocess"):
        decoded = decode_image(image, gate=ctx.uploads)
    with ctx.use(spec.key, timings) as bundle:
        result: DepthResult = estimate_depth(bundle, decoded.array, timings)
        max_depth = bundle.max_depth
    notes = list(decoded.notes)
    with timings.stage("postprocess"):
        depth, kind = result.depth, result.kind
        lo, hi = dx.value_range(depth)
        flat = not hi > lo
        if int(np.ptp(decoded.array)) == 0:
            notes.append("the image is a single flat colour, so there is no depth to see")
        if flat:
            notes.append("the depth map is flat (one value everywhere): nothing to tell apart")
        out_dir = ctx.outputs.new_dir("depth")
        stem = _stem(image)
        q = dx.quantise16(depth)
        meta = dx.sidecar(q, kind, spec.key, decoded.size)
        png16 = out_dir / f"{stem}_depth16.png"
        dx.write_png16(png16, q, meta)
        side = out_dir / f"{stem}_depth16.json"
        side.write_text(json.dumps(meta, indent=2))
        npy = out_dir / f"{stem}_depth_float32.npy"
        np.save(npy, depth)
        state: dict[str, Any] = {
            "depth": depth,
            "image": decoded.array,
            "kind": kind,
            "max_depth": max_depth,
            "model": spec.key,
            "scale": decoded.scale,
            "dir": str(out_dir),
            "stem": stem,
            "png16": str(png16),
            "sidecar": str(side),
            "npy": str(npy),
            "colour_files": {},
            "ply_files": {},
        }
        files = _files(state, colormap, invert, fov)
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
        "timings": timings.as_dict(),
        "weights_warning": ctx.weights_warning,
    }
    timing = timing_line(timings, spec, ctx.weights_warning)
    if notes:
        timing += "\n\n**Note:** " + "; ".join(notes) + "."
    state["timing"] = timing
    return files, stats, timing, state


def render(state: dict[str, Any], colormap: Any, invert: Any, fov: Any) -> tuple[Any, ...]:
    """Everything drawn from the float map (no model call): slider, click map, 3D, downloads.

    Returns:
        (slider value, click-map image, plotly figure, files, meaning markdown, state).
    """
    colormap, invert, fov = _colormap(colormap), _flag(invert, "Invert"), _fov(fov)
    colour = dx.colourise(state["depth"], state["kind"], colormap, invert)
    files = _files(state, colormap, invert, fov, colour)
    fig = dx.figure_3d(state["depth"], state["image"], state["kind"], colormap, invert, fov)
    lo, hi = dx.value_range(state["depth"])
    near = "far" if invert else "near"
    meaning = MEANING[state["kind"]].format(max=state.get("max_depth") or 0, fov=fov)
    meaning += (
        f" Range in this image: {_fmt(lo, state['kind'])} to {_fmt(hi, state['kind'])}. "
        f"Colours: {near} is the high end of **{colormap}**."
    )
    return (state["image"], colour), colour, fig, files, meaning, state


def read_pixel(state: dict[str, Any] | None, x: Any, y: Any) -> str:
    """The value under a clicked point (working-image pixels) as a sentence."""
    if state is None:
        return "Run depth first, then click the map."
    depth = state["depth"]
    h, w = depth.shape
    xi = int(np.clip(round(finite_number(x, "x")), 0, w - 1))
    yi = int(np.clip(round(finite_number(y, "y")), 0, h - 1))
    value = float(depth[yi, xi])
    ox, oy = xi / state["scale"], yi / state["scale"]
    if state["kind"] == "metric":
        what = f"**{value:.3f} m** from the camera"
        nearer = float((depth < value).mean() * 100.0)
    else:
        what = f"relative inverse depth **{value:.4g}** (larger is nearer; unitless)"
        nearer = float((depth > value).mean() * 100.0)
    return f"Pixel ({ox:.0f}, {oy:.0f}) of the image: {what}. {nearer:.0f}% of the image is nearer than this point."


def build(ctx: AppContext) -> None:
    """Render the Depth tab."""
    gr.Markdown(INTRO)
    if ctx.weights_warning:
        gr.Markdown(f"⚠️ **{ctx.weights_warning}**")
    state = gr.State(None)
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            image = ImageInput(
                label="Image", type="filepath", sources=["upload", "clipboard"], height=320, elem_id="depth-input"
            )
            model = gr.Dropdown(model_choices(), value=DEFAULTS["depth"], label="Model", elem_id="depth-model")
            run = gr.Button("Estimate depth", variant="primary", elem_id="depth-run")
            examples = gr.Examples(example_paths(), inputs=[image], label="Examples", elem_id="depth-examples")
            colormap = gr.Dropdown(
                list(dx.COLORMAPS), value=dx.DEFAULT_COLORMAP, label="Colormap", elem_id="depth-cmap"
            )
            invert = gr.Checkbox(False, label="Invert near/far colours", elem_id="depth-invert")
            fov = gr.Slider(
                *dx.FOV_RANGE,
                value=dx.DEFAULT_FOV_DEG,
                step=1,
                label="Assumed horizontal field of view (°)",
                info="Used by metric models to place points in metres (3D view and .ply).",
                elem_id="depth-fov",
            )
        with gr.Column(scale=3, min_width=400):
            meaning = gr.Markdown(PENDING_MEANING, elem_id="depth-meaning")
            slider = gr.ImageSlider(
                label="Image / depth", interactive=False, type="numpy", max_height=520, elem_id="depth-slider"
            )
            timing = gr.Markdown(elem_id="depth-timing", label="timing")
            with gr.Row(equal_height=False):
                pick = gr.Image(
                    label="Click the depth map to read a value",
                    interactive=False,
                    type="numpy",
                    format="png",
                    # No fixed height: with one, clicks on this gradio version do not reach .select.
                    buttons=["fullscreen"],
                    elem_id="depth-pick",
                    scale=3,
                )
                readout = gr.Markdown("Click the map to read a value.", elem_id="depth-readout")
            plot = gr.Plot(label="3D view (drag to rotate, scroll to zoom)", elem_id="depth-plot")
            files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="depth-files")
            with gr.Accordion("Summary (JSON)", open=False):
                stats = gr.JSON(label="Summary", elem_id="depth-stats")

    @user_errors
    def on_run(image: Any, model: Any, colormap: Any, invert: Any, fov_degrees: Any) -> tuple[Any, ...]:
        """Estimate depth for an image; returns the downloads, summary stats and timing line."""
        return compute(ctx, image, model, colormap, invert, fov_degrees)

    @user_errors
    def on_render(st: dict[str, Any] | None, cmap: Any, inv: Any, fv: Any) -> tuple[Any, ...]:
        if st is None:
            return tuple(gr.skip() for _ in range(6))
        return render(st, cmap, inv, fv)

    @user_errors
    def on_pick(st: dict[str, Any] | None, evt: gr.SelectData) -> str:
        if not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:
            raise InputError("Click inside the depth map.")
        return read_pixel(st, evt.index[0], evt.index[1])

    run_inputs = [image, model, colormap, invert, fov]
    run_outputs = [files, stats, timing, state]
    view_outputs = [slider, pick, plot, files, meaning, state]
    render_inputs = [state, colormap, invert, fov]
    reset = "Click the map to read a value."

    run.click(on_run, run_inputs, run_outputs, api_name="depth", preprocess=False, **MODEL_EVENT).success(
        on_render, render_inputs, view_outputs, api_visibility="private", **LIGHT_EVENT
    ).success(lambda: reset, None, readout, api_visibility="private", **LIGHT_EVENT)
    # Picking an example runs it straight away (same handler, not a second public endpoint).
    examples.load_input_event.then(
        on_run, run_inputs, run_outputs, api_visibility="private", preprocess=False, **MODEL_EVENT
    ).success(on_render, render_inputs, view_outputs, api_visibility="private", **LIGHT_EVENT).success(
        lambda: reset, None, readout, api_visibility="private", **LIGHT_EVENT
    )
    # Re-render only: the float map is in the session's state, the model is not called.
    gr.on(
        [colormap.change, invert.change, fov.release],
        on_render,
        render_inputs,
        view_outputs,
        api_visibility="private",
        **LIGHT_EVENT,
    )
    pick.select(on_pick, [state], readout, api_visibility="private", **LIGHT_EVENT)
