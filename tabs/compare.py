"""Compare tab: 2-4 models of one task on the same image, side by side, and how much they agree.

UI only. Models run one after another through the shared cache (``model_loaders.tasks.runners``),
each pinned only while it runs; agreement metrics live in ``model_loaders.tasks.agreement``.
The image is decoded once per comparison.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np

from model_loaders.core.context import AppContext
from model_loaders.core.errors import InputError
from model_loaders.core.images import DecodedImage, decode_image
from model_loaders.core.registry import DEFAULTS, specs_for_task
from model_loaders.core.specs import TASKS, ModelSpec
from model_loaders.tasks import agreement, runners
from tabs._components import ImageInput
from tabs._errors import user_errors
from tabs._events import LIGHT_EVENT, MODEL_EVENT
from tabs._examples import example_paths
from tabs._validate import clean_text, finite_number

log = logging.getLogger(__name__)

TITLE = "Compare"
MAX_POINTS = 8
MAX_QUESTION_CHARS = 2000
MAX_CLASSES_CHARS = 500
ASK_MAX_NEW_TOKENS = 64
METRIC_NAMES = {
    "detect": "matched-box F1 at IoU 0.5",
    "depth": "Pearson correlation after scale-and-shift alignment",
    "segment": "mean mask IoU over the same point prompts",
    "ask": "",
}
STAGES = (("load_ms", "load", "#b0b0b0"), ("preprocess_ms", "preprocess", "#8ecae6"),
          ("inference_ms", "inference", "#219ebc"), ("postprocess_ms", "postprocess", "#023047"))  # fmt: skip
SUMMARY_HEADERS = ["model", "licence", "load ms", "pre ms", "inference ms", "post ms", "run ms (no load)", "result"]


# ----- rendering helpers (also used by the Workflow tab) ----------------------------------------


def draw_detections(image: np.ndarray, det: Any) -> np.ndarray:
    """Boxes with "class score" labels (just the class for VLM boxes, which have no score)."""
    import supervision as sv

    scene = np.array(image, copy=True)
    if det is None or len(det) == 0:
        return scene
    names = det.data.get("class_name") if det.data else None
    names = [str(n) for n in names] if names is not None else ["object"] * len(det)
    labels = [n if det.confidence is None else f"{n} {float(s):.2f}" for n, s in
              zip(names, det.confidence if det.confidence is not None else [0.0] * len(det), strict=True)]  # fmt: skip
    colour = sv.Detections(xyxy=det.xyxy, class_id=np.arange(len(det)))
    thickness = max(1, round(max(image.shape[:2]) / 400))
    scene = sv.BoxAnnotator(thickness=thickness, color_lookup=sv.ColorLookup.INDEX).annotate(scene, colour)
    return sv.LabelAnnotator(text_scale=max(0.4, max(image.shape[:2]) / 1400), smart_position=True,
                             color_lookup=sv.ColorLookup.INDEX).annotate(scene, colour, labels=labels)  # fmt: skip


def draw_masks(image: np.ndarray, det: Any, points: list[tuple[float, float]]) -> np.ndarray:
    """Masks (one colour per prompt) and the prompt points."""
    import supervision as sv

    scene = np.array(image, copy=True)
    if det is not None and len(det):
        colour = sv.Detections(xyxy=det.xyxy, mask=det.mask, class_id=np.arange(len(det)))
        scene = sv.MaskAnnotator(opacity=0.5, color_lookup=sv.ColorLookup.INDEX).annotate(scene, colour)
    import cv2

    r = max(3, round(max(image.shape[:2]) / 150))
    for x, y in points:
        cv2.circle(scene, (int(round(x)), int(round(y))), r, (255, 255, 255), -1)
        cv2.circle(scene, (int(round(x)), int(round(y))), r, (0, 0, 0), max(1, r // 3))
    return scene


# ----- choices ---------------------------------------------------------------------------------


def model_choices(ctx: AppContext, task: str) -> list[tuple[str, str]]:
    """(label, key) for every model that can do ``task``, home-task models first."""
    out = []
    for s in specs_for_task(task):  # type: ignore[arg-type]
        avail = ctx.availability(s)
        other = "" if s.task == task else f" · {s.task} model"
        out.append((f"{s.name} · {s.licence}{other}" + ("" if avail.ok else f" · {avail.status}"), s.key))
    return out


def default_models(ctx: AppContext, task: str, n: int = 2) -> list[str]:
    """The task's default model plus the next runnable ones (for the picker's initial value)."""
    runnable = [s.key for s in specs_for_task(task) if ctx.availability(s).ok]  # type: ignore[arg-type]
    first = DEFAULTS.get(task)  # type: ignore[call-overload]
    ordered = ([first] if first in runnable else []) + [k for k in runnable if k != first]
    return ordered[:n]


# ----- the comparison (UI-free logic, tested directly) ----------------------------------------------


@dataclass
class Comparison:
    """Everything the tab and the API show for one comparison."""

    task: str
    specs: list[ModelSpec]
    runs: list[runners.ModelRun]
    image: DecodedImage
    points: list[tuple[float, float]] = field(default_factory=list)
    matrix: np.ndarray | None = None
    abs_rel: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def _models(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    raise InputError("Models must be a list of model keys.")


def parse_points(text: Any, decoded: DecodedImage) -> list[tuple[float, float]]:
    """``"x, y; x, y"`` in original-image pixels -> working-image points (image centre if empty).

    Raises:
        InputError: malformed, non-finite, outside the image, or too many points.
    """
    raw = clean_text(text, "Points", 400)
    if not raw:
        w, h = decoded.size
        return [(w / 2.0, h / 2.0)]
    pts = []
    ow, oh = decoded.original_size
    for part in [p for p in raw.replace("\n", ";").split(";") if p.strip()]:
        xy = [v.strip() for v in part.replace("(", "").replace(")", "").split(",")]
        if len(xy) != 2:
            raise InputError(f"Points are written as 'x, y; x, y' (got {part.strip()[:40]!r}).")
        x = finite_number(xy[0], "Point x", 0, ow)
        y = finite_number(xy[1], "Point y", 0, oh)
        pts.append(decoded.to_working(x, y))
    if len(pts) > MAX_POINTS:
        raise InputError(f"Too many points ({len(pts)}; max {MAX_POINTS}).")
    return pts


def _usable(run: runners.ModelRun, task: str) -> bool:
    if not run.ok:
        return False
    return not (task == "detect" and run.result.metadata.get("parse_error"))


def compute_agreement(task: str, runs: list[runners.ModelRun]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Pairwise agreement matrix for ``task`` (NaN for models without a usable result).

    Returns:
        (matrix, abs_rel): ``abs_rel`` only for depth (row map aligned to column map).
    """
    n = len(runs)
    if task == "ask":
        return None, None
    matrix = np.full((n, n), np.nan)
    abs_rel = np.full((n, n), np.nan) if task == "depth" else None
    ok = [i for i, r in enumerate(runs) if _usable(r, task)]
    for i in ok:
        for j in ok:
            a, b = runs[i].result, runs[j].result
            if task == "detect":
                matrix[i, j] = agreement.detection_f1(a, b) if j >= i else matrix[j, i]
            elif task == "segment":
                matrix[i, j] = agreement.masks_iou(a, b) if j >= i else matrix[j, i]
            else:
                agree = agreement.depth_agreement(a.depth, b.depth, a.kind, b.kind)
                matrix[i, j] = agree.pearson
                abs_rel[i, j] = agree.abs_rel  # type: ignore[index]
    return matrix, abs_rel


def run_compare(
    ctx: AppContext,
    image: Any,
    task: Any,
    models: Any,
    classes: Any = "",
    confidence: Any = runners.DEFAULT_CONFIDENCE,
    points: Any = "",
    question: Any = "Describe the image.",
) -> Comparison:
    """Validate a comparison, decode the image once, run each model in turn, measure agreement.

    Raises:
        InputError: bad task, model list, image, prompt or numbers.
    """
    task = str(task or "")
    specs = runners.check_compare_keys(ctx, task, _models(models))
    if image is None:
        raise InputError("Please upload an image (or pick an example).")
    pts: list[tuple[float, float]] = []
    if task == "detect":
        from model_loaders.tasks.detection_utils import parse_prompt

        text = clean_text(classes, "Classes", MAX_CLASSES_CHARS)
        wanted = parse_prompt(text)[0] if text else []
        conf = finite_number(confidence, "Confidence", 0.0, 1.0)
    elif task == "ask":
        q = clean_text(question, "Question", MAX_QUESTION_CHARS, required=True, truncate=True)
    decoded = decode_image(image, gate=ctx.uploads)  # once, shared by every model
    if task == "detect":
        run = runners.detect_run(decoded, wanted, conf, max_new_tokens=128)
    elif task == "depth":
        run = runners.depth_run(decoded)
    elif task == "segment":
        pts = parse_points(points, decoded)
        run = runners.segment_run(decoded, pts)
    else:
        run = runners.ask_run(decoded, q, ASK_MAX_NEW_TOKENS)
    runs = runners.run_sequentially(ctx, [s.key for s in specs], run)
    matrix, abs_rel = compute_agreement(task, runs)
    notes = list(decoded.notes)
    if task == "detect":
        notes += [f"{s.name}: boxes could not be read ({r.result.metadata['parse_error']}); left out of the agreement."
                  for s, r in zip(specs, runs, strict=True) if r.ok and r.result.metadata.get("parse_error")]  # fmt: skip
    if task == "ask" and any(s.family == "florence2" for s in specs):
        notes.append("Florence-2 does not take free questions: it gives a detailed caption instead.")
    notes += [f"{s.name}: {r.error}" for s, r in zip(specs, runs, strict=True) if not r.ok]
    return Comparison(task, specs, runs, decoded, pts, matrix, abs_rel, notes)


# ----- views ---------------------------------------------------------------------------------


def _run_ms(run: runners.ModelRun) -> float:
    t = run.timings
    return t.preprocess_ms + t.inference_ms + t.postprocess_ms


def _summary(task: str, run: runners.ModelRun) -> str:
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
    from model_loaders.tasks.depth_export import colourise

    items = []
    for spec, run in zip(cmp.specs, cmp.runs, strict=True):
        img = cmp.image.array
        if run.ok and cmp.task == "detect":
            img = draw_detections(img, run.result)
        elif run.ok and cmp.task == "depth":
            img = colourise(run.result.depth, run.result.kind)
        elif run.ok and cmp.task == "segment":
            img = draw_masks(img, run.result, cmp.points)
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
    fig.update_layout(barmode="stack", title="Latency per model (ms); load is 0 when the model was cached",
                      xaxis_title="milliseconds", height=140 + 50 * len(names), margin={"l": 10, "r": 10, "t": 40, "b": 30},
                      legend={"orientation": "h", "y": -0.3})  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    return fig


def agreement_figure(cmp: Comparison) -> Any:
    """Heatmap of the pairwise agreement (``None`` for ask)."""
    import plotly.graph_objects as go

    if cmp.matrix is None:
        return None
    names = [s.name for s in cmp.specs]
    text = [["n/a" if math.isnan(v) else f"{v:.2f}" for v in row] for row in cmp.matrix]
    lo = -1.0 if cmp.task == "depth" else 0.0
    fig = go.Figure(go.Heatmap(z=cmp.matrix, x=names, y=names, text=text, texttemplate="%{text}", zmin=lo, zmax=1.0,
                               colorscale="Viridis", hovertemplate="%{y} vs %{x}: %{text}<extra></extra>"))  # fmt: skip
    fig.update_layout(title=f"Agreement: {METRIC_NAMES[cmp.task]}", height=160 + 60 * len(names),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    return fig


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
            row = [cmp.specs[i].name, cmp.specs[j].name, "n/a" if math.isnan(v) else round(float(v), 4)]
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
        "notes": cmp.notes,
    }


def notes_markdown(ctx: AppContext, cmp: Comparison) -> str:
    """Warnings and per-model problems above the outputs."""
    lines = [f"⚠ **{ctx.weights_warning}**"] if ctx.weights_warning else []
    lines += [f"- {n}" for n in cmp.notes]
    if cmp.task == "segment":
        lines.append(f"Prompts: {len(cmp.points)} point(s), one mask per point per model.")
    return "\n".join(lines)


# ----- UI ------------------------------------------------------------------------------------


def build(ctx: AppContext) -> None:
    """Render the Compare tab."""
    gr.Markdown(
        "Run 2–4 models of one task on the same image and see, in numbers, where they agree. "
        "Models run one after another, each loaded only while it runs, so a comparison larger than "
        "memory still completes."
    )
    with gr.Row():
        with gr.Column(scale=1):
            image = ImageInput(label="Image", type="filepath", sources=["upload", "clipboard"], elem_id="compare-image")
            gr.Examples(example_paths(), inputs=[image], label="Examples", elem_id="compare-examples")
            task = gr.Radio(list(TASKS), value="detect", label="Task", elem_id="compare-task")
            models = gr.Dropdown(model_choices(ctx, "detect"), value=default_models(ctx, "detect"), multiselect=True,
                                 max_choices=runners.MAX_COMPARE, label="Models (2–4)", elem_id="compare-models")  # fmt: skip
            classes = gr.Textbox(label="Classes (empty: all; open-vocabulary models and VLMs need words)",
                                 placeholder="cat, cup", max_lines=2, elem_id="compare-classes")  # fmt: skip
            confidence = gr.Slider(0.0, 1.0, value=runners.DEFAULT_CONFIDENCE, step=0.01, label="Confidence",
                                   elem_id="compare-conf")  # fmt: skip
            points = gr.Textbox(label="Points 'x, y; x, y' in image pixels (click the image to add; empty: centre)",
                                visible=False, max_lines=2, elem_id="compare-points")  # fmt: skip
            question = gr.Textbox(value="Describe the image.", label="Question", visible=False, max_lines=3,
                                  elem_id="compare-question")  # fmt: skip
            run_btn = gr.Button("Compare", variant="primary", elem_id="compare-run")
        with gr.Column(scale=2):
            notes = gr.Markdown(elem_id="compare-notes")
            gallery = gr.Gallery(label="Outputs side by side", columns=2, height="auto", object_fit="contain",
                                 elem_id="compare-gallery")  # fmt: skip
            summary = gr.Dataframe(headers=SUMMARY_HEADERS, interactive=False, wrap=True, label="Per model",
                                   elem_id="compare-summary")  # fmt: skip
            with gr.Row():
                latency = gr.Plot(label="Latency", elem_id="compare-latency")
                heatmap = gr.Plot(label="Agreement", elem_id="compare-heatmap")
            pairs = gr.Dataframe(headers=agreement_headers("detect"), interactive=False, wrap=True,
                                 label="Agreement per pair", elem_id="compare-pairs")  # fmt: skip
    api_models = gr.Textbox(visible=False)
    api_prompt = gr.Textbox(visible=False)
    api_points = gr.Textbox(visible=False)
    api_json = gr.JSON(visible=False, label="comparison")
    api_btn = gr.Button(visible=False)

    @user_errors
    def on_compare(img: Any, t: Any, keys: Any, cls: Any, conf: Any, pts: Any, q: Any) -> tuple[Any, ...]:
        cmp = run_compare(ctx, img, t, keys, cls, conf, pts, q)
        return (
            notes_markdown(ctx, cmp),
            gallery_items(cmp, ctx.weights_warning),
            gr.Dataframe(value=summary_rows(cmp), headers=SUMMARY_HEADERS),
            latency_figure(cmp),
            agreement_figure(cmp),
            gr.Dataframe(value=agreement_rows(cmp), headers=agreement_headers(cmp.task)),
        )

    @user_errors
    def on_task(t: Any) -> tuple[Any, ...]:
        t = str(t) if t in TASKS else "detect"
        return (
            gr.Dropdown(choices=model_choices(ctx, t), value=default_models(ctx, t)),
            gr.Textbox(visible=t == "detect"),
            gr.Slider(visible=t == "detect"),
            gr.Textbox(visible=t == "segment"),
            gr.Textbox(visible=t == "ask"),
        )

    def on_click(current: Any, evt: gr.SelectData) -> str:
        x, y = (int(v) for v in evt.index[:2])
        current = str(current or "").strip()
        return (current + "; " if current else "") + f"{x}, {y}"

    @user_errors
    def api_compare(
        image: Any, task: Any, models: Any, prompt: Any, confidence: Any, points: Any
    ) -> dict[str, Any]:
        """Compare 2-4 models of one task on an image.

        ``models`` is a comma-separated list of model keys; ``prompt`` is the classes (detect) or the
        question (ask); ``points`` is 'x, y; x, y' in image pixels (segment). Returns per-model results
        (boxes in original-image pixels), timings, licences and the pairwise agreement matrix.
        """
        prompt_text = prompt if prompt is not None else ""
        question = prompt_text if str(task) == "ask" and str(prompt_text).strip() else "Describe the image."
        classes = prompt_text if task == "detect" else ""
        cmp = run_compare(ctx, image, task, models, classes, confidence, points, question)
        return api_payload(ctx, cmp)

    run_btn.click(on_compare, [image, task, models, classes, confidence, points, question],
                  [notes, gallery, summary, latency, heatmap, pairs], api_visibility="private", preprocess=False,
                  **MODEL_EVENT)  # fmt: skip
    task.change(on_task, [task], [models, classes, confidence, points, question], api_visibility="private",
                **LIGHT_EVENT)  # fmt: skip
    image.select(on_click, [points], [points], api_visibility="private", **LIGHT_EVENT)
    api_btn.click(api_compare, [image, task, api_models, api_prompt, confidence, api_points], [api_json],
                  api_name="compare", preprocess=False, **MODEL_EVENT)  # fmt: skip
