"""Gradio's queue protocol spoken by hand: what an attacker sends, not what gradio_client sends.

``call(url, api_name, data)`` joins the queue with a JSON body we build ourselves (any path,
any nesting, no upload) and reads the server-sent events until the event completes.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Outcome:
    """What one hand-made call got back.

    Attributes:
        status: HTTP status of ``/queue/join``.
        success: the event's ``success`` flag (``None`` if it never completed).
        output: the ``output`` of ``process_completed`` (``data`` or ``error``).
        detail: the join's error detail (queue full, validator error), if it failed.
        seconds: wall time from join to completion (or to the join's refusal).
    """

    status: int
    success: bool | None = None
    output: dict[str, Any] = field(default_factory=dict)
    detail: Any = None
    seconds: float = 0.0

    @property
    def error(self) -> str:
        """The error text the user would see ("" when the call succeeded)."""
        if self.detail is not None:
            return str(self.detail)
        return str(self.output.get("error") or "")

    @property
    def data(self) -> list[Any]:
        """The outputs of a successful call."""
        return list(self.output.get("data") or [])


_FN_INDEX: dict[tuple[str, str], int] = {}


def fn_index(url: str, api_name: str) -> int:
    """The ``fn_index`` of the event published as ``api_name`` (read from ``/config``)."""
    key = (url, api_name)
    if key not in _FN_INDEX:
        config = httpx.get(f"{url}/config", timeout=30).json()
        for i, dep in enumerate(config["dependencies"]):
            _FN_INDEX[(url, str(dep.get("api_name")))] = int(dep.get("id", i))
    if key not in _FN_INDEX:
        raise KeyError(f"no event with api_name {api_name!r}")
    return _FN_INDEX[key]


def join(url: str, api_name: str, data: list[Any], session: str | None = None, *, raw_body: bytes | None = None,
         timeout: float = 120.0) -> Outcome:  # fmt: skip
    """Join the queue for ``api_name`` with ``data`` and wait for the result."""
    session = session or uuid.uuid4().hex[:12]
    body = raw_body
    if body is None:
        body = json.dumps(
            {"data": data, "fn_index": fn_index(url, api_name), "session_hash": session, "event_data": None,
             "trigger_id": None}  # fmt: skip
        ).encode()
    start = time.perf_counter()
    with httpx.Client(timeout=timeout) as http:
        resp = http.post(f"{url}/gradio_api/queue/join", content=body, headers={"Content-Type": "application/json"})
        if resp.status_code != 200:
            try:
                detail = resp.json().get("detail")
            except ValueError:
                detail = resp.text[:200]
            return Outcome(resp.status_code, detail=detail, seconds=time.perf_counter() - start)
        event_id = resp.json()["event_id"]
        with http.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") not in (None, event_id):
                    continue
                if msg.get("msg") == "process_completed":
                    return Outcome(200, bool(msg.get("success")), msg.get("output") or {},
                                   seconds=time.perf_counter() - start)  # fmt: skip
                if msg.get("msg") == "close_stream":
                    break
    return Outcome(200, None, seconds=time.perf_counter() - start)


def call(url: str, api_name: str, data: list[Any], **kw: Any) -> Outcome:
    """Alias of `join` for readability in tests."""
    return join(url, api_name, data, **kw)
