"""Loading from the Hugging Face Hub with pinned revisions, and typed errors when it fails."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from model_loaders.adapters import hf_token
from model_loaders.errors import ModelUnavailable
from model_loaders.specs import ModelSpec

log = logging.getLogger(__name__)


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


def classify_hub_error(spec: ModelSpec, exc: BaseException) -> tuple[str | None, str]:
    """Map an exception raised while fetching ``spec`` to (kind, user message)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = str(exc)
    if "GatedRepoError" in names or "gated" in text.lower():
        return "gated", f"{spec.name} is gated: accept its terms on {spec.hub_url} and set HF_TOKEN."
    if (
        names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"}
        or "offline" in text.lower()
        or "couldn't connect" in text.lower()
        or "cannot find the requested files" in text.lower()
    ):
        return (
            "offline",
            f"{spec.name} is not in the local Hugging Face cache and the Hub cannot be reached. "
            "Download it once with a network, or run with --weights random|tiny.",
        )
    if names & {"RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError"}:
        return "load_failed", f"{spec.name}: checkpoint {spec.checkpoint}@{spec.revision} was not found on the Hub."
    return None, ""
