"""The one safe image decoder used by every image event (events use ``preprocess=False``).

Public uploads are hostile input: formats are allow-listed, pixel caps are checked before any
pixel is decoded, EXIF orientation is applied, every mode is normalised to RGB uint8
(16-bit scaled, not clipped; alpha composited on white; palette/CMYK/grayscale converted),
animations give their first frame, and large images are downscaled to a working size whose
scale is kept so click coordinates and outputs map back to the original image.
No Gradio import here, so the decoder is tested on its own; errors are `InputError`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model_loaders.core.errors import InputError
from model_loaders.core.uploads import NOT_A_FILE, UPLOAD_AGAIN, UploadGate

log = logging.getLogger(__name__)

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")  # JPEG also opens multi-picture (MPO) phone files
MAX_PIXELS = 40_000_000
MIN_SIDE = 16
MAX_ASPECT = 20.0
WORKING_MAX_SIDE = 2048
BACKGROUND = (255, 255, 255)

# Refuse Pillow's own bomb threshold well above ours: our check runs first, on the header.
Image.MAX_IMAGE_PIXELS = 2 * MAX_PIXELS
# Pillow's own open, kept before any library can wrap it (ultralytics replaces Image.open
# process-wide with a wrapper that tries to install packages when a file is unreadable).
_PIL_OPEN = Image.open


class ImageInputError(InputError):
    """An upload that cannot be used as an image; the message is shown to the user."""


@dataclass(frozen=True)
class DecodedImage:
    """An RGB uint8 image at working size, and how it maps to the uploaded original.

    Attributes:
        array: (H, W, 3) uint8 RGB at working size (what models and the UI see).
        original_size: (width, height) of the upload after EXIF orientation.
        scale: working size / original size (1.0 when not downscaled).
        notes: what normalisation did, for the user ("first frame of an animated GIF", ...).
        digest: content hash of ``array``, stable across sessions (cache keys, never identity).
        original: the full-resolution RGB array when asked for with ``keep_original``.
    """

    array: np.ndarray
    original_size: tuple[int, int]
    scale: float
    notes: tuple[str, ...]
    digest: str
    original: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) at working size."""
        return (int(self.array.shape[1]), int(self.array.shape[0]))

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        """Map a working-size point to original-image coordinates."""
        return (x / self.scale, y / self.scale)

    def to_working(self, x: float, y: float) -> tuple[float, float]:
        """Map an original-image point to working-size coordinates."""
        return (x * self.scale, y * self.scale)

    def pil(self) -> Image.Image:
        """The working image as PIL (no metadata)."""
        return Image.fromarray(self.array)

    @classmethod
    def of_array(cls, array: np.ndarray) -> DecodedImage:
        """An image the app made itself (a crop, a frame): no upload checks, no downscaling."""
        rgb = np.ascontiguousarray(array, dtype=np.uint8)
        return cls(rgb, (int(rgb.shape[1]), int(rgb.shape[0])), 1.0, (), _digest(rgb))


def _digest(array: np.ndarray) -> str:
    # Content hash of the pixels and their shape: the cache key of embeddings and chat history.
    return hashlib.blake2b(array.tobytes(), digest_size=16, person=str(array.shape).encode()[:16]).hexdigest()


def _read_bytes(source: Any, gate: UploadGate | None) -> tuple[bytes, str]:
    """Return (content, display name) from raw bytes, or from a file a request names (gated)."""
    if source is None or (isinstance(source, dict) and not source.get("path")):
        raise ImageInputError("Upload an image first.")
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "upload"
    if isinstance(source, (str, os.PathLike, dict)) or hasattr(source, "path"):
        if gate is None:  # no gate configured: refuse rather than read an arbitrary path
            raise ImageInputError(UPLOAD_AGAIN)
        return gate.read(source)
    raise ImageInputError(NOT_A_FILE)


def _sniff_unsupported(data: bytes) -> str | None:
    head = data[:512].lstrip()
    lower = head.lower()
    if lower.startswith(b"<?xml") or lower.startswith(b"<svg") or b"<svg" in lower:
        return "SVG images are not supported; upload PNG, JPEG, WEBP, BMP or GIF."
    if head.startswith(b"%PDF"):
        return "PDF files are not supported; upload PNG, JPEG, WEBP, BMP or GIF."
    if head.startswith(b"%!PS") or data[:4] == b"\xc5\xd0\xd3\xc6":
        return "PostScript/EPS files are not supported; upload PNG, JPEG, WEBP, BMP or GIF."
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF images are not supported; upload PNG, JPEG, WEBP, BMP or GIF."
    if b"ftypheic" in data[:32] or b"ftypheix" in data[:32] or b"ftypmif1" in data[:32]:
        return "HEIC images are not supported; convert to JPEG or PNG first."
    if b"ftypavif" in data[:32]:
        return "AVIF images are not supported; upload PNG, JPEG, WEBP, BMP or GIF."
    return None


def _to_rgb(im: Image.Image, notes: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        finite = np.isfinite(arr)
        if not finite.any():
            raise ImageInputError("The image has no finite pixel values.")
        lo, hi = float(arr[finite].min()), float(arr[finite].max())
        scaled = np.zeros_like(arr) if hi <= lo else (np.where(finite, arr, lo) - lo) / (hi - lo) * 255.0
        gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        notes.append(f"{'16-bit' if mode.startswith('I;16') else mode + '-mode'} image scaled to 8-bit (min–max)")
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        base.alpha_composite(rgba)
        notes.append("transparent areas shown on white")
        return np.asarray(base.convert("RGB"))
    if mode != "RGB":
        return np.asarray(im.convert("RGB"))
    return np.asarray(im)


def decode_image(
    source: Any,
    *,
    gate: UploadGate | None = None,
    working_max_side: int = WORKING_MAX_SIDE,
    keep_original: bool = False,
) -> DecodedImage:
    """Decode an untrusted image safely.

    Args:
        source: a Gradio FileData dict (``{"path": ...}``) or a path, read only through
            ``gate``; or raw bytes, a PIL image or an RGB/gray numpy array (internal callers).
        gate: the upload gate that every named file passes; without one, paths are refused.
        working_max_side: longest side of the working image; larger images are downscaled.
        keep_original: also return the full-resolution RGB array.

    Returns:
        The decoded image and its mapping to the original.

    Raises:
        ImageInputError: with a short message for the user.
    """
    notes: list[str] = []
    if isinstance(source, np.ndarray):
        source = Image.fromarray(source)
    if isinstance(source, Image.Image):
        im = source
        data_name = "image"
    else:
        data, data_name = _read_bytes(source, gate)
        if not data:
            raise ImageInputError("The file is empty.")
        unsupported = _sniff_unsupported(data)
        if unsupported:
            raise ImageInputError(unsupported)
        try:
            im = _PIL_OPEN(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
        except Image.DecompressionBombError:
            raise ImageInputError(f"The image is too large (max {MAX_PIXELS // 1_000_000} megapixels).") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise ImageInputError(
                "This file is not a readable image. Upload PNG, JPEG, WEBP, BMP or GIF."
            ) from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise ImageInputError(
            f"The image is too large: {w}×{h} pixels (max {MAX_PIXELS // 1_000_000} megapixels)."
        )
    if min(w, h) < MIN_SIDE:
        raise ImageInputError(f"The image is too small: {w}×{h} pixels (min {MIN_SIDE} px per side).")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise ImageInputError(f"Unsupported aspect ratio {w}×{h} (at most {MAX_ASPECT:.0f}:1).")
    try:
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
            notes.append(f"first frame of an animated {im.format or 'image'} ({im.n_frames} frames)")
        im.load()
        oriented = ImageOps.exif_transpose(im)
        if oriented is not None and oriented.size != im.size:
            notes.append("rotated by its EXIF orientation")
        im = oriented if oriented is not None else im
        rgb = _to_rgb(im, notes)
    except ImageInputError:
        raise
    except MemoryError:
        raise ImageInputError("The image is too large to decode here.") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        log.info("corrupt image %s: %s: %s", data_name, type(exc).__name__, exc)
        raise ImageInputError("The image file is truncated or corrupt.") from None
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    oh, ow = rgb.shape[:2]
    scale = 1.0
    working = rgb
    if max(ow, oh) > working_max_side:
        scale = working_max_side / max(ow, oh)
        new_size = (max(1, round(ow * scale)), max(1, round(oh * scale)))
        working = np.asarray(Image.fromarray(rgb).resize(new_size, Image.Resampling.LANCZOS))
        # Keep the exact ratio actually applied so mapping back is exact along the long side.
        scale = new_size[0] / ow if ow >= oh else new_size[1] / oh
        notes.append(f"downscaled from {ow}×{oh} to {new_size[0]}×{new_size[1]} for processing")
    digest = _digest(working)
    return DecodedImage(
        array=working,
        original_size=(ow, oh),
        scale=scale,
        notes=tuple(notes),
        digest=digest,
        original=rgb if keep_original else None,
    )

