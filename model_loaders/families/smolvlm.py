"""SmolVLM (family ``smolvlm``, the Idefics3 architecture): a small chat VLM that runs on a CPU.

Real sizes for ``random`` weights: a SmolLM2 decoder per variant and one SigLIP-B/16 512 px
encoder; images are split into 512 px tiles plus a global view.
"""

from __future__ import annotations

from typing import Any

from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.specs import ModelSpec
from model_loaders.families.chat_vlm import ChatFamily, adapter

# SmolVLM splits an image into 512 px tiles (64 tokens each) plus a global view after resizing its
# longest edge to this; the checkpoint's 2048 upscales even small photos to 17 tiles (~1.1k image
# tokens), far too slow for the CPU default. 1024 keeps at most 2x2 tiles + the global view.
SMOLVLM_LONGEST_EDGE = 1024
_SMOLVLM_REAL = {
    "256m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
             "num_key_value_heads": 3},
    "500m": {"hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32, "num_attention_heads": 15,
             "num_key_value_heads": 5},
}  # fmt: skip
_SMOLVLM_VISION_REAL = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                        "num_attention_heads": 12, "image_size": 512, "patch_size": 16}  # fmt: skip


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
        if spec.variant not in _SMOLVLM_REAL:
            raise ModelUnavailable(spec.key, "load_failed", f"{spec.name}: unknown variant {spec.variant!r}.")
        text = _SMOLVLM_REAL[spec.variant]
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



FAMILY = ChatFamily("Idefics3ForConditionalGeneration", _smolvlm_offline,
                    {"size": {"longest_edge": SMOLVLM_LONGEST_EDGE}})  # fmt: skip


# The adapter's entry points (see chat_vlm.adapter).
offline_parts, architecture, load, chat_family = adapter(lambda spec: FAMILY)
