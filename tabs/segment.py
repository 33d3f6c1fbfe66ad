"""Segment tab: click-to-segment with SAM 2.1.

Points (include / exclude) and a box (two clicks) prompt SAM; the three candidate masks come
with their predicted IoU and a picker; "New object" keeps the current mask and starts a new
prompt set; undo / redo / clear work on the whole prompt state. The image embedding is
computed once per (image, model) and kept in this session's ``gr.State`` (bounded; dropped
when the session ends), so later clicks only run the small mask decoder.

The public ``segment`` endpoint is stateless: image, points, labels, optional box, model and
multimask in; masks (COCO RLE at the original resolution) and scores as JSON plus an overlay out.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from model_loaders.core.context import AppContext
from model_loaders.core.errors import InputError
from model_loaders.core.images import DecodedImage, decode_image
from model_loaders.core.jsontext import loads
from model_loaders.core.registry import DEFAULTS, get_spec, specs_for_task
from model_loaders.core.results import Timings
from model_loaders.families import sam2
from tabs._components import ImageInput
from tabs._errors import user_errors
from tabs._events import LIGHT_EVENT, MODEL_EVENT
from tabs._examples import example_paths
from tabs._validate import finite_number

log = logging.getLogger(__name__)

TITLE = "Segment"
INCLUDE, EXCLUDE = "Include (+)", "Exclude (−)"
POINT_MODE, BOX_MODE = "Point", "Box (2 clicks)"
MAX_OBJECTS = 32
MAX_HISTORY = 200
STATE_TTL_S = 1800  # a session's embeddings and masks go at the latest 30 min after its last event
SESSION_EMBEDDINGS = 2  # per session: the current image for up to two models
SESSION_EMBEDDING_BYTES = 160 * 2**20


# --- per-session state (kept in gr.State; never in module globals) ------------------------------


@dataclass(frozen=True)
class Prompts:
    """One object's prompts, in working-image pixel coordinates.

    Attributes:
        points: (x, y) clicks.
        labels: 1 include, 0 exclude, one per point.
        box: (x1, y1, x2, y2) or ``None``.
        corner: first corner of a box being drawn (box mode, after one click).
    """

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    corner: tuple[float, float] | None = None

    @property
    def ready(self) -> bool:
        """True when there is something to segment (a point or a full box)."""
        return bool(self.points) or self.box is not None


@dataclass(frozen=True)
class SegObject:
    """A kept object: its chosen mask and the prompts that made it."""

    logits: np.ndarray = field(repr=False)  # low-resolution logits of the chosen candidate
    mask: np.ndarray = field(repr=False)  # bool at working size
    score: float
    prompts: Prompts
    model: str


@dataclass(frozen=True)
class Snapshot:
    """Everything undo / redo restores."""

    prompts: Prompts = Prompts()
    objects: tuple[SegObject, ...] = ()


class SegmentSession:
    """One user's Segment state: image, prompts, history, candidates and embedding cache."""

    def __init__(self) -> None:
        self.image: DecodedImage | None = None
        self.source: Any = None
        self.state = Snapshot()
        self.undo: list[Snapshot] = []
        self.redo: list[Snapshot] = []
        self.prediction: sam2.MaskPrediction | None = None
        self.choice: int | None = None
        self.model = ""
        self.timing = ""
        self.embeddings = sam2.EmbeddingCache(SESSION_EMBEDDINGS, SESSION_EMBEDDING_BYTES)

    def __deepcopy__(self, memo: dict[int, Any]) -> SegmentSession:
        # gr.State deep-copies its initial value for each new session: start empty.
        return SegmentSession()

    def close(self) -> None:
        """Release the embeddings and masks (called when Gradio deletes the session state)."""
        self.embeddings.clear()
        self.prediction = None
        self.image = None
        self.state = Snapshot()
        self.undo.clear()
        self.redo.clear()

    @property
    def selected(self) -> int | None:
        """Index of the shown candidate (the best one unless the user picked another)."""
        if self.prediction is None:
            return None
        if self.choice is not None and 0 <= self.choice < len(self.prediction.scores):
            return self.choice
        return self.prediction.best

    def commit(self, snapshot: Snapshot, prediction: sam2.MaskPrediction | None) -> None:
        """Make ``snapshot`` current, remembering the previous state for undo."""
        self.undo.append(self.state)
        del self.undo[:-MAX_HISTORY]
        self.redo.clear()
        self.state = snapshot
        self.prediction = prediction
        self.choice = None


def _delete_session(session: Any) -> None:
    if isinstance(session, SegmentSession):
        session.close()


# --- model work -------------------------------------------------------------------------------


def _timing_line(ctx: AppContext, t: Timings, encode: str, decode_ms: float) -> str:
    line = (
        f"Encode: {encode} · Decode: {decode_ms:,.0f} ms · Device: `{t.device or ctx.settings.device}` · "
        f"Model: `{t.model}` · Weights: `{ctx.settings.weights}`"
    )
    if t.load_ms > 50:
        line += f" · Model load: {t.load_ms:,.0f} ms"
    if ctx.weights_warning:
        line += f" — ⚠️ {ctx.weights_warning}"
    return line


def _predict(
    ctx: AppContext, session: SegmentSession, model_key: str, prompts: Prompts
) -> tuple[sam2.MaskPrediction | None, str]:
    """Decode ``prompts`` on the session's image, encoding it only on a cache miss."""
    if session.image is None:
        raise InputError("Upload or pick an image first.")
    if not prompts.ready:
        return None, session.timing
    _check_model(model_key)
    image = session.image
    t = Timings()
    with ctx.use(model_key, t) as bundle, t.stage("inference"):
        embedding, cached = sam2.get_or_encode(bundle, session.embeddings, image.array, image.digest)
        prediction = sam2.decode_masks(bundle, embedding, list(prompts.points), list(prompts.labels), prompts.box)
    encode = "cached" if cached else f"{embedding.encode_ms:,.0f} ms"
    return prediction, _timing_line(ctx, t, encode, prediction.decode_ms)


def _check_model(model_key: Any) -> str:
    if not isinstance(model_key, str) or not model_key:
        raise InputError("Choose a model.")
    spec = get_spec(model_key)  # ModelUnavailable(unknown_model) for unknown keys
    if spec.family != "sam2":
        raise InputError(f"{spec.name} is not a SAM 2.1 model; choose one of the Segment tab's models.")
    return spec.key


def apply(ctx: AppContext, session: SegmentSession, model_key: str, snapshot: Snapshot) -> None:
    """Decode ``snapshot``'s prompts and commit it (nothing changes if decoding fails)."""
    prediction, timing = _predict(ctx, session, model_key, snapshot.prompts)
    session.commit(snapshot, prediction)
    session.model = model_key
    session.timing = timing


def set_image(ctx: AppContext, session: SegmentSession, source: Any) -> SegmentSession:
    """Start over on a new image (prompts, objects and history reset; embeddings kept, bounded)."""
    if source is None:
        session.image = None
        session.source = None
    else:
        image = decode_image(source, gate=ctx.uploads)
        session.image = image
        session.source = source
    session.state = Snapshot()
    session.undo.clear()
    session.redo.clear()
    session.prediction = None
    session.choice = None
    session.timing = ""
    return session


def click(
    ctx: AppContext, session: SegmentSession, x: float, y: float, mode: str, polarity: str, model_key: str
) -> SegmentSession:
    """Add a click at working-image pixel (x, y): a point, or a box corner in box mode."""
    if session.image is None:
        raise InputError("Upload or pick an image first, then click on it.")
    w, h = session.image.size
    x = finite_number(x, "Click x")
    y = finite_number(y, "Click y")
    if not (0 <= x <= w and 0 <= y <= h):
        raise InputError(f"Click ({x:g}, {y:g}) is outside the image ({w}×{h}).")
    p = session.state.prompts
    if mode == BOX_MODE:
        if p.corner is None:
            new = replace(p, corner=(x, y))
        else:
            (cx, cy) = p.corner
            box = (min(cx, x), min(cy, y), max(cx, x), max(cy, y))
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                raise InputError("The box has zero area: click two opposite corners.")
            new = replace(p, box=box, corner=None)
    else:
        if len(p.points) >= sam2.MAX_POINTS:
            raise InputError(f"Too many points (max {sam2.MAX_POINTS}): start a new object or undo.")
        label = 0 if polarity == EXCLUDE else 1
        new = replace(p, points=(*p.points, (x, y)), labels=(*p.labels, label))
    snapshot = replace(session.state, prompts=new)
    if new.points == p.points and new.box == p.box:
        # Only the pending box corner changed: keep the current candidates, no model run needed.
        session.commit(snapshot, session.prediction)
        return session
    apply(ctx, session, model_key, snapshot)
    return session


def _step(
    ctx: AppContext, session: SegmentSession, model_key: str, source: list[Snapshot], target: list[Snapshot]
) -> SegmentSession:
    # Move one prompt state from ``source`` to current (current goes to ``target``); the
    # prediction is re-decoded from the cached embedding before anything changes.
    state = source[-1]
    prediction, timing = _predict(ctx, session, model_key, state.prompts)
    source.pop()
    target.append(session.state)
    session.state, session.prediction, session.choice, session.timing = state, prediction, None, timing
    return session


def undo(ctx: AppContext, session: SegmentSession, model_key: str) -> SegmentSession:
    """Restore the previous prompt state (and re-decode it from the cached embedding)."""
    if not session.undo:
        raise InputError("Nothing to undo.")
    return _step(ctx, session, model_key, session.undo, session.redo)


def redo(ctx: AppContext, session: SegmentSession, model_key: str) -> SegmentSession:
    """Re-apply the last undone change."""
    if not session.redo:
        raise InputError("Nothing to redo.")
    return _step(ctx, session, model_key, session.redo, session.undo)


def clear(session: SegmentSession) -> SegmentSession:
    """Remove every prompt and object (undoable)."""
    if session.state != Snapshot():
        session.commit(Snapshot(), None)
    return session


def new_object(session: SegmentSession) -> SegmentSession:
    """Keep the shown mask as an object and start a new, empty prompt set (undoable)."""
    pred, idx = session.prediction, session.selected
    if pred is None or idx is None:
        raise InputError("Segment something first: click on the object, then press New object.")
    if len(session.state.objects) >= MAX_OBJECTS:
        raise InputError(f"Too many objects (max {MAX_OBJECTS}).")
    obj = SegObject(
        logits=pred.logits[idx],
        mask=pred.masks[idx],
        score=float(pred.scores[idx]),
        prompts=replace(session.state.prompts, corner=None),
        model=session.model,
    )
    session.commit(Snapshot(Prompts(), (*session.state.objects, obj)), None)
    return session


def current_objects(session: SegmentSession) -> list[SegObject]:
    """Kept objects plus the shown candidate (if any), in colour order."""
    objects = list(session.state.objects)
    pred, idx = session.prediction, session.selected
    if pred is not None and idx is not None:
        objects.append(
            SegObject(pred.logits[idx], pred.masks[idx], float(pred.scores[idx]), session.state.prompts, session.model)
        )
    return objects


# --- rendering --------------------------------------------------------------------------------


def _boxes(masks: np.ndarray) -> np.ndarray:
    out = np.zeros((len(masks), 4), dtype=np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(xs):
            out[i] = (xs.min(), ys.min(), xs.max(), ys.max())
    return out


def overlay(image: np.ndarray, masks: list[np.ndarray], first_colour: int = 0) -> np.ndarray:
    """Masks drawn on ``image`` in distinct colours with supervision's MaskAnnotator."""
    import supervision as sv

    if not masks:
        return image.copy()
    stack = np.stack(masks).astype(bool)
    detections = sv.Detections(
        xyxy=_boxes(stack), mask=stack, class_id=np.arange(first_colour, first_colour + len(masks))
    )
    annotator = sv.MaskAnnotator(color=sv.ColorPalette.DEFAULT, opacity=0.5, color_lookup=sv.ColorLookup.CLASS)
    # PIL in, PIL out: supervision converts to its BGR working copy and back, so colours stay right.
    return np.asarray(annotator.annotate(Image.fromarray(image), detections))


def draw_prompts(image: np.ndarray, prompts: Prompts) -> np.ndarray:
    """Points (green include, red exclude), the box and a pending box corner."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    r = max(4, round(max(out.shape[:2]) / 120))
    thick = max(2, r // 3)
    if prompts.box is not None:
        x1, y1, x2, y2 = (round(v) for v in prompts.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (255, 255, 255), thick + 2)
        cv2.rectangle(out, (x1, y1), (x2, y2), (30, 144, 255), thick)
    if prompts.corner is not None:
        cx, cy = (round(v) for v in prompts.corner)
        cv2.drawMarker(out, (cx, cy), (255, 255, 255), cv2.MARKER_CROSS, r * 4, thick + 2)
        cv2.drawMarker(out, (cx, cy), (30, 144, 255), cv2.MARKER_CROSS, r * 4, thick)
    for (x, y), label in zip(prompts.points, prompts.labels, strict=False):
        centre = (round(x), round(y))
        colour = (40, 200, 60) if label == 1 else (230, 40, 40)
        cv2.circle(out, centre, r + thick, (255, 255, 255), -1)
        cv2.circle(out, centre, r, colour, -1)
        # "+" or "−" inside the dot, so polarity does not rely on colour alone
        cv2.line(
            out, (centre[0] - r // 2, centre[1]), (centre[0] + r // 2, centre[1]), (255, 255, 255), max(1, thick // 2)
        )
        if label == 1:
            cv2.line(
                out,
                (centre[0], centre[1] - r // 2),
                (centre[0], centre[1] + r // 2),
                (255, 255, 255),
                max(1, thick // 2),
            )
    return out


def cutout(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGBA: the image where ``mask`` is set, transparent elsewhere."""
    alpha = np.where(mask, 255, 0).astype(np.uint8)
    return np.dstack([image, alpha])


def render(ctx: AppContext, session: SegmentSession) -> tuple[Any, ...]:
    """All outputs of the tab for the session's current state."""
    if session.image is None:
        return (session, None, [], gr.update(choices=[], value=None), None, "", "", None)
    base = session.image.array
    objects = current_objects(session)
    canvas = draw_prompts(overlay(base, [o.mask for o in objects]), session.state.prompts)
    pred = session.prediction
    gallery: list[tuple[np.ndarray, str]] = []
    choices: list[tuple[str, int]] = []
    if pred is not None:
        thumb_scale = min(1.0, 320 / max(base.shape[:2]))
        small = np.asarray(
            session.image.pil().resize(
                (max(1, round(base.shape[1] * thumb_scale)), max(1, round(base.shape[0] * thumb_scale)))
            )
        )
        colour = len(session.state.objects)
        for i, score in enumerate(pred.scores):
            tag = " (best)" if i == pred.best else ""
            label = f"Mask {i + 1} · IoU {score:.2f}{tag}"
            m = np.asarray(Image.fromarray(pred.masks[i]).resize(small.shape[1::-1], Image.Resampling.NEAREST))
            gallery.append((overlay(small, [m], colour), label))
            choices.append((label, i))
    cut = None
    if objects:
        union = np.logical_or.reduce([o.mask for o in objects])
        cut = cutout(base, union)
    notes = "; ".join(session.image.notes)
    status = session.timing or (f"⚠️ {ctx.weights_warning}" if ctx.weights_warning else "")
    p = session.state.prompts
    summary = (
        f"{len(p.points)} point(s){' + box' if p.box else ''}{' · box: click the opposite corner' if p.corner else ''}"
        f" · {len(session.state.objects)} kept object(s)"
        f"{' · ' + notes if notes else ''}"
    )
    picker = gr.update(choices=choices, value=session.selected)
    return (session, canvas, gallery, picker, cut, status, summary, None)


# --- downloads --------------------------------------------------------------------------------


def _prompts_original(image: DecodedImage, prompts: Prompts) -> dict[str, Any]:
    pts = [[round(v, 2) for v in image.to_original(x, y)] for x, y in prompts.points]
    box = None
    if prompts.box is not None:
        x1, y1 = image.to_original(prompts.box[0], prompts.box[1])
        x2, y2 = image.to_original(prompts.box[2], prompts.box[3])
        box = [round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)]
    return {"points": pts, "labels": list(prompts.labels), "box": box}


def coco_annotation(i: int, mask: np.ndarray, score: float, extra: dict[str, Any]) -> dict[str, Any]:
    """One COCO-style annotation (RLE segmentation, area, xywh bbox) for an original-size mask."""
    ys, xs = np.nonzero(mask)
    bbox = (
        [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        if len(xs)
        else [0, 0, 0, 0]
    )
    return {
        "id": i,
        "image_id": 1,
        "category_id": 1,
        "segmentation": sam2.rle_encode(mask),
        "area": int(mask.sum()),
        "bbox": bbox,
        "iscrowd": 0,
        "predicted_iou": round(float(score), 4),
        **extra,
    }


def export(ctx: AppContext, session: SegmentSession) -> list[str]:
    """Write mask PNG and cut-out PNG at the original resolution, and all objects as COCO RLE JSON."""
    if session.image is None:
        raise InputError("Upload or pick an image first.")
    objects = current_objects(session)
    if not objects:
        raise InputError("Nothing to export yet: click on an object first.")
    image = session.image
    size = image.original_size
    masks = [sam2.mask_at_size(o.logits, size) for o in objects]
    union = np.logical_or.reduce(masks)
    original = None
    if image.scale != 1.0 and session.source is not None:
        try:
            original = decode_image(session.source, gate=ctx.uploads, working_max_side=10**6, keep_original=True).original
        except InputError:
            log.info("original image no longer readable; cut-out uses the working size")
    if original is None or original.shape[1::-1] != size:
        original = np.asarray(image.pil().resize(size, Image.Resampling.LANCZOS)) if image.scale != 1.0 else image.array
    out = ctx.outputs.new_dir("segment")
    mask_path, cut_path, json_path = out / "mask.png", out / "cutout.png", out / "objects_coco_rle.json"
    Image.fromarray(np.where(union, 255, 0).astype(np.uint8), mode="L").save(mask_path, optimize=False)
    Image.fromarray(cutout(original, union), mode="RGBA").save(cut_path)
    doc = {
        "info": {"description": "Vision Playground SAM 2.1 masks", "weights": str(session.model)},
        "images": [{"id": 1, "width": size[0], "height": size[1]}],
        "categories": [{"id": 1, "name": "object"}],
        "annotations": [
            coco_annotation(i + 1, m, o.score, {"model": o.model, "prompts": _prompts_original(image, o.prompts)})
            for i, (o, m) in enumerate(zip(objects, masks, strict=False))
        ],
    }
    json_path.write_text(json.dumps(doc))
    return [str(mask_path), str(cut_path), str(json_path)]


# --- stateless API ----------------------------------------------------------------------------


def _parse_json(value: Any, name: str) -> Any:
    if isinstance(value, str):
        text = value.strip()
        return loads(text, name, max_chars=100_000) if text else None
    return value


def parse_api_prompts(
    points: Any, labels: Any, box: Any
) -> tuple[list[tuple[float, float]], list[int], tuple[float, float, float, float] | None]:
    """Validate the API's points / labels / box (JSON values or JSON text).

    Raises:
        InputError: for every malformed, non-finite or inconsistent value.
    """
    points = _parse_json(points, "points") or []
    labels = _parse_json(labels, "labels")
    box = _parse_json(box, "box")
    if isinstance(points, dict) or not isinstance(points, list):
        raise InputError("points must be a list of [x, y] pairs.")
    if len(points) > sam2.MAX_POINTS:
        raise InputError(f"Too many points ({len(points)}; max {sam2.MAX_POINTS}).")
    pts: list[tuple[float, float]] = []
    for p in points:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise InputError("points must be a list of [x, y] pairs.")
        x, y = p
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not (math.isfinite(x) and math.isfinite(y)):
            raise InputError("Point coordinates must be finite numbers (got NaN or infinity).")
        pts.append((finite_number(x, "Point x"), finite_number(y, "Point y")))
    if labels is None:
        labels = [1] * len(pts)
    if not isinstance(labels, list):
        raise InputError("labels must be a list of 1 (include) or 0 (exclude).")
    if len(labels) != len(pts):
        raise InputError(f"Got {len(labels)} labels for {len(pts)} points; give one label per point.")
    labs: list[int] = []
    for v in labels:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v not in (0, 1):
            raise InputError("Labels must be 1 (include) or 0 (exclude).")
        labs.append(int(v))
    bx: tuple[float, float, float, float] | None = None
    if box not in (None, []):
        if not isinstance(box, list) or len(box) != 4:
            raise InputError("box must be [x1, y1, x2, y2].")
        if any(isinstance(v, float) and not math.isfinite(v) for v in box):
            raise InputError("Box coordinates must be finite numbers (got NaN or infinity).")
        x1, y1, x2, y2 = (finite_number(v, "Box coordinate") for v in box)
        if x2 < x1 or y2 < y1:
            raise InputError("Box must be [x1, y1, x2, y2] with x2 ≥ x1 and y2 ≥ y1.")
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            raise InputError("The box has zero area.")
        bx = (x1, y1, x2, y2)
    if not pts and bx is None:
        raise InputError("Give at least one point or a box.")
    return pts, labs, bx


def segment_api(
    ctx: AppContext, image: Any, points: Any, labels: Any, box: Any, model_key: Any, multimask: Any
) -> tuple[dict[str, Any], np.ndarray]:
    """The stateless ``segment`` endpoint (coordinates in original-image pixels).

    Returns:
        (JSON with masks as COCO RLE at the original size, scores, best index, timings; overlay image).
    """
    if image is None:
        raise InputError("Upload an image first.")
    key = _check_model(model_key)
    pts, labs, bx = parse_api_prompts(points, labels, box)
    decoded = decode_image(image, gate=ctx.uploads)
    ow, oh = decoded.original_size
    for x, y in pts:
        if not (0 <= x <= ow and 0 <= y <= oh):
            raise InputError(f"Point ({x:g}, {y:g}) is outside the image ({ow}×{oh}).")
    if bx is not None and (bx[0] < 0 or bx[1] < 0 or bx[2] > ow or bx[3] > oh):
        raise InputError(f"The box is outside the image ({ow}×{oh}).")
    wpts = [decoded.to_working(x, y) for x, y in pts]
    wbox = None
    if bx is not None:
        wbox = (*decoded.to_working(bx[0], bx[1]), *decoded.to_working(bx[2], bx[3]))
    t = Timings()
    with ctx.use(key, t) as bundle, t.stage("inference"):
        emb = sam2.encode_image(bundle, decoded.array, decoded.digest)
        pred = sam2.decode_masks(bundle, emb, wpts, labs, wbox, multimask=bool(multimask))  # type: ignore[arg-type]
    with t.stage("postprocess"):
        masks = [sam2.mask_at_size(lg, (ow, oh)) for lg in pred.logits]
        prompts = Prompts(tuple(wpts), tuple(labs), wbox)
        shown = draw_prompts(overlay(decoded.array, [pred.masks[pred.best]]), prompts)
    result = {
        "model": key,
        "width": ow,
        "height": oh,
        "scores": [round(float(s), 4) for s in pred.scores],
        "best": pred.best,
        "masks": [sam2.rle_encode(m) for m in masks],
        "timings": {**t.as_dict(), "encode_ms": round(emb.encode_ms, 1), "decode_ms": round(pred.decode_ms, 1)},
        "weights_warning": ctx.weights_warning,
        "notes": list(decoded.notes),
    }
    return result, shown


# --- UI ---------------------------------------------------------------------------------------


def build(ctx: AppContext) -> None:
    """Render the Segment tab."""
    specs = [s for s in specs_for_task("segment") if s.family == "sam2"]
    keys = [s.key for s in specs]
    default = DEFAULTS.get("segment", keys[0] if keys else "")
    session = gr.State(SegmentSession(), time_to_live=STATE_TTL_S, delete_callback=_delete_session)
    gr.Markdown(
        "Click on the image to segment with **SAM 2.1**. Points include or exclude; *Box* mode takes two "
        "clicks as opposite corners. Pick among the three candidate masks; *New object* keeps the mask "
        "and starts another. The image is encoded once per model; later clicks only run the fast decoder."
    )
    with gr.Row():
        with gr.Column(scale=2, min_width=280):
            source = ImageInput(
                label="Image (upload, paste or pick an example)",
                sources=["upload", "clipboard"],
                type="filepath",
                height=240,
                elem_id="segment-input",
            )
            gr.Examples(
                example_paths(), inputs=[source], label="Examples", examples_per_page=8, elem_id="segment-examples"
            )
            model = gr.Dropdown(
                choices=[(f"{s.name} ({s.params_m:g} M)", s.key) for s in specs],
                value=default,
                label="Model",
                elem_id="segment-model",
            )
            with gr.Row():
                mode = gr.Radio([POINT_MODE, BOX_MODE], value=POINT_MODE, label="Click adds", elem_id="segment-mode")
                polarity = gr.Radio([INCLUDE, EXCLUDE], value=INCLUDE, label="Point type", elem_id="segment-polarity")
            with gr.Row():
                undo_btn = gr.Button("↶ Undo", size="sm")
                redo_btn = gr.Button("↷ Redo", size="sm")
                clear_btn = gr.Button("Clear", size="sm")
                new_btn = gr.Button("New object", size="sm", variant="secondary")
        with gr.Column(scale=3):
            canvas = gr.Image(
                label="Click to segment",
                interactive=False,
                format="jpeg",
                elem_id="segment-canvas",
                buttons=["fullscreen"],
            )
            summary = gr.Markdown(elem_id="segment-summary")
            timing = gr.Markdown(elem_id="segment-timing")
    with gr.Row():
        with gr.Column(scale=3):
            gallery = gr.Gallery(
                label="Candidate masks (predicted IoU)",
                columns=3,
                height=220,
                elem_id="segment-candidates",
                allow_preview=False,
            )
            picker = gr.Radio(choices=[], label="Shown mask", elem_id="segment-picker")
        with gr.Column(scale=2):
            cut = gr.Image(label="Cut-out", format="png", interactive=False, elem_id="segment-cutout", height=220)
    with gr.Row():
        export_btn = gr.Button("Prepare downloads (mask PNG, cut-out PNG, COCO RLE JSON)", size="sm")
        files = gr.File(label="Downloads (original resolution)", file_count="multiple", interactive=False, height=120)

    outputs = [session, canvas, gallery, picker, cut, timing, summary, files]

    @user_errors
    def on_image(value: Any, s: SegmentSession) -> tuple[Any, ...]:
        return render(ctx, set_image(ctx, s, value))

    @user_errors
    def on_select(s: SegmentSession, m: str, pol: str, key: str, evt: gr.SelectData) -> tuple[Any, ...]:
        if s.image is None:
            raise InputError("Upload or pick an image first, then click on it.")
        idx = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) == 2 else None
        if idx is None:
            raise InputError("Click on the image.")
        return render(ctx, click(ctx, s, idx[0], idx[1], m, pol, key))

    @user_errors
    def on_click_at(s: SegmentSession, x: Any, y: Any, m: str, pol: str, key: str) -> tuple[Any, ...]:
        return render(ctx, click(ctx, s, x, y, m, pol, key))

    @user_errors
    def on_undo(s: SegmentSession, key: str) -> tuple[Any, ...]:
        return render(ctx, undo(ctx, s, key))

    @user_errors
    def on_redo(s: SegmentSession, key: str) -> tuple[Any, ...]:
        return render(ctx, redo(ctx, s, key))

    @user_errors
    def on_clear(s: SegmentSession) -> tuple[Any, ...]:
        return render(ctx, clear(s))

    @user_errors
    def on_new(s: SegmentSession) -> tuple[Any, ...]:
        return render(ctx, new_object(s))

    @user_errors
    def on_model(s: SegmentSession, key: str) -> tuple[Any, ...]:
        if s.image is not None and s.state.prompts.ready:
            s.prediction, s.timing = _predict(ctx, s, key, s.state.prompts)
            s.model, s.choice = key, None
        return render(ctx, s)

    @user_errors
    def on_pick(s: SegmentSession, choice: Any) -> tuple[Any, ...]:
        if s.prediction is not None and choice is not None:
            s.choice = int(finite_number(choice, "Mask choice", 0, len(s.prediction.scores) - 1))
        return render(ctx, s)

    def on_gallery(s: SegmentSession, evt: gr.SelectData) -> tuple[Any, ...]:
        return on_pick(s, evt.index)

    @user_errors
    def on_export(s: SegmentSession) -> list[str]:
        return export(ctx, s)

    @user_errors
    def on_api(
        image: Any, points: Any, labels: Any, box: Any, model: Any, multimask: Any
    ) -> tuple[dict[str, Any], np.ndarray]:
        return segment_api(ctx, image, points, labels, box, model, multimask)

    source.change(
        on_image,
        [source, session],
        outputs,
        preprocess=False,
        api_name="segment_image",
        api_visibility="undocumented",
        **LIGHT_EVENT,
    )
    canvas.select(on_select, [session, mode, polarity, model], outputs, api_visibility="private", **MODEL_EVENT)
    undo_btn.click(
        on_undo, [session, model], outputs, api_name="segment_undo", api_visibility="undocumented", **MODEL_EVENT
    )
    redo_btn.click(
        on_redo, [session, model], outputs, api_name="segment_redo", api_visibility="undocumented", **MODEL_EVENT
    )
    clear_btn.click(
        on_clear, [session], outputs, api_name="segment_clear", api_visibility="undocumented", **LIGHT_EVENT
    )
    new_btn.click(
        on_new, [session], outputs, api_name="segment_new_object", api_visibility="undocumented", **LIGHT_EVENT
    )
    model.input(on_model, [session, model], outputs, api_visibility="private", **MODEL_EVENT)
    picker.input(on_pick, [session, picker], outputs, api_visibility="private", **LIGHT_EVENT)
    gallery.select(on_gallery, [session], outputs, api_visibility="private", **LIGHT_EVENT)
    export_btn.click(
        on_export, [session], files, api_name="segment_export", api_visibility="undocumented", **LIGHT_EVENT
    )

    # Hidden components: a session click by coordinates (what the canvas click does; used by
    # scripted clients and tests) and the stateless public endpoint.
    with gr.Column(visible=False):
        click_x = gr.Number(label="x (working-image pixels)")
        click_y = gr.Number(label="y (working-image pixels)")
        click_btn = gr.Button("click")
        api_image = ImageInput(label="image", type="filepath")
        api_points = gr.JSON(label="points: [[x, y], ...] in original-image pixels")
        api_labels = gr.JSON(label="labels: [1 | 0, ...], one per point (1 include, 0 exclude)")
        api_box = gr.JSON(label="box: [x1, y1, x2, y2] in original-image pixels, or null")
        api_model = gr.Dropdown(choices=keys, value=default, label="model key", allow_custom_value=True)
        api_multimask = gr.Checkbox(value=True, label="multimask: three candidates (true) or one (false)")
        api_btn = gr.Button("segment")
        api_json = gr.JSON(label="masks (COCO RLE, original size), scores, best, timings")
        api_overlay = gr.Image(label="overlay", format="png")
    click_btn.click(
        on_click_at,
        [session, click_x, click_y, mode, polarity, model],
        outputs,
        api_name="segment_click",
        api_visibility="undocumented",
        **MODEL_EVENT,
    )
    api_btn.click(
        on_api,
        [api_image, api_points, api_labels, api_box, api_model, api_multimask],
        [api_json, api_overlay],
        preprocess=False,
        api_name="segment",
        api_description=(
            "Segment with SAM 2.1 (stateless). points [[x, y], ...] and box [x1, y1, x2, y2] are in original-image "
            "pixels; labels are 1 (include) / 0 (exclude). Returns masks as COCO RLE at the original size with "
            "their predicted IoU scores, the best index, timings, and an overlay image."
        ),
        **MODEL_EVENT,
    )


__all__ = ["TITLE", "SegmentSession", "build", "click", "export", "new_object", "redo", "segment_api", "undo"]
