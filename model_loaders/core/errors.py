"""Typed errors that the UI turns into short, specific messages."""

from __future__ import annotations

from typing import Literal

UnavailableKind = Literal[
    "unknown_model",
    "coming",
    "offline",
    "gated",
    "missing_extra",
    "missing_key",
    "remote_code",
    "out_of_memory",
    "load_failed",
    "engine",  # a serving engine that is down, slow, or answered with an error
    "backend",  # the Ray Serve cluster: unreachable, no room for a deployment, a replica lost
]


class InputError(ValueError):
    """A user's input cannot be used; the message is safe to show as it is."""


class ModelUnavailable(RuntimeError):
    """A model cannot be loaded or run here; the rest of the app keeps working.

    Attributes:
        key: registry key of the model.
        kind: machine-readable reason (see ``UnavailableKind``).
        message: short text for the user, naming the model and what to do.
    """

    def __init__(self, key: str, kind: UnavailableKind, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.kind = kind
        self.message = message
