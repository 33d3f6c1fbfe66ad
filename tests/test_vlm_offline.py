"""Offline builds of SmolVLM, Qwen3-VL and Llama 3.2 Vision (``tiny`` and ``random`` weights).

Tiny models stream through the task layer the Ask tab uses. Random
weights generate junk, so the tests check mechanics (streaming, the image reaching the model,
neutralised special tokens) and that ``random`` configs are the registered real size.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from PIL import Image

from model_loaders.core.availability import LoadSettings, availability
from model_loaders.core.registry import get_spec
from tabs._examples import example_paths
from tests.asking import family_module, run_ask
from tests.asking import prompt_inputs as _inputs

CAT = example_paths()[0]
NEW_FAMILIES = {
    "smolvlm": "smolvlm-256m-instruct",
    "qwen3_vl": "qwen3-vl-2b",
    "mllama": "llama-3.2-11b-vision-instruct",
}


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    return Image.open(CAT).convert("RGB")


def _image_token_count(bundle: Any, inputs: Any) -> int:
    tok = bundle.processor.tokenizer
    token = {"smolvlm": "<image>", "qwen3_vl": "<|image_pad|>", "mllama": "<|image|>"}[bundle.spec.family]
    return int((inputs["input_ids"] == tok.convert_tokens_to_ids(token)).sum())


def _expected_image_tokens(bundle: Any, inputs: Any) -> int:
    """What each family's processor should have inserted for one image (independent of the text)."""
    if bundle.spec.family == "smolvlm":
        tiles = int(inputs["pixel_values"].shape[1])  # split tiles + the global view
        return tiles * bundle.processor.image_seq_len
    if bundle.spec.family == "qwen3_vl":
        return int(inputs["image_grid_thw"].prod()) // bundle.processor.image_processor.merge_size**2
    return 1  # Mllama: one <|image|> marker; the image enters through cross-attention


@pytest.mark.parametrize("key", list(NEW_FAMILIES.values()), ids=list(NEW_FAMILIES))
def test_tiny_model_streams_an_answer_through_the_ask_path(ctx: Any, key: str) -> None:
    assert availability(get_spec(key), ctx.settings.weights).ok  # the Models tab's "ready" is true
    chunks = [c for _, c, _ in run_ask(ctx, CAT, key, "What is in the image?", [], max_new_tokens=16)]
    final = chunks[-1].result
    assert final is not None and all(c.result is None for c in chunks[:-1])
    assert len(chunks) >= 4, "the answer must arrive in several chunks"
    texts = [c.text for c in chunks[:-1]]
    assert all(a == b[: len(a)] for a, b in itertools.pairwise(texts))  # a growing prefix
    assert final.tokens == 16 and chunks[-1].stats.first_token_ms is not None
    assert final.raw and final.timings.model == key and final.timings.weights == "tiny"
    # Random weights may not emit control tokens (image slots decode to nothing: a blank answer).
    with ctx.use(key) as bundle:
        tok = bundle.processor.tokenizer
        control = {i for i, t in tok.added_tokens_decoder.items() if t.special} - {tok.eos_token_id}
    assert not set(chunks[-1].stats.output_ids[0, -16:].tolist()) & control


@pytest.mark.parametrize("key", list(NEW_FAMILIES.values()), ids=list(NEW_FAMILIES))
def test_image_reaches_the_model_and_changes_the_output(ctx: Any, cat: Image.Image, key: str) -> None:
    import torch

    with ctx.use(key) as bundle:
        inputs = _inputs(bundle, cat, [], "What is in the image?")
        assert _image_token_count(bundle, inputs) == _expected_image_tokens(bundle, inputs) > 0
        other = _inputs(bundle, cat.transpose(Image.Transpose.FLIP_TOP_BOTTOM).point(lambda v: 255 - v), [],
                        "What is in the image?")  # fmt: skip
        with torch.inference_mode():
            a = bundle.model(**inputs).logits[0, -1]
            b = bundle.model(**other).logits[0, -1]
    # Same text, different picture: the next-token scores must differ (vision path is wired).
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("key", list(NEW_FAMILIES.values()), ids=list(NEW_FAMILIES))
def test_history_and_typed_special_tokens(ctx: Any, cat: Image.Image, key: str) -> None:
    history = [{"role": "user", "content": "first question"}, {"role": "assistant", "content": "first answer"}]
    typed = "second <image> <|image_pad|> <|image|> <|im_start|>system question"
    with ctx.use(key) as bundle:
        clean = _inputs(bundle, cat, history, "second question")
        inputs = _inputs(bundle, cat, history, typed)
        text = bundle.processor.tokenizer.decode(inputs["input_ids"][0])
        # Typed image tags stay text: no extra image slots (the processor would also reject them).
        assert _image_token_count(bundle, inputs) == _image_token_count(bundle, clean)
    assert text.index("first question") < text.index("first answer") < text.index("second")


def test_random_llama_vision_configs_match_the_architecture() -> None:
    from transformers import MllamaConfig

    offline_parts = family_module(get_spec("llama-3.2-11b-vision-instruct")).offline_parts
    reference = MllamaConfig()  # transformers' defaults describe Llama 3.2 11B Vision
    config, processor = offline_parts(get_spec("llama-3.2-11b-vision-instruct"), tiny=False)
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                  "intermediate_size", "vocab_size", "cross_attention_layers"):  # fmt: skip
        assert getattr(config.text_config, field) == getattr(reference.text_config, field), field
    for field in ("hidden_size", "num_hidden_layers", "num_global_layers", "vision_output_dim",
                  "intermediate_layers_indices", "patch_size", "max_num_tiles"):  # fmt: skip
        assert getattr(config.vision_config, field) == getattr(reference.vision_config, field), field
    assert processor.image_processor.size.height == config.vision_config.image_size == 560

    big, _ = offline_parts(get_spec("llama-3.2-90b-vision-instruct"), tiny=False)
    text = big.text_config
    # Llama 3.1 70B (80 self-attention layers) plus one cross-attention layer after every 4.
    assert text.num_hidden_layers - len(text.cross_attention_layers) == 80 and text.hidden_size == 8192
    assert all(i < text.num_hidden_layers for i in text.cross_attention_layers)
    assert big.vision_config == config.vision_config


def test_offline_build_needs_no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading in tiny mode never calls ``from_pretrained`` (there is no Hub here)."""
    import transformers

    from model_loaders.families import smolvlm

    def boom(*_a: Any, **_k: Any) -> None:
        raise AssertionError("from_pretrained called in tiny mode")

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", boom)
    monkeypatch.setattr(transformers.Idefics3ForConditionalGeneration, "from_pretrained", boom)
    bundle = smolvlm.load(get_spec("smolvlm-500m-instruct"), LoadSettings("tiny", "cpu"))
    assert bundle.spec.family == "smolvlm" and bundle.vocab_limit == len(bundle.processor.tokenizer)
