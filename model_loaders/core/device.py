"""Device choice and memory budget. Nothing here runs at import time."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(requested: str) -> str:
    """Turn ``auto|cpu|cuda|mps`` into a concrete torch device string.

    ``auto`` picks CUDA, then MPS, then CPU. Asking for an absent device is an error,
    not a silent fallback.
    """
    if requested not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {requested!r}")
    if requested == "cpu":
        return "cpu"
    import torch  # heavy; only when a device other than CPU may be wanted

    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if requested in ("auto", "mps") and mps is not None and mps.is_available():
        return "mps"
    if requested == "auto":
        return "cpu"
    raise ValueError(f"--device {requested} was asked for but is not available on this machine")


def total_ram_bytes() -> int:
    """Physical memory of this machine (cgroup limit if lower)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def default_budget_bytes(device: str, fraction: float = 0.6) -> int:
    """Bytes the model cache may hold: a share of GPU memory, or of RAM on CPU/MPS.

    The rest is left for activations, the image pipeline and the web server.
    """
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory * fraction)
    return int(total_ram_bytes() * fraction)
