"""UI only: one module per tab, each exposing ``TITLE`` and ``build(ctx)``.

``TABS`` is the one ordered list of tabs; ``app.build_app`` renders them in this order.
"""

from __future__ import annotations

TABS: tuple[str, ...] = (
    "tabs.segment",
    "tabs.depth",
    "tabs.detect",
    "tabs.ask",
    "tabs.compare",
    "tabs.workflow",
    "tabs.track",
    "tabs.models",
)
