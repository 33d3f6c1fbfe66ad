"""Track: objects clicked in a video followed through it (SAM 2.1 video, tiny weights, offline).

Clips are made in the test with PyAV: a red square moving across a grey background (known
position in every frame), rotated and variable-frame-rate variants, and broken files.
"""

from __future__ import annotations

import json
import threading
import zipfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from model_loaders.core.errors import InputError
from model_loaders.families.sam2 import MEMORY_WINDOW, Sam2VideoBundle
from model_loaders.tasks import track as tt
from model_loaders.tasks.segment import rle_decode

KEY = "sam2.1-hiera-tiny"
W, H = 320, 240


def square_at(t: int) -> tuple[int, int, int, int]:
    """The square's box (x1, y1, x2, y2) in frame ``t``."""
    x = 20 + 6 * t
    return x, 90, x + 50, 150


def make_clip(path: Path, frames: int = 30, fps: int = 12, rotation: int = 0, vfr: bool = False,
              size: tuple[int, int] = (W, H)) -> Path:  # fmt: skip
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        if vfr:
            stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for t in range(frames):
            a = np.full((size[1], size[0], 3), 90, np.uint8)
            x1, y1, x2, y2 = square_at(t)
            a[y1:y2, x1:x2] = (220, 40, 40)
            frame = av.VideoFrame.from_ndarray(a, format="rgb24")
            if vfr:
                frame.pts, frame.time_base = pts, Fraction(1, 1000)
                pts += 50 if t % 2 else 120  # alternating 50 ms / 120 ms gaps
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture()
def clip(upload_path: Path) -> Path:
    return make_clip(upload_path / "square.mp4")


def opened(ctx: Any, path: Path, **kw: Any) -> tt.TrackSession:
    return tt.open_video(ctx, tt.TrackSession(), {"path": str(path)}, **kw)


def test_a_clicked_object_is_tracked_on_every_frame_forwards_and_backwards(ctx: Any, clip: Path) -> None:
    s = opened(ctx, clip)
    assert s.frames == 30 and s.video.size == (W, H) and s.video.info.fps == 12
    x1, y1, x2, y2 = square_at(12)
    tt.add_prompt(ctx, s, KEY, 12, point=((x1 + x2) / 2, (y1 + y2) / 2))
    assert 12 in s.results and s.frame_seconds is not None
    steps = list(tt.propagate(ctx, s, KEY, "both"))
    assert steps[-1].done == steps[-1].total == 30 and not steps[-1].stopped  # 18 forwards (from the click) + 12 back
    assert sorted(s.results) == list(range(30)), "every frame, before the click too"
    assert all(0.0 <= score <= 1.0 for r in s.results.values() for _, score in r.values())  # never NaN
    for f in (0, 11, 29):
        mask = tt.mask_at(s, f, 1)
        assert mask is not None and mask.shape == (H, W)
    s.close()


def test_exports_are_at_the_original_size_and_the_overlay_plays(ctx: Any, upload_path: Path) -> None:
    path = make_clip(upload_path / "big.mp4", frames=8, size=(1280, 720))
    s = opened(ctx, path)
    assert s.video.size == (640, 360) and s.video.original_size == (1280, 720)
    tt.add_prompt(ctx, s, KEY, 0, point=(30, 60))
    list(tt.propagate(ctx, s, KEY, "forward"))
    mp4, doc_path, zip_path = tt.export(ctx, s, [(255, 0, 0)])
    doc = json.loads(Path(doc_path).read_text())
    assert doc["video"]["width"] == 1280 and len(doc["annotations"]) == 8
    for ann in doc["annotations"]:
        mask = rle_decode(ann["segmentation"])  # pycocotools round trip
        assert mask.shape == (720, 1280) and ann["area"] == int(mask.sum())
        small = tt.mask_at(s, ann["frame"], 1)
        up = np.asarray(Image.fromarray(small.astype(np.uint8) * 255).resize((1280, 720), Image.Resampling.NEAREST)) > 127
        assert np.array_equal(mask, up)
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        decoded = sum(1 for _ in container.decode(video=0))
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert decoded == 8 and float(stream.average_rate) == pytest.approx(12, rel=0.01)
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        assert len(names) == 8 and Image.open(archive.open(names[0])).size == (1280, 720)
    s.close()


def test_stop_keeps_the_frames_already_tracked(ctx: Any, clip: Path) -> None:
    s = opened(ctx, clip)
    tt.add_prompt(ctx, s, KEY, 0, point=(45, 120))
    stop = threading.Event()
    steps = []
    for step in tt.propagate(ctx, s, KEY, "forward", stop=stop):
        steps.append(step)
        if step.done == 5:
            stop.set()
    assert steps[-1].stopped and steps[-1].done == 5
    assert sorted(s.results) == list(range(5))  # the 5 frames tracked (from the clicked one)
    s.close()


def test_memory_stays_bounded_as_frames_are_added(ctx: Any, upload_path: Path) -> None:
    """The model's per-frame state stops growing once the memory window is full: what it holds
    after 60 frames equals what it holds after 30, and the masks match unpruned tracking."""
    s = opened(ctx, make_clip(upload_path / "long.mp4", frames=60))
    tt.add_prompt(ctx, s, KEY, 0, point=(45, 120))
    held = []
    for step in tt.propagate(ctx, s, KEY, "forward"):
        held.append(Sam2VideoBundle.held(s.engine))
        if step.done > MEMORY_WINDOW + 2:
            assert held[-1] == held[MEMORY_WINDOW + 1], held
    assert max(held) <= MEMORY_WINDOW + 2
    s.close()


def test_several_objects_keep_their_own_masks_and_undo_works(ctx: Any, clip: Path) -> None:
    s = opened(ctx, clip)
    tt.add_prompt(ctx, s, KEY, 0, point=(45, 120))
    tt.new_object(s, "background")
    tt.add_prompt(ctx, s, KEY, 0, point=(250, 30))
    assert set(s.results[0]) == {1, 2} and s.objects == ["Object 1", "background"]
    tt.add_prompt(ctx, s, KEY, 0, point=(200, 200), include=False)
    tt.undo(ctx, s, KEY)
    assert len(s.prompts) == 2 and set(s.results[0]) == {1, 2}
    for _ in range(tt.MAX_OBJECTS - 2):
        tt.new_object(s)
    with pytest.raises(InputError, match="At most 8"):
        tt.new_object(s)
    s.close()


def test_rotation_metadata_is_honoured_and_variable_frame_rate_keeps_times(ctx: Any, upload_path: Path) -> None:
    s = opened(ctx, make_clip(upload_path / "rot.mp4", frames=4, rotation=90))
    assert s.video.original_size == (H, W) and s.video.size == (H, W)  # portrait
    assert any("rotated" in n for n in s.video.notes)
    s.close()
    v = opened(ctx, make_clip(upload_path / "vfr.mp4", frames=8, vfr=True))
    gaps = np.diff(v.video.times)
    assert gaps.max() > 2 * gaps.min(), v.video.times  # each frame keeps its own time
    v.close()


def _bad(upload_path: Path) -> dict[str, tuple[Path, str]]:
    text = upload_path / "notes.mp4"
    text.write_text("this is not a video")
    truncated = upload_path / "cut.mp4"
    make_clip(upload_path / "whole.mp4")
    truncated.write_bytes((upload_path / "whole.mp4").read_bytes()[:1500])
    one = make_clip(upload_path / "one.mp4", frames=1)
    audio = upload_path / "tone.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    huge = make_clip(upload_path / "huge.mp4", frames=2, size=(4352, 240))
    return {"text": (text, "not a video"), "truncated": (truncated, "not a video|could not be decoded|at least 2"),
            "one frame": (one, "at least 2 frames"), "audio only": (audio, "no video track"),
            "huge": (huge, "4096 pixels")}  # fmt: skip


def test_bad_videos_get_a_specific_message(ctx: Any, upload_path: Path, clip: Path) -> None:
    import re

    for what, (path, message) in _bad(upload_path).items():
        with pytest.raises(InputError) as caught:
            opened(ctx, path)
        assert re.search(message, str(caught.value)), (what, str(caught.value))
    s = opened(ctx, clip)  # and the next clip works
    with pytest.raises(InputError, match="Click on an object"):
        list(tt.propagate(ctx, s, KEY, "forward"))
    with pytest.raises(InputError, match="inside the frame"):
        tt.add_prompt(ctx, s, KEY, 0, point=(W + 5, 10))
    with pytest.raises(InputError, match="between 0 and 29"):
        tt.add_prompt(ctx, s, KEY, 30, point=(10, 10))
    with pytest.raises(InputError, match="at least 2 frames"):
        opened(ctx, clip, start=29)
    s.close()


def test_a_long_run_on_a_slow_machine_asks_for_a_shorter_range(ctx: Any, clip: Path) -> None:
    s = opened(ctx, clip)
    tt.add_prompt(ctx, s, KEY, 0, point=(45, 120))
    s.frame_seconds = 60.0  # as measured on a slow machine: 29 frames = 29 minutes
    with pytest.raises(InputError, match="at most 15 frames"):
        list(tt.propagate(ctx, s, KEY, "forward"))
    s.close()


def test_two_users_tracking_at_once_stay_apart(ctx: Any, upload_path: Path) -> None:
    a, b = opened(ctx, make_clip(upload_path / "a.mp4")), opened(ctx, make_clip(upload_path / "b.mp4", frames=20))
    tt.add_prompt(ctx, a, KEY, 0, point=(45, 120))
    tt.add_prompt(ctx, b, KEY, 0, point=(250, 30))
    errors: list[BaseException] = []

    def run(s: tt.TrackSession) -> None:
        try:
            list(tt.propagate(ctx, s, KEY, "forward"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(a.results) == 30 and len(b.results) == 20
    assert a.folder != b.folder and a.video.frames.path != b.video.frames.path
    a.close()
    b.close()


def test_the_track_endpoint_answers_in_the_original_pixels(client: Any) -> None:
    from gradio_client import handle_file

    import app

    doc, overlay = client.predict(handle_file(str(app.ASSETS / "coffee-pan.mp4")),
                                  [{"frame": 5, "object": 1, "points": [[190, 130]], "labels": [1]}], KEY, "both",
                                  api_name="/track")  # fmt: skip
    assert doc["video"]["width"] == 384 and len(doc["annotations"]) == 36
    assert rle_decode(doc["annotations"][0]["segmentation"]).shape == (256, 384)
    assert Path(overlay).stat().st_size > 0


@pytest.mark.browser
def test_the_track_tab_in_a_browser(page: Any, app_url: str, artifacts: Path) -> None:
    """Pick the example clip, open it, click the cup, track both ways, see the tracked video."""
    from tests.browsing import error_badges, open_tab, pick_example

    page.goto(app_url)
    open_tab(page, "Track")
    pick_example(page, "track-examples")
    page.locator("#track-video video").first.wait_for()
    page.locator("#track-open").click()
    canvas = page.locator("#track-canvas img")
    canvas.wait_for()
    page.locator("#track-status").get_by_text("0 of 36 frames tracked").wait_for()
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.locator("#track-status").get_by_text("1 click(s)").wait_for()
    page.locator("#track-run").click()
    page.locator("#track-status").get_by_text("36 of 36 frames tracked").wait_for()
    page.locator("#track-overlay video").first.wait_for()
    src = page.locator("#track-overlay video").first.get_attribute("src")
    assert src and src.endswith(".mp4")
    page.locator("#track-files").get_by_text("masks-coco", exact=False).first.wait_for()
    assert error_badges(page) == []
    page.screenshot(path=str(artifacts / "track-tab.png"), full_page=True)


def test_the_upload_route_takes_a_video_but_an_image_over_20_mb_is_still_refused(app_url: str) -> None:
    import os

    from tests import rawqueue
    from tests.test_app import _multipart, fetch

    body, ctype = _multipart("big.png", os.urandom(21 * 1000 * 1000))
    status, text, _ = fetch(f"{app_url}/gradio_api/upload", "POST", body, {"Content-Type": ctype})
    assert status == 200
    path = json.loads(text)[0]
    out = rawqueue.call(app_url, "depth", [{"path": path, "meta": {"_type": "gradio.FileData"}},
                                           "depth-anything-v2-small", "gray", False, 60])  # fmt: skip
    assert out.success is False and "too large" in out.error and "20 MB" in out.error


def test_a_box_prompt_and_the_session_crosses_a_process_boundary(ctx: Any, clip: Path) -> None:
    """A box on a later frame refines the object; the session pickles (ZeroGPU) as paths and RLE,
    not pixels, and the copy goes on tracking."""
    import pickle

    s = opened(ctx, clip)
    tt.add_prompt(ctx, s, KEY, 0, point=(45, 120))
    tt.add_prompt(ctx, s, KEY, 10, box=square_at(10))
    assert {0, 10} <= set(s.results) and s.prompts[-1].box == tuple(float(v) for v in square_at(10))
    blob = pickle.dumps(s)
    assert len(blob) < 200_000, "frames and the model's features must not travel with the session"
    copy = pickle.loads(blob)
    assert np.array_equal(copy.video.frames[7], s.video.frames[7])
    list(tt.propagate(ctx, copy, KEY, "forward"))
    assert sorted(copy.results) == list(range(30))
    with pytest.raises(InputError, match="inside the frame"):
        tt.add_prompt(ctx, s, KEY, 0, box=(10, 10, W + 40, 50))
    s.close()


def test_pruned_tracking_gives_the_masks_of_unpruned_tracking(ctx: Any, upload_path: Path, monkeypatch: Any) -> None:
    """Dropping outputs outside the memory window changes nothing SAM 2 reads: same masks and
    scores as keeping every frame's outputs, over a clip three windows long."""
    from model_loaders.families import sam2

    s = opened(ctx, make_clip(upload_path / "window.mp4", frames=3 * MEMORY_WINDOW))
    tt.add_prompt(ctx, s, KEY, 0, point=(45, 120))
    list(tt.propagate(ctx, s, KEY, "forward"))
    pruned = {f: dict(r) for f, r in s.results.items()}
    monkeypatch.setattr(sam2, "MEMORY_WINDOW", 10**9)
    s.engine = s.engine_key = None  # start the model's session again, now keeping everything
    list(tt.propagate(ctx, s, KEY, "forward"))
    assert Sam2VideoBundle.held(s.engine) > 2 * MEMORY_WINDOW  # it really kept everything
    for f, found in pruned.items():
        (rle_a, score_a), (rle_b, score_b) = found[1], s.results[f][1]
        assert np.isfinite(score_a) and 0.0 <= score_a <= 1.0
        assert rle_a == rle_b and score_a == pytest.approx(score_b, abs=1e-5), f
    s.close()
