"""Detect benchmark: raw model forward vs the whole ``detect`` handler, random weights at real size.

For each model, in one run on this machine: the median of the raw forward pass (inputs already
preprocessed; ``model(**inputs)`` or YOLO's ``predict``) and the median of the Detect tab's API
handler on the same image (decode, preprocess, forward, postprocess, filter, annotate), and
their ratio (goal: handler / forward <= 1.10).

    .venv/bin/python benchmarks/detect.py [--models rf-detr-nano,yolov12n] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="vp-yolo-"))

DEFAULT_MODELS = "rf-detr-nano,rf-detr-medium,d-fine-nano,rt-detrv2-r18,owlv2-base,grounding-dino-tiny,yolov12n"
PROMPT = "cat, mug, book"


def _ms(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def main() -> None:
    """Run the benchmark and print one line per model."""
    p = argparse.ArgumentParser()
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    import numpy as np
    import torch

    import app
    from model_loaders.core.errors import ModelUnavailable
    from model_loaders.families.detectors import DetectorBundle, gdino_prompt
    from model_loaders.tasks.base import image_of
    from tabs import detect
    from tabs._examples import example_paths

    ctx = app.make_context("random", args.device)
    handlers = detect.make_handlers(ctx)
    image_path = example_paths()[0]
    image = np.array(image_of(ctx, image_path).array)
    print(f"device={ctx.settings.device} torch_threads={torch.get_num_threads()} image={image.shape[1]}x{image.shape[0]} "
          f"repeats={args.repeats} (medians, ms)")
    print(f"{'model':22} {'params_M':>8} {'forward':>9} {'handler':>9} {'ratio':>6}")
    for key in [k.strip() for k in args.models.split(",") if k.strip()]:
        try:
            with ctx.use(key) as bundle:
                if isinstance(bundle, DetectorBundle):
                    if bundle.arch == "owlv2":
                        batch = bundle.processor(text=[PROMPT.split(", ")], images=image, return_tensors="pt",
                                                 truncation=True, max_length=16, padding="max_length")
                    elif bundle.arch == "grounding_dino":
                        batch = bundle.processor(images=image, text=gdino_prompt(PROMPT.split(", "))[0],
                                                 return_tensors="pt")
                    else:
                        batch = bundle.processor(images=image, return_tensors="pt")
                    inputs = {k: v.to(bundle.device) for k, v in batch.items()}

                    def forward(b=bundle, i=inputs) -> None:
                        with torch.inference_mode():
                            b.model(**i)
                else:  # YOLO: predict includes its own letterbox and NMS
                    bgr = np.ascontiguousarray(image[:, :, ::-1])

                    def forward(b=bundle, x=bgr) -> None:
                        b.model.predict(x, conf=0.001, iou=0.9, max_det=300, imgsz=640, device=b.device, verbose=False)

                params = sum(p.numel() for p in bundle.model.parameters()) / 1e6
                forward()  # warm-up
                fwd = _ms(forward, args.repeats)
        except ModelUnavailable as exc:
            print(f"{key:22} unavailable: {exc}")
            continue
        prompt = PROMPT if key.startswith(("owlv2", "grounding")) else ""
        handlers["api"](image_path, key, 0.25, 0.7, prompt)  # warm-up
        hnd = _ms(lambda k=key, pr=prompt: handlers["api"](image_path, k, 0.25, 0.7, pr), args.repeats)
        f, h = statistics.median(fwd), statistics.median(hnd)
        print(f"{key:22} {params:8.1f} {f:9.1f} {h:9.1f} {h / f:6.2f}")
        ctx.cache.evict_unpinned()  # one model in memory at a time


if __name__ == "__main__":
    main()
