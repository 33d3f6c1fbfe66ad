"""Ask tab: chat about an image (streamed), Florence-2 tasks, grounding boxes, structured JSON.

UI only: models, prompts, parsing and validation live in ``model_loaders`` (vlm, florence2,
grounding, structured). Every image event uses ``preprocess=False`` and the one safe decoder.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import gradio as gr
import numpy as np

from model_loaders.core.context import AppContext
from model_loaders.core.errors import InputError
from model_loaders.core.images import DecodedImage, decode_image
from model_loaders.core.registry import DEFAULTS, get_spec, specs_for_task
from model_loaders.core.results import Timings
from model_loaders.families.florence2 import TASKS, TASKS_BY_LABEL, TASKS_BY_TOKEN
from model_loaders.families.generation import AskChunk, GenerationStats
from model_loaders.families.grounding import detections_to_json
from model_loaders.families.vlm import ask_stream
from model_loaders.tasks.runners import checked_spec
from model_loaders.tasks.structured import PRESETS, load_schema, schema_instruction, validate_answer
from tabs._components import ImageInput
from tabs._errors import user_errors
from tabs._events import LIGHT_EVENT, MODEL_EVENT
from tabs._examples import example_paths
from tabs._validate import clean_text, finite_number

log = logging.getLogger(__name__)

TITLE = "Ask"
MAX_QUESTION_CHARS = 4000
MAX_TIME_S = 60.0
NO_PRESET = "(none)"


def _model_choices() -> list[tuple[str, str]]:
    return [(f"{s.name}", s.key) for s in specs_for_task("ask")]


def timing_line(ctx: AppContext, stats: GenerationStats | None, timings: Timings) -> str:
    """One line: time to first token, tokens/s, total, device, model, weights mode (+ warning)."""
    parts = []
    if stats is not None:
        ttft = f"{stats.first_token_ms:,.0f} ms" if stats.first_token_ms is not None else "–"
        parts += [f"first token {ttft}", f"{stats.tokens_per_s:.1f} tokens/s", f"{stats.tokens} tokens"]
    parts += [
        f"total {timings.total_ms / 1000:.2f} s (load {timings.load_ms / 1000:.2f} s, "
        f"preprocess {timings.preprocess_ms:.0f} ms)",
        f"device `{timings.device or ctx.settings.device}`",
        f"model `{timings.model}`",
        f"weights `{ctx.settings.weights}`",
    ]
    if stats is not None and stats.stopped in ("max_new_tokens", "max_time", "user"):
        parts.append({"max_new_tokens": "stopped at max new tokens", "max_time": "stopped at the time limit",
                      "user": "stopped by you"}[stats.stopped])  # fmt: skip
    line = " · ".join(parts)
    if ctx.weights_warning:
        line += f"\n\n⚠️ **{ctx.weights_warning}**"
    return line


def draw_boxes(image: np.ndarray, detections: Any) -> np.ndarray:
    """The image with labelled boxes (a copy)."""
    import supervision as sv

    if detections is None or len(detections) == 0:
        return image
    frame = image.copy()
    frame = sv.BoxAnnotator(thickness=2).annotate(frame, detections)
    names = detections.data.get("class_name")
    labels = [str(n) or "box" for n in names] if names is not None else None
    return sv.LabelAnnotator(text_scale=0.5, text_padding=3).annotate(frame, detections, labels=labels)


def _florence_request(task_label: str, phrase: Any, region_pts: Any, decoded: DecodedImage) -> tuple[str, str, Any]:
    task = TASKS_BY_LABEL.get(str(task_label))
    if task is None:
        raise InputError("Choose a Florence-2 task.")
    text = clean_text(phrase, "Phrase", MAX_QUESTION_CHARS, required=task.needs_text, truncate=True)
    region = None
    if task.needs_region:
        pts = list(region_pts or [])
        if len(pts) != 2:
            raise InputError(f"{task.label} needs a region: click two opposite corners on the image.")
        (ax, ay), (bx, by) = (decoded.to_working(*p) for p in pts)
        if abs(ax - bx) < 2 or abs(ay - by) < 2:
            raise InputError("The region is too small: click two opposite corners.")
        region = (ax, ay, bx, by)
    return task.token, text, region


def _schema(preset: Any, schema_text: Any) -> dict[str, Any] | None:
    text = clean_text(schema_text, "JSON schema", 20_000)
    if text:
        return load_schema(text)
    if preset and preset != NO_PRESET:
        return load_schema(str(preset))
    return None


def run_ask(
    ctx: AppContext,
    image: Any,
    model_key: Any,
    question: Any,
    history: list[dict[str, Any]],
    *,
    task_label: str = "",
    phrase: Any = "",
    region_pts: Any = None,
    schema: dict[str, Any] | None = None,
    max_new_tokens: Any = 256,
    temperature: Any = 0.0,
    stop_event: threading.Event | None = None,
) -> Iterator[tuple[str, AskChunk, DecodedImage]]:
    """Validate inputs and stream one answer: yields (user-visible prompt, chunk, decoded image)."""
    spec = checked_spec(ctx, model_key if isinstance(model_key, str) else "", "ask", "one of the Ask tab's models")
    key = spec.key
    decoded = decode_image(image, gate=ctx.uploads)
    max_new = int(finite_number(max_new_tokens, "Max new tokens", 1, 2048))
    temp = finite_number(temperature, "Temperature", 0.0, 2.0)
    timings = Timings()
    if spec.family == "florence2":
        token, text, region = _florence_request(task_label, phrase, region_pts, decoded)
        shown = TASKS_BY_TOKEN[token].label + (f": {text}" if text else "")
        stream = ask_stream(ctx, key, decoded.pil(), text, (), task=token, region=region, max_new_tokens=max_new,
                            max_time=MAX_TIME_S, stop_event=stop_event, timings=timings)  # fmt: skip
    else:
        # Cap before anything else touches it: a 100,000-character paste never reaches the tokenizer.
        q = clean_text(question, "Question", MAX_QUESTION_CHARS, required=True, truncate=True)
        shown = q
        asked = q + (schema_instruction(schema) if schema else "")
        stream = ask_stream(ctx, key, decoded.pil(), asked, history, max_new_tokens=max_new, temperature=temp,
                            max_time=MAX_TIME_S, stop_event=stop_event, timings=timings)  # fmt: skip
    for chunk in stream:
        yield shown, chunk, decoded


def _final_outputs(ctx: AppContext, chunk: AskChunk, decoded: DecodedImage, schema: dict[str, Any] | None) -> dict:
    result = chunk.result
    boxes = detections_to_json(result.detections, decoded.scale)
    if result.parse_error:
        grounding = f"⚠️ **Box parse failure:** {result.parse_error}"
    elif result.detections is None:
        grounding = "No boxes in this answer."
    else:
        grounding = f"{len(result.detections)} box(es) parsed."
    structured, flag = None, ""
    if schema is not None:
        sr = validate_answer(result.raw or result.text, schema)
        structured = sr.data
        flag = "✅ **valid JSON** for the schema" if sr.valid else "❌ **invalid:** " + "; ".join(sr.errors[:5])
    return {
        "image": draw_boxes(decoded.array, result.detections),
        "raw": result.raw,
        "boxes": boxes,
        "grounding": grounding,
        "structured": structured,
        "flag": flag,
        "timing": timing_line(ctx, chunk.stats, result.timings),
    }


def build(ctx: AppContext) -> None:
    """Render the Ask tab."""
    gr.Markdown(
        "Ask about an image: chat with a VLM (streamed), run a Florence-2 task, get boxes drawn "
        "and JSON checked against a schema. Florence-2 region tasks: click two opposite corners "
        "on the image."
    )
    history_key = gr.State("")  # digest of the image the chat history is about
    region_state = gr.State([])
    with gr.Row():
        with gr.Column(scale=1):
            image = ImageInput(label="Image", sources=["upload", "clipboard"], elem_id="ask-image")
            gr.Examples(example_paths(), inputs=[image], label="Examples")
            model = gr.Dropdown(_model_choices(), value=DEFAULTS["ask"], label="Model", elem_id="ask-model")
            with gr.Group(visible=True) as florence_box:
                task = gr.Dropdown([t.label for t in TASKS], value=TASKS[0].label, label="Florence-2 task")
                phrase = gr.Textbox(label="Phrase (grounding / open-vocabulary)", max_lines=2)
                with gr.Row():
                    region_md = gr.Markdown("Region: none (click two corners on the image)")
                    clear_region = gr.Button("Clear region", size="sm", scale=0)
            with gr.Accordion("Generation and structured output", open=False):
                max_tokens = gr.Slider(1, 1024, value=256, step=1, label="Max new tokens")
                temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)")
                preset = gr.Dropdown([NO_PRESET, *PRESETS], value=NO_PRESET, label="JSON schema preset")
                schema_text = gr.Code(label="Or your own JSON Schema", language="json", lines=6)
        with gr.Column(scale=1):
            chat = gr.Chatbot(label="Chat", height=360, elem_id="ask-chat")
            question = gr.Textbox(label="Question", placeholder="What is in this image?", elem_id="ask-question")
            with gr.Row():
                send = gr.Button("Ask", variant="primary", elem_id="ask-send")
                stop = gr.Button("Stop", elem_id="ask-stop")
                regen = gr.Button("Regenerate")
                clear = gr.Button("Clear chat")
            timing = gr.Markdown(elem_id="ask-timing")
            annotated = gr.Image(label="Boxes", interactive=False, format="png")
            grounding_md = gr.Markdown()
            raw = gr.Textbox(label="Raw model output", lines=3, interactive=False, elem_id="ask-raw")
            boxes = gr.JSON(label="Parsed boxes (original image pixels)")
            flag = gr.Markdown()
            structured = gr.JSON(label="Structured output")

    outputs = [chat, question, annotated, raw, boxes, grounding_md, structured, flag, timing, history_key]

    def _respond(img: Any, key: Any, task_label: Any, phr: Any, q: Any, hist: Any, mx: Any, temp: Any,
                 pre: Any, sch: Any, pts: Any, hkey: str) -> Iterator[list[Any]]:  # fmt: skip
        schema = _schema(pre, sch)
        decoded_key = decode_image(img, gate=ctx.uploads).digest
        hist = list(hist or []) if hkey == decoded_key else []
        stop_event = threading.Event()
        try:
            for shown, chunk, decoded in run_ask(ctx, img, key, q, hist, task_label=str(task_label), phrase=phr,
                                                 region_pts=pts, schema=schema, max_new_tokens=mx, temperature=temp,
                                                 stop_event=stop_event):  # fmt: skip
                turn = [{"role": "user", "content": shown}, {"role": "assistant", "content": chunk.text or "…"}]
                if chunk.result is None:
                    yield [hist + turn, "", gr.skip(), chunk.text, gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                           "streaming…", decoded_key]  # fmt: skip
                else:
                    out = _final_outputs(ctx, chunk, decoded, schema)
                    yield [hist + turn, "", out["image"], out["raw"], out["boxes"], out["grounding"],
                           out["structured"], out["flag"], out["timing"], decoded_key]  # fmt: skip
        finally:
            stop_event.set()  # a cancelled stream (Stop) ends generation at the next token

    @user_errors
    def respond(*args: Any) -> Iterator[list[Any]]:
        yield from _respond(*args)

    @user_errors
    def regenerate(img: Any, key: Any, task_label: Any, phr: Any, hist: Any, *rest: Any) -> Iterator[list[Any]]:
        hist = list(hist or [])
        if len(hist) < 2:
            raise InputError("Nothing to regenerate yet: ask a question first.")
        last_q = hist[-2].get("content") if hist[-2].get("role") == "user" else None
        from model_loaders.families.vlm import _text_of

        q = _text_of(last_q) if last_q is not None else ""
        yield from _respond(img, key, task_label, phr, q, hist[:-2], *rest)

    inputs = [image, model, task, phrase, question, chat, max_tokens, temperature, preset, schema_text, region_state,
              history_key]  # fmt: skip
    ev_send = send.click(respond, inputs, outputs, api_visibility="private", preprocess=False, **MODEL_EVENT)
    ev_submit = question.submit(respond, inputs, outputs, api_visibility="private", preprocess=False, **MODEL_EVENT)
    regen_inputs = [image, model, task, phrase, chat, max_tokens, temperature, preset, schema_text, region_state,
                    history_key]  # fmt: skip
    ev_regen = regen.click(regenerate, regen_inputs, outputs, api_visibility="private", preprocess=False, **MODEL_EVENT)
    stop.click(None, None, None, cancels=[ev_send, ev_submit, ev_regen], api_visibility="private")
    clear.click(lambda: ([], "", None, "", None, "", None, "", "", ""), None, outputs, api_visibility="private",
                **LIGHT_EVENT)  # fmt: skip

    def _show_florence(key: Any) -> Any:
        try:
            return gr.update(visible=get_spec(str(key)).family == "florence2")
        except Exception:  # noqa: BLE001 - unknown key: keep the panel as is
            return gr.update()

    model.change(_show_florence, model, florence_box, api_visibility="private", **LIGHT_EVENT)

    def _click(pts: Any, evt: gr.SelectData) -> tuple[list[Any], str]:
        pts = list(pts or [])
        if len(pts) >= 2:
            pts = []
        x, y = (float(v) for v in evt.index[:2])
        pts.append([x, y])
        if len(pts) == 1:
            return pts, f"Region: first corner ({x:.0f}, {y:.0f}); click the opposite corner."
        (ax, ay), (bx, by) = pts
        return pts, f"Region: ({min(ax, bx):.0f}, {min(ay, by):.0f}) → ({max(ax, bx):.0f}, {max(ay, by):.0f})"

    image.select(_click, region_state, [region_state, region_md], api_visibility="private", **LIGHT_EVENT)
    clear_region.click(lambda: ([], "Region: none (click two corners on the image)"), None,
                       [region_state, region_md], api_visibility="private", **LIGHT_EVENT)  # fmt: skip
    image.change(lambda: ([], "Region: none (click two corners on the image)"), None, [region_state, region_md],
                 api_visibility="private", **LIGHT_EVENT)  # fmt: skip

    # --- the public API endpoint: image, model key, prompt or task, optional schema -------------
    with gr.Row(visible=False):
        api_image = ImageInput(label="image")
        api_model = gr.Textbox(label="model_key")
        api_prompt = gr.Textbox(label="prompt")
        api_schema = gr.Textbox(label="schema")
        api_answer = gr.Textbox(label="answer")
        api_boxes = gr.JSON(label="boxes")
        api_json = gr.JSON(label="json")
        api_button = gr.Button("ask")

    @user_errors
    def ask_api(image: Any, model: Any, prompt: Any, schema: Any) -> tuple[str, Any, Any]:
        """Ask a model about an image.

        For Florence-2 the prompt is a task token, optionally followed by a phrase
        (e.g. ``<OD>`` or ``<OPEN_VOCABULARY_DETECTION>red car``); other models take a question.
        Returns the answer text, the parsed boxes (original image pixels, or an error) and the
        structured JSON with its validity when a schema (JSON Schema text or a preset name) is given.
        """
        schema = load_schema(clean_text(schema, "JSON schema", 20_000) or None)
        spec = checked_spec(ctx, model if isinstance(model, str) else "", "ask", "one of the Ask tab's models")
        text = clean_text(prompt, "Prompt", MAX_QUESTION_CHARS, required=spec.family != "florence2", truncate=True)
        task_label, phr = "", ""
        if spec.family == "florence2":
            token = next((t for t in TASKS_BY_TOKEN if text.startswith(t)), "<CAPTION>" if not text else None)
            if token is None:
                raise InputError("For Florence-2, start the prompt with a task token: " + ", ".join(TASKS_BY_TOKEN))
            task_label, phr = TASKS_BY_TOKEN[token].label, text[len(token) :].strip()
            if TASKS_BY_TOKEN[token].needs_region:
                raise InputError("Region tasks need a drawn region: use the Ask tab.")
        final = None
        for _, chunk, decoded in run_ask(ctx, image, model, text, [], task_label=task_label, phrase=phr, schema=schema):
            if chunk.result is not None:
                final = (chunk, decoded)
        assert final is not None
        chunk, decoded = final
        res = chunk.result
        boxes_out: Any = {"error": res.parse_error} if res.parse_error else detections_to_json(res.detections,
                                                                                               decoded.scale)  # fmt: skip
        js: Any = None
        if schema is not None:
            sr = validate_answer(res.raw or res.text, schema)
            js = {"valid": sr.valid, "data": sr.data, "errors": sr.errors}
        return res.text, boxes_out, js

    api_button.click(ask_api, [api_image, api_model, api_prompt, api_schema], [api_answer, api_boxes, api_json],
                     api_name="ask", preprocess=False, **MODEL_EVENT)  # fmt: skip
