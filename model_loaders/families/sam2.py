"""SAM 2.1 (Hiera tiny / small / base-plus / large) through transformers' native ``Sam2Model``.

Implements the ``Segmenter`` protocol: the expensive image encoder (seconds on CPU) runs once per
image in `Sam2Bundle.encode`; `Sam2Bundle.decode` turns prompts into candidate masks from that
embedding in tens of milliseconds. Caching embeddings per session, prompt validation and
exports belong to the task layer (``model_loaders.tasks.segment``).

The published checkpoints are ``sam2_video`` configs (image model plus memory modules for
video); ``Sam2Model`` reads the image part of them. `architecture` builds the full video model,
whose parameter count is the published one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_loaders.core.availability import LoadSettings
from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.hub import hub_errors, pretrained_kwargs
from model_loaders.core.results import ImageEmbedding, MaskPrediction, upscale_logits
from model_loaders.core.specs import ModelSpec

log = logging.getLogger(__name__)

# Real Hiera backbones of the SAM 2.1 checkpoints (facebookresearch/sam2 configs/sam2.1/*.yaml):
# (embed_dim, heads, blocks per stage, global attention blocks, window sizes, pos-embed background).
_HIERA: dict[str, tuple[int, int, list[int], list[int], list[int], list[int]]] = {
    "tiny": (96, 1, [1, 2, 7, 2], [5, 7, 9], [8, 4, 14, 7], [7, 7]),
    "small": (96, 1, [1, 2, 11, 2], [7, 10, 13], [8, 4, 14, 7], [7, 7]),
    "base-plus": (112, 2, [2, 3, 16, 3], [12, 16, 20], [8, 4, 14, 7], [14, 14]),
    "large": (144, 2, [2, 6, 36, 4], [23, 33, 43], [8, 4, 16, 8], [7, 7]),
}


def _hiera(spec: ModelSpec) -> tuple[int, int, list[int], list[int], list[int], list[int]]:
    if spec.variant not in _HIERA:
        raise ModelUnavailable(spec.key, "load_failed", f"{spec.name}: unknown SAM 2.1 variant {spec.variant!r}.")
    return _HIERA[spec.variant]


def real_config(spec: ModelSpec, video: bool = False) -> Any:
    """A real-size config for ``spec``'s Hiera variant (random weights, same compute as the checkpoint).

    ``video=True`` gives the checkpoint's own ``Sam2VideoConfig`` (image model + memory modules).
    """
    from transformers import Sam2Config, Sam2HieraDetConfig, Sam2VideoConfig, Sam2VisionConfig

    dim, heads, blocks, global_blocks, windows, background = _hiera(spec)
    backbone = Sam2HieraDetConfig(
        hidden_size=dim,
        num_attention_heads=heads,
        blocks_per_stage=blocks,
        embed_dim_per_stage=[dim, dim * 2, dim * 4, dim * 8],
        num_attention_heads_per_stage=[heads, heads * 2, heads * 4, heads * 8],
        window_size_per_stage=windows,
        global_attention_blocks=global_blocks,
        window_positional_embedding_background_size=background,
    )
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[dim * 8, dim * 4, dim * 2, dim])
    return Sam2VideoConfig(vision_config=vision) if video else Sam2Config(vision_config=vision)


TINY_IMAGE_SIZE = 256


def tiny_config(video: bool = False) -> Any:
    """A shrunken config (256 px input, small Hiera, small decoder) for fast tests.

    ``video=True`` adds memory modules sized to match (a ``Sam2VideoConfig``, the shape the Hub
    checkpoints have); its image part is the same as the image config's.
    """
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VideoConfig,
        Sam2VisionConfig,
    )

    size = TINY_IMAGE_SIZE
    # The video model's memory attention reads 64-channel memories (fixed in transformers) and
    # splits object pointers into 64-wide pieces: its decoder must be wider than 64 (a multiple).
    width = 128 if video else 32
    backbone = Sam2HieraDetConfig(
        hidden_size=8,
        num_attention_heads=1,
        image_size=[size, size],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[8, 16, 32, 64],
        num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[8, 4, 4, 2],
        global_attention_blocks=[3],  # never the first block of a pooling stage
        window_positional_embedding_background_size=[4, 4],
    )
    s = size // 4
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[64, 32, 16, 8],
        backbone_feature_sizes=[[s, s], [s // 2, s // 2], [s // 4, s // 4]],
        fpn_hidden_size=width,
    )
    prompt = Sam2PromptEncoderConfig(hidden_size=width, image_size=size, patch_size=16, mask_input_channels=4)
    decoder = Sam2MaskDecoderConfig(
        hidden_size=width, mlp_dim=64, num_hidden_layers=1, num_attention_heads=2, iou_head_hidden_dim=32
    )
    parts = {"vision_config": vision, "prompt_encoder_config": prompt, "mask_decoder_config": decoder}
    if not video:
        return Sam2Config(**parts)
    return Sam2VideoConfig(
        **parts,
        image_size=size,
        memory_attention_hidden_size=width,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[s // 4, s // 4],
        memory_encoder_hidden_size=width,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=width,
        memory_fuser_embed_dim=width,
        memory_fuser_intermediate_dim=64,
        memory_fuser_num_layers=1,
    )


def processor_for(image_size: int) -> Any:
    """The ``Sam2Processor`` the checkpoints ship, for a square input of ``image_size``."""
    from transformers import Sam2ImageProcessor, Sam2Processor

    image_processor = Sam2ImageProcessor(
        size={"height": image_size, "width": image_size},
        mask_size={"height": image_size // 4, "width": image_size // 4},
    )
    return Sam2Processor(image_processor=image_processor)


def offline_parts(spec: ModelSpec, tiny: bool, video: bool = False) -> tuple[Any, Any]:
    """(config, processor) built in code: real size for ``random`` weights, shrunken for ``tiny``."""
    config = tiny_config(video) if tiny else real_config(spec, video)
    prompt_size = config.prompt_encoder_config.image_size
    return config, processor_for(int(prompt_size if isinstance(prompt_size, int) else prompt_size[0]))


def architecture(spec: ModelSpec, tiny: bool = False) -> Any:
    """The checkpoint's full architecture (the video model; real size, or shrunken with ``tiny``)."""
    from transformers import Sam2VideoModel

    return Sam2VideoModel(offline_parts(spec, tiny, video=True)[0])


@dataclass
class Sam2Bundle:
    """A loaded SAM 2.1 image model; implements ``Segmenter``.

    Attributes:
        model: ``transformers.Sam2Model`` in eval mode on ``device``.
        processor: ``transformers.Sam2Processor``.
        key: registry key (embeddings remember which model made them).
        device: torch device string.
    """

    model: Any
    processor: Any
    key: str
    device: str

    def encode(self, image: np.ndarray, digest: str) -> ImageEmbedding:
        """Run the image encoder once on an (H, W, 3) RGB uint8 image."""
        return self.encode_batch([image], [digest])[0]

    def encode_batch(self, images: Sequence[np.ndarray], digests: Sequence[str]) -> list[ImageEmbedding]:
        """Several images through the encoder in one pass (a serving replica batches concurrent
        users' images); one embedding each, its time the pass's share."""
        import torch

        start = time.perf_counter()
        # decoded images are read-only; torch.from_numpy warns on those
        images = [image if image.flags.writeable else image.copy() for image in images]
        inputs = self.processor(images=list(images), device=self.device, return_tensors="pt")  # resized on the GPU there
        pixel_values = inputs["pixel_values"].to(self.device, dtype=self.model.dtype)
        with torch.inference_mode():
            features = self.model.get_image_embeddings(pixel_values)
        ms = (time.perf_counter() - start) * 1000.0 / len(images)
        # A slice of a batch keeps the whole batch alive: each embedding gets its own copy.
        own = (lambda f, i: f[i : i + 1].clone()) if len(images) > 1 else (lambda f, i: f)  # noqa: E731
        return [ImageEmbedding(self.key, digest, [own(f, i) for f in features], (int(img.shape[0]), int(img.shape[1])), ms)
                for i, (img, digest) in enumerate(zip(images, digests, strict=True))]  # fmt: skip

    def decode(
        self,
        embedding: ImageEmbedding,
        points: Sequence[tuple[float, float]],
        labels: Sequence[int],
        box: tuple[float, float, float, float] | None,
        multimask: bool = True,
    ) -> MaskPrediction:
        """Candidate masks for prompts (already validated, in the encoded image's pixels)."""
        import torch

        if embedding.model_key != self.key:
            raise ValueError(f"embedding from {embedding.model_key} used with {self.key}")
        h, w = embedding.image_size
        start = time.perf_counter()
        kwargs: dict[str, Any] = {}
        if points:
            kwargs["input_points"] = [[[[float(x), float(y)] for x, y in points]]]
            kwargs["input_labels"] = [[[int(v) for v in labels]]]
        if box is not None:
            kwargs["input_boxes"] = [[[float(v) for v in box]]]
        inputs = self.processor(original_sizes=[[h, w]], return_tensors="pt", **kwargs)
        model_inputs = {
            k: inputs[k].to(self.device, dtype=self.model.dtype if k != "input_labels" else None)
            for k in ("input_points", "input_labels", "input_boxes")
            if k in inputs
        }
        with torch.inference_mode():
            features = [f.to(self.device) for f in embedding.features]  # no-op unless it crossed a process
            out = self.model(image_embeddings=features, multimask_output=multimask, **model_inputs)
            logits = out.pred_masks[0, 0].float()  # (K, h, w): batch 0, prompt set 0
            scores = out.iou_scores[0, 0].float()
            masks = upscale_logits(logits, (w, h))
        ms = (time.perf_counter() - start) * 1000.0
        return MaskPrediction(
            logits=logits.cpu().numpy(), scores=scores.cpu().numpy(), masks=masks.cpu().numpy(), decode_ms=ms
        )


    def decode_points(self, embedding: ImageEmbedding, points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
        """One single-point prompt per point, decoded together on the cached embedding (segment
        everything's grid): for each point its best of three candidate masks at the image's size
        and that mask's predicted IoU. Returns (masks (N, H, W) bool, scores (N,))."""
        import torch

        h, w = embedding.image_size
        inputs = self.processor(original_sizes=[[h, w]], input_points=[[[[float(x), float(y)]] for x, y in points]],
                                input_labels=[[[1] for _ in points]], return_tensors="pt")  # fmt: skip
        with torch.inference_mode():
            features = [f.to(self.device) for f in embedding.features]
            out = self.model(image_embeddings=features, multimask_output=True,
                             input_points=inputs["input_points"].to(self.device, self.model.dtype),
                             input_labels=inputs["input_labels"].to(self.device))  # fmt: skip
            scores = out.iou_scores[0].float()  # (N, 3)
            best = scores.argmax(dim=1)
            logits = out.pred_masks[0].float()[torch.arange(len(points), device=best.device), best]  # (N, h', w')
            masks = upscale_logits(logits, (w, h))
        return masks.cpu().numpy(), scores.max(dim=1).values.cpu().numpy()


def load(spec: ModelSpec, settings: LoadSettings) -> Sam2Bundle:
    """Build the model and processor for ``spec``; only the weight source depends on the mode.

    Raises:
        ModelUnavailable: hub weights cannot be fetched, or the variant is unknown.
    """
    import torch
    from transformers import Sam2Model, Sam2Processor

    dtype = getattr(torch, settings.dtype_name(spec))
    if settings.weights == "hub":
        with hub_errors(spec):
            # The 2.1 checkpoints are sam2_video configs; Sam2Model reads the image part of them.
            model = Sam2Model.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec), dtype=dtype)
            processor = Sam2Processor.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec))
    else:
        config, processor = offline_parts(spec, tiny=settings.weights == "tiny")
        torch.manual_seed(0)  # the same random weights every run, so numbers are comparable
        model = Sam2Model(config).to(dtype)
    model = model.to(settings.device).eval()
    return Sam2Bundle(model=model, processor=processor, key=spec.key, device=settings.device)


# --- video: Sam2VideoModel, frame by frame, with bounded memory ---------------------------------

# Memory attention reads the last ``num_maskmem`` (7) frames' memories and up to
# ``max_object_pointers_in_encoder`` (16) frames' object pointers, plus every prompted frame.
# Older per-frame outputs are pruned, so memory does not grow with the clip (the results of
# pruned and unpruned tracking are identical: tested).
MEMORY_WINDOW = 16


class _Placeholder:
    """Stands for a frame's pixels when they are not held (never read: frames are added first)."""

    def to(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a frame was read before it was added to the tracking session")


_NO_PIXELS = _Placeholder()


@dataclass
class Sam2VideoBundle:
    """A loaded SAM 2.1 video model; implements ``Tracker``.

    A session (``new_session``) holds the model's per-object memory for one clip; frames are
    fed one at a time (``step``) and dropped after use, outputs outside the memory window pruned.
    """

    model: Any
    processor: Any
    key: str
    device: str

    def new_session(self, size: tuple[int, int], frames: int) -> Any:
        """An empty tracking session for a clip of ``frames`` frames of ``size`` = (height, width).

        The session's frame table lists every frame (the model reads its length: how many object
        pointers to use) but holds pixels only for the frame being processed; the others share
        one empty placeholder.
        """

        session = self.processor.init_video_session(
            inference_device=self.device, inference_state_device="cpu", processing_device="cpu",
            video_storage_device="cpu", max_vision_features_cache_size=1, dtype=self.model.dtype,
        )  # fmt: skip
        session.video_height, session.video_width = int(size[0]), int(size[1])
        session.processed_frames = dict.fromkeys(range(max(1, int(frames))), _NO_PIXELS)
        return session

    def _frame(self, session: Any, frame: np.ndarray, frame_idx: int) -> None:
        if not frame.flags.writeable:
            frame = frame.copy()
        pixel_values = self.processor(images=frame, device="cpu", return_tensors="pt").pixel_values[0]
        session.add_new_frame(pixel_values, frame_idx)

    def _results(self, session: Any, out: Any) -> dict[int, tuple[np.ndarray, float]]:
        import torch

        masks = self.processor.post_process_masks(
            [out.pred_masks], original_sizes=[[session.video_height, session.video_width]], binarize=True
        )[0]
        scores = torch.sigmoid(out.object_score_logits.float().reshape(-1)).cpu().numpy()
        ids = list(out.object_ids) if out.object_ids is not None else list(session.obj_ids)
        return {int(i): (masks[n, 0].cpu().numpy().astype(bool), float(scores[n])) for n, i in enumerate(ids)}

    def prompt(self, session: Any, frame: np.ndarray, frame_idx: int,
               prompts: dict[int, tuple[list[tuple[float, float]], list[int], tuple[float, float, float, float] | None]]
               ) -> dict[int, tuple[np.ndarray, float]]:  # fmt: skip
        """Set the prompts of each object on ``frame_idx`` (all of them: earlier ones on that frame
        are replaced) and return every object's mask and score on that frame."""
        import torch

        self._frame(session, frame, frame_idx)
        size = (session.video_height, session.video_width)
        out = None
        # One object at a time, a pass after each: a fresh session given two new objects on one
        # frame in a single pass fails in transformers ("maskmem_features ... cannot be empty").
        for obj_id, (points, labels, box) in prompts.items():
            kwargs: dict[str, Any] = {}
            if box is not None:
                kwargs["input_boxes"] = [[[float(v) for v in box]]]
            if points:
                kwargs["input_points"] = [[[[float(x), float(y)] for x, y in points]]]
                kwargs["input_labels"] = [[[int(v) for v in labels]]]
            self.processor.add_inputs_to_inference_session(
                inference_session=session, frame_idx=frame_idx, obj_ids=int(obj_id), original_size=size, **kwargs
            )
            with torch.inference_mode():
                out = self.model(inference_session=session, frame_idx=frame_idx)
        session.processed_frames[frame_idx] = _NO_PIXELS
        return self._results(session, out) if out is not None else {}

    def step(self, session: Any, frame: np.ndarray, frame_idx: int, reverse: bool = False) -> dict[int, tuple[np.ndarray, float]]:
        """Track every object into ``frame_idx`` from the session's memory; prune what is no longer needed."""
        import torch

        self._frame(session, frame, frame_idx)
        with torch.inference_mode():
            out = self.model(inference_session=session, frame_idx=frame_idx, reverse=reverse)
        session.processed_frames[frame_idx] = _NO_PIXELS
        for outputs in session.output_dict_per_obj.values():
            stale = [f for f in outputs["non_cond_frame_outputs"] if abs(f - frame_idx) > MEMORY_WINDOW]
            for f in stale:
                del outputs["non_cond_frame_outputs"][f]
        return self._results(session, out)

    @staticmethod
    def held(session: Any) -> int:
        """Per-frame outputs the session holds (bounded by the memory window and the prompted frames)."""
        frames = sum(1 for v in (session.processed_frames or {}).values() if v is not _NO_PIXELS)
        return frames + sum(len(o["non_cond_frame_outputs"]) + len(o["cond_frame_outputs"])
                            for o in session.output_dict_per_obj.values())  # fmt: skip


def video_processor_for(image_size: int) -> Any:
    """The ``Sam2VideoProcessor`` the checkpoints ship, for a square input of ``image_size``."""
    from transformers import Sam2VideoProcessor
    from transformers.models.sam2_video import Sam2VideoVideoProcessor

    image = processor_for(image_size).image_processor
    video = Sam2VideoVideoProcessor(size={"height": image_size, "width": image_size})
    return Sam2VideoProcessor(image_processor=image, video_processor=video, target_size=image_size)


def load_video(spec: ModelSpec, settings: LoadSettings) -> Sam2VideoBundle:
    """The video model of ``spec`` (the checkpoint's full ``Sam2VideoModel``), like `load`."""
    import torch
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    dtype = getattr(torch, settings.dtype_name(spec))
    if settings.weights == "hub":
        with hub_errors(spec):
            model = Sam2VideoModel.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec), dtype=dtype)
            processor = Sam2VideoProcessor.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec))
    else:
        config, _ = offline_parts(spec, tiny=settings.weights == "tiny", video=True)
        torch.manual_seed(0)
        model = Sam2VideoModel(config).to(dtype)
        size = config.prompt_encoder_config.image_size
        processor = video_processor_for(int(size if isinstance(size, int) else size[0]))
    model = model.to(settings.device).eval()
    return Sam2VideoBundle(model=model, processor=processor, key=spec.key, device=settings.device)
