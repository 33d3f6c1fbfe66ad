"""Segment tab (SAM 2.1, tiny random weights): the mechanics a user relies on.

Random weights cannot segment meaningfully, so these tests check sizes, coordinate mapping,
caching, history, exports, isolation between sessions and input validation.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from model_loaders.core.errors import InputError
from model_loaders.core.results import ImageEmbedding
from model_loaders.families import sam2
from model_loaders.tasks import segment as seg
from model_loaders.tasks import segment_session as ss
from tabs import segment as S

KEY = "sam2.1-hiera-tiny"


def _image(path: Path, size: tuple[int, int], seed: int = 0, exif_orientation: int | None = None) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    if exif_orientation is None:
        im.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(path, exif=exif, quality=80)
    return path


@pytest.fixture()
def counted_encoder(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count image-encoder runs (digests) by wrapping the SAM 2.1 bundle's encoder."""
    calls: list[str] = []
    real = sam2.Sam2Bundle.encode

    def counting(self: Any, image: np.ndarray, digest: str) -> Any:
        calls.append(digest)
        return real(self, image, digest)

    monkeypatch.setattr(sam2.Sam2Bundle, "encode", counting)
    return calls


def click(ctx: Any, session: Any, x: float, y: float, box: bool = False, include: bool = True, model: str = KEY) -> Any:
    return ss.click(ctx, session, x, y, box, include, model)


# --- RLE ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mask",
    [
        np.random.default_rng(1).random((37, 53)) > 0.5,
        np.ones((5, 7), bool),
        np.zeros((5, 7), bool),
        np.pad(np.ones((3, 4), bool), ((10, 20), (30, 5))),
        np.eye(40, 60, dtype=bool),
    ],
)
def test_rle_round_trip(mask: np.ndarray) -> None:
    rle = seg.rle_encode(mask)
    assert rle["size"] == list(mask.shape)
    assert isinstance(rle["counts"], str)
    back = seg.rle_decode(json.loads(json.dumps(rle)))
    assert back.shape == mask.shape and np.array_equal(back, mask)


def test_rle_matches_coco_conventions() -> None:
    # 35 foreground pixels: "0S1" as pycocotools writes it; uncompressed counts [0, 35] decode the same.
    assert seg.rle_encode(np.ones((5, 7), bool))["counts"] == "0S1"
    assert seg.rle_decode({"size": [5, 7], "counts": [0, 35]}).all()
    # column-major order: runs of 0 background, 4 foreground (first column), 8 background.
    m = np.zeros((4, 3), bool)
    m[:, 0] = True
    assert np.array_equal(seg.rle_decode({"size": [4, 3], "counts": [0, 4, 8]}), m)
    with pytest.raises(ValueError, match="sum to"):
        seg.rle_decode({"size": [4, 3], "counts": [0, 4, 7]})


# --- session mechanics (handlers called directly) -----------------------------------------------


def test_mask_size_is_original_after_exif_rotation_and_downscale(ctx: Any, upload_path: Path) -> None:
    # Stored 2600×1000 with EXIF orientation 6 (rotate 90°): the user sees 1000×2600, working 788×2048.
    path = _image(upload_path / "rotated.jpg", (2600, 1000), exif_orientation=6)
    session = ss.set_image(ctx, ss.SegmentSession(), {"path": str(path)})
    img = session.image
    assert img is not None and img.original_size == (1000, 2600)
    assert max(img.size) == 2048
    click(ctx, session, 394, 1024)
    assert session.prediction is not None
    assert session.prediction.masks.shape[1:] == (img.size[1], img.size[0])
    mask_png, cut_png, coco = ss.export(ctx, session)
    assert Image.open(mask_png).size == (1000, 2600)
    cut = Image.open(cut_png)
    assert cut.size == (1000, 2600) and cut.mode == "RGBA"
    doc = json.loads(Path(coco).read_text())
    ann = doc["annotations"][0]
    assert ann["segmentation"]["size"] == [2600, 1000]
    assert seg.rle_decode(ann["segmentation"]).shape == (2600, 1000)
    # the click maps back to original pixels (working / scale)
    (x, y) = ann["prompts"]["points"][0]
    assert math.isclose(x, 394 / img.scale, abs_tol=0.01) and math.isclose(y, 1024 / img.scale, abs_tol=0.01)
    assert math.isclose(y, 1300, abs_tol=1.0)
    # the mask PNG and the JSON agree
    assert np.array_equal(np.asarray(Image.open(mask_png)) > 0, seg.rle_decode(ann["segmentation"]))


def test_encoder_runs_once_per_image_and_model(ctx: Any, upload_path: Path, counted_encoder: list[str]) -> None:
    a = _image(upload_path / "a.png", (320, 240), seed=1)
    b = _image(upload_path / "b.png", (300, 200), seed=2)
    session = ss.set_image(ctx, ss.SegmentSession(), {"path": str(a)})
    click(ctx, session, 10, 10)
    click(ctx, session, 50, 60, include=False)
    click(ctx, session, 100, 100)
    assert len(counted_encoder) == 1
    line = S.step_line(ctx, session)
    assert "encode: cached" in line and "decode" in line and "tiny random weights" in line
    ss.undo(ctx, session, KEY)
    ss.redo(ctx, session, KEY)
    assert len(counted_encoder) == 1
    ss.set_image(ctx, session, {"path": str(b)})
    click(ctx, session, 20, 20)
    click(ctx, session, 30, 20)
    assert len(counted_encoder) == 2 and counted_encoder[0] != counted_encoder[1]
    # another model needs its own embedding of the same image
    click(ctx, session, 40, 20, model="sam2.1-hiera-small")
    assert len(counted_encoder) == 3
    # a second session never sees the first one's embeddings
    other = ss.set_image(ctx, ss.SegmentSession(), {"path": str(b)})
    click(ctx, other, 20, 20)
    assert len(counted_encoder) == 4


def test_undo_redo_clear_restore_prompt_state(ctx: Any, upload_path: Path) -> None:
    session = ss.set_image(ctx, ss.SegmentSession(), {"path": str(_image(upload_path / "a.png", (320, 240)))})
    click(ctx, session, 10, 10)
    click(ctx, session, 50, 60, include=False)
    click(ctx, session, 100, 20, box=True)  # first corner
    click(ctx, session, 20, 200, box=True)  # opposite corner
    full = session.state.prompts
    assert full.points == ((10, 10), (50, 60)) and full.labels == (1, 0)
    assert full.box == (20, 20, 100, 200) and full.corner is None
    ss.undo(ctx, session, KEY)
    assert session.state.prompts.box is None and session.state.prompts.corner == (100, 20)
    ss.undo(ctx, session, KEY)
    ss.undo(ctx, session, KEY)
    assert session.state.prompts.points == ((10, 10),) and session.prediction is not None
    ss.redo(ctx, session, KEY)
    ss.redo(ctx, session, KEY)
    ss.redo(ctx, session, KEY)
    assert session.state.prompts == full
    with pytest.raises(InputError, match="Nothing to redo"):
        ss.redo(ctx, session, KEY)
    ss.clear(session)
    assert not session.state.prompts.ready and session.prediction is None
    ss.undo(ctx, session, KEY)
    assert session.state.prompts == full and session.prediction is not None
    # a new click after undo drops the redo branch
    ss.undo(ctx, session, KEY)
    click(ctx, session, 5, 5)
    with pytest.raises(InputError, match="Nothing to redo"):
        ss.redo(ctx, session, KEY)


def test_candidates_picker_and_new_object(ctx: Any, upload_path: Path) -> None:
    session = ss.set_image(ctx, ss.SegmentSession(), {"path": str(_image(upload_path / "a.png", (320, 240)))})
    click(ctx, session, 100, 100)
    pred = session.prediction
    assert pred is not None and pred.masks.shape == (3, 240, 320) and pred.scores.shape == (3,)
    assert session.selected == int(np.argmax(pred.scores))
    out = S.render(ctx, session)
    gallery, picker = out[2]["value"], out[3]
    assert len(gallery) == 3 and all("IoU" in caption for _, caption in gallery)
    assert picker["value"] == pred.best and len(picker["choices"]) == 3
    assert out[2]["selected_index"] == picker["value"], "the gallery highlights the mask the radio shows"
    session.choice = (pred.best + 1) % 3
    ss.new_object(session)
    assert len(session.state.objects) == 1 and not session.state.prompts.ready
    assert np.array_equal(session.state.objects[0].mask, pred.masks[(pred.best + 1) % 3])
    click(ctx, session, 10, 10, box=True)
    click(ctx, session, 60, 80, box=True)
    _, _, coco = ss.export(ctx, session)
    anns = json.loads(Path(coco).read_text())["annotations"]
    assert [a["prompts"]["points"] for a in anns] == [[[100.0, 100.0]], []]
    assert anns[1]["prompts"]["box"] == [10.0, 10.0, 60.0, 80.0]
    # canvas shows both objects; the cut-out is transparent outside the masks
    canvas, cut = S.render(ctx, session)[1], S.render(ctx, session)[4]
    assert canvas.shape == (240, 320, 3) and cut.shape == (240, 320, 4)
    union = session.state.objects[0].mask | session.prediction.masks[session.selected]
    assert np.array_equal(cut[..., 3] > 0, union)
    ss.undo(ctx, session, KEY)
    ss.undo(ctx, session, KEY)
    ss.undo(ctx, session, KEY)  # back before "New object"
    assert session.state.objects == () and session.state.prompts.points == ((100, 100),)


def test_session_bad_clicks(ctx: Any, upload_path: Path) -> None:
    empty = ss.SegmentSession()
    with pytest.raises(InputError, match="image first"):
        click(ctx, empty, 10, 10)
    session = ss.set_image(ctx, ss.SegmentSession(), {"path": str(_image(upload_path / "a.png", (320, 240)))})
    with pytest.raises(InputError, match="outside the image"):
        click(ctx, session, 400, 10)
    click(ctx, session, 10, 10, box=True)
    with pytest.raises(InputError, match="zero area"):
        click(ctx, session, 10, 90, box=True)
    with pytest.raises(InputError, match="Unknown model"):
        click(ctx, session, 10, 10, model="no-such-model")
    with pytest.raises(InputError, match="cannot segment"):
        click(ctx, session, 10, 10, model="depth-anything-v2-small")
    assert session.state.prompts.points == ()  # failed clicks changed nothing
    for i in range(seg.MAX_POINTS):
        click(ctx, session, i, i)
    with pytest.raises(InputError, match="Too many points"):
        click(ctx, session, 1, 2)


def test_embedding_cache_is_bounded() -> None:
    import torch

    cache = seg.EmbeddingCache(max_items=2, max_bytes=10 * 2**20)

    def mk(d, n):
        return ImageEmbedding(KEY, d, [torch.zeros(n)], (1, 1))

    cache.put(mk("a", 10))
    cache.put(mk("b", 10))
    cache.put(mk("c", 10))
    assert len(cache) == 2 and cache.get("a", KEY) is None and cache.get("c", KEY) is not None
    cache.put(mk("big", 2 * 2**20))  # 8 MB
    cache.put(mk("big2", 2 * 2**20))  # another 8 MB: over 10 MB, so the older ones go
    assert len(cache) == 1 and cache.get("big2", KEY) is not None
    assert cache.nbytes <= 10 * 2**20


# --- through the server -----------------------------------------------------------------------


def _segment(client: Any, image: Any, points: Any, labels: Any = None, box: Any = None, model: str = KEY) -> Any:
    from gradio_client import handle_file

    img = handle_file(str(image)) if image is not None else None
    return client.predict(img, points, labels, box, model, True, api_name="/segment")


def test_api_segment_returns_masks_at_original_size(client: Any, upload_path: Path) -> None:
    path = _image(upload_path / "a.png", (400, 300))
    result, overlay = _segment(client, path, [[100, 50], [300, 200]], [1, 0], [10, 10, 390, 290])
    assert result["width"] == 400 and result["height"] == 300
    assert len(result["masks"]) == 3 and len(result["scores"]) == 3
    assert result["best"] == int(np.argmax(result["scores"]))
    assert seg.rle_decode(result["masks"][0]).shape == (300, 400)
    assert "random weights" in result["weights_warning"]
    assert Image.open(overlay).size == (400, 300)
    info = client.view_api(print_info=False, return_format="dict")
    assert "/segment" in info["named_endpoints"]


BAD_INPUTS = [
    ("no image", {"image": None, "points": [[1, 1]]}, "image"),
    ("point outside", {"points": [[500, 10]]}, "outside the image"),
    # JSON has no NaN; clients send it as JSON text (Python's json reads NaN / Infinity).
    ("nan", {"points": "[[NaN, 10]]", "labels": [1]}, "finite"),
    ("inf", {"points": "[[10, Infinity]]", "labels": [1]}, "finite"),
    ("-inf", {"points": "[[-Infinity, 10]]", "labels": [1]}, "finite"),
    ("nothing", {"points": [], "labels": []}, "at least one point or a box"),
    ("too many", {"points": [[1, 1]] * 65, "labels": [1] * 65}, "Too many points"),
    ("box reversed", {"points": [], "labels": [], "box": [100, 10, 50, 80]}, "x2 ≥ x1"),
    ("box zero area", {"points": [], "labels": [], "box": [10, 10, 10, 80]}, "zero area"),
    ("box nan", {"points": [], "labels": [], "box": "[10, 10, NaN, 80]"}, "finite"),
    ("unknown model", {"points": [[1, 1]], "model": "sam9-giant"}, "nknown model"),
    ("bad label", {"points": [[1, 1]], "labels": [2]}, "1 (include) or 0 (exclude)"),
    ("label count", {"points": [[1, 1], [2, 2]], "labels": [1]}, "one label per point"),
    ("not pairs", {"points": [[1, 2, 3]]}, "[x, y] pairs"),
]


def test_api_bad_inputs_give_short_messages(client: Any, upload_path: Path) -> None:
    from gradio_client.exceptions import AppError

    path = _image(upload_path / "a.png", (400, 300))
    for name, kwargs, expected in BAD_INPUTS:
        args = {"image": path, "labels": None, "box": None, "model": KEY, **kwargs}
        if args["labels"] is None and "labels" not in kwargs:
            args["labels"] = [1] * len(args["points"])
        with pytest.raises(AppError) as info:
            _segment(client, args["image"], args["points"], args["labels"], args["box"], args["model"])
        message = str(info.value)
        assert expected in message, (name, message)
        assert len(message) < 200 and "Traceback" not in message, (name, message)
    # the server is healthy: the next request works
    result, _ = _segment(client, path, [[10, 10]], [1])
    assert len(result["masks"]) == 3


def test_ui_click_without_image(client: Any) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="image first"):
        client.predict(10, 10, S.POINT_MODE, S.INCLUDE, KEY, api_name="/segment_click")


def test_two_sessions_at_once_get_their_own_masks(app_url: str, upload_path: Path) -> None:
    from gradio_client import Client, handle_file

    images = {
        "a": _image(upload_path / "a.png", (320, 200), seed=1),
        "b": _image(upload_path / "b.png", (180, 260), seed=2),
    }
    results: dict[str, Any] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def user(name: str) -> None:
        try:
            c = Client(app_url, verbose=False)
            try:
                c.predict(handle_file(str(images[name])), api_name="/segment_image")
                barrier.wait(timeout=60)
                for x, y in ((15, 15), (40, 30), (60, 90)):
                    c.predict(x, y, S.POINT_MODE, S.INCLUDE, KEY, api_name="/segment_click")
                files = c.predict(api_name="/segment_export")
                stateless = c.predict(
                    handle_file(str(images[name])), [[5, 5]], [1], None, KEY, True, api_name="/segment"
                )
                results[name] = (files, stateless[0])
            finally:
                c.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=user, args=(n,)) for n in images]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=150)
    assert not errors, errors
    for name, path in images.items():
        files, stateless = results[name]
        size = Image.open(path).size
        by_name = {Path(f).name: f for f in files}
        assert Image.open(by_name["mask.png"]).size == size
        doc = json.loads(Path(by_name["objects_coco_rle.json"]).read_text())
        assert doc["images"][0]["width"] == size[0] and doc["images"][0]["height"] == size[1]
        assert [p for a in doc["annotations"] for p in a["prompts"]["points"]] == [[15, 15], [40, 30], [60, 90]]
        assert (stateless["width"], stateless["height"]) == size


def test_browser_click_shows_overlay_and_score(page: Any, app_url: str, artifacts: Path) -> None:
    page.goto(app_url)
    page.get_by_role("tab", name="Segment").click()
    # pick the first example image (cat.jpg)
    page.locator("#segment-examples .gallery-item").first.click()
    canvas_img = page.locator("#segment-canvas img")
    canvas_img.wait_for(state="visible")
    box = canvas_img.bounding_box()
    assert box is not None and box["width"] > 50
    page.mouse.click(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.4)
    timing = page.locator("#segment-timing")
    timing.get_by_text("decode").wait_for()
    assert "SAM 2.1 Hiera Tiny" in timing.inner_text() and "random weights" in timing.inner_text()
    page.locator("#segment-candidates").get_by_text("IoU").first.wait_for()
    page.locator("#segment-picker").get_by_text("IoU").first.wait_for()
    summary = page.locator("#segment-summary").inner_text()
    assert "1 point(s)" in summary
    page.screenshot(path=str(artifacts / "segment.png"), full_page=True)
