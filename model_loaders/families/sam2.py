"""SAM 2.1 (Hiera tiny / small / base-plus / large) through transformers' ``Sam2Model``.

The expensive part of SAM is the image encoder (seconds on CPU); the prompt encoder and mask
decoder are cheap (tens of milliseconds). So the work is split in two:

* `encode_image` runs the encoder once per image and returns an `ImageEmbedding`;
* `decode_masks` turns prompts (points, labels, box) into candidate masks from a cached
  embedding, without touching the encoder.

`EmbeddingCache` is a small, bounded (count and bytes) cache the caller keeps *per session*
(the Segment tab stores one in ``gr.State``); nothing here is module-level state.

Also here: COCO RLE encode/decode (numpy only; pycocotools is not a dependency) and mask
upscaling to the original image resolution. No Gradio import.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_loaders.core.adapters import LoadSettings
from model_loaders.core.errors import InputError
from model_loaders.core.hub import hub_errors, pretrained_kwargs
from model_loaders.core.specs import ModelSpec

log = logging.getLogger(__name__)

MAX_POINTS = 64
SIZES = ("tiny", "small", "base-plus", "large")

# Real Hiera backbones of the SAM 2.1 checkpoints (facebookresearch/sam2 configs/sam2.1/*.yaml):
# (embed_dim, heads, blocks per stage, global attention blocks, window sizes, pos-embed background).
_HIERA: dict[str, tuple[int, int, list[int], list[int], list[int], list[int]]] = {
    "tiny": (96, 1, [1, 2, 7, 2], [5, 7, 9], [8, 4, 14, 7], [7, 7]),
    "small": (96, 1, [1, 2, 11, 2], [7, 10, 13], [8, 4, 14, 7], [7, 7]),
    "base-plus": (112, 2, [2, 3, 16, 3], [12, 16, 20], [8, 4, 14, 7], [14, 14]),
    "large": (144, 2, [2, 6, 36, 4], [23, 33, 43], [8, 4, 16, 8], [7, 7]),
}


@dataclass
class Sam2Bundle:
    """A loaded SAM 2 model with its processor.

    Attributes:
        model: ``transformers.Sam2Model`` in eval mode on ``device``.
        processor: ``transformers.Sam2Processor``.
        key: registry key.
        device: torch device string.
        dtype: torch dtype name of the weights.
    """

    model: Any
    processor: Any
    key: str
    device: str
    dtype: str


def size_of(spec: ModelSpec) -> str:
    """The Hiera size (``tiny`` … ``large``) of a SAM 2.1 spec, from its key."""
    for size in sorted(SIZES, key=len, reverse=True):
        if spec.key.endswith(size):
            return size
    raise ValueError(f"{spec.key}: not a SAM 2.1 Hiera size")


def real_config(size: str) -> Any:
    """A real-size ``Sam2Config`` for Hiera ``size`` (random weights, same compute as the checkpoint)."""
    from transformers import Sam2Config, Sam2HieraDetConfig, Sam2VisionConfig

    dim, heads, blocks, global_blocks, windows, background = _HIERA[size]
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
    return Sam2Config(vision_config=vision)


TINY_IMAGE_SIZE = 256


def tiny_config() -> Any:
    """A shrunken ``Sam2Config`` (256 px input, two-block Hiera, small decoder) for fast tests."""
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    size = TINY_IMAGE_SIZE
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
        fpn_hidden_size=32,
    )
    prompt = Sam2PromptEncoderConfig(hidden_size=32, image_size=size, patch_size=16, mask_input_channels=4)
    decoder = Sam2MaskDecoderConfig(
        hidden_size=32, mlp_dim=64, num_hidden_layers=1, num_attention_heads=2, iou_head_hidden_dim=32
    )
    return Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def _processor_for(image_size: int) -> Any:
    from transformers import Sam2ImageProcessor, Sam2Processor

    image_processor = Sam2ImageProcessor(
        size={"height": image_size, "width": image_size},
        mask_size={"height": image_size // 4, "width": image_size // 4},
    )
    return Sam2Processor(image_processor=image_processor)


def load(spec: ModelSpec, settings: LoadSettings) -> Sam2Bundle:
    """Build the model and processor for ``spec``; only the weight source depends on the mode.

    Args:
        spec: a ``sam2`` family spec.
        settings: weights mode and device.

    Raises:
        ModelUnavailable: when hub weights cannot be fetched.
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
        config = real_config(size_of(spec)) if settings.weights == "random" else tiny_config()
        torch.manual_seed(0)  # the same random weights every run, so numbers are comparable
        model = Sam2Model(config).to(dtype)
        image_size = config.prompt_encoder_config.image_size
        processor = _processor_for(int(image_size if isinstance(image_size, int) else image_size[0]))
    model = model.to(settings.device).eval()
    return Sam2Bundle(model=model, processor=processor, key=spec.key, device=settings.device, dtype=str(dtype))


# --- embeddings --------------------------------------------------------------------------------


@dataclass
class ImageEmbedding:
    """The image encoder's multi-level features for one image and one model.

    Attributes:
        model_key: registry key of the model that made it.
        digest: content hash of the image it was computed from.
        features: the feature maps ``Sam2Model.get_image_embeddings`` returns (on the model's device).
        image_size: (height, width) of the image that was encoded.
        encode_ms: how long encoding took.
    """

    model_key: str
    digest: str
    features: list[Any] = field(repr=False)
    image_size: tuple[int, int]
    encode_ms: float = 0.0

    @property
    def nbytes(self) -> int:
        """Bytes held by the feature maps."""
        return int(sum(f.numel() * f.element_size() for f in self.features))


def encode_image(bundle: Sam2Bundle, image: np.ndarray, digest: str = "") -> ImageEmbedding:
    """Run the image encoder once.

    Args:
        bundle: the loaded model.
        image: (H, W, 3) RGB uint8.
        digest: content hash of ``image`` (kept on the result for cache checks).
    """
    import torch

    start = time.perf_counter()
    if not image.flags.writeable:  # decoded images are read-only; torch.from_numpy warns on those
        image = image.copy()
    inputs = bundle.processor(images=image, return_tensors="pt")
    pixel_values = inputs["pixel_values"].to(bundle.device, dtype=bundle.model.dtype)
    with torch.inference_mode():
        features = bundle.model.get_image_embeddings(pixel_values)
    ms = (time.perf_counter() - start) * 1000.0
    return ImageEmbedding(bundle.key, digest, list(features), (int(image.shape[0]), int(image.shape[1])), ms)


class EmbeddingCache:
    """A small LRU of image embeddings, bounded by count and bytes; one per user session.

    Keyed by (image digest, model key). Never shared between sessions: the Segment tab keeps
    one inside its ``gr.State`` value.
    """

    def __init__(self, max_items: int = 2, max_bytes: int = 128 * 2**20) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], ImageEmbedding] = OrderedDict()

    def get(self, digest: str, model_key: str) -> ImageEmbedding | None:
        """The cached embedding, or ``None``."""
        item = self._items.get((digest, model_key))
        if item is not None:
            self._items.move_to_end((digest, model_key))
        return item

    def put(self, embedding: ImageEmbedding) -> None:
        """Store ``embedding``, evicting the least recently used beyond the bounds."""
        key = (embedding.digest, embedding.model_key)
        self._items[key] = embedding
        self._items.move_to_end(key)
        while len(self._items) > 1 and (len(self._items) > self.max_items or self.nbytes > self.max_bytes):
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Drop every embedding (session ended)."""
        self._items.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return sum(e.nbytes for e in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __deepcopy__(self, memo: dict[int, Any]) -> EmbeddingCache:
        # gr.State deep-copies its initial value per session: give each session an empty cache.
        return EmbeddingCache(self.max_items, self.max_bytes)


def get_or_encode(
    bundle: Sam2Bundle, cache: EmbeddingCache, image: np.ndarray, digest: str
) -> tuple[ImageEmbedding, bool]:
    """The embedding of ``image`` from ``cache``, encoding (and storing) it on a miss.

    Returns:
        (embedding, cached) where ``cached`` is True when the encoder did not run.
    """
    hit = cache.get(digest, bundle.key)
    if hit is not None:
        return hit, True
    embedding = encode_image(bundle, image, digest)
    cache.put(embedding)
    return embedding, False


# --- prompts and decoding ----------------------------------------------------------------------


@dataclass
class MaskPrediction:
    """Candidate masks for one prompt set.

    Attributes:
        logits: (K, h, w) float32 low-resolution mask logits (the decoder's native output).
        scores: (K,) predicted IoU of each candidate.
        masks: (K, H, W) bool masks at the encoded image's size.
        decode_ms: prompt encoding + mask decoding + upscaling time.
    """

    logits: np.ndarray
    scores: np.ndarray
    masks: np.ndarray
    decode_ms: float = 0.0

    @property
    def best(self) -> int:
        """Index of the candidate with the highest predicted IoU."""
        return int(np.argmax(self.scores))


def validate_prompts(
    points: list[tuple[float, float]],
    labels: list[int],
    box: tuple[float, float, float, float] | None,
    size: tuple[int, int],
) -> None:
    """Check prompts against an image of ``size`` = (width, height).

    Raises:
        InputError: with a short message for each kind of bad prompt.
    """
    w, h = size
    if not points and box is None:
        raise InputError("Add at least one point or a box.")
    if len(points) > MAX_POINTS:
        raise InputError(f"Too many points ({len(points)}; max {MAX_POINTS}).")
    if len(labels) != len(points):
        raise InputError(f"Got {len(labels)} labels for {len(points)} points; give one label per point.")
    for label in labels:
        if isinstance(label, bool) or label not in (0, 1):
            raise InputError("Labels must be 1 (include) or 0 (exclude).")
    for x, y in points:
        if not (np.isfinite(x) and np.isfinite(y)):
            raise InputError("Point coordinates must be finite numbers.")
        if not (0 <= x <= w and 0 <= y <= h):
            raise InputError(f"Point ({x:g}, {y:g}) is outside the image ({w}×{h}).")
    if box is not None:
        if not all(np.isfinite(v) for v in box):
            raise InputError("Box coordinates must be finite numbers.")
        x1, y1, x2, y2 = box
        if x2 < x1 or y2 < y1:
            raise InputError("Box must be [x1, y1, x2, y2] with x2 ≥ x1 and y2 ≥ y1.")
        if x2 - x1 < 1 or y2 - y1 < 1:
            raise InputError("Box has zero area.")
        if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
            raise InputError(f"Box is outside the image ({w}×{h}).")


def decode_masks(
    bundle: Sam2Bundle,
    embedding: ImageEmbedding,
    points: list[tuple[float, float]],
    labels: list[int],
    box: tuple[float, float, float, float] | None = None,
    multimask: bool = True,
) -> MaskPrediction:
    """Predict masks from prompts using a cached embedding (the image encoder does not run).

    Args:
        bundle: the loaded model (must be the one that made ``embedding``).
        embedding: from `encode_image`.
        points: (x, y) in the encoded image's pixel coordinates.
        labels: 1 = include, 0 = exclude, one per point.
        box: optional (x1, y1, x2, y2) in the same coordinates.
        multimask: three candidates (True) or the single best mask (False).

    Raises:
        InputError: for bad prompts (see `validate_prompts`).
    """
    import torch

    if embedding.model_key != bundle.key:
        raise ValueError(f"embedding from {embedding.model_key} used with {bundle.key}")
    h, w = embedding.image_size
    validate_prompts(points, labels, box, (w, h))
    start = time.perf_counter()
    kwargs: dict[str, Any] = {}
    if points:
        kwargs["input_points"] = [[[[float(x), float(y)] for x, y in points]]]
        kwargs["input_labels"] = [[[int(v) for v in labels]]]
    if box is not None:
        kwargs["input_boxes"] = [[[float(v) for v in box]]]
    inputs = bundle.processor(original_sizes=[[h, w]], return_tensors="pt", **kwargs)
    model_inputs = {
        k: inputs[k].to(bundle.device, dtype=bundle.model.dtype if k != "input_labels" else None)
        for k in ("input_points", "input_labels", "input_boxes")
        if k in inputs
    }
    with torch.inference_mode():
        out = bundle.model(image_embeddings=embedding.features, multimask_output=multimask, **model_inputs)
        logits = out.pred_masks[0, 0].float()  # (K, h, w): batch 0, prompt set 0
        scores = out.iou_scores[0, 0].float()
        masks = upscale_logits(logits, (w, h))
    ms = (time.perf_counter() - start) * 1000.0
    return MaskPrediction(
        logits=logits.cpu().numpy(), scores=scores.cpu().numpy(), masks=masks.cpu().numpy(), decode_ms=ms
    )


def upscale_logits(logits: Any, size: tuple[int, int]) -> Any:
    """Bilinear-upscale (K, h, w) mask logits to ``size`` = (width, height) and threshold at 0.

    SAM 2 resizes the whole image to a square without padding, so the low-resolution mask
    covers the whole image and scales to any target size directly (as ``post_process_masks`` does).
    """
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(logits, dtype=torch.float32)
    w, h = size
    with torch.inference_mode():
        return F.interpolate(t[None], (h, w), mode="bilinear", align_corners=False)[0] > 0.0


def mask_at_size(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One (h, w) logit map as a bool mask at ``size`` = (width, height), e.g. the original image's."""
    return upscale_logits(np.asarray(logits)[None], size)[0].numpy()


# --- COCO RLE ------------------------------------------------------------------------------------


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO run-length encoding of a bool mask (column-major, counts start with zeros).

    Returns:
        ``{"size": [height, width], "counts": "<compressed string>"}``, the form pycocotools
        ``mask.encode`` produces and ``mask.decode`` reads.
    """
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _counts_to_string(rle_counts(mask))}


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts of a bool (H, W) mask."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts.insert(0, 0)  # COCO runs always start with a run of zeros
    return [int(c) for c in counts]


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (compressed string or uncompressed list counts) to a bool (H, W) mask."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        counts = _string_to_counts(counts.decode() if isinstance(counts, bytes) else counts)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != h * w:
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T.copy()


def _counts_to_string(counts: list[int]) -> str:
    # pycocotools rleToString: delta against the count two back, then 5-bit LEB128-like chars.
    out: list[str] = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def _string_to_counts(s: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(s):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(s):
                raise ValueError("truncated RLE string")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts
