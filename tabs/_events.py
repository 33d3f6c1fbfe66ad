"""Event settings shared by every tab: queue lanes, progress and where errors show.

Model events join a lane (``model_loaders.core.lanes``): a SAM click (``quick``) never waits
behind an Ask stream (``long``). ``status`` names the one component that shows progress, and an
error badge if the run fails: the results on screen stay visible and untouched, the message
itself is a toast.
"""

from __future__ import annotations

from typing import Any

from model_loaders.core.lanes import Lane, lane_limits


def _progress(status: Any) -> dict[str, Any]:
    if status is None:
        return {}
    return {"show_progress_on": list(status) if isinstance(status, (list, tuple)) else [status]}


def model_event(ctx: Any, lane: Lane, status: Any = None, batched: bool = False) -> dict[str, Any]:
    """Settings of an event that runs a model in ``lane``; progress and errors show on ``status``.

    ``batched``: an API endpoint whose forward passes are batched (``core.batching``): when the
    app batches, up to a batch of its calls run at once so that they can share a pass.
    """
    if batched and ctx.batchers.enabled:
        return {"concurrency_id": "lane-batched", "concurrency_limit": ctx.batchers.max_batch,
                "trigger_mode": "once", **_progress(status)}  # fmt: skip
    limits = lane_limits(ctx.settings.device, ctx.options.get("long_jobs"))
    return {"concurrency_id": f"lane-{lane}", "concurrency_limit": limits[lane], "trigger_mode": "once",
            **_progress(status)}  # fmt: skip


def light_event(status: Any = None, **kwargs: Any) -> dict[str, Any]:
    """Settings of a cheap event (re-render, re-filter, a picker's note): outside the model lanes,
    no spinner; an error shows on ``status`` only."""
    return {"concurrency_limit": 4, "show_progress": "hidden", **_progress(status), **kwargs}


def on_page_load(fn: Any, outputs: Any) -> None:
    """Run ``fn`` (cheap, no inputs) into ``outputs`` each time a page opens, as a private event.

    (A callable ``value=`` would do the same but publish ``fn`` as an API endpoint and MCP tool.)
    """
    from gradio.context import Context

    if Context.root_block is None:
        raise RuntimeError("on_page_load must be called while the app's Blocks are being built")
    Context.root_block.load(fn, None, outputs, api_visibility="private", **light_event())


# A cheap event with nothing that can fail on screen (kept for the simplest handlers).
LIGHT_EVENT: dict[str, Any] = {"concurrency_limit": 4}
