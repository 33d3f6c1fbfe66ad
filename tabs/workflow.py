"""Workflow tab: detect -> merge duplicates -> crop -> VLM with a JSON Schema -> validated rows.

The seed article's book inventory, generalised. UI only: the pipeline and its run are
``model_loaders.tasks.workflow`` (the detector and the VLM through the task layer); the run
stays in this session's state for edits, re-runs and exports.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import gradio as gr

from model_loaders.core.context import AppContext
from model_loaders.core.errors import InputError
from model_loaders.core.registry import WORKFLOW_DEFAULTS
from model_loaders.tasks import workflow as wf
from model_loaders.tasks.structured import PRESETS
from model_loaders.tasks.workflow import WorkflowRun, rerun_row, run_workflow, write_exports
from tabs import _render as draw
from tabs._components import ImageInput, example
from tabs._errors import user_errors
from tabs._events import LIGHT_EVENT, MODEL_EVENT
from tabs._examples import ASSETS
from tabs._picker import model_picker

log = logging.getLogger(__name__)

TITLE = "Workflow"
DEFAULT_CLASSES = "book"
DEFAULT_PADDING = 8
EXAMPLES = [[str(ASSETS / "books-desk.jpg"), WORKFLOW_DEFAULTS["detect"], DEFAULT_CLASSES, "book"]]
PIPELINE = (
    "**Pipeline:** ① detect (model + class filter or open-vocabulary words) → ② merge overlapping "
    "duplicates → ③ crop with padding → ④ VLM answers with JSON for your schema → ⑤ validate each answer"
)


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
    return draw.boxes(run.image.array, run.detections), gallery, table, "\n".join(lines)


# ----- UI ------------------------------------------------------------------------------------


def build(ctx: AppContext) -> None:
    """Render the Workflow tab."""
    state = gr.State(None)
    gr.Markdown(PIPELINE)
    with gr.Row():
        with gr.Column(scale=1):
            image = ImageInput(label="Image", type="filepath", sources=["upload", "clipboard"], elem_id="workflow-image")
            detector = model_picker(ctx, "detect", default=WORKFLOW_DEFAULTS["detect"], label="① Detector",
                                    filterable=True, elem_id="workflow-detector").dropdown  # fmt: skip
            classes = gr.Textbox(value=DEFAULT_CLASSES, label="Classes to keep, or words for open-vocabulary models",
                                 max_lines=2, elem_id="workflow-classes")  # fmt: skip
            confidence = gr.Slider(0.0, 1.0, value=0.1, step=0.01, label="Detector confidence", elem_id="workflow-conf")
            padding = gr.Slider(0, wf.MAX_PADDING, value=DEFAULT_PADDING, step=1, label="③ Crop padding (pixels)",
                                elem_id="workflow-padding")  # fmt: skip
            vlm = model_picker(ctx, "ask", default=WORKFLOW_DEFAULTS["ask"], where=lambda s: s.accepts("question"),
                               label="④ VLM", filterable=True, elem_id="workflow-vlm").dropdown  # fmt: skip
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
    example(classes, DEFAULT_CLASSES)
    example(schema, wf.schema_json(wf.BOOK_SCHEMA))
    api_btn = gr.Button(visible=False)

    def _need(run: WorkflowRun | None) -> WorkflowRun:
        if run is None:
            raise InputError("Run the workflow first.")
        return run

    def _edits(run: WorkflowRun, tbl: Any) -> WorkflowRun:
        values = tbl.get("data") if isinstance(tbl, dict) else (tbl.values.tolist() if hasattr(tbl, "values") else tbl)
        return replace(run, rows=wf.apply_table_edits(run.rows, values or [], run.schema))

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
    def workflow(image: Any, detector: Any, classes: Any, confidence: Any, padding: Any, vlm: Any, schema: Any) -> dict[str, Any]:
        """Detect objects, crop each one, ask a VLM for JSON that matches a schema, and validate it.

        Args:
            image: the image, e.g. a photo of books on a desk.
            detector: the detector's registry key, e.g. owlv2-base (open vocabulary) or rf-detr-medium.
            classes: what to find (open vocabulary) or keep (closed set), comma-separated, e.g. book.
            confidence: the detector's threshold (0 to 1).
            padding: pixels added around each box before cropping (0 to 256).
            vlm: the chat VLM's registry key, e.g. qwen3-vl-2b.
            schema: the JSON Schema of one answer (an object with properties; they become the columns).

        Returns:
            The run info and one row per kept detection: box and crop box (image pixels), parsed
            fields, a validity flag, the error and the raw VLM text.
        """
        return run_workflow(ctx, image, detector, classes, confidence, padding, vlm, schema).payload()

    view = [annotated, crops, table, status]
    inputs = [image, detector, classes, confidence, padding, vlm, schema]
    run_btn.click(on_run, inputs, [*view, state, files], api_visibility="private", preprocess=False, **MODEL_EVENT)
    save_btn.click(on_save, [state, table], [*view, state], api_visibility="private", **LIGHT_EVENT)
    rerun_btn.click(on_rerun, [state, table, row_no], [*view, state], api_visibility="private", **MODEL_EVENT)
    export_btn.click(on_export, [state, table], [files, state], api_visibility="private", **LIGHT_EVENT)
    preset.change(on_preset, [preset], [schema], api_visibility="private", **LIGHT_EVENT)
    api_btn.click(workflow, inputs, [api_json], api_name="workflow", api_description="Detect objects, crop each, "
                  "ask a VLM for JSON matching a schema and validate it: one row per object.", preprocess=False,
                  **MODEL_EVENT)  # fmt: skip
