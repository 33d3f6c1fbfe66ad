"""Models tab: every registered model with its licence and whether it runs here, plus live status.

The table shows what decides a choice (task, size, licence, commercial use, gating, whether it
runs here) so every column fits at 1440 px; a click on a row shows everything else (key, paper,
pinned revision, the reason it cannot run). The search box filters by any of it.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from model_loaders.core.catalog import TABLE_COLUMNS, model_row
from model_loaders.core.context import AppContext
from model_loaders.core.registry import REGISTRY, get_spec
from model_loaders.core.specs import ModelSpec
from tabs._events import light_event, on_page_load

TITLE = "Models"
DETAILS_HINT = "Click a row for the model's key, paper, pinned revision and why it can or cannot run here."


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
    for backend in ctx.backends:
        lines += getattr(backend, "status_lines", list)()  # each backend's lines name it
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


def matches(spec: ModelSpec, row: dict[str, str], query: str) -> bool:
    """True when every word of ``query`` appears in the model's row or key (case-insensitive)."""
    text = " ".join([*row.values(), spec.key, spec.family]).lower()
    return all(word in text for word in query.lower().split())


def all_specs(ctx: AppContext) -> list[ModelSpec]:
    """Every registered model, then the models only a serving engine knows."""
    return [*REGISTRY.values(), *ctx.extra_specs()]


def table_rows(ctx: AppContext, query: Any = "") -> list[list[str]]:
    """One row per model (registry order, then engine-only models) matching ``query``."""
    query = query if isinstance(query, str) else ""
    rows = []
    for spec in all_specs(ctx):
        row = model_row(spec, ctx.availability(spec).status)
        if matches(spec, row, query[:200]):
            row["Commercial use"] = spec.commercial  # yes / no / conditions; the terms are in the details
            rows.append([row[c] for c in TABLE_COLUMNS])
    return rows


def details_markdown(ctx: AppContext, spec: ModelSpec) -> str:
    """Everything about one model, for the details panel."""
    row = model_row(spec, ctx.availability(spec).status)
    avail = ctx.availability(spec)
    runs = "yes" if avail.ok else f"no: {avail.reason or avail.status}"
    return "\n\n".join([
        f"### {row['Model']}",
        f"**Key:** {row['Key']} · **Tasks:** {row['Tasks']} · **Params:** {row['Params']}",
        f"**Licence:** {row['Licence']} · **Commercial use:** {row['Commercial use']} · **Gated:** {row['Gated']}",
        f"**Paper:** {row['Paper']} · **Pinned revision:** `{row['Revision']}`",
        f"**Runs here:** {runs}",
    ])  # fmt: skip


def build(ctx: AppContext, tab: Any = None) -> None:
    """Render the Models tab (its status refreshes whenever ``tab`` is opened)."""
    gr.Markdown(
        "Every model this app knows, with its licence, commercial-use terms and gating. "
        "*Runs here* says whether it can run in this server now (code available, optional extra "
        "installed, API key or HF token set, enough memory).",
        elem_classes=["intro"],
    )
    status_md = gr.Markdown(status_markdown(ctx), elem_id="model-status", label="status")
    refresh = gr.Button("Refresh status", size="sm")
    search = gr.Textbox(label="Search", placeholder="a name, task, licence or family, e.g. depth apache",
                        max_lines=1, elem_id="model-search")  # fmt: skip
    empty = gr.Markdown(visible=False, elem_id="model-empty")
    table = gr.Dataframe(
        value=table_rows(ctx),
        headers=list(TABLE_COLUMNS),
        datatype=["markdown"] * len(TABLE_COLUMNS),
        interactive=False,
        wrap=True,
        max_height=6000,  # all rows at once: the table is the page
        pinned_columns=1,
        column_widths=["26%", "11%", "8%", "20%", "11%", "10%", "14%"],
        elem_id="model-table",
    )
    details = gr.Markdown(DETAILS_HINT, elem_id="model-details")

    def status() -> str:
        """This server's status: device, weights mode, loaded models and memory budget (Markdown)."""
        return status_markdown(ctx)

    def on_search(query: Any) -> tuple[Any, Any]:
        rows = table_rows(ctx, query)
        if rows:
            return gr.Dataframe(value=rows, visible=True), gr.Markdown(visible=False)
        shown = str(query)[:60]
        note = f"No model matches “{shown}”. Try a task (*depth*), a licence (*apache*) or part of a name (*sam*)."
        return gr.Dataframe(visible=False), gr.Markdown(note, visible=True)

    def on_select(query: Any, evt: gr.SelectData) -> str:
        shown = [s for s in all_specs(ctx) if matches(s, model_row(s, ctx.availability(s).status), str(query or ""))]
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not isinstance(row, int) or not 0 <= row < len(shown):
            return DETAILS_HINT
        return details_markdown(ctx, shown[row])

    refresh.click(status, None, status_md, api_name="status", api_description="This server's status: device, weights "
                  "mode, loaded models, memory budget.", **light_event())  # fmt: skip
    on_page_load(status, status_md)  # live when the page opens, and again whenever the tab is opened
    if tab is not None:
        tab.select(status, None, status_md, api_visibility="private", **light_event())
    search.input(on_search, search, [table, empty], api_visibility="private",
                 **light_event(trigger_mode="always_last"))  # fmt: skip
    table.select(on_select, search, details, api_visibility="private", **light_event())
