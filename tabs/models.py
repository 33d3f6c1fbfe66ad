"""Models tab: every registered model with its licence and whether it runs here, plus live status."""

from __future__ import annotations

import gradio as gr

from model_loaders.core.catalog import COLUMNS, model_row
from model_loaders.core.context import AppContext
from model_loaders.core.registry import REGISTRY, get_spec
from tabs._events import LIGHT_EVENT

TITLE = "Models"


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.0f} MB"


def status_markdown(ctx: AppContext) -> str:
    """The live status panel: device, weights mode, loaded models and memory budget."""
    s = ctx.settings
    lines = [
        f"**Device:** `{s.device}` · **Weights:** `{s.weights}`"
        + (f" ({ctx.weights_warning})" if ctx.weights_warning else ""),
        f"**Memory budget:** {_mb(ctx.cache.budget_bytes)} · **In use by models:** {_mb(ctx.cache.used_bytes())}",
    ]
    loaded = ctx.cache.snapshot()
    if not loaded:
        lines.append("**Loaded models:** none yet (models load on first use and stay cached).")
    else:
        lines.append("**Loaded models** (most recently used first):")
        for info in loaded:
            name = get_spec(str(info.key)).name
            pin = " · in use" if info.pinned else ""
            lines.append(f"- {name} (`{info.key}`): {_mb(info.nbytes)}, loaded in {info.load_s:.1f} s{pin}")
    return "\n\n".join(lines)


def table_rows(ctx: AppContext) -> list[list[str]]:
    """One row per registered model, in registry order."""
    return [list(model_row(spec, ctx.availability(spec).status).values()) for spec in REGISTRY.values()]


def build(ctx: AppContext) -> None:
    """Render the Models tab."""
    gr.Markdown(
        "Every model this app knows, with its licence, commercial-use terms and gating. "
        "*Runs here* says whether it can run in this server now (code available, optional extra "
        "installed, API key or HF token set)."
    )
    with gr.Row():
        status_md = gr.Markdown(status_markdown(ctx), elem_id="model-status", label="status")
        refresh = gr.Button("Refresh status", size="sm", scale=0)
    gr.Dataframe(
        value=table_rows(ctx),
        headers=list(COLUMNS),
        datatype=["markdown"] * len(COLUMNS),
        interactive=False,
        wrap=True,
        max_height=6000,  # all rows at once: the table is the page, and search finds rows
        show_search="filter",
        pinned_columns=1,
        elem_id="model-table",
    )
    def status() -> str:
        """This server's status: device, weights mode, loaded models and memory budget (Markdown)."""
        return status_markdown(ctx)

    refresh.click(status, None, status_md, api_name="status", api_description="This server's status: device, weights "
                  "mode, loaded models, memory budget.", **LIGHT_EVENT)  # fmt: skip
