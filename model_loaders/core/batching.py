"""Dynamic batching: concurrent requests to one model share a forward pass.

On a GPU a depth or detection forward pass on 8 images costs little more than on one; serving a
room means putting the requests that arrive together through one pass. A `Batcher` does that
for one model: each request thread `submit`s its prepared input (a tensor of batch size 1) and
blocks; a worker thread takes what is waiting (up to ``max_batch``, after waiting at most
``max_wait_s`` for more), stacks the inputs that have the same shape, runs the model's
``forward_batch`` once per shape, and hands each request its own row back. Preprocessing and
postprocessing stay in the request threads, in parallel.

Results never cross requests: row ``i`` of a pass goes to the request that gave input ``i``. A
pass that fails (out of memory, say) is retried one input at a time, so each request gets its
own result or its own error. Gradio-free and model-agnostic: the family says how to batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Forward = Callable[[list[Any]], list[Any]]


@dataclass
class _Request:
    forward: Forward
    item: Any
    group: Any
    future: Future[Any] = field(default_factory=Future)


@dataclass
class BatchStats:
    """What a batcher did: requests served and forward passes run (their ratio is the batching)."""

    requests: int = 0
    passes: int = 0
    largest: int = 0


class Batcher:
    """One model's batching queue (see the module docstring).

    Args:
        name: for the log and the thread's name.
        max_batch: the most inputs in one pass.
        max_wait_s: how long the first waiting input waits for others to join it.
    """

    def __init__(self, name: str, max_batch: int = 8, max_wait_s: float = 0.01) -> None:
        self.name = name
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.stats = BatchStats()
        self._queue: queue.Queue[_Request] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, forward: Forward, item: Any, group: Any = None) -> Any:
        """Run ``forward([item, ...])`` with whatever else is waiting in the same ``group`` (inputs
        that one ``forward`` can stack: same model object, same shape); block until this item's
        result is back and return it (or raise its error)."""
        request = _Request(forward, item, group)
        self._ensure_worker()
        self._queue.put(request)
        return request.future.result()

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=f"batch-{self.name}", daemon=True)
                self._thread.start()

    def _collect(self) -> list[_Request]:
        first = self._queue.get()
        taken = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(taken) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                taken.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return taken

    def _work(self) -> None:
        while True:
            taken = self._collect()
            groups: dict[Any, list[_Request]] = {}
            for request in taken:
                groups.setdefault(request.group, []).append(request)
            for requests in groups.values():
                self._run(requests)

    def _run(self, requests: list[_Request]) -> None:
        forward = requests[0].forward
        try:
            outputs = forward([r.item for r in requests])
            if len(outputs) != len(requests):
                raise RuntimeError(f"{self.name}: {len(outputs)} results for {len(requests)} inputs")
        except Exception as exc:  # noqa: BLE001 - each request gets its own outcome below
            if len(requests) == 1:
                requests[0].future.set_exception(exc)
                self._count(1)
                return
            log.warning("%s: a batch of %d failed (%s); running them one by one", self.name, len(requests), exc)
            for request in requests:
                self._run([request])
            return
        for request, output in zip(requests, outputs, strict=True):
            request.future.set_result(output)
        self._count(len(requests))

    def _count(self, size: int) -> None:
        with self._lock:
            self.stats.requests += size
            self.stats.passes += 1
            self.stats.largest = max(self.stats.largest, size)


class Batchers:
    """The batchers of one app, one per model key, made on first use."""

    def __init__(self, max_batch: int = 1, max_wait_s: float = 0.01) -> None:
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max_wait_s
        self._items: dict[str, Batcher] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """True when requests may share a pass (``max_batch`` above 1)."""
        return self.max_batch > 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Per model: requests served and the forward passes they took (for ``/health``)."""
        with self._lock:
            items = list(self._items.items())
        return {k: {"requests": b.stats.requests, "passes": b.stats.passes, "largest": b.stats.largest}
                for k, b in items}  # fmt: skip

    def get(self, key: str) -> Batcher:
        """The batcher of model ``key``."""
        with self._lock:
            if key not in self._items:
                self._items[key] = Batcher(key, self.max_batch, self.max_wait_s)
            return self._items[key]
