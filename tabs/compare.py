"""Compare tab: 2-4 models of one task on the same image, side by side, and how much they agree.

UI only. The comparison (validation, one decode, each model in turn through the task layer,
agreement) is ``model_loaders.tasks.compare``; this module draws it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import gradio as gr
import numpy as np

from model_loaders.core.context import AppContext
from model_loaders.core.registry import DEFAULTS
from model_loaders.core.specs import IMAGE_TASKS as TASKS
from model_loaders.tasks import compare as tc
from model_loaders.tasks.base import models_for
from model_loaders.tasks.compare import METRIC_NAMES, Comparison, ModelRun
from tabs import _render as draw
from tabs._checks import guard_upload, no_image, validator
from tabs._components import ImageInput, example
from tabs._errors import user_errors
from tabs._events import light_event, model_event
from tabs._examples import example_paths
from tabs._gpu import models_at, on_gpu
from tabs._picker import choice_label, picker_note
from tabs._presenter import first_view, input_height

log = logging.getLogger(__name__)

TITLE = "Compare"
STAGES = (("load_ms", "load", "#b0b0b0"), ("preprocess_ms", "preprocess", "#8ecae6"),
          ("inference_ms", "inference", "#219ebc"), ("postprocess_ms", "postprocess", "#023047"))  # fmt: skip
EMPTY = "Upload an image or pick an example, pick 2–4 models and press **Compare**."
SUMMARY_HEADERS = ["model", "licence", "load", "pre", "inference", "post", "run", "result"]
SUMMARY_WIDTHS = ["20%", "14%", "7%", "7%", "12%", "7%", "8%", "25%"]
LATENCY_LABEL = "Latency per model (ms)"


def model_choices(ctx: AppContext, task: str) -> list[tuple[str, str]]:
    """(label, key) for every model that can do ``task`` and run here, home-task models first."""
    ready, _ = models_for(ctx, task)  # type: ignore[arg-type]
    return [(choice_label(s, ctx) + ("" if s.task == task else f" · {s.task} model"), s.key) for s in ready]


def default_models(ctx: AppContext, task: str, n: int = 2) -> list[str]:
    """The task's default model plus the next runnable ones (for the picker's initial value)."""
    runnable = [k for _, k in model_choices(ctx, task)]
    first = DEFAULTS.get(task)  # type: ignore[call-overload]
    ordered = ([first] if first in runnable else []) + [k for k in runnable if k != first]
    return ordered[:n]


def picture(cmp: Comparison, run: ModelRun) -> np.ndarray:
    """What one model produced, drawn on the image (or a colourised depth map)."""
    from model_loaders.tasks.depth_export import colourise

    img = cmp.image.array
    if not run.ok:
        return img
    if cmp.task == "detect":
        return draw.boxes(img, run.result)
    if cmp.task == "depth":
        return colourise(run.result.depth, run.result.kind)
    if cmp.task == "segment":
        return draw.prompts(draw.masks(img, list(run.result.mask)), cmp.points)
    return img


# ----- views ---------------------------------------------------------------------------------


def _run_ms(run: ModelRun) -> float:
    t = run.timings
    return t.preprocess_ms + t.inference_ms + t.postprocess_ms


def _summary(task: str, run: ModelRun) -> str:
    if not run.ok:
        return f"⚠ {run.error}"
    r = run.result
    if task == "detect":
        err = r.metadata.get("parse_error")
        return f"⚠ boxes unreadable: {err}" if err else f"{len(r)} boxes"
    if task == "depth":
        return f"{r.kind.replace('_', ' ')} depth, {float(np.nanmin(r.depth)):.3g}..{float(np.nanmax(r.depth)):.3g}"
    if task == "segment":
        return ", ".join(f"{int(m.sum()):,} px" for m in r.mask)
    return f"{r.tokens} tokens: {r.text[:120]}"


def gallery_items(cmp: Comparison, warning: str) -> list[tuple[np.ndarray, str]]:
    """One picture per model with its name, run time and licence (ask shows the input image)."""
    items = []
    for spec, run in zip(cmp.specs, cmp.runs, strict=True):
        img = picture(cmp, run)
        status = f"{_run_ms(run):,.0f} ms" if run.ok else "failed"
        caption = f"{spec.name} · {status} · {spec.licence}" + (f" · {warning}" if warning else "")
        items.append((img, caption))
    return items


def summary_rows(cmp: Comparison) -> list[list[Any]]:
    """The per-model table: licence, timings and a one-line result."""
    rows = []
    for spec, run in zip(cmp.specs, cmp.runs, strict=True):
        t = run.timings
        rows.append([spec.name, spec.licence, round(t.load_ms, 1), round(t.preprocess_ms, 1), round(t.inference_ms, 1),
                     round(t.postprocess_ms, 1), round(_run_ms(run), 1), _summary(cmp.task, run)])  # fmt: skip
    return rows


def latency_figure(cmp: Comparison) -> Any:
    """Stacked bars per model: load time (grey) kept apart from preprocess/inference/postprocess."""
    import plotly.graph_objects as go

    names = [s.name for s in cmp.specs]
    fig = go.Figure()
    for attr, label, colour in STAGES:
        values = [getattr(r.timings, attr) for r in cmp.runs]
        fig.add_trace(go.Bar(y=names, x=values, name=label, orientation="h", marker_color=colour,
                             hovertemplate="%{y}<br>" + label + ": %{x:.1f} ms<extra></extra>"))  # fmt: skip
    # The block's label is the title (a plotly title sat under it); the legend is above the bars,
    # the axis title below them: nothing overlaps or is cut, at any width.
    fig.update_layout(barmode="stack", xaxis_title="ms · load 0 = already loaded",
                      height=180 + 44 * len(names), margin={"l": 10, "r": 10, "t": 80, "b": 44}, font={"size": 12},
                      legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.02, "yanchor": "bottom"})  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    return fig


NO_AGREEMENT_METRIC = "Free-text answers have no agreement score: read them side by side in the table below."


def _cell(cmp: Comparison, i: int, j: int) -> str:
    """One agreement value as text: the number, or why there is none."""
    v = float(cmp.matrix[i, j])  # type: ignore[index]
    if not math.isnan(v):
        return f"{v:.2f}"
    if cmp.task == "detect" and tc.both_empty(cmp, i, j):
        return "no boxes from either model"
    return "n/a"


def agreement_figure(cmp: Comparison) -> Any:
    """Heatmap of the pairwise agreement; for ask, a sentence saying why there is none."""
    import plotly.graph_objects as go

    if cmp.matrix is None:
        fig = go.Figure()
        fig.add_annotation(text=NO_AGREEMENT_METRIC, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_layout(height=120, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                          xaxis={"visible": False}, yaxis={"visible": False})  # fmt: skip
        return fig
    names = [s.name for s in cmp.specs]
    n = len(names)
    text = [["none" if _cell(cmp, i, j).startswith("no boxes") else _cell(cmp, i, j) for j in range(n)]
            for i in range(n)]  # fmt: skip
    lo = -1.0 if cmp.task == "depth" else 0.0
    fig = go.Figure(go.Heatmap(z=cmp.matrix, x=names, y=names, text=text, texttemplate="%{text}", zmin=lo, zmax=1.0,
                               colorscale="Viridis", hovertemplate="%{y} vs %{x}: %{text}<extra></extra>"))  # fmt: skip
    fig.update_layout(height=170 + 56 * len(names), margin={"l": 10, "r": 10, "t": 48, "b": 10},
                      font={"size": 12})  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    return fig


SHORT_METRICS = {"detect": "box F1 at IoU 0.5", "depth": "aligned Pearson r", "segment": "mean mask IoU"}


def agreement_label(task: str) -> str:
    """The agreement chart's label: the metric it shows, short enough for one line."""
    return f"Agreement ({SHORT_METRICS[task]})" if task in SHORT_METRICS else "Agreement"


def agreement_rows(cmp: Comparison) -> list[list[Any]]:
    """Pairs table: for depth, correlation plus abs-rel in both directions; for ask, answers."""
    if cmp.task == "ask":
        return [[s.name, r.result.tokens if r.ok else "", round(_run_ms(r), 1), r.result.text if r.ok else r.error]
                for s, r in zip(cmp.specs, cmp.runs, strict=True)]  # fmt: skip
    rows = []
    n = len(cmp.specs)
    for i in range(n):
        for j in range(i + 1, n):
            v = cmp.matrix[i, j]  # type: ignore[index]
            row = [cmp.specs[i].name, cmp.specs[j].name, _cell(cmp, i, j) if math.isnan(v) else round(float(v), 4)]
            if cmp.abs_rel is not None:
                row += ["n/a" if math.isnan(x) else round(float(x), 4) for x in (cmp.abs_rel[i, j], cmp.abs_rel[j, i])]
            rows.append(row)
    return rows


def agreement_headers(task: str) -> list[str]:
    """Columns of the pairs table."""
    if task == "ask":
        return ["model", "tokens", "run ms", "answer"]
    head = ["model A", "model B", METRIC_NAMES[task]]
    return head + (["abs-rel (A aligned to B)", "abs-rel (B aligned to A)"] if task == "depth" else [])


def api_payload(ctx: AppContext, cmp: Comparison) -> dict[str, Any]:
    """The ``compare`` endpoint's JSON: per-model results and timings, and the agreement matrix."""
    scale = cmp.image.scale
    models = []
    for spec, run in zip(cmp.specs, cmp.runs, strict=True):
        item: dict[str, Any] = {"key": spec.key, "name": spec.name, "licence": spec.licence,
                                "timings": run.timings.as_dict(), "error": run.error or None}  # fmt: skip
        r = run.result
        if run.ok and cmp.task == "detect":
            names = r.data.get("class_name") if r.data else None
            item["detections"] = [
                {"class": str(names[k]) if names is not None else "object",
                 "score": None if r.confidence is None else round(float(r.confidence[k]), 4),
                 "box": [round(float(v) / scale, 1) for v in r.xyxy[k]]}
                for k in range(len(r))
            ]  # fmt: skip
            item["parse_error"] = r.metadata.get("parse_error")
        elif run.ok and cmp.task == "depth":
            item["depth"] = {"kind": r.kind, "min": float(np.nanmin(r.depth)), "max": float(np.nanmax(r.depth))}
        elif run.ok and cmp.task == "segment":
            item["masks"] = [{"area_px": int(m.sum()), "box": [round(float(v) / scale, 1) for v in b]}
                             for m, b in zip(r.mask, r.xyxy, strict=True)]  # fmt: skip
        elif run.ok:
            item["answer"] = {"text": r.text, "raw": r.raw, "tokens": r.tokens}
        models.append(item)

    def clean(m: np.ndarray | None) -> Any:
        return None if m is None else [[None if math.isnan(v) else round(float(v), 4) for v in row] for row in m]

    return {
        "task": cmp.task,
        "weights_warning": ctx.weights_warning,
        "models": models,
        "agreement": {"metric": METRIC_NAMES[cmp.task] or None, "matrix": clean(cmp.matrix),
                      "abs_rel": clean(cmp.abs_rel)},  # fmt: skip
        "mask_checks": [{"model": c.key, "segmenter": c.segmenter, "metric": "mask IoU, box-prompted",
                         "mean": None if math.isnan(c.mean) else round(c.mean, 4),
                         "ious": [round(v, 4) for v in c.ious]} for c in cmp.mask_checks],  # fmt: skip
        "notes": cmp.notes,
    }


def notes_markdown(ctx: AppContext, cmp: Comparison) -> str:
    """Warnings and per-model problems above the outputs."""
    parts = [f"⚠ **{ctx.weights_warning}**"] if ctx.weights_warning else []
    if cmp.task == "segment":
        parts.append(f"Prompts: {len(cmp.points)} point(s), one mask per point per model.")
    if cmp.notes:
        parts.append("\n".join(f"- {n}" for n in cmp.notes))
    return "\n\n".join(parts)


def views(ctx: AppContext, cmp: Comparison) -> tuple[Any, ...]:
    """(notes, gallery, per-model table, latency chart, agreement chart, pairs table) for a comparison."""
    return (
        notes_markdown(ctx, cmp),
        gallery_items(cmp, ctx.weights_warning),
        gr.Dataframe(value=summary_rows(cmp), headers=SUMMARY_HEADERS),
        latency_figure(cmp),
        gr.Plot(agreement_figure(cmp), label=agreement_label(cmp.task)),
        gr.Dataframe(value=agreement_rows(cmp), headers=agreement_headers(cmp.task)),
    )


# ----- UI ------------------------------------------------------------------------------------


def build(ctx: AppContext) -> None:
    """Render the Compare tab."""
    gr.Markdown(
        "Run 2–4 models of one task on the same image and see, in numbers, where they agree. "
        "Models run one after another, each loaded only while it runs, so a comparison larger than "
        "memory still completes.",
        elem_classes=["intro"],
    )
    with gr.Row():
        with gr.Column(scale=1):
            image = ImageInput(label="Image", type="filepath", sources=["upload", "clipboard"], elem_id="compare-image",
                               height=input_height(ctx))  # fmt: skip
            gr.Examples(example_paths(), inputs=[image], label="Examples", elem_id="compare-examples")
            task = gr.Radio(list(TASKS), value="detect", label="Task", elem_id="compare-task")
            models = gr.Dropdown(model_choices(ctx, "detect"), value=default_models(ctx, "detect"), multiselect=True,
                                 max_choices=tc.MAX_COMPARE, label="Models (2–4)", elem_id="compare-models")  # fmt: skip
            first_note = picker_note(ctx, "detect", None)
            models_note = gr.Markdown(first_note, visible=bool(first_note), elem_id="compare-models-note")
            run_btn = gr.Button("Compare", variant="primary", elem_id="compare-run")
            classes = gr.Textbox(label="Classes (empty: all; open-vocabulary models and VLMs need words)",
                                 placeholder="cat, cup", max_lines=2, elem_id="compare-classes")  # fmt: skip
            confidence = gr.Number(value=None, minimum=0.0, maximum=1.0, step=0.01,
                                   label="Confidence (empty: each detector's own default)",
                                   elem_id="compare-conf")  # fmt: skip
            points = gr.Textbox(label="Points 'x, y; x, y' in image pixels (click the image to add; empty: centre)",
                                visible=False, max_lines=2, elem_id="compare-points")  # fmt: skip
            question = gr.Textbox(value="Describe the image.", label="Question", visible=False, max_lines=3,
                                  elem_id="compare-question")  # fmt: skip
        with gr.Column(scale=2):
            notes = gr.Markdown(EMPTY, elem_id="compare-notes")
            gallery = gr.Gallery(label="Outputs side by side", columns=2, height="auto", object_fit="contain",
                                 elem_id="compare-gallery")  # fmt: skip
            summary = gr.Dataframe(headers=SUMMARY_HEADERS, interactive=False, wrap=True, column_widths=SUMMARY_WIDTHS,
                                   label="Per model (times in ms; run = pre + inference + post)",
                                   elem_id="compare-summary")  # fmt: skip
            with gr.Row():
                latency = gr.Plot(label=LATENCY_LABEL, elem_id="compare-latency")
                heatmap = gr.Plot(label=agreement_label("detect"), elem_id="compare-heatmap")
            pairs = gr.Dataframe(headers=agreement_headers("detect"), interactive=False, wrap=True,
                                 label="Agreement per pair", elem_id="compare-pairs")  # fmt: skip
    api_models = example(gr.Textbox(visible=False, label="models", value=",".join(default_models(ctx, "detect"))),
                         ",".join(default_models(ctx, "detect")))  # fmt: skip
    api_prompt = example(gr.Textbox(visible=False, label="prompt"), "cat, cup")
    example(task, "detect")
    api_points = example(gr.Textbox(visible=False, label="points"), "")
    api_json = gr.JSON(visible=False, label="comparison")
    api_btn = gr.Button(visible=False)

    @user_errors
    def on_compare(img: Any, t: Any, keys: Any, cls: Any, conf: Any, pts: Any, q: Any) -> tuple[Any, ...]:
        return views(ctx, tc.compare(ctx, img, t, keys, cls, conf, pts, q))

    @user_errors
    def on_task(t: Any) -> tuple[Any, ...]:
        t = str(t) if t in TASKS else "detect"
        note = picker_note(ctx, t, None)  # type: ignore[arg-type]
        return (
            gr.Dropdown(choices=model_choices(ctx, t), value=default_models(ctx, t)),
            gr.Markdown(note, visible=bool(note)),
            gr.Textbox(visible=t == "detect"),
            gr.Number(visible=t == "detect"),
            gr.Textbox(visible=t == "segment"),
            gr.Textbox(visible=t == "ask"),
        )

    def on_click(current: Any, evt: gr.SelectData) -> str:
        x, y = (int(v) for v in evt.index[:2])
        current = str(current or "").strip()
        return (current + "; " if current else "") + f"{x}, {y}"

    @user_errors
    def compare(image: Any, task: Any, models: Any, prompt: Any, confidence: Any, points: Any) -> dict[str, Any]:
        """Compare 2-4 models of one task on the same image, and how much they agree.

        Args:
            image: the image.
            task: segment, depth, detect or ask.
            models: comma-separated model keys, e.g. depth-anything-v2-small,depth-anything-v2-base.
            prompt: the classes to find (detect) or the question (ask).
            confidence: a detection threshold for every model, or null for each model's own default.
            points: 'x, y; x, y' in image pixels (segment; empty: the image centre).

        Returns:
            Per-model results (boxes in the image's pixels), timings and licences, and the pairwise
            agreement matrix.
        """
        prompt_text = prompt if prompt is not None else ""
        question = prompt_text if str(task) == "ask" and str(prompt_text).strip() else "Describe the image."
        classes = prompt_text if task == "detect" else ""
        cmp = tc.compare(ctx, image, task, models, classes, confidence, points, question)
        return api_payload(ctx, cmp)

    def check_compare(img: Any, t: Any, keys: Any, cls: Any, conf: Any, pts: Any, q: Any) -> dict[str, str | None]:
        found = tc.problems(ctx, t, keys, cls, conf, q)
        return {"img": no_image(img), "keys": found.get("models"), "cls": found.get("classes"),
                "conf": found.get("confidence"), "q": found.get("question")}  # fmt: skip

    first_view(ctx, [image, notes, gallery, summary, latency, heatmap, pairs],
               lambda: tc.compare(ctx, example_paths()[0], "detect", default_models(ctx, "detect")),
               lambda cmp: (example_paths()[0], *views(ctx, cmp)))  # fmt: skip
    guard_upload(ctx, image)
    gr.on([run_btn.click, classes.submit, question.submit], on_gpu(ctx, on_compare, models_at(2, task_at=1)),
          [image, task, models, classes, confidence, points, question],
          [notes, gallery, summary, latency, heatmap, pairs], api_visibility="private", preprocess=False,
          validator=validator(check_compare), **model_event(ctx, "long", notes))  # fmt: skip
    task.change(on_task, [task], [models, models_note, classes, confidence, points, question], api_visibility="private",
                **light_event())  # fmt: skip
    image.select(on_click, [points], [points], api_visibility="private", **light_event())
    api_btn.click(on_gpu(ctx, compare, models_at(2, task_at=1)), [image, task, api_models, api_prompt, confidence, api_points], [api_json],
                  api_name="compare", api_description="Compare 2-4 models of one task on the same image: results, "
                  "timings, licences and how much they agree.", preprocess=False,
                  **model_event(ctx, "long"))  # fmt: skip
