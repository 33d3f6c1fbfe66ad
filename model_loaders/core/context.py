"""`AppContext`: the settings and shared model cache that every tab receives in ``build(ctx)``."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_loaders.core.availability import Availability, LoadSettings, availability, family_module
from model_loaders.core.batching import Batchers
from model_loaders.core.cache import ModelCache, Need, gb
from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.outputs import OutputSpace
from model_loaders.core.registry import REGISTRY, get_spec
from model_loaders.core.results import Timings
from model_loaders.core.specs import ModelSpec, WeightsMode
from model_loaders.core.uploads import UploadGate


@dataclass(frozen=True)
class CacheKey:
    """Everything that changes a loaded object: model, revision, device, dtype, weights mode."""

    key: str
    revision: str | None
    device: str
    dtype: str
    weights: WeightsMode
    part: str = ""  # "" for the model a family's ``load`` builds; e.g. "video" for ``load_video``

    def __str__(self) -> str:
        return self.key


HEADROOM_BYTES = 512 * 2**20  # always left free for the server, the image pipeline and the system


def memory_need(spec: ModelSpec, settings: LoadSettings) -> Need | None:
    """Weights and working memory of ``spec`` at the dtype it loads with under ``settings``.

    ``None`` for API models, models whose size is not published, and ``tiny`` builds (their
    sizes are nothing like the estimate; they are measured after loading instead).
    """
    if settings.weights == "tiny" or spec.is_api:
        return None
    dtype = settings.dtype_name(spec)
    weights = spec.estimated_bytes(dtype)
    if weights is None:
        return None
    return Need(spec.name, weights, spec.working_bytes(dtype))


WEIGHTS_WARNING = {
    "hub": "",
    "random": "random weights: outputs are meaningless",
    "tiny": "tiny random weights: outputs are meaningless",
}


@dataclass
class AppContext:
    """Process-wide settings plus the one shared model cache.

    Attributes:
        settings: weights mode and device.
        cache: the shared `ModelCache`, keyed by `CacheKey`.
        uploads: the gate every file a request names passes (refuses every path by default).
        outputs: the capped space where requests write their download files.
        options: launch options shown in the status panel (queue size, file size cap).
        backends: where models run besides this process (serving engines), asked first.
        batchers: per-model batching queues (off unless the app batches: ``--batch-size``).
    """

    settings: LoadSettings
    cache: ModelCache = field(repr=False)
    uploads: UploadGate = field(default_factory=UploadGate)
    outputs: OutputSpace = field(default_factory=lambda: OutputSpace(Path(tempfile.gettempdir()) / "vision-playground"))
    options: dict[str, Any] = field(default_factory=dict)
    backends: list[Any] = field(default_factory=list)
    batchers: Batchers = field(default_factory=Batchers)

    @classmethod
    def create(
        cls,
        weights: WeightsMode,
        device: str,
        budget_bytes: int | None = None,
        *,
        uploads: UploadGate | None = None,
        outputs: OutputSpace | None = None,
        **options: Any,
    ) -> AppContext:
        """Build a context with the real loader; ``device`` must already be resolved.

        Args:
            weights: the weights mode.
            device: a resolved torch device string.
            budget_bytes: the most models may take (default: `default_budget_bytes`); the
                cache also never takes more than the device has free when it loads.
            uploads: the upload gate (default: refuse every path).
            outputs: where requests write their files.
            available: probe of the memory free now (default: the device's; tests pass fakes).
        """
        from model_loaders.core.device import available_bytes, default_budget_bytes

        settings = LoadSettings(weights=weights, device=device)
        budget = budget_bytes if budget_bytes is not None else default_budget_bytes(device)
        probe = options.pop("available", None) or (lambda: available_bytes(device))

        def load(ck: CacheKey) -> Any:
            spec = get_spec(ck.key)
            module = family_module(spec)
            return (getattr(module, f"load_{ck.part}") if ck.part else module.load)(spec, settings)

        def need(ck: CacheKey) -> Need | None:
            return memory_need(get_spec(ck.key), settings)

        cache = ModelCache(load, budget, need=need, available=probe, headroom=HEADROOM_BYTES)  # type: ignore[arg-type]
        extra: dict[str, Any] = {}
        if uploads is not None:
            extra["uploads"] = uploads
        if outputs is not None:
            extra["outputs"] = outputs
        return cls(settings=settings, cache=cache, options=options, **extra)

    @property
    def weights_warning(self) -> str:
        """Label for every output in random/tiny mode; empty for real weights."""
        return WEIGHTS_WARNING[self.settings.weights]

    def extra_specs(self) -> list[ModelSpec]:
        """Models the backends serve that the registry does not know."""
        specs: dict[str, ModelSpec] = {}
        for backend in self.backends:
            for spec in getattr(backend, "extra_specs", list)():
                specs.setdefault(spec.key, spec)
        return list(specs.values())

    def spec(self, key: str) -> ModelSpec:
        """The registry's spec for ``key``, or a backend's for a model only it serves.

        Raises:
            ModelUnavailable: an unknown key.
        """
        if isinstance(key, str) and key not in REGISTRY:
            for spec in self.extra_specs():
                if spec.key == key:
                    return spec
        return get_spec(key)

    def cache_key(self, spec: ModelSpec, part: str = "") -> CacheKey:
        """The cache key of ``spec`` (or one ``part`` of it) under this context's settings."""
        s = self.settings
        return CacheKey(spec.key, spec.revision, s.device, s.dtype_name(spec), s.weights, part)

    def memory_need(self, spec: ModelSpec) -> Need | None:
        """What ``spec`` takes in memory here (``None`` when it cannot be estimated)."""
        return memory_need(spec, self.settings)

    def availability(self, spec: ModelSpec) -> Availability:
        """Whether ``spec`` can run: served by a backend ("served by <host>"), else in this process
        (code, extras, keys, gating, then memory)."""
        for backend in self.backends:
            served = getattr(backend, "availability", lambda s: None)(spec)
            if served is not None:
                return served
        avail = availability(spec, self.settings.weights)
        if not avail.ok:
            return avail
        too_large = self.cache.admits(self.memory_need(spec))
        if too_large:
            return Availability(False, f"too large here (needs {gb(self.memory_need(spec).total)})",  # type: ignore[union-attr]
                                too_large, "too_large")  # fmt: skip
        return avail

    @contextlib.contextmanager
    def use(self, key: str, timings: Timings | None = None, part: str = "") -> Iterator[Any]:
        """Pin model ``key`` for one request (loading it once if needed).

        Args:
            key: registry key.
            timings: if given, gets the model, device and weights mode, and ``load_ms`` for
                the time spent getting the model (about 0 when it was already loaded).
            part: which of the model's parts (a family's ``load_<part>``; "" for ``load``).

        Raises:
            ModelUnavailable: unknown key, not runnable here, or failed to load.
        """
        spec = get_spec(key)
        avail = self.availability(spec)
        if not avail.ok:
            raise ModelUnavailable(spec.key, avail.kind, avail.reason)  # type: ignore[arg-type]
        start = time.perf_counter()
        with self.cache.use(self.cache_key(spec, part)) as model:
            if timings is not None:
                timings.model = spec.key
                timings.device = self.settings.device
                timings.weights = self.settings.weights
                timings.load_ms += (time.perf_counter() - start) * 1000.0
            yield model
