"""Rows describing every registered model, for the Models tab and the README table."""

from __future__ import annotations

from model_loaders.core.registry import REGISTRY
from model_loaders.core.specs import ModelSpec

COLUMNS = ("Model", "Key", "Tasks", "Params", "Licence", "Commercial use", "Gated", "Paper", "Revision", "Runs here")
# The Models tab's table: what decides a choice, readable at 1440 px; the rest is in the details.
TABLE_COLUMNS = ("Model", "Tasks", "Params", "Licence", "Commercial use", "Gated", "Runs here")
README_COLUMNS = ("Model", "Key", "Tasks", "Params", "Licence", "Commercial use", "Gated", "Paper", "Revision")


def format_params(spec: ModelSpec) -> str:
    """Parameters as 38.9M / 3.8B, or "undisclosed"."""
    if spec.params_m is None:
        return "undisclosed"
    if spec.params_m >= 1000:
        return f"{spec.params_m / 1000:.1f}B"
    return f"{spec.params_m:.1f}M"


def commercial_text(spec: ModelSpec) -> str:
    """yes / no / conditions, with the condition when there is one."""
    text = {"yes": "yes", "no": "no", "conditions": "conditions"}[spec.commercial]
    return f"{text}: {spec.commercial_note}" if spec.commercial_note else text


def revision_text(spec: ModelSpec) -> str:
    """Short pinned revision, or what stands in for one."""
    if spec.is_api:
        return "API"
    if spec.revision is None:
        return "unpinned"
    return spec.revision[:7] if len(spec.revision) == 40 else spec.revision


def model_row(spec: ModelSpec, runs_here: str | None = None) -> dict[str, str]:
    """One row; ``runs_here=None`` leaves out the machine-specific "Runs here" column."""
    model = f"[{spec.name}]({spec.hub_url})" if spec.hub_url else spec.name
    row = {
        "Model": model,
        "Key": f"`{spec.key}`",
        "Tasks": ", ".join(spec.tasks),
        "Params": format_params(spec),
        "Licence": f"[{spec.licence}]({spec.licence_url})" if spec.licence_url else spec.licence,
        "Commercial use": commercial_text(spec),
        "Gated": "yes (HF token)" if spec.gated else "no",
        "Paper": (f"[arXiv]({spec.paper})" if "arxiv.org" in spec.paper else f"[paper]({spec.paper})") if spec.paper else "—",
        "Revision": revision_text(spec),
    }
    if runs_here is not None:
        row["Runs here"] = runs_here
    return row


def markdown_table() -> str:
    """The README's model table, generated from the registry."""
    lines = ["| " + " | ".join(README_COLUMNS) + " |", "|" + "---|" * len(README_COLUMNS)]
    for spec in REGISTRY.values():
        row = model_row(spec, None)
        cells = [row[c].replace("|", "\\|") for c in README_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
