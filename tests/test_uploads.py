"""The upload gate, attacked the way an attacker would: hand-made queue payloads naming any path.

Every endpoint that takes an image is called through the raw queue protocol (no upload, no
``gradio_client``) with paths outside the uploads, special files, links out of the upload
folder, a folder, a FIFO, the app's own output files, and values that are not files at all.
Each must be refused with the same short message (so existence is not leaked), read nothing
(memory unchanged), and leave the server answering the next valid call.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import app
from model_loaders.core.errors import InputError
from model_loaders.core.uploads import NOT_A_FILE, UPLOAD_AGAIN, UploadGate
from tests.rawqueue import call

CAT = str(app.ASSETS / "cat.jpg")
REPO_IMAGE = str(app.ROOT / "docs" / "screenshot.jpg")  # an image outside every allowed folder


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# Each public endpoint that takes an image: (api_name, arguments with the image first).
ENDPOINTS: dict[str, list[Any]] = {
    "segment": [None, [[40, 40]], [1], None, "sam2.1-hiera-tiny", True],
    "depth": [None, "depth-anything-v2-small", "Spectral_r", False, 60],
    "detect": [None, "rf-detr-nano", 0.25, 0.7, ""],
    "ask": [None, "florence-2-base", "<CAPTION>", ""],
    "compare": [None, "depth", "depth-anything-v2-small,depth-anything-v2-metric-indoor-small", "", 0.3, ""],
    "workflow": [None, "rf-detr-nano", "", 0.3, 8, "qwen2.5-vl-3b", '{"type": "object", "properties": {"t": {"type": "string"}}}',
                 False],
}


def _with_image(api: str, image: Any) -> list[Any]:
    return [image, *ENDPOINTS[api][1:]]


def _file(path: str, meta: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"path": path, "orig_name": Path(path).name}
    if meta:
        data["meta"] = {"_type": "gradio.FileData"}
    return data


@pytest.fixture(scope="module")
def hostile(upload_path_session: Path, ctx: Any) -> dict[str, Any]:
    """Paths an attacker names: outside, special, linked out, a folder, a FIFO, our outputs."""
    folder = upload_path_session / "hostile"
    folder.mkdir()
    (folder / "link-out.jpg").symlink_to(REPO_IMAGE)
    (folder / "link-etc").symlink_to("/etc")
    os.mkfifo(folder / "fifo.png")
    (folder / "a-folder.png").mkdir()
    output = ctx.outputs.new_dir("probe") / "someone-elses-mask.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(output)
    return {
        "repo image outside the uploads": _file(REPO_IMAGE),
        "repo image, with gradio's meta": _file(REPO_IMAGE, meta=True),
        "/etc/shadow": _file("/etc/shadow"),
        "missing file": _file("/nonexistent/missing.png"),
        "/dev/zero": _file("/dev/zero"),
        "/proc/self/environ": _file("/proc/self/environ"),
        "dot-dot out of the upload folder": _file(str(folder) + "/../../../../../etc/passwd"),
        "symlink out of the upload folder": _file(str(folder / "link-out.jpg")),
        "symlinked folder out": _file(str(folder / "link-etc" / "passwd")),
        "a folder": _file(str(folder / "a-folder.png")),
        "a FIFO": _file(str(folder / "fifo.png")),
        "the app's own output file": _file(str(output)),
        "plain string path": REPO_IMAGE,
        "a number": 5,
        "a list": [1, 2, 3],
        "a dict without a path": {"url": "http://169.254.169.254/latest/meta-data/"},
    }


HOSTILE_CASES = [
    "repo image outside the uploads", "/etc/shadow", "missing file", "/dev/zero", "/proc/self/environ",
    "dot-dot out of the upload folder", "symlink out of the upload folder", "symlinked folder out", "a folder",
    "a FIFO", "the app's own output file", "plain string path",
]  # fmt: skip


@pytest.mark.parametrize("case", HOSTILE_CASES)
@pytest.mark.parametrize("api", ["segment", "depth", "detect", "ask"])
def test_every_image_endpoint_refuses_every_hostile_path_with_one_message(app_url, hostile, api, case):
    before = _rss_bytes()
    outcome = call(app_url, api, _with_image(api, hostile[case]), timeout=60)
    assert outcome.success is False, f"{api} accepted {case}: {outcome.data!r:.200}"
    assert outcome.error == UPLOAD_AGAIN, outcome.error
    assert _rss_bytes() - before < 64 * 2**20, "nothing was read into memory"


@pytest.mark.parametrize("api", ["compare", "workflow"])
@pytest.mark.parametrize("case", ["repo image outside the uploads", "/dev/zero", "a FIFO", "plain string path"])
def test_compare_and_workflow_refuse_hostile_paths_too(app_url, hostile, api, case):
    outcome = call(app_url, api, _with_image(api, hostile[case]), timeout=60)
    assert outcome.success is False and outcome.error == UPLOAD_AGAIN, outcome.error


def test_gradios_own_marker_does_not_open_a_way_round(app_url, hostile):
    # With the FileData marker, Gradio's own check refuses it first; the file never comes back.
    outcome = call(app_url, "detect", _with_image("detect", hostile["repo image, with gradio's meta"]))
    assert outcome.success is False and not outcome.data


@pytest.mark.parametrize(("case", "message"), [("a number", NOT_A_FILE), ("a list", NOT_A_FILE),
                                               ("a dict without a path", "Upload an image first.")])  # fmt: skip
def test_a_value_that_is_not_a_file_at_all_gets_the_apps_message(app_url, hostile, case, message):
    for api in ("segment", "depth"):
        outcome = call(app_url, api, _with_image(api, hostile[case]))
        assert outcome.success is False and outcome.error == message, outcome.error


def test_the_next_valid_call_works_after_every_refusal(app_url, hostile):
    for case in ("/dev/zero", "a FIFO", "plain string path"):
        assert call(app_url, "detect", _with_image("detect", hostile[case])).success is False
    ok = call(app_url, "detect", _with_image("detect", _file(CAT)))
    assert ok.success, ok.error
    payload = ok.data[0]
    assert payload["image"]["width"] > 0


def test_an_upload_through_gradios_route_is_accepted(client):
    from gradio_client import handle_file

    payload, _ = client.predict(handle_file(CAT), "rf-detr-nano", 0.25, 0.7, "", api_name="/detect")
    assert payload["model"] == "rf-detr-nano"


# --- the gate itself (no server) --------------------------------------------------------------


def test_gate_size_is_checked_before_reading(tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:  # a sparse 30 MB file: nothing to read if the cap is checked first
        fh.truncate(30 * 2**20)
    gate = UploadGate.for_folders([tmp_path], max_bytes=20 * 2**20)
    with pytest.raises(InputError, match="too large"):
        gate.read({"path": str(big)})


def test_gate_files_are_read_whole_and_named(tmp_path):
    f = tmp_path / "photo.png"
    f.write_bytes(b"\x89PNG not really")
    data, name = UploadGate.for_folders([tmp_path]).read(str(f))
    assert data == b"\x89PNG not really" and name == "photo.png"


def test_gate_refuses_a_sibling_folder_with_a_common_prefix(tmp_path):
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads-evil").mkdir()
    f = tmp_path / "uploads-evil" / "x.png"
    f.write_bytes(b"x")
    with pytest.raises(InputError, match="upload it again"):
        UploadGate.for_folders([tmp_path / "uploads"]).read(str(f))


def test_output_folders_are_private(ctx):
    folder = ctx.outputs.new_dir("probe")
    mode = stat.S_IMODE(folder.stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)
    upload_folder = Path(ctx.uploads.roots[0])
    assert stat.S_IMODE(upload_folder.stat().st_mode) & 0o077 == 0


def test_a_model_that_cannot_do_the_task_is_refused_before_loading(app_url, ctx):
    before = {str(i.key) for i in ctx.cache.snapshot()}
    outcome = call(app_url, "ask", [_file(CAT), "depth-anything-v2-large", "What is this?", ""])
    assert outcome.success is False
    assert outcome.error.startswith("Depth Anything V2 Large cannot answer questions"), outcome.error
    assert "depth-anything-v2-large" not in {str(i.key) for i in ctx.cache.snapshot()} - before


# --- the output space: capped, oldest first, private -----------------------------------------------


def test_output_space_keeps_within_its_cap_removing_the_oldest_first(tmp_path):
    import time as _time

    from model_loaders.core.outputs import OutputSpace

    space = OutputSpace(tmp_path / "out", cap_bytes=2500, max_age_s=3600)
    now = _time.time()
    folders = []
    for i in range(4):
        folder = space.new_dir("depth")
        (folder / "map.bin").write_bytes(b"x" * 1000)
        os.utime(folder, (now - 100 + i, now - 100 + i))  # distinct ages, oldest first
        folders.append(folder)
    newest = space.new_dir("depth")  # pruning happens when a folder is made
    kept = {f for _, _, f in space.folders()}
    assert kept == {folders[2], folders[3], newest}, "the two oldest went; the rest fit 2,500 bytes"
    assert space.used_bytes() <= 2500


def test_output_space_removes_expired_folders_whatever_the_total(tmp_path):
    import time as _time

    from model_loaders.core.outputs import OutputSpace

    space = OutputSpace(tmp_path / "out", cap_bytes=10**9, max_age_s=60)
    old = space.new_dir("detect")
    os.utime(old, (_time.time() - 120, _time.time() - 120))
    fresh = space.new_dir("detect")
    assert not old.exists() and fresh.exists()
