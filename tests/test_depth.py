"""Depth tab: Depth Anything V2 (tiny, offline), its exports, the `depth` endpoint and the browser UI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from model_loaders.core.errors import InputError, ModelUnavailable
from model_loaders.core.images import decode_image
from model_loaders.core.results import Timings
from model_loaders.families.depth_anything import DepthBundle, estimate_depth
from model_loaders.tasks import depth as td
from model_loaders.tasks import depth_export as dx

SMALL = "depth-anything-v2-small"
INDOOR = "depth-anything-v2-metric-indoor-small"
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def _png(path: Path, array: np.ndarray) -> dict[str, str]:
    Image.fromarray(array).save(path, format="PNG")  # uint16 (H, W) arrays become 16-bit PNGs
    return {"path": str(path), "orig_name": path.name}


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def relative_run(ctx: Any, upload_path_session: Path) -> tuple[list[str], dict, str, dict]:
    from tabs import depth

    src = _png(upload_path_session / "scene.png", _noise(300, 451))
    return depth.compute(ctx, src, SMALL)


@pytest.mark.parametrize("key", [SMALL, INDOOR])
@pytest.mark.parametrize("size", [(77, 123), (240, 97)])
def test_depth_map_has_the_input_image_size(ctx: Any, key: str, size: tuple[int, int]) -> None:
    timings = Timings()
    result = td.estimate(ctx, decode_image(_noise(*size)), key, timings)
    assert result.depth.shape == size
    assert result.depth.dtype == np.float32
    assert np.isfinite(result.depth).all()
    assert result.kind == ("metric" if key == INDOOR else "relative_inverse")
    if key == INDOOR:
        assert result.depth.min() >= 0 and result.depth.max() <= 20.0
    assert timings.inference_ms > 0 and timings.model == key


def test_png16_round_trip_recovers_floats_and_keeps_order(upload_path: Path) -> None:
    rng = np.random.default_rng(1)
    depth = (0.37 + 7.5 * rng.random((61, 83))).astype(np.float32)
    q = dx.quantise16(depth)
    meta = dx.sidecar(q, "metric", "test-model", (83, 61))
    png, side = upload_path / "d16.png", upload_path / "d16.json"
    dx.write_png16(png, q, meta)
    side.write_text(json.dumps(meta))
    with Image.open(png) as im:
        raw = np.asarray(im)
        text = dict(im.text)
    assert raw.dtype == np.uint16 and raw.min() == 0 and raw.max() == 65535  # full range, not "black"
    assert float(text["depth_scale"]) == pytest.approx(q.scale)
    for restored in (dx.read_png16(png, side), dx.read_png16(png)):  # sidecar, then the PNG's own text
        assert np.abs(restored - depth).max() <= q.scale / 2 + 1e-6
        order = np.argsort(depth, axis=None, kind="stable")
        assert (np.diff(restored.ravel()[order]) >= 0).all()


def test_app_downloads_round_trip(relative_run: tuple[list[str], dict, str, Any]) -> None:
    files, stats, _, _ = relative_run
    colour, png16, side, npy, _ply = files
    floats = np.load(npy)
    assert floats.dtype == np.float32 and floats.shape == (300, 451)
    restored = dx.read_png16(Path(png16), Path(side))
    scale = json.loads(Path(side).read_text())["scale"]
    assert np.abs(restored - floats).max() <= scale / 2 + 1e-12
    assert stats["min"] == pytest.approx(float(floats.min())) and stats["max"] == pytest.approx(float(floats.max()))
    assert stats["kind"] == "relative_inverse" and stats["units"] == "unitless"
    with Image.open(colour) as im:
        assert im.size == (451, 300) and im.mode == "RGB"


def test_constant_map_is_flat_without_dividing_by_zero(upload_path: Path) -> None:
    depth = np.full((40, 50), 3.25, dtype=np.float32)
    with np.errstate(all="raise"):
        q = dx.quantise16(depth)
        colour = dx.colourise(depth, "metric", "inferno")
        grid = dx.point_grid(depth, _noise(40, 50), "metric")
    assert dx.is_flat(depth) and q.scale == 0.0 and not q.pixels.any()
    assert np.array_equal(q.restore(), depth)
    assert len(np.unique(colour.reshape(-1, 3), axis=0)) == 1
    assert np.isfinite(grid.xyz).all()


def test_constant_image_gives_a_note(ctx: Any, upload_path: Path) -> None:
    from tabs import depth

    src = _png(upload_path / "grey.png", np.full((64, 64, 3), 128, dtype=np.uint8))
    files, stats, timing, _ = depth.compute(ctx, src, SMALL)
    assert "single flat colour" in timing and len(files) == 5
    assert np.isfinite([stats["min"], stats["max"]]).all()


def test_colormap_and_invert_rerender_without_calling_the_model(
    ctx: Any, upload_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tabs import depth

    calls = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return estimate_depth(*args, **kwargs)

    monkeypatch.setattr(DepthBundle, "estimate", lambda self, image, timings: counting(self, image, timings))
    src = _png(upload_path / "scene.png", _noise(90, 120, seed=3))
    _, _, _, state = depth.compute(ctx, src, SMALL)
    assert len(calls) == 1
    seen = {}
    for cmap in ("Spectral_r", "inferno", "turbo", "viridis", "gray"):
        for invert in (False, True):
            slider, pick, fig, files, _meaning, state = depth.render(ctx, state, cmap, invert, 60)
            assert slider[1].shape == (90, 120, 3) and np.array_equal(slider[1], pick)
            assert Path(files[0]).exists() and cmap in Path(files[0]).name
            assert fig.data  # a 3D trace is drawn
            seen[(cmap, invert)] = pick
    assert len(calls) == 1  # ten re-renders, one model call
    assert not np.array_equal(seen[("inferno", False)], seen[("viridis", False)])
    # Inverting flips the colour scale: the nearest pixel swaps ends of the colormap.
    near = np.unravel_index(np.argmax(state.depth), state.depth.shape)
    lut = dx.colormap_lut("gray")
    assert (seen[("gray", False)][near] == lut[255]).all() and (seen[("gray", True)][near] == lut[0]).all()


def test_downloads_come_back_after_the_output_space_pruned_them(ctx: Any, upload_path: Path) -> None:
    import shutil

    from tabs import depth

    files, _, _, state = depth.compute(ctx, _png(upload_path / "old.png", _noise(60, 80, seed=5)), SMALL)
    shutil.rmtree(Path(files[0]).parent)  # an hour later the output space expired this run's folder
    _, _, _, again, _, _ = depth.render(ctx, state, "inferno", False, 60)
    assert all(Path(f).exists() for f in again), "every download link works again"
    assert np.array_equal(np.load([f for f in again if f.endswith(".npy")][0]), state.depth)


def test_a_click_on_the_shown_map_reads_the_full_resolution_map(ctx: Any, upload_path: Path) -> None:
    from tabs import depth

    big = _noise(1200, 1600, seed=6)
    _, _, _, state = depth.compute(ctx, _png(upload_path / "big.png", big), SMALL)
    slider, pick, *_ = depth.render(ctx, state, "gray", False, 60)
    assert pick.shape[:2] == (768, 1024), "the page gets a display-size copy, not 2 megapixels"
    assert depth.to_map_pixels(state, 512, 384) == (800.0, 600.0)


def test_read_pixel_reports_the_clicked_value(relative_run: tuple[list[str], dict, str, Any]) -> None:

    state = relative_run[3]
    text = td.read_pixel(state, 200, 100)
    assert f"{float(state.depth[100, 200]):.4g}" in text and "nearer" in text


@pytest.mark.parametrize("key", [SMALL, INDOOR])
def test_ply_has_one_finite_vertex_per_downsampled_pixel(ctx: Any, upload_path: Path, key: str) -> None:
    from tabs import depth

    src = _png(upload_path / "wide.png", _noise(300, 600, seed=5))
    files, _, _, state = depth.compute(ctx, src, key, fov=75)
    header, vertices = dx.read_ply(Path(files[4]))
    rows, cols = dx.downsample(state.depth, dx.PLY_MAX_SIDE).shape
    assert (rows, cols) == (128, 256)
    assert len(vertices) == rows * cols
    xyz = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1)
    assert np.isfinite(xyz).all()
    if key == INDOOR:
        assert any("fov 75" in line for line in header)
        # Unprojection: points at the right image edge have x = z * tan(fov / 2) (within a cell).
        right = xyz.reshape(rows, cols, 3)[:, -1]
        ratio = right[:, 0] / right[:, 2]
        assert np.allclose(ratio, np.tan(np.radians(75) / 2) * (1 - 1 / cols), rtol=1e-3)


@pytest.mark.parametrize(
    ("image", "model", "message"),
    [
        (np.zeros((1, 1, 3), np.uint8), SMALL, "too small"),
        (np.zeros((30, 800, 3), np.uint8), SMALL, "aspect ratio"),
        (_noise(64, 64), "no-such-model", "Unknown model"),
        (_noise(64, 64), "rf-detr-medium", "cannot estimate depth"),
    ],
    ids=["1x1", "extreme-aspect", "unknown-model", "not-depth-model"],
)
def test_bad_inputs_raise_clear_errors(ctx: Any, upload_path: Path, image: np.ndarray, model: str, message: str) -> None:
    from tabs import depth

    with pytest.raises((InputError, ModelUnavailable), match=message):
        depth.compute(ctx, _png(upload_path / "bad.png", image), model)


@pytest.mark.parametrize("kind", ["16-bit", "rgba"])
def test_16bit_and_rgba_uploads_work(ctx: Any, upload_path: Path, kind: str) -> None:
    from tabs import depth

    if kind == "16-bit":
        ramp = (np.linspace(0, 65535, 80 * 96).reshape(80, 96)).astype(np.uint16)
        src = _png(upload_path / "deep.png", ramp)
    else:
        rgba = np.dstack([_noise(80, 96), np.full((80, 96), 100, np.uint8)])
        src = _png(upload_path / "alpha.png", rgba)
    files, stats, timing, _ = depth.compute(ctx, src, SMALL)
    assert (stats["width"], stats["height"]) == (96, 80)
    assert np.load(files[3]).shape == (80, 96)
    assert ("16-bit" if kind == "16-bit" else "transparent") in timing


def test_api_depth_endpoint_returns_files_and_stats(client: Any, upload_path: Path) -> None:
    from gradio_client import handle_file

    src = upload_path / "api.png"
    Image.fromarray(_noise(70, 90, seed=9)).save(src)
    files, stats, timing = client.predict(handle_file(str(src)), INDOOR, api_name="/depth")
    names = sorted(Path(f).suffix for f in files)
    assert names == [".json", ".npy", ".ply", ".png", ".png"]
    assert stats["kind"] == "metric" and stats["units"] == "m" and stats["min"] <= stats["max"]
    assert "inference" in timing and "random weights" in timing
    floats = np.load(next(f for f in files if f.endswith(".npy")))
    assert floats.shape == (70, 90)


@pytest.mark.parametrize(
    ("make", "model", "message"),
    [
        (lambda: np.zeros((1, 1, 3), np.uint8), SMALL, "too small"),
        (lambda: np.zeros((20, 900, 3), np.uint8), SMALL, "aspect ratio"),
        (lambda: _noise(40, 40), "no-such-model", "Unknown model"),
    ],
    ids=["1x1", "extreme-aspect", "unknown-model"],
)
def test_api_errors_reach_the_user(client: Any, upload_path: Path, make: Any, model: str, message: str) -> None:
    from gradio_client import handle_file

    src = upload_path / "bad.png"
    Image.fromarray(make()).save(src)
    with pytest.raises(Exception, match=message):
        client.predict(handle_file(str(src)), model, api_name="/depth")


@pytest.mark.browser
def test_browser_example_shows_slider_and_3d_plot(page: Any, app_url: str, artifacts: Path) -> None:
    page.goto(app_url)
    page.get_by_role("tab", name="Depth").click()
    page.get_by_role("button", name="Estimate depth").wait_for()
    # Picking an example fills the input; the button runs (the same in every tab).
    page.locator("#depth-examples .gallery-item").first.click()
    page.locator("#depth-input img").first.wait_for()
    page.locator("#depth-run").click()
    slider = page.locator("#depth-slider")
    slider.locator("img").nth(1).wait_for(state="visible")
    assert slider.locator("img").count() >= 2
    page.locator("#depth-plot .js-plotly-plot").wait_for(state="visible")
    timing = page.locator("#depth-timing")
    timing.get_by_text("inference").wait_for()
    assert "random weights" in timing.inner_text()
    assert "relative inverse depth" in page.locator("#depth-meaning").inner_text()
    files = page.locator("#depth-files")
    files.get_by_text("depth16").first.wait_for()  # the name and its extension are separate spans
    for name in ("depth_Spectral_r", "depth_float32", "points"):
        assert name in files.inner_text()
    # Clicking the map reads the value under the pointer and marks the spot on the map.
    unmarked = page.locator("#depth-pick img").first.get_attribute("src")
    page.locator("#depth-pick img").first.click(position={"x": 40, "y": 30})
    page.locator("#depth-readout").get_by_text("relative inverse depth").wait_for()
    assert "Pixel (" in page.locator("#depth-readout").inner_text()
    page.wait_for_function("(old) => document.querySelector('#depth-pick img').src !== old", arg=unmarked)
    # Changing the colormap re-renders (the colour download follows it).
    page.locator("#depth-cmap input").click()
    page.get_by_role("option", name="inferno").click()
    files.get_by_text("depth_inferno").first.wait_for()
    page.screenshot(path=str(artifacts / "depth-tab.png"), full_page=True)
