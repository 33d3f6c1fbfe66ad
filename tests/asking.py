"""Test helpers for the ``ask`` task: what the Ask tab does, without the UI."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

from model_loaders.core.registry import FAMILIES
from model_loaders.tasks import ask as ta
from model_loaders.tasks.base import image_of


def run_ask(ctx: Any, image: Any, key: str, question: Any, history: Any, *, task_label: str = "", phrase: Any = "",
            region_pts: Any = None, max_new_tokens: Any = 256, temperature: Any = 0.0,
            stop_event: Any = None) -> Iterator[tuple[None, Any, Any]]:  # fmt: skip
    """Check the request, then stream the answer through the task layer: (None, chunk, decoded image)."""
    spec = ta.ask_spec(ctx, key)
    decoded = image_of(ctx, image)
    request, _ = ta.build_request(spec, decoded, question, history, task=task_label, phrase=phrase, region=region_pts,
                                  max_new_tokens=max_new_tokens, temperature=temperature)  # fmt: skip
    for chunk in ta.stream(ctx, decoded, key, request, stop_event):
        yield None, chunk, decoded


def prompt_inputs(bundle: Any, image: Any, history: Any, question: str) -> Any:
    """The model inputs a chat VLM bundle builds for a question (its family's prompt)."""
    return bundle.family.prompt(bundle.processor, image, history, question)


def family_module(spec: Any) -> Any:
    """The adapter module of ``spec``'s family."""
    return importlib.import_module(FAMILIES[spec.family].module)
