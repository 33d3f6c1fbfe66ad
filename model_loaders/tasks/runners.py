"""Run any model key on a decoded image, one task at a time, through the shared cache.

The Compare and Workflow tabs use these thin functions; the model code itself lives in the
family modules (``sam2``, ``depth_anything``, ``detectors``, ``yolo``, ``florence2``, ``vlm``).
Each run pins its model only while it runs (``ctx.use``), so a comparison whose models
together exceed the memory budget still completes: the cache evicts between runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from model_loaders.core.errors import InputError, ModelUnavailable
from model_loaders.core.registry import get_spec
from model_loaders.core.results import Timings
from model_loaders.core.specs import TASKS, ModelSpec

log = logging.getLogger(__name__)

MIN_COMPARE = 2
MAX_COMPARE = 4

# ``run(bundle, spec, timings) -> typed result``: the part of a run that needs the loaded model.
BundleRun = Callable[[Any, ModelSpec, Timings], Any]


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


def checked_spec(ctx: Any, key: str, task: str, what: str = "") -> ModelSpec:
    """The spec of a user-picked ``key`` that can do ``task`` and run here.

    Raises:
        InputError: unknown model, or a model that cannot do ``task``.
        ModelUnavailable: a model that cannot run here (with the reason).
    """
    try:
        spec = get_spec(key)
    except ModelUnavailable as exc:
        raise InputError(exc.message) from None
    if task not in spec.tasks:
        doing = {"ask": "answer questions", "detect": "detect objects", "segment": "segment", "depth": "estimate depth"}
        raise InputError(f"{spec.name} cannot {doing.get(task, task)}: pick {what or f'a model of the {task} task'}.")
    avail = ctx.availability(spec)
    if not avail.ok:
        raise ModelUnavailable(spec.key, avail.kind, avail.reason)  # type: ignore[arg-type]
    return spec


def check_compare_keys(ctx: Any, task: str, keys: Sequence[str] | None) -> list[ModelSpec]:
    """Validate a comparison request before anything loads.

    Raises:
        InputError: unknown task; fewer than 2 or more than 4 models; a model listed twice;
            an unknown model; a model that cannot do ``task``; a model that cannot run here.
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
    specs: list[ModelSpec] = []
    for key in keys:
        spec = checked_spec(ctx, key, task)
        specs.append(spec)
    return specs


def run_model(ctx: Any, key: str, run: BundleRun, timings: Timings | None = None) -> Any:
    """Pin ``key`` for exactly the duration of ``run`` and return its typed result.

    Raises:
        ModelUnavailable: the model cannot load here.
    """
    timings = timings if timings is not None else Timings()
    spec = get_spec(key)
    with ctx.use(key, timings) as bundle:
        result = run(bundle, spec, timings)
    if hasattr(result, "metadata") and isinstance(result.metadata, dict):
        result.metadata.setdefault("model", key)
        result.metadata["timings"] = timings.as_dict()
    return result


def run_sequentially(ctx: Any, keys: Sequence[str], run: BundleRun) -> list[ModelRun]:
    """Run ``keys`` one after another on the same input, each pinned only while it runs.

    A model that fails (cannot load, out of memory) gets its error in its `ModelRun`; the
    others still run. Input errors (bad prompt, bad image) stop the whole comparison, since
    they would fail for every model.
    """
    from model_loaders.core.cache import is_out_of_memory, release_memory

    runs: list[ModelRun] = []
    for key in keys:
        timings = Timings()
        err = ""
        result = None
        try:
            result = run_model(ctx, key, run, timings)
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


# --------------------------------------------------------------------------------------------
# one function per task: the part of a run that needs the loaded model (a `BundleRun`)
# --------------------------------------------------------------------------------------------

DETECTOR_FAMILIES = ("hf_detector", "zero_shot_detector", "yolo")
OPEN_VOCAB_FAMILIES = ("zero_shot_detector",)
DEFAULT_CONFIDENCE = 0.3
DEFAULT_NMS_IOU = 0.5


def is_open_vocabulary(spec: ModelSpec) -> bool:
    """True when the model is told what to find in words (open-vocabulary detector or VLM)."""
    return spec.family in OPEN_VOCAB_FAMILIES or spec.family not in DETECTOR_FAMILIES


def grounding_question(spec: ModelSpec, classes: Sequence[str]) -> str:
    """The prompt that makes a chat VLM answer with boxes in the format its parser reads."""
    what = ", ".join(classes) if classes else "object"
    if spec.family == "paligemma":
        return "detect " + " ; ".join(classes or ["object"])
    if spec.family == "gemini":
        return (
            f"Detect every {what} in the image. Answer only with JSON: "
            '[{"box_2d": [ymin, xmin, ymax, xmax], "label": "name"}], coordinates normalised to 0-1000.'
        )
    return (
        f"Locate every {what} in the image and output their bbox coordinates in JSON: "
        '[{"bbox_2d": [x1, y1, x2, y2], "label": "name"}].'
    )


def vlm_answer(
    bundle: Any,
    spec: ModelSpec,
    image: Any,
    question: str,
    timings: Timings,
    *,
    florence_task: str | None = None,
    max_new_tokens: int = 256,
    max_time: float = 60.0,
) -> Any:
    """Run any VLM family on a PIL image and return its final ``TextResult`` (no streaming).

    Florence-2 runs ``florence_task`` (a task token) with ``question`` as its phrase; chat
    models answer ``question``; Gemini goes through its API.

    Raises:
        InputError: a missing phrase for a Florence-2 task that needs one.
    """
    common: dict[str, Any] = {"max_new_tokens": max_new_tokens, "max_time": max_time, "timings": timings}
    if spec.family == "florence2":
        from model_loaders.families import florence2

        try:
            chunks = florence2.stream(bundle, image, florence_task or "<MORE_DETAILED_CAPTION>", question, **common)
            final = _last_result(chunks)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    elif spec.family == "gemini":
        from model_loaders.families import gemini

        final = _last_result(gemini.stream(bundle, image, question, (), **common))
    else:
        from model_loaders.families import vlm

        final = _last_result(vlm.stream(bundle, image, question, (), **common))
    return final


def _last_result(chunks: Any) -> Any:
    result = None
    for chunk in chunks:
        if chunk.result is not None:
            result = chunk.result
    if result is None:  # every stream ends with a result; this guards a broken adapter
        raise RuntimeError("the model's stream ended without a result")
    return result


def detect_run(
    image: Any,
    classes: Sequence[str] = (),
    confidence: float = DEFAULT_CONFIDENCE,
    nms_iou: float = DEFAULT_NMS_IOU,
    max_new_tokens: int = 256,
) -> BundleRun:
    """A `BundleRun` that detects ``classes`` (all classes when empty) with any detecting model.

    Closed-set detectors run once and ``classes`` filters their output by name; open-vocabulary
    detectors and VLMs are asked for ``classes`` in words (VLM boxes have no score, so no
    confidence filter applies to them). VLM answers whose boxes cannot be read come back as
    empty detections with ``metadata["parse_error"]`` set; never as "no objects".

    Args:
        image: ``DecodedImage`` (its array and PIL view are used).
        classes: class names (filter for closed-set detectors, prompt for the others).
        confidence: score threshold for detectors.
        nms_iou: per-class NMS threshold for detectors.
        max_new_tokens: cap for VLM answers.
    """
    import supervision as sv

    from model_loaders.tasks import detection_utils as du

    wanted = [str(c) for c in classes]

    def run(bundle: Any, spec: ModelSpec, timings: Timings) -> Any:
        if spec.family in DETECTOR_FAMILIES:
            open_vocab = spec.family in OPEN_VOCAB_FAMILIES
            prompt = (wanted or ["object"]) if open_vocab else None
            if not open_vocab and wanted:
                keep = du.parse_class_filter(wanted, tuple(bundle.class_names))  # refuse unknown names early
            else:
                keep = []
            raw = bundle.detect(image.array, timings, prompt)
            with timings.stage("postprocess"):
                det = du.filter_detections(raw, confidence, nms_iou, keep or None).detections
            det.metadata.update(model=spec.key)
            return det
        if spec.family == "florence2":
            task = "<CAPTION_TO_PHRASE_GROUNDING>" if wanted else "<OD>"
            result = vlm_answer(bundle, spec, image.pil(), ". ".join(wanted), timings, florence_task=task,
                                max_new_tokens=max_new_tokens)  # fmt: skip
        else:
            result = vlm_answer(bundle, spec, image.pil(), grounding_question(spec, wanted), timings,
                                max_new_tokens=max_new_tokens)  # fmt: skip
        det = result.detections if result.detections is not None else sv.Detections.empty()
        det.metadata.update(model=spec.key, raw=result.raw, vlm=True)
        if result.parse_error:
            det.metadata["parse_error"] = result.parse_error
        elif result.detections is None:
            det.metadata["parse_error"] = "the answer contains no boxes"
        return det

    return run


def depth_run(image: Any) -> BundleRun:
    """A `BundleRun` that estimates depth on ``image`` (a ``DecodedImage``)."""

    def run(bundle: Any, spec: ModelSpec, timings: Timings) -> Any:
        from model_loaders.families import depth_anything

        return depth_anything.estimate_depth(bundle, image.array, timings)

    return run


def segment_run(image: Any, points: Sequence[tuple[float, float]]) -> BundleRun:
    """A `BundleRun` that segments one object per point (each point is its own prompt).

    Returns ``Detections`` with one bool mask per point (the candidate with the best predicted
    IoU) and the mask's bounding box, so masks line up by prompt across models.
    """
    import numpy as np
    import supervision as sv

    pts = [(float(x), float(y)) for x, y in points]

    def run(bundle: Any, spec: ModelSpec, timings: Timings) -> Any:
        from model_loaders.families import sam2

        if not pts:
            raise InputError("Add at least one point.")
        with timings.stage("inference"):
            embedding = sam2.encode_image(bundle, image.array, image.digest)
            preds = [sam2.decode_masks(bundle, embedding, [p], [1], multimask=True) for p in pts]
        with timings.stage("postprocess"):
            masks = np.stack([p.masks[p.best] for p in preds]).astype(bool)
            scores = np.array([float(p.scores[p.best]) for p in preds], dtype=np.float32)
            det = sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks, confidence=scores)
            det.data["class_name"] = np.array([f"point {i + 1}" for i in range(len(pts))], dtype=object)
        det.metadata.update(model=spec.key)
        return det

    return run


def ask_run(image: Any, question: str, max_new_tokens: int = 128) -> BundleRun:
    """A `BundleRun` that answers ``question``; Florence-2 (no free questions) gives a detailed caption."""

    def run(bundle: Any, spec: ModelSpec, timings: Timings) -> Any:
        return vlm_answer(bundle, spec, image.pil(), question, timings, florence_task="<MORE_DETAILED_CAPTION>",
                          max_new_tokens=max_new_tokens)  # fmt: skip

    return run


# Convenience wrappers: one call = pin, run, unpin.


def detect(ctx: Any, key: str, image: Any, timings: Timings | None = None, **kwargs: Any) -> Any:
    """Detect with model ``key`` on a ``DecodedImage``; see `detect_run` for ``kwargs``."""
    return run_model(ctx, key, detect_run(image, **kwargs), timings)


def depth(ctx: Any, key: str, image: Any, timings: Timings | None = None) -> Any:
    """Depth with model ``key`` on a ``DecodedImage`` (a ``DepthResult``)."""
    return run_model(ctx, key, depth_run(image), timings)


def segment(ctx: Any, key: str, image: Any, points: Sequence[tuple[float, float]], timings: Timings | None = None) -> Any:
    """Masks from model ``key``, one per point (``Detections`` with ``.mask``)."""
    return run_model(ctx, key, segment_run(image, points), timings)


def ask(ctx: Any, key: str, image: Any, question: str, timings: Timings | None = None, max_new_tokens: int = 128) -> Any:
    """Model ``key``'s answer to ``question`` (a ``TextResult``)."""
    return run_model(ctx, key, ask_run(image, question, max_new_tokens), timings)
