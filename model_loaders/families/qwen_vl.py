"""Qwen2.5-VL and Qwen3-VL (families ``qwen2_5_vl`` and ``qwen3_vl``): chat VLMs that ground in JSON.

Both answer through the chat template and write boxes as ``bbox_2d`` JSON, in different
coordinate systems (say so here, where the parser is chosen):

- Qwen2.5-VL writes absolute pixels of the image *as the processor resized it*
  (``image_grid_thw`` × the patch size), so boxes are rescaled from that size;
- Qwen3-VL writes coordinates on a 0–1000 grid relative to the image.

Real sizes for ``random`` weights follow the checkpoints' ``config.json`` per variant.
"""

from __future__ import annotations

from typing import Any

from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.specs import ModelSpec
from model_loaders.families.chat_vlm import ChatFamily, adapter, json_grounding_question
from model_loaders.families.grounding import Grounding, parse_qwen

# Image size cap: at most this many pixels reach the vision tower (the default allows 12.8 MP,
# which makes preprocessing and attention dominate on a CPU).
QWEN_MIN_PIXELS = 256 * 28 * 28
QWEN_MAX_PIXELS = 1024 * 28 * 28

# Real sizes per variant: (text kwargs, vision kwargs, vocab). 3B ties its input and output
# embeddings; 7B and 72B have a separate lm_head.
_QWEN25_REAL = {
    "3b": ({"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
            "num_key_value_heads": 2, "tie_word_embeddings": True}, {"out_hidden_size": 2048}, 151936),
    "7b": ({"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
            "num_key_value_heads": 4, "tie_word_embeddings": False}, {"out_hidden_size": 3584}, 152064),
    "72b": ({"hidden_size": 8192, "intermediate_size": 29568, "num_hidden_layers": 80, "num_attention_heads": 64,
             "num_key_value_heads": 8, "tie_word_embeddings": False}, {"out_hidden_size": 8192}, 152064),
}  # fmt: skip
_QWEN3_REAL = {
    "2b": ({"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
            "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": True},
           {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
            "deepstack_visual_indexes": [5, 11, 17]}),
}  # fmt: skip


def _variant(table: dict[str, Any], spec: ModelSpec) -> Any:
    if spec.variant not in table:
        raise ModelUnavailable(spec.key, "load_failed", f"{spec.name}: unknown variant {spec.variant!r}.")
    return table[spec.variant]


def _qwen25_offline(spec: ModelSpec, tiny: bool) -> tuple[Any, Any]:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from model_loaders.families.offline_tokenizers import QWEN_CHAT_TEMPLATE, qwen_vl_tokenizer

    tok = qwen_vl_tokenizer()
    if tiny:
        # A wider init than the default 0.02 so random text varies instead of repeating one token.
        text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "initializer_range": 0.2}  # fmt: skip
        vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 32,
                  "fullatt_block_indexes": [0]}  # fmt: skip
        vocab, min_px, max_px = len(tok), 56 * 56, 112 * 112
    else:
        text, vision_extra, vocab = _variant(_QWEN25_REAL, spec)
        vision = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                  "fullatt_block_indexes": [7, 15, 23, 31], **vision_extra}  # fmt: skip
        min_px, max_px = QWEN_MIN_PIXELS, QWEN_MAX_PIXELS
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    # mrope sections (temporal, height, width) must sum to half the head dimension.
    half = head_dim // 2
    section = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    config = Qwen2_5_VLConfig(
        text_config={
            **text,
            "vocab_size": vocab,
            "rope_parameters": {"rope_type": "default", "mrope_section": section, "rope_theta": 1000000.0},
            "bos_token_id": tok.convert_tokens_to_ids("<|endoftext|>"),
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
            "tie_word_embeddings": text.get("tie_word_embeddings", True),
        },
        vision_config=vision,
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=text.get("tie_word_embeddings", True),
        initializer_range=text.get("initializer_range", 0.02),
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=min_px, max_pixels=max_px),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    return config, processor



def _qwen25_input_wh(processor: Any, inputs: Any, image_wh: tuple[int, int]) -> tuple[int, int]:
    """Qwen2.5-VL's boxes are pixels of the resized image: grid (h, w) × patch size."""
    if "image_grid_thw" not in inputs:
        return image_wh
    _, h, w = (int(v) for v in inputs["image_grid_thw"][0])
    patch = processor.image_processor.patch_size
    return (w * patch, h * patch)


def _qwen3_input_wh(processor: Any, inputs: Any, image_wh: tuple[int, int]) -> tuple[int, int]:
    """Qwen3-VL's boxes are on a 0–1000 grid, whatever the image size."""
    return (1000, 1000)


def _resized_view(image: Any, factor: int) -> tuple[Any, tuple[int, int]]:
    """The image at the size Qwen's processor makes it (sides multiples of ``factor``, pixels within
    the caps this app uses), so a serving engine's processor leaves it as it is."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    w, h = image.size
    new_h, new_w = smart_resize(h, w, factor=factor, min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h))
    return image, (new_w, new_h)


def _qwen25_remote_view(image: Any) -> tuple[Any, tuple[int, int]]:
    """Qwen2.5-VL writes absolute pixels of the image as its processor resized it (sides multiples
    of 28): sent at that size, its boxes are pixels of the sent image."""
    return _resized_view(image, 28)


def _qwen3_remote_view(image: Any) -> tuple[Any, tuple[int, int]]:
    """Qwen3-VL writes 0–1000 coordinates relative to the image, whatever its size (sides: multiples of 32)."""
    return _resized_view(image, 32)[0], (1000, 1000)


def _parse(text: str, input_wh: tuple[int, int], image_wh: tuple[int, int]) -> Grounding:
    return parse_qwen(text, input_wh, image_wh)


def _qwen3_offline(spec: ModelSpec, tiny: bool) -> tuple[Any, Any]:
    from transformers import Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLProcessor, Qwen3VLVideoProcessor

    from model_loaders.families.offline_tokenizers import QWEN3_CHAT_TEMPLATE, qwen3_vl_tokenizer

    tok = qwen3_vl_tokenizer()
    if tiny:
        text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": True, "initializer_range": 0.2}  # fmt: skip
        # num_position_embeddings must be a square (a grid the vision tower interpolates).
        vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                  "num_position_embeddings": 16, "deepstack_visual_indexes": [0]}  # fmt: skip
        vocab, min_px, max_px = len(tok), 64 * 64, 128 * 128
    else:
        text, vision = _variant(_QWEN3_REAL, spec)
        vision = {**vision, "num_position_embeddings": 2304}
        vocab, min_px, max_px = 151936, QWEN_MIN_PIXELS, QWEN_MAX_PIXELS
    # Interleaved mrope sections (temporal, height, width) sum to half the head dimension
    # (Qwen3-VL-2B: head_dim 128 -> [24, 20, 20]).
    half = text["head_dim"] // 2
    hw = (half * 5 // 16) // 2 * 2 if half >= 16 else half // 4
    section = [half - 2 * hw, hw, hw]
    config = Qwen3VLConfig(
        text_config={
            **text,
            "vocab_size": vocab,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": section,
                                "mrope_interleaved": True},
            "max_position_embeddings": 262144,
            "bos_token_id": tok.convert_tokens_to_ids("<|endoftext|>"),
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={**vision, "out_hidden_size": text["hidden_size"], "patch_size": 16, "spatial_merge_size": 2,
                       "temporal_patch_size": 2, "initializer_range": text.get("initializer_range", 0.02)},
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=text["tie_word_embeddings"],
    )  # fmt: skip
    # Qwen3-VL sees 16 px patches merged 2x2 (32 px per token), normalised to [-1, 1].
    ip = Qwen2VLImageProcessor(min_pixels=min_px, max_pixels=max_px, patch_size=16, merge_size=2,
                               temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)  # fmt: skip
    processor = Qwen3VLProcessor(
        image_processor=ip, tokenizer=tok, video_processor=Qwen3VLVideoProcessor(), chat_template=QWEN3_CHAT_TEMPLATE
    )
    return config, processor



_CAPS = {"min_pixels": QWEN_MIN_PIXELS, "max_pixels": QWEN_MAX_PIXELS}
FAMILIES = {
    "qwen2_5_vl": ChatFamily("Qwen2_5_VLForConditionalGeneration", _qwen25_offline, _CAPS,
                             input_wh=_qwen25_input_wh, parse=_parse, grounding_question=json_grounding_question,
                             remote_view=_qwen25_remote_view),
    "qwen3_vl": ChatFamily("Qwen3VLForConditionalGeneration", _qwen3_offline, _CAPS,
                           input_wh=_qwen3_input_wh, parse=_parse, grounding_question=json_grounding_question,
                           remote_view=_qwen3_remote_view),
}  # fmt: skip


# The adapter's entry points (see chat_vlm.adapter).
offline_parts, architecture, load, chat_family = adapter(lambda spec: FAMILIES[spec.family])
