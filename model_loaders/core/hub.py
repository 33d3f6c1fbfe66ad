"""Loading from the Hugging Face Hub with pinned revisions, and typed errors when it fails."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.specs import ModelSpec

log = logging.getLogger(__name__)


def hf_token() -> str | None:
    """The Hugging Face token from the environment, if any (never logged or shown)."""
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None


def pretrained_kwargs(spec: ModelSpec) -> dict[str, object]:
    """Keyword arguments for every ``from_pretrained`` call of a Hub checkpoint."""
    kwargs: dict[str, object] = {"revision": spec.revision or "main", "trust_remote_code": False}
    token = hf_token()
    if token:
        kwargs["token"] = token
    return kwargs


@contextlib.contextmanager
def hub_errors(spec: ModelSpec) -> Iterator[None]:
    """Turn Hub download failures into a `ModelUnavailable` that names the model and the fix."""
    try:
        yield
    except ModelUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - classified below, re-raised typed
        kind, message = classify_hub_error(spec, exc)
        if kind is None:
            raise
        log.warning("loading %s failed: %s: %s", spec.key, type(exc).__name__, exc)
        raise ModelUnavailable(spec.key, kind, message) from exc


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes/contexts (transformers wraps Hub errors in OSError)."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 10:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _hub_offline() -> bool:
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def classify_hub_error(spec: ModelSpec, exc: BaseException) -> tuple[str | None, str]:
    """Map an exception raised while fetching ``spec`` to (kind, user message)."""
    chain = _chain(exc)
    names = {cls.__name__ for e in chain for cls in type(e).__mro__}
    text = " ".join(str(e) for e in chain).lower()
    if "GatedRepoError" in names or "gated repo" in text:
        return "gated", f"{spec.name} is gated: accept its terms on {spec.hub_url} and set HF_TOKEN."
    offline_names = {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectError", "ConnectionError"}
    offline_words = ("offline", "couldn't connect", "cannot find the requested files", "connection error")
    if (
        names & offline_names
        or any(w in text for w in offline_words)
        or (isinstance(exc, OSError) and "can't load" in text and _hub_offline())
    ):
        return (
            "offline",
            f"{spec.name} is not in the local Hugging Face cache and the Hub cannot be reached. "
            "Download it once with a network, or run with --weights random|tiny.",
        )
    if names & {"RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError"}:
        return "load_failed", f"{spec.name}: checkpoint {spec.checkpoint}@{spec.revision} was not found on the Hub."
    return None, ""
