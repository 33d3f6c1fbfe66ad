"""Streamed text generation shared by every local VLM family (no UI here).

``generate`` runs in a worker thread and feeds a ``TextIteratorStreamer``; the caller iterates
text chunks as they come. It always ends: ``max_new_tokens`` and ``max_time`` bound it, and a
``threading.Event`` stops it early (the Stop button).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from model_loaders.core.results import GenerationStats

log = logging.getLogger(__name__)

MAX_NEW_TOKENS_CAP = 2048
MAX_TIME_S = 120.0


def vocab_limit_processor(limit: int) -> Any:
    """A logits processor that forbids ids >= ``limit``.

    Random-weight models keep the real vocabulary size (same compute as the real model) but
    our offline tokenizer is smaller; ids it cannot decode are masked out.
    """
    import torch
    from transformers import LogitsProcessor

    class _Limit(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            if scores.shape[-1] > limit:
                scores[:, limit:] = torch.finfo(scores.dtype).min
            return scores

    return _Limit()


def stream_generate(
    model: Any,
    inputs: dict[str, Any],
    tokenizer: Any,
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    max_time: float = MAX_TIME_S,
    stop_event: threading.Event | None = None,
    skip_special_tokens: bool = True,
    vocab_limit: int | None = None,
    stats: GenerationStats | None = None,
    **generate_kwargs: Any,
) -> Iterator[str]:
    """Yield decoded text chunks while ``model.generate`` runs in a thread.

    Args:
        model: a transformers generative model (already on its device, in eval mode).
        inputs: processor outputs (tensors on the model's device).
        tokenizer: decodes the streamed ids.
        max_new_tokens: hard cap on generated tokens (clamped to 1..2048).
        temperature: 0 for greedy decoding, else sampling at this temperature.
        max_time: seconds after which generation stops.
        stop_event: set it to stop generation early.
        skip_special_tokens: drop special tokens from the streamed text.
        vocab_limit: mask ids at or above this (offline tokenizer smaller than the model vocab).
        stats: filled with time to first token, token count, total time and why it stopped.
        **generate_kwargs: more ``generate`` options (e.g. ``num_beams`` is not streamable, so
            it is not supported here).

    Raises:
        Whatever ``generate`` raised in the worker thread, re-raised here.
    """
    import torch
    from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    stats = stats if stats is not None else GenerationStats()
    stop_event = stop_event or threading.Event()
    max_new_tokens = int(min(max(1, max_new_tokens), MAX_NEW_TOKENS_CAP))

    class _Streamer(BaseStreamer):
        """Decodes all generated ids on every step and queues the new text.

        Unlike ``TextIteratorStreamer`` it does not wait for a space, so answers made of
        tokens without spaces (Florence-2 ``<loc_N>`` runs, JSON) still stream.
        """

        def __init__(self) -> None:
            self.queue: queue.Queue[str | None] = queue.Queue()
            self.ids: list[int] = []
            self.sent = 0
            self.prompt_seen = False

        def put(self, value: torch.Tensor) -> None:
            if not self.prompt_seen:  # the first put is the prompt (or decoder start ids)
                self.prompt_seen = True
                return
            if stats.first_token_ms is None:
                stats.first_token_ms = (time.perf_counter() - start) * 1000.0
            new = value.reshape(-1).tolist()
            stats.tokens += len(new)
            self.ids.extend(new)
            text = tokenizer.decode(self.ids, skip_special_tokens=skip_special_tokens)
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                return
            if len(text) > self.sent:
                self.queue.put(text[self.sent :])
                self.sent = len(text)

        def end(self) -> None:
            if self.ids:
                text = tokenizer.decode(self.ids, skip_special_tokens=skip_special_tokens)
                if len(text) > self.sent:
                    self.queue.put(text[self.sent :])
                    self.sent = len(text)
            self.queue.put(None)

        def __iter__(self) -> Iterator[str]:
            while True:
                item = self.queue.get(timeout=max_time + 60.0)
                if item is None:
                    return
                yield item

    class _UserStop(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kw: Any) -> torch.BoolTensor:
            done = stop_event.is_set()
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    streamer = _Streamer()
    kwargs: dict[str, Any] = dict(inputs)
    kwargs.update(
        streamer=streamer,
        max_new_tokens=max_new_tokens,
        max_time=float(max_time),
        stopping_criteria=StoppingCriteriaList([_UserStop()]),
        num_beams=1,
    )
    floor = getattr(getattr(model, "generation_config", None), "min_new_tokens", None)
    if floor:  # never ask for more than the cap (transformers warns and ignores it)
        kwargs["min_new_tokens"] = min(int(floor), max_new_tokens)
    if temperature and temperature > 0:
        kwargs.update(do_sample=True, temperature=float(temperature), top_p=0.95)
    else:
        kwargs.update(do_sample=False)
    if vocab_limit is not None:
        kwargs["logits_processor"] = LogitsProcessorList([vocab_limit_processor(vocab_limit)])
    kwargs.update(generate_kwargs)

    holder: dict[str, Any] = {}

    def work() -> None:
        try:
            with torch.inference_mode():
                holder["out"] = model.generate(**kwargs)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer thread
            holder["error"] = exc
            streamer.end()

    start = time.perf_counter()
    thread = threading.Thread(target=work, name="vlm-generate", daemon=True)
    thread.start()
    finished = False
    try:
        for chunk in streamer:
            if chunk:
                yield chunk
        finished = True
    finally:
        user_stopped = stop_event.is_set()
        # A consumer that stops early (closed generator, client gone) also stops the thread.
        if not finished:
            stop_event.set()
        thread.join()
        stats.total_ms = (time.perf_counter() - start) * 1000.0
    if "error" in holder:
        raise holder["error"]
    stats.output_ids = holder.get("out")
    if user_stopped:
        stats.stopped = "user"
    elif stats.tokens >= max_new_tokens:
        stats.stopped = "max_new_tokens"
    elif stats.total_ms / 1000.0 >= max_time:
        stats.stopped = "max_time"
    else:
        stats.stopped = "eos"


# Anything shaped like a control token: <image>, <|image_pad|>, <|im_start|>, <OD>, <loc_12>,
# <loc0012>, </s>, <start_of_image>, <|begin_of_text|>.
_TOKEN_LIKE = re.compile(r"<(\|?/?[A-Za-z_][A-Za-z0-9_.:\-]{0,40}\|?)>")
MAX_PROMPT_CHARS = 4000


def neutralise_user_text(text: str, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """Cap user text and defuse anything that looks like a special or task token.

    The cap comes first so a 100,000-character question never reaches the tokenizer. Token-like
    tags get their angle brackets swapped for look-alike characters (‹ ›), so ``<|image_pad|>``,
    ``<image>``, ``<|im_start|>system`` or Florence ``<OD>`` stay visible as text but cannot
    open a turn, add an image slot or switch the task.
    """
    text = text[:max_chars]
    return _TOKEN_LIKE.sub(lambda m: f"\u2039{m.group(1)}\u203a", text)
