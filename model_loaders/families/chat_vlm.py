"""What the chat VLM families share: one streamed answer path, one loader, grounding as detection.

Each chat family (``qwen_vl``, ``paligemma``, ``smolvlm``, ``mllama``) describes only what
differs in a `ChatFamily`: its transformers class, its offline (random/tiny) build, how a prompt
is made, the coordinate system of the boxes it writes and the question that makes it write
them. `VLMBundle` then implements the ``Asker`` protocol (streamed answers with parsed boxes)
and, for families that ground, the ``Detector`` protocol (boxes for named classes, no scores).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_loaders.core.availability import LoadSettings
from model_loaders.core.errors import InputError
from model_loaders.core.hub import hub_errors, pretrained_kwargs
from model_loaders.core.protocols import AskRequest
from model_loaders.core.results import AskChunk, GenerationStats, TextResult, Timings
from model_loaders.core.specs import ModelSpec
from model_loaders.families.generation import neutralise_user_text, stream_generate
from model_loaders.families.grounding import Grounding

log = logging.getLogger(__name__)

WH = tuple[int, int]


def text_of(content: Any) -> str:
    """Text of a chat message's content (a string, or a list of parts / a dict from a chat UI)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", "") or "")
    if isinstance(content, (list, tuple)):
        return " ".join(text_of(c) for c in content if not isinstance(c, dict) or c.get("type", "text") == "text")
    return ""


def chat_messages(history: Sequence[dict[str, Any]], question: str) -> list[dict[str, Any]]:
    """Chat-template messages: the image in the first user turn, all text neutralised.

    Args:
        history: earlier turns as ``{"role", "content"}`` dicts.
        question: the new user question (already validated).
    """
    messages: list[dict[str, Any]] = []
    turns = [(m.get("role"), text_of(m.get("content"))) for m in history if m.get("role") in ("user", "assistant")]
    turns.append(("user", question))
    first_user = True
    for role, text in turns:
        text = neutralise_user_text(text)
        if role == "user" and first_user:
            messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
            first_user = False
        else:
            messages.append({"role": role, "content": [{"type": "text", "text": text}]})
    return messages


def chat_template_inputs(processor: Any, image: Any, history: Sequence[dict[str, Any]], question: str) -> Any:
    """Model inputs from the processor's chat template (the default prompt of a chat family)."""
    prompt = processor.apply_chat_template(chat_messages(history, question), add_generation_prompt=True, tokenize=False)
    return processor(text=[prompt], images=[image], return_tensors="pt")


def same_size(processor: Any, inputs: Any, image_wh: WH) -> WH:
    """Boxes in the image's own pixels (the default coordinate system)."""
    return image_wh


REMOTE_MAX_SIDE = 1536  # the longest side sent to a serving engine when a family says nothing finer


def capped_view(image: Any) -> tuple[Any, WH]:
    """What to send a serving engine by default: the image with its longest side capped, and the
    coordinate space of any boxes (the sent image's pixels)."""
    w, h = image.size
    scale = min(1.0, REMOTE_MAX_SIDE / max(w, h))
    if scale < 1.0:
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))))
    return image, (int(image.size[0]), int(image.size[1]))


def json_grounding_question(classes: Sequence[str]) -> str:
    """The prompt that makes a Qwen-style VLM answer with ``bbox_2d`` JSON."""
    what = ", ".join(classes) if classes else "object"
    return (
        f"Locate every {what} in the image and output their bbox coordinates in JSON: "
        '[{"bbox_2d": [x1, y1, x2, y2], "label": "name"}].'
    )


@dataclass(frozen=True)
class ChatFamily:
    """What differs between chat VLM families.

    Attributes:
        model_class: the transformers class name of the model.
        offline: ``offline(spec, tiny) -> (config, processor)`` for random/tiny weights.
        hub_processor_kwargs: extra arguments for the Hub processor (image size caps).
        prompt: ``prompt(processor, image, history, question) -> inputs``.
        input_wh: the coordinate space of the boxes it writes, from the processed inputs.
        parse: ``parse(text, input_wh, image_wh) -> Grounding`` (``None``: answers have no boxes).
        grounding_question: the question that makes it write boxes for named classes.
        after_build: a hook on a freshly built random/tiny model (e.g. opening gates).
        remote: a serving engine can run it through chat completions (it has a chat template).
        remote_view: ``remote_view(image) -> (image to send, coordinate space of its boxes)``: the
            image at the size the model's processor would use, so nothing larger goes over the
            wire and the server does not resize it again (its boxes then mean what we think).
    """

    model_class: str
    offline: Callable[[ModelSpec, bool], tuple[Any, Any]]
    hub_processor_kwargs: Mapping[str, Any] = field(default_factory=dict)
    prompt: Callable[[Any, Any, Sequence[dict[str, Any]], str], Any] = chat_template_inputs
    input_wh: Callable[[Any, Any, WH], WH] = same_size
    parse: Callable[[str, WH, WH], Grounding] | None = None
    grounding_question: Callable[[Sequence[str]], str] | None = None
    after_build: Callable[[Any], None] | None = None
    remote: bool = True
    remote_view: Callable[[Any], tuple[Any, WH]] = capped_view


@dataclass
class VLMBundle:
    """A loaded chat VLM; implements ``Asker`` (and ``Detector`` for families that ground)."""

    model: Any
    processor: Any
    spec: ModelSpec
    device: str
    dtype: Any
    family: ChatFamily
    vocab_limit: int | None = None

    def ask(
        self, image: Any, request: AskRequest, timings: Timings, stop: threading.Event | None = None
    ) -> Iterator[AskChunk]:
        """Answer a question about a PIL image, streaming the text (``Asker``).

        The last chunk carries a ``TextResult`` with the raw text, any boxes parsed from it
        (image pixels) and the parse error when boxes could not be read.

        Raises:
            InputError: an empty question.
        """
        import torch

        question = neutralise_user_text(request.question or "").strip()
        if not question:
            raise InputError("Type a question about the image.")
        image_wh = (int(image.size[0]), int(image.size[1]))
        with timings.stage("preprocess"):
            inputs = self.family.prompt(self.processor, image, request.history, question)
            input_wh = self.family.input_wh(self.processor, inputs, image_wh)
            inputs = {
                k: (v.to(self.device, self.dtype) if torch.is_floating_point(v) else v.to(self.device))
                for k, v in inputs.items()
                if k != "labels"
            }
        stats = GenerationStats()
        sofar = ""
        for chunk in stream_generate(
            self.model,
            inputs,
            self.processor.tokenizer,
            max_new_tokens=request.max_new_tokens,
            temperature=request.temperature,
            max_time=request.max_time,
            stop_event=stop,
            # PaliGemma's <locXXXX> are added (non-special) tokens, so they survive this.
            skip_special_tokens=True,
            vocab_limit=self.vocab_limit,
            stats=stats,
        ):
            sofar += chunk
            yield AskChunk(sofar, stats=stats, input_wh=image_wh)
        timings.inference_ms += stats.total_ms
        with timings.stage("postprocess"):
            grounding = self.family.parse(sofar, input_wh, image_wh) if self.family.parse else Grounding()
        result = TextResult(text=sofar.strip(), raw=sofar, detections=grounding.detections,
                            parse_error=grounding.error, tokens=stats.tokens, timings=timings)  # fmt: skip
        if result.detections is not None:
            result.detections.metadata.update(model=self.spec.key, timings=timings.as_dict())
        yield AskChunk(result.text, result=result, stats=stats, input_wh=image_wh)

    def detect(self, image: np.ndarray, timings: Timings, classes: Sequence[str] | None = None) -> Any:
        """Boxes for ``classes`` written by the model (``Detector``; no scores)."""
        from PIL import Image

        if self.family.grounding_question is None:
            raise InputError(f"{self.spec.name} does not write boxes.")
        question = self.family.grounding_question(list(classes or []))
        result = final_result(self.ask(Image.fromarray(image), AskRequest(question=question), timings))
        return grounded_detections(result, self.spec)


def final_result(chunks: Iterator[AskChunk]) -> TextResult:
    """The ``TextResult`` a stream ends with."""
    result = None
    for chunk in chunks:
        if chunk.result is not None:
            result = chunk.result
    if result is None:  # every stream ends with a result; this guards a broken adapter
        raise RuntimeError("the model's stream ended without a result")
    return result


def grounded_detections(result: TextResult, spec: ModelSpec) -> Any:
    """An answer's boxes as ``Detections`` (empty, with ``parse_error`` set, when none could be read)."""
    import supervision as sv

    det = result.detections if result.detections is not None else sv.Detections.empty()
    det.metadata.update(model=spec.key, raw=result.raw, vlm=True)
    if result.parse_error:
        det.metadata["parse_error"] = result.parse_error
    elif result.detections is None:
        det.metadata["parse_error"] = "the answer contains no boxes"
    return det


def open_gates(model: Any) -> None:
    """Give zero-initialised tanh gates a trained-like value (pi/4, tanh = 0.66).

    A fresh Llama 3.2 Vision starts with every cross-attention and tile-embedding gate at 0, so
    the text would ignore the image entirely; real checkpoints have open gates. Opening them
    keeps random weights doing the real computation with the image actually influencing the answer.
    """
    import math

    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.is_meta or param.numel() != 1 or not name.rsplit(".", 1)[-1].endswith("gate"):
                continue
            if float(param) == 0.0:
                param.fill_(math.pi / 4)


def adapter(
    family_of: Callable[[ModelSpec], ChatFamily],
) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], Callable[[ModelSpec], ChatFamily]]:
    """A chat family module's ``offline_parts``, ``architecture``, ``load`` and ``chat_family``
    (what a serving-engine backend needs to know about the family), from its `ChatFamily`.

    Args:
        family_of: the family of a spec (one module may hold several, e.g. Qwen2.5-VL and Qwen3-VL).
    """

    def offline_parts(spec: ModelSpec, tiny: bool) -> tuple[Any, Any]:
        """(config, processor) for ``random`` (real size) or ``tiny`` weights, built with no download."""
        return family_of(spec).offline(spec, tiny)

    def build(spec: ModelSpec, tiny: bool = False) -> Any:
        """The checkpoint's architecture (real size, or shrunken with ``tiny``), random weights."""
        return architecture(spec, family_of(spec), tiny)

    def load_spec(spec: ModelSpec, settings: LoadSettings) -> VLMBundle:
        """Load the model (hub checkpoint, random real size, or tiny)."""
        return load(spec, settings, family_of(spec))

    return offline_parts, build, load_spec, family_of


def architecture(spec: ModelSpec, family: ChatFamily, tiny: bool = False) -> Any:
    """The checkpoint's architecture (real size, or shrunken with ``tiny``), random weights."""
    import transformers

    return getattr(transformers, family.model_class)(family.offline(spec, tiny)[0])


def load(spec: ModelSpec, settings: LoadSettings, family: ChatFamily) -> VLMBundle:
    """Load a chat VLM for ``spec`` under ``settings``.

    Raises:
        ModelUnavailable: hub failures (offline, gated), or an unknown variant.
    """
    import torch
    import transformers

    dtype = getattr(torch, settings.dtype_name(spec))
    cls = getattr(transformers, family.model_class)
    vocab_limit = None
    if settings.weights == "hub":
        with hub_errors(spec):
            processor = transformers.AutoProcessor.from_pretrained(
                spec.checkpoint, **pretrained_kwargs(spec), **family.hub_processor_kwargs
            )
            model = cls.from_pretrained(spec.checkpoint, dtype=dtype, **pretrained_kwargs(spec))
    else:
        config, processor = family.offline(spec, settings.weights == "tiny")
        torch.manual_seed(0)
        model = cls(config).to(dtype)
        if family.after_build is not None:
            family.after_build(model)
        vocab_limit = len(processor.tokenizer)
        # Random weights tend to end at once; a floor of a few tokens keeps streaming visible.
        model.generation_config.min_new_tokens = 8
        # They also like control tokens (image slots, SmolVLM's <row_i_col_j>), which decode to
        # nothing, so a random answer would stream as blank: allow only eos among them.
        # (Read the added tokens: some processors re-register their own specials and drop ours from
        # ``all_special_ids``.)
        tok = processor.tokenizer
        control = {i for i, t in tok.added_tokens_decoder.items() if t.special} | set(tok.all_special_ids)
        model.generation_config.suppress_tokens = sorted(control - {tok.eos_token_id})
    model.to(settings.device).eval()
    return VLMBundle(model, processor, spec, settings.device, dtype, family, vocab_limit)
