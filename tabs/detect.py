"""Detect tab: detectors that score their boxes, closed-set or open-vocabulary (UI only).

The model runs once per click (``model_loaders.tasks.detect.run``); its raw boxes stay in the
session's state and the confidence / IoU / class-filter controls re-filter them without running
the model again. Thresholds start at the chosen model's own defaults (its spec). API endpoint
``detect``: image, model, confidence, iou, classes -> detections JSON + annotated image.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gradio as gr

from model_loaders.core.context import AppContext
from model_loaders.core.errors import InputError
from model_loaders.core.registry import DEFAULTS, get_spec
from model_loaders.core.specs import ModelSpec, Thresholds
from model_loaders.core.validate import finite_number
from model_loaders.tasks import detect as td
from tabs import _render as draw
from tabs._checks import guard_upload, model_problem, no_image, problem, validator
from tabs._components import ImageInput, example
from tabs._errors import user_errors
from tabs._events import light_event, model_event
from tabs._examples import example_paths
from tabs._gpu import model_at, on_gpu
from tabs._picker import model_picker
from tabs._presenter import first_view, input_height
from tabs._timing import timing_line

TITLE = "Detect"
log = logging.getLogger(__name__)

TABLE_HEADERS = ["class", "score", "x1", "y1", "x2", "y2"]


def offered(spec: ModelSpec) -> bool:
    """This tab offers detectors that score their boxes (VLM grounding is in Ask and Compare)."""
    return spec.scores_boxes


def thresholds(confidence: Any, iou: Any) -> tuple[float, float]:
    """Validated (confidence, IoU)."""
    return finite_number(confidence, "Confidence", 0.0, 1.0), finite_number(iou, "IoU", 0.0, 1.0)


EMPTY = "Upload an image or pick an example, then press **Detect**."
NO_BOXES = "No boxes at this confidence: lower it, clear the class filter, or try other classes."


def counts_figure(counts: dict[str, int], classes: tuple[str, ...]) -> Any:
    """Plotly bar chart of detections per class, bars coloured like the boxes; a sentence when empty."""
    import plotly.graph_objects as go

    colours = draw.class_colours(classes)
    names = list(counts)
    if not names:
        fig = go.Figure()
        fig.add_annotation(text=NO_BOXES, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                           font={"size": 14})  # fmt: skip
        fig.update_layout(height=120, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                          xaxis={"visible": False}, yaxis={"visible": False})  # fmt: skip
        return fig
    fig = go.Figure(
        go.Bar(x=names, y=[counts[n] for n in names], marker_color=[colours.get(n, "#888888") for n in names])
    )
    fig.update_layout(
        title={"text": "Detections per class", "x": 0.0, "xanchor": "left"},
        xaxis_title="class",
        yaxis_title="count",
        height=320,
        margin={"l": 50, "r": 10, "t": 40, "b": 50},
    )
    return fig


def outputs_for(ctx: AppContext, run: td.DetectRun, confidence: float, iou: float, class_filter: Any) -> tuple[Any, ...]:
    """Everything shown for one filtering of a run: image, table, chart, downloads, timing line."""
    start = time.perf_counter()
    wanted = td.parse_class_filter(class_filter, run.classes)
    shown = td.filtered(run, confidence, iou, wanted)
    info = td.summary(run, shown, confidence, iou, wanted)
    annotated = draw.boxes(run.image, shown.detections, run.classes)
    filter_ms = (time.perf_counter() - start) * 1000.0
    table = [[r["class"], r["score"], *r["box"]] for r in info["detections"]]
    line = timing_line(ctx, run.timings, lead=[f"filter {filter_ms:,.0f} ms"])
    note = "\n\n".join(info["notes"])
    return annotated, table, counts_figure(shown.counts, run.classes), td.write_exports(ctx, run, info), \
        line + (f"\n\n{note}" if note else "")  # fmt: skip


def make_handlers(ctx: AppContext) -> dict[str, Any]:
    """The tab's event handlers, bound to ``ctx`` (exposed for tests)."""

    @user_errors
    def on_detect(image: Any, model: Any, confidence: Any, iou: Any, classes: Any, prompt: Any) -> tuple[Any, ...]:
        conf, iou_v = thresholds(confidence, iou)
        run = td.run(ctx, image, model, prompt)
        wanted = td.parse_class_filter(classes, run.classes)
        outs = outputs_for(ctx, run, conf, iou_v, wanted)
        return (*outs, run, gr.update(choices=list(run.classes), value=wanted))

    @user_errors
    def on_refilter(run: td.DetectRun | None, confidence: Any, iou: Any, classes: Any) -> tuple[Any, ...]:
        if run is None:  # nothing detected yet: the controls only set up the next run
            return tuple(gr.skip() for _ in range(5))
        conf, iou_v = thresholds(confidence, iou)
        return outputs_for(ctx, run, conf, iou_v, classes)

    @user_errors
    def on_model_change(key: Any) -> tuple[Any, ...]:
        spec = td.detect_spec(ctx, key)
        defaults = spec.thresholds
        return (
            gr.update(visible=spec.open_vocabulary),
            gr.update(choices=list(td.known_classes(spec)), value=[]),
            gr.update(value=defaults.confidence) if defaults else gr.skip(),
            gr.update(value=defaults.iou) if defaults else gr.skip(),
            None,  # the kept run belongs to the previous model
        )

    @user_errors
    def detect(image: Any, model: Any, confidence: Any, iou: Any, classes: Any) -> tuple[dict[str, Any], Any]:
        """Find objects in an image with a detector.

        Args:
            image: the image.
            model: the detector's registry key, e.g. rf-detr-medium (80 COCO classes) or owlv2-base
                (open vocabulary: finds what ``classes`` names).
            confidence: hide boxes scoring below this (0 to 1).
            iou: per-class overlap above which the weaker box is dropped (0 to 1).
            classes: comma-separated class names: the classes to find for open-vocabulary models,
                an optional filter for the others.

        Returns:
            The detections (class, score, box in the image's pixels) with counts, timings and
            notes; and the image with the boxes drawn.
        """
        conf, iou_v = thresholds(confidence, iou)
        spec = td.detect_spec(ctx, model)
        if classes is not None and not isinstance(classes, str):
            raise InputError("classes must be text (comma-separated class names).")
        run = td.run(ctx, image, spec.key, classes if spec.open_vocabulary else None)
        wanted = [] if spec.open_vocabulary else td.parse_class_filter(classes, run.classes)
        shown = td.filtered(run, conf, iou_v, wanted)
        info = td.summary(run, shown, conf, iou_v, wanted)
        return {**info, "warning": ctx.weights_warning}, draw.boxes(run.image, shown.detections, run.classes)

    return {"detect": on_detect, "refilter": on_refilter, "model_change": on_model_change, "api": detect}


def build(ctx: AppContext) -> None:
    """Render the Detect tab."""
    h = make_handlers(ctx)
    state = gr.State(None)
    gr.Markdown(
        "Find objects with real-time detectors, or type the classes for an open-vocabulary model. "
        "The model runs once; moving the sliders or the class filter re-filters its boxes instantly.",
        elem_classes=["intro"],
    )
    with gr.Row():
        with gr.Column(scale=1):
            image = ImageInput(label="Image", type="filepath", sources=["upload", "clipboard"], elem_id="detect-image",
                               height=input_height(ctx))  # fmt: skip
            gr.Examples(example_paths(), inputs=[image], label="Examples", elem_id="detect-examples")
            picked = model_picker(ctx, "detect", where=offered, elem_id="detect-model", filterable=True)
            model = picked.dropdown
            first = get_spec(model.value) if isinstance(model.value, str) else get_spec(DEFAULTS["detect"])
            defaults = first.thresholds or Thresholds()
            prompt = gr.Textbox(
                label="Classes to find (comma-separated)",
                placeholder="book, mug, laptop",
                visible=first.open_vocabulary,
                max_lines=3,
                elem_id="detect-prompt",
            )
            run_btn = gr.Button("Detect", variant="primary", elem_id="detect-run")
            confidence = gr.Slider(0.0, 1.0, value=defaults.confidence, step=0.01, label="Confidence",
                                   elem_id="detect-conf")  # fmt: skip
            iou = gr.Slider(0.0, 1.0, value=defaults.iou, step=0.01, label="IoU (NMS)", elem_id="detect-iou")
            class_filter = gr.Dropdown(
                list(td.known_classes(first)),
                value=[],
                multiselect=True,
                label="Show only these classes (empty: all)",
                elem_id="detect-classes",
            )
        with gr.Column(scale=1):
            annotated = gr.Image(label="Detections", type="numpy", interactive=False, elem_id="detect-output")
            info = gr.Markdown(EMPTY, elem_id="detect-info")
            table = gr.Dataframe(
                headers=TABLE_HEADERS,
                datatype=["str", "number", "number", "number", "number", "number"],
                interactive=False,
                label="Detections (boxes in original-image pixels)",
                elem_id="detect-table",
            )
            chart = gr.Plot(label="Counts per class", elem_id="detect-chart")
            files = gr.File(label="Download (JSON, CSV, COCO JSON)", file_count="multiple", elem_id="detect-files")
    # API-only parts: the classes string and the outputs of the `detect` endpoint.
    api_classes = example(gr.Textbox(visible=False, label="classes"), "")
    api_json = gr.JSON(visible=False, label="detections")
    api_image = gr.Image(visible=False, type="numpy", label="annotated image")
    api_btn = gr.Button(visible=False)

    def check_run(image: Any, model: Any, confidence: Any, iou: Any, classes: Any, prompt: Any) -> dict[str, str | None]:
        found = {"image": no_image(image), "model": model_problem(ctx, "detect", model)}
        if found["model"] is None and td.detect_spec(ctx, model).open_vocabulary:
            found["prompt"] = problem(lambda: td.parse_prompt(prompt if isinstance(prompt, str) else ""))
        return found

    view = [annotated, table, chart, files, info]
    run_inputs = [image, model, confidence, iou, class_filter, prompt]
    # Uploads and examples only fill the input; the button (or Enter in the classes box) runs.
    guard_upload(ctx, image)
    gr.on([run_btn.click, prompt.submit], on_gpu(ctx, h["detect"], model_at(1)), run_inputs, [*view, state, class_filter],
          api_visibility="private", preprocess=False, validator=validator(check_run),
          **model_event(ctx, "single", info))  # fmt: skip
    # Sliders re-filter while dragging and as a value is typed (Enter included); the filter at once.
    gr.on([confidence.input, iou.input, class_filter.input], h["refilter"], [state, confidence, iou, class_filter],
          view, api_visibility="private", preprocess=False, **light_event(info, trigger_mode="always_last"))  # fmt: skip
    model.change(h["model_change"], [model], [prompt, class_filter, confidence, iou, state], api_visibility="private",
                 **light_event(info))  # fmt: skip

    def present(run: td.DetectRun) -> tuple[Any, ...]:
        """Presenter mode: the first example, already run, as this page opens."""
        return (example_paths()[0], *outputs_for(ctx, run, defaults.confidence, defaults.iou, []), run,
                gr.update(choices=list(run.classes), value=[]))  # fmt: skip

    first_view(ctx, [image, *view, state, class_filter], lambda: td.run(ctx, example_paths()[0], model.value),
               present)  # fmt: skip
    api_btn.click(
        on_gpu(ctx, h["api"], model_at(1)),
        [image, model, confidence, iou, api_classes],
        [api_json, api_image],
        api_name="detect",
        api_description="Find objects in an image: boxes with classes and scores (closed-set detectors), or "
        "the classes you name (open-vocabulary detectors).",
        preprocess=False,
        **model_event(ctx, "single", batched=True),
    )

