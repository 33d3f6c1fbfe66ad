"""Segment tab: click to segment (UI only).

The session logic (prompts, kept objects, undo/redo, the per-session embedding cache, exports)
is ``model_loaders.tasks.segment_session``; the stateless ``segment`` endpoint is
``tasks.segment.segment_request``. This module lays out the page, maps clicks to calls and
draws the results.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from model_loaders.core.context import AppContext
from model_loaders.core.errors import InputError
from model_loaders.core.gpu_time import GpuJob
from model_loaders.core.images import ImageInputError
from model_loaders.tasks import concepts as tc
from model_loaders.tasks import everything as ev
from model_loaders.tasks import segment_session as ss
from model_loaders.tasks.segment import segment_request
from tabs import _render as draw
from tabs._checks import guard_upload
from tabs._components import ImageInput, JsonInput, example
from tabs._errors import user_errors
from tabs._events import light_event, model_event
from tabs._examples import example_paths
from tabs._gpu import model_at, on_gpu
from tabs._picker import model_picker
from tabs._presenter import first_view, input_height
from tabs._timing import timing_line

log = logging.getLogger(__name__)

TITLE = "Segment"
INCLUDE, EXCLUDE = "Include (+)", "Exclude (−)"
POINT_MODE, BOX_MODE = "Point", "Box (2 clicks)"
EMPTY = "Upload an image or pick an example, then click on the object you want."
CUTOUT_PREVIEW = 400  # px, the cut-out preview's long side (its box is 220 px tall)
STATE_TTL_S = 1800  # a session's embeddings and masks go at the latest 30 min after its last event


def _delete_session(session: Any) -> None:
    if isinstance(session, ss.SegmentSession):
        session.close()


def step_line(ctx: AppContext, session: ss.SegmentSession) -> str:
    """The timing line of the session's last model call (empty before any)."""
    step = session.step
    if step is None:
        return f"⚠️ {ctx.weights_warning}" if ctx.weights_warning else ""
    encode = "encode: cached" if step.encoded_ms is None else f"encode {step.encoded_ms:,.0f} ms"
    return timing_line(ctx, step.timings, lead=[encode, f"decode {step.decode_ms:,.0f} ms"], stages=False)


def cutout_preview(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The cut-out shown in the tab, at most `CUTOUT_PREVIEW` px long: a full-size RGBA PNG took
    ~300 ms to encode on every click (measured), more than the click itself. Downloads are full size."""
    scale = CUTOUT_PREVIEW / max(image.shape[:2])
    if scale >= 1:
        return ss.cutout(image, mask)
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    alpha = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)) > 127
    return ss.cutout(small, alpha)


def instance_panel(session: ss.SegmentSession) -> tuple[Any, ...]:
    """The found-instances panel: shown or not, its threshold, its switches and its refine picker."""
    found = session.instances
    if found is None:
        return (gr.update(visible=False), gr.skip(), gr.update(choices=[], value=[]), gr.update(choices=[], value=None))
    above = found.above
    shown = found.shown
    return (gr.update(visible=True), gr.update(value=found.threshold),
            gr.update(choices=[found.label(i) for i in above], value=[found.label(i) for i in shown]),
            gr.update(choices=[(found.label(i), i) for i in shown], value=shown[0] if shown else None))  # fmt: skip


def instance_line(found: ss.Instances) -> str:
    """'5 instance(s) (book 3, mug 2) at ≥ 0.50 · 1 switched off · click one to keep it'."""
    shown = found.shown
    origin = f" from a {found.notes[0]} (overlaps removed)" if found.source == "everything" and found.notes else ""
    if not len(found.scores):
        return ("No mask passed the floors" + origin if origin else
                "No instance found" + (": " + "; ".join(found.notes) if found.notes else "")) + "."  # fmt: skip
    if not shown:
        return f"No instance shown at ≥ {found.threshold:.2f} ({len(found.scores)} found): lower the threshold."
    counts: dict[str, int] = {}
    for i in shown:
        counts[found.names[i]] = counts.get(found.names[i], 0) + 1
    kinds = origin or " (" + ", ".join(f"{n} {c}" for n, c in counts.items()) + ")"
    off = len(found.above) - len(shown)
    return (f"**{len(shown)} instance(s)**{kinds} at ≥ {found.threshold:.2f}"
            f"{f' · {off} switched off' if off else ''} · click one to keep it")  # fmt: skip


def render(ctx: AppContext, session: ss.SegmentSession) -> tuple[Any, ...]:
    """All outputs of the tab for the session's current state."""
    if session.image is None:
        return (session, None, [], gr.update(choices=[], value=None), None, "", EMPTY, None, *instance_panel(session))
    base = session.image.array
    objects = ss.current_objects(session)
    p = session.state.prompts
    canvas = draw.prompts(draw.masks(base, [o.mask for o in objects]), p.points, p.labels, p.box, p.corner)
    pred = session.prediction
    gallery: list[tuple[np.ndarray, str]] = []
    choices: list[tuple[str, int]] = []
    if pred is not None:
        thumb_scale = min(1.0, 320 / max(base.shape[:2]))
        thumb_size = (max(1, round(base.shape[1] * thumb_scale)), max(1, round(base.shape[0] * thumb_scale)))
        small = np.asarray(session.image.pil().resize(thumb_size))
        colour = len(session.state.objects)
        for i, score in enumerate(pred.scores):
            tag = " (best)" if i == pred.best else ""
            label = f"Mask {i + 1} · IoU {score:.2f}{tag}"
            m = np.asarray(Image.fromarray(pred.masks[i]).resize(thumb_size, Image.Resampling.NEAREST))
            gallery.append((draw.masks(small, [m], colour), label))
            choices.append((label, i))
    cut = cutout_preview(base, np.logical_or.reduce([o.mask for o in objects])) if objects else None
    notes = "; ".join(session.image.notes)
    summary = (
        f"{len(p.points)} point(s){' + box' if p.box else ''}{' · box: click the opposite corner' if p.corner else ''}"
        f" · {len(session.state.objects)} kept object(s)"
        f"{' · ' + notes if notes else ''}"
    )
    picker = gr.update(choices=choices, value=session.selected)
    shown = gr.update(value=gallery, selected_index=session.selected)  # the gallery highlights the radio's mask
    hint = "" if p.ready or objects else " · click on the object you want"
    if session.instances is not None:
        summary = f"{instance_line(session.instances)}  \n{summary}"
        found = session.instances
        line = timing_line(ctx, found.timings, lead=[f"{len(found.scores)} {'masks' if found.source == 'everything' else 'instances'} found"])
    else:
        line = step_line(ctx, session)
    return (session, canvas, shown, picker, cut, line, summary + hint, None, *instance_panel(session))


def build(ctx: AppContext) -> None:
    """Render the Segment tab."""
    session = gr.State(ss.SegmentSession(), time_to_live=STATE_TTL_S, delete_callback=_delete_session)
    gr.Markdown(
        "Click on the image to segment it. Points include or exclude; *Box* mode takes two clicks as "
        "opposite corners. Pick among the candidate masks; *New object* keeps the mask and starts "
        "another. The image is encoded once per model; later clicks only run the fast decoder.",
        elem_classes=["intro"],
    )
    with gr.Row():
        with gr.Column(scale=2, min_width=280):
            source = ImageInput(
                label="Image (upload, paste or pick an example)",
                sources=["upload", "clipboard"],
                type="filepath",
                height=input_height(ctx, 240),
                elem_id="segment-input",
            )
            gr.Examples(
                example_paths(), inputs=[source], label="Examples", examples_per_page=8, elem_id="segment-examples"
            )
            picked = model_picker(ctx, "segment", elem_id="segment-model")
            model = picked.dropdown
            with gr.Row():
                mode = gr.Radio([POINT_MODE, BOX_MODE], value=POINT_MODE, label="Click adds", elem_id="segment-mode")
                polarity = gr.Radio([INCLUDE, EXCLUDE], value=INCLUDE, label="Point type", elem_id="segment-polarity")
            with gr.Row():
                undo_btn = gr.Button("↶ Undo", size="sm")
                redo_btn = gr.Button("↷ Redo", size="sm")
                clear_btn = gr.Button("Clear", size="sm")
                new_btn = gr.Button("New object", size="sm", variant="secondary")
            everything_btn = gr.Button("Segment everything", size="sm", elem_id="segment-everything")
            with gr.Row(equal_height=True, elem_id="segment-words"):
                words = gr.Textbox(label="Find by words (SAM 3)", placeholder="book, mug", max_lines=1,
                                   scale=3, elem_id="segment-words-text")  # fmt: skip
                find_btn = gr.Button("Find", variant="primary", scale=1, min_width=80, elem_id="segment-find")
            use_box = gr.Checkbox(False, label="The drawn box is an example (Point type: include / exclude)",
                                  elem_id="segment-words-box")  # fmt: skip
        with gr.Column(scale=3):
            canvas = gr.Image(
                label="Click to segment",
                interactive=False,
                format="jpeg",
                elem_id="segment-canvas",
                buttons=["fullscreen"],
            )
            summary = gr.Markdown(EMPTY, elem_id="segment-summary")
            timing = gr.Markdown(elem_id="segment-timing")
            with gr.Column(visible=False, elem_id="segment-instances") as panel:  # instances found in one go
                threshold = gr.Slider(0, 1, value=0.5, step=0.01, label="Score threshold", elem_id="segment-threshold")
                toggles = gr.CheckboxGroup([], label="Instances shown (switch off what you don't want)",
                                           elem_id="segment-toggles")  # fmt: skip
                with gr.Row(equal_height=True):
                    keep_btn = gr.Button("Keep shown as objects", elem_id="segment-keep")
                    refine_pick = gr.Dropdown([], label="Instance to refine", scale=2, elem_id="segment-refine-pick")
                    refine_btn = gr.Button("Refine with clicks", elem_id="segment-refine")
    with gr.Row():
        with gr.Column(scale=3):
            gallery = gr.Gallery(
                label="Candidate masks (predicted IoU)",
                columns=3,
                height=220,
                elem_id="segment-candidates",
                allow_preview=False,
            )
            candidate = gr.Radio(choices=[], label="Shown mask", elem_id="segment-picker")
        with gr.Column(scale=2):
            cut = gr.Image(label="Cut-out", format="png", interactive=False, elem_id="segment-cutout", height=220)
    with gr.Row():
        export_btn = gr.Button("Prepare downloads (mask PNG, cut-out PNG, COCO RLE JSON)", size="sm")
        files = gr.File(label="Downloads (original resolution)", file_count="multiple", interactive=False, height=120)

    outputs = [session, canvas, gallery, candidate, cut, timing, summary, files, panel, threshold, toggles, refine_pick]
    skip_all = tuple(gr.skip() for _ in outputs)

    def click_at(s: ss.SegmentSession, x: Any, y: Any, m: str, pol: str, key: str) -> tuple[Any, ...]:
        return render(ctx, ss.click(ctx, s, x, y, m == BOX_MODE, pol != EXCLUDE, key))

    @user_errors
    def on_image(value: Any, s: ss.SegmentSession) -> tuple[Any, ...]:
        try:
            return render(ctx, ss.set_image(ctx, s, value))
        except ImageInputError:  # a refused upload: the input goes back (guard_upload says why)
            return skip_all

    @user_errors
    def on_select(s: ss.SegmentSession, m: str, pol: str, key: str, evt: gr.SelectData) -> tuple[Any, ...]:
        if s.image is None:
            raise InputError("Upload or pick an image first, then click on it.")
        idx = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) == 2 else None
        if idx is None:
            raise InputError("Click on the image.")
        hit = tc.instance_at(s, idx[0], idx[1])
        if hit is not None and m == POINT_MODE:  # a click on a found instance keeps it as an object
            return render(ctx, tc.keep(s, [hit]))
        return click_at(s, idx[0], idx[1], m, pol, key)

    @user_errors
    def segment_click(session: ss.SegmentSession, x: Any, y: Any, mode: str, polarity: str, model: str) -> tuple[Any, ...]:
        """Click at (x, y) in working-image pixels on this session's image, as the canvas click does."""
        return click_at(session, x, y, mode, polarity, model)

    @user_errors
    def on_undo(s: ss.SegmentSession, key: str) -> tuple[Any, ...]:
        return render(ctx, ss.undo(ctx, s, key))

    @user_errors
    def on_redo(s: ss.SegmentSession, key: str) -> tuple[Any, ...]:
        return render(ctx, ss.redo(ctx, s, key))

    @user_errors
    def on_clear(s: ss.SegmentSession) -> tuple[Any, ...]:
        return render(ctx, ss.clear(s))

    @user_errors
    def on_new(s: ss.SegmentSession) -> tuple[Any, ...]:
        return render(ctx, ss.new_object(s))

    @user_errors
    def on_model(s: ss.SegmentSession, key: str) -> tuple[Any, ...]:
        return render(ctx, ss.change_model(ctx, s, key))

    @user_errors
    def on_pick(s: ss.SegmentSession, choice: Any) -> tuple[Any, ...]:
        return render(ctx, ss.pick(s, choice))

    def on_gallery(s: ss.SegmentSession, evt: gr.SelectData) -> tuple[Any, ...]:
        return on_pick(s, evt.index)

    @user_errors
    def on_find(s: ss.SegmentSession, text: str, box: bool, pol: str) -> tuple[Any, ...]:
        return render(ctx, tc.find(ctx, s, text, box, pol != EXCLUDE))

    @user_errors
    def on_threshold(s: ss.SegmentSession, value: Any) -> tuple[Any, ...]:
        return render(ctx, tc.set_threshold(s, value))

    @user_errors
    def on_toggles(s: ss.SegmentSession, labels: Any) -> tuple[Any, ...]:
        return render(ctx, tc.set_shown(s, labels))

    @user_errors
    def on_keep(s: ss.SegmentSession) -> tuple[Any, ...]:
        return render(ctx, tc.keep(s))

    @user_errors
    def on_refine(s: ss.SegmentSession, index: Any, key: str) -> tuple[Any, ...]:
        if index is None:
            raise InputError("Pick the instance to refine.")
        return render(ctx, tc.refine(ctx, s, index, key))

    @user_errors
    def on_export(s: ss.SegmentSession) -> list[str]:
        return ss.export(ctx, s)

    @user_errors
    def segment(image: Any, points: Any, labels: Any, box: Any, model: Any, multimask: Any) -> tuple[dict[str, Any], np.ndarray]:
        """Segment an image with a promptable segmentation model (SAM 2.1), without a session.

        Args:
            image: the image to segment.
            points: clicks as [[x, y], ...] in the image's pixels.
            labels: one per point: 1 to include the spot, 0 to exclude it.
            box: [x1, y1, x2, y2] in the image's pixels, or null.
            model: the model's registry key, e.g. sam2.1-hiera-tiny.
            multimask: true for three candidate masks, false for one.

        Returns:
            The masks as COCO RLE at the image's size with their predicted IoU, the best index and
            timings; and the image with the best mask drawn on it.
        """
        doc, r = segment_request(ctx, image, model, points, labels, box, multimask)
        shown = draw.masks(r.image.array, [r.prediction.masks[r.prediction.best]])
        return doc, draw.prompts(shown, r.points, r.labels, r.box)

    quick = model_event(ctx, "quick", timing)  # clicks never wait behind a long job in another tab
    light = light_event(timing)
    guard_upload(ctx, source)
    # Session endpoints for scripted clients (undocumented: they need this session's state).
    source.change(on_image, [source, session], outputs, preprocess=False, api_name="segment_image",
                  api_visibility="undocumented", **light)  # fmt: skip
    canvas.select(on_gpu(ctx, on_select, model_at(3)), [session, mode, polarity, model], outputs, api_visibility="private", **quick)
    undo_btn.click(on_gpu(ctx, on_undo, model_at(1)), [session, model], outputs, api_visibility="private", **quick)
    redo_btn.click(on_gpu(ctx, on_redo, model_at(1)), [session, model], outputs, api_visibility="private", **quick)
    clear_btn.click(on_clear, [session], outputs, api_visibility="private", **light)
    new_btn.click(on_new, [session], outputs, api_visibility="private", **light)
    model.input(on_gpu(ctx, on_model, model_at(1)), [session, model], outputs, api_visibility="private", **quick)
    candidate.input(on_pick, [session, candidate], outputs, api_visibility="private", **light)
    gallery.select(on_gallery, [session], outputs, api_visibility="private", **light)
    words_job = lambda *a, **k: [GpuJob(tc.DEFAULT_MODEL)]  # noqa: E731 - the by-words model is SAM 3
    for trigger in (find_btn.click, words.submit):
        trigger(on_gpu(ctx, on_find, words_job), [session, words, use_box, polarity], outputs,
                api_visibility="private", **model_event(ctx, "single", timing))  # fmt: skip
    threshold.input(on_threshold, [session, threshold], outputs, api_visibility="private", **light)
    toggles.input(on_toggles, [session, toggles], outputs, api_visibility="private", **light)
    keep_btn.click(on_keep, [session], outputs, api_visibility="private", **light)
    refine_btn.click(on_gpu(ctx, on_refine, model_at(2)), [session, refine_pick, model], outputs,
                     api_visibility="private", **quick)  # fmt: skip
    export_btn.click(on_export, [session], files, api_name="segment_export", api_visibility="undocumented",
                     **light_event(files))  # fmt: skip

    def load_model() -> None:
        with ctx.use(model.value):  # presenter mode: the model is loaded before the first click
            return None

    first_view(ctx, [source], load_model, lambda _: example_paths()[0])

    # Hidden components: a session click by coordinates (what the canvas click does; for scripted
    # clients and tests) and the stateless public endpoint.
    with gr.Column(visible=False):
        click_x = gr.Number(label="x (working-image pixels)")
        click_y = gr.Number(label="y (working-image pixels)")
        click_btn = gr.Button("click")
        api_image = ImageInput(label="image", type="filepath")
        xy = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
        api_points = example(JsonInput({"type": "array", "items": xy}, label="points", value=[[200, 150]]),
                             [[200, 150], [120, 90]])  # fmt: skip
        api_labels = example(JsonInput({"type": "array", "items": {"type": "integer", "enum": [0, 1]}},
                                       label="labels", value=[1]), [1, 0])  # fmt: skip
        api_box = example(JsonInput({"anyOf": [{"type": "array", "items": {"type": "number"}, "minItems": 4,
                                                "maxItems": 4}, {"type": "null"}]}, label="box", value=None),
                          None)  # fmt: skip
        api_model = example(gr.Textbox(label="model", value=model.value), model.value)
        api_multimask = gr.Checkbox(value=True, label="multimask")
        api_btn = gr.Button("segment")
        api_json = gr.JSON(label="masks")
        api_overlay = gr.Image(label="overlay", format="png")
    click_btn.click(on_gpu(ctx, segment_click, model_at(5)), [session, click_x, click_y, mode, polarity, model], outputs,
                    api_name="segment_click", api_visibility="undocumented", **quick)  # fmt: skip
    @user_errors
    def on_everything(s: ss.SegmentSession, key: str) -> Iterator[tuple[Any, ...]]:
        if s.image is None:
            raise InputError("Upload or pick an image first.")
        at = outputs.index(timing)
        for step in ev.run(ctx, s.image, key, cache=s.embeddings):  # the session's embedding: encoded once
            if isinstance(step, ev.Progress):
                line = f"Segmenting everything… {step.done} of {step.total} batches · {step.kept} masks so far"
                yield (*skip_all[:at], line, *skip_all[at + 1 :])
            else:
                yield render(ctx, tc.show_everything(s, step))

    everything_btn.click(on_gpu(ctx, on_everything, model_at(1)), [session, model], outputs,
                         api_visibility="private", **model_event(ctx, "long", timing))  # fmt: skip

    @user_errors
    def segment_everything(image: Any, model: Any, points_per_side: Any) -> tuple[dict[str, Any], np.ndarray]:
        """Segment every object in an image with no prompt (SAM 2.1, a grid of point prompts).

        Args:
            image: the image.
            model: a SAM 2.1 registry key, e.g. sam2.1-hiera-tiny.
            points_per_side: the grid (2 to 64; 0 for the default: 12 on a CPU, 32 on a GPU).

        Returns:
            Every mask as COCO RLE at the image's size with its predicted IoU, area, box and the
            grid point it came from (largest first); and the masks drawn on the image.
        """
        result = ev.collect(ctx, image, model, per_side=points_per_side)
        return ev.document(result), draw.masks(result.image.array, list(result.masks))

    with gr.Column(visible=False):
        every_image = ImageInput(label="image", type="filepath")
        every_model = example(gr.Textbox(label="model", value=model.value), model.value)
        every_grid = example(gr.Number(label="points_per_side", value=0, precision=0), 0)
        every_json = gr.JSON(label="masks")
        every_overlay = gr.Image(label="overlay", format="png")
        every_btn = gr.Button("segment everything")
    every_btn.click(on_gpu(ctx, segment_everything, model_at(1)), [every_image, every_model, every_grid],
                    [every_json, every_overlay], preprocess=False, api_name="segment_everything",
                    api_description="Segment every object in an image with no prompt (SAM 2.1): masks as COCO RLE.",
                    **model_event(ctx, "long"))  # fmt: skip

    @user_errors
    def segment_concepts(image: Any, concepts: Any, boxes: Any, threshold: Any) -> dict[str, Any]:
        """Segment every instance of the concepts named in words, and/or like example boxes (SAM 3).

        Args:
            image: the image.
            concepts: what to find, comma-separated, e.g. "book, mug".
            boxes: optional exemplar boxes [[x1, y1, x2, y2], ...] in the image's pixels (a 5th value
                0 marks a box as a counter-example).
            threshold: the lowest score kept (0 to 1; null for SAM 3's own 0.5).

        Returns:
            The instances: concept, score, box and mask (COCO RLE at the image's size), with notes.
        """
        return tc.segment_concepts(ctx, image, concepts, boxes, threshold)

    with gr.Column(visible=False):
        concept_image = ImageInput(label="image", type="filepath")
        concept_text = example(gr.Textbox(label="concepts", value="cat"), "cat")
        concept_boxes = example(JsonInput({"anyOf": [{"type": "array", "items": {"type": "array", "items":
                                {"type": "number"}, "minItems": 4, "maxItems": 5}}, {"type": "null"}]},
                                label="boxes", value=None), None)  # fmt: skip
        concept_threshold = example(gr.Number(label="threshold", value=None), None)
        concept_json = gr.JSON(label="instances")
        concept_btn = gr.Button("segment concepts")
    concept_btn.click(on_gpu(ctx, segment_concepts, lambda *a, **k: [GpuJob(tc.DEFAULT_MODEL)]),
                      [concept_image, concept_text, concept_boxes, concept_threshold], [concept_json],
                      preprocess=False, api_name="segment_concepts", api_description="Segment every instance "
                      "of concepts named in words, or like example boxes (SAM 3): masks as COCO RLE.",
                      **model_event(ctx, "single"))  # fmt: skip

    api_btn.click(
        on_gpu(ctx, segment, model_at(4)),
        [api_image, api_points, api_labels, api_box, api_model, api_multimask],
        [api_json, api_overlay],
        preprocess=False,
        api_name="segment",
        api_description="Segment an image from clicks or a box (SAM 2.1): masks as COCO RLE at the image's size, "
        "their predicted IoU, and an overlay.",
        **model_event(ctx, "single"),
    )


__all__ = ["TITLE", "build", "render"]
