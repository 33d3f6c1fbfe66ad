"""Backends: where models run when not in this process (the task layer's seam, ``tasks.base``).

- ``openai_compat``: any OpenAI-compatible server (vLLM, SGLang, Ray Serve LLM, ``transformers
  serve``, a hosted router) answers the ``ask`` task, and ``detect`` for VLMs that write boxes.

A backend imports ``core`` and ``families`` (what a family's images and boxes look like), never
``tasks`` or the UI; ``app.make_context`` puts configured backends in ``ctx.backends``.
"""
