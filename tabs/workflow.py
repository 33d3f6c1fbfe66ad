"""Workflow tab: detect -> merge duplicates -> crop -> VLM with a JSON Schema -> validated rows.

The seed article's book inventory, generalised. UI only: the pipeline and its run are
``model_loaders.tasks.workflow`` (the detector and the VLM through the task layer); the run
stays in this session's state for edits, re-runs and exports.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from typing import Any

import gradio as gr

from model_loaders.core.context import AppContext
from model_loaders.core.errors import InputError
from model_loaders.core.gpu_time import GpuJob
from model_loaders.core.registry import WORKFLOW_DEFAULTS
from model_loaders.tasks import workflow as wf
from model_loaders.tasks.structured import PRESETS
from model_loaders.tasks.workflow import WorkflowRun, rerun_row, run_workflow, write_exports
from tabs import _render as draw
from tabs._checks import guard_upload, no_image, validator
from tabs._components import ImageInput, example
from tabs._errors import user_errors
from tabs._events import light_event, model_event
from tabs._examples import ASSETS
from tabs._gpu import on_gpu, workflow_jobs
from tabs._picker import model_picker
from tabs._presenter import first_view, input_height, presenting

log = logging.getLogger(__name__)

TITLE = "Workflow"
DEFAULT_CLASSES = "book"
DEFAULT_PADDING = 8
EXAMPLES = [[str(ASSETS / "books-desk.jpg"), WORKFLOW_DEFAULTS["detect"], DEFAULT_CLASSES, "book"]]
PIPELINE = (
    "**Pipeline:** ① detect (model + class filter or open-vocabulary words) → ② merge overlapping "
    "duplicates → ③ crop with padding → ④ VLM answers with JSON for your schema → ⑤ validate each answer"
)


EMPTY = "Upload a photo (or take the example), check the settings on the left and press **Run workflow**."
FIXED_COLUMNS = ("#", "class", "box", "valid", "error", "raw VLM text")
MAX_CELL_SHOWN = 60  # long cells (the raw VLM text) are cut in the table; a click shows all


def column_widths(headers: list[str]) -> list[str]:
    """Pixel widths: the fields users edit get room; the bookkeeping columns stay narrow."""
    fixed = {"#": 44, "class": 80, "box": 120, "valid": 90, "error": 160, "raw VLM text": 220}
    return [f"{fixed.get(h, max(150, 12 * len(h) + 40))}px" for h in headers]


def results_table(rows: list[list[Any]], headers: list[str]) -> Any:
    """The results table: only the schema's fields are editable, rows and columns are fixed."""
    static = [i for i, h in enumerate(headers) if h in FIXED_COLUMNS]
    with warnings.catch_warnings():
        # ``(n, "fixed")`` is what this Gradio's table obeys (no add-row / add-column control);
        # its replacement (row_limits) is "not yet implemented" here.
        warnings.simplefilter("ignore", DeprecationWarning)
        return gr.Dataframe(value=rows, headers=headers, column_widths=column_widths(headers), static_columns=static,
                            row_count=(len(rows), "fixed"), column_count=(len(headers), "fixed"),
                            interactive=True)  # fmt: skip


def views(ctx: AppContext, run: WorkflowRun, done: str = "") -> tuple[Any, ...]:
    """(annotated image, crop gallery, table, status markdown) for a run; ``done`` leads the status."""
    shown = wf.rows_in_original_pixels(run.rows, run.image.scale)
    gallery = [(r.crop, f"#{r.index} · {'valid' if r.valid else 'invalid'}") for r in run.rows if r.crop is not None]
    valid = sum(r.valid for r in run.rows)
    lines = [f"⚠ **{ctx.weights_warning}**"] if ctx.weights_warning else []
    lines += [done] if done else []
    lines.append(f"**{len(run.rows)}** row(s) · **{valid}** valid · **{len(run.rows) - valid}** invalid · "
                 f"detector {run.timings.get('detector', {}).get('inference_ms', 0):,.0f} ms inference, "
                 f"VLM {run.timings.get('vlm', {}).get('inference_ms', 0):,.0f} ms for all crops")  # fmt: skip
    notes = "\n".join(f"- {n}" for n in run.notes)
    table = results_table(wf.rows_to_table(shown, run.schema), wf.table_headers(run.schema))
    status = "\n\n".join(lines) + (f"\n\n{notes}" if notes else "")  # paragraphs, then a list of notes
    return draw.boxes(run.image.array, run.detections), gallery, table, status


# ----- UI ------------------------------------------------------------------------------------


def build(ctx: AppContext) -> None:
    """Render the Workflow tab."""
    state = gr.State(None)
    gr.Markdown(PIPELINE, elem_classes=["intro"])
    with gr.Row():
        with gr.Column(scale=1):
            image = ImageInput(label="Image", type="filepath", sources=["upload", "clipboard"], elem_id="workflow-image",
                               height=input_height(ctx))  # fmt: skip
            # The settings are made first (unrendered) so the example above them can set them.
            detector_pick = model_picker(ctx, "detect", default=WORKFLOW_DEFAULTS["detect"], label="① Detector",
                                         filterable=True, elem_id="workflow-detector", render=False)  # fmt: skip
            detector = detector_pick.dropdown
            classes = gr.Textbox(value=DEFAULT_CLASSES, label="Classes to keep, or words for open-vocabulary models",
                                 max_lines=2, elem_id="workflow-classes", render=False)  # fmt: skip
            confidence = gr.Slider(0.0, 1.0, value=0.1, step=0.01, label="Detector confidence", elem_id="workflow-conf",
                                   render=False)  # fmt: skip
            padding = gr.Slider(0, wf.MAX_PADDING, value=DEFAULT_PADDING, step=1, label="③ Crop padding (pixels)",
                                elem_id="workflow-padding", render=False)  # fmt: skip
            masked = gr.Checkbox(False, label="③ Masked crops: grey out the background (detectors with masks, e.g. SAM 3)",
                                 elem_id="workflow-masked", render=False)  # fmt: skip
            vlm_pick = model_picker(ctx, "ask", default=WORKFLOW_DEFAULTS["ask"], where=lambda s: s.accepts("question"),
                                    label="④ VLM", filterable=True, elem_id="workflow-vlm", render=False)  # fmt: skip
            vlm = vlm_pick.dropdown
            preset = gr.Dropdown(list(PRESETS), value="book", label="Schema preset", elem_id="workflow-preset",
                                 render=False)  # fmt: skip
            schema = gr.Code(wf.schema_json(wf.BOOK_SCHEMA), language="json", label="④ JSON Schema (editable)",
                             interactive=True, elem_id="workflow-schema", render=False)  # fmt: skip
            gr.Examples(EXAMPLES, inputs=[image, detector, classes, preset], label="Example",
                        example_labels=["Books on a desk (CC0 render): find each book, read title, author, publisher"],
                        elem_id="workflow-examples")  # fmt: skip
            run_btn = gr.Button("Run workflow", variant="primary", elem_id="workflow-run")
            with gr.Accordion("Pipeline settings", open=not presenting(ctx)):
                detector_pick.render()
                classes.render()
                confidence.render()
                padding.render()
                masked.render()
                vlm_pick.render()
                preset.render()
                schema.render()
        with gr.Column(scale=2):
            status = gr.Markdown(EMPTY, elem_id="workflow-status")
            annotated = gr.Image(label="① Detections (duplicates merged)", type="numpy", interactive=False,
                                 elem_id="workflow-annotated")  # fmt: skip
            crops = gr.Gallery(label="③ Crops", columns=6, height="auto", object_fit="contain", elem_id="workflow-crops")
            headers = wf.table_headers(wf.BOOK_SCHEMA)
            # Read-only until a run fills it (an empty editable table offers to import a CSV).
            table = gr.Dataframe(headers=headers, interactive=False, wrap=True, max_chars=MAX_CELL_SHOWN,
                                 column_widths=column_widths(headers),
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
    def on_run(img: Any, det: Any, cls: Any, conf: Any, pad: Any, model: Any, sch: Any, mask: Any) -> tuple[Any, ...]:
        run = run_workflow(ctx, img, det, cls, conf, pad, model, sch, mask)
        return (*views(ctx, run), run, None)

    @user_errors
    def on_save(run: WorkflowRun | None, tbl: Any) -> tuple[Any, ...]:
        run = _edits(_need(run), tbl)
        return (*views(ctx, run, "✔ **Edits saved** and checked against the schema."), run)

    @user_errors
    def on_rerun(run: WorkflowRun | None, tbl: Any, idx: Any) -> tuple[Any, ...]:
        run = rerun_row(ctx, _edits(_need(run), tbl), idx)
        row = next(r for r in run.rows if r.index == int(idx))
        done = f"✔ **Row #{row.index} read again:** {'valid' if row.valid else 'invalid: ' + row.error[:120]}"
        return (*views(ctx, run, done), run)

    @user_errors
    def on_export(run: WorkflowRun | None, tbl: Any) -> tuple[list[str], WorkflowRun]:
        run = _edits(_need(run), tbl)
        return write_exports(ctx, run), run

    def on_preset(name: Any) -> str:
        return wf.schema_json(PRESETS.get(str(name), wf.BOOK_SCHEMA))

    @user_errors
    def workflow(image: Any, detector: Any, classes: Any, confidence: Any, padding: Any, vlm: Any, schema: Any,
                 masked_background: Any) -> dict[str, Any]:  # fmt: skip
        """Detect objects, crop each one, ask a VLM for JSON that matches a schema, and validate it.

        Args:
            image: the image, e.g. a photo of books on a desk.
            detector: the detector's registry key, e.g. owlv2-base (open vocabulary) or rf-detr-medium.
            classes: what to find (open vocabulary) or keep (closed set), comma-separated, e.g. book.
            confidence: the detector's threshold (0 to 1).
            padding: pixels added around each box before cropping (0 to 256).
            vlm: the chat VLM's registry key, e.g. qwen3-vl-2b.
            schema: the JSON Schema of one answer (an object with properties; they become the columns).
            masked_background: true to grey out each crop's background where the detector gives
                masks (sam3); boxes-only detectors keep it.

        Returns:
            The run info and one row per kept detection: box and crop box (image pixels), parsed
            fields, a validity flag, the error and the raw VLM text.
        """
        return run_workflow(ctx, image, detector, classes, confidence, padding, vlm, schema, masked_background).payload()

    def check_run(img: Any, det: Any, cls: Any, conf: Any, pad: Any, model: Any, sch: Any, mask: Any) -> dict[str, str | None]:
        found = wf.problems(ctx, det, cls, model, sch)
        return {"img": no_image(img), "det": found.get("detector"), "cls": found.get("classes"),
                "model": found.get("vlm"), "sch": found.get("schema")}  # fmt: skip

    view = [annotated, crops, table, status]
    inputs = [image, detector, classes, confidence, padding, vlm, schema, masked]
    long = model_event(ctx, "long", status)

    def rerun_jobs(run: WorkflowRun | None, *rest: Any) -> list[GpuJob]:
        return [GpuJob(run.vlm, tokens=wf.MAX_NEW_TOKENS)] if run is not None else []

    def run_example() -> WorkflowRun:
        books, det, cls, _ = EXAMPLES[0]
        return run_workflow(ctx, books, det, cls, confidence.value, padding.value, vlm.value, schema.value, masked.value)

    first_view(ctx, [image, *view, state], run_example, lambda run: (EXAMPLES[0][0], *views(ctx, run), run))
    guard_upload(ctx, image)
    run_btn.click(on_gpu(ctx, on_run, workflow_jobs(1, 5)), inputs, [*view, state, files], api_visibility="private", preprocess=False,
                  validator=validator(check_run), **long)  # fmt: skip
    save_btn.click(on_save, [state, table], [*view, state], api_visibility="private", **light_event(status))
    rerun_btn.click(on_gpu(ctx, on_rerun, rerun_jobs), [state, table, row_no], [*view, state], api_visibility="private", **long)
    export_btn.click(on_export, [state, table], [files, state], api_visibility="private", **light_event(status))
    preset.change(on_preset, [preset], [schema], api_visibility="private", **light_event())
    api_btn.click(on_gpu(ctx, workflow, workflow_jobs(1, 5)), inputs, [api_json], api_name="workflow", api_description="Detect objects, crop each, "
                  "ask a VLM for JSON matching a schema and validate it: one row per object.", preprocess=False,
                  **model_event(ctx, "long"))  # fmt: skip
