"""The workflow pipeline without models: merge -> crop -> ask -> validate -> rows -> export.

Detect -> dynamic crop -> VLM -> validated JSON (the seed article's book inventory,
generalised). The model calls are passed in as callables, so every step here is tested on
hand-built inputs; `run_workflow` runs the real detector and VLM through the task layer.

A row's ``valid`` flag is the seed's ``error_status`` turned around: ``True`` when the VLM's
answer parsed as JSON and matched the schema. The raw VLM text is always kept, valid or not.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from model_loaders.core.errors import InputError
from model_loaders.core.jsontext import loads
from model_loaders.tasks.structured import PRESETS, extract_json, load_schema, schema_instruction, validate

log = logging.getLogger(__name__)

MAX_FIELDS = 24
MAX_CELL_CHARS = 10_000
MERGE_IOU = 0.5
MASK_FILL = (128, 128, 128)  # a masked crop's background: flat grey, no edges for the VLM to read

# The seed article's book inventory: the shared "book" preset (title, author, publisher).
BOOK_SCHEMA: dict[str, Any] = copy.deepcopy(PRESETS["book"])

# Columns every exported row has; the schema's fields follow them (CSV) or sit under "fields" (JSON).
BASE_COLUMNS: tuple[str, ...] = (
    "index",
    "class_name",
    "confidence",
    "x1",
    "y1",
    "x2",
    "y2",
    "crop_x1",
    "crop_y1",
    "crop_x2",
    "crop_y2",
    "valid",
    "error",
    "raw",
)


# --------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------


def schema_json(schema: dict[str, Any]) -> str:
    """Pretty JSON text of a schema (what the editable schema box shows)."""
    return json.dumps(schema, indent=2, ensure_ascii=False)


def parse_schema(text: Any) -> dict[str, Any]:
    """Parse and check a user's JSON Schema for the VLM's answer.

    JSON parsing and the JSON Schema check are the Ask tab's (``structured.load_schema``);
    on top, the workflow needs an object schema with named ``properties``, since those
    become the results table's columns.

    Raises:
        InputError: not JSON, not a valid JSON Schema, or not an object schema with properties.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError("Write the JSON Schema of one answer, or pick a preset.")
    schema = load_schema(text)
    if schema is None:  # load_schema treats blank text as "no schema"; here one is required
        raise InputError("Write the JSON Schema of one answer, or pick a preset.")
    props = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(props, dict) or not props:
        raise InputError('The schema must describe an object with "properties" (they become the table columns).')
    if len(props) > MAX_FIELDS:
        raise InputError(f"The schema has {len(props)} properties; at most {MAX_FIELDS}.")
    clash = sorted(set(props) & set(BASE_COLUMNS))
    if clash:
        raise InputError(f"Rename these properties (they clash with built-in columns): {', '.join(clash)}.")
    return copy.deepcopy(schema)


def field_names(schema: dict[str, Any]) -> list[str]:
    """The schema's property names, in order."""
    return [str(k) for k in schema.get("properties", {})]


def build_prompt(schema: dict[str, Any]) -> str:
    """The instruction sent with every crop: answer with one JSON object matching ``schema``."""
    return (
        "Read the object in this image. Use an empty string for anything you cannot read."
        + schema_instruction(schema)
    )


# --------------------------------------------------------------------------------------------
# parsing and validation of one answer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedAnswer:
    """One VLM answer checked against the schema.

    Attributes:
        fields: the parsed object (``{}`` when nothing parsed).
        valid: parsed as JSON and matched the schema.
        error: why it is invalid (empty when valid).
    """

    fields: dict[str, Any]
    valid: bool
    error: str = ""


def _json_object(raw: str) -> tuple[dict[str, Any] | None, str]:
    try:
        obj = extract_json(raw or "")  # the Ask tab's lenient extraction (fences, prose)
    except ValueError as exc:
        return None, str(exc)
    if isinstance(obj, list) and len(obj) == 1 and isinstance(obj[0], dict):
        obj = obj[0]  # a one-element list around the object is a common VLM habit
    if not isinstance(obj, dict):
        return None, f"answer is JSON but not an object ({type(obj).__name__})"
    return obj, ""


def validate_fields(fields: dict[str, Any], schema: dict[str, Any]) -> str:
    """The first schema violation of ``fields`` as short text, or ``""`` when they are valid."""
    errors = validate(fields, schema, max_errors=1)
    return errors[0].removeprefix("(root): ")[:300] if errors else ""


def parse_answer(raw: str, schema: dict[str, Any]) -> ParsedAnswer:
    """Parse a VLM answer into fields and check them against ``schema`` (raw text untouched)."""
    obj, error = _json_object(raw)
    if obj is None:
        return ParsedAnswer({}, False, error)
    # Keep only the schema's fields for the table; extra keys are noted as an error if the
    # schema forbids them (validation below sees the full object).
    error = validate_fields(obj, schema)
    names = field_names(schema)
    fields = {k: obj[k] for k in names if k in obj}
    return ParsedAnswer(fields, not error, error)


# --------------------------------------------------------------------------------------------
# merging and cropping
# --------------------------------------------------------------------------------------------


def merge_duplicates(det: Any, iou_threshold: float = MERGE_IOU) -> Any:
    """Drop overlapping duplicates, class-agnostically, keeping the most confident box.

    Non-maximum suppression on IoU (supervision's ``with_nms``), class-agnostic on purpose: one
    book detected as "book" and "notebook" is still one crop, and every crop costs a VLM call.
    VLM boxes have no score: they count in the order the model wrote them.

    Returns:
        The kept detections, most confident first.
    """
    import supervision as sv

    if len(det) <= 1:
        return det
    scored = det.confidence is not None
    work = det if scored else sv.Detections(xyxy=det.xyxy, confidence=np.linspace(1.0, 0.5, len(det)),
                                            class_id=det.class_id, data=det.data, mask=det.mask)  # fmt: skip
    order = np.argsort(-work.confidence, kind="stable")
    work = work[order].with_nms(threshold=iou_threshold, class_agnostic=True)
    kept = work[np.argsort(-work.confidence, kind="stable")]
    if not scored:
        kept = sv.Detections(xyxy=kept.xyxy, class_id=kept.class_id, data=kept.data, mask=kept.mask)
    kept.metadata.update(det.metadata)
    return kept


def padded_box(box: Sequence[float], padding: int, width: int, height: int) -> tuple[int, int, int, int]:
    """``box`` (xyxy) grown by ``padding`` pixels on each side, rounded outwards, clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (
        max(0, int(np.floor(x1)) - padding),
        max(0, int(np.floor(y1)) - padding),
        min(width, int(np.ceil(x2)) + padding),
        min(height, int(np.ceil(y2)) + padding),
    )


def crop(image: np.ndarray, box: Sequence[float], padding: int,
         mask: np.ndarray | None = None) -> tuple[np.ndarray, tuple[int, int, int, int]]:  # fmt: skip
    """The crop of ``image`` (H, W, 3) for ``box`` plus ``padding``, and the crop's box.

    With ``mask`` (bool, the image's size) the pixels outside it are a flat grey: the VLM reads
    only the object, not its neighbours that a box also holds (a tilted book, a stack).

    Raises:
        InputError: when the clipped box is empty (a box entirely outside the image).
    """
    h, w = image.shape[:2]
    cb = padded_box(box, padding, w, h)
    if cb[2] <= cb[0] or cb[3] <= cb[1]:
        raise InputError(f"Box {tuple(round(float(v), 1) for v in box)} lies outside the image.")
    pixels = np.ascontiguousarray(image[cb[1] : cb[3], cb[0] : cb[2]])
    if mask is not None:
        inside = mask[cb[1] : cb[3], cb[0] : cb[2]]
        pixels = np.where(inside[..., None], pixels, np.asarray(MASK_FILL, np.uint8)).astype(np.uint8)
    return pixels, cb


# --------------------------------------------------------------------------------------------
# rows
# --------------------------------------------------------------------------------------------


@dataclass
class ResultRow:
    """One kept detection, its crop and what the VLM made of it.

    Attributes:
        index: position in the kept detections (0-based), stable across edits and re-runs.
        box: detection box (x1, y1, x2, y2) in working-image pixels.
        crop_box: the padded crop box, clipped to the image.
        class_name: detector's class (or the open-vocabulary phrase).
        confidence: detector's score (``None`` for VLM grounding, which has none).
        fields: parsed (or user-corrected) fields.
        valid: the answer matched the schema (re-checked after a user edit).
        error: why it is invalid.
        raw: the VLM's raw text, always kept.
        edited: a user corrected a field.
        crop: the crop pixels (not exported).
    """

    index: int
    box: tuple[float, float, float, float]
    crop_box: tuple[int, int, int, int]
    class_name: str = ""
    confidence: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    valid: bool = False
    error: str = ""
    raw: str = ""
    edited: bool = False
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (no pixels)."""
        return {
            "index": self.index,
            "class_name": self.class_name,
            "confidence": None if self.confidence is None else round(float(self.confidence), 4),
            "box": [round(float(v), 2) for v in self.box],
            "crop_box": [int(v) for v in self.crop_box],
            "fields": copy.deepcopy(self.fields),
            "valid": bool(self.valid),
            "error": self.error,
            "raw": self.raw,
            "edited": bool(self.edited),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResultRow:
        """Inverse of `to_dict`."""
        conf = d.get("confidence")
        return cls(
            index=int(d["index"]),
            box=tuple(float(v) for v in d["box"]),  # type: ignore[arg-type]
            crop_box=tuple(int(v) for v in d["crop_box"]),  # type: ignore[arg-type]
            class_name=str(d.get("class_name", "")),
            confidence=None if conf is None else float(conf),
            fields=dict(d.get("fields") or {}),
            valid=bool(d.get("valid", False)),
            error=str(d.get("error", "")),
            raw=str(d.get("raw", "")),
            edited=bool(d.get("edited", False)),
        )


def ask_row(row: ResultRow, ask: Callable[[np.ndarray], str], schema: dict[str, Any]) -> ResultRow:
    """Ask the VLM about ``row``'s crop and return the row with parsed fields (a new object)."""
    if row.crop is None:
        raise InputError(f"Row {row.index} has no crop to ask about; run the workflow again.")
    raw = ask(row.crop)
    parsed = parse_answer(raw, schema)
    return ResultRow(
        index=row.index,
        box=row.box,
        crop_box=row.crop_box,
        class_name=row.class_name,
        confidence=row.confidence,
        fields=parsed.fields,
        valid=parsed.valid,
        error=parsed.error,
        raw=raw,
        crop=row.crop,
    )


def make_rows(image: np.ndarray, det: Any, padding: int, masked: bool = False) -> list[ResultRow]:
    """One row (with its crop) per detection, before any VLM call; ``masked``: the background of
    each crop greyed out where the detector gave masks."""
    names = det.data.get("class_name") if hasattr(det, "data") else None
    masks = getattr(det, "mask", None) if masked else None
    rows: list[ResultRow] = []
    for i in range(len(det)):
        box = tuple(float(v) for v in det.xyxy[i])
        try:
            pixels, cb = crop(image, box, padding, None if masks is None else masks[i])
        except InputError:
            log.info("skipping box %s outside the image", box)
            continue
        rows.append(
            ResultRow(
                index=len(rows),
                box=box,  # type: ignore[arg-type]
                crop_box=cb,
                class_name="" if names is None else str(names[i]),
                confidence=None if det.confidence is None else float(det.confidence[i]),
                crop=pixels,
            )
        )
    return rows


def run_pipeline(
    image: np.ndarray,
    det: Any,
    ask: Callable[[np.ndarray], str],
    schema: dict[str, Any],
    padding: int = 10,
    merge_iou: float = MERGE_IOU,
    max_crops: int = 32,
    workers: int = 1,
    masked: bool = False,
) -> tuple[Any, list[ResultRow]]:
    """Merge duplicates, crop, ask the VLM about each crop, validate.

    Args:
        image: (H, W, 3) RGB uint8 working image.
        det: the detector's (already class-filtered) ``Detections``.
        ask: ``ask(crop) -> raw text`` (the VLM, with the schema prompt baked in).
        schema: checked JSON Schema (see `parse_schema`).
        padding: pixels added around each box before cropping.
        merge_iou: IoU at which two boxes are one object.
        max_crops: most crops sent to the VLM (most confident first); each is one VLM call.
        workers: crops asked about at once (a serving engine batches them; a local model: 1).
        masked: grey out each crop's background where ``det`` has masks (SAM 3).

    Returns:
        ``(kept detections, rows)``: one row per kept detection.
    """
    kept = merge_duplicates(det, merge_iou)
    if len(kept) > max_crops:
        kept = kept[np.arange(max_crops)]
    rows = make_rows(image, kept, padding, masked)
    if workers <= 1 or len(rows) <= 1:
        return kept, [ask_row(r, ask, schema) for r in rows]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(rows)), thread_name_prefix="workflow-crop") as pool:
        return kept, list(pool.map(lambda r: ask_row(r, ask, schema), rows))


# --------------------------------------------------------------------------------------------
# table and exports
# --------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _uncell(text: Any, spec: dict[str, Any]) -> Any:
    """A table/CSV cell back to the schema's type (strings stay strings)."""
    text = "" if text is None else str(text)
    kind = spec.get("type")
    if kind == "string" or (isinstance(kind, list) and "string" in kind):
        return text
    if text == "":
        return None
    try:
        return loads(text, "A cell", max_chars=MAX_CELL_CHARS)
    except InputError:
        return text  # left as typed; validation flags it


def table_headers(schema: dict[str, Any]) -> list[str]:
    """Columns of the results table shown in the UI."""
    return ["#", "class", "box", *field_names(schema), "valid", "error", "raw VLM text"]


def rows_to_table(rows: Sequence[ResultRow], schema: dict[str, Any]) -> list[list[Any]]:
    """The results table: one list per row, field cells as text (editable)."""
    out: list[list[Any]] = []
    for r in rows:
        box = ", ".join(f"{v:.0f}" for v in r.box)
        cells = [_cell(r.fields.get(name)) for name in field_names(schema)]
        flag = "yes" if r.valid else "no"
        out.append([r.index, r.class_name, box, *cells, flag + (" (edited)" if r.edited else ""), r.error, r.raw])
    return out


def apply_table_edits(rows: Sequence[ResultRow], table: Sequence[Sequence[Any]], schema: dict[str, Any]) -> list[ResultRow]:
    """Take corrected field cells from the table and re-validate the edited rows.

    Only field columns are read; everything else (box, raw text) stays as the pipeline made
    it, so a user cannot forge the raw answer. Rows are matched by their ``#`` column.
    """
    names = field_names(schema)
    props = schema.get("properties", {})
    out = [copy.copy(r) for r in rows]
    pos = {r.index: i for i, r in enumerate(out)}
    for line in table:
        if not line:
            continue
        try:
            idx = int(float(line[0]))
        except (TypeError, ValueError):
            continue
        if idx not in pos:
            continue
        row = out[pos[idx]]
        new: dict[str, Any] = {}
        for k, name in enumerate(names):
            cell = line[3 + k] if len(line) > 3 + k else ""
            if cell is None or str(cell) == "":
                # A blank cell cannot tell "" from "absent": keep what the VLM said, else absent.
                if row.fields.get(name) == "":
                    new[name] = ""
                continue
            new[name] = _uncell(cell, props.get(name, {}))
        if _normalise(new) != _normalise(row.fields):
            row.fields = new
            row.error = validate_fields(new, schema)
            row.valid = not row.error
            row.edited = True
    return out


def _normalise(fields: dict[str, Any]) -> dict[str, str]:
    return {k: _cell(v) for k, v in fields.items() if _cell(v) != ""}


def rows_to_json(rows: Sequence[ResultRow], info: dict[str, Any] | None = None) -> str:
    """Export rows (and run info: models, schema, timings) as JSON."""
    return json.dumps({"info": info or {}, "rows": [r.to_dict() for r in rows]}, indent=2, ensure_ascii=False)


def rows_from_json(text: str) -> list[ResultRow]:
    """Import rows written by `rows_to_json` (crops are not stored, so ``crop`` is ``None``)."""
    data = json.loads(text)
    items = data["rows"] if isinstance(data, dict) else data
    return [ResultRow.from_dict(d) for d in items]


def rows_to_csv(rows: Sequence[ResultRow], schema: dict[str, Any]) -> str:
    """Export rows as CSV: the base columns, then one column per schema field.

    Non-string field values are written as JSON so they read back with their type.
    """
    names = field_names(schema)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*BASE_COLUMNS, "edited", *names])
    for r in rows:
        writer.writerow(
            [
                r.index,
                r.class_name,
                "" if r.confidence is None else f"{r.confidence:.4f}",
                *(f"{v:.2f}" for v in r.box),
                *r.crop_box,
                "true" if r.valid else "false",
                r.error,
                r.raw,
                "true" if r.edited else "false",
                *(_cell(r.fields.get(n)) for n in names),
            ]
        )
    return buf.getvalue()


def rows_from_csv(text: str, schema: dict[str, Any]) -> list[ResultRow]:
    """Import rows written by `rows_to_csv`; field cells are typed by the schema."""
    props = schema.get("properties", {})
    rows: list[ResultRow] = []
    for d in csv.DictReader(io.StringIO(text)):
        fields: dict[str, Any] = {}
        for name in field_names(schema):
            if name in d and d[name] != "":
                fields[name] = _uncell(d[name], props.get(name, {}))
        rows.append(
            ResultRow(
                index=int(d["index"]),
                box=(float(d["x1"]), float(d["y1"]), float(d["x2"]), float(d["y2"])),
                crop_box=(int(d["crop_x1"]), int(d["crop_y1"]), int(d["crop_x2"]), int(d["crop_y2"])),
                class_name=d["class_name"],
                confidence=float(d["confidence"]) if d["confidence"] else None,
                fields=fields,
                valid=d["valid"] == "true",
                error=d["error"],
                raw=d["raw"],
                edited=d.get("edited") == "true",
            )
        )
    return rows


def rows_in_original_pixels(rows: Sequence[ResultRow], scale: float) -> list[ResultRow]:
    """Copies of ``rows`` with boxes mapped from working-image to original-image pixels.

    Args:
        rows: rows with working-size boxes.
        scale: working size / original size (``DecodedImage.scale``).
    """
    if scale == 1.0:
        return [copy.copy(r) for r in rows]
    out = []
    for r in rows:
        c = copy.copy(r)
        c.box = tuple(round(v / scale, 2) for v in r.box)  # type: ignore[assignment]
        c.crop_box = tuple(int(round(v / scale)) for v in r.crop_box)  # type: ignore[assignment]
        out.append(c)
    return out


# --------------------------------------------------------------------------------------------
# running it: the detector and the VLM through the task layer
# --------------------------------------------------------------------------------------------

MAX_PADDING = 256
MAX_CLASSES_CHARS = 500
MAX_NEW_TOKENS = 128


@dataclass
class WorkflowRun:
    """One workflow run: what the tab shows and what later edits and re-runs need."""

    detector: str
    vlm: str
    schema: dict[str, Any]
    image: Any  # DecodedImage
    detections: Any
    rows: list[ResultRow]
    timings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        """Run information for exports and the API."""
        return {"detector": self.detector, "vlm": self.vlm, "schema": self.schema,
                "original_size": list(self.image.original_size), "boxes": "original-image pixels",
                "timings": self.timings}  # fmt: skip

    def payload(self) -> dict[str, Any]:
        """The ``workflow`` endpoint's JSON: run info and one dict per row (original-image pixels)."""
        rows = rows_in_original_pixels(self.rows, self.image.scale)
        return {"info": self.info(), "rows": [r.to_dict() for r in rows], "notes": self.notes}


def _asker(ctx: Any, vlm: str, schema: dict[str, Any], timings: Any, max_new_tokens: int) -> Callable[[np.ndarray], str]:
    from model_loaders.core.images import DecodedImage
    from model_loaders.core.protocols import AskRequest
    from model_loaders.core.results import Timings
    from model_loaders.tasks import ask as ask_task

    request = AskRequest(question=build_prompt(schema), max_new_tokens=max_new_tokens, max_time=ask_task.MAX_TIME_S,
                         json_schema=schema)  # fmt: skip
    lock = threading.Lock()

    def ask(pixels: np.ndarray) -> str:
        own = Timings()  # crops may be asked about at once: each call times itself, then adds up
        result = ask_task.answer(ctx, DecodedImage.of_array(pixels), vlm, request, own)
        with lock:
            for name in ("load_ms", "preprocess_ms", "inference_ms", "postprocess_ms"):
                setattr(timings, name, getattr(timings, name) + getattr(own, name))
            timings.model, timings.device, timings.weights = own.model, own.device, own.weights
        return result.raw or result.text

    return ask


@dataclass
class _Settings:
    schema: dict[str, Any] = field(default_factory=dict)
    detector: Any = None
    vlm: Any = None
    classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: dict[str, Exception] = field(default_factory=dict)


def _settings(ctx: Any, detector: Any, classes: Any, vlm: Any, schema_text: Any) -> _Settings:
    """A workflow's models, classes and schema, checked before the image is decoded or a model loads."""
    from model_loaders.core.errors import ModelUnavailable
    from model_loaders.core.validate import clean_text
    from model_loaders.tasks import ask as ask_task
    from model_loaders.tasks import detect as detect_task

    out = _Settings()

    def check(name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (InputError, ModelUnavailable) as exc:
            out.problems[name] = exc
            return None

    out.schema = check("schema", lambda: parse_schema(schema_text)) or {}
    out.detector = check("detector", lambda: detect_task.detect_spec(ctx, detector, "a detector"))
    out.vlm = check("vlm", lambda: ask_task.ask_spec(ctx, vlm, "a chat VLM"))
    if out.vlm is not None and not out.vlm.accepts("question"):
        out.problems["vlm"] = InputError(f"{out.vlm.name} cannot answer with JSON: pick a chat VLM.")
    text = check("classes", lambda: clean_text(classes, "Classes", MAX_CLASSES_CHARS)) or ""
    out.classes, out.notes = check("classes", lambda: detect_task.parse_prompt(text)) or ([], []) if text else ([], [])
    if out.detector is not None and out.detector.open_vocabulary and not out.classes and "classes" not in out.problems:
        out.problems["classes"] = InputError(f"{out.detector.name} finds what you name: type the classes to find.")
    return out


def problems(ctx: Any, detector: Any, classes: Any, vlm: Any, schema_text: Any) -> dict[str, str]:
    """What is wrong with a workflow's settings, by field (detector, classes, vlm, schema),
    before anything runs; `run_workflow` refuses the same."""
    return {name: str(exc) for name, exc in _settings(ctx, detector, classes, vlm, schema_text).problems.items()}


def run_workflow(ctx: Any, image: Any, detector: Any, classes: Any, confidence: Any, padding: Any, vlm: Any,
                 schema_text: Any, masked: Any = False, max_new_tokens: int = MAX_NEW_TOKENS) -> WorkflowRun:  # fmt: skip
    """Validate everything, detect, merge, crop, ask the VLM about each crop and validate.

    ``masked``: crops show only the object where the detector gives masks (SAM 3), the rest grey.

    Raises:
        InputError: bad image, model choice, classes, numbers or schema (before any model loads).
    """
    from model_loaders.core.results import Timings
    from model_loaders.core.validate import finite_number
    from model_loaders.tasks import detect as detect_task
    from model_loaders.tasks.base import backend_for, image_of

    settings = _settings(ctx, detector, classes, vlm, schema_text)
    if settings.problems:
        raise next(iter(settings.problems.values()))
    schema, det_spec, vlm_spec, wanted, notes = (settings.schema, settings.detector, settings.vlm,
                                                 settings.classes, settings.notes)  # fmt: skip
    conf = finite_number(confidence, "Confidence", 0.0, 1.0)
    pad = int(finite_number(padding, "Crop padding", 0, MAX_PADDING))
    decoded = image_of(ctx, image)
    notes = list(decoded.notes) + notes
    det_t, vlm_t = Timings(), Timings()
    det = detect_task.detections(ctx, decoded, det_spec.key, wanted, conf, timings=det_t)
    if det.metadata.get("parse_error"):
        notes.append(f"{det_spec.name}'s boxes could not be read ({det.metadata['parse_error']}).")
    kept, rows = det[np.arange(0)], []
    merged = 0
    if len(det) == 0:
        what = ", ".join(wanted) if wanted else "objects"
        notes.append(f"No {what} found: the table is empty. Try a lower confidence, other class words or another detector.")
    else:
        unique = len(merge_duplicates(det))
        merged = len(det) - unique
        workers = getattr(backend_for(ctx, vlm_spec, "ask"), "concurrency", 1)  # an engine batches crops
        if masked is True and det.mask is None:
            notes.append(f"{det_spec.name} gives boxes only: the crops keep their background (SAM 3 gives masks).")
        kept, rows = run_pipeline(decoded.array, det, _asker(ctx, vlm_spec.key, schema, vlm_t, max_new_tokens), schema,
                                  pad, workers=workers, masked=masked is True)  # fmt: skip
        if unique > len(rows):
            notes.append(f"Only the {len(rows)} most confident detections were read.")
    if merged:
        notes.append(f"{merged} overlapping duplicate detection(s) merged before reading.")
    return WorkflowRun(det_spec.key, vlm_spec.key, schema, decoded, kept, rows,
                       {"detector": det_t.as_dict(), "vlm": vlm_t.as_dict()}, notes)  # fmt: skip


def rerun_row(ctx: Any, run: WorkflowRun, index: Any, max_new_tokens: int = MAX_NEW_TOKENS) -> WorkflowRun:
    """Ask the VLM about one crop again and replace that row (a new run object; the old one is unchanged).

    Raises:
        InputError: no such row.
    """
    from model_loaders.core.results import Timings
    from model_loaders.core.validate import finite_number

    idx = int(finite_number(index, "Row #", 0, 10_000))
    pos = next((i for i, r in enumerate(run.rows) if r.index == idx), None)
    if pos is None:
        raise InputError(f"There is no row #{idx}.")
    new_row = ask_row(run.rows[pos], _asker(ctx, run.vlm, run.schema, Timings(), max_new_tokens), run.schema)
    rows = list(run.rows)
    rows[pos] = new_row
    return replace(run, rows=rows)


def write_exports(ctx: Any, run: WorkflowRun) -> list[str]:
    """Write results.json and results.csv (boxes in original-image pixels); return their paths."""
    folder = ctx.outputs.new_dir("workflow")
    rows = rows_in_original_pixels(run.rows, run.image.scale)
    (folder / "results.json").write_text(rows_to_json(rows, run.info()), encoding="utf-8")
    (folder / "results.csv").write_text(rows_to_csv(rows, run.schema), encoding="utf-8")
    return [str(folder / "results.json"), str(folder / "results.csv")]
