"""Comparing 2–4 models of one task on the same image, through the same task functions as the tabs.

The image is decoded once; models run one after another, each pinned only while it runs (a
comparison whose models together exceed the memory budget still completes: the cache evicts
between runs). A model that fails gets its error in its `ModelRun`; the others still run.
Detection uses each model's own default thresholds (its spec) unless the user sets one, so a
model gives the same boxes here as in the Detect tab and the Workflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_loaders.core.errors import InputError, ModelUnavailable
from model_loaders.core.images import DecodedImage
from model_loaders.core.results import Timings
from model_loaders.core.specs import IMAGE_TASKS as TASKS
from model_loaders.core.specs import ModelSpec
from model_loaders.core.validate import clean_text, finite_number
from model_loaders.tasks import agreement
from model_loaders.tasks import ask as ask_task
from model_loaders.tasks import depth as depth_task
from model_loaders.tasks import detect as detect_task
from model_loaders.tasks import segment as segment_task
from model_loaders.tasks.base import checked_spec, image_of

log = logging.getLogger(__name__)

MIN_COMPARE = 2
MAX_COMPARE = 4
MAX_POINTS = 8
MAX_QUESTION_CHARS = 2000
MAX_CLASSES_CHARS = 500
ASK_MAX_NEW_TOKENS = 64
METRIC_NAMES = {
    "detect": "matched-box F1 at IoU 0.5",
    "depth": "Pearson correlation after scale-and-shift alignment",
    "segment": "mean mask IoU over the same point prompts",
    "ask": "",
}


@dataclass
class ModelRun:
    """One model's outcome in a comparison.

    Attributes:
        key: registry key.
        result: the typed result (``Detections``, ``DepthResult``, ``TextResult``) or ``None``.
        timings: load / preprocess / inference / postprocess milliseconds.
        error: short user-facing reason when this model failed (the others still ran).
    """

    key: str
    result: Any = None
    timings: Timings = field(default_factory=Timings)
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when the model produced a result."""
        return not self.error


def check_models(ctx: Any, task: Any, keys: Sequence[str] | None) -> list[ModelSpec]:
    """Validate a comparison request before anything loads.

    Raises:
        InputError: unknown task; fewer than 2 or more than 4 models; a model listed twice; an
            unknown model; a model that cannot do ``task``.
        ModelUnavailable: a model that cannot run here.
    """
    if task not in TASKS:
        raise InputError(f"Pick a task: one of {', '.join(TASKS)}.")
    keys = [str(k) for k in (keys or [])]
    if len(keys) < MIN_COMPARE:
        raise InputError(f"Pick at least {MIN_COMPARE} models to compare.")
    if len(keys) > MAX_COMPARE:
        raise InputError(f"Pick at most {MAX_COMPARE} models to compare (you picked {len(keys)}).")
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise InputError(f"Each model can be picked once: {', '.join(dupes)} is listed twice.")
    return [checked_spec(ctx, key, task) for key in keys]


def run_each(ctx: Any, keys: Sequence[str], run: Callable[[str, Timings], Any]) -> list[ModelRun]:
    """Run ``run(key, timings)`` for each model in turn; one model's failure does not stop the others.

    Input errors (bad prompt, bad image) stop the whole comparison, since they would fail for
    every model.
    """
    from model_loaders.core.cache import is_out_of_memory, release_memory

    runs: list[ModelRun] = []
    for key in keys:
        timings = Timings()
        err, result = "", None
        try:
            result = run(key, timings)
        except ModelUnavailable as exc:
            err = exc.message
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - one model's crash must not lose the others' results
            if is_out_of_memory(exc):
                err = f"{key}: out of memory; try fewer or smaller models."
            else:
                log.exception("compare: %s failed", key)
                err = f"{key} failed ({type(exc).__name__}); it has been logged."
        if err and "out of memory" in err:
            release_memory()  # outside the except block, so the frames holding tensors are gone
        runs.append(ModelRun(key=key, result=result, timings=timings, error=err))
    return runs


@dataclass
class Comparison:
    """Everything the tab and the API show for one comparison."""

    task: str
    specs: list[ModelSpec]
    runs: list[ModelRun]
    image: DecodedImage
    points: list[tuple[float, float]] = field(default_factory=list)
    matrix: np.ndarray | None = None
    abs_rel: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    mask_checks: list[MaskCheck] = field(default_factory=list)


@dataclass
class MaskCheck:
    """A detector with masks (SAM 3) against SAM 2.1 prompted with its boxes: do the masks agree?

    Attributes:
        key: the model whose masks are checked; ``segmenter``: the SAM 2.1 model prompted.
        ious: one mask IoU per instance (its mask vs SAM 2.1's mask from its box).
    """

    key: str
    segmenter: str
    ious: list[float]

    @property
    def mean(self) -> float:
        """Mean mask IoU (NaN with no instance)."""
        return float(np.mean(self.ious)) if self.ious else float("nan")


MASK_CHECK_MAX = 20  # instances prompted into SAM 2.1 per model (best first)


def mask_check(ctx: Any, decoded: DecodedImage, run: ModelRun, segmenter: str) -> MaskCheck:
    """SAM 2.1 prompted with each of ``run``'s boxes (one encoding), each mask compared with the run's own."""
    det = run.result
    timings = Timings()
    embedding, _ = segment_task.embed(ctx, decoded, segmenter, None, timings)
    ious = []
    for box, mask in list(zip(det.xyxy, det.mask, strict=True))[:MASK_CHECK_MAX]:
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        pred = segment_task.decode(ctx, embedding, [], [], tuple(float(v) for v in box), False, timings)
        ious.append(agreement.mask_iou(pred.masks[pred.best], mask))
    return MaskCheck(run.key, segmenter, ious)


def model_keys(value: Any) -> list[str]:
    """A request's model list: comma-separated text or a list of keys."""
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    raise InputError("Models must be a list of model keys.")


def parse_points(text: Any, decoded: DecodedImage) -> list[tuple[float, float]]:
    """``"x, y; x, y"`` in original-image pixels -> working-image points (the image centre if empty).

    Raises:
        InputError: malformed, non-finite, outside the image, or too many points.
    """
    raw = clean_text(text, "Points", 400)
    if not raw:
        w, h = decoded.size
        return [(w / 2.0, h / 2.0)]
    pts = []
    ow, oh = decoded.original_size
    for part in [p for p in raw.replace("\n", ";").split(";") if p.strip()]:
        xy = [v.strip() for v in part.replace("(", "").replace(")", "").split(",")]
        if len(xy) != 2:
            raise InputError(f"Points are written as 'x, y; x, y' (got {part.strip()[:40]!r}).")
        x = finite_number(xy[0], "Point x", 0, ow)
        y = finite_number(xy[1], "Point y", 0, oh)
        pts.append(decoded.to_working(x, y))
    if len(pts) > MAX_POINTS:
        raise InputError(f"Too many points ({len(pts)}; max {MAX_POINTS}).")
    return pts


def usable(run: ModelRun, task: str) -> bool:
    """True when a model's result can enter the agreement (it ran, and its boxes could be read)."""
    if not run.ok:
        return False
    return not (task == "detect" and run.result.metadata.get("parse_error"))


def compute_agreement(task: str, runs: list[ModelRun]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Pairwise agreement matrix for ``task`` (NaN for models without a usable result; ``None`` for ask).

    Returns:
        (matrix, abs_rel): ``abs_rel`` only for depth (row map aligned to column map).
    """
    n = len(runs)
    if task == "ask":
        return None, None
    matrix = np.full((n, n), np.nan)
    abs_rel = np.full((n, n), np.nan) if task == "depth" else None
    ok = [i for i, r in enumerate(runs) if usable(r, task)]
    for i in ok:
        for j in ok:
            if j < i:
                matrix[i, j] = matrix[j, i]
                if abs_rel is not None:
                    abs_rel[i, j] = agreement.depth_agreement(runs[i].result.depth, runs[j].result.depth,
                                                              runs[i].result.kind, runs[j].result.kind).abs_rel  # fmt: skip
                continue
            a, b = runs[i].result, runs[j].result
            if task == "detect":
                matrix[i, j] = agreement.detection_f1(a, b)
            elif task == "segment":
                matrix[i, j] = agreement.masks_iou(a, b)
            else:
                agree = agreement.depth_agreement(a.depth, b.depth, a.kind, b.kind)
                matrix[i, j] = agree.pearson
                abs_rel[i, j] = agree.abs_rel  # type: ignore[index]
    return matrix, abs_rel


@dataclass
class _Request:
    specs: list[ModelSpec] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    confidence: float | None = None
    question: str = ""
    problems: dict[str, InputError | ModelUnavailable] = field(default_factory=dict)


def _request(ctx: Any, task: str, models: Any, classes: Any, confidence: Any, question: Any) -> _Request:
    """A comparison's settings, checked before the image is decoded or any model loads."""
    req = _Request()
    try:
        req.specs = check_models(ctx, task, model_keys(models))
    except (InputError, ModelUnavailable) as exc:
        req.problems["models"] = exc
    try:
        if task == "detect":
            text = clean_text(classes, "Classes", MAX_CLASSES_CHARS)
            req.classes = detect_task.parse_prompt(text)[0] if text else []
            open_vocabulary = [s.name for s in req.specs if s.open_vocabulary]
            if open_vocabulary and not req.classes:
                raise InputError(f"{', '.join(open_vocabulary)} need words: type the classes to find.")
        elif task == "ask":
            req.question = clean_text(question, "Question", MAX_QUESTION_CHARS, required=True, truncate=True,
                                      missing=ask_task.NO_QUESTION)  # fmt: skip
    except InputError as exc:
        req.problems["classes" if task == "detect" else "question"] = exc
    try:
        if task == "detect" and confidence not in (None, ""):
            req.confidence = finite_number(confidence, "Confidence", 0.0, 1.0)
    except InputError as exc:
        req.problems["confidence"] = exc
    return req


def problems(ctx: Any, task: Any, models: Any, classes: Any = "", confidence: Any = None,
             question: Any = "") -> dict[str, str]:  # fmt: skip
    """What is wrong with a comparison's settings, by field (models, classes, confidence,
    question), before anything runs; `compare` refuses the same."""
    return {name: str(exc) for name, exc in _request(ctx, str(task or ""), models, classes, confidence, question).problems.items()}


def compare(
    ctx: Any,
    image: Any,
    task: Any,
    models: Any,
    classes: Any = "",
    confidence: Any = None,
    points: Any = "",
    question: Any = "Describe the image.",
) -> Comparison:
    """Validate a comparison, decode the image once, run each model in turn, measure agreement.

    Args:
        confidence: a detection threshold for every model; ``None`` uses each model's own default.

    Raises:
        InputError: bad task, model list, image, prompt or numbers.
    """
    task = str(task or "")
    req = _request(ctx, task, models, classes, confidence, question)
    if req.problems:
        first = next(iter(req.problems.values()))
        raise first
    specs, wanted, conf, q = req.specs, req.classes, req.confidence, req.question
    run: Callable[[str, Timings], Any]
    decoded = image_of(ctx, image)  # once, shared by every model
    pts: list[tuple[float, float]] = []
    if task == "detect":
        def run(key: str, t: Timings) -> Any:
            return detect_task.detections(ctx, decoded, key, wanted, conf, timings=t)
    elif task == "depth":
        def run(key: str, t: Timings) -> Any:
            return depth_task.estimate(ctx, decoded, key, t)
    elif task == "segment":
        pts = parse_points(points, decoded)

        def run(key: str, t: Timings) -> Any:
            return segment_task.segment_points(ctx, decoded, key, pts, t)
    else:
        def run(key: str, t: Timings) -> Any:
            spec = ask_task.ask_spec(ctx, key)
            return ask_task.answer(ctx, decoded, key, ask_task.default_request(spec, q, ASK_MAX_NEW_TOKENS), t)
    runs = run_each(ctx, [s.key for s in specs], run)
    matrix, abs_rel = compute_agreement(task, runs)
    notes = list(decoded.notes)
    if task == "detect":
        notes += [f"{s.name}: boxes could not be read ({r.result.metadata['parse_error']}); left out of the agreement."
                  for s, r in zip(specs, runs, strict=True) if r.ok and r.result.metadata.get("parse_error")]  # fmt: skip
    if task == "ask":
        notes += [f"{s.name} does not take free questions: it gives a detailed caption instead."
                  for s in specs if not s.accepts("question")]  # fmt: skip
    notes += [f"{s.name}: {r.error}" for s, r in zip(specs, runs, strict=True) if not r.ok]
    cmp = Comparison(task, specs, runs, decoded, pts, matrix, abs_rel, notes)
    if task == "detect":
        _check_masks(ctx, cmp)
        notes += [f"{specs[i].name} and {specs[j].name} found no boxes: there is nothing to agree on "
                  "(lower the confidence or name other classes)."
                  for i in range(len(specs)) for j in range(i + 1, len(specs)) if both_empty(cmp, i, j)]  # fmt: skip
    return cmp


def both_empty(cmp: Comparison, i: int, j: int) -> bool:
    """True when models ``i`` and ``j`` of a detect comparison both ran and found no boxes."""
    a, b = cmp.runs[i], cmp.runs[j]
    return cmp.task == "detect" and usable(a, "detect") and usable(b, "detect") and len(a.result) == 0 == len(b.result)


def _check_masks(ctx: Any, cmp: Comparison) -> None:
    """For each run with masks (SAM 3): SAM 2.1 on its boxes, mean mask IoU as a note (skipped, said why,
    when no SAM 2.1 model can run here)."""
    from model_loaders.core.registry import DEFAULTS

    with_masks = [r for r in cmp.runs if usable(r, "detect") and getattr(r.result, "mask", None) is not None and len(r.result)]
    if not with_masks:
        return
    segmenter = DEFAULTS["segment"]
    for run in with_masks:
        try:
            check = mask_check(ctx, cmp.image, run, segmenter)
        except (InputError, ModelUnavailable) as exc:
            cmp.notes.append(f"Masks not checked against {segmenter}: {exc}")
            return
        cmp.mask_checks.append(check)
        name = ctx.spec(run.key).name
        cmp.notes.append(f"{name}'s masks vs {ctx.spec(segmenter).name} prompted with {name}'s boxes: mean mask IoU "
                         f"{check.mean:.2f} over {len(check.ious)} instance(s).")  # fmt: skip
