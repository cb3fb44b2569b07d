"""The transformers engine's attention maps (its ``Engine.attention_maps``), on zwz's capture attention.

Two ways to a relative-attention map (paper App. 12): ``analyze`` runs the question's prefill on its own
(POST /v1/zoom/attention, the attention-zoom mode); ``recording`` + ``from_answer_prefill`` reuse the
prefill of an answer's own ``generate`` call (the chat ``zwz_attention`` extension) and add only the
generic instruction's.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

import torch
from PIL import Image

from zwz.analytics.attention import capture
from zwz.analytics.attention.relative_attention import (
    LayerSpec,
    Method,
    PromptPair,
    RelativeAttention,
    build_pair,
    from_question_capture,
    pair_from_inputs,
    relative_attention,
    resolve_layers,
)
from zwz.server.engines.base import EngineOverloadedError, InvalidRequestError
from zwz.server.engines.request_policy import pixel_budget


class TransformersAttentionMaps:
    """Attention maps over the engine's model, run on the engine's own worker threads.

    ``decode_pool`` is the engine's single decoding thread: a standalone map runs there, between batches,
    so it never races a ``generate`` call.
    """

    def __init__(self, model: Any, processor: Any, *, max_model_len: int, max_pending: int,
                 prepare_pool: ThreadPoolExecutor, decode_pool: ThreadPoolExecutor) -> None:
        self.model = model
        self.processor = processor
        self.max_model_len = max_model_len
        self.max_pending = max_pending  # standalone maps waiting at once before 503s
        self.num_layers: int = model.config.get_text_config().num_hidden_layers
        self._prepare_pool = prepare_pool
        self._decode_pool = decode_pool
        self._pending = 0

    def check_layers(self, layers: LayerSpec) -> list[int]:
        """The layers a request asks for, or the client error saying why it cannot have them."""
        if not capture.uses_capture(self.model):
            raise InvalidRequestError("attention maps need the model loaded with zwz's capture attention",
                                      param="zwz_attention")
        try:
            return resolve_layers(layers, self.num_layers)
        except ValueError as exc:
            raise InvalidRequestError(str(exc), param="layer", code="layer_out_of_range") from None

    async def analyze(self, image: Image.Image, question: str, *, layers: LayerSpec = None, method: Method = "fast",
                      min_pixels: int | None = None, max_pixels: int | None = None) -> RelativeAttention:
        """The relative-attention map of ``question`` over ``image`` (no answer generated)."""
        selected = self.check_layers(layers)
        if method not in ("fast", "reference"):
            raise InvalidRequestError(f"unknown method {method!r}: use 'fast' or 'reference'", param="method")
        if self._pending >= self.max_pending:
            raise EngineOverloadedError("the server is at capacity; retry later", code="queue_full")
        loop = asyncio.get_running_loop()
        self._pending += 1
        try:
            pair = await loop.run_in_executor(self._prepare_pool, self._build_pair, image, question, min_pixels,
                                              max_pixels)
            return await loop.run_in_executor(
                self._decode_pool, lambda: relative_attention(self.model, self.processor, pair, layers=selected,
                                                              method=method))
        finally:
            self._pending -= 1

    def _build_pair(self, image: Image.Image, question: str, min_pixels: int | None,
                    max_pixels: int | None) -> PromptPair:
        if min_pixels is not None or max_pixels is not None:
            pixel_budget(self.processor.image_processor, min_pixels, max_pixels)  # validates
        pair = build_pair(self.processor, image, question, min_pixels=min_pixels, max_pixels=max_pixels)
        if pair.question_len >= self.max_model_len:
            raise InvalidRequestError(f"the prompt has {pair.question_len} tokens, over this model's context of "
                                      f"{self.max_model_len}", param="image", code="context_length_exceeded")
        return pair

    @staticmethod
    def recording(layers: list[int]) -> AbstractContextManager[capture.CaptureStore]:
        """Capture the queries/keys of ``layers`` during the ``generate`` call run inside it.

        Only when asked: a capture keeps the prefill's keys/values alive during decoding.
        """
        return capture.capture(set(layers))

    def from_answer_prefill(self, inputs: dict[str, torch.Tensor], store: capture.CaptureStore,
                            layers: list[int]) -> RelativeAttention:
        """The map of an answered prompt: its ``generate`` prefill was the question's; add the generic suffix."""
        pair = pair_from_inputs(inputs, self.processor)
        return from_question_capture(self.model, pair, store, layers)
