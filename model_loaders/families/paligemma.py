"""PaliGemma 2 mix (family ``paligemma``): task-prefix prompts and ``<locXXXX>`` boxes.

PaliGemma is not a chat model: a prompt is a task prefix (``caption``, ``ocr``, ``detect ...``,
``answer en ...``); a plain question becomes ``answer en <question>``, and only the latest
question counts. Boxes come as four ``<locYYYY>`` tokens (y1 x1 y2 x2 on a 0–1023 grid) before
the label. Real sizes for ``random`` weights follow the checkpoints' ``config.json`` (Gemma 2
2B / 9B / 27B decoders, SigLIP So400m at 448 px).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from model_loaders.core.errors import ModelUnavailable
from model_loaders.core.specs import ModelSpec
from model_loaders.families.chat_vlm import ChatFamily, adapter
from model_loaders.families.generation import neutralise_user_text
from model_loaders.families.grounding import Grounding, parse_paligemma

PREFIXES = ("caption", "describe", "ocr", "answer", "question", "detect", "segment")
# Gemma 2 decoders per variant (27B has head_dim 128; 2B and 9B have 256).
_PALI_REAL = {
    "3b": {"hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26, "num_attention_heads": 8,
           "num_key_value_heads": 4},
    "10b": {"hidden_size": 3584, "intermediate_size": 14336, "num_hidden_layers": 42, "num_attention_heads": 16,
            "num_key_value_heads": 8},
    "28b": {"hidden_size": 4608, "intermediate_size": 36864, "num_hidden_layers": 46, "num_attention_heads": 32,
            "num_key_value_heads": 16, "head_dim": 128},
}  # fmt: skip


def paligemma_prompt(question: str) -> str:
    """A task prefix as given, or ``answer en <question>`` for a plain question."""
    q = neutralise_user_text(question).strip()
    head = q.split(" ", 1)[0].lower()
    if head in PREFIXES:
        return q
    return f"answer en {q}"


def _prompt(processor: Any, image: Any, history: Sequence[dict[str, Any]], question: str) -> Any:
    # Single-turn by design: PaliGemma is not a chat model; only the latest question counts.
    return processor(text="<image>" + paligemma_prompt(question), images=image, return_tensors="pt")


def _parse(text: str, input_wh: tuple[int, int], image_wh: tuple[int, int]) -> Grounding:
    return parse_paligemma(text, image_wh)


def grounding_question(classes: Sequence[str]) -> str:
    """PaliGemma's detection prefix: ``detect a ; b``."""
    return "detect " + " ; ".join(classes or ["object"])


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
        if spec.variant not in _PALI_REAL:
            raise ModelUnavailable(spec.key, "load_failed", f"{spec.name}: unknown variant {spec.variant!r}.")
        text = {"head_dim": 256, **_PALI_REAL[spec.variant]}
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



# PaliGemma takes task prefixes ("caption en", "detect cat"), not chat turns: it has no chat
# template, so engines cannot serve it through chat completions.
FAMILY = ChatFamily("PaliGemmaForConditionalGeneration", _paligemma_offline, prompt=_prompt, parse=_parse,
                    grounding_question=grounding_question, remote=False)  # fmt: skip


# The adapter's entry points (see chat_vlm.adapter).
offline_parts, architecture, load, chat_family = adapter(lambda spec: FAMILY)
