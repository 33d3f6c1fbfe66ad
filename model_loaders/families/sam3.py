"""SAM 3 (Meta, 2025): every instance of a concept named in words, as masks (transformers' ``Sam3Model``).

SAM 3 is an open-vocabulary instance segmenter, so it implements ``Detector``: the classes a user
types are its concepts, and each detection carries its mask (``sv.Detections.mask``) besides its
box and score. The image is encoded once per call and its features shared by every concept
(``vision_embeds``); each concept is one pass of the text encoder and the DETR-style decoder.
The bundle keeps the last images' features (byte-capped, keyed by the image's content) and every
concept's text features, so a new prompt on the same image runs only the decoder.
Everything the task layer does with detections (thresholds re-filtered without a new run, class
colours, tables, COCO export, Compare's box F1, the Workflow's crops) works unchanged.

Offline: ``random`` builds the checkpoint's architecture at real size (840 M parameters);
``tiny`` a shrunken one; both with a small CLIP-shaped tokenizer built in code.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_loaders.core.availability import LoadSettings
from model_loaders.core.detections import make_detections
from model_loaders.core.errors import InputError
from model_loaders.core.hub import hub_errors, pretrained_kwargs
from model_loaders.core.results import Timings
from model_loaders.core.specs import ModelSpec

log = logging.getLogger(__name__)

TINY_IMAGE_SIZE = 112
REAL_IMAGE_SIZE = 1008
# Instances kept per call: their masks are image-sized, so only the plausible ones are held.
MASK_FLOOR = 0.05
MAX_INSTANCES = 50
MASK_THRESHOLD = 0.5
EXEMPLAR = "exemplar"  # the name of instances found from exemplar boxes alone
FEATURE_IMAGES = 2  # images whose vision features are kept (a new prompt on them skips the encoder)
FEATURE_BYTES = 600 * 2**20  # ... within this many bytes (about 250 MB each at 1008 px in fp32)
TEXT_FEATURES = 256  # concepts whose text features are kept (a few kB each)


def tiny_config(vocab_size: int, bos: int, eos: int, pad: int, width: int = 32) -> Any:
    """A shrunken ``Sam3Config`` (112 px input, ``width`` wide everywhere) that runs in milliseconds.

    The video model's tracker reads the detector's features: there ``width`` is the tracker's (128).
    """
    from transformers import (
        CLIPTextConfig,
        Sam3Config,
        Sam3DETRDecoderConfig,
        Sam3DETREncoderConfig,
        Sam3GeometryEncoderConfig,
        Sam3MaskDecoderConfig,
        Sam3VisionConfig,
        Sam3ViTConfig,
    )

    vit = Sam3ViTConfig(hidden_size=width, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        image_size=TINY_IMAGE_SIZE, patch_size=14, window_size=4, global_attn_indexes=[1],
                        pretrain_image_size=TINY_IMAGE_SIZE)  # fmt: skip
    text = CLIPTextConfig(vocab_size=vocab_size, hidden_size=width, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, max_position_embeddings=32, bos_token_id=bos, eos_token_id=eos,
                          pad_token_id=pad)  # fmt: skip
    parts = {"hidden_size": width, "num_attention_heads": 2, "intermediate_size": 64}
    return Sam3Config(
        vision_config=Sam3VisionConfig(backbone_config=vit, fpn_hidden_size=width),
        text_config=text,
        geometry_encoder_config=Sam3GeometryEncoderConfig(num_layers=1, **parts),
        detr_encoder_config=Sam3DETREncoderConfig(num_layers=1, **parts),
        detr_decoder_config=Sam3DETRDecoderConfig(num_layers=1, num_queries=20, **parts),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=width, num_attention_heads=2),
    )


def offline_parts(spec: ModelSpec, tiny: bool) -> tuple[Any, Any]:
    """(config, processor) built in code: the checkpoint's architecture, or a shrunken one."""
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Processor

    from model_loaders.families.detectors import clip_like_tokenizer

    tokenizer = clip_like_tokenizer()
    if tiny:
        config = tiny_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
        size = TINY_IMAGE_SIZE
    else:
        config, size = Sam3Config(), REAL_IMAGE_SIZE  # the defaults are the released model's
    processor = Sam3Processor(image_processor=Sam3ImageProcessor(size={"height": size, "width": size}),
                              tokenizer=tokenizer)  # fmt: skip
    return config, processor


def architecture(spec: ModelSpec, tiny: bool = False) -> Any:
    """The checkpoint's architecture (real size), or the shrunken one."""
    from transformers import Sam3Model

    return Sam3Model(offline_parts(spec, tiny)[0])


@dataclass
class Sam3Bundle:
    """A loaded SAM 3 concept model; implements ``Detector`` (open vocabulary, with masks)."""

    model: Any
    processor: Any
    key: str
    device: str
    class_names: tuple[str, ...] = ()
    _images: OrderedDict[str, tuple[Any, int]] = field(default_factory=OrderedDict, repr=False)
    _texts: OrderedDict[str, tuple[Any, Any]] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    encodes: int = 0  # image encoder passes (a test and the benchmark count them)

    @property
    def open_vocabulary(self) -> bool:
        """The user names the concepts."""
        return True

    def detect(self, image: np.ndarray, timings: Timings, classes: Sequence[str] | None = None,
               boxes: Sequence[tuple[float, float, float, float, int]] = ()) -> Any:  # fmt: skip
        """Every instance of each concept in ``classes``: boxes, scores and masks at the image's size.

        ``boxes`` are exemplars (x1, y1, x2, y2, 1 to include / 0 to exclude, image pixels) given
        with every concept; with no concept they are the prompt on their own ("exemplar").
        """
        import torch

        if not classes and not boxes:
            raise InputError("Type what to find, separated by commas (for example: book, mug).")
        classes = list(classes or []) or [EXEMPLAR]
        h, w = image.shape[:2]
        if not image.flags.writeable:
            image = image.copy()
        with timings.stage("preprocess"):
            digest = self._digest(image)
            pixel_values = None if digest in self._images else self._pixels(image)
            texts = [None if c in self._texts else self.processor(text="" if c == EXEMPLAR else str(c), return_tensors="pt")
                     for c in classes]  # fmt: skip
            extra: dict[str, Any] = {}
            if boxes:
                prompt = self.processor(images=image, input_boxes=[[list(b[:4]) for b in boxes]],
                                        input_boxes_labels=[[int(b[4]) for b in boxes]], return_tensors="pt")  # fmt: skip
                extra = {"input_boxes": prompt["input_boxes"].to(self.device, self.model.dtype),
                         "input_boxes_labels": prompt["input_boxes_labels"].to(self.device)}  # fmt: skip
        with timings.stage("inference"), torch.inference_mode():
            vision = self.vision_features(image, digest, pixel_values)  # once per image: shared by every concept
            outputs = []
            for concept, tokens in zip(classes, texts, strict=True):
                text, mask = self.text_features(concept, tokens)
                outputs.append(self.model(vision_embeds=vision, text_embeds=text, attention_mask=mask, **extra))
        with timings.stage("postprocess"):
            det = self._instances(outputs, (h, w), list(classes))
        return det


    def _instances(self, outputs: list[Any], size: tuple[int, int], classes: list[str]) -> Any:
        """The best `MAX_INSTANCES` queries over `MASK_FLOOR` (every concept's together) as detections
        with boolean masks at ``size`` = (H, W).

        Written out rather than ``post_process_instance_segmentation``: that upsamples every query
        over the floor to the image's size as int64 before anything is kept (1.3 GB for 200 queries
        at 1024×640); it took ~0.8 s of a 0.85 s call on an H200 (measured), 16× the forward. Same
        scores (query × presence), same mask rule (sigmoid, bilinear to the image, > 0.5).
        """
        import torch

        h, w = size
        scores = []
        for out in outputs:
            s = out.pred_logits[0].float().sigmoid()
            if getattr(out, "presence_logits", None) is not None:
                s = s * out.presence_logits[0].float().sigmoid()
            scores.append(s)
        flat = torch.cat(scores) if scores else torch.zeros(0)
        order = torch.argsort(flat, descending=True, stable=True)
        order = order[flat[order] > MASK_FLOOR][:MAX_INSTANCES].tolist()
        queries = len(scores[0]) if scores else 1
        picked = [(i // queries, i % queries) for i in order]  # (concept, query)
        if picked:
            low = torch.stack([outputs[c].pred_masks[0, q].float() for c, q in picked])
            up = torch.nn.functional.interpolate(low.sigmoid()[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            masks = (up > MASK_THRESHOLD).cpu().numpy()
            boxes = torch.stack([outputs[c].pred_boxes[0, q].float() for c, q in picked])
            xyxy = (boxes * boxes.new_tensor([w, h, w, h])).cpu().numpy()
        else:
            masks, xyxy = np.zeros((0, h, w), bool), np.zeros((0, 4), np.float32)
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        det = make_detections(xyxy, flat[order].cpu().numpy(), np.asarray([c for c, _ in picked], dtype=int), classes)
        det.mask = masks
        return det

    @staticmethod
    def _digest(image: np.ndarray) -> str:
        h = hashlib.blake2b(str(image.shape).encode(), digest_size=16)
        h.update(np.ascontiguousarray(image).data)
        return h.hexdigest()

    def _pixels(self, image: np.ndarray) -> Any:
        # Resized and normalised on the model's device (the torchvision image processor): on a GPU
        # this is most of a call's time otherwise.
        return self.processor(images=image, device=self.device, return_tensors="pt")["pixel_values"].to(
            self.device, self.model.dtype)  # fmt: skip

    def vision_features(self, image: np.ndarray, key: str, pixel_values: Any) -> Any:
        """The image's vision features (``key``: its digest): from the bundle's cache, or encoded now
        (and kept, byte-capped)."""
        with self._lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key][0]
        if pixel_values is None:  # evicted between preprocessing and now: encode again
            pixel_values = self._pixels(image)
        vision = self.model.get_vision_features(pixel_values)
        self.encodes += 1
        size = sum(t.numel() * t.element_size() for t in _tensors(vision))
        with self._lock:
            self._images[key] = (vision, size)
            while len(self._images) > 1 and (len(self._images) > FEATURE_IMAGES or
                                             sum(n for _, n in self._images.values()) > FEATURE_BYTES):  # fmt: skip
                self._images.popitem(last=False)
        return vision

    def text_features(self, concept: str, tokens: Any) -> tuple[Any, Any]:
        """(text features, attention mask) of one concept: cached per concept, computed once."""
        with self._lock:
            if concept in self._texts:
                self._texts.move_to_end(concept)
                return self._texts[concept]
        if tokens is None:
            tokens = self.processor(text="" if concept == EXEMPLAR else str(concept), return_tensors="pt")
        mask = tokens["attention_mask"].to(self.device)
        text = self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device), attention_mask=mask)
        with self._lock:
            self._texts[concept] = (text, mask)
            while len(self._texts) > TEXT_FEATURES:
                self._texts.popitem(last=False)
        return text, mask

    def forget(self) -> None:
        """Drop every cached feature (the bundle is being unloaded)."""
        with self._lock:
            self._images.clear()
            self._texts.clear()


def _tensors(value: Any) -> list[Any]:
    """Every tensor inside a model output (nested tuples and lists included)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict) or hasattr(value, "values"):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def load(spec: ModelSpec, settings: LoadSettings) -> Sam3Bundle:
    """Build SAM 3's concept model and processor for ``spec``.

    Raises:
        ModelUnavailable: hub weights cannot be fetched (gated: accept the terms, set HF_TOKEN).
    """
    import torch
    from transformers import Sam3Model, Sam3Processor

    dtype = getattr(torch, settings.dtype_name(spec))
    if settings.weights == "hub":
        with hub_errors(spec):
            model = Sam3Model.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec), dtype=dtype)
            processor = Sam3Processor.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec))
    else:
        config, processor = offline_parts(spec, tiny=settings.weights == "tiny")
        torch.manual_seed(0)
        model = Sam3Model(config).to(dtype)
    model = model.to(settings.device).eval()
    return Sam3Bundle(model=model, processor=processor, key=spec.key, device=settings.device)


# --- video: every instance of a concept followed through a clip (``Sam3VideoModel``) ------------------

VIDEO_MAX_OBJECTS = 8  # objects followed at once (the Track tab's limit)
VIDEO_MEMORY_WINDOW = 16  # per-object frame outputs kept behind the current frame (as SAM 2.1's tracker)


def video_config(tiny: bool) -> tuple[Any, Any]:
    """(``Sam3VideoConfig``, processor) built in code: the release's architecture or a shrunken one.

    The tracker reads the detector's features, so the tiny detector is as wide as the tiny tracker
    (128). Tiny weights score near 0.25: its detection thresholds are 0 so that tests see objects.
    """
    from transformers import (
        Sam3ImageProcessor,
        Sam3TrackerVideoConfig,
        Sam3TrackerVideoMaskDecoderConfig,
        Sam3TrackerVideoPromptEncoderConfig,
        Sam3VideoConfig,
        Sam3VideoProcessor,
        Sam3VisionConfig,
    )
    from transformers.models.sam2_video import Sam2VideoVideoProcessor

    from model_loaders.families.detectors import clip_like_tokenizer

    tokenizer = clip_like_tokenizer()
    if tiny:
        width, size = 128, TINY_IMAGE_SIZE
        detector = tiny_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id,
                               width=width)  # fmt: skip
        side = size // 14
        vision = Sam3VisionConfig(backbone_config=detector.vision_config.backbone_config, fpn_hidden_size=width,
                                  backbone_feature_sizes=[[side * 4, side * 4], [side * 2, side * 2], [side, side]])  # fmt: skip
        tracker = Sam3TrackerVideoConfig(
            vision_config=vision,
            prompt_encoder_config=Sam3TrackerVideoPromptEncoderConfig(hidden_size=width, image_size=size, patch_size=14,
                                                                      mask_input_channels=4),  # fmt: skip
            mask_decoder_config=Sam3TrackerVideoMaskDecoderConfig(hidden_size=width, mlp_dim=64, num_hidden_layers=1,
                                                                  num_attention_heads=2, iou_head_hidden_dim=32),  # fmt: skip
            image_size=size, memory_attention_hidden_size=width, memory_attention_num_layers=1,
            memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[side, side],
            memory_encoder_hidden_size=width, memory_encoder_output_channels=64, mask_downsampler_embed_dim=width,
            memory_fuser_embed_dim=width, memory_fuser_intermediate_dim=64, memory_fuser_num_layers=1,
        )  # fmt: skip
        config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker, score_threshold_detection=0.0,
                                 new_det_thresh=0.0, max_num_objects=VIDEO_MAX_OBJECTS)  # fmt: skip
    else:
        size = REAL_IMAGE_SIZE
        config = Sam3VideoConfig(max_num_objects=VIDEO_MAX_OBJECTS)  # the defaults are the released model's
    square = {"height": size, "width": size}
    processor = Sam3VideoProcessor(image_processor=Sam3ImageProcessor(size=square),
                                   video_processor=Sam2VideoVideoProcessor(size=square), tokenizer=tokenizer)  # fmt: skip
    return config, processor


@functools.cache
def _no_pixels() -> Any:
    """What a used frame's pixels are replaced by in the session (one shared empty tensor)."""
    import torch

    return torch.zeros(0)


@dataclass
class Sam3VideoBundle:
    """A loaded SAM 3 video model: named concepts found and followed frame by frame (forward).

    Implements ``Tracker`` for the registry's "track" task, but takes words (`add_concepts`), not
    clicks: `prompt` refuses clicks. New instances appearing mid-clip get their own object id.
    Frames are streamed (``frame=``) one at a time; each one's pixels and the per-object outputs
    older than `VIDEO_MEMORY_WINDOW` frames are dropped, so memory does not grow with the clip.
    """

    model: Any
    processor: Any
    key: str
    device: str

    def new_session(self, size: tuple[int, int], frames: int) -> Any:
        """An empty session for a clip of ``size`` = (height, width); ``frames`` is not needed (streamed)."""
        session = self.processor.init_video_session(
            inference_device=self.device, inference_state_device=self.device, processing_device=self.device,
            video_storage_device=self.device, dtype=self.model.dtype)  # fmt: skip
        session.video_height, session.video_width = int(size[0]), int(size[1])
        return session

    def add_concepts(self, session: Any, concepts: Sequence[str]) -> None:
        """Look for every instance of each concept from the next frame on."""
        self.processor.add_text_prompt(session, [str(c) for c in concepts])

    def prompt(self, session: Any, frame: np.ndarray, frame_idx: int, prompts: dict[int, Any]) -> dict[int, Any]:
        """Clicks are not SAM 3 video's prompt here: it follows what is named in words."""
        raise InputError("SAM 3 follows what you name: type it under Track by words (clicks go to SAM 2.1).")

    def step(self, session: Any, frame: np.ndarray, frame_idx: int, reverse: bool = False) -> dict[int, tuple[np.ndarray, float]]:
        """Find and follow the concepts into frame ``frame_idx`` (frames come in order): {object id: (mask, score)}."""
        import torch

        if reverse:
            raise InputError("Tracking by words goes forward from the first frame of the range.")
        if not frame.flags.writeable:
            frame = frame.copy()
        pixels = self.processor(images=frame, device=self.device, return_tensors="pt").pixel_values[0]
        with torch.inference_mode():
            out = self.model(inference_session=session, frame=pixels, frame_idx=frame_idx)
            found = self.processor.postprocess_outputs(session, out)
        session.processed_frames[frame_idx] = _no_pixels()
        for outputs in session.output_dict_per_obj.values():
            for f in [f for f in outputs["non_cond_frame_outputs"] if frame_idx - f > VIDEO_MEMORY_WINDOW]:
                del outputs["non_cond_frame_outputs"][f]
        masks = found["masks"].cpu().numpy()
        scores = found["scores"].float().cpu().numpy()
        return {int(i): (masks[n].astype(bool), float(scores[n])) for n, i in enumerate(found["object_ids"].tolist())}

    @staticmethod
    def concept_of(session: Any, obj_id: int) -> str:
        """The concept that found object ``obj_id``."""
        return str(session.prompts.get(session.obj_id_to_prompt_id.get(obj_id), "object"))

    @staticmethod
    def held(session: Any) -> int:
        """Frames' pixels plus per-object frame outputs the session holds (bounded by the window)."""
        frames = sum(1 for v in (session.processed_frames or {}).values() if v is not _no_pixels())
        return frames + sum(len(o["non_cond_frame_outputs"]) + len(o["cond_frame_outputs"])
                            for o in session.output_dict_per_obj.values())  # fmt: skip


def load_video(spec: ModelSpec, settings: LoadSettings) -> Sam3VideoBundle:
    """SAM 3's video model (concept detector + tracker) for ``spec``, like `load`."""
    import torch
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    dtype = getattr(torch, settings.dtype_name(spec))
    if settings.weights == "hub":
        with hub_errors(spec):
            model = Sam3VideoModel.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec), dtype=dtype)
            processor = Sam3VideoProcessor.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec))
        model.max_num_objects = VIDEO_MAX_OBJECTS
    else:
        config, processor = video_config(tiny=settings.weights == "tiny")
        torch.manual_seed(0)
        model = Sam3VideoModel(config).to(dtype)
    model = model.to(settings.device).eval()
    return Sam3VideoBundle(model=model, processor=processor, key=spec.key, device=settings.device)
