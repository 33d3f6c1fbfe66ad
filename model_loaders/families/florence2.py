"""Florence-2 (transformers-native ``Florence2ForConditionalGeneration``): a fixed task menu, not a chat.

The bundle implements ``Asker`` (a request carries a task token from `TASK_MENU`, a phrase for
grounding tasks, a region for region tasks) and ``Detector`` (object detection, or phrase
grounding when classes are named). Boxes come as ``<loc_N>`` tokens on a 0–999 grid, parsed by
the checkpoint's own post-processor.

One code path for all weights modes; only the weight source differs: ``hub`` loads the pinned
checkpoint, ``random`` builds the real-size architecture of the spec's variant from a config
written here, ``tiny`` shrinks that config. Offline modes get a small tokenizer made with the
same special, task and ``<loc_N>`` tokens (``offline_tokenizers``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_loaders.core.availability import LoadSettings
from model_loaders.core.errors import InputError, ModelUnavailable
from model_loaders.core.hub import hub_errors, pretrained_kwargs
from model_loaders.core.protocols import AskRequest, TaskPrompt
from model_loaders.core.results import AskChunk, GenerationStats, TextResult, Timings
from model_loaders.core.specs import ModelSpec
from model_loaders.families.chat_vlm import final_result, grounded_detections
from model_loaders.families.generation import neutralise_user_text, stream_generate
from model_loaders.families.grounding import Grounding, box_to_florence_locs, parse_florence

log = logging.getLogger(__name__)


TASK_MENU: tuple[TaskPrompt, ...] = (
    TaskPrompt("Caption", "<CAPTION>"),
    TaskPrompt("Detailed caption", "<DETAILED_CAPTION>"),
    TaskPrompt("More detailed caption", "<MORE_DETAILED_CAPTION>"),
    TaskPrompt("OCR", "<OCR>"),
    TaskPrompt("OCR with regions", "<OCR_WITH_REGION>"),
    TaskPrompt("Object detection", "<OD>"),
    TaskPrompt("Dense region caption", "<DENSE_REGION_CAPTION>"),
    TaskPrompt("Region proposal", "<REGION_PROPOSAL>"),
    TaskPrompt("Phrase grounding", "<CAPTION_TO_PHRASE_GROUNDING>", needs_text=True),
    TaskPrompt("Open-vocabulary detection", "<OPEN_VOCABULARY_DETECTION>", needs_text=True),
    TaskPrompt("Region caption", "<REGION_TO_DESCRIPTION>", needs_region=True),
    TaskPrompt("Region category", "<REGION_TO_CATEGORY>", needs_region=True),
    TaskPrompt("Region OCR", "<REGION_TO_OCR>", needs_region=True),
)
TASKS_BY_TOKEN = {t.token: t for t in TASK_MENU}
DEFAULT_TASK = "<MORE_DETAILED_CAPTION>"  # what a request without a task gets

# Parsing rules of the Florence-2 post-processor (the checkpoint's processor_config has them).
POST_PROCESSOR_CONFIG: dict[str, dict[str, Any]] = {
    "ocr": {
        "PATTERN": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>",
        "AREA_THRESHOLD": 0.0,
    },
    "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}

# Real sizes (florence-community checkpoints): DaViT vision tower + BART encoder-decoder.
_REAL = {
    "base": {
        "vision": {"embed_dim": [128, 256, 512, 1024], "num_heads": [4, 8, 16, 32], "num_groups": [4, 8, 16, 32]},
        "projection_dim": 768,
        "text": {"d_model": 768, "layers": 6, "heads": 12, "ffn": 3072},
    },
    "large": {
        "vision": {"embed_dim": [256, 512, 1024, 2048], "num_heads": [8, 16, 32, 64], "num_groups": [8, 16, 32, 64]},
        "projection_dim": 1024,
        "text": {"d_model": 1024, "layers": 12, "heads": 16, "ffn": 4096},
    },
}
REAL_VOCAB = 51289
REAL_IMAGE_SIDE = 768
TINY_IMAGE_SIDE = 32


@dataclass
class Florence2Bundle:
    """A loaded Florence-2; implements ``Asker`` and ``Detector``."""

    model: Any
    processor: Any
    spec: ModelSpec
    device: str
    dtype: Any
    vocab_limit: int | None = None

    def ask(
        self, image: Any, request: AskRequest, timings: Timings, stop: threading.Event | None = None
    ) -> Iterator[AskChunk]:
        """Run the request's task on a PIL image, streaming the raw text (``Asker``).

        Raises:
            InputError: an unknown task, or a phrase/region missing for a task that needs one.
        """
        try:
            yield from stream(self, image, request.task or DEFAULT_TASK, request.question, request.region,
                              max_new_tokens=request.max_new_tokens, max_time=request.max_time, stop_event=stop,
                              timings=timings)  # fmt: skip
        except ValueError as exc:
            raise InputError(str(exc)) from None

    def detect(self, image: np.ndarray, timings: Timings, classes: Sequence[str] | None = None) -> Any:
        """Object detection, or phrase grounding of ``classes`` (``Detector``; no scores)."""
        from PIL import Image

        wanted = [str(c) for c in classes or []]
        request = AskRequest(question=". ".join(wanted),
                             task="<CAPTION_TO_PHRASE_GROUNDING>" if wanted else "<OD>")  # fmt: skip
        return grounded_detections(final_result(self.ask(Image.fromarray(image), request, timings)), self.spec)


def _image_processor(side: int, seq_len: int) -> Any:
    from transformers import CLIPImageProcessor

    ip = CLIPImageProcessor(
        size={"height": side, "width": side},
        crop_size={"height": side, "width": side},
        do_center_crop=False,
        do_resize=True,
        resample=3,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    ip.image_seq_length = seq_len
    return ip


def offline_parts(spec: ModelSpec, tiny: bool) -> tuple[Any, Any]:
    """(config, processor) built offline: real size for ``random``, shrunk for ``tiny``."""
    from transformers import BartConfig, Florence2Config, Florence2Processor
    from transformers.models.florence2.configuration_florence2 import Florence2VisionConfig

    from model_loaders.families.offline_tokenizers import florence2_tokenizer

    tok = florence2_tokenizer()
    if tiny:
        vision = Florence2VisionConfig(
            depths=[1, 1], patch_size=[7, 3], patch_stride=[4, 2], patch_padding=[3, 1],
            patch_prenorm=[False, True], embed_dim=[16, 32], num_heads=[2, 4], num_groups=[2, 4],
            window_size=2, projection_dim=32, max_temporal_embeddings=4, max_position_embeddings=8,
        )  # fmt: skip
        text = dict(d_model=32, layers=1, heads=2, ffn=64)
        vocab, side, stride = len(tok), TINY_IMAGE_SIDE, 8
    else:
        if spec.variant not in _REAL:
            raise ModelUnavailable(spec.key, "load_failed", f"{spec.name}: unknown variant {spec.variant!r}.")
        real = _REAL[spec.variant]
        vision = Florence2VisionConfig(projection_dim=real["projection_dim"], **real["vision"])
        text = real["text"]
        vocab, side, stride = REAL_VOCAB, REAL_IMAGE_SIDE, 32
    bart = BartConfig(
        vocab_size=vocab,
        d_model=text["d_model"],
        encoder_layers=text["layers"],
        decoder_layers=text["layers"],
        encoder_attention_heads=text["heads"],
        decoder_attention_heads=text["heads"],
        encoder_ffn_dim=text["ffn"],
        decoder_ffn_dim=text["ffn"],
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        decoder_start_token_id=tok.eos_token_id,
        forced_bos_token_id=tok.bos_token_id,
    )
    config = Florence2Config(
        text_config=bart.to_dict(), vision_config=vision.to_dict(), image_token_id=tok.image_token_id
    )
    # Spatial tokens of the last stage plus one pooled token.
    seq_len = (side // stride) ** 2 + 1
    processor = Florence2Processor(
        image_processor=_image_processor(side, seq_len), tokenizer=tok, post_processor_config=POST_PROCESSOR_CONFIG
    )
    return config, processor


def architecture(spec: ModelSpec, tiny: bool = False) -> Any:
    """The checkpoint's architecture (real size, or shrunken with ``tiny``), random weights."""
    from transformers import Florence2ForConditionalGeneration

    return Florence2ForConditionalGeneration(offline_parts(spec, tiny)[0])


def load(spec: ModelSpec, settings: LoadSettings) -> Florence2Bundle:
    """Load Florence-2 for ``spec`` under ``settings`` (hub, random or tiny weights)."""
    import torch
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    dtype = getattr(torch, settings.dtype_name(spec))
    vocab_limit = None
    if settings.weights == "hub":
        with hub_errors(spec):
            processor = AutoProcessor.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec))
            model = Florence2ForConditionalGeneration.from_pretrained(
                spec.checkpoint, dtype=dtype, **pretrained_kwargs(spec)
            )
    else:
        config, processor = offline_parts(spec, tiny=settings.weights == "tiny")
        torch.manual_seed(0)
        model = Florence2ForConditionalGeneration(config).to(dtype)
        vocab_limit = len(processor.tokenizer)
        # Random weights tend to end at once; a floor of a few tokens keeps streaming visible.
        model.generation_config.min_new_tokens = 8
    model.to(settings.device).eval()
    return Florence2Bundle(model, processor, spec, settings.device, dtype, vocab_limit)


def build_prompt(task: TaskPrompt, text: str = "", region: tuple[float, float, float, float] | None = None,
                 image_wh: tuple[int, int] | None = None) -> str:  # fmt: skip
    """The processor prompt for ``task``: the task token plus the user's phrase or region.

    Raises:
        ValueError: when the task needs a phrase or a region that is missing.
    """
    if task.needs_text:
        phrase = neutralise_user_text(text).strip()
        if not phrase:
            raise ValueError(f"{task.label} needs a phrase: type what to find.")
        return task.token + phrase
    if task.needs_region:
        if region is None or image_wh is None:
            raise ValueError(f"{task.label} needs a region: click two corners on the image.")
        return task.token + box_to_florence_locs(region, image_wh)
    return task.token


def _clean(text: str) -> str:
    for t in ("<s>", "</s>", "<pad>"):
        text = text.replace(t, "")
    return text


def stream(
    bundle: Florence2Bundle,
    image: Any,
    task_token: str,
    text: str = "",
    region: tuple[float, float, float, float] | None = None,
    *,
    max_new_tokens: int = 256,
    max_time: float = 60.0,
    stop_event: threading.Event | None = None,
    timings: Timings | None = None,
) -> Iterator[AskChunk]:
    """Run one Florence-2 task on a PIL image, streaming the raw text.

    Yields ``AskChunk``s with the text so far; the last one carries a ``TextResult`` whose
    ``detections`` are the parsed boxes in the image's pixel coordinates (``None`` for text
    tasks) and whose ``parse_error`` says when boxes could not be read.

    Raises:
        ValueError: unknown task, or a phrase/region missing for a task that needs one.
    """
    import torch

    task = TASKS_BY_TOKEN.get(task_token)
    if task is None:
        raise ValueError(f"Unknown Florence-2 task {task_token!r}.")
    timings = timings if timings is not None else Timings()
    image_wh = (int(image.size[0]), int(image.size[1]))
    with timings.stage("preprocess"):
        prompt = build_prompt(task, text, region, image_wh)
        inputs = bundle.processor(text=prompt, images=image, return_tensors="pt")
        inputs = {
            k: (v.to(bundle.device, bundle.dtype) if torch.is_floating_point(v) else v.to(bundle.device))
            for k, v in inputs.items()
        }
    stats = GenerationStats()
    tok = bundle.processor.tokenizer
    sofar = ""
    for chunk in stream_generate(
        bundle.model,
        inputs,
        tok,
        max_new_tokens=max_new_tokens,
        max_time=max_time,
        stop_event=stop_event,
        skip_special_tokens=False,  # <loc_N> tokens carry the boxes
        vocab_limit=bundle.vocab_limit,
        stats=stats,
    ):
        sofar += chunk
        yield AskChunk(_clean(sofar), stats=stats, input_wh=image_wh)
    timings.inference_ms += stats.total_ms
    with timings.stage("postprocess"):
        ids = stats.output_ids
        raw = bundle.processor.batch_decode(ids, skip_special_tokens=False)[0] if ids is not None else sofar
        try:
            parsed = bundle.processor.post_process_generation(raw, task=task.token, image_size=image_wh)
            grounding = parse_florence(parsed, image_wh)
            answer = parsed[task.token]
        except (ValueError, KeyError, IndexError, RuntimeError) as exc:
            grounding, answer = Grounding(error=f"Could not parse the Florence-2 output: {exc}"), _clean(raw)
        shown = answer if isinstance(answer, str) else _clean(raw).strip()
    result = TextResult(
        text=shown,
        raw=_clean(raw).strip(),
        detections=grounding.detections,
        parse_error=grounding.error,
        tokens=stats.tokens,
        timings=timings,
    )
    if result.detections is not None:
        result.detections.metadata.update(model=bundle.spec.key, timings=timings.as_dict())
    yield AskChunk(result.text, result=result, stats=stats, input_wh=image_wh)
