"""Chat-style transformers VLMs: Qwen2.5-VL, Qwen3-VL, PaliGemma 2, Llama 3.2 Vision, SmolVLM.

One streamed chat path for all of them (``stream``): build the prompt (chat template, or
PaliGemma's task prefixes), run ``generate`` in a thread, parse boxes from the answer.
``load`` is one code path per family; only the weight source differs (hub / random / tiny).
Offline modes build the processor from its parts with a tokenizer made offline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from model_loaders.core.adapters import LoadSettings
from model_loaders.core.errors import InputError, ModelUnavailable
from model_loaders.core.hub import hub_errors, pretrained_kwargs
from model_loaders.core.results import TextResult, Timings
from model_loaders.core.specs import ModelSpec
from model_loaders.families.generation import AskChunk, GenerationStats, neutralise_user_text, stream_generate
from model_loaders.families.grounding import Grounding, parse_paligemma, parse_qwen

log = logging.getLogger(__name__)

# Qwen-VL image size cap: at most this many pixels reach the vision tower (the default allows
# 12.8 MP, which makes preprocessing and attention dominate on a CPU).
QWEN_MIN_PIXELS = 256 * 28 * 28
QWEN_MAX_PIXELS = 1024 * 28 * 28
# SmolVLM splits an image into 512 px tiles (64 tokens each) plus a global view after resizing its
# longest edge to this; the checkpoint's 2048 upscales even small photos to 17 tiles (~1.1k image
# tokens), far too slow for the CPU default. 1024 keeps at most 2x2 tiles + the global view.
SMOLVLM_LONGEST_EDGE = 1024
PALIGEMMA_PREFIXES = ("caption", "describe", "ocr", "answer", "question", "detect", "segment")

# Real sizes for ``random`` weights, per registry key: (text kwargs, vision kwargs, vocab).
_QWEN25_REAL = {
    "qwen2.5-vl-3b": ({"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                       "num_attention_heads": 16, "num_key_value_heads": 2}, {"out_hidden_size": 2048}, 151936),
    "qwen2.5-vl-7b": ({"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                       "num_attention_heads": 28, "num_key_value_heads": 4}, {"out_hidden_size": 3584}, 152064),
    "qwen2.5-vl-72b": ({"hidden_size": 8192, "intermediate_size": 29568, "num_hidden_layers": 80,
                        "num_attention_heads": 64, "num_key_value_heads": 8}, {"out_hidden_size": 8192}, 152064),
}  # fmt: skip
_PALI_REAL = {
    "paligemma2-3b-mix-448": {"hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
                              "num_attention_heads": 8, "num_key_value_heads": 4},
    "paligemma2-10b-mix-448": {"hidden_size": 3584, "intermediate_size": 14336, "num_hidden_layers": 42,
                               "num_attention_heads": 16, "num_key_value_heads": 8},
    "paligemma2-28b-mix-448": {"hidden_size": 4608, "intermediate_size": 36864, "num_hidden_layers": 46,
                               "num_attention_heads": 32, "num_key_value_heads": 16},
}  # fmt: skip

# SmolVLM (Idefics3 architecture): SmolLM2 text decoder per size, one SigLIP-B/16 512 px encoder.
_SMOLVLM_REAL = {
    "smolvlm-256m-instruct": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                              "num_attention_heads": 9, "num_key_value_heads": 3},
    "smolvlm-500m-instruct": {"hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32,
                              "num_attention_heads": 15, "num_key_value_heads": 5},
}  # fmt: skip
_SMOLVLM_VISION_REAL = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                        "num_attention_heads": 12, "image_size": 512, "patch_size": 16}  # fmt: skip
_QWEN3_REAL = {
    "qwen3-vl-2b": ({"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
                     "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": True},
                    {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
                     "deepstack_visual_indexes": [5, 11, 17]}),
}  # fmt: skip
# Llama 3.2 Vision: a Llama 3.1 decoder with gated cross-attention layers every 5th layer from 3.
_MLLAMA_REAL = {
    "llama-3.2-11b-vision-instruct": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 40,
                                      "num_attention_heads": 32, "num_key_value_heads": 8,
                                      "cross_attention_layers": list(range(3, 40, 5))},
    "llama-3.2-90b-vision-instruct": {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 100,
                                      "num_attention_heads": 64, "num_key_value_heads": 8,
                                      "cross_attention_layers": list(range(3, 100, 5))},
}  # fmt: skip
MLLAMA_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}  # fmt: skip

OFFLINE_FAMILIES = ("qwen2_5_vl", "paligemma", "smolvlm", "qwen3_vl", "mllama")


@dataclass
class VLMBundle:
    """A loaded chat VLM: model, processor, family, and how to decode safely."""

    model: Any
    processor: Any
    spec: ModelSpec
    device: str
    dtype: Any
    vocab_limit: int | None = None

    @property
    def family(self) -> str:
        """The registry family (selects prompt building and box parsing)."""
        return self.spec.family


# --- building offline (random / tiny) ---------------------------------------------------------


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
        text, vision_extra, vocab = _QWEN25_REAL.get(spec.key, _QWEN25_REAL["qwen2.5-vl-3b"])
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
            "tie_word_embeddings": True,
        },
        vision_config=vision,
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=True,
        initializer_range=text.get("initializer_range", 0.02),
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=min_px, max_pixels=max_px),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    return config, processor


def _paligemma_offline(spec: ModelSpec, tiny: bool) -> tuple[Any, Any]:
    from transformers import PaliGemmaConfig, PaliGemmaProcessor, SiglipImageProcessor

    from model_loaders.families.offline_tokenizers import paligemma_tokenizer

    tok = paligemma_tokenizer()
    if tiny:
        text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                "num_key_value_heads": 1, "head_dim": 16}  # fmt: skip
        vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                  "image_size": 28, "patch_size": 14}  # fmt: skip
        vocab, side = len(tok), 28
    else:
        real = _PALI_REAL.get(spec.key, _PALI_REAL["paligemma2-3b-mix-448"])
        text = {**real, "head_dim": 256}
        vision = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
                  "image_size": 448, "patch_size": 14}  # fmt: skip
        vocab, side = 257216, 448
    config = PaliGemmaConfig(
        text_config={"model_type": "gemma2", **text, "vocab_size": vocab, "bos_token_id": tok.bos_token_id,
                     "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id},
        vision_config={"model_type": "siglip_vision_model", **vision, "projection_dim": text["hidden_size"]},
        image_token_index=tok.image_token_id,
        vocab_size=vocab,
        projection_dim=text["hidden_size"],
        hidden_size=text["hidden_size"],
    )  # fmt: skip
    ip = SiglipImageProcessor(size={"height": side, "width": side}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    ip.image_seq_length = (side // vision["patch_size"]) ** 2
    processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    return config, processor


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
        text, vision = _QWEN3_REAL.get(spec.key, _QWEN3_REAL["qwen3-vl-2b"])
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


def _smolvlm_offline(spec: ModelSpec, tiny: bool) -> tuple[Any, Any]:
    from transformers import Idefics3Config, Idefics3ImageProcessor, Idefics3Processor

    from model_loaders.families.offline_tokenizers import SMOLVLM_CHAT_TEMPLATE, smolvlm_tokenizer

    tok = smolvlm_tokenizer()
    if tiny:
        text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "initializer_range": 0.2}  # fmt: skip
        vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                  "image_size": 32, "patch_size": 8}  # fmt: skip
        vocab, scale, longest = len(tok), 2, 64
    else:
        text = _SMOLVLM_REAL.get(spec.key, _SMOLVLM_REAL["smolvlm-256m-instruct"])
        vision, vocab, scale, longest = _SMOLVLM_VISION_REAL, 49280, 4, SMOLVLM_LONGEST_EDGE
    side = vision["image_size"]
    # Tokens per image tile after the pixel shuffle (SmolVLM 512 px / 16 px patches / 4x4 -> 64).
    image_seq_len = (side // vision["patch_size"]) ** 2 // scale**2
    config = Idefics3Config(
        text_config={"model_type": "llama", **text, "vocab_size": vocab, "rms_norm_eps": 1e-5,
                     "max_position_embeddings": 8192, "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0},
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
                     "tie_word_embeddings": False},
        vision_config={**vision, "initializer_range": text.get("initializer_range", 0.02)},
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=scale,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )  # fmt: skip
    # Images are split into side x side tiles plus one global view, each ``image_seq_len`` tokens.
    ip = Idefics3ImageProcessor(size={"longest_edge": longest}, max_image_size={"longest_edge": side},
                                image_mean=[0.5] * 3, image_std=[0.5] * 3, do_image_splitting=True)  # fmt: skip
    processor = Idefics3Processor(
        image_processor=ip, tokenizer=tok, image_seq_len=image_seq_len, chat_template=SMOLVLM_CHAT_TEMPLATE
    )
    return config, processor


def _mllama_offline(spec: ModelSpec, tiny: bool) -> tuple[Any, Any]:
    from transformers import MllamaConfig, MllamaImageProcessor, MllamaProcessor

    from model_loaders.families.offline_tokenizers import MLLAMA_CHAT_TEMPLATE, mllama_tokenizer

    tok = mllama_tokenizer()
    if tiny:
        text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
                "num_key_value_heads": 2, "cross_attention_layers": [1], "initializer_range": 0.2}  # fmt: skip
        vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_global_layers": 1,
                  "attention_heads": 2, "intermediate_layers_indices": [0, 1], "image_size": 28}  # fmt: skip
        vocab, rope = len(tok), {"rope_type": "default", "rope_theta": 500000.0}
    else:
        text = _MLLAMA_REAL.get(spec.key, _MLLAMA_REAL["llama-3.2-11b-vision-instruct"])
        vision = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_global_layers": 8,
                  "attention_heads": 16, "intermediate_layers_indices": [3, 7, 15, 23, 30], "image_size": 560}  # fmt: skip
        vocab, rope = 128256, MLLAMA_ROPE
    side = vision["image_size"]
    # The projector reads the last hidden state plus every listed intermediate layer.
    out_dim = vision["hidden_size"] * (len(vision["intermediate_layers_indices"]) + 1)
    config = MllamaConfig(
        text_config={**text, "vocab_size": vocab, "rope_parameters": rope, "max_position_embeddings": 131072,
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id},
        vision_config={**vision, "vision_output_dim": out_dim, "patch_size": 14, "max_num_tiles": 4,
                       "initializer_range": text.get("initializer_range", 0.02)},
        image_token_index=tok.convert_tokens_to_ids("<|image|>"),
    )  # fmt: skip
    # Up to 4 tiles of side x side (aspect ratios 1x1 .. 4x1), CLIP normalisation as in the checkpoint.
    ip = MllamaImageProcessor(size={"height": side, "width": side}, max_image_tiles=4,
                              image_mean=[0.48145466, 0.4578275, 0.40821073],
                              image_std=[0.26862954, 0.26130258, 0.27577711])  # fmt: skip
    processor = MllamaProcessor(image_processor=ip, tokenizer=tok, chat_template=MLLAMA_CHAT_TEMPLATE)
    return config, processor


_OFFLINE_BUILDERS = {
    "qwen2_5_vl": _qwen25_offline,
    "qwen3_vl": _qwen3_offline,
    "paligemma": _paligemma_offline,
    "smolvlm": _smolvlm_offline,
    "mllama": _mllama_offline,
}


def offline_parts(spec: ModelSpec, tiny: bool) -> tuple[Any, Any]:
    """Config and processor for ``random`` (real size) or ``tiny`` weights, built with no download.

    Raises:
        ModelUnavailable: the family has no offline build.
    """
    build = _OFFLINE_BUILDERS.get(spec.family)
    if build is None:
        raise ModelUnavailable(spec.key, "load_failed", f"{spec.name}: no offline build; use --weights hub.")
    return build(spec, tiny)


def _open_cross_attention_gates(model: Any) -> None:
    """Give Mllama's zero-initialised tanh gates a trained-like value (pi/4, tanh = 0.66).

    A fresh Mllama starts with every cross-attention and tile-embedding gate at 0, so the text
    would ignore the image entirely; real checkpoints have open gates. Opening them keeps random
    weights doing the real computation with the image actually influencing the answer.
    """
    import math

    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.rsplit(".", 1)[-1].endswith("gate") and param.numel() == 1 and float(param) == 0.0:
                param.fill_(math.pi / 4)


def _model_class(family: str) -> Any:
    import transformers

    names = {
        "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
        "qwen3_vl": "Qwen3VLForConditionalGeneration",
        "paligemma": "PaliGemmaForConditionalGeneration",
        "mllama": "MllamaForConditionalGeneration",
        # SmolVLM (v1) checkpoints are the Idefics3 architecture (config model_type "idefics3").
        "smolvlm": "Idefics3ForConditionalGeneration",
    }
    return getattr(transformers, names[family])


def load(spec: ModelSpec, settings: LoadSettings) -> VLMBundle:
    """Load a chat VLM for ``spec`` under ``settings``.

    Raises:
        ModelUnavailable: hub failures (offline, gated); offline weights for a family that has
            no offline build.
    """
    import torch

    dtype = getattr(torch, settings.dtype_name(spec))
    cls = _model_class(spec.family)
    vocab_limit = None
    if settings.weights == "hub":
        from transformers import AutoProcessor

        kwargs: dict[str, Any] = {}
        if spec.family in ("qwen2_5_vl", "qwen3_vl"):
            kwargs = {"min_pixels": QWEN_MIN_PIXELS, "max_pixels": QWEN_MAX_PIXELS}
        elif spec.family == "smolvlm":
            kwargs = {"size": {"longest_edge": SMOLVLM_LONGEST_EDGE}}
        with hub_errors(spec):
            processor = AutoProcessor.from_pretrained(spec.checkpoint, **pretrained_kwargs(spec), **kwargs)
            model = cls.from_pretrained(spec.checkpoint, dtype=dtype, **pretrained_kwargs(spec))
    else:
        config, processor = offline_parts(spec, tiny=settings.weights == "tiny")
        torch.manual_seed(0)
        model = cls(config).to(dtype)
        if spec.family == "mllama":
            _open_cross_attention_gates(model)
        vocab_limit = len(processor.tokenizer)
        # Random weights tend to end at once; a floor of a few tokens keeps streaming visible.
        model.generation_config.min_new_tokens = 8
        # They also like control tokens (image slots, SmolVLM's <row_i_col_j>), which decode to
        # nothing, so a random answer would stream as blank: allow only eos among them.
        # (Read the added tokens: some processors re-register their own specials and drop ours from
        # ``all_special_ids``.)
        tok = processor.tokenizer
        control = {i for i, t in tok.added_tokens_decoder.items() if t.special} | set(tok.all_special_ids)
        model.generation_config.suppress_tokens = sorted(control - {tok.eos_token_id})
    model.to(settings.device).eval()
    return VLMBundle(model, processor, spec, settings.device, dtype, vocab_limit)


# --- prompts ----------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """Text of a chat message's content (a string, or a list of parts / a dict from Gradio)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", "") or "")
    if isinstance(content, (list, tuple)):
        return " ".join(_text_of(c) for c in content if not isinstance(c, dict) or c.get("type", "text") == "text")
    return ""


def chat_messages(history: Sequence[dict[str, Any]], question: str) -> list[dict[str, Any]]:
    """Chat-template messages: the image in the first user turn, all text neutralised.

    Args:
        history: earlier turns as ``{"role", "content"}`` dicts (Gradio messages format).
        question: the new user question (already validated).
    """
    messages: list[dict[str, Any]] = []
    turns = [(m.get("role"), _text_of(m.get("content"))) for m in history if m.get("role") in ("user", "assistant")]
    turns.append(("user", question))
    first_user = True
    for role, text in turns:
        text = neutralise_user_text(text)
        if role == "user" and first_user:
            messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
            first_user = False
        else:
            messages.append({"role": role, "content": [{"type": "text", "text": text}]})
    return messages


def paligemma_prompt(question: str) -> str:
    """PaliGemma mix prompts are task prefixes; a plain question becomes ``answer en ...``."""
    q = neutralise_user_text(question).strip()
    head = q.split(" ", 1)[0].lower()
    if head in PALIGEMMA_PREFIXES:
        return q
    return f"answer en {q}"


def _inputs(bundle: VLMBundle, image: Any, history: Sequence[dict[str, Any]], question: str) -> Any:
    proc = bundle.processor
    if bundle.family == "paligemma":
        # Single-turn by design: PaliGemma is not a chat model; only the latest question counts.
        return proc(text="<image>" + paligemma_prompt(question), images=image, return_tensors="pt")
    prompt = proc.apply_chat_template(chat_messages(history, question), add_generation_prompt=True, tokenize=False)
    return proc(text=[prompt], images=[image], return_tensors="pt")


def _input_wh(bundle: VLMBundle, inputs: Any, image_wh: tuple[int, int]) -> tuple[int, int]:
    """Coordinate space of the boxes the model writes."""
    if bundle.family == "qwen2_5_vl" and "image_grid_thw" in inputs:
        _, h, w = (int(v) for v in inputs["image_grid_thw"][0])
        patch = bundle.processor.image_processor.patch_size
        return (w * patch, h * patch)
    if bundle.family == "qwen3_vl":
        return (1000, 1000)
    return image_wh


def parse_boxes(family: str, text: str, input_wh: tuple[int, int], image_wh: tuple[int, int]) -> Grounding:
    """Boxes in an answer of ``family`` mapped to ``image_wh`` pixels."""
    if family in ("qwen2_5_vl", "qwen3_vl", "smolvlm", "mllama"):
        return parse_qwen(text, input_wh, image_wh)
    if family == "paligemma":
        return parse_paligemma(text, image_wh)
    return Grounding()


def stream(
    bundle: VLMBundle,
    image: Any,
    question: str,
    history: Sequence[dict[str, Any]] = (),
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    max_time: float = 60.0,
    stop_event: threading.Event | None = None,
    timings: Timings | None = None,
) -> Iterator[AskChunk]:
    """Answer ``question`` about a PIL image, streaming the text.

    Yields ``AskChunk``s with the answer so far; the last one carries a ``TextResult`` with
    the raw text, any parsed boxes (image pixel coordinates) and a parse error if boxes could
    not be read.

    Raises:
        InputError: empty question.
    """
    import torch

    question = neutralise_user_text(question or "").strip()
    if not question:
        raise InputError("Please enter a question.")
    timings = timings if timings is not None else Timings()
    image_wh = (int(image.size[0]), int(image.size[1]))
    with timings.stage("preprocess"):
        inputs = _inputs(bundle, image, history, question)
        input_wh = _input_wh(bundle, inputs, image_wh)
        inputs = {
            k: (v.to(bundle.device, bundle.dtype) if torch.is_floating_point(v) else v.to(bundle.device))
            for k, v in inputs.items()
            if k != "labels"
        }
    stats = GenerationStats()
    sofar = ""
    for chunk in stream_generate(
        bundle.model,
        inputs,
        bundle.processor.tokenizer,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        max_time=max_time,
        stop_event=stop_event,
        # PaliGemma's <locXXXX> are added (non-special) tokens, so they survive this.
        skip_special_tokens=True,
        vocab_limit=bundle.vocab_limit,
        stats=stats,
    ):
        sofar += chunk
        yield AskChunk(sofar, stats=stats, input_wh=image_wh)
    timings.inference_ms += stats.total_ms
    with timings.stage("postprocess"):
        grounding = parse_boxes(bundle.family, sofar, input_wh, image_wh)
    result = TextResult(
        text=sofar.strip(),
        raw=sofar,
        detections=grounding.detections,
        parse_error=grounding.error,
        tokens=stats.tokens,
        timings=timings,
    )
    if result.detections is not None:
        result.detections.metadata.update(model=bundle.spec.key, timings=timings.as_dict())
    yield AskChunk(result.text, result=result, stats=stats, input_wh=image_wh)


def ask_stream(
    ctx: Any,
    key: str,
    image: Any,
    question: str,
    history: Sequence[dict[str, Any]] = (),
    *,
    task: str | None = None,
    region: tuple[float, float, float, float] | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    max_time: float = 60.0,
    stop_event: threading.Event | None = None,
    timings: Timings | None = None,
) -> Iterator[AskChunk]:
    """Ask any registered VLM about a PIL image: dispatch on the model family, stream the answer.

    Florence-2 runs ``task`` (a task token) with ``question`` as its phrase and ``region`` for
    region tasks; chat models answer ``question`` with ``history``; Gemini goes through its API.
    The model is pinned in the shared cache for the whole stream.

    Raises:
        ModelUnavailable: the model cannot run here (message names the model and the fix).
        InputError: a missing question, phrase or region.
    """
    from model_loaders.core.registry import get_spec

    spec = get_spec(key)
    timings = timings if timings is not None else Timings()
    common = {"max_new_tokens": max_new_tokens, "max_time": max_time, "stop_event": stop_event, "timings": timings}
    with ctx.use(key, timings) as bundle:
        if spec.family == "florence2":
            from model_loaders.families import florence2

            try:
                gen = florence2.stream(bundle, image, task or "<CAPTION>", question, region, **common)
                first = next(gen)
            except ValueError as exc:
                raise InputError(str(exc)) from None
            yield first
            yield from gen
        elif spec.family == "gemini":
            from model_loaders.families import gemini

            yield from gemini.stream(bundle, image, question, history, temperature=temperature, **common)
        else:
            yield from stream(bundle, image, question, history, temperature=temperature, **common)
