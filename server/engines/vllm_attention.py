"""The vLLM engine's attention maps (its ``Engine.attention_maps``): captured inside vLLM's workers.

A map (paper App. 12) needs the question's last-position query and prompt keys, and the same for the
generic instruction, whose prompt shares everything up to the image's end. Here both are ordinary vLLM
requests, batched with everything else:

- the question is the answer's own request (chat ``zwz_attention``) or a one-token request (``analyze``),
  armed with a :class:`~zwz.server.engines.vllm_attention_worker.CaptureSpec` and
  ``skip_reading_prefix_cache`` so that all its prompt keys are computed (and captured) in this request;
- the generic prompt (prefix + generic instruction + the prompt's closing tokens, one token) reads vLLM's
  prefix cache, so only its uncached tail is computed; the worker keeps its keys from the prefix end on;
- ``collective_rpc("zwz_attention_map")`` then runs the kernel in each worker and returns head-summed
  ``(L, 2, T)`` probabilities per rank, added up here (tensor parallelism: each rank holds some heads).

The engine must be built with ``worker_extension_cls=WORKER_EXTENSION`` (``vllm_setup.engine_args`` does it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from zwz.analytics.attention.relative_attention import (
    LayerSpec,
    Method,
    PromptPair,
    RelativeAttention,
    from_span_attention,
    pair_from_inputs,
    resolve_layers,
)
from zwz.server.engines.base import (
    ChatMessage,
    EngineError,
    EngineOverloadedError,
    GenerationRequest,
    InvalidRequestError,
)
from zwz.server.engines.vllm_attention_worker import WORKER_EXTENSION, CaptureSpec

logger = logging.getLogger(__name__)

__all__ = ["WORKER_EXTENSION", "AnswerMap", "AttentionCaptureError", "MapPlan", "VllmAttentionMaps"]


class AttentionCaptureError(EngineError):
    """The workers could not capture what a map needs (e.g. a step ran as a CUDA graph): no map, never a wrong one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="zwz_attention", code="attention_capture_failed")


@dataclass
class MapPlan:
    """One map's two requests: the question (the caller's request, armed) and the generic instruction."""

    map_id: str
    layers: list[int]
    pair: PromptPair  # prefix length, image span and grid of the question prompt's last image
    question: CaptureSpec
    generic: CaptureSpec
    generic_input: Any  # vLLM engine input: the question's, with the generic prompt's token ids


def image_grid_thw(image_processor: Any, image: Image.Image, size: dict[str, int] | None = None) -> list[int]:
    """The (t, h, w) patch grid Qwen-VL's image processor gives ``image`` under the pixel budget ``size``.

    Computed here because vLLM's renderer leaves out the processed data of an image its cache already holds.
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    size = size or image_processor.size
    patch = image_processor.patch_size
    height, width = smart_resize(image.height, image.width, factor=patch * image_processor.merge_size,
                                 min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"])
    return [1, height // patch, width // patch]


def engine_input_pair(engine_input: Any, processor: Any, image: Image.Image | None,
                      size: dict[str, int] | None = None) -> PromptPair:
    """The question/generic prompt pair of a rendered vLLM engine input; ``image`` is its last image."""
    if image is None:
        raise ValueError("the prompt has no image to map")
    ids = torch.tensor(engine_input["prompt_token_ids"])[None]
    grid = torch.tensor([image_grid_thw(processor.image_processor, image, size)])
    return pair_from_inputs({"input_ids": ids, "image_grid_thw": grid}, processor)


def combine_ranks(results: list[dict[str, Any]], layers: list[int], span_len: int) -> torch.Tensor:
    """(L, 2, T) head-averaged probabilities from the workers' head sums.

    Tensor parallelism splits a layer's heads over ranks (add their sums and head counts); pipeline
    parallelism splits the layers (each rank answers for its own).

    >>> half = {"layers": [0], "head_sums": [[[1.0, 0.0], [0.5, 0.5]]], "num_heads": 2}
    >>> combine_ranks([half, half], [0], 2).tolist()
    [[[0.5, 0.0], [0.25, 0.25]]]
    """
    errors = [rank["error"] for rank in results if "error" in rank]
    if errors:
        raise AttentionCaptureError(errors[0])
    sums = {layer: np.zeros((2, span_len), np.float64) for layer in layers}
    heads = dict.fromkeys(layers, 0)
    for rank in results:
        for i, layer in enumerate(rank["layers"]):
            sums[layer] += np.asarray(rank["head_sums"][i], dtype=np.float64)
            heads[layer] += rank["num_heads"]
    missing = [layer for layer in layers if heads[layer] == 0]
    if missing:
        raise AttentionCaptureError(f"no worker returned layers {missing}")
    return torch.from_numpy(np.stack([sums[layer] / heads[layer] for layer in layers])).float()


class VllmAttentionMaps:
    """Relative-attention maps over a running ``AsyncLLM`` whose workers carry the capture extension.

    ``render`` is the engine's own prompt rendering (chat template, image preprocessing, context checks), so a
    standalone map's prompt is exactly the prompt a chat request with the same image and question gets.
    """

    def __init__(self, llm: Any, processor: Any, *, num_layers: int, max_pending: int = 16,
                 render: Callable[[GenerationRequest], Awaitable[Any]]) -> None:
        self.llm = llm
        self.processor = processor
        self.num_layers = num_layers
        self.max_pending = max_pending  # standalone maps at once before 503s
        self._render = render
        self._ids = itertools.count()
        self._pending = 0
        self.layout: list[dict[str, Any]] = []  # per worker: its layers and heads (from install)

    async def install(self) -> None:
        """Hook the workers' model runners (once, after the engine started)."""
        self.layout = await self.llm.collective_rpc("zwz_attention_install")
        covered = sorted({layer for rank in self.layout for layer in rank["layers"]})
        if covered != list(range(self.num_layers)):
            raise RuntimeError(f"vLLM's workers hold attention layers {covered}, expected 0..{self.num_layers - 1}")

    # -- validation and arming -------------------------------------------------------------------------
    def check_layers(self, layers: LayerSpec) -> list[int]:
        """The layers a request asks for, or the client error saying why it cannot have them."""
        try:
            return resolve_layers(layers, self.num_layers)
        except ValueError as exc:
            raise InvalidRequestError(str(exc), param="layer", code="layer_out_of_range") from None

    def plan(self, engine_input: Any, layers: list[int], image: Image.Image | None,
             size: dict[str, int] | None = None) -> MapPlan:
        """Plan the map of a rendered prompt whose last image is ``image`` (None: the client's error)."""
        if image is None:
            raise InvalidRequestError("an attention map needs an image in the prompt", param="zwz_attention")
        try:
            pair = engine_input_pair(engine_input, self.processor, image, size)
        except ValueError as exc:  # e.g. the last image is not followed by the end of its user turn
            raise InvalidRequestError(f"cannot map this prompt's last image: {exc}", param="zwz_attention") from None
        map_id = f"zwz-map-{next(self._ids)}"
        generic_ids = pair.generic_ids[0].tolist()
        generic_input = dict(engine_input)
        generic_input["prompt_token_ids"] = generic_ids
        generic_input.pop("prompt", None)  # the text is the question's; vLLM only needs the token ids
        # Images all lie in the shared prefix, so their placeholders and hashes (the prefix-cache keys) hold.
        return MapPlan(
            map_id=map_id, layers=layers, pair=pair, generic_input=generic_input,
            question=CaptureSpec(map_id, "question", tuple(layers), pair.question_len, 0),
            generic=CaptureSpec(map_id, "generic", tuple(layers), len(generic_ids), pair.prefix_len),
        )

    @staticmethod
    def arm(params: Any, plan: MapPlan) -> Any:
        """Make ``params`` (the question request's vLLM SamplingParams) capture for ``plan``."""
        params.extra_args = {**(params.extra_args or {}), **plan.question.to_extra_args()}
        # All the question's prompt keys must be computed in this request to be captured.
        params.skip_reading_prefix_cache = True
        return params

    # -- running ---------------------------------------------------------------------------------------
    def start(self, plan: MapPlan) -> AnswerMap:
        """Start the generic request of an armed answer now; the map is made once the answer's prefill is done."""
        return AnswerMap(self, plan)

    async def run_generic(self, plan: MapPlan) -> float:
        """Prefill the generic prompt (one token); return how long it took in ms."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(max_tokens=1, temperature=0.0, extra_args=plan.generic.to_extra_args(),
                                output_kind=RequestOutputKind.FINAL_ONLY)
        t0 = time.perf_counter()
        last = None
        async for last in self.llm.generate(plan.generic_input, params, f"{plan.map_id}-generic"):
            pass
        reason = last.outputs[0].finish_reason if last is not None and last.outputs else None
        if reason not in ("length", "stop"):
            raise AttentionCaptureError(f"attention map {plan.map_id}: the generic prompt's request ended with "
                                        f"{reason!r}")
        return (time.perf_counter() - t0) * 1e3

    async def collect(self, plan: MapPlan, timings: dict[str, float]) -> RelativeAttention:
        """Compute the map in the workers (both prefills done) and add up their heads."""
        pair = plan.pair
        start, end = pair.image_span
        t0 = time.perf_counter()
        results = await self.llm.collective_rpc("zwz_attention_map",
                                                args=(plan.map_id, pair.prefix_len, start, end))
        timings["map"] = (time.perf_counter() - t0) * 1e3
        probs = combine_ranks(results, plan.layers, end - start)  # (L, 2, T)
        return from_span_attention(pair, plan.layers, probs[:, 0], probs[:, 1], timings=timings)

    async def drop(self, plan: MapPlan) -> None:
        """Free a map's captures in the workers (its request failed or was cancelled)."""
        await self.llm.collective_rpc("zwz_attention_drop", args=(plan.map_id,))

    async def analyze(self, image: Image.Image, question: str, *, layers: LayerSpec = None, method: Method = "fast",
                      min_pixels: int | None = None, max_pixels: int | None = None) -> RelativeAttention:
        """The relative-attention map of ``question`` over ``image`` (a one-token answer is generated and dropped)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        selected = self.check_layers(layers)
        if method == "reference":
            raise InvalidRequestError("the reference method (eager attention over every layer) needs the "
                                      "transformers engine; use method 'fast'", param="method", code="not_supported")
        if method != "fast":
            raise InvalidRequestError(f"unknown method {method!r}: use 'fast' or 'reference'", param="method")
        if self._pending >= self.max_pending:
            raise EngineOverloadedError("the server is at capacity; retry later", code="queue_full")
        self._pending += 1
        try:
            request = GenerationRequest(messages=[ChatMessage("user", [image, question])], min_pixels=min_pixels,
                                        max_pixels=max_pixels, stream=False)
            rendered = await self._render(request)
            plan = self.plan(rendered.engine_input, selected, image, rendered.size)
            params = self.arm(SamplingParams(max_tokens=1, temperature=0.0,
                                             output_kind=RequestOutputKind.FINAL_ONLY), plan)
            answer = self.start(plan)
            t0 = time.perf_counter()
            try:
                async for _ in self.llm.generate(rendered.engine_input, params, f"{plan.map_id}-question"):
                    pass
            except BaseException:
                await answer.cancel()
                raise
            answer.timings["prefill"] = (time.perf_counter() - t0) * 1e3
            answer.prefill_done()
            return await answer.result()
        finally:
            self._pending -= 1


class AnswerMap:
    """The map of one armed question request: its generic request runs at once, beside the question."""

    def __init__(self, maps: VllmAttentionMaps, plan: MapPlan) -> None:
        self.maps = maps
        self.plan = plan
        self.timings: dict[str, float] = {}
        self._prefilled = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    def prefill_done(self) -> None:
        """The question's prompt is fully computed (its first output arrived)."""
        self._prefilled.set()

    async def _run(self) -> RelativeAttention:
        try:
            self.timings["generic_suffix"] = await self.maps.run_generic(self.plan)
            await self._prefilled.wait()
            return await self.maps.collect(self.plan, self.timings)
        except BaseException:
            await asyncio.shield(self.maps.drop(self.plan))
            raise

    async def result(self) -> RelativeAttention:
        return await self._task

    async def cancel(self) -> None:
        """The question request ended without a prefill (error, client gone): free what was captured."""
        if not self._task.done():
            self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            logger.debug("attention map %s abandoned", self.plan.map_id)
        except Exception as exc:  # noqa: BLE001 - nobody waits for this map any more; say why it failed
            logger.warning("abandoned attention map %s failed: %s", self.plan.map_id, exc)
