"""Small tokenizers built offline for the ``random`` and ``tiny`` weights modes.

There is no Hub here, so VLM processors get a tokenizer trained in a fraction of a second with
the ``tokenizers`` library on a short built-in text, carrying every special token the processor
and its chat template expect. Random weights generate junk text anyway: these tokenizers exist
so the real processor classes, prompt building, streaming and parsing run unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

# Short English text with the words our prompts use; enough for a few hundred BPE merges.
_CORPUS = """
What is in the image? Describe the image in detail. Answer the question about the picture.
A cat sits on a wooden table next to a cup of coffee. An astronaut floats above the earth.
A rocket launches into a blue sky with white smoke. Detect every object and return boxes.
Return JSON with the title, author and publisher of the book. The text in the image says hello.
caption ocr answer detect segment locate the phrases region describe objects person dog car
The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 10 100 1000 bbox_2d label
{"bbox_2d": [10, 20, 30, 40], "label": "cat"} ```json [] ``` yes no red green blue black white
"""

QWEN_SPECIAL = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen-VL chat turns (images and text in user turns), shared by Qwen2.5-VL and Qwen3-VL.
_QWEN_TURNS = (
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2-VL / Qwen2.5-VL: a default system turn when the conversation has none.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}" + _QWEN_TURNS
)

# Qwen3-VL: the same turns, no default system turn.
QWEN3_CHAT_TEMPLATE = "{% for message in messages %}" + _QWEN_TURNS

# SmolVLM / Idefics3 style template.
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}"
    "{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{ line['text'] }}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# Llama 3.2 Vision style template.
MLLAMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|image|>{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def build_tokenizer(
    special: Sequence[str],
    *,
    added: Sequence[str] = (),
    named: dict[str, str] | None = None,
    chat_template: str | None = None,
    vocab_size: int = 600,
    byte_level: bool = True,
) -> Any:
    """Train a small BPE tokenizer and wrap it in ``PreTrainedTokenizerFast``.

    Args:
        special: special tokens, in id order (they get the first ids).
        added: more tokens kept whole but not special (e.g. Florence-2 ``<loc_N>``), so
            ``decode(skip_special_tokens=True)`` keeps them, as the real tokenizers do.
        named: special-token attributes (``bos_token``, ``eos_token``, ``pad_token``,
            ``unk_token``, ``image_token`` ...) mapped to token strings from ``special``.
        chat_template: Jinja chat template to attach.
        vocab_size: BPE vocabulary size before ``added``.
        byte_level: byte-level pre-tokenizer and decoder (GPT-2 style), so any text encodes.

    Returns:
        A ``PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    named = dict(named or {})
    tok = Tokenizer(models.BPE(unk_token=named.get("unk_token")))
    if byte_level:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        alphabet = []
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special), initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(_CORPUS.split("\n") * 4, trainer=trainer)
    if added:
        tok.add_tokens(list(added))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **named)
    # Register every special token as special, so decode(skip_special_tokens=True) drops them.
    extra = [t for t in special if t not in named.values()]
    if extra:
        fast.add_special_tokens({"additional_special_tokens": extra}, replace_extra_special_tokens=False)
    if chat_template:
        fast.chat_template = chat_template
    return fast


def florence2_tokenizer() -> Any:
    """BART-style tokenizer with Florence-2's ``<image>``, task and ``<loc_0..999>`` tokens."""
    special = ["<s>", "<pad>", "</s>", "<unk>", "<image>"]
    structural = [
        "<od>", "</od>", "<ocr>", "</ocr>", "<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>",
        "<grounding>", "</grounding>", "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>",
        "<region_to_desciption>", "</region_to_desciption>", "<proposal>", "</proposal>",
        "<poly>", "</poly>", "<and>",
    ]  # fmt: skip
    locs = [f"<loc_{i}>" for i in range(1000)]
    return build_tokenizer(
        special,
        added=structural + locs,
        named={"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
               "image_token": "<image>"},
    )  # fmt: skip


def qwen_vl_tokenizer() -> Any:
    """Qwen2-VL-family tokenizer with its chat special tokens and chat template."""
    return build_tokenizer(
        QWEN_SPECIAL,
        named={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "image_token": "<|image_pad|>",
               "video_token": "<|video_pad|>", "vision_bos_token": "<|vision_start|>",
               "vision_eos_token": "<|vision_end|>"},
        chat_template=QWEN_CHAT_TEMPLATE,
    )  # fmt: skip


def qwen3_vl_tokenizer() -> Any:
    """Qwen3-VL tokenizer: the Qwen2-VL special tokens plus ``<think>``/``</think>``, Qwen3 template."""
    return build_tokenizer(
        (*QWEN_SPECIAL, "<think>", "</think>"),
        named={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "image_token": "<|image_pad|>",
               "video_token": "<|video_pad|>", "vision_bos_token": "<|vision_start|>",
               "vision_eos_token": "<|vision_end|>"},
        chat_template=QWEN3_CHAT_TEMPLATE,
    )  # fmt: skip


def paligemma_tokenizer() -> Any:
    """Gemma-style tokenizer with PaliGemma's ``<image>``, ``<locXXXX>`` and ``<segXXX>`` tokens."""
    special = ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"]
    extra = [f"<loc{i:04d}>" for i in range(1024)] + [f"<seg{i:03d}>" for i in range(128)]
    return build_tokenizer(
        special,
        added=extra,
        named={"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>",
               "image_token": "<image>"},
    )  # fmt: skip


def smolvlm_tokenizer() -> Any:
    """SmolVLM (Idefics3) tokenizer with its image tokens and chat template."""
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>", "<image>",
               "<fake_token_around_image>", "<global-img>"]  # fmt: skip
    rows = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    return build_tokenizer(
        special + rows,
        named={"bos_token": "<|im_start|>", "eos_token": "<end_of_utterance>", "pad_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>", "image_token": "<image>",
               "fake_image_token": "<fake_token_around_image>", "global_image_token": "<global-img>",
               "end_of_utterance_token": "<end_of_utterance>"},
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )  # fmt: skip


def mllama_tokenizer() -> Any:
    """Llama 3.2 Vision tokenizer with ``<|image|>`` and the header tokens."""
    special = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
               "<|image|>", "<|finetune_right_pad_id|>", "<|python_tag|>"]  # fmt: skip
    return build_tokenizer(
        special,
        named={"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|finetune_right_pad_id|>",
               "image_token": "<|image|>"},
        chat_template=MLLAMA_CHAT_TEMPLATE,
    )  # fmt: skip
