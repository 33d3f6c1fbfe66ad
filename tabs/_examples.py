"""Example images shipped in assets/ (licences in assets/ATTRIBUTION.md)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"
EXAMPLES: tuple[str, ...] = ("cat.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg")


def example_paths(names: tuple[str, ...] = EXAMPLES) -> list[str]:
    """Absolute paths of example images, in display order."""
    return [str(ASSETS / name) for name in names]
