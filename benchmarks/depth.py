"""Depth tab overhead: raw model forward vs the tab's handler vs a gradio_client call.

Depth Anything V2 Small with random weights at real size, one 518×518 image (so the model
sees exactly 518×518), measured in one run and interleaved (raw, handler, client per round)
so CPU drift hits all three alike:

- raw: ``model(pixel_values)`` only, inputs prepared beforehand;
- handler: `tabs.depth.compute` as the ``depth`` endpoint runs it (decode, preprocess, model,
  upsample, colourised PNG, 16-bit PNG + JSON, .npy, .ply), plus `tabs.depth.render` (slider,
  click map, 3D figure) reported on its own;
- client: ``gradio_client.Client.predict(..., api_name="/depth")`` against the app served in
  this process (upload, queue, handler, file download).

It also prints paired ratios: each handler / client call divided by the model forward timed
inside that same call, which is robust to a CPU shared with other work.

Last, a colormap change on a 3-megapixel photo is timed with Gradio's output encoding included
(what the user waits for), next to the model run it replaces.

Usage: .venv/bin/python benchmarks/depth.py [--rounds 5] [--device cpu] [--model depth-anything-v2-small]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZE = 518


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def main() -> None:
    """Print medians of raw / handler / client ms and the handler/raw and client/raw ratios."""
    import torch
    from gradio_client import Client, handle_file
    from PIL import Image

    import app
    import tabs
    from model_loaders.tasks.base import image_of
    from tabs import depth as D
    from tabs._examples import example_paths

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="depth-anything-v2-small")
    args = p.parse_args()

    ctx = app.make_context("random", args.device)
    tmp = Path(tempfile.mkdtemp(prefix="vp-bench-depth-", dir=ctx.uploads.roots[0]))  # an upload: the gate reads it
    src = tmp / "bench.png"
    Image.open(example_paths()[2]).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC).save(src)
    upload = {"path": str(src), "orig_name": src.name}

    # Serve only the Depth tab, with the app's own queue and launch settings.
    tabs.TABS = ("tabs.depth",)
    demo = app.build_app(ctx)
    with socket.socket() as sock:  # a free port, so a running app on 7860 is not disturbed
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options(port=port, ctx=ctx, demo=demo))
    client = Client(url, verbose=False)
    # Same call without fetching the five result files: separates transfer from server work.
    links_only = Client(url, verbose=False, download_files=False)
    print(
        f"device={ctx.settings.device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"weights=random model={args.model} image={SIZE}x{SIZE}"
    )
    try:
        with ctx.use(args.model) as bundle:
            image = image_of(ctx, upload).array
            pixel_values = bundle.processor(images=image.copy(), return_tensors="pt")["pixel_values"]
            pixel_values = pixel_values.to(bundle.device, bundle.dtype)
            print(f"model input {tuple(pixel_values.shape)}")

            def raw() -> float:
                start = time.perf_counter()
                with torch.inference_mode():
                    bundle.model(pixel_values=pixel_values)
                    if bundle.device.startswith("cuda"):
                        torch.cuda.synchronize()
                return _ms(start)

            def handler() -> tuple[float, float, float]:
                start = time.perf_counter()
                _, stats, _, state = D.compute(ctx, upload, args.model)
                compute_ms = _ms(start)
                start = time.perf_counter()
                D.render(ctx, state, "Spectral_r", False, 60)
                return compute_ms, _ms(start), stats["timings"]["inference_ms"]

            def via_client() -> tuple[float, float]:
                start = time.perf_counter()
                _, stats, _ = client.predict(handle_file(str(src)), args.model, api_name="/depth")
                return _ms(start), stats["timings"]["inference_ms"]

            def via_links() -> float:
                start = time.perf_counter()
                links_only.predict(handle_file(str(src)), args.model, api_name="/depth")
                return _ms(start)

            raw(), handler(), via_client(), via_links()  # warm-up: first-call kernels, server start-up paths
            raws, handlers, renders, clients, links = [], [], [], [], []
            paired_handler, paired_client = [], []  # total / the forward inside that same call
            for _ in range(args.rounds):
                raws.append(raw())
                h, r, forward = handler()
                handlers.append(h)
                renders.append(r)
                paired_handler.append(h / forward)
                c, forward = via_client()
                clients.append(c)
                paired_client.append(c / forward)
                links.append(via_links())
    finally:
        client.close()
        links_only.close()
        demo.close()

    med = statistics.median
    raw_ms, handler_ms, client_ms, render_ms = med(raws), med(handlers), med(clients), med(renders)
    print(f"rounds={args.rounds} (medians)")
    print(f"raw forward ms        {raw_ms:9.1f}   {[round(x) for x in raws]}")
    print(f"handler ms (depth)    {handler_ms:9.1f}   {[round(x) for x in handlers]}")
    print(f"client ms (/depth)    {client_ms:9.1f}   {[round(x) for x in clients]}")
    print(f"client ms, no download{med(links):9.1f}   {[round(x) for x in links]}")
    print(f"re-render ms (views)  {render_ms:9.1f}   (colormap/invert/FOV change, no model call)")
    print(f"handler/raw = {handler_ms / raw_ms:.3f}  (goal <= 1.10; ratio of medians)")
    print(f"client/raw  = {client_ms / raw_ms:.3f}  (goal <= 1.25; ratio of medians)")
    # On a shared CPU the forward time drifts between calls; dividing each call by the forward
    # timed inside that same call removes the drift from the overhead estimate.
    print(f"paired handler/forward = {med(paired_handler):.3f}   paired client/forward = {med(paired_client):.3f}")
    print(f"overhead ms: handler - raw = {handler_ms - raw_ms:.0f}, client - handler = {client_ms - handler_ms:.0f}")
    rerender_large(ctx, args.model, tmp, args.rounds)


def rerender_large(ctx: object, model: str, folder: Path, rounds: int) -> None:
    """A colormap change on a 3-megapixel photo: the tab's re-render plus what Gradio does with
    its outputs (encoding the slider and click-map images), against the model run it replaces."""
    import gradio as gr
    import numpy as np
    from PIL import Image

    from tabs import depth as D
    from tabs._examples import example_paths

    src = folder / "large.jpg"
    Image.open(example_paths()[2]).convert("RGB").resize((2048, 1536), Image.Resampling.BICUBIC).save(src)
    start = time.perf_counter()
    _, _, _, kept = D.compute(ctx, {"path": str(src)}, model)
    run_ms = _ms(start)
    slider, pick = gr.ImageSlider(type="numpy", format="jpeg"), gr.Image(type="numpy", format="jpeg")
    totals = []
    for i in range(rounds):
        start = time.perf_counter()
        out = D.render(ctx, kept, ("inferno", "viridis")[i % 2], bool(i % 2), 60)
        slider.postprocess(out[0])
        pick.postprocess(out[1])
        totals.append(_ms(start))
    shown = np.asarray(out[1]).shape
    print(f"3-megapixel photo (2048x1536, map {kept.depth.shape[1]}x{kept.depth.shape[0]}, shown {shown[1]}x{shown[0]}):")
    print(f"  model run ms {run_ms:9.1f}; colormap change ms (render + output encoding) {statistics.median(totals):9.1f}")
    print(f"  colormap change / model run = {statistics.median(totals) / run_ms:.3f}")


if __name__ == "__main__":
    main()
