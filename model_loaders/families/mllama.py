"""Llama 3.2 Vision (family ``mllama``): a Llama 3.1 decoder with gated cross-attention to the image.

Real sizes for ``random`` weights follow the checkpoints' ``config.json`` (11B, 90B); a freshly
built model has its tanh gates at zero (the text would ignore the image), so they are opened.
"""

from __future__ import annotations

from typing import Any

from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.specs import ModelSpec
from model_loaders.families.chat_vlm import ChatFamily, adapter, open_gates

# A Llama 3.1 decoder with gated cross-attention layers every 5th layer from 3.
_MLLAMA_REAL = {
    "11b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 40, "num_attention_heads": 32,
            "num_key_value_heads": 8, "cross_attention_layers": list(range(3, 40, 5))},
    "90b": {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 100, "num_attention_heads": 64,
            "num_key_value_heads": 8, "cross_attention_layers": list(range(3, 100, 5))},
}  # fmt: skip
MLLAMA_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}  # fmt: skip


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
        if spec.variant not in _MLLAMA_REAL:
            raise ModelUnavailable(spec.key, "load_failed", f"{spec.name}: unknown variant {spec.variant!r}.")
        text = _MLLAMA_REAL[spec.variant]
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



FAMILY = ChatFamily("MllamaForConditionalGeneration", _mllama_offline, after_build=open_gates)


# The adapter's entry points (see chat_vlm.adapter).
offline_parts, architecture, load, chat_family = adapter(lambda spec: FAMILY)
