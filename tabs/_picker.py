"""The one model picker: every tab offers only models that can run here, each with its licence.

Models that cannot run on this server (too large, gated without a token, an extra missing, a
key missing, never run here) are not selectable; the note under the picker lists them with the
reason, so a user never picks something that fails later. The note also shows the chosen
model's licence and commercial-use terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from model_loaders.core.registry import DEFAULTS
from model_loaders.core.specs import ModelSpec, Task
from model_loaders.tasks.base import models_for
from tabs._events import light_event
from tabs._presenter import presenting


def choice_label(spec: ModelSpec, ctx: Any = None) -> str:
    """A picker entry: name, size, the licence terms that restrict use, and where it runs when a
    serving engine runs it ("served by <host>")."""
    size = ""
    if spec.params_m:
        size = f" · {spec.params_m / 1000:.1f} B" if spec.params_m >= 1000 else f" · {spec.params_m:g} M"
    terms = {"no": " · non-commercial", "conditions": " · licence conditions"}.get(spec.commercial, "")
    where = ctx.availability(spec).status if ctx is not None else ""
    return f"{spec.name}{size}{terms}" + (f" · {where}" if where.startswith("served by") else "")


def licence_note(spec: ModelSpec) -> str:
    """One line on the chosen model: licence, commercial use, gating."""
    licence = f"[{spec.licence}]({spec.licence_url})" if spec.licence_url else spec.licence
    parts = [f"**{spec.name}** · licence {licence}"]
    if spec.commercial != "yes":
        parts.append(spec.commercial_note or f"commercial use: {spec.commercial}")
    if spec.gated:
        parts.append("gated on the Hub")
    return " · ".join(parts)


@dataclass
class Picker:
    """A model dropdown and the note under it."""

    dropdown: gr.Dropdown
    note: gr.Markdown
    ready: list[ModelSpec]

    def render(self) -> None:
        """Place a picker made with ``render=False`` here."""
        self.dropdown.render()
        self.note.render()


def picker_note(ctx: Any, task: Task, key: Any, where: Callable[[ModelSpec], bool] | None = None) -> str:
    """The note for the chosen ``key``: its licence, then what cannot run here and why."""
    ready, not_here = models_for(ctx, task, where)
    lines = []
    if isinstance(key, str) and key:
        try:
            lines.append(licence_note(ctx.spec(key)))
        except Exception:  # noqa: BLE001 - an unknown key just has no licence line
            pass
    if not ready:
        lines.append("No model for this can run on this server.")
    if not_here and not presenting(ctx):  # presenters show what runs; the Models tab lists the rest
        shown = "; ".join(f"{s.name} ({why})" for s, why in not_here[:8])
        more = f"; and {len(not_here) - 8} more" if len(not_here) > 8 else ""
        lines.append(f"<small>Not available on this server: {shown}{more}. See the Models tab.</small>")
    return "\n\n".join(lines)


def model_picker(
    ctx: Any,
    task: Task,
    *,
    default: str | None = None,
    where: Callable[[ModelSpec], bool] | None = None,
    label: str = "Model",
    elem_id: str | None = None,
    multiselect: bool = False,
    render: bool = True,
    **kwargs: Any,
) -> Picker:
    """A dropdown of the models that can do ``task`` and run here, with the note under it.

    Args:
        ctx: the app context.
        task: which task's models.
        default: the preselected model (the registry's default for ``task`` when not given or
            not runnable here: then the first runnable one).
        where: an optional capability test (e.g. only models that score their boxes).
        label, elem_id, multiselect, kwargs: passed to ``gr.Dropdown``.
        render: ``False`` to place it later with `Picker.render` (e.g. below examples that set it).
    """
    ready, _ = models_for(ctx, task, where)
    keys = [s.key for s in ready]
    wanted = default or DEFAULTS.get(task)
    value: Any = (wanted if wanted in keys else (keys[0] if keys else None)) if not multiselect else (default or [])
    dropdown = gr.Dropdown(
        [(choice_label(s, ctx), s.key) for s in ready], value=value, label=label, elem_id=elem_id,
        multiselect=multiselect, render=render, **kwargs,
    )  # fmt: skip
    note = gr.Markdown(picker_note(ctx, task, value if isinstance(value, str) else None, where),
                       elem_id=f"{elem_id}-note" if elem_id else None, render=render)  # fmt: skip
    if not multiselect:
        dropdown.change(lambda key: picker_note(ctx, task, key, where), dropdown, note, api_visibility="private",
                        **light_event())  # fmt: skip
    return Picker(dropdown, note, ready)
