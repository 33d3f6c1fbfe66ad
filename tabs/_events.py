"""Event settings shared by every tab."""

from __future__ import annotations

from typing import Any

# Every event that runs a model shares one queue slot ("gpu"), so two heavy jobs never run
# at once on one accelerator; clicks while a job is pending are not queued twice.
MODEL_EVENT: dict[str, Any] = {"concurrency_id": "gpu", "concurrency_limit": 1, "trigger_mode": "once"}

# Cheap events (re-rendering, re-filtering) skip the model queue.
LIGHT_EVENT: dict[str, Any] = {"concurrency_limit": 4}
