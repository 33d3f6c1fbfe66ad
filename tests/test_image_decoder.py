"""The safe decoder against the bad inputs of reference/reliability.md §4.1–4.2 (and good ones)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from model_loaders.core.errors import InputError
from model_loaders.core.images import MAX_PIXELS, ImageInputError, decode_image


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def photo(w: int = 64, h: int = 48) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def gif_animation() -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "green", "blue", "white", "black")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def eps_bytes() -> bytes:
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


BAD_INPUTS = [
    # (case id, bytes factory, expected message fragment) — numbers refer to reliability.md §4
    ("3-empty-file", lambda: b"", "empty"),
    ("4-text-as-png", lambda: b"hello" * 10, "not a readable image"),
    ("4-html-as-png", lambda: b"<html><script>alert(1)</script></html>", "not a readable image"),
    ("4-pdf-as-png", lambda: b"%PDF-1.4\n1 0 obj\n", "PDF files are not supported"),
    ("5-svg-with-script", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>', "SVG"),
    ("5-svg-xml-prolog", lambda: b'<?xml version="1.0"?><svg></svg>', "SVG"),
    ("6-eps-as-png", eps_bytes, "EPS"),
    ("7-tiff-as-png", lambda: encode(photo(), "TIFF"), "TIFF"),
    ("7-ico-as-png", lambda: encode(photo(32, 32), "ICO"), "not a readable image"),
    ("7-jpeg2000-as-png", lambda: encode(photo(), "JPEG2000"), "not a readable image"),
    ("9-bomb-20000px", lambda: png_header_only(20000, 20000), "too large"),
    ("10-between-1x-and-2x-pillow-limit", lambda: png_header_only(10000, 10000), "too large"),
    ("12-truncated-jpeg", lambda: encode(photo(256, 256), "JPEG")[:800], "truncated or corrupt"),
    ("12-truncated-png", lambda: encode(photo(256, 256), "PNG")[:3000], "truncated or corrupt"),
    ("20-one-pixel", lambda: encode(Image.new("RGB", (1, 1)), "PNG"), "too small"),
    ("20-two-pixels", lambda: encode(Image.new("RGB", (2, 2)), "PNG"), "too small"),
    ("21-aspect-65000x1", lambda: encode(Image.new("L", (65000, 1)), "PNG"), "too small"),
    ("21-aspect-2000x20", lambda: encode(Image.new("L", (2000, 20)), "PNG"), "aspect ratio"),
    ("21-aspect-20x1000", lambda: encode(Image.new("L", (20, 1000)), "PNG"), "aspect ratio"),
    ("heic-as-jpg", lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC"),
]


@pytest.mark.parametrize(("case", "make", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_its_specific_message(case, make, message, upload_path, gate):
    path = upload_path / "upload.png"
    path.write_bytes(make())
    with pytest.raises(ImageInputError) as info:
        decode_image({"path": str(path)}, gate=gate)
    text = str(info.value)
    assert message.lower() in text.lower()
    assert str(upload_path) not in text and "Traceback" not in text, "no server paths or tracebacks"
    # The decoder holds no state: a valid image right after works.
    good = upload_path / "good.png"
    good.write_bytes(encode(photo(), "PNG"))
    assert decode_image({"path": str(good)}, gate=gate).array.shape == (48, 64, 3)


def test_no_image_at_all():
    for empty in (None, {"path": None}, {}):
        with pytest.raises(ImageInputError, match="Upload an image first"):
            decode_image(empty)


def test_missing_file(upload_path, gate):
    with pytest.raises(InputError, match="please upload it again"):
        decode_image(str(upload_path / "gone.png"), gate=gate)


def test_a_path_without_a_gate_is_never_read(upload_path):
    good = upload_path / "good.png"
    good.write_bytes(encode(photo(), "PNG"))
    with pytest.raises(InputError, match="please upload it again"):
        decode_image(str(good))


def test_pixel_cap_is_checked_before_decoding(upload_path):
    # 7000 x 7000 = 49 MP > 40 MP: refused from the header alone (no 147 MB array is made).
    with pytest.raises(ImageInputError, match="too large"):
        decode_image(png_header_only(7000, 7000))
    assert MAX_PIXELS < 7000 * 7000


def test_13_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # pure red in CMYK
    out = decode_image(encode(cmyk, "JPEG", quality=95))
    assert out.array.shape == (30, 40, 3) and out.array.dtype == np.uint8
    r, g, b = out.array[15, 20].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_14_sixteen_bit_png_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 63000, 256).astype(np.uint16), (32, 1))
    out = decode_image(encode(Image.fromarray(ramp), "PNG"))
    gray = out.array[0, :, 0].astype(int)
    assert (gray == 255).mean() < 0.05, "a naive convert clips 98% of this ramp to 255"
    assert np.all(np.diff(gray) >= 0), "order of values is kept"
    assert gray[0] == 0 and gray[-1] == 255
    assert any("16-bit" in n for n in out.notes)


def test_14_constant_sixteen_bit_image_does_not_divide_by_zero():
    flat = np.full((32, 32), 1234, dtype=np.uint16)
    out = decode_image(encode(Image.fromarray(flat), "PNG"))
    assert np.all(out.array == 0)


def test_16_rgba_transparent_pixels_are_composited_on_white():
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))  # fully transparent red
    out = decode_image(encode(rgba, "PNG"))
    assert np.all(out.array == 255), "hidden RGB under alpha must not leak through"


def test_16_palette_with_transparency_and_la():
    p = Image.new("P", (32, 32), 0)
    p.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    p.info["transparency"] = 0
    assert np.all(decode_image(encode(p, "PNG", transparency=0)).array == 255)
    la = Image.new("LA", (32, 32), (0, 255))
    assert np.all(decode_image(encode(la, "PNG")).array == 0)


def test_17_one_bit_and_grayscale_replicate_to_three_channels():
    for mode in ("1", "L"):
        out = decode_image(encode(Image.new(mode, (20, 20), 1 if mode == "1" else 77), "PNG"))
        assert out.array.shape == (20, 20, 3)
        assert np.all(out.array[..., 0] == out.array[..., 1])


def test_18_exif_orientation_is_applied_and_points_map_back():
    im = Image.new("RGB", (60, 40), "white")
    im.paste((255, 0, 0), (0, 0, 10, 10))  # red square top-left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    out = decode_image(encode(im, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.original_size == (40, 60), "displayed size is rotated"
    assert out.array[5, 35, 0] > 200 and out.array[5, 35, 1] < 80, "red square is now top-right"
    assert any("EXIF" in n for n in out.notes)


def test_19_animated_gif_gives_its_first_frame():
    out = decode_image(gif_animation())
    assert out.array.shape == (32, 32, 3)
    r, g, b = out.array[16, 16].astype(int)
    assert r > 200 and g < 60 and b < 60, "first frame is red"
    assert any("first frame" in n for n in out.notes)


def test_11_large_image_is_downscaled_with_exact_mapping():
    big = Image.new("RGB", (4000, 3000), "white")
    out = decode_image(encode(big, "PNG"), working_max_side=1000)
    assert out.size == (1000, 750) and out.original_size == (4000, 3000)
    assert out.scale == pytest.approx(0.25)
    assert out.to_original(500, 375) == pytest.approx((2000, 1500))
    assert out.to_working(4000, 3000) == pytest.approx((1000, 750))
    assert any("downscaled" in n for n in out.notes)


def test_22_metadata_is_ignored():
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "<script>alert(1)</script>" * 40000)  # ~1 MB of text chunk
    out = decode_image(encode(photo(), "PNG", pnginfo=info))
    assert out.array.shape == (48, 64, 3)
    assert not any("script" in n for n in out.notes)


def test_23_odd_sizes_work_like_uploads():
    out = decode_image(encode(photo(333, 251), "WEBP", quality=90))
    assert out.size == (333, 251)


def test_digest_depends_on_content_only():
    a = decode_image(encode(photo(), "PNG"))
    b = decode_image(encode(photo(), "BMP"))
    c = decode_image(encode(photo(65, 48), "PNG"))
    assert a.digest == b.digest and a.digest != c.digest
