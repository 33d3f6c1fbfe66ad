"""The vision models on a Ray Serve cluster: one deployment per model, the app a thin front-end.

`RayBackend` sits behind the task layer's seam (``tasks.base.backend_for``): Segment, Depth and
Detect (and so Compare, the Workflow, the API and MCP) ask it for a model and get a proxy that
implements the same protocol as the in-process bundle. Nothing else changes.

- **One deployment per model actually used**, created on first use (`ModelReplica`): each replica
  builds the model with the same registry entry and family adapter as in-process
  (``families.<family>.load``). Replicas, autoscaling and GPU share per model come from one YAML
  file (`load_config`; README, "Ray Serve"), with defaults by model size.
- **Dynamic batching** (``@serve.batch``): concurrent Depth and closed-set Detect requests share one
  forward pass (the bundles' ``Batchable`` methods), and SAM's image encoder encodes concurrent
  images together (``Sam2Bundle.encode_batch``); each caller gets its own result.
- **SAM embeddings stay on the cluster**: a replica keeps a byte-capped LRU of embeddings keyed by
  (image digest, model); the proxy's ``encode`` returns a reference (no 4+ MB features cross the
  wire) and a click sends only its prompts. A click whose embedding is gone (evicted, or another
  replica answered) is re-encoded transparently from the image the reference keeps.
- **Failures** are short messages (``ModelUnavailable``) and the app stays up: an unreachable
  cluster, a deployment that cannot be placed, a replica that dies mid-request (an idempotent
  call is retried once on a live replica first).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_loaders.core.availability import Availability
from model_loaders.core.errors import InputError, ModelUnavailable
from model_loaders.core.results import ImageEmbedding, Timings
from model_loaders.core.specs import ModelSpec, Task

log = logging.getLogger(__name__)

TASKS = ("segment", "depth", "detect")
APP_PREFIX = "vp-"
PLACE_TIMEOUT_S = 180.0  # a deployment not running by then could not be placed
CALL_TIMEOUT_S = 300.0
MAX_BATCH = 8
BATCH_WAIT_S = 0.01
EMBEDDING_ITEMS = 64  # per replica: a busy demo's images, each encoded once
EMBEDDING_BYTES = 2 * 2**30


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentConfig:
    """How one model is deployed: replicas (fixed or autoscaled) and its share of a GPU and CPUs."""

    num_replicas: int = 1
    autoscaling: dict[str, Any] | None = None  # Ray's autoscaling_config (min/max_replicas, target_ongoing_requests)
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    max_batch_size: int = MAX_BATCH

    def options(self, name: str, by_image: bool = False) -> dict[str, Any]:
        """``Deployment.options`` for this config. A replica takes two batches' worth of requests at
        once (Serve's default of 5 would cap every batch at 5). ``by_image``: requests carrying an
        image digest as their session go to the replica that holds that image's embedding
        (consistent hashing; a busy replica hands over to the next one, which encodes again)."""
        opts: dict[str, Any] = {"name": name, "ray_actor_options": {"num_gpus": self.num_gpus, "num_cpus": self.num_cpus},
                                "max_ongoing_requests": max(2 * self.max_batch_size, 8)}  # fmt: skip
        if by_image:
            from ray.serve.config import RequestRouterConfig

            opts["request_router_config"] = RequestRouterConfig(request_router_class=IMAGE_ROUTER)
        if self.autoscaling:
            opts["autoscaling_config"] = dict(self.autoscaling)
        else:
            opts["num_replicas"] = self.num_replicas
        return opts


def default_config(spec: ModelSpec, device: str) -> DeploymentConfig:
    """One replica; on a GPU a share by size (0.1 below 100 M parameters, 0.25 below 500 M, else 0.5)."""
    if not device.startswith("cuda"):
        return DeploymentConfig()
    params = spec.params_m or 0.0
    return DeploymentConfig(num_gpus=0.1 if params < 100 else 0.25 if params < 500 else 0.5)


_FIELDS = {"num_replicas": int, "num_gpus": float, "num_cpus": float, "max_batch_size": int}
FRONTEND = "frontend"  # the config file's entry for the app's own replicas (``--frontend-replicas``)
FRONTEND_APP = "vision-playground"  # the Serve application of those replicas (``ray_frontend``)
IMAGE_ROUTER = "ray.serve.experimental.consistent_hash_router.ConsistentHashRouter"


def load_config(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Per-model overrides from a YAML file: ``{model key or "default": {num_replicas, autoscaling,
    num_gpus, num_cpus, max_batch_size}}``, and ``frontend: {num_cpus}`` for the app's own replicas.

    Raises:
        ValueError: an unreadable file or an unknown setting (said at start-up, not at first use).
    """
    if not path:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"Ray Serve config {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"Ray Serve config {path}: a mapping of model key -> settings.")
    for key, settings in data.items():
        allowed = {"num_cpus"} if key == FRONTEND else {*_FIELDS, "autoscaling"}
        unknown = set(settings) - allowed
        if unknown:
            raise ValueError(f"Ray Serve config {path}: {key}: unknown setting(s) {', '.join(sorted(unknown))}.")
    return {str(k): dict(v) for k, v in data.items()}


def config_for(overrides: dict[str, dict[str, Any]], spec: ModelSpec, device: str) -> DeploymentConfig:
    """The model's config: its defaults, then the file's "default" entry, then its own entry."""
    base = default_config(spec, device)
    merged = {**base.__dict__, **overrides.get("default", {}), **overrides.get(spec.key, {})}
    return DeploymentConfig(
        num_replicas=int(merged["num_replicas"]), autoscaling=merged.get("autoscaling"),
        num_gpus=float(merged["num_gpus"]), num_cpus=float(merged["num_cpus"]),
        max_batch_size=max(1, int(merged["max_batch_size"])),
    )  # fmt: skip


def frontend_config(overrides: dict[str, dict[str, Any]], replicas: int) -> DeploymentConfig:
    """The front-end's replicas: ``--frontend-replicas`` of them, half a CPU each (they mostly wait on
    the models) unless the file's ``frontend`` entry says otherwise. A fixed count, not autoscaled:
    a change in the count moves some browsers to another replica, where their session is unknown."""
    if replicas < 1:
        raise ValueError("--frontend-replicas is at least 1.")
    return DeploymentConfig(num_replicas=replicas, num_cpus=float(overrides.get(FRONTEND, {}).get("num_cpus", 0.5)))


# --- the replica (runs on the cluster) --------------------------------------------------------


def _grouped(inputs: list[Any], forward: Any) -> list[Any]:
    """``forward`` over runs of same-shaped inputs (tensors only stack when their shapes agree)."""

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return tuple((k, shape(v)) for k, v in sorted(value.items()))
        return tuple(getattr(value, "shape", ()))

    out: list[Any] = [None] * len(inputs)
    groups: dict[Any, list[int]] = {}
    for i, value in enumerate(inputs):
        groups.setdefault(shape(value), []).append(i)
    for indices in groups.values():
        for i, result in zip(indices, forward([inputs[i] for i in indices]), strict=True):
            out[i] = result
    return out


def _in_flight(method: Any) -> Any:
    """Count a replica's requests while they wait or run (its queue, in the status panel)."""

    @functools.wraps(method)
    async def counted(self: ModelReplica, *args: Any) -> Any:
        self.in_flight += 1
        try:
            return await method(self, *args)
        finally:
            self.in_flight -= 1

    return counted


class ModelReplica:
    """One model on one replica: the family adapter's bundle, batched entry points, the embedding cache.

    Plain class: `serve_deployment` wraps it (``serve.deployment``) so that importing this module
    does not need Ray.
    """

    def __init__(self, key: str, weights: str, device: str, max_batch_size: int = MAX_BATCH) -> None:
        from model_loaders.core.availability import LoadSettings
        from model_loaders.core.embeddings import EmbeddingCache
        from model_loaders.core.registry import FAMILIES, get_spec

        spec = get_spec(key)
        module = importlib.import_module(str(FAMILIES[spec.family].module))
        started = time.perf_counter()
        self.bundle = module.load(spec, LoadSettings(weights, device))  # type: ignore[arg-type]
        self.load_ms = (time.perf_counter() - started) * 1000.0
        self.key, self.weights, self.device = key, weights, device
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.embeddings = EmbeddingCache(EMBEDDING_ITEMS, EMBEDDING_BYTES)
        self._lock = threading.Lock()  # the bundle runs one pass at a time
        self._cache_lock = threading.Lock()  # the embedding cache: the event loop reads, encode threads write
        self.max_batch_size = max(1, int(max_batch_size))

    # The batched entry points (``_depth_batch``, ``_detect_batch``, ``_encode_batch``) are added by
    # `serve_deployment`, where Ray is imported.
    _depth_batch: Any
    _detect_batch: Any
    _encode_batch: Any

    async def _run(self, fn: Any, *args: Any) -> Any:
        def locked() -> Any:
            with self._lock:
                return fn(*args)

        return await asyncio.to_thread(locked)

    def _forward(self, inputs: list[Any]) -> list[Any]:
        self.calls["forward"] += 1
        self.calls["forward_items"] += len(inputs)
        return self.bundle.forward_batch(inputs)

    def _batched(self, images: list[np.ndarray]) -> list[Any]:
        """Depth or closed-set detection for several images: one forward pass per same-shaped group."""
        timings = [Timings() for _ in images]
        inputs = [self.bundle.prepare(img, t) for img, t in zip(images, timings, strict=True)]
        started = time.perf_counter()
        outputs = _grouped(inputs, self._forward)
        for t in timings:  # every caller waited for the shared pass
            t.inference_ms += (time.perf_counter() - started) * 1000.0
        return [(self.bundle.finish(o, img.shape[:2], t), t.as_dict())
                for o, img, t in zip(outputs, images, timings, strict=True)]  # fmt: skip

    @_in_flight
    async def estimate(self, image: np.ndarray) -> Any:
        """(DepthResult, timings) for one image; concurrent calls share a forward pass."""
        return await self._depth_batch(image)

    @_in_flight
    async def detect(self, image: np.ndarray, classes: list[str] | None, boxes: list[Any] | None = None) -> Any:
        """(Detections, timings); closed-set detectors batch concurrent calls, open-vocabulary ones
        run alone (with SAM 3's exemplar ``boxes`` when given)."""
        if getattr(self.bundle, "open_vocabulary", False):
            timings = Timings()
            self.calls["forward"] += 1
            self.calls["forward_items"] += 1
            extra = {"boxes": boxes} if boxes else {}
            det = await self._run(lambda: self.bundle.detect(image, timings, classes, **extra))
            return det, timings.as_dict()
        return await self._detect_batch(image)

    def _encode_many(self, items: list[tuple[np.ndarray, str]]) -> list[tuple[float, tuple[int, int]]]:
        self.calls["encode"] += 1
        self.calls["encode_items"] += len(items)
        out = []
        for embedding in self.bundle.encode_batch([img for img, _ in items], [d for _, d in items]):
            with self._cache_lock:
                self.embeddings.put(embedding)
            out.append((embedding.encode_ms, embedding.image_size))
        return out

    @_in_flight
    async def encode(self, image: np.ndarray, digest: str) -> tuple[float, tuple[int, int]]:
        """Encode an image (concurrent images together) and keep its embedding here: (ms, (h, w))."""
        hit = self._held(digest)
        if hit is not None:
            return 0.0, hit.image_size
        return await self._encode_batch((image, digest))

    def _held(self, digest: str) -> Any:
        with self._cache_lock:
            return self.embeddings.get(digest, self.key)

    async def _embedding(self, digest: str, image: np.ndarray | None) -> Any:
        """The kept embedding of ``digest``; when it is not here and the ``image`` came along, encoded
        now, so that encoding and decoding happen on the same replica."""
        embedding = self._held(digest)
        if embedding is None and image is not None:
            await self._encode_batch((image, digest))
            embedding = self._held(digest)
        return embedding

    @_in_flight
    async def decode(self, digest: str, points: list[Any], labels: list[int], box: Any, multimask: bool,
                     image: np.ndarray | None = None) -> Any:  # fmt: skip
        """Candidate masks for prompts on a kept embedding, or ``None`` when this replica does not hold
        it (and no ``image`` came to encode it again)."""
        embedding = await self._embedding(digest, image)
        if embedding is None:
            return None
        self.calls["decode"] += 1
        return await self._run(self.bundle.decode, embedding, points, labels, box, multimask)

    @_in_flight
    async def decode_points(self, digest: str, points: list[Any], image: np.ndarray | None = None) -> Any:
        """Segment everything's batch of single-point prompts on a kept embedding (``None``: not held)."""
        embedding = await self._embedding(digest, image)
        if embedding is None:
            return None
        self.calls["decode"] += 1
        return await self._run(self.bundle.decode_points, embedding, points)

    def info(self) -> dict[str, Any]:
        """Calls so far, cached embeddings, the replica's process id (tests and the status panel)."""
        import os

        return {"calls": dict(self.calls), "embeddings": len(self.embeddings), "pid": os.getpid(), "in_flight": self.in_flight,
                "weights": self.weights, "device": self.device,
                "open_vocabulary": bool(getattr(self.bundle, "open_vocabulary", False)),
                "class_names": tuple(getattr(self.bundle, "class_names", ()) or ()), "load_ms": self.load_ms}  # fmt: skip

    def forget(self) -> None:
        """Drop every kept embedding (tests: a click after eviction)."""
        with self._cache_lock:
            self.embeddings.clear()


def serve_deployment() -> Any:
    """`ModelReplica` with its ``@serve.batch`` entry points, as a Ray Serve deployment class."""
    from ray import serve

    batch = serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)

    class BatchedReplica(ModelReplica):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            for method in (self._depth_batch, self._detect_batch, self._encode_batch):
                method.set_max_batch_size(self.max_batch_size)

        @batch
        async def _depth_batch(self, images: list[np.ndarray]) -> list[Any]:
            return await self._run(self._batched, images)

        @batch
        async def _detect_batch(self, images: list[np.ndarray]) -> list[Any]:
            return await self._run(self._batched, images)

        @batch
        async def _encode_batch(self, items: list[tuple[np.ndarray, str]]) -> list[Any]:
            return await self._run(self._encode_many, items)

    return serve.deployment(BatchedReplica, name="ModelReplica", max_ongoing_requests=64)


# --- the proxies (run in the app) -------------------------------------------------------------


@dataclass
class RemoteImageEmbedding(ImageEmbedding):
    """A reference to an embedding kept on the cluster; holds the image to encode it again if needed."""

    image: np.ndarray | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        """What the reference holds here: the image, not the features."""
        return 0 if self.image is None else int(self.image.nbytes)


class _Remote:
    def __init__(self, backend: RayBackend, spec: ModelSpec, handle: Any) -> None:
        self.backend, self.spec, self.handle = backend, spec, handle

    def call(self, method: str, *args: Any, retry: bool = True, route: str | None = None) -> Any:
        """``method(*args)`` on a replica; with ``route`` (an image digest) on the one that holds it."""
        handle = self.handle if route is None else self.handle.options(session_id=route)
        return self.backend.call(self.spec, handle, method, *args, retry=retry)


class RemoteDepth(_Remote):
    """``DepthEstimator`` on the cluster."""

    def estimate(self, image: np.ndarray, timings: Timings) -> Any:
        """Depth for one image (batched with other users' on the replica)."""
        result, stages = self.call("estimate", np.ascontiguousarray(image))
        _merge(timings, stages)
        return result


class RemoteDetector(_Remote):
    """``Detector`` on the cluster."""

    def __init__(self, backend: RayBackend, spec: ModelSpec, handle: Any, info: dict[str, Any]) -> None:
        super().__init__(backend, spec, handle)
        self.open_vocabulary = bool(info.get("open_vocabulary"))
        self.class_names = tuple(info.get("class_names") or ())

    def detect(self, image: np.ndarray, timings: Timings, classes: Sequence[str] | None = None,
               boxes: Sequence[Any] = ()) -> Any:  # fmt: skip
        """Boxes for one image (closed-set: batched with other users' on the replica; SAM 3 with its
        exemplar ``boxes``)."""
        det, stages = self.call("detect", np.ascontiguousarray(image), list(classes) if classes else None,
                                [tuple(b) for b in boxes] or None)  # fmt: skip
        _merge(timings, stages)
        return det


class RemoteSegmenter(_Remote):
    """``Segmenter`` on the cluster: embeddings stay on the replica; a click sends only its prompts."""

    def encode(self, image: np.ndarray, digest: str) -> RemoteImageEmbedding:
        """Encode on the cluster; returns a reference (the image kept for a transparent re-encode)."""
        image = np.ascontiguousarray(image)
        ms, size = self.call("encode", image, digest, route=digest)
        return RemoteImageEmbedding(self.spec.key, digest, [], (int(size[0]), int(size[1])), ms, image=image)

    def _held(self, embedding: ImageEmbedding, method: str, *args: Any) -> Any:
        found = self.call(method, embedding.digest, *args, route=embedding.digest)
        if found is None:  # evicted, or another replica answered: the same call with the image to encode
            image = getattr(embedding, "image", None)
            if image is None:
                raise ModelUnavailable(self.spec.key, "backend", "The image's embedding is gone: upload the image again.")
            self.backend.encoded_again[self.spec.key] += 1
            found = self.call(method, embedding.digest, *args, image, route=embedding.digest)
            if found is None:
                raise ModelUnavailable(self.spec.key, "backend", f"{self.spec.name} on the Ray cluster lost the image.")
        return found

    def decode(self, embedding: ImageEmbedding, points: Sequence[Any], labels: Sequence[int], box: Any,
               multimask: bool = True) -> Any:  # fmt: skip
        """Candidate masks for prompts (the embedding stays where it was made)."""
        return self._held(embedding, "decode", [tuple(p) for p in points], [int(v) for v in labels],
                          None if box is None else tuple(float(v) for v in box), bool(multimask))  # fmt: skip

    def decode_points(self, embedding: ImageEmbedding, points: Sequence[Any]) -> Any:
        """Segment everything's single-point prompts, decoded on the cluster."""
        return self._held(embedding, "decode_points", [tuple(p) for p in points])


def _merge(timings: Timings, stages: dict[str, Any]) -> None:
    """The replica's stage times into this request's timings."""
    for name in ("preprocess", "inference", "postprocess"):
        setattr(timings, f"{name}_ms", getattr(timings, f"{name}_ms") + float(stages.get(f"{name}_ms") or 0.0))


# --- the backend ------------------------------------------------------------------------------


CONNECT_TIMEOUT_S = 3.0


def unreachable(address: str | None) -> str:
    """Why ``address`` (``host:port`` or ``ray://host:port``) does not answer a TCP connect in
    `CONNECT_TIMEOUT_S`, or "" (also for no address and "auto"). Ray itself waits minutes."""
    import socket

    if not address or address == "auto":
        return ""
    target = address.split("://", 1)[-1].rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return "the address is host:port (or ray://host:port, or auto)"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        return f"no answer on port {port} ({exc.strerror or type(exc).__name__})"
    return ""


def _result(response: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
    """A Serve response's value. Ray refuses a blocking wait in a thread that runs an event loop
    (a test driving a browser, an async caller): there the wait happens in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return response.result(timeout_s=timeout_s)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="ray-wait") as pool:
        return pool.submit(response.result, timeout_s=timeout_s).result()


def _replicas(app: Any) -> str:
    """A Serve application's replicas by state: "2 running, 1 starting"."""
    states: Counter[str] = Counter()
    for dep in app.deployments.values():
        for state, n in dep.replica_states.items():
            states[str(state).split(".")[-1].lower()] += n
    return ", ".join(f"{n} {state}" for state, n in states.items()) or "none"


def _short(exc: BaseException, limit: int = 140) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class RayBackend:
    """Segment, Depth and Detect models as Ray Serve deployments (created on first use)."""

    address: str | None = None  # None: a local cluster started by this process
    weights: str = "hub"
    device: str = "cpu"
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    name: str = "ray"
    error: str = ""
    _handles: dict[str, Any] = field(default_factory=dict, repr=False)
    _info: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    encoded_again: Counter[str] = field(default_factory=Counter, repr=False)  # clicks whose embedding was gone
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _key_locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _connected: bool = False
    place_timeout_s: float = PLACE_TIMEOUT_S

    # connecting

    def connect(self) -> bool:
        """Connect to the cluster (or start a local one) and start Serve; ``False`` with `error` set."""
        with self._lock:
            if self._connected:
                return True
            problem = unreachable(self.address)
            if problem:
                self.error = f"Ray cluster {self.address} unreachable: {problem}"
                log.warning("ray backend: %s", self.error)
                return False
            try:
                import ray
                from ray import serve

                if not ray.is_initialized():
                    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                              "ignore_reinit_error": True}  # fmt: skip
                    ray.init(address=self.address, **kwargs) if self.address else ray.init(**kwargs)
                serve.start(http_options={"location": "NoServer"})
            except Exception as exc:  # noqa: BLE001 - any failure to reach the cluster is one message
                self.error = f"Ray cluster {self.address or '(local)'} unreachable: {_short(exc)}"
                log.warning("ray backend: %s", self.error)
                return False
            self._connected, self.error = True, ""
            return True

    def serves(self, spec: ModelSpec, task: Task) -> bool:
        """Segment, Depth and Detect models that load in-process (not API models or engines)."""
        return task in TASKS and task in spec.tasks and not spec.is_api and spec.family != "engine"

    def availability(self, spec: ModelSpec) -> Availability | None:
        """"on Ray Serve" for a model whose every task it serves; "Ray cluster unreachable" (with why)
        when it cannot connect; ``None`` (local rules) for other models."""
        if spec.is_api or not spec.tasks or not all(self.serves(spec, t) for t in spec.tasks):
            return None
        if not self._connected and self.error:
            return Availability(False, "Ray cluster unreachable", self.error, "backend")
        return Availability(True, "on Ray Serve")

    def app_name(self, spec: ModelSpec) -> str:
        """The Serve application of ``spec``'s deployment."""
        return f"{APP_PREFIX}{spec.key}"

    def handle(self, spec: ModelSpec) -> Any:
        """The deployment handle of ``spec`` (deployed and waited for on first use).

        Raises:
            ModelUnavailable: the cluster is unreachable, or the deployment could not be placed.
        """
        if spec.key in self._handles:
            return self._handles[spec.key]
        with self._lock:
            lock = self._key_locks.setdefault(spec.key, threading.Lock())
        with lock:
            if spec.key in self._handles:
                return self._handles[spec.key]
            if not self.connect():
                raise ModelUnavailable(spec.key, "backend", self.error)
            self._handles[spec.key] = self._deploy(spec)
            return self._handles[spec.key]

    def _running(self, spec: ModelSpec) -> Any:
        """The handle of ``spec``'s app when it already runs with this app's weights and device (deployed
        by another front-end replica or an earlier run: its replicas and embeddings are kept), else None."""
        from ray import serve

        name = self.app_name(spec)
        status = serve.status().applications.get(name)
        if not str(getattr(status, "status", "")).endswith("RUNNING"):
            return None
        handle = serve.get_app_handle(name)
        info = _result(handle.info.remote())
        if (info.get("weights"), info.get("device")) != (self.weights, self.device):
            return None  # deployed with other weights: replaced below
        self._info[spec.key] = info
        return handle

    def _deploy(self, spec: ModelSpec) -> Any:
        from ray import serve

        running = self._running(spec)
        if running is not None:
            return running
        name = self.app_name(spec)
        config = config_for(self.overrides, spec, self.device)
        by_image = "segment" in spec.tasks  # a click goes where its image's embedding is
        app = serve_deployment().options(**config.options(name, by_image)).bind(spec.key, self.weights, self.device,
                                                                      config.max_batch_size)  # fmt: skip
        failed: list[BaseException] = []

        def run() -> None:  # serve.run waits for a healthy app, forever if it cannot be placed
            try:
                serve.run(app, name=name, route_prefix=None)
            except Exception as exc:  # noqa: BLE001 - reported by the loop below
                failed.append(exc)

        threading.Thread(target=run, name=f"deploy-{spec.key}", daemon=True).start()
        deadline = time.monotonic() + self.place_timeout_s
        while True:
            status = serve.status().applications.get(name)
            state = str(getattr(status, "status", ""))
            if state.endswith("RUNNING"):
                break
            if failed or state.endswith("DEPLOY_FAILED") or time.monotonic() > deadline:
                message = _short(failed[0] if failed else getattr(status, "message", "") or "not placed in time", 200)
                with contextlib.suppress(Exception):
                    serve.delete(name, _blocking=False)
                reason = ("no GPU or CPU left for it on the cluster" if "resource" in message.lower()
                          or time.monotonic() > deadline else message)  # fmt: skip
                raise ModelUnavailable(spec.key, "backend", f"{spec.name} could not be deployed on the Ray cluster: {reason}.")
            time.sleep(0.25)
        handle = serve.get_app_handle(name)
        self._info[spec.key] = _result(handle.info.remote())
        return handle

    # calling

    def call(self, spec: ModelSpec, handle: Any, method: str, *args: Any, retry: bool = True) -> Any:
        """``handle.method(*args)``; a dead replica is retried once (the calls are idempotent), then
        every cluster failure is one short `ModelUnavailable`; the replica's input errors pass through."""
        import ray.exceptions as rex

        for attempt in (1, 2):
            try:
                return _result(getattr(handle, method).remote(*args))
            except rex.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, (InputError, ModelUnavailable)):
                    raise cause from None
                if isinstance(cause, rex.RayActorError | rex.ActorDiedError) and retry and attempt == 1:
                    continue
                log.warning("ray backend: %s.%s failed: %s", spec.key, method, _short(exc, 400))
                raise ModelUnavailable(spec.key, "backend", f"{spec.name} failed on the Ray cluster; try again.") from None
            except (rex.RayActorError, rex.ActorDiedError, rex.ActorUnavailableError) as exc:
                if retry and attempt == 1:
                    log.info("ray backend: %s replica lost (%s); retrying once", spec.key, type(exc).__name__)
                    continue
                raise ModelUnavailable(spec.key, "backend", f"{spec.name}'s replica on the Ray cluster died; try again.") from None
            except (TimeoutError, rex.GetTimeoutError):
                raise ModelUnavailable(spec.key, "backend", f"{spec.name} on the Ray cluster did not answer in time.") from None
            except rex.RayError as exc:
                raise ModelUnavailable(spec.key, "backend", f"Ray cluster error for {spec.name}: {_short(exc)}") from None
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def model(self, ctx: Any, spec: ModelSpec, task: Task, timings: Timings) -> Iterator[Any]:
        """A proxy for ``spec`` implementing ``task``'s protocol (nothing loads in this process)."""
        started = time.perf_counter()
        handle = self.handle(spec)
        timings.load_ms += (time.perf_counter() - started) * 1000.0  # deploying, the first time only
        timings.model = spec.key
        timings.device = f"ray {self.address or 'local'} ({self.device})"
        timings.weights = self.weights
        if task == "depth":
            yield RemoteDepth(self, spec, handle)
        elif task == "detect":
            yield RemoteDetector(self, spec, handle, self._info.get(spec.key, {}))
        else:
            yield RemoteSegmenter(self, spec, handle)

    # state

    def status_lines(self) -> list[str]:
        """The cluster, the app's front-end replicas when it runs on Serve, and every model deployment
        on the cluster (this process's and other front-ends'): replicas and requests in flight."""
        where = self.address or "local cluster"
        if not self._connected:
            return [f"**Ray Serve** {where}: {self.error or 'not connected yet (connects on first use)'}"]
        try:
            from ray import serve

            apps = serve.status().applications
        except Exception as exc:  # noqa: BLE001 - the panel says the cluster went away
            return [f"**Ray Serve** {where}: unreachable ({_short(exc)})"]
        models = sorted(name.removeprefix(APP_PREFIX) for name in apps if name.startswith(APP_PREFIX))
        lines = [f"**Ray Serve** {where}: {len(models)} model deployment(s)"]
        if FRONTEND_APP in apps:
            lines.append(f"- front-end: {_replicas(apps[FRONTEND_APP])}")
        for key in sorted({*models, *self._handles}):
            app = apps.get(f"{APP_PREFIX}{key}")
            if app is None:
                lines.append(f"- `{key}`: gone (it will be deployed again on next use)")
                continue
            state = str(app.status).split(".")[-1].lower()
            lines.append(f"- `{key}`: {state} · replicas: {_replicas(app)}{self._queue(key, state)}")
        return lines

    def _queue(self, key: str, state: str) -> str:
        """" · N in flight" on the replica that answers a quick ask, or "" when none does in 2 s."""
        if state != "running":
            return ""
        try:
            from ray import serve

            info = _result(serve.get_app_handle(f"{APP_PREFIX}{key}").info.remote(), timeout_s=2.0)
        except Exception:  # noqa: BLE001 - busy or gone: the replica line says enough
            return ""
        return f" · in flight: {info.get('in_flight', 0)} · embeddings: {info.get('embeddings', 0)}"

    def replica_info(self, spec: ModelSpec) -> dict[str, Any]:
        """One replica's counters (tests, benchmarks)."""
        return _result(self.handle(spec).info.remote())

    def forget(self, spec: ModelSpec) -> None:
        """Make a replica drop its embeddings (tests: a click after eviction)."""
        _result(self.handle(spec).forget.remote())

    def shutdown(self) -> None:
        """Delete this app's deployments (the cluster stays)."""
        if not self._connected:
            return
        from ray import serve

        for key in list(self._handles):
            with contextlib.suppress(Exception):
                serve.delete(f"{APP_PREFIX}{key}")
        self._handles.clear()
        self._info.clear()
