"""Depth tab: Depth Anything V2 with a before/after slider, colormaps, pixel read-out, a 3D view
and downloads that keep the float values recoverable.

UI only: the run, the downloads and the pixel read-out are ``model_loaders.tasks.depth``. The
model runs once per image; colormap, invert and field of view re-render from the float map
kept in the session's state without running the model again.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
import numpy as np

from model_loaders.core.context import AppContext
from model_loaders.core.errors import InputError
from model_loaders.tasks import depth as td
from model_loaders.tasks import depth_export as dx
from tabs import _render as draw
from tabs._checks import guard_upload, model_problem, no_image, validator
from tabs._components import ImageInput
from tabs._errors import user_errors
from tabs._events import light_event, model_event
from tabs._examples import example_paths
from tabs._gpu import model_at, on_gpu
from tabs._picker import model_picker
from tabs._presenter import DEV_ONLY, first_view, input_height
from tabs._timing import timing_line

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
PICK_HINT = "Estimate depth, then click the map to read a value."
PENDING_MEANING = (
    "**Values:** the relative models give relative inverse depth (disparity: larger is nearer, no unit); "
    "the metric models give metres."
)


def _fmt(value: float, kind: str) -> str:
    return f"{value:.3f} m" if kind == "metric" else f"{value:.4g}"


def compute(ctx: AppContext, image: Any, model: Any, cmap: Any = dx.DEFAULT_COLORMAP, invert: Any = False,
            fov: Any = dx.DEFAULT_FOV_DEG) -> tuple[list[str], dict[str, Any], str, td.DepthRun]:  # fmt: skip
    """Run the model once (the ``depth`` endpoint): downloads, summary, timing line, the run to keep."""
    kept, files, stats = td.run(ctx, image, model, cmap, invert, fov)
    timing = timing_line(ctx, kept.timings)
    if kept.notes:
        timing += "\n\n**Note:** " + "; ".join(kept.notes) + "."
    return files, stats, timing, kept


DISPLAY_MAX_SIDE = 1024  # what the page shows; the downloads keep every pixel


def display_copy(image: np.ndarray) -> np.ndarray:
    """``image`` no larger than the page shows it: encoding and sending a 3-megapixel PNG on every
    colormap change took over a second; the downloads keep full resolution."""
    import cv2

    h, w = image.shape[:2]
    scale = DISPLAY_MAX_SIDE / max(h, w)
    if scale >= 1.0:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def to_map_pixels(kept: td.DepthRun, x: float, y: float) -> tuple[float, float]:
    """A click on the shown (display-size) map -> the depth map's pixel."""
    h, w = kept.depth.shape[:2]
    scale = min(1.0, DISPLAY_MAX_SIDE / max(h, w))
    return x / scale, y / scale


def render(ctx: AppContext, kept: td.DepthRun, cmap: Any, invert: Any, fov: Any) -> tuple[Any, ...]:
    """Everything drawn from the float map (no model call): slider, click map, 3D, downloads.

    Returns:
        (slider value, click-map image, plotly figure, files, meaning markdown, the run).
    """
    cmap, invert, fov = td.colormap(cmap), td.flag(invert, "Invert"), td.fov(fov)
    colour = dx.colourise(kept.depth, kept.kind, cmap, invert)  # type: ignore[arg-type]
    files = td.view_files(ctx, kept, cmap, invert, fov, colour)
    fig = dx.figure_3d(kept.depth, kept.image, kept.kind, cmap, invert, fov)  # type: ignore[arg-type]
    lo, hi = kept.value_range
    near = "far" if invert else "near"
    meaning = MEANING[kept.kind].format(max=kept.max_depth or 0, fov=fov)
    meaning += (
        f" Range in this image: {_fmt(lo, kept.kind)} to {_fmt(hi, kept.kind)}. "
        f"Colours: {near} is the high end of **{cmap}**."
    )
    shown = display_copy(colour)
    return (display_copy(kept.image), shown), shown, fig, files, meaning, kept


def build(ctx: AppContext) -> None:
    """Render the Depth tab."""
    gr.Markdown(INTRO, elem_classes=["intro"])
    state = gr.State(None)
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            image = ImageInput(
                label="Image", type="filepath", sources=["upload", "clipboard"], height=input_height(ctx, 320),
                elem_id="depth-input",
            )
            model = model_picker(ctx, "depth", elem_id="depth-model").dropdown
            run = gr.Button("Estimate depth", variant="primary", elem_id="depth-run")
            gr.Examples(example_paths(), inputs=[image], label="Examples", elem_id="depth-examples")
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
                label="Image / depth", interactive=False, type="numpy", format="jpeg", max_height=520,
                elem_id="depth-slider",
            )
            timing = gr.Markdown(elem_id="depth-timing", label="timing")
            with gr.Row(equal_height=False):
                pick = gr.Image(
                    label="Click the depth map to read a value",
                    interactive=False,
                    type="numpy",
                    format="jpeg",
                    # No fixed height: with one, clicks on this gradio version do not reach .select.
                    buttons=["fullscreen"],
                    elem_id="depth-pick",
                    scale=3,
                )
                readout = gr.Markdown(PICK_HINT, elem_id="depth-readout")
            plot = gr.Plot(label="3D view (drag to rotate, scroll to zoom)", elem_id="depth-plot")
            files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="depth-files")
            with gr.Accordion("Summary (JSON)", open=False, elem_classes=[DEV_ONLY]):
                stats = gr.JSON(label="Summary", elem_id="depth-stats")

    @user_errors
    def depth(image: Any, model: Any, colormap: Any, invert: Any, fov_degrees: Any) -> tuple[Any, ...]:
        """Estimate depth from one photo (Depth Anything V2).

        Args:
            image: the photo.
            model: the model's registry key, e.g. depth-anything-v2-small (relative) or
                depth-anything-v2-metric-indoor-small (metres).
            colormap: colours of the picture: Spectral_r, inferno, turbo, viridis, magma, plasma, cividis or gray.
            invert: swap the near and far colours.
            fov_degrees: the camera's horizontal field of view, for metric point clouds (20 to 150).

        Returns:
            The downloads (colour PNG, 16-bit PNG with a JSON sidecar, float32 .npy, .ply point
            cloud), summary statistics and what the values mean, and the timing line.
        """
        return compute(ctx, image, model, colormap, invert, fov_degrees)[:3]

    @user_errors
    def on_run(image: Any, model: Any, colormap: Any, invert: Any, fov_degrees: Any) -> tuple[Any, ...]:
        return compute(ctx, image, model, colormap, invert, fov_degrees)

    @user_errors
    def on_render(kept: td.DepthRun | None, cmap: Any, inv: Any, fv: Any) -> tuple[Any, ...]:
        if kept is None:
            return tuple(gr.skip() for _ in range(6))
        return render(ctx, kept, cmap, inv, fv)

    @user_errors
    def on_pick(kept: td.DepthRun | None, cmap: Any, inv: Any, evt: gr.SelectData) -> tuple[Any, str]:
        if kept is None:
            return gr.skip(), PICK_HINT
        if not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:
            raise InputError("Click inside the depth map.")
        x, y = (float(v) for v in evt.index)
        colour = dx.colourise(kept.depth, kept.kind, td.colormap(cmap), td.flag(inv, "Invert"))  # type: ignore[arg-type]
        return draw.prompts(display_copy(colour), corner=(x, y)), td.read_pixel(kept, *to_map_pixels(kept, x, y))

    def check_run(image: Any, model: Any, colormap: Any, invert: Any, fov_degrees: Any) -> dict[str, str | None]:
        return {"image": no_image(image), "model": model_problem(ctx, "depth", model)}

    run_inputs = [image, model, colormap, invert, fov]
    run_outputs = [files, stats, timing, state]
    view_outputs = [slider, pick, plot, files, meaning, state]
    render_inputs = [state, colormap, invert, fov]

    # Uploads and examples only fill the input; the button runs (the same in every tab).
    guard_upload(ctx, image)
    run.click(on_gpu(ctx, on_run, model_at(1)), run_inputs, run_outputs, api_visibility="private", preprocess=False,
              validator=validator(check_run), **model_event(ctx, "single", timing)).success(
        on_render, render_inputs, view_outputs, api_visibility="private", **light_event(timing)
    ).success(lambda: "Click the map to read a value.", None, readout, api_visibility="private", **light_event())
    # Re-render only: the float map is in the session's state, the model is not called.
    gr.on([colormap.change, invert.change, fov.input], on_render, render_inputs, view_outputs,
          api_visibility="private", **light_event(timing, trigger_mode="always_last"))  # fmt: skip
    pick.select(on_pick, [state, colormap, invert], [pick, readout], api_visibility="private",
                **light_event(readout))  # fmt: skip

    def present(kept: td.DepthRun) -> tuple[Any, ...]:
        """Presenter mode: the first example, already run, as this page opens."""
        pair, shown, fig, files_, meaning_, _ = render(ctx, kept, dx.DEFAULT_COLORMAP, False, dx.DEFAULT_FOV_DEG)
        return (example_paths()[0], files_, timing_line(ctx, kept.timings), kept, pair, shown, fig, meaning_,
                "Click the map to read a value.")  # fmt: skip

    first_view(ctx, [image, files, timing, state, slider, pick, plot, meaning, readout],
               lambda: compute(ctx, example_paths()[0], model.value)[3], present)  # fmt: skip
    # The public endpoint returns what an API client can use (no session state: MCP clients and
    # gradio_client cannot carry it between calls).
    api_btn = gr.Button(visible=False)
    api_btn.click(on_gpu(ctx, depth, model_at(1)), run_inputs, [files, stats, timing], api_name="depth", preprocess=False,
                  api_description="Estimate depth from one photo: downloads whose values can be recovered "
                  "(16-bit PNG + JSON, float32 .npy, .ply), summary statistics, timings.",
                  **model_event(ctx, "single", batched=True))  # fmt: skip
