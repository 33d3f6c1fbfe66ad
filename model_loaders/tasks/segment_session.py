"""One user's interactive segmentation, without any UI: image, prompts, kept objects, undo/redo.

Points (include / exclude) and a box (two clicks) prompt the model; the candidate masks come
with their predicted IoU; "new object" keeps the shown mask and starts a new prompt set;
undo / redo / clear work on the whole prompt state. The image is embedded once per (image,
model) in the session's bounded `EmbeddingCache`, so later clicks only run the mask decoder.
`Instances` found in one go (by words with SAM 3, or segment everything) are shown beside them
until kept as objects, refined with clicks, or dropped (``tasks.concepts``).

Every change goes through the task layer (``tasks.segment``); nothing here runs a model
directly. A failed decode leaves the session as it was. The session lives in the tab's
per-session state and is returned by every handler (it survives being pickled).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

from model_loaders.core.errors import InputError
from model_loaders.core.images import DecodedImage
from model_loaders.core.results import MaskPrediction, Timings, mask_at_size
from model_loaders.core.validate import finite_number
from model_loaders.tasks import segment as seg
from model_loaders.tasks.base import image_of

log = logging.getLogger(__name__)

MAX_OBJECTS = 64  # a shelf of books found by words fits (SAM 3 keeps at most 50 instances)
MAX_HISTORY = 200
SESSION_EMBEDDINGS = 2  # per session: the current image for up to two models
SESSION_EMBEDDING_BYTES = 160 * 2**20


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
    """A kept object: its chosen mask and the prompts that made it.

    ``logits`` are the low-resolution logits of a clicked candidate (exports upsample them);
    ``None`` for an instance found by words or segment everything (its working-size mask is resized).
    """

    logits: np.ndarray | None = field(repr=False)
    mask: np.ndarray = field(repr=False)  # bool at working size
    score: float
    prompts: Prompts
    model: str
    label: str = "object"

    def at_size(self, size: tuple[int, int]) -> np.ndarray:
        """The mask at ``size`` = (width, height)."""
        return mask_at_size(self.logits, size) if self.logits is not None else seg.resize_mask(self.mask, size)


@dataclass(frozen=True)
class Instances:
    """Instances found in one go on the session's image, shown until kept, refined or dropped.

    Attributes:
        source: "words" (SAM 3 concepts) or "everything" (a grid of points, SAM 2.1).
        packed: the masks, bit-packed along rows (``np.packbits``): up to 200 image-sized masks
            live in a session, an eighth of their bool size; `mask` unpacks one.
        width: the masks' width (unpacking needs it).
        boxes / scores / names: one per instance, working-image pixels, best first.
        threshold: instances scoring below it are not shown (re-filtered without a model run).
        hidden: instances the user switched off.
    """

    source: str
    model: str
    packed: np.ndarray = field(repr=False)
    width: int
    boxes: np.ndarray
    scores: np.ndarray
    names: tuple[str, ...]
    threshold: float
    hidden: frozenset[int] = frozenset()
    timings: Timings = field(default_factory=Timings, repr=False)
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, source: str, model: str, masks: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
           names: tuple[str, ...], threshold: float, **kw: Any) -> Instances:  # fmt: skip
        """Instances from bool masks (K, H, W)."""
        return cls(source, model, np.packbits(masks, axis=-1), int(masks.shape[-1]), boxes, scores, names, threshold, **kw)

    def mask(self, i: int) -> np.ndarray:
        """Instance ``i``'s bool mask at working size."""
        return np.unpackbits(self.packed[i], axis=-1, count=self.width).astype(bool)

    @property
    def above(self) -> list[int]:
        """Instances at or above the threshold (switched on or off)."""
        return [i for i, s in enumerate(self.scores) if s >= self.threshold]

    @property
    def shown(self) -> list[int]:
        """Instances at or above the threshold and switched on."""
        return [i for i in self.above if i not in self.hidden]

    def label(self, i: int) -> str:
        """'#3 book 0.91': the instance's number, concept and score."""
        return f"#{i + 1} {self.names[i]} {self.scores[i]:.2f}"

    def as_object(self, i: int) -> SegObject:
        """Instance ``i`` as a kept object (its box is its prompt)."""
        box = tuple(float(v) for v in self.boxes[i])
        return SegObject(None, self.mask(i), float(self.scores[i]), Prompts(box=box), self.model, self.names[i])  # type: ignore[arg-type]


@dataclass(frozen=True)
class Snapshot:
    """Everything undo / redo restores."""

    prompts: Prompts = Prompts()
    objects: tuple[SegObject, ...] = ()


@dataclass(frozen=True)
class Step:
    """What the last model call did, for the timing line.

    Attributes:
        timings: load / inference times, model, device, weights mode.
        encoded_ms: the encoder's time, or ``None`` when the embedding came from the session.
        decode_ms: prompt encoding + mask decoding + upscaling.
    """

    timings: Timings
    encoded_ms: float | None
    decode_ms: float


class SegmentSession:
    """One user's Segment state: image, prompts, history, candidates and embedding cache."""

    def __init__(self) -> None:
        self.image: DecodedImage | None = None
        self.source: Any = None
        self.state = Snapshot()
        self.undo: list[Snapshot] = []
        self.redo: list[Snapshot] = []
        self.prediction: MaskPrediction | None = None
        self.choice: int | None = None
        self.model = ""
        self.step: Step | None = None
        self.embeddings = seg.EmbeddingCache(SESSION_EMBEDDINGS, SESSION_EMBEDDING_BYTES)
        self.instances: Instances | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> SegmentSession:
        # gr.State deep-copies its initial value for each new session: start empty.
        return SegmentSession()

    def close(self) -> None:
        """Release the embeddings and masks (the session ended)."""
        self.embeddings.clear()
        self.prediction = None
        self.image = None
        self.instances = None
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

    def commit(self, snapshot: Snapshot, prediction: MaskPrediction | None) -> None:
        """Make ``snapshot`` current, remembering the previous state for undo."""
        self.undo.append(self.state)
        del self.undo[:-MAX_HISTORY]
        self.redo.clear()
        self.state = snapshot
        self.prediction = prediction
        self.choice = None


def predict(ctx: Any, session: SegmentSession, model: str, prompts: Prompts) -> tuple[MaskPrediction | None, Step | None]:
    """Decode ``prompts`` on the session's image, encoding it only when the session has no embedding."""
    if session.image is None:
        raise InputError("Upload or pick an image first.")
    if not prompts.ready:
        return None, session.step
    timings = Timings()
    embedding, cached = seg.embed(ctx, session.image, model, session.embeddings, timings)
    prediction = seg.decode(ctx, embedding, prompts.points, prompts.labels, prompts.box, True, timings)
    return prediction, Step(timings, None if cached else embedding.encode_ms, prediction.decode_ms)


def apply(ctx: Any, session: SegmentSession, model: str, snapshot: Snapshot) -> None:
    """Decode ``snapshot``'s prompts and commit it (nothing changes if decoding fails)."""
    prediction, step = predict(ctx, session, model, snapshot.prompts)
    session.commit(snapshot, prediction)
    session.model = model
    session.step = step


def set_image(ctx: Any, session: SegmentSession, source: Any) -> SegmentSession:
    """Start over on a new image (prompts, objects, history and timing reset; embeddings kept, bounded).

    The same picture again (an input restored after a refused upload, the same example picked
    twice) keeps the session as it is.
    """
    if source is None:
        session.image = None
        session.source = None
    else:
        image = image_of(ctx, source)
        if session.image is not None and image.digest == session.image.digest:
            session.source = source
            return session
        session.image = image
        session.source = source
    session.state = Snapshot()
    session.undo.clear()
    session.redo.clear()
    session.prediction = None
    session.choice = None
    session.step = None
    session.instances = None
    return session


def change_model(ctx: Any, session: SegmentSession, model: str) -> SegmentSession:
    """Use ``model`` from now on; the current prompts are decoded again with it (encoding the image once)."""
    seg.segment_spec(ctx, model)
    if session.image is not None and session.state.prompts.ready:
        session.prediction, session.step = predict(ctx, session, model, session.state.prompts)
        session.choice = None
    elif session.model != model:
        session.step = None  # the new model has not seen this image: no stale "cached" timing
    session.model = model
    return session


def click(ctx: Any, session: SegmentSession, x: float, y: float, box_mode: bool, include: bool, model: str) -> SegmentSession:
    """Add a click at working-image pixel (x, y): a point, or a box corner in box mode."""
    if session.image is None:
        raise InputError("Upload or pick an image first, then click on it.")
    w, h = session.image.size
    x = finite_number(x, "Click x")
    y = finite_number(y, "Click y")
    if not (0 <= x <= w and 0 <= y <= h):
        raise InputError(f"Click ({x:g}, {y:g}) is outside the image ({w}×{h}).")
    p = session.state.prompts
    if box_mode:
        if p.corner is None:
            new = replace(p, corner=(x, y))
        else:
            (cx, cy) = p.corner
            box = (min(cx, x), min(cy, y), max(cx, x), max(cy, y))
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                raise InputError("The box has zero area: click two opposite corners.")
            new = replace(p, box=box, corner=None)
    else:
        if len(p.points) >= seg.MAX_POINTS:
            raise InputError(f"Too many points (max {seg.MAX_POINTS}): start a new object or undo.")
        new = replace(p, points=(*p.points, (x, y)), labels=(*p.labels, 1 if include else 0))
    snapshot = replace(session.state, prompts=new)
    if new.points == p.points and new.box == p.box:
        # Only the pending box corner changed: keep the current candidates, no model run needed.
        session.commit(snapshot, session.prediction)
        return session
    apply(ctx, session, model, snapshot)
    return session


def _step(ctx: Any, session: SegmentSession, model: str, source: list[Snapshot], target: list[Snapshot]) -> SegmentSession:
    # Move one prompt state from ``source`` to current (current goes to ``target``); the
    # prediction is re-decoded from the cached embedding before anything changes.
    state = source[-1]
    prediction, step = predict(ctx, session, model, state.prompts)
    source.pop()
    target.append(session.state)
    session.state, session.prediction, session.choice, session.step = state, prediction, None, step
    session.model = model
    return session


def undo(ctx: Any, session: SegmentSession, model: str) -> SegmentSession:
    """Restore the previous prompt state (and re-decode it from the cached embedding)."""
    if not session.undo:
        raise InputError("Nothing to undo.")
    return _step(ctx, session, model, session.undo, session.redo)


def redo(ctx: Any, session: SegmentSession, model: str) -> SegmentSession:
    """Re-apply the last undone change."""
    if not session.redo:
        raise InputError("Nothing to redo.")
    return _step(ctx, session, model, session.redo, session.undo)


def clear(session: SegmentSession) -> SegmentSession:
    """Remove every prompt and object (undoable); the timing line starts over."""
    if session.state != Snapshot():
        session.commit(Snapshot(), None)
    session.step = None
    session.instances = None
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


def pick(session: SegmentSession, choice: Any) -> SegmentSession:
    """Show candidate ``choice`` instead of the best one."""
    if session.prediction is not None and choice is not None:
        session.choice = int(finite_number(choice, "Mask choice", 0, len(session.prediction.scores) - 1))
    return session


def current_objects(session: SegmentSession) -> list[SegObject]:
    """Kept objects, the shown candidate (if any), then the shown instances, in colour order."""
    objects = list(session.state.objects)
    pred, idx = session.prediction, session.selected
    if pred is not None and idx is not None:
        objects.append(
            SegObject(pred.logits[idx], pred.masks[idx], float(pred.scores[idx]), session.state.prompts, session.model)
        )
    if session.instances is not None:
        objects.extend(session.instances.as_object(i) for i in session.instances.shown)
    return objects


# --- downloads --------------------------------------------------------------------------------


def cutout(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGBA: the image where ``mask`` is set, transparent elsewhere."""
    alpha = np.where(mask, 255, 0).astype(np.uint8)
    return np.dstack([image, alpha])


def prompts_in_original(image: DecodedImage, prompts: Prompts) -> dict[str, Any]:
    """Prompts mapped back to the uploaded image's pixels."""
    pts = [[round(v, 2) for v in image.to_original(x, y)] for x, y in prompts.points]
    box = None
    if prompts.box is not None:
        x1, y1 = image.to_original(prompts.box[0], prompts.box[1])
        x2, y2 = image.to_original(prompts.box[2], prompts.box[3])
        box = [round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)]
    return {"points": pts, "labels": list(prompts.labels), "box": box}


def export(ctx: Any, session: SegmentSession) -> list[str]:
    """Write mask PNG and cut-out PNG at the original resolution, and all objects as COCO RLE JSON."""
    if session.image is None:
        raise InputError("Upload or pick an image first.")
    objects = current_objects(session)
    if not objects:
        raise InputError("Nothing to export yet: click on an object first.")
    image = session.image
    size = image.original_size
    masks = [o.at_size(size) for o in objects]
    union = np.logical_or.reduce(masks)
    original = None
    if image.scale != 1.0 and session.source is not None:
        try:
            original = image_of(ctx, session.source, working_max_side=10**6, keep_original=True).original
        except InputError:
            log.info("original image no longer readable; cut-out uses the working size")
    if original is None or original.shape[1::-1] != size:
        original = np.asarray(image.pil().resize(size, Image.Resampling.LANCZOS)) if image.scale != 1.0 else image.array
    names = list(dict.fromkeys(o.label for o in objects))  # COCO categories: "object" for clicks, concepts by name
    out = ctx.outputs.new_dir("segment")
    mask_path, cut_path, json_path = out / "mask.png", out / "cutout.png", out / "objects_coco_rle.json"
    Image.fromarray(np.where(union, 255, 0).astype(np.uint8), mode="L").save(mask_path, optimize=False)
    Image.fromarray(cutout(original, union), mode="RGBA").save(cut_path)
    doc = {
        "info": {"description": "Vision Playground masks", "weights": ctx.settings.weights},
        "images": [{"id": 1, "width": size[0], "height": size[1]}],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(names)],
        "annotations": [
            seg.coco_annotation(i + 1, m, o.score, category_id=names.index(o.label) + 1, model=o.model,
                                prompts=prompts_in_original(image, o.prompts))  # fmt: skip
            for i, (o, m) in enumerate(zip(objects, masks, strict=False))
        ],
    }
    json_path.write_text(json.dumps(doc))
    return [str(mask_path), str(cut_path), str(json_path)]
