"""Ask tab: chat about an image (streamed), task-menu models, grounding boxes, structured JSON (UI only).

Requests are built and checked by ``model_loaders.tasks.ask``; which controls show depends on
the chosen model's prompt kinds (a question, or a task menu with a phrase or a region).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr

from model_loaders.core.context import AppContext
from model_loaders.core.errors import InputError
from model_loaders.core.registry import DEFAULTS, get_spec
from model_loaders.core.results import AskChunk, Timings
from model_loaders.core.stopflags import StopFlags
from model_loaders.core.validate import clean_text
from model_loaders.tasks import ask as ta
from model_loaders.tasks.base import image_of
from model_loaders.tasks.structured import MAX_SCHEMA_CHARS, PRESETS, load_schema
from tabs import _render as draw
from tabs._checks import guard_upload, model_problem, no_image, problem, validator
from tabs._components import ImageInput, example
from tabs._errors import user_errors
from tabs._events import light_event, model_event
from tabs._examples import example_paths
from tabs._gpu import model_at, on_gpu
from tabs._picker import model_picker
from tabs._presenter import DEV_ONLY, first_view, input_height
from tabs._timing import timing_line

log = logging.getLogger(__name__)

TITLE = "Ask"
NO_PRESET = "(none)"
NO_REGION = "Region: none (click two corners on the image)"
STREAMING = "streaming… (**Stop** ends the answer here)"


def empty_hint(menu: list[str]) -> str:
    """What to do first, for a chat model or a task-menu model."""
    what = "choose a task" if menu else "type a question"
    return f"Upload an image or pick an example, {what} and press **Ask**."


def stats_line(ctx: AppContext, chunk: AskChunk, timings: Timings) -> str:
    """The timing line of an answer: first token, speed, tokens, total, then the usual parts."""
    stats = chunk.stats
    lead = []
    if stats is not None:
        ttft = f"{stats.first_token_ms:,.0f} ms" if stats.first_token_ms is not None else "–"
        lead += [f"first token {ttft}", f"{stats.tokens_per_s:.1f} tokens/s", f"{stats.tokens} tokens"]
        if stats.stopped in ("max_new_tokens", "max_time", "user"):
            lead.append({"max_new_tokens": "stopped at max new tokens", "max_time": "stopped at the time limit",
                         "user": "stopped by you"}[stats.stopped])  # fmt: skip
    lead.append(f"total {timings.total_ms / 1000:.2f} s")
    return timing_line(ctx, timings, lead=lead, stages=False)


def schema_of(preset: Any, schema_text: Any) -> dict[str, Any] | None:
    """The user's schema (their own text wins over a preset), checked."""
    text = clean_text(schema_text, "JSON schema", MAX_SCHEMA_CHARS)
    if text:
        return load_schema(text)
    if preset and preset != NO_PRESET:
        return load_schema(str(preset))
    return None


def task_choices(key: Any) -> list[str]:
    """The chosen model's task menu labels (empty for chat models)."""
    try:
        return [t.label for t in ta.task_menu(get_spec(str(key)))]
    except Exception:  # noqa: BLE001 - an unknown key has no menu
        return []


def build(ctx: AppContext) -> None:
    """Render the Ask tab."""
    gr.Markdown(
        "Ask about an image: chat with a VLM (streamed), or run a task of a task-menu model such as "
        "Florence-2; boxes in answers are drawn, and JSON answers are checked against a schema. "
        "Region tasks: click two opposite corners on the image.",
        elem_classes=["intro"],
    )
    history_key = gr.State("")  # digest of the image the chat history is about
    region_state = gr.State([])
    first_menu = task_choices(DEFAULTS["ask"])
    with gr.Row():
        with gr.Column(scale=1):
            image = ImageInput(label="Image", sources=["upload", "clipboard"], elem_id="ask-image",
                               height=input_height(ctx))  # fmt: skip
            gr.Examples(example_paths(), inputs=[image], label="Examples", elem_id="ask-examples")
            model = model_picker(ctx, "ask", elem_id="ask-model").dropdown
            with gr.Group(visible=bool(first_menu)) as task_box:
                task = gr.Dropdown(first_menu, value=first_menu[0] if first_menu else None, label="Task",
                                   elem_id="ask-task")  # fmt: skip
                phrase = gr.Textbox(label="Phrase (grounding / open-vocabulary)", max_lines=2)
                with gr.Row():
                    region_md = gr.Markdown(NO_REGION)
                    clear_region = gr.Button("Clear region", size="sm", scale=0)
            with gr.Accordion("Generation and structured output", open=False):
                max_tokens = gr.Slider(1, 1024, value=256, step=1, label="Max new tokens", elem_id="ask-max-tokens")
                temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)",
                                        elem_id="ask-temperature")  # fmt: skip
                preset = gr.Dropdown([NO_PRESET, *PRESETS], value=NO_PRESET, label="JSON schema preset")
                schema_text = gr.Code(label="Or your own JSON Schema", language="json", lines=6)
        with gr.Column(scale=1):
            chat = gr.Chatbot(label="Chat", height=360, elem_id="ask-chat")
            # Chat models take a question; task-menu models take the task (and phrase) on the left.
            question = gr.Textbox(label="Question", placeholder="What is in this image?", elem_id="ask-question",
                                  visible=not first_menu)  # fmt: skip
            with gr.Row():
                send = gr.Button("Ask", variant="primary", elem_id="ask-send")
                stop = gr.Button("Stop", elem_id="ask-stop")
                regen = gr.Button("Regenerate")
                clear = gr.Button("Clear chat")
            timing = gr.Markdown(empty_hint(first_menu), elem_id="ask-timing")
            annotated = gr.Image(label="Boxes and region", interactive=False, format="png", elem_id="ask-boxes")
            grounding_md = gr.Markdown()
            raw = gr.Textbox(label="Raw model output", lines=3, interactive=False, elem_id="ask-raw",
                             elem_classes=[DEV_ONLY])  # fmt: skip
            boxes = gr.JSON(label="Parsed boxes (original image pixels)", elem_classes=[DEV_ONLY])
            flag = gr.Markdown()
            structured = gr.JSON(label="Structured output")

    outputs = [chat, question, annotated, raw, boxes, grounding_md, structured, flag, timing, history_key]

    # Stop is a quick event of its own: it asks the session's running answer to stop at the next token
    # and the stream sends its own last message ("stopped by you"), so nothing arrives after it and
    # overwrites it. The request is a file, so it reaches a stream running in a ZeroGPU worker.
    stops = StopFlags()

    def _respond(img: Any, key: Any, task_label: Any, phr: Any, q: Any, hist: Any, mx: Any, temp: Any,
                 pre: Any, sch: Any, pts: Any, hkey: str, session: str | None = None) -> Iterator[list[Any]]:  # fmt: skip
        spec = ta.ask_spec(ctx, key)
        schema = schema_of(pre, sch)
        decoded = image_of(ctx, img)
        hist = list(hist or []) if hkey == decoded.digest else []
        request, shown = ta.build_request(spec, decoded, q, hist, task=task_label, phrase=phr, region=pts,
                                          schema=schema, max_new_tokens=mx, temperature=temp)  # fmt: skip
        stop_event = stops.start(session)
        timings = Timings()
        try:
            for chunk in ta.stream(ctx, decoded, spec.key, request, stop_event, timings):
                turn = [{"role": "user", "content": shown}, {"role": "assistant", "content": chunk.text or "…"}]
                if chunk.result is None:
                    yield [hist + turn, "", gr.skip(), chunk.text, gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                           gr.skip() if stop_event.is_set() else STREAMING, decoded.digest]  # fmt: skip
                    continue
                checked = ta.check_answer(chunk.result, decoded, schema)
                flag_text = ""
                if checked.valid is not None:
                    flag_text = ("✅ **valid JSON** for the schema" if checked.valid
                                 else "❌ **invalid:** " + "; ".join(checked.errors[:5]))  # fmt: skip
                grounding = ("⚠️ **" + checked.grounding + "**") if checked.parse_error else checked.grounding
                yield [hist + turn, "", draw.boxes(decoded.array, chunk.result.detections), chunk.result.raw,
                       checked.boxes, grounding, checked.data, flag_text, stats_line(ctx, chunk, timings),
                       decoded.digest]  # fmt: skip
        finally:
            stops.finish(stop_event)  # a stream that ends early (page closed) stops at the next token

    @user_errors
    def respond(img: Any, key: Any, task_label: Any, phr: Any, q: Any, hist: Any, mx: Any, temp: Any, pre: Any,
                sch: Any, pts: Any, hkey: str, request: gr.Request) -> Iterator[list[Any]]:  # fmt: skip
        yield from _respond(img, key, task_label, phr, q, hist, mx, temp, pre, sch, pts, hkey, request.session_hash)

    @user_errors
    def regenerate(img: Any, key: Any, task_label: Any, phr: Any, hist: Any, mx: Any, temp: Any, pre: Any, sch: Any,
                   pts: Any, hkey: str, request: gr.Request) -> Iterator[list[Any]]:  # fmt: skip
        q, earlier = ta.last_question(hist)
        yield from _respond(img, key, task_label, phr, q, earlier, mx, temp, pre, sch, pts, hkey, request.session_hash)

    def on_stop(request: gr.Request) -> None:
        # No output of its own: the stream's last message says "stopped by you" (a reply from here
        # could arrive after it and overwrite it).
        if request.session_hash:
            stops.request(request.session_hash)

    def check_ask(img: Any, key: Any, task_label: Any, phr: Any, q: Any, hist: Any, mx: Any, temp: Any,
                  pre: Any, sch: Any, pts: Any, hkey: Any) -> dict[str, str | None]:  # fmt: skip
        found: dict[str, str | None] = {"img": no_image(img), "key": model_problem(ctx, "ask", key),
                                        "sch": problem(lambda: schema_of(pre, sch))}  # fmt: skip
        if found["key"] is None:
            wrong = ta.problems(ctx.spec(str(key)), q, task=task_label, phrase=phr, region=pts)
            found.update(q=wrong.get("question"), task_label=wrong.get("task"), phr=wrong.get("phrase"))
            found["img"] = found["img"] or wrong.get("region")
        return found

    def check_regen(img: Any, key: Any, task_label: Any, phr: Any, hist: Any, *rest: Any) -> dict[str, str | None]:
        return {"img": no_image(img), "key": model_problem(ctx, "ask", key),
                "hist": problem(lambda: ta.last_question(hist))}  # fmt: skip

    inputs = [image, model, task, phrase, question, chat, max_tokens, temperature, preset, schema_text, region_state,
              history_key]  # fmt: skip
    long = model_event(ctx, "long", timing)

    def ask_example() -> list[Any]:
        chunks = _respond(example_paths()[0], model.value, task.value, "", "What is in this image?", [],
                          max_tokens.value, 0.0, NO_PRESET, "", [], "")  # fmt: skip
        last: list[Any] = []
        for last in chunks:  # noqa: B007 - the final message is the answer
            pass
        return last

    first_view(ctx, [image, *outputs], ask_example, lambda last: (example_paths()[0], *last))
    guard_upload(ctx, image)
    gr.on([send.click, question.submit], on_gpu(ctx, respond, model_at(1, tokens_at=6)), inputs, outputs, api_visibility="private", preprocess=False,
          validator=validator(check_ask), **long)  # fmt: skip
    regen_inputs = [image, model, task, phrase, chat, max_tokens, temperature, preset, schema_text, region_state,
                    history_key]  # fmt: skip
    regen.click(on_gpu(ctx, regenerate, model_at(1, tokens_at=5)), regen_inputs, outputs, api_visibility="private", preprocess=False,
                validator=validator(check_regen), **long)  # fmt: skip
    stop.click(on_stop, None, None, api_visibility="private", **light_event())
    clear.click(lambda: ([], "", None, "", None, "", None, "", "", ""), None, outputs, api_visibility="private",
                **light_event())  # fmt: skip

    def on_model(key: Any) -> tuple[Any, Any, Any, str]:
        menu = task_choices(key)
        return (gr.update(visible=bool(menu)), gr.update(choices=menu, value=menu[0] if menu else None),
                gr.update(visible=not menu), empty_hint(menu))  # fmt: skip

    model.change(on_model, model, [task_box, task, question, timing], api_visibility="private", **light_event())

    @user_errors
    def on_region(img: Any, pts: Any, evt: gr.SelectData) -> tuple[list[Any], str, Any]:
        """A click on the image: a region corner, drawn on the Boxes image as it is being set."""
        pts = list(pts or [])
        if len(pts) >= 2:
            pts = []
        x, y = (float(v) for v in evt.index[:2])
        pts.append([x, y])
        decoded = image_of(ctx, img)
        drawn = draw.region(decoded.array, [decoded.to_working(*p) for p in pts])
        if len(pts) == 1:
            return pts, f"Region: first corner ({x:.0f}, {y:.0f}); click the opposite corner.", drawn
        (ax, ay), (bx, by) = pts
        return pts, f"Region: ({min(ax, bx):.0f}, {min(ay, by):.0f}) → ({max(ax, bx):.0f}, {max(ay, by):.0f})", drawn

    image.select(on_region, [image, region_state], [region_state, region_md, annotated], api_visibility="private",
                 preprocess=False, **light_event(region_md))  # fmt: skip
    clear_region.click(lambda: ([], NO_REGION, None), None, [region_state, region_md, annotated],
                       api_visibility="private", **light_event())  # fmt: skip
    image.change(lambda: ([], NO_REGION), None, [region_state, region_md], api_visibility="private", **light_event())

    # --- the public API endpoint: image, model, prompt or task, optional schema -------------
    with gr.Row(visible=False):
        api_image = ImageInput(label="image")
        api_model = example(gr.Textbox(label="model", value=DEFAULTS["ask"]), DEFAULTS["ask"])
        prompt_example = (first_menu and ta.task_menu(get_spec(DEFAULTS["ask"]))[0].token) or "What is in this image?"
        api_prompt = example(gr.Textbox(label="prompt", value=prompt_example), prompt_example)
        api_schema = example(gr.Textbox(label="schema", value=""), "")
        api_answer = gr.Textbox(label="answer")
        api_boxes = gr.JSON(label="boxes")
        api_json = gr.JSON(label="json")
        api_button = gr.Button("ask")

    @user_errors
    def ask(image: Any, model: Any, prompt: Any, schema: Any) -> tuple[str, Any, Any]:
        """Ask a vision-language model about an image.

        Args:
            image: the image.
            model: the model's registry key, e.g. florence-2-base or qwen2.5-vl-3b.
            prompt: a question; for task-menu models (Florence-2) a task token, optionally
                followed by a phrase, e.g. <OD> or <CAPTION_TO_PHRASE_GROUNDING>red car.
            schema: optional JSON Schema text (or a preset name: book, objects, receipt, product,
                sign) the answer must match.

        Returns:
            The answer text; the boxes in the answer (image pixels) or the reason they could not
            be read; and, with a schema, the JSON found with its validity and errors.
        """
        checked_schema = load_schema(clean_text(schema, "JSON schema", MAX_SCHEMA_CHARS) or None)
        spec = ta.ask_spec(ctx, model)
        decoded = image_of(ctx, image)
        text = clean_text(prompt, "The prompt", ta.MAX_QUESTION_CHARS, required=not spec.accepts("task"),
                          truncate=True, missing=ta.NO_QUESTION)  # fmt: skip
        if spec.accepts("task"):
            chosen = next((t for t in ta.task_menu(spec) if text.startswith(t.token)), None)
            if chosen is None and text:
                raise InputError(f"For {spec.name}, start the prompt with a task token: "
                                 + ", ".join(t.token for t in ta.task_menu(spec)))  # fmt: skip
            if chosen is not None and chosen.needs_region:
                raise InputError("Region tasks need a drawn region: use the Ask tab.")
            request, _ = ta.build_request(spec, decoded, task=chosen.token if chosen else "",
                                          phrase=text[len(chosen.token):] if chosen else "")  # fmt: skip
        else:
            request, _ = ta.build_request(spec, decoded, text, schema=checked_schema)
        result = ta.answer(ctx, decoded, spec.key, request)
        checked = ta.check_answer(result, decoded, checked_schema)
        boxes_out: Any = {"error": checked.parse_error} if checked.parse_error else checked.boxes
        js: Any = None
        if checked.valid is not None:
            js = {"valid": checked.valid, "data": checked.data, "errors": checked.errors}
        return result.text, boxes_out, js

    api_button.click(on_gpu(ctx, ask, model_at(1, tokens=256)), [api_image, api_model, api_prompt, api_schema], [api_answer, api_boxes, api_json],
                     api_name="ask", api_description="Ask a vision-language model about an image: the answer, any "
                     "boxes in it, and JSON checked against a schema.", preprocess=False,
                     **model_event(ctx, "long"))  # fmt: skip
