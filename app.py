"""Vision Playground: command line and settings -> ``build_app(ctx)`` -> safe launch.

Nothing heavy happens at import: models load on first use (or with ``--preload``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import logging
import os
import sys
from pathlib import Path
from typing import Any

from model_loaders.core.uploads import MAX_UPLOAD_MB
from model_loaders.core.video import MAX_VIDEO_MB

try:  # ZeroGPU needs `spaces` imported before anything initialises CUDA; absent elsewhere.
    import spaces  # type: ignore[import-not-found]  # noqa: F401
except ImportError:
    spaces = None

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
log = logging.getLogger("vision_playground")

WEIGHTS = ("hub", "random", "tiny")
DEVICES = ("auto", "cpu", "cuda", "mps")
QUEUE_SIZE = 16
ZERO_GPU_BUDGET = 44 * 2**30  # a ZeroGPU "large" slice has 48 GB; the rest is working room
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
OUTPUTS_FOLDER = "vision-playground-outputs"  # inside Gradio's upload folder: files are served, not copied


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; each has an environment variable for Spaces."""
    p = argparse.ArgumentParser(prog="app.py", description="Vision Playground: try vision models on your image.")
    p.add_argument(
        "--weights",
        choices=WEIGHTS,
        default=os.environ.get("VP_WEIGHTS", "hub"),
        help="hub: real checkpoints (default); random: real size, random weights, offline; "
        "tiny: shrunken random models, offline (env VP_WEIGHTS)",
    )
    p.add_argument("--device", choices=DEVICES, default=os.environ.get("VP_DEVICE", "auto"), help="(env VP_DEVICE)")
    p.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="interface to listen on (env GRADIO_SERVER_NAME; Spaces sets 0.0.0.0)",
    )
    p.add_argument(
        "--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), help="(env GRADIO_SERVER_PORT)"
    )
    p.add_argument(
        "--preload",
        default=os.environ.get("VP_PRELOAD", ""),
        help="comma-separated model keys to load before serving; on a ZeroGPU Space the model each tab "
        "opens with, unless this is set (env VP_PRELOAD)",
    )
    p.add_argument(
        "--mcp",
        action="store_true",
        default=_env_flag("VP_MCP"),
        help="also serve every tab as an MCP tool (needs the mcp extra; env VP_MCP=1)",
    )
    p.add_argument(
        "--queue-size", type=int, default=int(os.environ.get("VP_QUEUE_SIZE", QUEUE_SIZE)), help="(env VP_QUEUE_SIZE)"
    )
    p.add_argument(
        "--memory-budget-gb",
        type=float,
        default=float(os.environ.get("VP_MEMORY_BUDGET_GB", "0")) or None,
        help="most memory models may take (GPU memory on CUDA, else RAM); default 90%% of GPU memory or "
        "60%% of RAM; never more than is free when a model loads (env VP_MEMORY_BUDGET_GB)",
    )
    p.add_argument(
        "--vlm-endpoint",
        action="append",
        default=[u for u in os.environ.get("VP_VLM_ENDPOINT", "").split(",") if u.strip()],
        metavar="URL",
        help="an OpenAI-compatible server (vLLM, SGLang, Ray Serve LLM, transformers serve) whose models answer "
        "in Ask, Compare and Workflow; repeat for several; its key comes from VP_VLM_API_KEY only "
        "(env VP_VLM_ENDPOINT, comma-separated)",
    )
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default=os.environ.get("VP_BACKEND", "local"),
        help="where Segment, Depth and Detect models run: in this process, or as Ray Serve deployments "
        "(one per model, batched; needs the ray extra) (env VP_BACKEND)",
    )
    p.add_argument(
        "--ray-address",
        default=os.environ.get("VP_RAY_ADDRESS") or None,
        help="the Ray cluster to use with --backend ray (e.g. ray://head:10001 or auto); default: start a "
        "local one (env VP_RAY_ADDRESS)",
    )
    p.add_argument(
        "--ray-config",
        default=os.environ.get("VP_RAY_CONFIG") or None,
        metavar="YAML",
        help="per-model replicas, autoscaling, GPU and CPU share and batch size for --backend ray (README: "
        "Ray Serve) (env VP_RAY_CONFIG)",
    )
    p.add_argument(
        "--frontend-replicas",
        type=int,
        default=int(os.environ.get("VP_FRONTEND_REPLICAS", "0")),
        metavar="N",
        help="serve the app itself as a Ray Serve ingress with N replicas behind Serve's HTTP proxy on "
        "--host/--port, each browser kept on one replica (needs --backend ray; 0 = one process, the "
        "default) (env VP_FRONTEND_REPLICAS)",
    )
    p.add_argument(
        "--vlm-timeout",
        type=float,
        default=float(os.environ.get("VP_VLM_TIMEOUT", "60")),
        help="seconds to wait for an endpoint's next piece of an answer (env VP_VLM_TIMEOUT)",
    )
    p.add_argument(
        "--vlm-concurrency",
        type=int,
        default=int(os.environ.get("VP_VLM_CONCURRENCY", "4")),
        help="Workflow crops sent to one endpoint at once (env VP_VLM_CONCURRENCY)",
    )
    p.add_argument(
        "--long-jobs",
        type=int,
        default=int(os.environ.get("VP_LONG_JOBS", "1")),
        help="long jobs (chat streams, comparisons, workflows) run at once; quick clicks never wait behind "
        "them. Raise only on a GPU with memory to spare (env VP_LONG_JOBS)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=int(os.environ["VP_BATCH_SIZE"]) if os.environ.get("VP_BATCH_SIZE") else None,
        help="Depth and Detect API calls arriving together share one forward pass, up to this many "
        "(default 8 on a CUDA GPU, 1 = off elsewhere and on ZeroGPU) (env VP_BATCH_SIZE)",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        default=_env_flag("VP_DEMO"),
        help="presenter mode: larger type, no developer details, each tab opens on an example already "
        "run (computed at start-up) (env VP_DEMO=1)",
    )
    p.add_argument(
        "--temp-cap-mb",
        type=int,
        default=int(os.environ.get("VP_TEMP_CAP_MB", "2048")),
        help="most disk space request output files may take; oldest go first (env VP_TEMP_CAP_MB)",
    )
    return p.parse_args(argv)


def private_temp_folders() -> Path:
    """Make this process's files private and return Gradio's upload folder.

    Uploads and outputs are other people's photos: files and folders this process creates are
    readable by its own user only (umask 077), and Gradio's upload folder is made ``0700``.
    """
    from gradio.utils import get_upload_folder

    os.umask(0o077)
    folder = Path(get_upload_folder())
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if folder.stat().st_uid == os.getuid():
            folder.chmod(0o700)
    except OSError:
        log.warning("could not make %s private", folder)
    return folder


def make_context(
    weights: str,
    device: str,
    budget_bytes: int | None = None,
    temp_cap_mb: int | None = None,
    available: Any = None,
    backends: Any = (),
) -> Any:
    """Create the shared `AppContext` (resolves ``auto`` devices; loads nothing).

    Files a request names are accepted from Gradio's upload folder and the shipped examples
    only; the app's own outputs go to a capped folder inside the upload folder (served without
    a copy) that the upload gate refuses as input. ``budget_bytes`` caps what models may take
    (default: a share of the device's memory); ``available`` replaces the free-memory probe (tests);
    ``backends`` run models elsewhere (serving engines) and are asked first.
    """
    from model_loaders.core.context import AppContext
    from model_loaders.core.device import resolve_device
    from model_loaders.core.gpu_time import on_zero_gpu
    from model_loaders.core.outputs import DEFAULT_CAP_MB, OutputSpace
    from model_loaders.core.uploads import UploadGate

    upload_folder = private_temp_folders()
    outputs = OutputSpace(upload_folder / OUTPUTS_FOLDER, cap_bytes=(temp_cap_mb or DEFAULT_CAP_MB) * 2**20)
    uploads = UploadGate.for_folders([upload_folder, ASSETS], excluded=[outputs.root])
    if on_zero_gpu() and available is None:
        # Outside a GPU call ZeroGPU only emulates CUDA: its free memory cannot be read. Models
        # are held for a "large" slice (48 GB) and share it.
        budget_bytes = budget_bytes or ZERO_GPU_BUDGET
        available = lambda: budget_bytes  # noqa: E731
    ctx = AppContext.create(
        weights,  # type: ignore[arg-type]
        resolve_device(device),
        budget_bytes=budget_bytes,
        uploads=uploads,
        outputs=outputs,
        available=available,
    )
    ctx.backends.extend(b for b in backends if b is not None)
    return ctx


def build_app(ctx: Any) -> Any:
    """Build the Blocks from the ordered tab list in ``tabs.TABS``."""
    import gradio as gr

    import tabs

    with gr.Blocks(title="Vision Playground", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(
            "# Vision Playground\nTry today's best pre-trained vision models on your own image: "
            "segment, depth, detect, ask, compare. Every tab is also an API endpoint.",
            elem_classes=["intro"],
        )
        if ctx.weights_warning:
            gr.Markdown(f"**Running with {ctx.weights_warning}.**", elem_id="weights-warning")
        for module_name in tabs.TABS:
            module = importlib.import_module(module_name)
            with gr.Tab(module.TITLE, id=module_name.rsplit(".", 1)[-1]) as tab:
                # A tab whose build takes ``tab`` refreshes something when it is opened.
                if "tab" in inspect.signature(module.build).parameters:
                    module.build(ctx, tab=tab)
                else:
                    module.build(ctx)
    demo.queue(api_open=False, max_size=ctx.options.get("queue_size", QUEUE_SIZE), default_concurrency_limit=1)
    return demo


def health_routes(ctx: Any, demo: Any) -> list[Any]:
    """``GET /health``: a JSON status that monitoring can poll without going through the queue.

    It runs on the server's event loop and only reads counters (no model, no lock held for
    long), so it answers while every model lane is busy.
    """
    from fastapi.routing import APIRoute

    async def health() -> dict[str, Any]:
        queue = getattr(demo, "_queue", None)
        loaded = ctx.cache.snapshot()
        return {
            "status": "ok",
            "device": ctx.settings.device,
            "weights": ctx.settings.weights,
            "models": [{"key": str(i.key), "mb": round(i.nbytes / 2**20), "in_use": i.pinned} for i in loaded],
            "memory_mb": {
                "budget": round(ctx.cache.budget_bytes / 2**20),
                "room_now": round(ctx.cache.room_bytes() / 2**20),
                "models": round(ctx.cache.used_bytes() / 2**20),
            },
            "batching": {"max_batch": ctx.batchers.max_batch, **ctx.batchers.snapshot()},
            "queue": {
                "waiting": len(queue) if queue is not None else None,
                "running": queue.get_active_worker_count() if queue is not None else None,
                "max": getattr(queue, "max_size", None),
            },
        }

    return [APIRoute("/health", health, methods=["GET"], include_in_schema=False)]


def launch_options(
    host: str = "127.0.0.1", port: int | None = None, mcp: bool = False, ctx: Any = None, demo: Any = None
) -> dict[str, Any]:
    """The safe launch configuration (reference/reliability.md §5), with ``/health`` when given the app
    and the presenter style in presenter mode."""
    import gradio as gr

    presenter = bool(ctx is not None and ctx.options.get("demo"))
    return {
        "app_kwargs": {"routes": health_routes(ctx, demo)} if ctx is not None and demo is not None else {},
        "server_name": host,
        "server_port": port,
        "share": False,
        "show_error": False,  # only gr.Error texts reach users; tracebacks stay in the log
        # The upload route takes a video; an image over MAX_UPLOAD_MB is refused when it is used.
        "max_file_size": f"{max(MAX_UPLOAD_MB, MAX_VIDEO_MB)}mb",
        "allowed_paths": [str(ASSETS)],
        "blocked_paths": [str(ROOT / ".env")],
        "enable_monitoring": False,
        "ssr_mode": False,
        "mcp_server": mcp,
        "state_session_capacity": 2000,
        "footer_links": ["api", "gradio"],
        "theme": gr.themes.Soft(),
        "css_paths": [str(ROOT / "tabs" / "style.css")] + ([str(ROOT / "tabs" / "presenter.css")] if presenter else []),
    }


def preload(ctx: Any, keys: str) -> None:
    """Load the given models before serving; a model that cannot load is logged, not fatal.

    On a ZeroGPU Space this runs at start-up, outside any GPU call: models placed on ``cuda`` now
    are packed by ZeroGPU and reach each GPU call ready. ``ctx.options["preloaded"]`` lists them.
    """
    from model_loaders.core.errors import ModelUnavailable

    loaded = set(ctx.options.get("preloaded", ()))
    for key in filter(None, (k.strip() for k in keys.split(","))):
        try:
            with ctx.use(key):
                log.info("preloaded %s", key)
            loaded.add(key)
        except ModelUnavailable as exc:
            log.warning("could not preload %s: %s", key, exc)
    ctx.options["preloaded"] = frozenset(loaded)


DEFAULT_GPU_BATCH = 8


def batch_size(requested: int | None, device: str) -> int:
    """How many Depth/Detect calls may share a forward pass: as asked, else 8 on a CUDA GPU and 1
    (no batching) on a CPU, where a pass on 8 images takes 8 times as long anyway. On ZeroGPU
    each call runs in its own GPU worker: nothing to share a pass with."""
    from model_loaders.core.gpu_time import on_zero_gpu

    if on_zero_gpu():
        return 1
    if requested is not None:
        return max(1, requested)
    return DEFAULT_GPU_BATCH if device == "cuda" else 1


def preload_keys(requested: str) -> str:
    """The models to preload: those asked for, else on a ZeroGPU Space the registry's set."""
    from model_loaders.core.gpu_time import on_zero_gpu
    from model_loaders.core.registry import ZEROGPU_PRELOAD

    if requested.strip() or not on_zero_gpu():
        return requested
    return ",".join(ZEROGPU_PRELOAD)


def ray_backend(args: argparse.Namespace) -> Any:
    """The Ray Serve backend for ``--backend ray`` (connected now: an unreachable cluster is logged
    and shown in the Models tab, and each request says so), else ``None``."""
    if args.backend != "ray":
        return None
    if importlib.util.find_spec("ray") is None:
        raise SystemExit("--backend ray needs the ray extra: pip install 'vision-playground[ray]'")
    from model_loaders.backends.ray_serve import RayBackend, load_config
    from model_loaders.core.device import resolve_device

    try:
        overrides = load_config(args.ray_config)
    except ValueError as exc:
        raise SystemExit(f"--ray-config: {exc}") from None
    cluster = RayBackend(args.ray_address, args.weights, resolve_device(args.device), overrides)
    cluster.connect()
    return cluster


def setup(args: argparse.Namespace) -> tuple[Any, Any]:
    """The context and the built app for ``args``: everything serving needs but the server itself
    (``main`` launches it; each Ray Serve front-end replica mounts it, see ``ray_frontend``)."""
    from model_loaders.core.batching import Batchers
    from model_loaders.core.gpu_time import on_zero_gpu

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    if args.mcp and importlib.util.find_spec("mcp") is None:
        raise SystemExit("--mcp needs the mcp extra: pip install 'vision-playground[mcp]'")
    if args.vlm_endpoint and importlib.util.find_spec("openai") is None:
        raise SystemExit("--vlm-endpoint needs the engines extra: pip install 'vision-playground[engines]'")
    budget = int(args.memory_budget_gb * 2**30) if args.memory_budget_gb else None

    engines = None
    if args.vlm_endpoint:
        from model_loaders.backends.openai_compat import backend_from_settings

        try:
            engines = backend_from_settings(args.vlm_endpoint, os.environ.get("VP_VLM_API_KEY", ""),
                                            args.vlm_timeout, args.vlm_concurrency)  # fmt: skip
        except ValueError as exc:
            raise SystemExit(f"--vlm-endpoint: {exc}") from None
    cluster = ray_backend(args)
    ctx = make_context(args.weights, args.device, budget_bytes=budget, temp_cap_mb=args.temp_cap_mb,
                       backends=[engines, cluster])  # fmt: skip
    ctx.options.update(queue_size=args.queue_size, long_jobs=args.long_jobs, demo=args.demo)
    ctx.options["on_demand_note"] = on_zero_gpu()
    ctx.batchers = Batchers(batch_size(args.batch_size, ctx.settings.device))
    preload(ctx, preload_keys(args.preload))
    demo = build_app(ctx)
    if args.demo:
        from tabs._presenter import warm

        warm(ctx)  # every tab's example is run before the first visitor arrives
    return ctx, demo


def main(argv: list[str] | None = None) -> None:
    """Parse options, build the app and serve it (or have Ray Serve serve its replicas)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    args = parse_args(argv)
    if args.frontend_replicas:
        if args.backend != "ray":
            raise SystemExit("--frontend-replicas needs --backend ray: the front-end replicas share the models on Ray Serve")
        if importlib.util.find_spec("ray") is None:
            raise SystemExit("--frontend-replicas needs the ray extra: pip install 'vision-playground[ray]'")
        import ray_frontend

        ray_frontend.serve_forever(args, sys.argv[1:] if argv is None else argv)
        return
    ctx, demo = setup(args)
    log.info("serving on http://%s:%s (weights=%s, device=%s)", args.host, args.port, args.weights, ctx.settings.device)
    demo.launch(**launch_options(args.host, args.port, args.mcp, ctx=ctx, demo=demo))


if __name__ == "__main__":
    main()
