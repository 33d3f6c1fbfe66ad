"""Track by words: every instance of a named concept found and followed forward through a clip
(SAM 3 video, tiny weights built offline; the tiny model's detection thresholds are 0, so it
finds objects on any frame)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_loaders.core.errors import InputError
from model_loaders.families.sam3 import VIDEO_MEMORY_WINDOW, Sam3VideoBundle
from model_loaders.tasks import track as tt
from model_loaders.tasks.segment import rle_decode
from tests.test_track import KEY, make_clip, opened


@pytest.fixture()
def clip(upload_path: Path) -> Path:
    return make_clip(upload_path / "square.mp4", frames=20)


def test_a_concept_is_tracked_over_the_whole_range_with_new_objects_named(ctx: Any, clip: Path) -> None:
    s = opened(ctx, clip)
    steps = list(tt.track_words(ctx, s, "square, cup", start=4, end=15))
    assert [st.frame for st in steps] == list(range(4, 16)) and steps[-1].done == steps[-1].total == 12
    assert sorted(s.results) == list(range(4, 16))  # every frame of the range, none outside it
    assert s.concepts == ("square", "cup") and 0 < len(s.objects) <= tt.MAX_OBJECTS
    assert all(name.rsplit(" ", 1)[0] in {"square", "cup"} and name.rsplit(" ", 1)[1].isdigit() for name in s.objects)
    for frame, found in s.results.items():
        assert set(found) <= set(range(1, len(s.objects) + 1)), frame
        for rle, score in found.values():
            assert rle_decode(rle).shape == (240, 320) and 0.0 <= score <= 1.0
    doc = tt.coco_document(s)  # the exports work as for clicked objects
    assert [o["name"] for o in doc["objects"]] == s.objects and doc["concepts"] == ["square", "cup"]
    assert len(doc["annotations"]) == sum(len(found) for found in s.results.values()) > 0
    s.close()


def test_memory_stays_bounded_and_stop_keeps_what_is_done(ctx: Any, upload_path: Path) -> None:
    s = opened(ctx, make_clip(upload_path / "long.mp4", frames=40))
    held = []
    for _ in tt.track_words(ctx, s, "square"):
        held.append(Sam3VideoBundle.held(s.engine))
    assert max(held) <= (VIDEO_MEMORY_WINDOW + 2) * tt.MAX_OBJECTS and held[-1] == held[VIDEO_MEMORY_WINDOW + 4], held
    stop = threading.Event()
    steps = []
    for step in tt.track_words(ctx, s, "square", stop=stop):
        steps.append(step)
        if step.done == 3:
            stop.set()
    assert steps[-1].stopped and sorted(s.results) == [0, 1, 2]
    s.close()


def test_a_click_after_tracking_by_words_starts_over_with_clicked_objects(ctx: Any, clip: Path) -> None:
    s = opened(ctx, clip)
    list(tt.track_words(ctx, s, "square", end=3))
    assert s.concepts
    tt.add_prompt(ctx, s, KEY, 0, point=(45, 120))
    assert s.concepts == () and s.objects == ["Object 1"] and set(s.results) == {0} and set(s.results[0]) == {1}
    list(tt.propagate(ctx, s, KEY, "forward", end=5))
    assert sorted(s.results) == list(range(6))
    s.close()


def test_bad_requests_get_a_specific_message(ctx: Any, clip: Path) -> None:
    with pytest.raises(InputError, match="Open a video"):
        list(tt.track_words(ctx, tt.TrackSession(), "cup"))
    s = opened(ctx, clip)
    for words, message in (("", "classes to find|What to track"), (" ,;. ", "classes to find|What to track"),
                           ("a, b, c, d, e", "at most 4")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            list(tt.track_words(ctx, s, words))
    with pytest.raises(InputError, match="range is empty"):
        list(tt.track_words(ctx, s, "cup", start=10, end=5))
    with pytest.raises(InputError, match="clicks, not words"):
        list(tt.track_words(ctx, s, "cup", model=KEY))
    with pytest.raises(InputError, match="Track by words"):
        tt.add_prompt(ctx, s, "sam3", 0, point=(45, 120))  # SAM 3 video takes words, not clicks
    assert s.results == {} and np.asarray(s.video.frames[0]).shape == (240, 320, 3)  # nothing changed
    s.close()


def test_the_track_concepts_endpoint_covers_the_range_at_the_original_size(client: Any) -> None:
    from gradio_client import handle_file

    import app

    doc, overlay = client.predict(handle_file(str(app.ASSETS / "coffee-pan.mp4")), "cup, pan", 2, 7,
                                  api_name="/track_concepts")  # fmt: skip
    assert doc["concepts"] == ["cup", "pan"] and doc["video"]["first_frame"] == 2 and doc["video"]["frames"] == 6
    assert sorted({a["frame"] for a in doc["annotations"]}) == list(range(2, 8))
    assert rle_decode(doc["annotations"][0]["segmentation"]).shape == (256, 384)
    assert Path(overlay).stat().st_size > 0
