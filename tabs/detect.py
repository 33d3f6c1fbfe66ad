"""Detect tab: closed-set detectors (RF-DETR, D-FINE, RT-DETRv2, YOLOv12) and open-vocabulary ones.

The model runs once per click at a low internal threshold; its raw detections are kept in this
session's ``gr.State`` and the confidence / IoU / class-filter controls re-filter them without
running the model again. API endpoint ``detect``: image, model key, confidence, IoU, classes
(closed set: a comma-separated class filter; open vocabulary: the classes to find) ->
detections JSON + annotated image.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np

from model_loaders.core.context import AppContext
from model_loaders.core.detections import COCO_CLASSES
from model_loaders.core.errors import InputError
from model_loaders.core.images import decode_image
from model_loaders.core.registry import DEFAULTS, REGISTRY, get_spec
from model_loaders.core.results import Timings
from model_loaders.core.specs import ModelSpec
from model_loaders.tasks import detection_utils as du
from tabs._components import ImageInput
from tabs._errors import user_errors
from tabs._events import LIGHT_EVENT, MODEL_EVENT
from tabs._examples import example_paths
from tabs._validate import clean_text, finite_number

TITLE = "Detect"
log = logging.getLogger(__name__)

FAMILIES = ("hf_detector", "zero_shot_detector", "yolo")
OPEN_VOCAB_FAMILY = "zero_shot_detector"
CONF_DEFAULT = 0.25
IOU_DEFAULT = 0.7
MAX_PROMPT_CHARS = 10_000
TABLE_HEADERS = ["class", "score", "x1", "y1", "x2", "y2"]


@dataclass
class RawRun:
    """One model run kept per session: the raw detections and what is needed to re-render them."""

    key: str
    name: str
    detections: Any  # sv.Detections at working size, scores >= RAW_FLOOR
    image: np.ndarray
    scale: float
    original_size: tuple[int, int]
    classes: tuple[str, ...]
    open_vocabulary: bool
    timings: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    warning: str = ""


@dataclass
class Rendered:
    """Everything shown for one filtering of a run."""

    annotated: np.ndarray
    records: list[dict[str, Any]]
    counts: dict[str, int]
    info: dict[str, Any]
    notes: list[str]


def detect_specs() -> list[ModelSpec]:
    """Models this tab offers, in registry order."""
    return [s for s in REGISTRY.values() if s.family in FAMILIES and "detect" in s.tasks]


def model_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """Dropdown (label, key) pairs; models that cannot run here say why in their label."""
    out = []
    for s in detect_specs():
        avail = ctx.availability(s)
        tag = "open vocabulary · " if s.family == OPEN_VOCAB_FAMILY else ""
        label = f"{s.name} · {tag}{s.licence}" + ("" if avail.ok else f" · {avail.status}")
        out.append((label, s.key))
    return out


def model_note(ctx: AppContext, key: str) -> str:
    """One line under the picker: licence, commercial use, and availability."""
    spec = get_spec(key)
    avail = ctx.availability(spec)
    parts = [f"**{spec.name}** · licence [{spec.licence}]({spec.licence_url})"]
    if spec.commercial != "yes":
        parts.append(spec.commercial_note or f"commercial use: {spec.commercial}")
    if not avail.ok:
        parts.append(f"⚠ {avail.reason}")
    return " · ".join(parts)


# ----- validation ---------------------------------------------------------------------------


def _thresholds(confidence: Any, iou: Any) -> tuple[float, float]:
    conf = finite_number(confidence, "Confidence", 0.0, 1.0)
    return conf, finite_number(iou, "IoU", 0.0, 1.0)


def _detect_spec(key: Any) -> ModelSpec:
    if not isinstance(key, str):
        raise InputError("Please pick a model.")
    spec = get_spec(key)
    if spec.family not in FAMILIES:
        raise InputError(f"{spec.name} is not a detector in this tab.")
    return spec


# ----- the model run and the re-filter (UI-free logic, tested directly) ----------------------


def run_model(ctx: AppContext, image: Any, key: Any, prompt: Any, class_filter: Any) -> tuple[RawRun, list[str]]:
    """Validate inputs, run the detector once, and keep its raw detections.

    Returns:
        (run, class_filter): the run and the validated class filter names.

    Raises:
        InputError / ModelUnavailable: with a message for the user.
    """
    spec = _detect_spec(key)
    open_vocab = spec.family == OPEN_VOCAB_FAMILY
    notes: list[str] = []
    prompt_classes: list[str] | None = None
    if open_vocab:
        text = clean_text(prompt, "The classes to find", MAX_PROMPT_CHARS)
        prompt_classes, notes = du.parse_prompt(text)
    if image is None:
        raise InputError("Please upload an image (or pick an example).")
    decoded = decode_image(image, gate=ctx.uploads)
    notes = list(decoded.notes) + notes
    timings = Timings()
    with ctx.use(spec.key, timings) as bundle:
        classes = tuple(prompt_classes) if open_vocab else tuple(bundle.class_names)
        wanted = du.parse_class_filter(class_filter, classes)  # before the model runs
        raw = bundle.detect(decoded.array, timings, prompt_classes)
    dropped = raw.metadata.get("dropped_classes") or []
    if dropped:
        notes.append(f"These classes did not fit in the model's text limit and were not searched: {', '.join(dropped)}.")
    raw.metadata.update(model=spec.key, timings=timings.as_dict())
    run = RawRun(
        key=spec.key,
        name=spec.name,
        detections=raw,
        image=decoded.array,
        scale=decoded.scale,
        original_size=decoded.original_size,
        classes=classes,
        open_vocabulary=open_vocab,
        timings=timings.as_dict(),
        notes=notes,
        warning=ctx.weights_warning,
    )
    return run, wanted


def render(run: RawRun, confidence: float, iou: float, classes: list[str]) -> Rendered:
    """Filter a kept run at the user's settings and draw it (no model call)."""
    start = time.perf_counter()
    filtered = du.filter_detections(run.detections, confidence, iou, classes)
    annotated = du.annotate(run.image, filtered.detections, run.classes)
    records = du.to_records(filtered.detections, run.scale)
    filter_ms = (time.perf_counter() - start) * 1000.0
    notes = run.notes + filtered.notes
    w, h = run.original_size
    info = {
        "model": run.key,
        "weights": run.timings.get("weights", ""),
        "warning": run.warning,
        "image": {"width": w, "height": h},
        "confidence": confidence,
        "iou": iou,
        "class_filter": classes,
        "classes": list(run.classes) if run.open_vocabulary else None,
        "count": len(records),
        "counts": filtered.counts,
        "timings": {**run.timings, "filter_ms": round(filter_ms, 1)},
        "notes": notes,
    }
    return Rendered(annotated, records, filtered.counts, info, notes)


def timing_line(info: dict[str, Any], name: str) -> str:
    """The timing line shown under the result."""
    t = info["timings"]
    line = (
        f"preprocess {t['preprocess_ms']:.0f} ms · inference {t['inference_ms']:.0f} ms · "
        f"postprocess {t['postprocess_ms']:.0f} ms · filter {t['filter_ms']:.0f} ms · "
        f"device `{t['device']}` · model **{name}** (`{info['model']}`) · weights `{t['weights']}`"
    )
    if t.get("load_ms", 0) >= 1:
        line += f" · load {t['load_ms']:.0f} ms"
    if info["warning"]:
        line += f"\n\n⚠ **{info['warning']}**"
    return line


def counts_figure(counts: dict[str, int], classes: tuple[str, ...]) -> Any:
    """Plotly bar chart of detections per class, bars coloured like the boxes."""
    import plotly.graph_objects as go

    colours = du.class_colors(classes)
    names = list(counts)
    fig = go.Figure(
        go.Bar(x=names, y=[counts[n] for n in names], marker_color=[colours.get(n, "#888888") for n in names])
    )
    fig.update_layout(
        title="Detections per class" if names else "No detections",
        xaxis_title="class",
        yaxis_title="count",
        height=320,
        margin={"l": 40, "r": 10, "t": 40, "b": 40},
    )
    return fig


def write_exports(ctx: AppContext, run: RawRun, rendered: Rendered) -> list[str]:
    """Write detections.json, detections.csv and detections_coco.json; return their paths."""
    folder = ctx.outputs.new_dir("detect")
    w, h = run.original_size
    coco_classes = run.classes
    files = {
        "detections.json": du.to_json(rendered.records, rendered.info),
        "detections.csv": du.to_csv(rendered.records),
        "detections_coco.json": du.to_coco(rendered.records, coco_classes, w, h),
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return [str(folder / n) for n in files]


def _table(records: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r["class"], r["score"], *r["box"]] for r in records]


def _outputs(ctx: AppContext, run: RawRun, confidence: float, iou: float, classes: list[str]) -> tuple[Any, ...]:
    rendered = render(run, confidence, iou, classes)
    note = "\n\n".join(rendered.notes)
    return (
        rendered.annotated,
        _table(rendered.records),
        counts_figure(rendered.counts, run.classes),
        write_exports(ctx, run, rendered),
        timing_line(rendered.info, run.name) + (f"\n\n{note}" if note else ""),
    )


# ----- Gradio handlers ----------------------------------------------------------------------


def make_handlers(ctx: AppContext) -> dict[str, Any]:
    """The tab's event handlers, bound to ``ctx`` (exposed for tests)."""

    @user_errors
    def on_detect(image: Any, key: Any, confidence: Any, iou: Any, classes: Any, prompt: Any) -> tuple[Any, ...]:
        conf, iou_v = _thresholds(confidence, iou)
        run, wanted = run_model(ctx, image, key, prompt, classes)
        outs = _outputs(ctx, run, conf, iou_v, wanted)
        filter_update = gr.update(choices=list(run.classes), value=wanted)
        return (*outs, run, filter_update)

    @user_errors
    def on_refilter(run: RawRun | None, confidence: Any, iou: Any, classes: Any) -> tuple[Any, ...]:
        if run is None:  # nothing detected yet: the controls only set up the next run
            return tuple(gr.skip() for _ in range(5))
        conf, iou_v = _thresholds(confidence, iou)
        wanted = du.parse_class_filter(classes, run.classes)
        return _outputs(ctx, run, conf, iou_v, wanted)

    @user_errors
    def on_model_change(key: Any) -> tuple[Any, ...]:
        spec = _detect_spec(key)
        open_vocab = spec.family == OPEN_VOCAB_FAMILY
        choices = [] if open_vocab else list(COCO_CLASSES)
        return (
            gr.update(visible=open_vocab),
            gr.update(choices=choices, value=[]),
            model_note(ctx, spec.key),
            None,  # the kept run belongs to the previous model
        )

    @user_errors
    def api_detect(image: Any, model: Any, confidence: Any, iou: Any, classes: Any) -> tuple[dict[str, Any], Any]:
        """Detect objects: image, model key, confidence, IoU, classes -> detections JSON + annotated image.

        ``classes``: for closed-set models, an optional comma-separated class filter; for
        open-vocabulary models (OWLv2, Grounding DINO), the classes to find.
        """
        conf, iou_v = _thresholds(confidence, iou)
        spec = _detect_spec(model)
        if spec.family == OPEN_VOCAB_FAMILY:
            run, wanted = run_model(ctx, image, model, classes, None)
        else:
            if classes is not None and not isinstance(classes, str):
                raise InputError("classes must be text (comma-separated class names).")
            run, wanted = run_model(ctx, image, model, None, classes)
        rendered = render(run, conf, iou_v, wanted)
        return {**rendered.info, "detections": rendered.records}, rendered.annotated

    return {"detect": on_detect, "refilter": on_refilter, "model_change": on_model_change, "api": api_detect}


def build(ctx: AppContext) -> None:
    """Render the Detect tab."""
    h = make_handlers(ctx)
    default = DEFAULTS["detect"]
    default_spec = get_spec(default)
    state = gr.State(None)
    gr.Markdown(
        "Find objects with real-time detectors, or type the classes for an open-vocabulary model. "
        "The model runs once; moving the sliders or the class filter re-filters its boxes instantly."
    )
    with gr.Row():
        with gr.Column(scale=1):
            image = ImageInput(label="Image", type="filepath", sources=["upload", "clipboard"], elem_id="detect-image")
            gr.Examples(example_paths(), inputs=[image], label="Examples", elem_id="detect-examples")
            model = gr.Dropdown(
                model_choices(ctx), value=default, label="Model", elem_id="detect-model", filterable=True
            )
            note = gr.Markdown(model_note(ctx, default), elem_id="detect-model-note")
            prompt = gr.Textbox(
                label="Classes to find (comma-separated)",
                placeholder="book, mug, laptop",
                visible=default_spec.family == OPEN_VOCAB_FAMILY,
                max_lines=3,
                elem_id="detect-prompt",
            )
            confidence = gr.Slider(0.0, 1.0, value=CONF_DEFAULT, step=0.01, label="Confidence", elem_id="detect-conf")
            iou = gr.Slider(0.0, 1.0, value=IOU_DEFAULT, step=0.01, label="IoU (NMS)", elem_id="detect-iou")
            class_filter = gr.Dropdown(
                list(COCO_CLASSES),
                value=[],
                multiselect=True,
                label="Show only these classes (empty: all)",
                elem_id="detect-classes",
            )
            run_btn = gr.Button("Detect", variant="primary", elem_id="detect-run")
        with gr.Column(scale=1):
            annotated = gr.Image(label="Detections", type="numpy", interactive=False, elem_id="detect-output")
            info = gr.Markdown(elem_id="detect-info")
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
    api_classes = gr.Textbox(visible=False)
    api_json = gr.JSON(visible=False, label="detections")
    api_image = gr.Image(visible=False, type="numpy", label="annotated image")
    api_btn = gr.Button(visible=False)

    view = [annotated, table, chart, files, info]
    run_btn.click(
        h["detect"],
        [image, model, confidence, iou, class_filter, prompt],
        [*view, state, class_filter],
        api_visibility="private",
        preprocess=False,
        **MODEL_EVENT,
    )
    for trigger in (confidence.release, iou.release, class_filter.change):
        trigger(
            h["refilter"],
            [state, confidence, iou, class_filter],
            view,
            api_visibility="private",
            preprocess=False,
            show_progress="hidden",
            **LIGHT_EVENT,
        )
    model.change(
        h["model_change"], [model], [prompt, class_filter, note, state], api_visibility="private", **LIGHT_EVENT
    )
    api_btn.click(
        h["api"],
        [image, model, confidence, iou, api_classes],
        [api_json, api_image],
        api_name="detect",
        preprocess=False,
        **MODEL_EVENT,
    )
