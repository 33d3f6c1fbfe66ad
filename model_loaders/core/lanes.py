"""Queue lanes: which model calls may run side by side on this machine.

Every event that runs a model joins one of three lanes. Each lane is a separate queue with its
own concurrency limit, so a cheap call never waits behind a long one:

- ``quick``: interactive calls that take milliseconds once a model is loaded (a SAM click on a
  cached embedding, undo/redo, switching the SAM size).
- ``single``: one forward pass of a vision model (depth, detect, the stateless segment call).
- ``long``: anything that can take many seconds: generation streams, comparisons of several
  models, workflows over many crops, video tracking.

Lanes share the device. Memory is not their concern: the model cache admits a model only when
it fits next to what is running (``core.cache``). Their limits depend on the device: a CPU's
cores are already used by one call, so each lane runs one call at a time; a GPU overlaps a
quick call with a long one well, and more long jobs at once only when the owner says the card
has room (``--long-jobs`` / ``VP_LONG_JOBS``).
"""

from __future__ import annotations

from typing import Literal

Lane = Literal["quick", "single", "long"]
LANES: tuple[Lane, ...] = ("quick", "single", "long")


def lane_limits(device: str, long_jobs: int | None = None) -> dict[Lane, int]:
    """How many calls each lane runs at once on ``device``.

    Args:
        device: the resolved torch device (``cpu``, ``cuda``, ``mps``).
        long_jobs: long jobs allowed at once (default 1: one generation or comparison at a time
            on one accelerator, so two never fight over its memory and time).
    """
    long = max(1, int(long_jobs or 1))
    if device == "cuda":
        return {"quick": 2, "single": 2, "long": long}
    return {"quick": 1, "single": 1, "long": long}
