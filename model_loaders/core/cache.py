"""The shared model cache: pin while used, load once, admit by memory, evict least-recently-used by bytes.

Design (see docs/ARCHITECTURE.md): ``with cache.use(key) as model:`` pins the model for one
request; two cold requests for one model load it once (check, take the key's lock, check again).

Memory admission happens before a load, never after: a model whose estimated weights plus the
working memory a run needs exceed the budget is refused (``too_large``) without loading; one
that would fit once other requests finish is refused (``busy``) rather than pushing the process
over its budget. The budget follows the memory that is really free: the room for models is
``min(budget, bytes held by models + memory available now - headroom)``, read at each load.
Room is made by evicting unpinned models least-recently-used first; bytes being loaded count
as held while they load, so two concurrent loads cannot both take the same room. Sizes are
measured after loading; on out-of-memory the cache evicts everything unpinned and retries once.
Loader, sizer, memory probes and clock are injected, so tests use fakes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

from model_loaders.core.errors import ModelUnavailable

log = logging.getLogger(__name__)

_CACHES: weakref.WeakSet[Any] = weakref.WeakSet()


def _reset_locks_in_child() -> None:
    for cache in list(_CACHES):
        cache._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_in_child)

Loader = Callable[[str], Any]
Sizer = Callable[[Any], int]
GB = 2**30


@dataclass(frozen=True)
class Need:
    """What running one model takes, estimated before it loads.

    Attributes:
        name: the model's name, for messages.
        weights: bytes the loaded model holds (parameters and buffers at the load dtype).
        working: bytes a run needs on top while it runs (activations, pre- and post-processing).
    """

    name: str
    weights: int
    working: int

    @property
    def total(self) -> int:
        """Weights plus working memory."""
        return self.weights + self.working


def gb(nbytes: float) -> str:
    """Bytes as a short "3.2 GB" text for messages."""
    return f"{nbytes / GB:.1f} GB"


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


def _malloc_trim() -> Callable[[], Any] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    return (lambda: trim(0)) if trim is not None else None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Return freed memory to the system/allocator. Called outside any ``except`` block.

    On CPU, glibc keeps freed heap memory for reuse: without ``malloc_trim`` an evicted model's
    bytes stay in the process, and the next model lands on top of them (the process then runs
    gigabytes over its budget although the cache's own count is right).
    """
    gc.collect()
    import sys

    torch = sys.modules.get("torch")  # only if something already imported it
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    if _TRIM is not None:
        _TRIM()


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
    """Thread-safe cache of loaded models with memory admission and a byte budget.

    Args:
        loader: ``loader(key)`` builds the model; it may raise `ModelUnavailable`.
        budget: the most bytes models (plus one run's working memory) may take, or a
            zero-argument probe returning it (read at each load).
        sizer: measures a loaded model in bytes (default: torch parameters and buffers).
        need: what a key takes before it loads (`Need`), or ``None`` when unknown (then it is
            loaded without admission and measured afterwards).
        available: probe of the memory free right now (``None``: follow the budget only).
        headroom: bytes always left free for everything that is not a model.
        release: frees memory after eviction (default: gc, CUDA empty_cache, malloc_trim).
        clock: monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        loader: Loader,
        budget: int | Callable[[], int],
        *,
        sizer: Sizer = module_bytes,
        need: Callable[[Hashable], Need | None] = lambda key: None,
        available: Callable[[], int] | None = None,
        headroom: int = 0,
        release: Callable[[], None] = release_memory,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = loader
        self._budget = budget if callable(budget) else (lambda b=budget: b)
        self._sizer = sizer
        self._need = need
        self._available = available
        self._headroom = headroom
        self._release = release
        self._clock = clock
        self._entries: dict[Hashable, _Entry] = {}
        self._loading: dict[Hashable, int] = {}  # bytes promised to loads in progress
        self._table_lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self.loads = 0  # number of loader calls that succeeded (for tests and the status panel)
        self.last_load_s: dict[Hashable, float] = {}
        _CACHES.add(self)

    # -- public API -------------------------------------------------------------------------

    @property
    def budget_bytes(self) -> int:
        """The configured budget (an upper bound; free memory may allow less)."""
        return int(self._budget())

    def room_bytes(self) -> int:
        """Bytes models may take now: the budget, or less when the machine has less free."""
        with self._table_lock:
            return self._room_locked()

    def admits(self, need: Need | None) -> str:
        """Why a model with ``need`` can never run under this budget ("" when it can)."""
        if need is None or need.total <= self.budget_bytes:
            return ""
        return f"{need.name} needs about {gb(need.total)}; this server has {gb(self.budget_bytes)} for models."

    @contextlib.contextmanager
    def use(self, key: Hashable) -> Iterator[Any]:
        """Pin ``key``'s model for the duration of the ``with`` block, loading it if needed.

        Raises:
            ModelUnavailable: ``too_large`` / ``busy`` when memory admission refuses it, or the
                loader's own typed error.
        """
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
            freed = sum(self._entries[k].nbytes for k in dropped)
            for k in dropped:
                del self._entries[k]
        if dropped:
            log.info("evicted %s (%s) to recover memory", ", ".join(map(str, dropped)), gb(freed))
            self._release()
        return dropped

    # -- internals --------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # A forked GPU worker (ZeroGPU) has only the thread that forked: a lock another thread held
        # at that moment would never be released there. Fresh locks; models and sizes are kept.
        self._table_lock = threading.Lock()
        self._key_locks = {}
        self._loading = {}

    def _room_locked(self) -> int:
        held = sum(e.nbytes for e in self._entries.values()) + sum(self._loading.values())
        room = self.budget_bytes
        if self._available is not None:
            room = min(room, held + int(self._available()) - self._headroom)
        return room

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
            need = self._need(key)
            self._admit(key, need)
            try:
                model, nbytes, load_s = self._load_with_oom_retry(key)
            finally:
                with self._table_lock:
                    self._loading.pop(key, None)
            entry = _Entry(model, nbytes, load_s, pins=1, last_used=self._clock())
            with self._table_lock:
                self._entries[key] = entry
            log.info("loaded %s on %s in %.1f s: %s (estimated %s)", key, getattr(key, "device", "?"), load_s,
                     gb(nbytes), gb(need.weights) if need else "unknown")  # fmt: skip
            self._evict_to_budget(keep=key, working=need.working if need else 0)
            return entry

    def _admit(self, key: Hashable, need: Need | None) -> None:
        """Refuse ``key`` if it cannot fit; else make room (LRU eviction) and promise it the bytes."""
        if need is None:
            self._evict_to_budget(keep=key)
            return
        reason = self.admits(need)
        if reason:
            log.warning("refused %s: needs %s, budget %s", key, gb(need.total), gb(self.budget_bytes))
            raise ModelUnavailable(str(key), "too_large", reason)
        dropped: list[tuple[Hashable, int]] = []
        with self._table_lock:
            room = self._room_locked()
            busy = sum(e.nbytes for e in self._entries.values() if e.pins > 0) + sum(self._loading.values())
            if busy + need.total > room:
                log.warning("refused %s for now: needs %s, %s free for models, %s in use by other requests",
                            key, gb(need.total), gb(room), gb(busy))  # fmt: skip
                raise ModelUnavailable(
                    str(key),
                    "busy",
                    f"{need.name} needs about {gb(need.total)}, and only {gb(max(room - busy, 0))} is free for "
                    "models right now. Try again in a moment, or pick a smaller model.",
                )
            held = sum(e.nbytes for e in self._entries.values()) + sum(self._loading.values())
            for k, e in sorted(self._entries.items(), key=lambda kv: kv[1].last_used):
                if held + need.total <= room:
                    break
                if e.pins == 0:
                    del self._entries[k]
                    held -= e.nbytes
                    dropped.append((k, e.nbytes))
            self._loading[key] = need.weights
        if dropped:
            log.info("evicted %s to make room for %s (needs %s of %s for models)",
                     ", ".join(f"{k} ({gb(b)})" for k, b in dropped), key, gb(need.total), gb(room))  # fmt: skip
            self._release()

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
        log.warning("refused %s: out of memory twice while loading", key)
        raise ModelUnavailable(
            str(key), "out_of_memory", f"Not enough memory to load {key}; try a smaller model."
        )

    def _evict_to_budget(self, keep: Hashable, working: int = 0) -> None:
        """After a load (sizes now measured): drop LRU unpinned models until the rest fit."""
        dropped: list[tuple[Hashable, int]] = []
        with self._table_lock:
            room = self._room_locked() - working
            used = sum(e.nbytes for e in self._entries.values()) + sum(self._loading.values())
            lru = sorted(
                (kv for kv in self._entries.items() if kv[1].pins == 0 and kv[0] != keep),
                key=lambda kv: kv[1].last_used,
            )
            for k, e in lru:
                if used <= room:
                    break
                del self._entries[k]
                used -= e.nbytes
                dropped.append((k, e.nbytes))
        if dropped:
            log.info("evicted %s to stay within %s for models",
                     ", ".join(f"{k} ({gb(b)})" for k, b in dropped), gb(room))  # fmt: skip
            self._release()
        if used > room:
            log.warning("models in use hold %s, over the %s free for models", gb(used), gb(max(room, 0)))
