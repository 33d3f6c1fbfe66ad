"""Presenter mode (``--demo`` / ``VP_DEMO=1``): for stakeholder demos on a projector.

- Each tab opens on its first example already run: the result is computed once, at start-up
  (`warm`), and every page that opens shows it at once (`first_view`).
- Larger type, a compact layout, the timing line and licence kept small; developer details
  (raw model output, JSON panels, the list of models this server cannot run) are hidden
  (``presenter.css`` hides everything marked `DEV_ONLY`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tabs._events import on_page_load

log = logging.getLogger(__name__)

DEV_ONLY = "dev-only"  # elem_classes of components a presenter's audience does not need
CSS = Path(__file__).resolve().parent / "presenter.css"


PRESENTER_INPUT_HEIGHT = 200  # px: the input image, the button and the result share a 1280×720 screen


def presenting(ctx: Any) -> bool:
    """True in presenter mode."""
    return bool(ctx.options.get("demo"))


def input_height(ctx: Any, normal: int | None = None) -> int | None:
    """The height of a tab's input image: smaller in presenter mode."""
    return PRESENTER_INPUT_HEIGHT if presenting(ctx) else normal


def first_view(ctx: Any, outputs: Sequence[Any], compute: Callable[[], Any], present: Callable[[Any], Any]) -> None:
    """In presenter mode, fill ``outputs`` on every page load with ``present(compute())``.

    ``compute`` (the model run on the example) runs once and is kept for every visitor (the
    examples are public pictures); ``present`` turns it into this page's outputs (fresh files,
    a fresh session where one is needed). Does nothing outside presenter mode.
    """
    if not presenting(ctx):
        return
    lock = threading.Lock()
    kept: dict[str, Any] = {}

    def cached() -> Any:
        with lock:
            if "result" not in kept:
                kept["result"] = compute()
            return kept["result"]

    ctx.options.setdefault("first_views", []).append(cached)
    on_page_load(lambda: present(cached()), list(outputs))


def warm(ctx: Any) -> None:
    """Run every tab's first example now (start-up), so the first page shows results at once.

    A failure is logged and leaves that tab to run its example on the first page load.
    """
    for compute in ctx.options.get("first_views", []):
        start = time.perf_counter()
        try:
            compute()
        except Exception:  # noqa: BLE001 - one tab's example must not stop the server starting
            log.exception("presenter mode: an example could not be run at start-up")
            continue
        log.info("presenter mode: example ready in %.1f s", time.perf_counter() - start)
