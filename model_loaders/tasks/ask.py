"""The ``ask`` task: questions about an image, streamed, with boxes parsed and JSON checked.

`build_request` validates what a user asks before anything loads (a question for chat models;
a task from the model's menu, with its phrase or region, for models like Florence-2), `stream`
pins the model for the whole answer and yields chunks, and `answer` returns the final
``TextResult``. A JSON Schema, when given, is appended to the question and the answer is
validated against it (``structured``).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from model_loaders.core.errors import InputError
from model_loaders.core.images import DecodedImage
from model_loaders.core.protocols import AskRequest, TaskPrompt
from model_loaders.core.registry import FAMILIES
from model_loaders.core.results import AskChunk, TextResult, Timings
from model_loaders.core.specs import ModelSpec
from model_loaders.core.validate import clean_text, finite_number
from model_loaders.tasks.base import checked_spec, image_of, model_for
from model_loaders.tasks.structured import schema_instruction

MAX_QUESTION_CHARS = 4000
NO_QUESTION = "Type a question about the image."
MAX_TIME_S = 60.0
MAX_NEW_TOKENS = 2048


def ask_spec(ctx: Any, model: Any, what: str = "") -> ModelSpec:
    """The spec of a model that can answer questions and run here (checked before anything loads)."""
    return checked_spec(ctx, model, "ask", what or "one of the Ask tab's models")


def task_menu(spec: ModelSpec) -> tuple[TaskPrompt, ...]:
    """The fixed task menu of a model that takes tasks instead of questions (empty otherwise)."""
    if not spec.accepts("task"):
        return ()
    module = FAMILIES[spec.family].module
    return tuple(getattr(importlib.import_module(module), "TASK_MENU", ())) if module else ()


def _task(spec: ModelSpec, label_or_token: Any) -> TaskPrompt:
    menu = task_menu(spec)
    wanted = str(label_or_token or "").strip()
    for task in menu:
        if wanted in (task.label, task.token):
            return task
    if not wanted and menu:
        return menu[0]
    raise InputError(f"Choose one of {spec.name}'s tasks: {', '.join(t.label for t in menu)}.")


def build_request(
    spec: ModelSpec,
    image: DecodedImage,
    question: Any = "",
    history: Sequence[dict[str, Any]] = (),
    *,
    task: Any = "",
    phrase: Any = "",
    region: Any = None,
    schema: dict[str, Any] | None = None,
    max_new_tokens: Any = 256,
    temperature: Any = 0.0,
) -> tuple[AskRequest, str]:
    """Validate a question (or a task) and return the request plus what the chat shows as asked.

    Args:
        spec: the model (its prompt kinds decide what is needed).
        image: the decoded image (a region is given in its original pixels).
        question: the user's question (chat models).
        history: earlier turns about the same image.
        task: a menu label or token (models with a task menu).
        phrase: the phrase for grounding tasks.
        region: two opposite corners ``[[x, y], [x, y]]`` in original-image pixels.
        schema: an already-checked JSON Schema the answer must match.
        max_new_tokens, temperature: generation settings.

    Raises:
        InputError: a missing question, phrase or region, or out-of-range settings.
    """
    max_new = int(finite_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS))
    temp = finite_number(temperature, "Temperature", 0.0, 2.0)
    chosen, text, found = _prompt(spec, question, task, phrase, region)
    if found:
        raise InputError(next(iter(found.values())))
    if chosen is not None:
        box = None
        if chosen.needs_region:
            (ax, ay), (bx, by) = (image.to_working(*(finite_number(v, "Region corner") for v in c)) for c in region)
            if abs(ax - bx) < 2 or abs(ay - by) < 2:
                raise InputError("The region is too small: click two opposite corners.")
            box = (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))
        shown = chosen.label + (f": {text}" if text else "")
        return AskRequest(question=text, task=chosen.token, region=box, max_new_tokens=max_new, max_time=MAX_TIME_S), shown
    asked = text + (schema_instruction(schema) if schema else "")
    request = AskRequest(question=asked, history=tuple(history), max_new_tokens=max_new, temperature=temp,
                         max_time=MAX_TIME_S, json_schema=schema)  # fmt: skip
    return request, text


def _prompt(spec: ModelSpec, question: Any, task: Any, phrase: Any, region: Any) -> tuple[TaskPrompt | None, str, dict[str, str]]:
    """(the chosen task or ``None`` for a question, the cleaned text, problems by field)."""
    found: dict[str, str] = {}
    if not spec.accepts("task"):
        # Cap before anything else touches it: a 100,000-character paste never reaches the tokenizer.
        try:
            return None, clean_text(question, "Your question", MAX_QUESTION_CHARS, required=True, truncate=True,
                                    missing=NO_QUESTION), found  # fmt: skip
        except InputError as exc:
            return None, "", {"question": str(exc)}
    try:
        chosen = _task(spec, task)
    except InputError as exc:
        return None, "", {"task": str(exc)}
    text = ""
    try:
        text = clean_text(phrase, "The phrase", MAX_QUESTION_CHARS, required=chosen.needs_text, truncate=True,
                          missing=f"{chosen.label} needs a phrase: type what to find.")  # fmt: skip
    except InputError as exc:
        found["phrase"] = str(exc)
    corners = region if isinstance(region, (list, tuple)) else ()
    if chosen.needs_region and (len(corners) != 2 or any(not isinstance(c, (list, tuple)) or len(c) != 2 for c in corners)):
        found["region"] = f"{chosen.label} needs a region: click two opposite corners on the image."
    return chosen, text, found


def problems(spec: ModelSpec, question: Any = "", *, task: Any = "", phrase: Any = "", region: Any = None) -> dict[str, str]:
    """What is missing in a request, by field (question, task, phrase, region), found before any
    image is decoded or model loaded; empty when nothing is. `build_request` refuses the same."""
    return _prompt(spec, question, task, phrase, region)[2]


def last_question(history: Any) -> tuple[str, list[dict[str, Any]]]:
    """The last user question of a chat and the turns before it (for "regenerate").

    Raises:
        InputError: when there is no question to ask again.
    """
    from model_loaders.families.chat_vlm import text_of

    turns = list(history or [])
    if len(turns) < 2 or not isinstance(turns[-2], dict) or turns[-2].get("role") != "user":
        raise InputError("Nothing to regenerate yet: ask a question first.")
    return text_of(turns[-2].get("content")), turns[:-2]


def stream(
    ctx: Any,
    image: Any,
    model: Any,
    request: AskRequest,
    stop: threading.Event | None = None,
    timings: Timings | None = None,
) -> Iterator[AskChunk]:
    """Stream an answer; the model is pinned until the last chunk (or until the caller stops)."""
    spec = ask_spec(ctx, model)
    decoded = image_of(ctx, image)
    timings = timings if timings is not None else Timings()
    with model_for(ctx, spec, "ask", timings) as asker:
        yield from asker.ask(decoded.pil(), request, timings, stop)


def answer(ctx: Any, image: Any, model: Any, request: AskRequest, timings: Timings | None = None) -> TextResult:
    """The final answer (no streaming): what Compare, Workflow and the API use."""
    result = None
    for chunk in stream(ctx, image, model, request, None, timings):
        if chunk.result is not None:
            result = chunk.result
    if result is None:  # every stream ends with a result; this guards a broken backend
        raise RuntimeError("the model's stream ended without a result")
    return result


def default_request(spec: ModelSpec, question: str, max_new_tokens: int = 128) -> AskRequest:
    """A plain request for any VLM: the question, or the default task of task-menu models (a detailed caption)."""
    if spec.accepts("task"):
        return AskRequest(max_new_tokens=max_new_tokens, max_time=MAX_TIME_S)  # the model's default task
    return AskRequest(question=question, max_new_tokens=max_new_tokens, max_time=MAX_TIME_S)


@dataclass
class CheckedAnswer:
    """An answer's parsed boxes and JSON, ready to show or return.

    Attributes:
        boxes: the boxes in original-image pixels (``[]`` when the answer has none).
        grounding: one line on the boxes: how many, none, or why they could not be read.
        parse_error: why boxes could not be read (never reported as "no objects").
        data: the JSON found in the answer (with a schema), else ``None``.
        valid: whether that JSON matches the schema (``None`` without a schema).
        errors: the schema violations.
    """

    boxes: list[dict[str, Any]]
    grounding: str
    parse_error: str | None = None
    data: Any = None
    valid: bool | None = None
    errors: list[str] = field(default_factory=list)


def check_answer(result: TextResult, image: DecodedImage, schema: dict[str, Any] | None) -> CheckedAnswer:
    """Boxes mapped to the original image and the JSON validated against ``schema`` (when given)."""
    from model_loaders.families.grounding import detections_to_json
    from model_loaders.tasks.structured import validate_answer

    if result.parse_error:
        grounding = f"Box parse failure: {result.parse_error}"
    elif result.detections is None:
        grounding = "No boxes in this answer."
    else:
        grounding = f"{len(result.detections)} box(es) parsed."
    checked = CheckedAnswer(detections_to_json(result.detections, image.scale), grounding, result.parse_error)
    if schema is not None:
        structured = validate_answer(result.raw or result.text, schema)
        checked.data, checked.valid, checked.errors = structured.data, structured.valid, structured.errors
    return checked
