"""The shared model cache, with fake loaders: no real model needed."""

from __future__ import annotations

import threading
import time

import pytest

from model_loaders.core.cache import ModelCache, Need, module_bytes
from model_loaders.core.errors import ModelUnavailable


class FakeModel:
    def __init__(self, key: str, nbytes: int) -> None:
        self.key, self.nbytes = key, nbytes


class FakeLoader:
    """Builds FakeModels of given sizes, counting calls; can be told to fail."""

    def __init__(self, sizes: dict[str, int], delay: float = 0.0) -> None:
        self.sizes, self.delay = sizes, delay
        self.calls: list[str] = []
        self.fail: dict[str, list[BaseException]] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str) -> FakeModel:
        with self._lock:
            self.calls.append(key)
            errors = self.fail.get(key)
            error = errors.pop(0) if errors else None
        time.sleep(self.delay)
        if error is not None:
            raise error
        return FakeModel(key, self.sizes[key])


def make_cache(sizes: dict[str, int], budget: int, **kw) -> tuple[ModelCache, FakeLoader, list[int]]:
    loader = FakeLoader(sizes, kw.pop("delay", 0.0))
    releases: list[int] = []
    cache = ModelCache(
        loader, budget, sizer=lambda m: m.nbytes, release=lambda: releases.append(1), **kw
    )
    return cache, loader, releases


def test_eight_threads_asking_for_one_cold_model_load_it_once():
    cache, loader, _ = make_cache({"a": 10}, 100, delay=0.3)
    barrier = threading.Barrier(8)
    got: list[FakeModel] = []
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            with cache.use("a") as model:
                got.append(model)
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert loader.calls == ["a"]
    assert len(got) == 8 and all(m is got[0] for m in got)


def test_different_models_load_in_parallel():
    # a's load waits until b's load has started: if loads were serialised, b would never start
    # while a is loading, and a's wait would run out.
    b_started = threading.Event()
    overlapped: list[bool] = []

    def loader(key: str) -> FakeModel:
        if key == "a":
            overlapped.append(b_started.wait(10))
        else:
            b_started.set()
        return FakeModel(key, 1)

    cache = ModelCache(loader, 100, sizer=lambda m: m.nbytes, release=lambda: None)
    threads = [threading.Thread(target=lambda k=k: cache.use(k).__enter__()) for k in "ab"]
    threads[0].start()
    threads[1].start()
    for t in threads:
        t.join(20)
    assert overlapped == [True], "a per-key lock must not serialise unrelated loads"
    assert cache.is_loaded("a") and cache.is_loaded("b")


def test_eviction_is_least_recently_used_first():
    cache, loader, _ = make_cache({"a": 40, "b": 40, "c": 40}, 100)
    for key in ("a", "b", "a", "c"):  # a is used again after b, so b is the LRU when c arrives
        with cache.use(key):
            pass
    assert [i.key for i in cache.snapshot()] == ["c", "a"]
    assert loader.calls == ["a", "b", "c"]


def test_eviction_counts_bytes_not_models():
    sizes = {"s1": 10, "s2": 10, "s3": 10, "s4": 10, "big": 85}
    cache, _, _ = make_cache(sizes, 100)
    for key in ("s1", "s2", "s3", "s4"):
        with cache.use(key):
            pass
    assert len(cache.snapshot()) == 4, "four small models fit in the byte budget"
    with cache.use("big"):
        pass
    # 40 + 85 > 100: evict LRU small models until it fits (s1, s2 go; s3 + s4 + big = 105 > 100, s3 too)
    assert {i.key for i in cache.snapshot()} == {"s4", "big"}
    assert cache.used_bytes() == 95


def test_room_is_made_before_loading_when_size_is_known():
    sizes = {"a": 60, "b": 60}
    seen_used: list[int] = []
    cache, loader, _ = make_cache(sizes, 100, need=lambda key: Need(key, sizes[key], 0))
    original = loader.__call__

    def spy(key: str) -> FakeModel:
        seen_used.append(cache.used_bytes())
        return original(key)

    cache._loader = spy  # noqa: SLF001 - spy on what is resident at load time
    with cache.use("a"):
        pass
    with cache.use("b"):
        pass
    assert seen_used == [0, 0], "a must be evicted before b loads, so peak stays within budget"


def test_pinned_models_survive_eviction():
    cache, _, _ = make_cache({"a": 60, "b": 60, "c": 60}, 100)
    with cache.use("a") as a:
        with cache.use("b"):
            pass
        with cache.use("c"):
            pass
        assert cache.is_loaded("a"), "a is in use and must stay"
        assert a.key == "a"
    assert {i.key for i in cache.snapshot()} >= {"a", "c"}
    assert not cache.is_loaded("b")


def test_a_failing_load_leaves_nothing_behind_and_can_be_retried():
    cache, loader, _ = make_cache({"a": 10}, 100)
    loader.fail["a"] = [ValueError("corrupt weights")]
    with pytest.raises(ModelUnavailable) as info:
        with cache.use("a"):
            pass
    assert info.value.kind == "load_failed"
    assert not cache.is_loaded("a") and cache.snapshot() == []
    with cache.use("a") as model:
        assert model.key == "a"
    assert loader.calls == ["a", "a"]


def test_typed_unavailable_errors_pass_through_unchanged():
    cache, loader, _ = make_cache({"a": 10}, 100)
    loader.fail["a"] = [ModelUnavailable("a", "gated", "gated: set HF_TOKEN")]
    with pytest.raises(ModelUnavailable) as info:
        with cache.use("a"):
            pass
    assert info.value.kind == "gated"


def test_out_of_memory_evicts_unpinned_and_retries_once():
    cache, loader, releases = make_cache({"a": 10, "b": 10, "c": 10}, 1000)
    with cache.use("a"):
        pass
    loader.fail["c"] = [MemoryError()]
    with cache.use("b"):  # b is pinned: it must survive the OOM recovery
        with cache.use("c") as c:
            assert c.key == "c"
        assert cache.is_loaded("b")
    assert not cache.is_loaded("a"), "unpinned models are evicted to recover from OOM"
    assert loader.calls == ["a", "b", "c", "c"]
    assert releases, "memory is released before the retry"


def test_out_of_memory_twice_is_a_typed_error_and_next_request_works():
    cache, loader, _ = make_cache({"a": 10}, 1000)

    class CudaOOM(RuntimeError):
        pass

    CudaOOM.__name__ = "OutOfMemoryError"
    loader.fail["a"] = [CudaOOM("CUDA out of memory"), CudaOOM("CUDA out of memory")]
    with pytest.raises(ModelUnavailable) as info:
        with cache.use("a"):
            pass
    assert info.value.kind == "out_of_memory"
    assert loader.calls == ["a", "a"] and not cache.is_loaded("a")
    with cache.use("a") as model:
        assert model.key == "a"


def test_budget_probe_is_read_at_each_load():
    budget = {"bytes": 1000}
    cache, _, _ = make_cache({"a": 60, "b": 60}, 0)
    cache._budget = lambda: budget["bytes"]  # noqa: SLF001 - a probe that changes over time
    with cache.use("a"):
        pass
    budget["bytes"] = 100
    with cache.use("b"):
        pass
    assert [i.key for i in cache.snapshot()] == ["b"]


def test_module_bytes_counts_parameters_and_buffers_once():
    import torch

    lin = torch.nn.Linear(10, 10)  # 110 float32 params
    bn = torch.nn.BatchNorm1d(10)  # 20 params + 21 buffer values (running mean/var, count int64)

    class Bundle:
        def __init__(self) -> None:
            self.model = torch.nn.Sequential(lin, bn)
            self.same_again = lin  # shared: counted once
            self.processor = object()

    expected = 110 * 4 + 20 * 4 + 20 * 4 + 8
    assert module_bytes(Bundle()) == expected


# --- memory admission: refuse before loading, never load and hope ---------------------------------


def test_a_model_larger_than_the_budget_is_refused_without_loading():
    cache, loader, _ = make_cache({"small": 10, "huge": 500}, 100, need=lambda k: Need(k, {"small": 10, "huge": 500}[k], 20))
    with cache.use("small"):
        pass
    with pytest.raises(ModelUnavailable) as info:
        with cache.use("huge"):
            pass
    assert info.value.kind == "too_large"
    assert "huge needs about" in info.value.message and "for models" in info.value.message
    assert loader.calls == ["small"], "nothing is loaded for a refused model"
    assert cache.is_loaded("small"), "a refusal evicts nothing"


def test_working_memory_counts_towards_the_budget():
    # 80 of weights fit a 100 budget, but not with 30 of working memory on top.
    cache, loader, _ = make_cache({"a": 80}, 100, need=lambda k: Need(k, 80, 30))
    with pytest.raises(ModelUnavailable, match="needs about"):
        with cache.use("a"):
            pass
    assert loader.calls == []


def test_room_held_by_requests_in_progress_gives_busy_then_works_later():
    sizes = {"a": 60, "b": 60}
    cache, loader, _ = make_cache(sizes, 100, need=lambda k: Need(k, sizes[k], 0))
    with cache.use("a"):  # pinned: cannot be evicted for b
        with pytest.raises(ModelUnavailable) as info:
            with cache.use("b"):
                pass
        assert info.value.kind == "busy"
    with cache.use("b"):  # a is no longer in use: evicted, b loads
        pass
    assert loader.calls == ["a", "b"] and not cache.is_loaded("a")


def test_the_budget_follows_the_memory_that_is_really_free():
    free = {"bytes": 1000}
    sizes = {"a": 40, "b": 40}
    cache, loader, _ = make_cache(sizes, 100, need=lambda k: Need(k, sizes[k], 0), available=lambda: free["bytes"])
    with cache.use("a"):
        pass
    free["bytes"] = 10  # something else took the machine's memory: a (40) + 10 free = room for 50
    with cache.use("b"):
        pass
    assert [i.key for i in cache.snapshot()] == ["b"], "a was evicted because b did not fit beside it"


def test_a_load_in_progress_holds_its_room_so_a_concurrent_load_cannot_take_it():
    sizes = {"a": 60, "b": 60}
    a_loading, a_may_finish = threading.Event(), threading.Event()

    def loader(key: str) -> FakeModel:
        if key == "a":
            a_loading.set()
            a_may_finish.wait(10)
        return FakeModel(key, sizes[key])

    cache = ModelCache(loader, 100, sizer=lambda m: m.nbytes, need=lambda k: Need(k, sizes[k], 0), release=lambda: None)
    worker = threading.Thread(target=lambda: cache.use("a").__enter__())
    worker.start()
    assert a_loading.wait(10)
    with pytest.raises(ModelUnavailable) as info:
        with cache.use("b"):
            pass
    assert info.value.kind == "busy"
    a_may_finish.set()
    worker.join(10)
    assert cache.is_loaded("a") and not cache.is_loaded("b")
