"""The shared model cache: pin while used, load once, evict least-recently-used by bytes.

Design (see DESIGN.md): ``with cache.use(key) as model:`` pins the model for one request;
two cold requests for one model load it once (check, take the key's lock, check again);
unpinned models are evicted least-recently-used first until the new one fits the byte budget;
sizes are measured after loading; on out-of-memory the cache evicts everything unpinned and
retries once. Device, budget probe, loader and sizer are injected, so tests use fakes.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

from model_loaders.core.errors import ModelUnavailable

log = logging.getLogger(__name__)

Loader = Callable[[str], Any]
Sizer = Callable[[Any], int]


def module_bytes(obj: Any) -> int:
    """Bytes of all torch parameters and buffers reachable from ``obj`` (one level deep).

    ``obj`` is a model, or an adapter bundle whose attributes hold models; objects without
    tensors count as 0. Shared tensors are counted once.
    """
    seen: set[int] = set()
    total = 0
    candidates = [obj, *getattr(obj, "__dict__", {}).values()]
    for cand in candidates:
        for attr in ("parameters", "buffers"):
            fn = getattr(cand, attr, None)
            if not callable(fn):
                continue
            try:
                tensors = list(fn())
            except TypeError:
                continue
            for t in tensors:
                ptr = id(t)
                if ptr in seen or not hasattr(t, "element_size"):
                    continue
                seen.add(ptr)
                total += t.numel() * t.element_size()
    return total


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocator out-of-memory errors (without importing torch)."""
    if isinstance(exc, MemoryError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return "OutOfMemoryError" in names or "out of memory" in str(exc).lower()


def release_memory() -> None:
    """Return freed memory to the system/allocator. Called outside any ``except`` block."""
    gc.collect()
    import sys

    torch = sys.modules.get("torch")  # only if something already imported it
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


@dataclass
class _Entry:
    model: Any
    nbytes: int
    load_s: float
    pins: int = 0
    last_used: float = 0.0


@dataclass(frozen=True)
class CachedModelInfo:
    """One loaded model, for the status panel."""

    key: Hashable
    nbytes: int
    pinned: bool
    load_s: float


class ModelCache:
    """Thread-safe cache of loaded models with a byte budget.

    Args:
        loader: ``loader(key)`` builds the model; it may raise `ModelUnavailable`.
        budget: bytes allowed in total, or a zero-argument probe returning them (read at
            each load so it can follow free memory).
        sizer: measures a loaded model in bytes (default: torch parameters and buffers).
        estimate: bytes a key is expected to need before it loads (or ``None``), so room is
            made before loading rather than only after (peak memory stays within budget).
        release: frees memory after eviction (default: gc + CUDA empty_cache if in use).
        clock: monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        loader: Loader,
        budget: int | Callable[[], int],
        *,
        sizer: Sizer = module_bytes,
        estimate: Callable[[Hashable], int | None] = lambda key: None,
        release: Callable[[], None] = release_memory,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = loader
        self._budget = budget if callable(budget) else (lambda b=budget: b)
        self._sizer = sizer
        self._estimate = estimate
        self._release = release
        self._clock = clock
        self._entries: dict[Hashable, _Entry] = {}
        self._table_lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self.loads = 0  # number of loader calls that succeeded (for tests and the status panel)
        self.last_load_s: dict[Hashable, float] = {}

    # -- public API -------------------------------------------------------------------------

    @property
    def budget_bytes(self) -> int:
        """The current byte budget."""
        return int(self._budget())

    @contextlib.contextmanager
    def use(self, key: Hashable) -> Iterator[Any]:
        """Pin ``key``'s model for the duration of the ``with`` block, loading it if needed."""
        entry = self._acquire(key)
        try:
            yield entry.model
        finally:
            with self._table_lock:
                entry.pins -= 1
                entry.last_used = self._clock()

    def load_seconds(self, key: Hashable) -> float:
        """Seconds the last load of ``key`` took (0.0 if it never loaded here)."""
        return self.last_load_s.get(key, 0.0)

    def is_loaded(self, key: Hashable) -> bool:
        """True when ``key`` is in memory now."""
        with self._table_lock:
            return key in self._entries

    def snapshot(self) -> list[CachedModelInfo]:
        """Loaded models, most recently used first."""
        with self._table_lock:
            items = sorted(self._entries.items(), key=lambda kv: kv[1].last_used, reverse=True)
            return [CachedModelInfo(k, e.nbytes, e.pins > 0, e.load_s) for k, e in items]

    def used_bytes(self) -> int:
        """Bytes held by loaded models."""
        with self._table_lock:
            return sum(e.nbytes for e in self._entries.values())

    def evict_unpinned(self) -> list[Hashable]:
        """Drop every model no request is using (for out-of-memory recovery)."""
        with self._table_lock:
            dropped = [k for k, e in self._entries.items() if e.pins == 0]
            for k in dropped:
                del self._entries[k]
        if dropped:
            log.info("evicted %s", dropped)
            self._release()
        return dropped

    # -- internals --------------------------------------------------------------------------

    def _pin_if_loaded(self, key: Hashable) -> _Entry | None:
        with self._table_lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.pins += 1
                entry.last_used = self._clock()
            return entry

    def _acquire(self, key: Hashable) -> _Entry:
        entry = self._pin_if_loaded(key)
        if entry is not None:
            return entry
        with self._table_lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            entry = self._pin_if_loaded(key)  # someone may have loaded it while we waited
            if entry is not None:
                return entry
            self._evict_to_budget(keep=key, incoming=self._estimate(key) or 0)
            model, nbytes, load_s = self._load_with_oom_retry(key)
            entry = _Entry(model, nbytes, load_s, pins=1, last_used=self._clock())
            with self._table_lock:
                self._entries[key] = entry
            self._evict_to_budget(keep=key)
            return entry

    def _load_with_oom_retry(self, key: Hashable) -> tuple[Any, int, float]:
        # Estimates can be wrong, so on OOM evict everything unpinned and retry once.
        for attempt in (1, 2):
            oom: BaseException | None = None
            start = self._clock()
            try:
                model = self._loader(key)
            except ModelUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - classified: OOM retried, rest typed
                if not is_out_of_memory(exc):
                    log.exception("loading %s failed", key)
                    raise ModelUnavailable(
                        str(key), "load_failed", f"{key} failed to load ({type(exc).__name__})."
                    ) from exc
                oom = exc
            if oom is None:
                load_s = self._clock() - start
                self.loads += 1
                self.last_load_s[key] = load_s
                return model, int(self._sizer(model)), load_s
            del oom  # leave the except block before freeing memory (pytorch#18853)
            if attempt == 1:
                log.warning("out of memory loading %s: evicting unpinned models and retrying", key)
                self.evict_unpinned()
                self._release()
        raise ModelUnavailable(
            str(key), "out_of_memory", f"Not enough memory to load {key}; try a smaller model."
        )

    def _evict_to_budget(self, keep: Hashable, incoming: int = 0) -> None:
        budget = self.budget_bytes - incoming
        dropped: list[Hashable] = []
        with self._table_lock:
            used = sum(e.nbytes for e in self._entries.values())
            lru = sorted(
                (kv for kv in self._entries.items() if kv[1].pins == 0 and kv[0] != keep),
                key=lambda kv: kv[1].last_used,
            )
            for k, e in lru:
                if used <= budget:
                    break
                del self._entries[k]
                used -= e.nbytes
                dropped.append(k)
        if dropped:
            log.info("evicted %s to fit the %.0f MB budget", dropped, budget / 2**20)
            self._release()
        if used > budget and not incoming:
            log.warning("models in use hold %.0f MB, over the %.0f MB budget", used / 2**20, budget / 2**20)
