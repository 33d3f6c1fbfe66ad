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


def available_ram_bytes() -> int:
    """RAM the system can still give this process now (MemAvailable, or less under a cgroup limit)."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:  # not Linux: the physical pages not in use
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError):
            available = total_ram_bytes()
    for limit_path, usage_path in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            with open(limit_path, encoding="ascii") as fh:
                limit = fh.read().strip()
            with open(usage_path, encoding="ascii") as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit():
            available = min(available, int(limit) - usage)
    return max(int(available), 0)


def available_bytes(device: str) -> int:
    """Memory free for new models on ``device`` right now (GPU memory on CUDA, else RAM)."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return available_ram_bytes()


def default_budget_bytes(device: str, fraction: float | None = None) -> int:
    """The most the model cache may use: a share of GPU memory, or of RAM on CPU/MPS.

    On CPU the rest of RAM is left for the web server, the image pipeline and the system; on a
    GPU nearly all of it is for models (a run's working memory is counted in each model's need).
    The cache also never takes more than is free at the moment it loads (`available_bytes`).
    """
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory * (fraction or 0.9))
    return int(total_ram_bytes() * (fraction or 0.6))
