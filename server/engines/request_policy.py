"""Rules every engine applies to a request the same way, so both engines answer alike.

The pixel budget a request may ask for, the context-length checks (with the same errors), and the
sampling settings that unset fields take from the model's ``generation_config`` (as vLLM's server does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from zwz.server.engines.base import InvalidRequestError, SamplingParams

# Seeds are 64-bit integers, as vLLM's server takes them (torch's generators and msgpack reject larger ones).
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
# vLLM raises a temperature in (0, 0.01) to 0.01: below it the logits overflow to inf and sampling fails
# (NaN probabilities). Both engines apply it, so they sample alike.
MIN_SAMPLING_TEMPERATURE = 1e-2


@dataclass
class RowSettings:
    """One request's decoding settings, resolved: a row of a transformers batch, or a vLLM ``SamplingParams``."""

    max_tokens: int
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    seed: int | None = None
    stop: Sequence[str] = ()


def pixel_budget(image_processor: Any, min_pixels: int | None, max_pixels: int | None) -> dict[str, int]:
    """The processor ``size`` for a request's ``mm_processor_kwargs``; unset bounds keep the processor's."""
    size = image_processor.size
    lo = min_pixels if min_pixels is not None else size["shortest_edge"]
    hi = max_pixels if max_pixels is not None else size["longest_edge"]
    factor = (image_processor.patch_size * image_processor.merge_size) ** 2  # one merged visual token
    if lo < factor or hi < lo:
        raise InvalidRequestError(
            f"pixel budget must satisfy {factor} <= min_pixels <= max_pixels (got {lo}, {hi})",
            param="mm_processor_kwargs",
        )
    return {"shortest_edge": lo, "longest_edge": hi}


def check_context(prompt_tokens: int, visual_tokens: int, max_tokens: int | None, max_model_len: int) -> None:
    """Refuse a prompt that leaves no room to answer, or asks for more tokens than the context holds."""
    if prompt_tokens >= max_model_len:
        raise InvalidRequestError(
            f"the prompt has {prompt_tokens} tokens ({visual_tokens} of them visual), over this model's "
            f"context of {max_model_len}; send a smaller image (max_pixels) or a shorter prompt",
            param="messages",
            code="context_length_exceeded",
        )
    if max_tokens is not None and prompt_tokens + max_tokens > max_model_len:
        raise InvalidRequestError(
            f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the context of "
            f"{max_model_len} tokens",
            param="max_tokens",
            code="context_length_exceeded",
        )


def row_settings(sampling: SamplingParams, defaults: Any, *, prompt_tokens: int, max_model_len: int,
                 default_max_tokens: int) -> RowSettings:
    """Resolve ``sampling`` against ``defaults`` (a transformers GenerationConfig).

    Unset temperature: the model's own (greedy when its config does not sample). Unset max_tokens: the
    server default, capped by the room left in the context. A seed outside 64 bits is refused here, when the
    request arrives, not in the batch it would have joined; seed -1 means none, as in vLLM.
    """
    seed = sampling.seed
    if seed is not None and not SEED_MIN <= seed <= SEED_MAX:
        raise InvalidRequestError(f"seed must be a 64-bit integer ({SEED_MIN} to {SEED_MAX})", param="seed")
    room = max_model_len - prompt_tokens
    max_tokens = sampling.max_tokens if sampling.max_tokens is not None else min(default_max_tokens, room)
    if sampling.temperature is not None:
        temperature = sampling.temperature
    else:
        temperature = (defaults.temperature or 1.0) if defaults.do_sample else 0.0
    if temperature > 0:
        temperature = max(temperature, MIN_SAMPLING_TEMPERATURE)
    top_p = sampling.top_p if sampling.top_p is not None else (defaults.top_p or 1.0)
    if sampling.top_k is not None:
        top_k = sampling.top_k
    else:
        top_k = (defaults.top_k or 0) if defaults.do_sample else 0
    stop = tuple(s for s in sampling.stop if s)
    for text in stop:  # each is checked at every step of the batch: refuse a bad one now, not there
        if not isinstance(text, str) or not (text.isascii() or _encodes(text)):
            raise InvalidRequestError(f"stop strings must be valid Unicode text (got {text!r})", param="stop")
    return RowSettings(
        max_tokens=max(1, max_tokens),
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=None if seed == -1 else seed,
        stop=stop,
    )


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate
        return False
    return True
