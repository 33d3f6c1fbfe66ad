"""Track task: click objects in a video, follow them through it (SAM 2.1 video). Gradio-free.

A `TrackSession` is one user's clip: the decoded frames (on disk, `core.video.FrameStore`),
up to `MAX_OBJECTS` named objects, the prompts (clicks and boxes on any frame, undoable), the
per-frame results (COCO RLE at working size plus the model's object score) and the model's own
tracking session. `propagate` is a generator (one step per frame: progress, a preview, Stop
keeps what is done). `export` writes the overlay MP4 (H.264, source fps), the masks as COCO
RLE JSON and a ZIP of PNG masks at the original video's size, and the per-frame confidence.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from model_loaders.core.errors import InputError
from model_loaders.core.results import Timings
from model_loaders.core.specs import ModelSpec
from model_loaders.core.video import MAX_VIDEO_MB, DecodedVideo, decode
from model_loaders.tasks.base import checked_spec, model_for
from model_loaders.tasks.segment import resize_mask, rle_decode, rle_encode

MAX_OBJECTS = 8
DIRECTIONS = ("forward", "backward", "both")
# Longest run started without asking for a shorter range (estimated from the measured frame time).
MAX_RUN_SECONDS = 15 * 60
NO_VIDEO = "Open a video first (upload one or pick the example, then press Open)."
NO_PROMPT = "Click on an object in a frame first: tracking follows what you clicked."


@dataclass(frozen=True)
class Prompt:
    """One click or box on one frame for one object (working pixels; ``frame`` indexes the store)."""

    frame: int
    obj: int
    point: tuple[float, float] | None = None
    include: bool = True
    box: tuple[float, float, float, float] | None = None


@dataclass
class TrackStep:
    """One propagation step, for progress and preview."""

    frame: int
    done: int
    total: int
    fps: float
    stopped: bool = False


@dataclass
class TrackSession:
    """One user's clip and everything tracked in it."""

    video: DecodedVideo | None = None
    name: str = "video"
    model: str = ""
    objects: list[str] = field(default_factory=lambda: ["Object 1"])
    active: int = 1
    prompts: list[Prompt] = field(default_factory=list)
    results: dict[int, dict[int, tuple[dict[str, Any], float]]] = field(default_factory=dict)
    stale: bool = False  # prompts changed since the last propagation
    corner: tuple[int, float, float] | None = None  # a box's first corner (frame, x, y), until the second
    frame_seconds: float | None = None  # measured per frame on this machine
    engine: Any = field(default=None, repr=False)  # the model's tracking session
    engine_key: tuple[str, int] | None = None  # (model, prompts) the engine reflects
    folder: Path | None = None
    concepts: tuple[str, ...] = ()  # tracked by words (SAM 3) rather than by clicks

    def __deepcopy__(self, memo: dict[int, Any]) -> TrackSession:
        return TrackSession()  # gr.State copies its initial value per browser session: start empty

    def __getstate__(self) -> dict[str, Any]:
        # Crossing a process boundary (ZeroGPU): the model's session holds CUDA tensors and
        # megabytes of features; it is rebuilt from the prompts on the other side.
        return {**self.__dict__, "engine": None, "engine_key": None}

    def close(self) -> None:
        """Delete the decoded frames (the session ended or a new clip replaced it)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder, self.video, self.engine, self.engine_key = None, None, None, None

    @property
    def frames(self) -> int:
        """Frames in the opened range."""
        return len(self.video.frames) if self.video is not None else 0


def track_spec(ctx: Any, model: Any) -> ModelSpec:
    """A model that can track clicked objects in a video and runs here."""
    spec = checked_spec(ctx, model, "track", "one of the SAM 2.1 models")
    if not spec.accepts("points"):
        raise InputError(f"{spec.name} follows what you name, not clicks: type it under Track by words.")
    return spec


def open_video(ctx: Any, session: TrackSession, source: Any, start: Any = None, end: Any = None) -> TrackSession:
    """Decode frames [start, end) of an uploaded clip into the session (everything else resets).

    Raises:
        InputError: see `core.video` (not a video, no video track, too long, ...).
    """
    data, name = ctx.uploads.read(source, max_bytes=MAX_VIDEO_MB * 2**20)
    folder = Path(tempfile.mkdtemp(prefix="vp-track-"))
    try:
        video = decode(data, folder, start, end)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    session.close()
    session.video, session.folder, session.name = video, folder, Path(name).stem[:40] or "video"
    session.objects, session.active, session.prompts, session.results = ["Object 1"], 1, [], {}
    session.corner, session.concepts = None, ()
    session.stale, session.frame_seconds = False, None
    return session


def _need_video(session: TrackSession) -> DecodedVideo:
    if session.video is None:
        raise InputError(NO_VIDEO)
    return session.video


def frame_index(session: TrackSession, frame: Any) -> int:
    """A frame number of the opened range, checked."""
    video = _need_video(session)
    try:
        f = int(float(frame))
    except (TypeError, ValueError):
        raise InputError("The frame must be a whole number.") from None
    if not 0 <= f < len(video.frames):
        raise InputError(f"Choose a frame between 0 and {len(video.frames) - 1}.")
    return f


def new_object(session: TrackSession, name: Any = None) -> TrackSession:
    """Add an object (at most `MAX_OBJECTS`) and make it the active one."""
    if len(session.objects) >= MAX_OBJECTS:
        raise InputError(f"At most {MAX_OBJECTS} objects can be tracked at once.")
    label = str(name).strip()[:40] if isinstance(name, str) and name.strip() else f"Object {len(session.objects) + 1}"
    session.objects.append(label)
    session.active = len(session.objects)
    return session


def choose_object(session: TrackSession, obj: Any) -> TrackSession:
    """Make object ``obj`` (1-based id or its name) the active one."""
    if isinstance(obj, str) and obj in session.objects:
        session.active = session.objects.index(obj) + 1
        return session
    try:
        index = int(obj)
    except (TypeError, ValueError):
        raise InputError("Choose one of the objects.") from None
    if not 1 <= index <= len(session.objects):
        raise InputError("Choose one of the objects.")
    session.active = index
    return session


def _frame_prompts(session: TrackSession, frame: int) -> dict[int, tuple[list[tuple[float, float]], list[int], Any]]:
    out: dict[int, tuple[list[tuple[float, float]], list[int], Any]] = {}
    for p in session.prompts:
        if p.frame != frame:
            continue
        points, labels, box = out.get(p.obj, ([], [], None))
        if p.point is not None:
            points.append(p.point)
            labels.append(1 if p.include else 0)
        if p.box is not None:
            box = p.box
        out[p.obj] = (points, labels, box)
    return out


def _store(session: TrackSession, frame: int, found: dict[int, tuple[np.ndarray, float]]) -> None:
    session.results[frame] = {obj: (rle_encode(mask), score) for obj, (mask, score) in found.items()}


def _engine(ctx: Any, session: TrackSession, tracker: Any, key: str) -> Any:
    """The model's session reflecting every prompt (rebuilt after an undo or a model change)."""
    if session.engine is not None and session.engine_key == (key, len(session.prompts)):
        return session.engine
    video = _need_video(session)
    w, h = video.size
    engine = tracker.new_session((h, w), len(video.frames))
    for frame in sorted({p.frame for p in session.prompts}):
        _store(session, frame, tracker.prompt(engine, video.frames[frame], frame, _frame_prompts(session, frame)))
    session.engine, session.engine_key = engine, (key, len(session.prompts))
    return engine


def add_prompt(ctx: Any, session: TrackSession, model: Any, frame: Any, point: Any = None, include: bool = True,
               box: Any = None, obj: Any = None, timings: Timings | None = None) -> TrackSession:  # fmt: skip
    """Add a click (or a box) on ``frame`` for the active object (or ``obj``) and show the result there.

    Raises:
        InputError: no video, a frame or point outside the clip, an unknown object.
    """
    spec = track_spec(ctx, model)
    video = _need_video(session)
    f = frame_index(session, frame)
    w, h = video.size
    target = session.active if obj is None else choose_object(session, obj).active
    if point is not None:
        x, y = (float(v) for v in point)
        if not (0 <= x < w and 0 <= y < h):
            raise InputError(f"Click inside the frame ({w}×{h}).")
        prompt = Prompt(f, target, point=(x, y), include=bool(include))
    elif box is not None:
        x1, y1, x2, y2 = (float(v) for v in box)
        x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
        if x2 - x1 < 2 or y2 - y1 < 2 or x1 < 0 or y1 < 0 or x2 > w or y2 > h:
            raise InputError(f"Draw the box inside the frame ({w}×{h}).")
        prompt = Prompt(f, target, box=(x1, y1, x2, y2))
    else:
        raise InputError("Click on the frame to add a point.")
    if session.concepts:  # a click after tracking by words starts over with clicked objects
        session.objects, session.active, session.results, session.concepts = ["Object 1"], 1, {}, ()
        prompt = replace(prompt, obj=1)
        session.engine, session.engine_key = None, None
    timings = timings if timings is not None else Timings()
    with model_for(ctx, spec, "track", timings) as tracker:
        engine = _engine(ctx, session, tracker, spec.key)
        session.prompts.append(prompt)
        start = time.perf_counter()
        with timings.stage("inference"):
            # Only this object's prompts change; the pass returns every object on the frame.
            _store(session, f, tracker.prompt(engine, video.frames[f], f, {prompt.obj: _frame_prompts(session, f)[prompt.obj]}))
        session.frame_seconds = time.perf_counter() - start
        session.engine_key = (spec.key, len(session.prompts))
    session.model, session.stale = spec.key, bool(len(session.results) > len({p.frame for p in session.prompts}))
    return session


def undo(ctx: Any, session: TrackSession, model: Any) -> TrackSession:
    """Remove the last prompt; the prompted frames are shown again without it."""
    if not session.prompts:
        raise InputError("Nothing to undo.")
    removed = session.prompts.pop()
    if not any(p.frame == removed.frame for p in session.prompts):
        session.results.pop(removed.frame, None)
    session.engine, session.engine_key, session.stale = None, None, True
    if session.prompts:
        spec = track_spec(ctx, model)
        with model_for(ctx, spec, "track", Timings()) as tracker:
            _engine(ctx, session, tracker, spec.key)
    return session


def estimate_seconds(session: TrackSession, frames: int) -> float | None:
    """Expected run time for ``frames`` frames, from the measured time of one frame here."""
    return None if session.frame_seconds is None else session.frame_seconds * frames


def _range(session: TrackSession, start: Any, end: Any) -> tuple[int, int]:
    video = _need_video(session)
    lo = 0 if start in (None, "") else frame_index(session, start)
    hi = len(video.frames) if end in (None, "") else frame_index(session, end) + 1
    if hi - lo < 1:
        raise InputError("The tracking range is empty: the end frame comes before the start frame.")
    return lo, hi


def _check_time(session: TrackSession, frames: int) -> None:
    guess = estimate_seconds(session, frames)
    if guess is not None and guess > MAX_RUN_SECONDS and session.frame_seconds:
        fits = int(MAX_RUN_SECONDS / session.frame_seconds)
        raise InputError(f"Tracking {frames:,} frames would take about {guess / 60:.0f} minutes on this machine "
                         f"({session.frame_seconds:.1f} s a frame): choose a range of at most {fits:,} frames.")  # fmt: skip


def _order(session: TrackSession, direction: str, lo: int, hi: int) -> list[tuple[int, bool]]:
    prompted = sorted({p.frame for p in session.prompts})
    first, last = prompted[0], prompted[-1]
    forward = [(f, False) for f in range(max(first, lo), hi)]
    backward = [(f, True) for f in range(min(last, hi - 1), lo - 1, -1)]
    if direction == "forward":
        return forward
    if direction == "backward":
        return backward
    return forward + [(f, True) for f in range(min(first, hi) - 1, lo - 1, -1)]  # the clicked frame once


def propagate(ctx: Any, session: TrackSession, model: Any, direction: Any = "forward", start: Any = None,
              end: Any = None, stop: threading.Event | None = None) -> Iterator[TrackStep]:  # fmt: skip
    """Track every object through frames [start, end) of the opened range, one frame per step.

    Raises:
        InputError: no video, no prompt, a bad direction or range, a run estimated to take
            longer than `MAX_RUN_SECONDS` on this machine (with the range that would fit).
    """
    spec = track_spec(ctx, model)
    video = _need_video(session)
    if not session.prompts:
        raise InputError(NO_PROMPT)
    if direction not in DIRECTIONS:
        raise InputError(f"Direction: one of {', '.join(DIRECTIONS)}.")
    lo, hi = _range(session, start, end)
    order = _order(session, str(direction), lo, hi)
    if not order:
        raise InputError("No frames to track in that direction from the clicked frames: change the direction or range.")
    _check_time(session, len(order))
    stop = stop or threading.Event()
    timings = Timings()
    with model_for(ctx, spec, "track", timings) as tracker:
        engine = _engine(ctx, session, tracker, spec.key)
        session.model = spec.key
        began = time.perf_counter()
        for done, (frame, reverse) in enumerate(order, 1):
            if stop.is_set():
                yield TrackStep(frame, done - 1, len(order), (done - 1) / max(time.perf_counter() - began, 1e-9), True)
                break
            _store(session, frame, tracker.step(engine, video.frames[frame], frame, reverse))
            elapsed = time.perf_counter() - began
            session.frame_seconds = elapsed / done
            yield TrackStep(frame, done, len(order), done / max(elapsed, 1e-9))
    session.stale = False


WORDS_MODEL = "sam3"
MAX_CONCEPTS = 4


def track_words(ctx: Any, session: TrackSession, concepts: Any, start: Any = None, end: Any = None,
                stop: threading.Event | None = None, model: Any = WORDS_MODEL) -> Iterator[TrackStep]:  # fmt: skip
    """Find every instance of the named concepts and follow them forward through frames [start, end)
    (SAM 3 video), one frame per step; instances appearing mid-clip become new objects (at most
    `MAX_OBJECTS`, named "<concept> <n>"). Clicks, objects and results of the clip start over.

    Raises:
        InputError: no video, no concept (or only punctuation), too many, a bad range, a run
            estimated to take longer than `MAX_RUN_SECONDS` here, a model that cannot do it.
    """
    from model_loaders.core.validate import clean_text
    from model_loaders.tasks.detect import MAX_PROMPT_CHARS, parse_prompt

    spec = checked_spec(ctx, model, "track", "SAM 3")
    if not spec.open_vocabulary:
        raise InputError(f"{spec.name} follows clicks, not words: use sam3 to track by words.")
    video = _need_video(session)
    words, _ = parse_prompt(clean_text(concepts, "What to track", MAX_PROMPT_CHARS))
    if len(words) > MAX_CONCEPTS:
        raise InputError(f"Track at most {MAX_CONCEPTS} kinds of thing at once (you named {len(words)}).")
    lo, hi = _range(session, start, end)
    if session.concepts and session.model == spec.key:
        _check_time(session, hi - lo)  # the last words run measured this model's frame time
    session.objects, session.active, session.prompts, session.results = [], 1, [], {}
    session.engine, session.engine_key, session.corner, session.concepts = None, None, None, tuple(words)
    session.model, session.frame_seconds = spec.key, None
    stop = stop or threading.Event()
    ids: dict[int, int] = {}  # the model's object id -> our object number
    with model_for(ctx, spec, "track", Timings()) as tracker:
        engine = tracker.new_session(video.size[::-1], hi - lo)
        tracker.add_concepts(engine, words)
        session.engine = engine  # engine_key stays None: a later click builds a click tracker's session
        began = time.perf_counter()
        for done, frame in enumerate(range(lo, hi), 1):
            if stop.is_set():
                yield TrackStep(frame, done - 1, hi - lo, (done - 1) / max(time.perf_counter() - began, 1e-9), True)
                break
            found = tracker.step(engine, video.frames[frame], frame - lo)
            for obj_id in sorted(found):
                if obj_id not in ids and len(session.objects) < MAX_OBJECTS:
                    concept = tracker.concept_of(engine, obj_id)
                    n = sum(1 for name in session.objects if name.rsplit(" ", 1)[0] == concept) + 1
                    session.objects.append(f"{concept} {n}")
                    ids[obj_id] = len(session.objects)
            _store(session, frame, {ids[i]: v for i, v in found.items() if i in ids})
            elapsed = time.perf_counter() - began
            session.frame_seconds = elapsed / done
            yield TrackStep(frame, done, hi - lo, done / max(elapsed, 1e-9))
    if not session.objects:
        session.objects = ["Object 1"]  # nothing found: clicks can start from here
    session.stale = False


# --- outputs --------------------------------------------------------------------------------


def mask_at(session: TrackSession, frame: int, obj: int) -> np.ndarray | None:
    """Object ``obj``'s mask on ``frame`` at working size (``None`` if not tracked there)."""
    found = session.results.get(frame, {}).get(obj)
    return None if found is None else rle_decode(found[0])


def coco_document(session: TrackSession) -> dict[str, Any]:
    """Every tracked mask as COCO RLE at the original video's size, with its frame, time and score."""
    video = _need_video(session)
    size = video.original_size
    annotations = []
    for frame in sorted(session.results):
        for obj, (rle, score) in sorted(session.results[frame].items()):
            mask = resize_mask(rle_decode(rle), size)
            annotations.append({"frame": video.start + frame, "time": round(video.times[frame], 4), "object": obj,
                                "score": round(float(score), 4), "area": int(mask.sum()),
                                "segmentation": rle_encode(mask)})  # fmt: skip
    return {
        "video": {"name": session.name, "width": size[0], "height": size[1], "fps": video.info.fps,
                  "first_frame": video.start, "frames": len(video.frames)},  # fmt: skip
        "objects": [{"id": i + 1, "name": n} for i, n in enumerate(session.objects)],
        "concepts": list(session.concepts),  # tracked by words (SAM 3); empty for clicked objects
        "model": session.model,
        "annotations": annotations,
    }


def confidence(session: TrackSession) -> dict[str, Any]:
    """Per object: the frames' times and the model's object score there (for a plot)."""
    video = _need_video(session)
    out: dict[str, Any] = {}
    for obj, name in enumerate(session.objects, 1):
        frames = [f for f in sorted(session.results) if obj in session.results[f]]
        out[name] = {"frame": [video.start + f for f in frames], "time": [video.times[f] for f in frames],
                     "score": [session.results[f][obj][1] for f in frames]}  # fmt: skip
    return out


def write_overlay(session: TrackSession, path: Path, palette: list[tuple[int, int, int]]) -> Path:
    """The clip with every tracked mask drawn on it: H.264 MP4 (yuv420p, plays in browsers) at the
    source frame rate, at the working size (even width and height)."""
    import av

    video = _need_video(session)
    w, h = video.size
    w2, h2 = w - w % 2, h - h % 2
    fps = video.info.fps if video.info.fps and video.info.fps < 240 else 25.0
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", "movflags": "+faststart"}
        for frame in range(len(video.frames)):
            rgb = video.frames[frame].astype(np.float32)
            for obj, (rle, _) in session.results.get(frame, {}).items():
                mask = rle_decode(rle)
                colour = np.array(palette[(obj - 1) % len(palette)], dtype=np.float32)
                rgb[mask] = rgb[mask] * 0.45 + colour * 0.55
            image = av.VideoFrame.from_ndarray(rgb[:h2, :w2].clip(0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_mask_zip(session: TrackSession, path: Path) -> Path:
    """One PNG per object and tracked frame, at the original video's size."""
    video = _need_video(session)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for frame in sorted(session.results):
            for obj, (rle, _) in sorted(session.results[frame].items()):
                buf = io.BytesIO()
                Image.fromarray(resize_mask(rle_decode(rle), video.original_size).astype(np.uint8) * 255).save(buf, "PNG")
                archive.writestr(f"object{obj}/frame{video.start + frame:06d}.png", buf.getvalue())
    return path


def export(ctx: Any, session: TrackSession, palette: list[tuple[int, int, int]]) -> tuple[Path, Path, Path]:
    """(overlay MP4, COCO RLE JSON, PNG mask ZIP) in a fresh private output folder."""
    if not session.results:
        raise InputError("Nothing tracked yet: click an object and press Track.")
    folder = ctx.outputs.new_dir("track")
    overlay = write_overlay(session, folder / f"{session.name}-tracked.mp4", palette)
    doc = folder / f"{session.name}-masks-coco.json"
    doc.write_text(json.dumps(coco_document(session)))
    masks = write_mask_zip(session, folder / f"{session.name}-masks-png.zip")
    return overlay, doc, masks


MAX_PROMPTS = 64


def parse_prompts(session: TrackSession, prompts: Any) -> list[dict[str, Any]]:
    """API prompts (original video pixels) as working-pixel prompts, one click or box each.

    Each item: ``{"frame": n, "object": id, "points": [[x, y], ...], "labels": [1|0, ...]}`` and/or
    ``"box": [x1, y1, x2, y2]``.

    Raises:
        InputError: not a list of such objects, too many, an unknown object id, no point or box.
    """
    video = _need_video(session)
    if not isinstance(prompts, list) or not prompts:
        raise InputError(NO_PROMPT)
    scale = video.scale
    out: list[dict[str, Any]] = []
    for item in prompts:
        if not isinstance(item, dict):
            raise InputError('Each prompt is an object: {"frame": 0, "object": 1, "points": [[x, y]], "labels": [1]}.')
        obj = item.get("object", 1)
        if not isinstance(obj, int) or not 1 <= obj <= MAX_OBJECTS:
            raise InputError(f"A prompt's object is a number from 1 to {MAX_OBJECTS}.")
        f = frame_index(session, item.get("frame", 0))
        points, labels, box = item.get("points") or [], item.get("labels"), item.get("box")
        if not isinstance(points, list) or (labels is not None and (not isinstance(labels, list)
                                                                    or len(labels) != len(points))):  # fmt: skip
            raise InputError('"points" is a list of [x, y] and "labels" has one 1 or 0 per point.')
        if box is not None:
            if not isinstance(box, list) or len(box) != 4:
                raise InputError('"box" is [x1, y1, x2, y2].')
            out.append({"frame": f, "object": obj, "box": [float(v) * scale for v in box], "include": True})
        for i, point in enumerate(points):
            if not isinstance(point, list) or len(point) != 2:
                raise InputError('Each point is [x, y] in the video\'s pixels.')
            include = bool((labels or [1] * len(points))[i])
            out.append({"frame": f, "object": obj, "point": (float(point[0]) * scale, float(point[1]) * scale),
                        "include": include})  # fmt: skip
        if box is None and not points:
            raise InputError("Each prompt needs points or a box.")
    if len(out) > MAX_PROMPTS:
        raise InputError(f"At most {MAX_PROMPTS} clicks and boxes.")
    return out
