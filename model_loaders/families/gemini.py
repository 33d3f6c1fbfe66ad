"""Gemini 2.5 through the google-genai client (optional ``gemini`` extra, needs GEMINI_API_KEY).

Availability (extra installed, key set) is checked before ``load`` by ``availability.availability``;
this module only runs when both are present. Boxes come back as ``box_2d`` JSON, parsed by
``grounding.parse_gemini``.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_loaders.core.availability import LoadSettings
from model_loaders.core.errors import InputError, ModelUnavailable
from model_loaders.core.protocols import AskRequest
from model_loaders.core.results import AskChunk, GenerationStats, TextResult, Timings
from model_loaders.core.specs import ModelSpec
from model_loaders.families.chat_vlm import final_result, grounded_detections, text_of
from model_loaders.families.generation import neutralise_user_text
from model_loaders.families.grounding import parse_gemini

log = logging.getLogger(__name__)


def grounding_question(classes: Sequence[str]) -> str:
    """The prompt that makes Gemini answer with ``box_2d`` JSON (y, x on a 0–1000 grid)."""
    what = ", ".join(classes) if classes else "object"
    return (
        f"Detect every {what} in the image. Answer only with JSON: "
        '[{"box_2d": [ymin, xmin, ymax, xmax], "label": "name"}], coordinates normalised to 0-1000.'
    )


@dataclass
class GeminiBundle:
    """A configured API client and the API model id; implements ``Asker`` and ``Detector``."""

    client: Any
    model_id: str
    spec: ModelSpec

    def ask(
        self, image: Any, request: AskRequest, timings: Timings, stop: threading.Event | None = None
    ) -> Iterator[AskChunk]:
        """Ask Gemini about a PIL image, streaming its answer (``Asker``)."""
        yield from stream(self, image, request.question, request.history, max_new_tokens=request.max_new_tokens,
                          temperature=request.temperature, max_time=request.max_time, stop_event=stop,
                          timings=timings)  # fmt: skip

    def detect(self, image: np.ndarray, timings: Timings, classes: Sequence[str] | None = None) -> Any:
        """Boxes for ``classes`` as Gemini writes them (``Detector``; no scores)."""
        from PIL import Image

        request = AskRequest(question=grounding_question([str(c) for c in classes or []]))
        return grounded_detections(final_result(self.ask(Image.fromarray(image), request, timings)), self.spec)


def load(spec: ModelSpec, settings: LoadSettings) -> GeminiBundle:
    """Create the API client (nothing is downloaded; the model runs on Google's servers)."""
    key = os.environ.get(spec.env_key or "GEMINI_API_KEY")
    if not key:
        raise ModelUnavailable(spec.key, "missing_key", f"{spec.name} needs the {spec.env_key} environment variable.")
    try:
        from google import genai
    except ImportError:
        raise ModelUnavailable(
            spec.key, "missing_extra", f"{spec.name} needs the optional `gemini` extra."
        ) from None
    return GeminiBundle(genai.Client(api_key=key), spec.key, spec)


def stream(
    bundle: GeminiBundle,
    image: Any,
    question: str,
    history: Sequence[dict[str, Any]] = (),
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    max_time: float = 60.0,
    stop_event: threading.Event | None = None,
    timings: Timings | None = None,
) -> Iterator[AskChunk]:
    """Ask Gemini about a PIL image, streaming its answer; boxes parsed from ``box_2d``."""
    from google.genai import types

    question = neutralise_user_text(question or "").strip()
    if not question:
        raise InputError("Type a question about the image.")
    timings = timings if timings is not None else Timings()
    image_wh = (int(image.size[0]), int(image.size[1]))
    with timings.stage("preprocess"):
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90)
        parts: list[Any] = [types.Part.from_bytes(data=buf.getvalue(), mime_type="image/jpeg")]
        for m in history:
            parts.append(f"{m.get('role')}: {text_of(m.get('content'))}")
        parts.append(question)
    config = types.GenerateContentConfig(max_output_tokens=int(max_new_tokens), temperature=float(temperature))
    stats = GenerationStats()
    start = time.perf_counter()
    sofar = ""
    for part in bundle.client.models.generate_content_stream(model=bundle.model_id, contents=parts, config=config):
        if stop_event is not None and stop_event.is_set():
            stats.stopped = "user"
            break
        if time.perf_counter() - start > max_time:
            stats.stopped = "max_time"
            break
        if part.text:
            if stats.first_token_ms is None:
                stats.first_token_ms = (time.perf_counter() - start) * 1000.0
            stats.tokens += 1
            sofar += part.text
            yield AskChunk(sofar, stats=stats, input_wh=image_wh)
    stats.total_ms = (time.perf_counter() - start) * 1000.0
    stats.stopped = stats.stopped or "eos"
    timings.inference_ms += stats.total_ms
    with timings.stage("postprocess"):
        grounding = parse_gemini(sofar, image_wh)
    result = TextResult(sofar.strip(), sofar, grounding.detections, grounding.error, stats.tokens, timings)
    yield AskChunk(result.text, result=result, stats=stats, input_wh=image_wh)
