"""Workflow tab: detect -> merge duplicates -> crop -> VLM with a JSON Schema -> validated rows.

The seed article's book inventory, generalised. UI only: the pipeline steps live in
``model_loaders.tasks.workflow`` (tested without models) and the model calls in
``model_loaders.tasks.runners``. The detector is pinned while it detects, the VLM while it reads
the crops; the results stay in this session's ``gr.State``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from model_loaders.core.context import AppContext
from model_loaders.core.errors import InputError
from model_loaders.core.images import DecodedImage, decode_image
from model_loaders.core.registry import specs_for_task
from model_loaders.core.results import Timings
from model_loaders.core.specs import ModelSpec
from model_loaders.tasks import runners
from model_loaders.tasks import workflow as wf
from model_loaders.tasks.structured import PRESETS
from tabs._components import ImageInput
from tabs._errors import user_errors
from tabs._events import LIGHT_EVENT, MODEL_EVENT
from tabs._examples import ASSETS
from tabs._validate import clean_text, finite_number
from tabs.compare import draw_detections

log = logging.getLogger(__name__)

TITLE = "Workflow"
DEFAULT_DETECTOR = "owlv2-base"
DEFAULT_VLM = "qwen3-vl-2b"  # Apache-2.0, answers in JSON, small enough for a CPU
DEFAULT_CLASSES = "book"
DEFAULT_PADDING = 8
MAX_PADDING = 256
MAX_CLASSES_CHARS = 500
MAX_NEW_TOKENS = 128
EXAMPLES = [[str(ASSETS / "books-desk.jpg"), DEFAULT_DETECTOR, DEFAULT_CLASSES, "book"]]
PIPELINE = (
    "**Pipeline:** ① detect (model + class filter or open-vocabulary words) → ② merge overlapping "
    "duplicates → ③ crop with padding → ④ VLM answers with JSON for your schema → ⑤ validate each answer"
)


def detector_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """Every model that can detect, VLM grounding included."""
    return [(_label(ctx, s), s.key) for s in specs_for_task("detect")]


def vlm_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """Chat VLMs that can answer with JSON (Florence-2 only runs fixed tasks)."""
    return [(_label(ctx, s), s.key) for s in specs_for_task("ask") if s.family != "florence2"]


def _label(ctx: AppContext, s: ModelSpec) -> str:
    avail = ctx.availability(s)
    return f"{s.name} · {s.licence}" + ("" if avail.ok else f" · {avail.status}")


# ----- the run (UI-free logic, tested directly) ------------------------------------------------


@dataclass
class WorkflowRun:
    """One workflow run: what the tab shows and what later edits and re-runs need."""

    detector: str
    vlm: str
    schema: dict[str, Any]
    image: DecodedImage
    detections: Any
    rows: list[wf.ResultRow]
    timings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        """Run information for exports and the API."""
        return {"detector": self.detector, "vlm": self.vlm, "schema": self.schema,
                "original_size": list(self.image.original_size), "boxes": "original-image pixels",
                "timings": self.timings}  # fmt: skip


def _spec_for(ctx: AppContext, key: Any, task: str, what: str) -> ModelSpec:
    if not isinstance(key, str) or not key:
        raise InputError(f"Please pick a {what}.")
    spec = runners.checked_spec(ctx, key, task, what=f"a {what}")
    if task == "ask" and spec.family == "florence2":
        raise InputError(f"{spec.name} cannot answer with JSON: pick a chat VLM.")
    return spec


def _asker(bundle: Any, spec: ModelSpec, prompt: str, timings: Timings, max_new_tokens: int) -> Any:
    def ask(pixels: np.ndarray) -> str:
        result = runners.vlm_answer(bundle, spec, Image.fromarray(pixels), prompt, timings, max_new_tokens=max_new_tokens)
        return result.raw or result.text

    return ask


def run_workflow(
    ctx: AppContext,
    image: Any,
    detector: Any,
    classes: Any,
    confidence: Any,
    padding: Any,
    vlm: Any,
    schema_text: Any,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> WorkflowRun:
    """Validate everything, detect, merge, crop, ask the VLM about each crop and validate.

    Raises:
        InputError: bad image, model choice, classes, numbers or schema (before any model loads).
    """
    schema = wf.parse_schema(schema_text)
    det_spec = _spec_for(ctx, detector, "detect", "detector")
    vlm_spec = _spec_for(ctx, vlm, "ask", "VLM")
    from model_loaders.tasks.detection_utils import parse_prompt

    text = clean_text(classes, "Classes", MAX_CLASSES_CHARS)
    wanted, notes = parse_prompt(text) if text else ([], [])
    conf = finite_number(confidence, "Confidence", 0.0, 1.0)
    pad = int(finite_number(padding, "Crop padding", 0, MAX_PADDING))
    if image is None:
        raise InputError("Please upload an image (or pick the example).")
    decoded = decode_image(image, gate=ctx.uploads)
    notes = list(decoded.notes) + notes
    det_t, vlm_t = Timings(), Timings()
    det = runners.detect(ctx, det_spec.key, decoded, det_t, classes=wanted, confidence=conf)
    if det.metadata.get("parse_error"):
        notes.append(f"{det_spec.name}'s boxes could not be read ({det.metadata['parse_error']}).")
    kept = wf.merge_duplicates(det)
    merged = len(det) - len(kept)
    rows: list[wf.ResultRow] = []
    if len(kept) == 0:
        what = ", ".join(wanted) if wanted else "objects"
        notes.append(f"No {what} found: the table is empty. Try a lower confidence, other class words or another detector.")
    else:
        prompt = wf.build_prompt(schema)

        def pipeline(bundle: Any, spec: ModelSpec, timings: Timings) -> list[wf.ResultRow]:
            return wf.run_pipeline(decoded.array, kept, _asker(bundle, spec, prompt, timings, max_new_tokens), schema, pad)[1]

        rows = runners.run_model(ctx, vlm_spec.key, pipeline, vlm_t)
        if len(kept) > len(rows):
            notes.append(f"Only the {len(rows)} most confident detections were read.")
    if merged:
        notes.append(f"{merged} overlapping duplicate detection(s) merged before reading.")
    return WorkflowRun(det_spec.key, vlm_spec.key, schema, decoded, kept, rows,
                       {"detector": det_t.as_dict(), "vlm": vlm_t.as_dict()}, notes)  # fmt: skip


def rerun_row(ctx: AppContext, run: WorkflowRun, index: Any, max_new_tokens: int = MAX_NEW_TOKENS) -> WorkflowRun:
    """Ask the VLM about one crop again and replace that row.

    Raises:
        InputError: no run yet, or no such row.
    """
    idx = int(finite_number(index, "Row #", 0, 10_000))
    pos = next((i for i, r in enumerate(run.rows) if r.index == idx), None)
    if pos is None:
        raise InputError(f"There is no row #{idx}.")
    prompt = wf.build_prompt(run.schema)
    timings = Timings()

    def again(bundle: Any, spec: ModelSpec, t: Timings) -> wf.ResultRow:
        return wf.ask_row(run.rows[pos], _asker(bundle, spec, prompt, t, max_new_tokens), run.schema)

    new_row = runners.run_model(ctx, run.vlm, again, timings)
    rows = list(run.rows)
    rows[pos] = new_row
    run.rows = rows
    return run


def write_exports(ctx: AppContext, run: WorkflowRun) -> list[str]:
    """Write results.json and results.csv (boxes in original-image pixels); return their paths."""
    folder = ctx.outputs.new_dir("workflow")
    rows = wf.rows_in_original_pixels(run.rows, run.image.scale)
    (folder / "results.json").write_text(wf.rows_to_json(rows, run.info()), encoding="utf-8")
    (folder / "results.csv").write_text(wf.rows_to_csv(rows, run.schema), encoding="utf-8")
    return [str(folder / "results.json"), str(folder / "results.csv")]


def views(ctx: AppContext, run: WorkflowRun) -> tuple[Any, ...]:
    """(annotated image, crop gallery, table, status markdown) for a run."""
    shown = wf.rows_in_original_pixels(run.rows, run.image.scale)
    gallery = [(r.crop, f"#{r.index} · {'valid' if r.valid else 'invalid'}") for r in run.rows if r.crop is not None]
    valid = sum(r.valid for r in run.rows)
    lines = [f"⚠ **{ctx.weights_warning}**"] if ctx.weights_warning else []
    lines.append(f"**{len(run.rows)}** row(s) · **{valid}** valid · **{len(run.rows) - valid}** invalid · "
                 f"detector {run.timings.get('detector', {}).get('inference_ms', 0):,.0f} ms inference, "
                 f"VLM {run.timings.get('vlm', {}).get('inference_ms', 0):,.0f} ms for all crops")  # fmt: skip
    lines += [f"- {n}" for n in run.notes]
    table = gr.Dataframe(value=wf.rows_to_table(shown, run.schema), headers=wf.table_headers(run.schema))
    return draw_detections(run.image.array, run.detections), gallery, table, "\n".join(lines)


def api_rows(run: WorkflowRun) -> dict[str, Any]:
    """The ``workflow`` endpoint's JSON: run info and one dict per row."""
    rows = wf.rows_in_original_pixels(run.rows, run.image.scale)
    return {"info": run.info(), "rows": [r.to_dict() for r in rows], "notes": run.notes}


# ----- UI ------------------------------------------------------------------------------------


def build(ctx: AppContext) -> None:
    """Render the Workflow tab."""
    state = gr.State(None)
    gr.Markdown(PIPELINE)
    with gr.Row():
        with gr.Column(scale=1):
            image = ImageInput(label="Image", type="filepath", sources=["upload", "clipboard"], elem_id="workflow-image")
            detector = gr.Dropdown(detector_choices(ctx), value=DEFAULT_DETECTOR, label="① Detector", filterable=True,
                                   elem_id="workflow-detector")  # fmt: skip
            classes = gr.Textbox(value=DEFAULT_CLASSES, label="Classes to keep, or words for open-vocabulary models",
                                 max_lines=2, elem_id="workflow-classes")  # fmt: skip
            confidence = gr.Slider(0.0, 1.0, value=0.1, step=0.01, label="Detector confidence", elem_id="workflow-conf")
            padding = gr.Slider(0, MAX_PADDING, value=DEFAULT_PADDING, step=1, label="③ Crop padding (pixels)",
                                elem_id="workflow-padding")  # fmt: skip
            vlm = gr.Dropdown(vlm_choices(ctx), value=DEFAULT_VLM, label="④ VLM", filterable=True, elem_id="workflow-vlm")
            preset = gr.Dropdown(list(PRESETS), value="book", label="Schema preset", elem_id="workflow-preset")
            schema = gr.Code(wf.schema_json(wf.BOOK_SCHEMA), language="json", label="④ JSON Schema (editable)",
                             interactive=True, elem_id="workflow-schema")  # fmt: skip
            run_btn = gr.Button("Run workflow", variant="primary", elem_id="workflow-run")
            gr.Examples(EXAMPLES, inputs=[image, detector, classes, preset], label="Example (CC0 rendered books)",
                        elem_id="workflow-examples")  # fmt: skip
        with gr.Column(scale=2):
            status = gr.Markdown(elem_id="workflow-status")
            annotated = gr.Image(label="① Detections (duplicates merged)", type="numpy", interactive=False,
                                 elem_id="workflow-annotated")  # fmt: skip
            crops = gr.Gallery(label="③ Crops", columns=6, height="auto", object_fit="contain", elem_id="workflow-crops")
            table = gr.Dataframe(headers=wf.table_headers(wf.BOOK_SCHEMA), interactive=True, wrap=True,
                                 label="⑤ Results (edit a field, then Save edits; boxes in original-image pixels)",
                                 elem_id="workflow-table")  # fmt: skip
            with gr.Row():
                save_btn = gr.Button("Save edits", size="sm", elem_id="workflow-save")
                row_no = gr.Number(value=0, precision=0, label="Row #", minimum=0, elem_id="workflow-row")
                rerun_btn = gr.Button("Re-run this crop", size="sm", elem_id="workflow-rerun")
                export_btn = gr.Button("Export JSON + CSV", size="sm", elem_id="workflow-export")
            files = gr.File(label="Downloads", file_count="multiple", elem_id="workflow-files")
    api_json = gr.JSON(visible=False, label="rows")
    api_btn = gr.Button(visible=False)

    def _need(run: WorkflowRun | None) -> WorkflowRun:
        if run is None:
            raise InputError("Run the workflow first.")
        return run

    def _edits(run: WorkflowRun, tbl: Any) -> WorkflowRun:
        values = tbl.get("data") if isinstance(tbl, dict) else (tbl.values.tolist() if hasattr(tbl, "values") else tbl)
        run.rows = wf.apply_table_edits(run.rows, values or [], run.schema)
        return run

    @user_errors
    def on_run(img: Any, det: Any, cls: Any, conf: Any, pad: Any, model: Any, sch: Any) -> tuple[Any, ...]:
        run = run_workflow(ctx, img, det, cls, conf, pad, model, sch)
        return (*views(ctx, run), run, None)

    @user_errors
    def on_save(run: WorkflowRun | None, tbl: Any) -> tuple[Any, ...]:
        run = _edits(_need(run), tbl)
        return (*views(ctx, run), run)

    @user_errors
    def on_rerun(run: WorkflowRun | None, tbl: Any, idx: Any) -> tuple[Any, ...]:
        run = rerun_row(ctx, _edits(_need(run), tbl), idx)
        return (*views(ctx, run), run)

    @user_errors
    def on_export(run: WorkflowRun | None, tbl: Any) -> tuple[list[str], WorkflowRun]:
        run = _edits(_need(run), tbl)
        return write_exports(ctx, run), run

    def on_preset(name: Any) -> str:
        return wf.schema_json(PRESETS.get(str(name), wf.BOOK_SCHEMA))

    @user_errors
    def api_workflow(
        image: Any, detector: Any, classes: Any, confidence: Any, padding: Any, vlm: Any, schema: Any
    ) -> dict[str, Any]:
        """Detect, crop, ask a VLM for JSON matching the schema, validate.

        Returns the run info and one row per kept detection: box and crop box (original-image
        pixels), parsed fields, a validity flag, the error and the raw VLM text.
        """
        return api_rows(run_workflow(ctx, image, detector, classes, confidence, padding, vlm, schema))

    view = [annotated, crops, table, status]
    inputs = [image, detector, classes, confidence, padding, vlm, schema]
    run_btn.click(on_run, inputs, [*view, state, files], api_visibility="private", preprocess=False, **MODEL_EVENT)
    save_btn.click(on_save, [state, table], [*view, state], api_visibility="private", **LIGHT_EVENT)
    rerun_btn.click(on_rerun, [state, table, row_no], [*view, state], api_visibility="private", **MODEL_EVENT)
    export_btn.click(on_export, [state, table], [files, state], api_visibility="private", **LIGHT_EVENT)
    preset.change(on_preset, [preset], [schema], api_visibility="private", **LIGHT_EVENT)
    api_btn.click(api_workflow, inputs, [api_json], api_name="workflow", preprocess=False, **MODEL_EVENT)
