"""Segment everything (SAM 2.1): a grid of point prompts on one cached embedding, overlaps removed."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

import app
from model_loaders.core.errors import InputError
from model_loaders.families.sam2 import Sam2Bundle
from model_loaders.tasks import everything as ev
from model_loaders.tasks.segment import EmbeddingCache, rle_decode

KEY = "sam2.1-hiera-tiny"
CAT = {"path": str(app.ASSETS / "cat.jpg")}
LOOSE = {"score_floor": 0.0, "min_area": 0.0}  # tiny random weights predict IoU ~0.5


@pytest.fixture()
def encodes(monkeypatch: Any) -> list[int]:
    calls: list[int] = []
    real = Sam2Bundle.encode

    def counted(self: Any, *a: Any, **k: Any) -> Any:
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(Sam2Bundle, "encode", counted)
    return calls


def test_every_mask_from_one_encoding_without_duplicates(ctx: Any, encodes: list[int]) -> None:
    cache = EmbeddingCache()
    result = ev.collect(ctx, CAT, KEY, per_side=8, cache=cache, **LOOSE)
    assert len(encodes) == 1 and len(result.masks) > 0 and result.grid == 8
    assert result.masks.shape[1:] == result.image.array.shape[:2] and result.masks.dtype == bool
    areas = result.masks.reshape(len(result.masks), -1).sum(1)
    assert np.all(areas[:-1] >= areas[1:]), "largest first"
    flat = result.masks.reshape(len(result.masks), -1).astype(np.float32)
    inter = flat @ flat.T
    iou = inter / (areas[:, None] + areas[None, :] - inter)
    np.fill_diagonal(iou, 0)
    assert iou.max() <= ev.NMS_IOU + 0.05, "overlapping masks were removed"
    ev.collect(ctx, CAT, KEY, per_side=8, cache=cache, **LOOSE)
    assert len(encodes) == 1, "a second run on the same image reuses the embedding"


def test_floors_and_stop(ctx: Any) -> None:
    assert len(ev.collect(ctx, CAT, KEY, per_side=8, score_floor=1.01).masks) == 0  # nothing passes: empty, no error
    stop = threading.Event()
    steps = []
    for step in ev.run(ctx, CAT, KEY, per_side=16, stop=stop, **LOOSE):  # 256 points: 4 batches
        steps.append(step)
        if isinstance(step, ev.Progress):
            stop.set()
    progress = [s for s in steps if isinstance(s, ev.Progress)]
    assert len(progress) == 1 and progress[0].total == 4 and steps[-1].stopped
    for grid in (1, 65, "many"):
        with pytest.raises(InputError, match="grid"):
            ev.collect(ctx, CAT, KEY, per_side=grid)


def test_the_endpoint_gives_masks_at_the_original_size(client: Any) -> None:
    from gradio_client import handle_file

    doc, overlay = client.predict(handle_file(CAT["path"]), KEY, 6, api_name="/segment_everything")
    assert doc["image"] == {"width": 451, "height": 300} and doc["grid"] == 6
    for m in doc["masks"]:
        mask = rle_decode(m["segmentation"])
        assert mask.shape == (300, 451) and m["area"] == int(mask.sum())


@pytest.mark.browser
def test_the_button_in_the_segment_tab(page: Any, app_url: str) -> None:
    from tests.browsing import error_badges, open_tab, pick_example

    page.goto(app_url)
    open_tab(page, "Segment")
    pick_example(page, "segment-examples")
    page.locator("#segment-canvas img").wait_for()
    page.locator("#segment-everything").click()
    page.locator("#segment-summary").get_by_text("grid of points").wait_for()
    assert "masks" in page.locator("#segment-timing").inner_text() and error_badges(page) == []
