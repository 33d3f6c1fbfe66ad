"""Track tab: click objects in a video and follow them through it (SAM 2.1 video; UI only).

Everything about frames, prompts, tracking and exports is in ``model_loaders.tasks.track``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr
import numpy as np

from model_loaders.core.context import AppContext
from model_loaders.core.errors import InputError
from model_loaders.core.gpu_time import GpuJob
from model_loaders.core.results import Timings
from model_loaders.core.stopflags import StopFlags
from model_loaders.core.video import MAX_VIDEO_MB
from model_loaders.tasks import track as tt
from tabs import _render as draw
from tabs._components import JsonInput, example
from tabs._errors import user_errors
from tabs._events import light_event, model_event
from tabs._examples import ASSETS
from tabs._gpu import model_at, on_gpu
from tabs._picker import model_picker
from tabs._timing import timing_line

log = logging.getLogger(__name__)

TITLE = "Track"
INCLUDE, EXCLUDE = "Include (+)", "Exclude (−)"
POINT_MODE, BOX_MODE = "Point", "Box (2 clicks)"
EXAMPLE_VIDEO = ASSETS / "coffee-pan.mp4"
STATE_TTL_S = 1800
PREVIEW_EVERY_S = 0.25  # the preview follows the tracking at most 4 times a second
EMPTY = "Upload a video or pick the example, press **Open video**, then click on the object to track."


def _delete_session(session: Any) -> None:
    if isinstance(session, tt.TrackSession):
        session.close()


def palette(n: int = tt.MAX_OBJECTS) -> list[tuple[int, int, int]]:
    """The objects' colours (object ``i`` has the palette's colour ``i - 1``, as in every tab)."""
    return [draw.colour_rgb(i) for i in range(n)]


def frame_view(session: tt.TrackSession, frame: int) -> np.ndarray | None:
    """Frame ``frame`` with every object's mask there and that frame's clicks."""
    if session.video is None:
        return None
    f = min(max(0, int(frame)), session.frames - 1)
    shown = session.video.frames[f]
    for obj in range(1, len(session.objects) + 1):
        mask = tt.mask_at(session, f, obj)
        if mask is not None and mask.any():
            shown = draw.masks(shown, [mask], obj - 1)
    clicks = [p for p in session.prompts if p.frame == f and p.point is not None]
    boxes = [p.box for p in session.prompts if p.frame == f and p.box is not None]
    corner = session.corner[1:] if session.corner is not None and session.corner[0] == f else None
    return draw.prompts(shown, [p.point for p in clicks], [1 if p.include else 0 for p in clicks],  # type: ignore[misc]
                        boxes[-1] if boxes else None, corner)  # fmt: skip


def status_line(ctx: AppContext, session: tt.TrackSession, frame: int) -> str:
    """Where the user is: frame, clicks, frames tracked, and what tracking everything would take here."""
    if session.video is None:
        return EMPTY
    n = session.frames
    how = f"by words: {', '.join(session.concepts)}" if session.concepts else f"{len(session.prompts)} click(s)"
    parts = [f"frame {frame} of {n - 1}", how, f"{len(session.results)} of {n} frames tracked"]
    if session.stale and session.results:
        parts.append("clicks changed since tracking: press **Track** again")
    guess = tt.estimate_seconds(session, n)
    if guess is not None:
        parts.append(f"tracking all {n} frames here: about {guess:,.0f} s ({session.frame_seconds * 1000:,.0f} ms a frame)")  # type: ignore[operator]
    notes = "; ".join(session.video.notes)
    line = " · ".join(parts) + (f"\n\n{notes}" if notes else "")
    if ctx.weights_warning:
        line += f"\n\n⚠️ **{ctx.weights_warning}**"
    return line


def confidence_plot(session: tt.TrackSession) -> Any:
    """The model's object score per frame, one line per object."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (name, series) in enumerate(tt.confidence(session).items()):
        if series["frame"]:
            fig.add_trace(go.Scatter(x=series["frame"], y=series["score"], mode="lines", name=name,
                                     line={"color": draw.colour_hex(i)}))  # fmt: skip
    fig.update_layout(height=260, margin={"l": 50, "r": 10, "t": 10, "b": 40}, xaxis_title="frame",
                      yaxis_title="object score", yaxis_range=[0, 1.02], legend={"orientation": "h"})  # fmt: skip
    return fig


def build(ctx: AppContext) -> None:
    """Render the Track tab."""
    session = gr.State(tt.TrackSession(), time_to_live=STATE_TTL_S, delete_callback=_delete_session)
    cpu = ctx.settings.device == "cpu"
    gr.Markdown(
        "Follow objects through a video with SAM 2.1: open a clip, click an object on any frame (several "
        f"objects, up to {tt.MAX_OBJECTS}, each its own colour), then **Track** forwards, backwards or both. Click "
        "again on a later frame to correct it and track again. Downloads: the tracked video, every mask "
        "as COCO RLE (JSON) and as PNGs, at the original size. Or name what to follow (*Track by words*, SAM 3): "
        "every instance is found and tracked forward, new ones as they appear."
        + (" **Video tracking is a GPU feature:** on this CPU each frame takes a while; the run time is "
           "estimated from your first click before anything long starts." if cpu else ""),
        elem_classes=["intro"],
    )  # fmt: skip
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            video = gr.Video(label=f"Video (up to {MAX_VIDEO_MB} MB)", sources=["upload"], elem_id="track-video",
                             height=240)  # fmt: skip
            gr.Examples([str(EXAMPLE_VIDEO)], inputs=[video], label="Example", elem_id="track-examples")
            with gr.Row():
                first = gr.Number(0, label="First frame", precision=0, minimum=0, elem_id="track-first")
                last = gr.Number(0, label="Last frame (0: the end)", precision=0, minimum=0, elem_id="track-last")
            open_btn = gr.Button("Open video", variant="primary", elem_id="track-open")
            model = model_picker(ctx, "track", where=lambda spec: spec.accepts("points"), elem_id="track-model").dropdown
            obj = gr.Radio(["Object 1"], value="Object 1", label="Object (clicks go to this one)", elem_id="track-object")
            with gr.Row():
                new_name = gr.Textbox(label="New object's name", placeholder="e.g. cup", max_lines=1, scale=2,
                                      elem_id="track-new-name")  # fmt: skip
                new_btn = gr.Button("New object", size="sm", scale=1)
            with gr.Row():
                mode = gr.Radio([POINT_MODE, BOX_MODE], value=POINT_MODE, label="Click adds", elem_id="track-mode")
                polarity = gr.Radio([INCLUDE, EXCLUDE], value=INCLUDE, label="Point type", elem_id="track-polarity")
                undo_btn = gr.Button("↶ Undo", size="sm", scale=0)
            direction = gr.Radio(list(tt.DIRECTIONS), value="both", label="Track", elem_id="track-direction")
            with gr.Row():
                track_btn = gr.Button("Track", variant="primary", elem_id="track-run")
                stop_btn = gr.Button("Stop", elem_id="track-stop")
            with gr.Row():
                words = gr.Textbox(label="…or Track by words (SAM 3): every instance, forward", placeholder="cup, pan",
                                   max_lines=1, scale=3, elem_id="track-words")  # fmt: skip
                words_btn = gr.Button("Find and track", scale=1, min_width=100, elem_id="track-words-run")
        with gr.Column(scale=3):
            frame = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="track-frame")
            canvas = gr.Image(label="Click the object to track", interactive=False, format="jpeg",
                              elem_id="track-canvas")  # fmt: skip
            status = gr.Markdown(EMPTY, elem_id="track-status")
            overlay = gr.Video(label="Tracked video", interactive=False, elem_id="track-overlay", height=280)
            plot = gr.Plot(label="Object score per frame (where tracking got unsure)", elem_id="track-plot")
            files = gr.File(label="Downloads (original size)", file_count="multiple", interactive=False,
                            elem_id="track-files")  # fmt: skip

    def objects(s: tt.TrackSession) -> Any:
        return gr.Radio(choices=list(s.objects), value=s.objects[s.active - 1])

    view = [session, canvas, status]

    @user_errors
    def on_open(value: Any, lo: Any, hi: Any, s: tt.TrackSession) -> tuple[Any, ...]:
        if not value:
            raise InputError("Upload a video or pick the example first.")
        s = tt.open_video(ctx, s, value, lo, None if hi in (None, "", 0) else int(hi) + 1)
        return (s, frame_view(s, 0), status_line(ctx, s, 0), gr.Slider(0, s.frames - 1, value=0, step=1),
                objects(s), None, None, None)  # fmt: skip

    @user_errors
    def on_frame(s: tt.TrackSession, f: Any) -> tuple[Any, ...]:
        if s.video is None:
            return s, gr.skip(), EMPTY
        f = tt.frame_index(s, f)
        return s, frame_view(s, f), status_line(ctx, s, f)

    @user_errors
    def on_click(s: tt.TrackSession, f: Any, how: str, pol: str, key: str, evt: gr.SelectData) -> tuple[Any, ...]:
        if s.video is None:
            raise InputError(tt.NO_VIDEO)
        idx = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) == 2 else None
        if idx is None:
            raise InputError("Click on the frame.")
        f = tt.frame_index(s, f)
        x, y = float(idx[0]), float(idx[1])
        if how == BOX_MODE and (s.corner is None or s.corner[0] != f):
            s.corner = (f, x, y)  # the first corner: wait for the opposite one
            return s, frame_view(s, f), status_line(ctx, s, f) + " · box: click the opposite corner"
        timings = Timings()
        if how == BOX_MODE:
            _, cx, cy = s.corner  # type: ignore[misc]
            s.corner = None
            s = tt.add_prompt(ctx, s, key, f, box=(cx, cy, x, y), timings=timings)
        else:
            s = tt.add_prompt(ctx, s, key, f, point=(x, y), include=pol != EXCLUDE, timings=timings)
        line = status_line(ctx, s, f) + "\n\n" + timing_line(ctx, timings, stages=False)
        return s, frame_view(s, f), line

    @user_errors
    def on_undo(s: tt.TrackSession, f: Any, key: str) -> tuple[Any, ...]:
        s = tt.undo(ctx, s, key)
        f = tt.frame_index(s, f)
        return s, frame_view(s, f), status_line(ctx, s, f)

    @user_errors
    def on_new(s: tt.TrackSession, name: Any) -> tuple[Any, ...]:
        s = tt.new_object(s, name)
        return s, objects(s), ""

    @user_errors
    def on_object(s: tt.TrackSession, name: Any) -> tt.TrackSession:
        return tt.choose_object(s, name)

    stops = StopFlags()

    @user_errors
    def on_track(s: tt.TrackSession, key: str, way: str, request: gr.Request) -> Iterator[tuple[Any, ...]]:
        stop = stops.start(request.session_hash)
        last_shown = 0.0
        try:
            for step in tt.propagate(ctx, s, key, way, stop=stop):
                line = (f"{'stopped by you: ' if step.stopped else 'tracking… '}{step.done} of {step.total} frames · "
                        f"{step.fps:.1f} frames/s")  # fmt: skip
                if step.stopped or time.monotonic() - last_shown >= PREVIEW_EVERY_S:
                    last_shown = time.monotonic()
                    yield s, frame_view(s, step.frame), line, gr.Slider(value=step.frame), gr.skip(), gr.skip(), gr.skip()
        finally:
            stops.finish(stop)
        mp4, doc, pngs = tt.export(ctx, s, palette())
        f = max(s.results) if s.results else 0
        yield (s, frame_view(s, f), status_line(ctx, s, f), gr.Slider(value=f), str(mp4), confidence_plot(s),
               [str(doc), str(pngs), str(mp4)])  # fmt: skip

    @user_errors
    def on_words(s: tt.TrackSession, text: Any, request: gr.Request) -> Iterator[tuple[Any, ...]]:
        stop = stops.start(request.session_hash)
        last_shown = 0.0
        try:
            for step in tt.track_words(ctx, s, text, stop=stop):
                line = (f"{'stopped by you: ' if step.stopped else 'finding and tracking… '}{step.done} of {step.total} "
                        f"frames · {len(s.objects)} object(s) so far · {step.fps:.1f} frames/s")  # fmt: skip
                if step.stopped or time.monotonic() - last_shown >= PREVIEW_EVERY_S:
                    last_shown = time.monotonic()
                    yield (s, frame_view(s, step.frame), line, gr.Slider(value=step.frame), gr.skip(), gr.skip(),
                           gr.skip(), gr.skip())  # fmt: skip
        finally:
            stops.finish(stop)
        if not s.results:
            raise InputError("Nothing was tracked: check the clip and the range.")
        mp4, doc, pngs = tt.export(ctx, s, palette())
        found = ", ".join(s.objects) if any(s.results.values()) else f"no {', '.join(s.concepts)} found"
        f = min(s.results)
        yield (s, frame_view(s, f), f"{status_line(ctx, s, f)} · {found}", gr.Slider(value=f), str(mp4),
               confidence_plot(s), [str(doc), str(pngs), str(mp4)], objects(s))  # fmt: skip

    def on_stop(request: gr.Request) -> None:
        if request.session_hash:
            stops.request(request.session_hash)

    def frames_of(s: Any, *rest: Any) -> list[GpuJob]:
        return [GpuJob(str(rest[0]) if rest else "", calls=max(1, math.ceil((s.frames if s else 1) / 10)))]

    quick = model_event(ctx, "quick", status)
    open_btn.click(on_open, [video, first, last, session], [session, canvas, status, frame, obj, overlay, plot, files],
                   api_visibility="private", preprocess=False, **light_event(status))  # fmt: skip
    frame.release(on_frame, [session, frame], view, api_visibility="private", **light_event(status))
    frame.input(on_frame, [session, frame], view, api_visibility="private",
                **light_event(status, trigger_mode="always_last"))  # fmt: skip
    canvas.select(on_gpu(ctx, on_click, model_at(4)), [session, frame, mode, polarity, model], view,
                  api_visibility="private", **quick)  # fmt: skip
    undo_btn.click(on_gpu(ctx, on_undo, model_at(2)), [session, frame, model], view, api_visibility="private", **quick)
    gr.on([new_btn.click, new_name.submit], on_new, [session, new_name], [session, obj, new_name],
          api_visibility="private", **light_event(status))  # fmt: skip
    obj.input(on_object, [session, obj], [session], api_visibility="private", **light_event(status))
    track_btn.click(on_gpu(ctx, on_track, frames_of), [session, model, direction],
                    [session, canvas, status, frame, overlay, plot, files], api_visibility="private",
                    **model_event(ctx, "long", status))  # fmt: skip
    words_job = lambda s, *rest: [GpuJob(tt.WORDS_MODEL, calls=max(1, math.ceil((s.frames if s else 1) / 10)))]  # noqa: E731
    gr.on([words_btn.click, words.submit], on_gpu(ctx, on_words, words_job), [session, words],
          [session, canvas, status, frame, overlay, plot, files, obj], api_visibility="private",
          **model_event(ctx, "long", status))  # fmt: skip
    stop_btn.click(on_stop, None, None, api_visibility="private", **light_event())

    # --- the public endpoint: a clip, prompts in the original video's pixels, the masks back ----
    with gr.Column(visible=False):
        api_video = gr.Video(label="video")
        api_prompts = example(JsonInput({"type": "array", "items": {"type": "object"}}, label="prompts",
                                        value=[{"frame": 0, "object": 1, "points": [[190, 130]], "labels": [1]}]),
                              [{"frame": 0, "object": 1, "points": [[190, 130]], "labels": [1]}])  # fmt: skip
        api_model = example(gr.Textbox(label="model", value=model.value), model.value)
        api_direction = example(gr.Textbox(label="direction", value="both"), "both")
        api_json = gr.JSON(label="masks")
        api_overlay = gr.Video(label="tracked video")
        api_btn = gr.Button("track")

    @user_errors
    def track(video: Any, prompts: Any, model: Any, direction: Any) -> tuple[dict[str, Any], str]:
        """Track objects through a video (SAM 2.1): every object's mask on every frame.

        Args:
            video: the clip (MP4, MOV, WebM; up to 100 MB, 5 minutes).
            prompts: a list of {"frame": n, "object": id (1-8), "points": [[x, y], ...], "labels":
                [1 include / 0 exclude, ...]} and/or "box": [x1, y1, x2, y2], in the original video's pixels.
            model: a SAM 2.1 registry key, e.g. sam2.1-hiera-tiny.
            direction: forward, backward or both (from the prompted frames).

        Returns:
            COCO RLE masks per frame and object at the video's size, with each frame's time and the
            model's object score; and the tracked video (H.264 MP4).
        """
        s = tt.open_video(ctx, tt.TrackSession(), video)
        try:
            for prompt in tt.parse_prompts(s, prompts):
                while prompt["object"] > len(s.objects):
                    tt.new_object(s)
                tt.add_prompt(ctx, s, model, prompt["frame"], point=prompt.get("point"), include=prompt["include"],
                              box=prompt.get("box"), obj=prompt["object"])  # fmt: skip
            for _ in tt.propagate(ctx, s, model, direction):
                pass
            mp4, _, _ = tt.export(ctx, s, palette())
            return tt.coco_document(s), str(mp4)
        finally:
            s.close()

    api_btn.click(on_gpu(ctx, track, model_at(2)), [api_video, api_prompts, api_model, api_direction],
                  [api_json, api_overlay], api_name="track", preprocess=False,
                  api_description="Track objects through a video with SAM 2.1: masks per frame (COCO RLE) and the "
                  "tracked video.", **model_event(ctx, "long"))  # fmt: skip


    with gr.Column(visible=False):
        words_video = gr.Video(label="video")
        words_text = example(gr.Textbox(label="concepts", value="cup"), "cup")
        words_first = example(gr.Number(label="first_frame", value=0, precision=0), 0)
        words_last = example(gr.Number(label="last_frame", value=0, precision=0), 0)
        words_json = gr.JSON(label="masks")
        words_overlay = gr.Video(label="tracked video")
        words_api = gr.Button("track concepts")

    @user_errors
    def track_concepts(video: Any, concepts: Any, first_frame: Any, last_frame: Any) -> tuple[dict[str, Any], str]:
        """Find every instance of concepts named in words and track them forward through a video (SAM 3).

        Args:
            video: the clip (MP4, MOV, WebM; up to 100 MB, 5 minutes).
            concepts: what to follow, comma-separated (at most 4), e.g. "cup, pan".
            first_frame: the first frame to track (0: the start).
            last_frame: the last frame to track (0: the end).

        Returns:
            COCO RLE masks per frame and object at the video's size (objects named "<concept> <n>",
            new ones as they appear, at most 8), with each frame's time and score; and the tracked video.
        """
        last = None if last_frame in (None, "", 0) else int(float(last_frame)) + 1
        s = tt.open_video(ctx, tt.TrackSession(), video, first_frame, last)
        try:
            for _ in tt.track_words(ctx, s, concepts):
                pass
            mp4, _, _ = tt.export(ctx, s, palette())
            return tt.coco_document(s), str(mp4)
        finally:
            s.close()

    words_api.click(on_gpu(ctx, track_concepts, lambda *a, **k: [GpuJob(tt.WORDS_MODEL, calls=10)]),
                    [words_video, words_text, words_first, words_last], [words_json, words_overlay],
                    api_name="track_concepts", preprocess=False,
                    api_description="Track every instance of concepts named in words through a video (SAM 3): "
                    "masks per frame (COCO RLE) and the tracked video.", **model_event(ctx, "long"))  # fmt: skip


__all__ = ["TITLE", "build", "frame_view", "palette"]
