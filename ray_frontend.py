"""The app itself on Ray Serve: N front-end replicas behind Serve's HTTP proxy (``--frontend-replicas N``).

Each replica is a whole app process (``app.setup``: Gradio, the tabs and a `RayBackend` client);
the models run in their own deployments (``model_loaders.backends.ray_serve``), shared by every
front-end replica, so adding front-ends does not load a model twice.

Why one browser stays on one replica. Gradio keeps a session in process memory: a call is a POST
to ``queue/join`` whose results come on the session's ``queue/data`` stream, uploads and output
images are files on that replica's disk, and ``gr.State`` (Segment's prompts, kept objects, undo
history) lives there. Serve's proxy spreads requests over replicas; without affinity a call whose
join and stream land on different replicas never gets its result. So:

- every response to a request without it sets a ``vp_session`` cookie: a random routing key, not a
  credential (it grants nothing; Gradio's own session hash still separates users). Browsers send
  it with every request, image GETs included; ``gradio_client`` keeps it from its config request.
- `SessionRouter` (Ray Serve's consistent-hash router, keyed on that cookie or on Ray's own
  ``x-session-id`` header) sends all of one browser's requests to one replica and never falls
  back to another one under load, which would split the session.
- What is expensive to lose is not in the front-end: SAM's embeddings live in the model
  deployments, keyed by image digest, so a session that moves to another front-end replica (its
  replica died, the user reloaded) clicks on the same image without a new encoding.
"""

from __future__ import annotations

import argparse
import http.cookies
import logging
import os
import pickle
import secrets
import time
from typing import Any

from ray.serve.experimental.consistent_hash_router import ConsistentHashRouter

from model_loaders.backends.ray_serve import FRONTEND_APP, frontend_config, load_config, unreachable

log = logging.getLogger(__name__)

COOKIE = "vp_session"
MAX_ONGOING = 1000  # a browser holds a result stream open all session long: not a measure of load


def session_from_headers(headers: Any) -> str | None:
    """The ``vp_session`` cookie among ASGI ``headers`` (a list of byte pairs), if any."""
    for name, value in headers or ():
        if name.lower() != b"cookie":
            continue
        jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        try:
            jar.load(value.decode("latin-1"))
        except http.cookies.CookieError:
            continue
        if COOKIE in jar and jar[COOKIE].value:
            return jar[COOKIE].value
    return None


class SessionRouter(ConsistentHashRouter):
    """Consistent hashing on the session: Ray's ``x-session-id`` header when a client sends one,
    else the ``vp_session`` cookie, else the request id (spread, as Serve does by default).

    Runs in Serve's HTTP proxy. The proxy hands its router the request it pickled itself (a
    ``StreamingHTTPRequest`` holding the ASGI scope); reading the cookie means unpickling that
    object, made in this process from this request. A Ray version that passes something else
    leaves the cookie unread and the session test fails loudly.
    """

    def _routing_key(self, pending_request: Any) -> Any:
        if pending_request is not None and not pending_request.metadata.session_id and pending_request.args:
            request = pending_request.args[0]
            try:
                request = pickle.loads(request) if isinstance(request, bytes) else request  # noqa: S301 - the proxy's own object
                key = session_from_headers(getattr(request, "_asgi_scope", {}).get("headers"))
            except Exception:  # noqa: BLE001 - an unreadable request is routed like one without a session
                key = None
            if key:
                return key
        return super()._routing_key(pending_request)


class SessionCookie:
    """ASGI middleware: a ``vp_session`` cookie for clients without one, and an ``x-vp-frontend``
    header naming the replica that answered (for operators and tests)."""

    def __init__(self, app: Any, replica: str) -> None:
        self.app, self.replica = app, replica.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fresh = session_from_headers(scope.get("headers")) is None

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"x-vp-frontend", self.replica)]
                if fresh:
                    cookie = f"{COOKIE}={secrets.token_urlsafe(12)}; Path=/; SameSite=Lax; HttpOnly"
                    headers.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


def replica_name() -> str:
    """This Serve replica's id (the process id outside Serve)."""
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # noqa: BLE001 - not in a replica
        return f"pid-{os.getpid()}"


def build_asgi(argv: list[str]) -> Any:
    """One front-end replica's ASGI app: ``app.setup`` mounted at ``/`` with the launch options."""
    import inspect

    import gradio as gr
    from fastapi import FastAPI

    import app as vp

    logging.basicConfig(level=logging.INFO, format=vp.LOG_FORMAT)
    args = vp.parse_args(argv)
    ctx, demo = vp.setup(args)
    options = vp.launch_options(args.host, args.port, args.mcp, ctx=ctx, demo=demo)
    demo.state_session_capacity = options.pop("state_session_capacity")
    accepted = inspect.signature(gr.mount_gradio_app).parameters
    dropped = set(options) - set(accepted)
    if dropped - {"share"}:  # a launch option the mount cannot take would silently change the app
        raise RuntimeError(f"mount_gradio_app does not take {sorted(dropped)}")
    server = gr.mount_gradio_app(FastAPI(), demo, path="/", **{k: v for k, v in options.items() if k in accepted})
    return SessionCookie(server, replica_name())


class Frontend:
    """The Serve ingress class: each replica builds the app from the same command line."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = list(argv)

    def __serve_build_asgi_app__(self) -> Any:
        return build_asgi(self.argv)


def frontend_app(argv: list[str], config: Any) -> Any:
    """The bound Serve application: `Frontend` with ``config``'s replicas and CPU share, routed by session."""
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    router = RequestRouterConfig(request_router_class=SessionRouter, request_router_kwargs={"num_fallback_replicas": 0})
    options = {**config.options("frontend"), "max_ongoing_requests": MAX_ONGOING, "request_router_config": router}
    return serve.deployment(serve.ingress()(Frontend)).options(**options).bind(argv)


def serve_forever(args: argparse.Namespace, argv: list[str]) -> None:
    """Start (or join) the cluster, serve the front-end on ``--host``/``--port`` and wait."""
    import ray
    from ray import serve

    try:
        config = frontend_config(load_config(args.ray_config), args.frontend_replicas)
    except ValueError as exc:
        raise SystemExit(f"--ray-config: {exc}") from None
    problem = unreachable(args.ray_address)
    if problem:
        raise SystemExit(f"Ray cluster {args.ray_address} unreachable: {problem}")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    ray.init(address=args.ray_address, **kwargs) if args.ray_address else ray.init(**kwargs)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(frontend_app(argv, config), name=FRONTEND_APP, route_prefix="/")
    log.info("serving on http://%s:%s: %d front-end replica(s) on Ray Serve (weights=%s)", args.host, args.port,
             config.num_replicas, args.weights)  # fmt: skip
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.delete(FRONTEND_APP)
