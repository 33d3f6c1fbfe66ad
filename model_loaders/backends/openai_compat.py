"""Ask through any OpenAI-compatible server: vLLM, SGLang, Ray Serve LLM, ``transformers serve``,
or a hosted router.

Configured without code (``--vlm-endpoint URL`` / ``VP_VLM_ENDPOINT``, ``VP_VLM_API_KEY``). Each
endpoint's models are discovered from ``GET /v1/models``; a served model whose id is a registry
model's checkpoint (``Qwen/Qwen2.5-VL-72B-Instruct``, or a path ending in it) *is* that model, and
the tabs use it through the task layer like a local one; any other served model is offered as
"unregistered: licence unknown".

What it keeps true:
- images go as JPEG data URLs at the size the model's processor would use (`ChatFamily.remote_view`),
  never the upload itself; boxes in answers are read in that image's coordinate system (Qwen2.5-VL:
  pixels of the sent image; Qwen3-VL: 0–1000) and mapped back to the user's image;
- answers stream (server-sent events); Stop closes the HTTP response, which ends generation on
  the server; time to first token is measured here, token counts come from the server's usage;
- a JSON Schema goes as ``response_format`` (servers that reject it are asked again without it,
  once, and remembered); the app validates the answer against the schema either way;
- the API key is sent only as the ``Authorization`` header: never logged, shown or put in a message;
  failures name the endpoint's host only, and the endpoint is marked unreachable for the status panel.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from model_loaders.core.availability import Availability
from model_loaders.core.errors import InputError, ModelUnavailable
from model_loaders.core.protocols import AskRequest
from model_loaders.core.registry import FAMILIES, REGISTRY
from model_loaders.core.results import ENGINE_WEIGHTS, AskChunk, GenerationStats, TextResult, Timings
from model_loaders.core.specs import ModelSpec, Task
from model_loaders.families.generation import neutralise_user_text
from model_loaders.families.grounding import Grounding

log = logging.getLogger(__name__)

LIST_TTL_S = 30.0  # how long a model list is trusted before asking the endpoint again
LIST_TIMEOUT_S = 5.0
DEFAULT_TIMEOUT_S = 60.0  # longest wait for the next piece of an answer (a big model's first token)
DEFAULT_CONCURRENCY = 4  # Workflow crops sent at once to one engine (it batches them)
JPEG_QUALITY = 90
UNREGISTERED = "unregistered: licence unknown"


def normalise_url(url: str) -> str:
    """``http://host:8000`` or ``http://host:8000/v1/`` -> ``http://host:8000/v1``.

    Raises:
        ValueError: not an http(s) URL.
    """
    url = str(url).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"an endpoint is an http(s) URL, e.g. http://localhost:8000/v1 (got {url[:80]!r})")
    return url if parts.path.endswith("/v1") else url + "/v1"


def host_of(url: str) -> str:
    """What messages name: the endpoint's host and port (never its path, query or any credential)."""
    parts = urlsplit(url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "the endpoint"


def matches(served_id: str, spec: ModelSpec) -> bool:
    """True when a served model id is ``spec``: its checkpoint (a path may end in it) or its key."""
    sid = served_id.strip().rstrip("/").lower()
    names = {spec.key.lower()} | ({spec.checkpoint.lower()} if spec.checkpoint else set())
    return sid in names or any("/" in n and sid.endswith("/" + n) for n in names)


def chat_family(spec: ModelSpec) -> Any:
    """The `ChatFamily` of a registry VLM (what its images and boxes look like), or ``None``."""
    family = FAMILIES.get(spec.family)
    if family is None or family.module is None:
        return None
    return getattr(importlib.import_module(family.module), "chat_family", lambda s: None)(spec)


def servable(spec: ModelSpec) -> bool:
    """Registry models an engine can serve here: chat VLMs that answer questions."""
    if "ask" not in spec.tasks or not spec.accepts("question"):
        return False
    family = chat_family(spec)
    return family is not None and family.remote


def unregistered_spec(served_id: str, host: str) -> ModelSpec:
    """A spec for a model an endpoint serves that the registry does not know (licence unknown)."""
    short = served_id.rstrip("/").rsplit("/", 1)[-1] or served_id
    return ModelSpec(
        key=f"engine:{served_id}", name=f"{short} ({host})", family="engine", tasks=("ask",), checkpoint=served_id,
        revision=None, params_m=None, licence=UNREGISTERED, licence_url="", commercial="conditions",
        commercial_note="not in this app's registry: check the model's own licence before relying on it",
        paper="", prompts=("question",), notes=f"Served by {host}; not in this app's registry.",
    )  # fmt: skip


def data_url(image: Any) -> str:
    """A PIL image as a JPEG ``data:`` URL."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_turns(history: Sequence[dict[str, Any]], question: str, image_url: str) -> list[dict[str, Any]]:
    """OpenAI chat messages: the image in the first user turn, every text neutralised (as locally)."""
    from model_loaders.families.chat_vlm import chat_messages

    messages = chat_messages(history, question)
    for message in messages:
        message["content"] = [
            {"type": "image_url", "image_url": {"url": image_url}} if part.get("type") == "image" else part
            for part in message["content"]
        ]
    return messages


class Endpoint:
    """One OpenAI-compatible server: its client, the models it serves, and whether it answers."""

    def __init__(self, url: str, api_key: str = "", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = normalise_url(url)
        self.host = host_of(self.url)
        self.timeout_s = float(timeout_s)
        self._api_key = api_key  # never logged or shown; only the Authorization header carries it
        self._client: Any = None
        self._lock = threading.Lock()
        self.models: list[str] = []  # the last list it gave (kept while it is unreachable)
        self.checked_at: float | None = None
        self.error = ""  # why it is unreachable ("" when it answered last time)
        self.last_failure: tuple[float, str] | None = None  # a request it answered with an error
        self.json_schema = True  # False once the server refused response_format

    def __repr__(self) -> str:
        return f"Endpoint({self.url!r})"

    @property
    def client(self) -> Any:
        """The OpenAI client for this endpoint (no retries: a demo says what failed at once)."""
        if self._client is None:
            import httpx
            import openai

            self._client = openai.OpenAI(base_url=self.url, api_key=self._api_key or "EMPTY", max_retries=0,
                                         timeout=httpx.Timeout(self.timeout_s, connect=5.0))  # fmt: skip
        return self._client

    @property
    def reachable(self) -> bool:
        """It answered the last time it was asked."""
        return self.checked_at is not None and not self.error

    def refresh(self, max_age_s: float = LIST_TTL_S) -> None:
        """Ask the endpoint for its models unless it was asked less than ``max_age_s`` ago."""
        with self._lock:
            if self.checked_at is not None and time.time() - self.checked_at < max_age_s:
                return
            try:
                page = self.client.with_options(timeout=LIST_TIMEOUT_S).models.list()
                self.models = [str(m.id) for m in page]
                self.error = ""
            except Exception as exc:  # noqa: BLE001 - any failure means "unreachable" to the user
                self.error = failure(exc, self.host, self.timeout_s)
                log.warning("engine %s: %s", self.host, self.error)
            self.checked_at = time.time()

    def failed(self, exc: BaseException, message: str) -> None:
        """Record a failed request: a lost connection or a timeout makes the endpoint unreachable;
        a model it no longer serves makes it list its models again; any other error is noted."""
        import httpx
        import openai

        if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
            self.error, self.checked_at = message, time.time()
        elif isinstance(exc, openai.NotFoundError):
            self.checked_at = None
        self.last_failure = (time.time(), message)

    def status(self) -> str:
        """One line for the status panel."""
        when = time.strftime("%H:%M:%S", time.localtime(self.checked_at)) if self.checked_at else "never"
        if self.checked_at is None:
            return f"{self.host}: not asked yet"
        if self.error:
            return f"{self.host}: **unreachable** (checked {when}): {self.error}"
        line = f"{self.host}: {len(self.models)} model(s), checked {when}"
        if self.last_failure is not None:
            at = time.strftime("%H:%M:%S", time.localtime(self.last_failure[0]))
            line += f"; last failed request at {at}: {self.last_failure[1]}"
        return line


def failure(exc: BaseException, host: str, timeout_s: float, served_id: str = "") -> str:
    """A short message for a failed request: what happened, naming the host (never the key)."""
    import httpx
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return f"{host} did not answer within {timeout_s:.0f} s."
    if isinstance(exc, openai.APIConnectionError):
        return f"{host} is not answering (is the server running?)."
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return f"{host} refused the API key (HTTP {exc.status_code}); check VP_VLM_API_KEY."
    if isinstance(exc, openai.NotFoundError):
        return f"{host} does not serve {served_id or 'this model'} (HTTP 404)."
    if isinstance(exc, openai.APIStatusError):
        return f"{host} answered HTTP {exc.status_code}: {_short(exc.message)}"
    if isinstance(exc, openai.APIError):
        return f"{host} reported an error: {_short(exc.message)}"
    if isinstance(exc, httpx.TransportError):
        return f"{host} dropped the connection (did the server stop?)."
    return f"{host} sent a reply this app cannot read ({type(exc).__name__})."


def _short(text: Any, limit: int = 160) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class RemoteVLM:
    """A model served by an engine; implements ``Asker`` (and ``Detector`` when it writes boxes)."""

    endpoint: Endpoint
    served_id: str
    spec: ModelSpec
    family: Any = None  # the ChatFamily (None for unregistered models: default image, no boxes)

    def _view(self, image: Any) -> tuple[Any, tuple[int, int]]:
        from model_loaders.families.chat_vlm import capped_view

        return (self.family.remote_view if self.family is not None else capped_view)(image)

    def _open(self, body: dict[str, Any]) -> Any:
        """Start the streamed request (once more without ``response_format`` if the server refuses it)."""
        import openai

        try:
            return self.endpoint.client.chat.completions.create(**body)
        except openai.BadRequestError as exc:
            if "response_format" not in body or "response_format" not in str(exc.message):
                raise
            self.endpoint.json_schema = False
            log.info("engine %s does not take response_format; the schema goes in the prompt only", self.endpoint.host)
            return self.endpoint.client.chat.completions.create(**{k: v for k, v in body.items() if k != "response_format"})

    def ask(self, image: Any, request: AskRequest, timings: Timings, stop: threading.Event | None = None) -> Iterator[AskChunk]:
        """Stream an answer about a PIL image from the engine (``Asker``)."""
        question = neutralise_user_text(request.question or "").strip()
        if not question:
            raise InputError("Type a question about the image.")
        image_wh = (int(image.size[0]), int(image.size[1]))
        with timings.stage("preprocess"):
            sent, input_wh = self._view(image)
            body: dict[str, Any] = {
                "model": self.served_id, "messages": chat_turns(request.history, question, data_url(sent)),
                "stream": True, "max_tokens": int(request.max_new_tokens), "temperature": float(request.temperature),
                "stream_options": {"include_usage": True},
            }  # fmt: skip
            if request.json_schema is not None and self.endpoint.json_schema:
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": "answer", "schema": request.json_schema}}  # fmt: skip
        stats = GenerationStats()
        sofar, usage, finish = "", None, ""
        start = time.perf_counter()
        stream = None
        try:
            stream = self._open(body)
            for chunk in stream:
                if stop is not None and stop.is_set():
                    stats.stopped = "user"
                    break
                if time.perf_counter() - start > request.max_time:
                    stats.stopped = "max_time"
                    break
                usage = getattr(chunk, "usage", None) or usage
                for choice in chunk.choices or ():
                    piece = getattr(choice.delta, "content", None) if choice.delta is not None else None
                    finish = choice.finish_reason or finish
                    if piece:
                        if stats.first_token_ms is None:
                            stats.first_token_ms = (time.perf_counter() - start) * 1000.0
                        sofar += piece
                        stats.tokens += 1  # pieces until the server's count arrives
                        yield AskChunk(sofar, stats=stats, input_wh=image_wh)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes one short message naming the host
            message = failure(exc, self.endpoint.host, self.endpoint.timeout_s, self.served_id)
            if sofar:
                message = f"{self.endpoint.host} stopped mid-answer: {message}"
            self.endpoint.failed(exc, message)
            raise ModelUnavailable(self.spec.key, "engine", message) from None
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()  # the server sees the client go and stops generating
        stats.total_ms = (time.perf_counter() - start) * 1000.0
        if usage is not None and getattr(usage, "completion_tokens", None):
            stats.tokens = int(usage.completion_tokens)
        if not stats.stopped:
            stats.stopped = {"length": "max_new_tokens"}.get(finish, "eos")
        timings.inference_ms += stats.total_ms
        with timings.stage("postprocess"):
            parse = getattr(self.family, "parse", None)
            grounding = parse(sofar, input_wh, image_wh) if parse else Grounding()
        result = TextResult(text=sofar.strip(), raw=sofar, detections=grounding.detections,
                            parse_error=grounding.error, tokens=stats.tokens, timings=timings)  # fmt: skip
        if result.detections is not None:
            result.detections.metadata.update(model=self.spec.key, timings=timings.as_dict())
        yield AskChunk(result.text, result=result, stats=stats, input_wh=image_wh)

    def detect(self, image: Any, timings: Timings, classes: Sequence[str] | None = None) -> Any:
        """Boxes for ``classes`` written by the model (``Detector``; no scores)."""
        from PIL import Image

        from model_loaders.families.chat_vlm import final_result, grounded_detections

        question = getattr(self.family, "grounding_question", None)
        if question is None:
            raise InputError(f"{self.spec.name} does not write boxes.")
        result = final_result(self.ask(Image.fromarray(image), AskRequest(question=question(list(classes or []))), timings))
        return grounded_detections(result, self.spec)


@dataclass
class EngineBackend:
    """The ``ask`` task (and ``detect`` for VLMs that write boxes) on OpenAI-compatible servers."""

    endpoints: list[Endpoint]
    concurrency: int = DEFAULT_CONCURRENCY
    name: str = "engine"
    _unregistered: dict[str, ModelSpec] = field(default_factory=dict, repr=False)

    def _served(self, spec: ModelSpec) -> tuple[Endpoint, str] | None:
        """The endpoint and served id of ``spec`` (reachable endpoints first), or ``None``."""
        if spec.family == "engine":
            for ep in self.endpoints:
                if spec.checkpoint in ep.models:
                    return ep, str(spec.checkpoint)
            return None
        if not servable(spec):
            return None
        found = None
        for ep in self.endpoints:
            ep.refresh()
            served = next((m for m in ep.models if matches(m, spec)), None)
            if served is not None and (found is None or ep.reachable):
                found = (ep, served)
                if ep.reachable:
                    break
        return found

    def serves(self, spec: ModelSpec, task: Task) -> bool:
        """True when an endpoint serves ``spec`` for ``task`` (answers; boxes for grounding VLMs)."""
        if task not in ("ask", "detect") or (task == "detect" and spec.grounding is None):
            return False
        return self._served(spec) is not None

    @contextlib.contextmanager
    def model(self, ctx: Any, spec: ModelSpec, task: Task, timings: Timings) -> Iterator[RemoteVLM]:
        """A `RemoteVLM` for ``spec`` (nothing is loaded here)."""
        served = self._served(spec)
        if served is None:
            raise ModelUnavailable(spec.key, "engine", f"No configured endpoint serves {spec.name}.")
        ep, served_id = served
        if not ep.reachable:
            ep.refresh(max_age_s=0.0)
            if not ep.reachable:
                raise ModelUnavailable(spec.key, "engine", ep.error)
        timings.model = spec.key
        timings.device = f"engine {ep.host}"
        timings.weights = ENGINE_WEIGHTS
        yield RemoteVLM(ep, served_id, spec, chat_family(spec) if spec.family != "engine" else None)

    def availability(self, spec: ModelSpec) -> Availability | None:
        """``served by <host>`` for a model an endpoint serves; why not for one whose endpoint is
        down; ``None`` (local rules apply) for the rest."""
        served = self._served(spec)
        if served is None:
            return None
        ep, _ = served
        if ep.reachable:
            return Availability(True, f"served by {ep.host}")
        return Availability(False, f"{ep.host} unreachable", ep.error, "engine")

    def extra_specs(self) -> list[ModelSpec]:
        """Models the endpoints serve that the registry does not know."""
        specs = []
        for ep in self.endpoints:
            ep.refresh()
            for served_id in ep.models:
                if any(matches(served_id, s) for s in REGISTRY.values()):
                    continue
                spec = self._unregistered.get(f"{ep.host}|{served_id}")
                if spec is None:
                    spec = self._unregistered.setdefault(f"{ep.host}|{served_id}", unregistered_spec(served_id, ep.host))
                specs.append(spec)
        return specs

    def status_lines(self) -> list[str]:
        """One line per endpoint for the status panel."""
        return [f"**Serving engine** {ep.status()}" for ep in self.endpoints]


def backend_from_settings(urls: Sequence[str], api_key: str = "", timeout_s: float = DEFAULT_TIMEOUT_S,
                          concurrency: int = DEFAULT_CONCURRENCY) -> EngineBackend | None:  # fmt: skip
    """The backend for the configured endpoint URLs (``None`` when there are none).

    Raises:
        ValueError: a URL that is not http(s).
    """
    endpoints = [Endpoint(u, api_key, timeout_s) for u in urls if str(u).strip()]
    return EngineBackend(endpoints, max(1, int(concurrency))) if endpoints else None
