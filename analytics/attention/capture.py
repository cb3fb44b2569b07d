"""Capturing post-RoPE queries, keys and values during a normal (sdpa) forward pass.

Models are loaded with ``attn_implementation={"text_config": CAPTURE_ATTENTION, "vision_config": "sdpa"}``.
The registered function delegates to transformers' sdpa attention, so the model runs at full speed, and
while a ``capture()`` block is open on the calling thread it keeps references to what the language
model's attention layers see: the last-position query (already rotated by M-RoPE), and the keys and values
including the cache (not yet repeated for GQA). Keeping references costs no copy: they are the cache's own
tensors. Outside a capture block the function only does one thread-local lookup per layer.

``reference_attention()`` switches the same function to transformers' eager attention for the
``output_attentions=True`` reference method, which materialises every layer's S x S matrix.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

CAPTURE_ATTENTION = "zwz_capture"

_state = threading.local()
_registered = False


@dataclass
class CaptureStore:
    """What one forward pass left behind, per LLM layer index (first call per layer only)."""

    query_layers: frozenset[int] | None = None  # None: every layer
    last_query: dict[int, torch.Tensor] = field(default_factory=dict)  # (B, Hq, D)
    keys: dict[int, torch.Tensor] = field(default_factory=dict)  # (B, Hkv, S, D)
    values: dict[int, torch.Tensor] = field(default_factory=dict)  # (B, Hkv, S, D)

    def record(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
        if layer in self.keys:  # decode steps after the prefill: keep the prefill's view
            return
        self.keys[layer] = key
        self.values[layer] = value
        if self.query_layers is None or layer in self.query_layers:
            self.last_query[layer] = query[:, :, -1, :]


def _capture_attention(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    store: CaptureStore | None = getattr(_state, "store", None)
    layer = getattr(module, "layer_idx", None)
    if store is not None and layer is not None:
        store.record(layer, query, key, value)
    if getattr(_state, "eager", False):
        eager = sys.modules[type(module).__module__].eager_attention_forward
        return eager(module, query, key, value, attention_mask, **kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _capture_mask(*args, **kwargs):
    from transformers.masking_utils import eager_mask, sdpa_mask

    # Eager attention adds its mask to the logits: it needs the additive float mask, not sdpa's boolean one.
    return eager_mask(*args, **kwargs) if getattr(_state, "eager", False) else sdpa_mask(*args, **kwargs)


def register() -> str:
    """Register the capturing attention (and its mask) with transformers; return its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(CAPTURE_ATTENTION, _capture_attention)
        # Without a mask function for this name transformers passes mask=None and padded batches go wrong.
        AttentionMaskInterface.register(CAPTURE_ATTENTION, _capture_mask)
        _registered = True
    return CAPTURE_ATTENTION


def attn_implementation() -> dict[str, str]:
    """The ``attn_implementation`` to load a Qwen-VL model with: capture in the LLM, sdpa in the vision tower."""
    return {"text_config": register(), "vision_config": "sdpa"}


def uses_capture(model) -> bool:
    text_config = model.config.get_text_config()
    return getattr(text_config, "_attn_implementation", None) == CAPTURE_ATTENTION


@contextmanager
def capture(query_layers: set[int] | None = None) -> Iterator[CaptureStore]:
    """Record queries/keys/values of forward passes run on this thread inside the block."""
    store = CaptureStore(query_layers=frozenset(query_layers) if query_layers is not None else None)
    previous = getattr(_state, "store", None)
    _state.store = store
    try:
        yield store
    finally:
        _state.store = previous


@contextmanager
def reference_attention() -> Iterator[None]:
    """Run transformers' eager attention (which returns attention weights) inside the block."""
    previous = getattr(_state, "eager", False)
    _state.eager = True
    try:
        yield
    finally:
        _state.eager = previous
