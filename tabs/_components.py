"""Gradio components with the app's own input handling."""

from __future__ import annotations

from typing import Annotated, Any

import gradio as gr
from gradio.data_classes import GradioRootModel, ImageData
from pydantic import Field


class AnyImagePayload(GradioRootModel):
    """An image input's raw JSON: Gradio's ``ImageData`` when it is one, anything else as sent.

    Gradio validates an input against its component's data model even with
    ``preprocess=False``; a hand-made request sending a plain string or a number as the image
    then fails inside Gradio, before the handler, with a generic error. Letting every value
    through to the handler means the app's upload gate answers it, with the app's message.
    """

    root: Annotated[ImageData | Any, Field(union_mode="left_to_right")]


def ImageInput(**kwargs: Any) -> gr.Image:  # noqa: N802 - used like the component it builds
    """A ``gr.Image`` for inputs read with ``preprocess=False`` through the app's upload gate.

    The data model is swapped on the instance rather than in a subclass: a subclass would be a
    custom component to Gradio (its own front end, a generated ``.pyi`` next to this file).
    """
    image = gr.Image(**kwargs)
    image.api_info()  # describe it to API and MCP clients as the plain image input it is (cached)
    image.data_model = AnyImagePayload  # type: ignore[assignment]
    return image


def JsonInput(schema: dict[str, Any], **kwargs: Any) -> gr.JSON:  # noqa: N802 - used like the component it builds
    """A ``gr.JSON`` input whose API and MCP schema says what it takes (``gr.JSON`` says "anything",
    as ``{"type": {}}``, which MCP clients reject)."""
    component = gr.JSON(**kwargs)
    component.api_info = lambda: dict(schema)  # type: ignore[method-assign]
    return component


def example(component: Any, value: Any) -> Any:
    """Set the example value API docs and MCP clients show for ``component`` (a valid call)."""
    component.example_inputs = lambda: value  # type: ignore[method-assign]
    return component
