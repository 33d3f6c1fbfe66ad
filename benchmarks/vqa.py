"""Florence-2 base with random (real-size) weights on this CPU: time to first token, tokens/s,
and the preprocessing share of the total for a 12-megapixel upload, with and without the
working-size cap.

Run: .venv/bin/python benchmarks/vqa.py  (offline; builds the model from its config)
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

RUNS = 3
NEW_TOKENS = 32


def twelve_mp_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    # Smooth gradients plus noise: compresses like a photo, decodes like one.
    y, x = np.mgrid[0:3000, 0:4000]
    img = np.stack([(x / 16) % 256, (y / 12) % 256, ((x + y) / 28) % 256], -1)
    img = (img + rng.integers(0, 24, img.shape)).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    import torch

    from model_loaders.core.availability import LoadSettings
    from model_loaders.core.images import decode_image
    from model_loaders.core.registry import get_spec
    from model_loaders.core.results import Timings
    from model_loaders.families import florence2

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    bundle = florence2.load(get_spec("florence-2-base"), LoadSettings("random", "cpu"))
    params = sum(p.numel() for p in bundle.model.parameters()) / 1e6
    print(f"Florence-2 base, random weights: {params:.0f} M parameters, built in {time.perf_counter() - t0:.1f} s")
    data = twelve_mp_jpeg()
    print(f"upload: 4000x3000 JPEG, {len(data) / 1e6:.1f} MB; {RUNS} runs, {NEW_TOKENS} new tokens each, greedy")

    for label, side in (("capped (working size 2048)", 2048), ("uncapped (full 12 MP)", 4000)):
        decode_ms, pre_ms, ttft, tps, total = [], [], [], [], []
        for _ in range(RUNS):
            start = time.perf_counter()
            decoded = decode_image(data, working_max_side=side)
            dms = (time.perf_counter() - start) * 1000
            timings = Timings()
            chunks = list(florence2.stream(bundle, decoded.pil(), "<CAPTION>", max_new_tokens=NEW_TOKENS,
                                           timings=timings))  # fmt: skip
            stats = chunks[-1].stats
            decode_ms.append(dms)
            pre_ms.append(dms + timings.preprocess_ms)
            ttft.append(stats.first_token_ms)
            tps.append(stats.tokens_per_s)
            total.append(dms + timings.total_ms)
        med = statistics.median
        print(f"\n{label}:")
        print(f"  decode+resize upload   {med(decode_ms):8.0f} ms")
        print(f"  preprocessing total    {med(pre_ms):8.0f} ms (decode + processor)")
        print(f"  time to first token    {med(ttft):8.0f} ms (after preprocessing)")
        print(f"  decode speed           {med(tps):8.1f} tokens/s")
        print(f"  total                  {med(total):8.0f} ms")
        print(f"  preprocessing share    {med(p / t for p, t in zip(pre_ms, total, strict=True)):8.3f} (goal <= 0.10)")


if __name__ == "__main__":
    main()
