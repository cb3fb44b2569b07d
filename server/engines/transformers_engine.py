"""The embedded engine: transformers on CPU or GPU, with requests that arrive together decoded as a batch.

Requests are prepared (chat template, image preprocessing) in a thread pool as they arrive, then wait in
a bounded queue. One decoding thread takes everything waiting (up to ``max_batch_size``), left-pads it
into one batch and runs a single ``generate`` with per-row sampling and stopping (``decoding.py``).
Requests that arrive while a batch runs form the next batch. A request's own set-up (its sampling settings and
random stream) happens when it arrives, so what is wrong with it fails it alone; and should a batch still
fail, its unfinished rows run again one by one, each going on from the tokens it already has, so only the
row at fault fails. Attention maps (``attention_maps``) live in
``transformers_attention.py``; the prompt is built by ``conversation.py``, shared with the vLLM engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zwz.analytics.attention import capture
from zwz.analytics.attention.relative_attention import RelativeAttention
from zwz.server.engines.base import (
    AttentionOptions,
    ClosingStream,
    EngineInfo,
    EngineOverloadedError,
    GenerationChunk,
    GenerationRequest,
    InvalidRequestError,
    SamplingParams,
)
from zwz.server.engines.batch_log import BatchLog
from zwz.server.engines.conversation import render_prompt
from zwz.server.engines.decoding import ReplayPrefix, RowSampler, RowState, RowTracker, row_generator
from zwz.server.engines.model_loading import load_model
from zwz.server.engines.request_policy import RowSettings, check_context, pixel_budget, row_settings
from zwz.server.engines.transformers_attention import TransformersAttentionMaps

logger = logging.getLogger(__name__)

# Keys the Qwen-VL processors return that are per text position (padded) vs per image (concatenated).
_TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")
_IMAGE_KEYS = ("pixel_values", "image_grid_thw")


@dataclass
class EngineSettings:
    max_batch_size: int = 8
    max_queue: int = 64
    # Extra wait for more requests before a batch starts; 0 takes just what is already waiting.
    batch_wait_ms: float = 0.0
    max_model_len: int | None = None
    default_max_tokens: int = 512
    device: str = "auto"
    dtype: str = "auto"
    # None: sdpa with query/key capture in the LLM (same speed as sdpa; enables attention maps).
    attn_implementation: Any = None


@dataclass
class PreparedPrompt:
    inputs: dict[str, torch.Tensor]
    prompt_tokens: int
    visual_tokens: int


@dataclass
class _Job:
    prepared: PreparedPrompt
    settings: RowSettings
    loop: asyncio.AbstractEventLoop
    attention: AttentionOptions | None = None
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    state: RowState = field(init=False)
    stream: bool = True
    cancelled: bool = False
    first_token_at: float | None = None
    pending_text: list[str] = field(default_factory=list)  # held until the end when not streaming
    hold_final: bool = False  # keep the last chunk until the attention map is attached
    held: GenerationChunk | None = None

    def cancel(self) -> None:
        """Stop decoding this row (its consumer went away or finished; a no-op on a finished row)."""
        self.cancelled = True
        self.state.cancelled = True

    async def close(self) -> None:
        self.cancel()

    def send(self, chunk: GenerationChunk) -> None:
        if self.hold_final and chunk.finish_reason is not None:
            self.held = chunk
            return
        self.loop.call_soon_threadsafe(self.queue.put_nowait, chunk)

    def fail(self, exc: BaseException) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, exc)

    def release_final(self, attention: RelativeAttention | None) -> None:
        if self.held is not None:
            self.held.attention = attention
            self.loop.call_soon_threadsafe(self.queue.put_nowait, self.held)
            self.held = None


def _row_done(text: str, token_ids: list[int], finish_reason) -> None:
    """The emitter of a row whose batch has finished: nothing is left to send."""


class TransformersEngine:
    """Engine backed by a transformers model in this process."""

    def __init__(self, model_dir: str | Path, settings: EngineSettings | None = None, *, random_weights: bool = False):
        self.settings = settings or EngineSettings()
        loaded = load_model(
            model_dir,
            device=self.settings.device,
            dtype=self.settings.dtype,
            attn_implementation=self.settings.attn_implementation or capture.attn_implementation(),
        )
        self.model = loaded.model
        self.processor = loaded.processor
        self.tokenizer = loaded.processor.tokenizer
        self.device = loaded.device
        max_len = self.settings.max_model_len or loaded.max_position_embeddings
        self.info = EngineInfo(
            model_dir=str(model_dir),
            engine="transformers",
            family=loaded.family,
            max_model_len=max_len,
            device=loaded.device,
            dtype=str(loaded.dtype).removeprefix("torch."),
            random_weights=random_weights,
        )
        gen_cfg = self.model.generation_config
        eos = gen_cfg.eos_token_id if gen_cfg.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.merge_size: int = self.processor.image_processor.merge_size
        self._defaults = gen_cfg
        self._queue: asyncio.Queue[_Job] | None = None
        self._scheduler: asyncio.Task | None = None
        self._decode_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zwz-decode")
        self._prepare_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="zwz-prepare")
        # Observers (e.g. metrics) called with the size of every batch that starts.
        self.batch_listeners: list[Callable[[int], None]] = []
        self.batch_sizes = BatchLog()  # the newest sizes (tests read them), bounded
        self.cancelled_rows = 0  # rows whose client left before the answer was complete
        self.attention_maps = TransformersAttentionMaps(
            self.model, self.processor, max_model_len=max_len, max_pending=self.settings.max_queue,
            prepare_pool=self._prepare_pool, decode_pool=self._decode_pool)

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._scheduler is None:
            self._queue = asyncio.Queue(maxsize=self.settings.max_queue)
            self._scheduler = asyncio.create_task(self._schedule(), name="zwz-batch-scheduler")

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            try:
                await self._scheduler
            except asyncio.CancelledError:
                pass
            self._scheduler = None
        self._decode_pool.shutdown(wait=True, cancel_futures=True)
        self._prepare_pool.shutdown(wait=False, cancel_futures=True)

    @property
    def queue_depth(self) -> int:
        """Requests prepared and waiting for a batch."""
        return self._queue.qsize() if self._queue is not None else 0

    # -- requests --------------------------------------------------------------------------------------
    async def submit(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if self._queue is None:
            raise RuntimeError("engine not started")
        if self._queue.full():  # refuse before spending time on preprocessing
            raise EngineOverloadedError("the server is at capacity; retry later", code="queue_full")
        if request.attention is not None:
            self.attention_maps.check_layers(request.attention.layers)
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(self._prepare_pool, self.prepare, request)
        if request.attention is not None and "image_grid_thw" not in prepared.inputs:
            raise InvalidRequestError("an attention map needs an image in the prompt", param="zwz_attention")
        settings = self._row_settings(request.sampling, prepared.prompt_tokens)
        job = _Job(prepared=prepared, settings=settings, loop=loop, stream=request.stream, attention=request.attention)
        # The row's set-up, here and not in the batch: what fails in it fails this request alone.
        job.state = RowState(settings=settings, emit=self._emitter(job),
                             generator=row_generator(settings, torch.device(self.device)))
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise EngineOverloadedError("the server is at capacity; retry later", code="queue_full") from None
        return ClosingStream(self._stream(job), job.close)

    @staticmethod
    async def _stream(job: _Job) -> AsyncGenerator[GenerationChunk, None]:
        try:
            while True:
                item = await job.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            job.cancel()  # read to its end or dropped mid-way (ClosingStream covers the unread case)

    def prepare(self, request: GenerationRequest) -> PreparedPrompt:
        """Chat template + tokenization + image preprocessing for one request (runs in a worker thread)."""
        text, images = render_prompt(self.processor, request)
        kwargs: dict[str, Any] = {}
        if request.min_pixels is not None or request.max_pixels is not None:
            kwargs["size"] = pixel_budget(self.processor.image_processor, request.min_pixels, request.max_pixels)
        inputs = self.processor(text=[text], images=images or None, return_tensors="pt", **kwargs)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        visual_tokens = 0
        if "image_grid_thw" in inputs:
            visual_tokens = int(inputs["image_grid_thw"].prod(dim=-1).sum()) // self.merge_size**2
        check_context(prompt_tokens, visual_tokens, request.sampling.max_tokens, self.info.max_model_len)
        return PreparedPrompt(inputs=dict(inputs), prompt_tokens=prompt_tokens, visual_tokens=visual_tokens)

    def _row_settings(self, sampling: SamplingParams, prompt_tokens: int) -> RowSettings:
        return row_settings(sampling, self._defaults, prompt_tokens=prompt_tokens,
                            max_model_len=self.info.max_model_len, default_max_tokens=self.settings.default_max_tokens)

    # -- batching --------------------------------------------------------------------------------------
    async def _schedule(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            await asyncio.sleep(self.settings.batch_wait_ms / 1000)  # let requests sent together arrive
            batch = [first]
            while len(batch) < self.settings.max_batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self.cancelled_rows += sum(job.cancelled for job in batch)  # left while queued: never decoded
            batch = [job for job in batch if not job.cancelled]
            # A job that wants an attention map captures its prefill, so it runs in a batch of its own.
            plain = [job for job in batch if job.attention is None]
            groups = ([plain] if plain else []) + [[job] for job in batch if job.attention is not None]
            for group in groups:
                await self._run_group(loop, group)
                for job in group:  # done decoding: break job -> state -> emitter -> job, so the job and its
                    job.state.emit = _row_done  # image tensors go with its stream, not at a full gc (issue 11)
            # Nor keep the last batch alive while waiting for the next one.
            first = batch = plain = groups = group = job = None  # type: ignore[assignment]

    async def _run_group(self, loop: asyncio.AbstractEventLoop, batch: list[_Job]) -> None:
        self.batch_sizes.append(len(batch))
        for listener in self.batch_listeners:
            listener(len(batch))
        try:
            await loop.run_in_executor(self._decode_pool, self._run_batch, batch)
        except Exception as exc:  # a failed batch fails only the rows at fault, never the scheduler
            if len(batch) == 1:
                logger.exception("a request failed while decoding")
                batch[0].fail(exc)
                return
            logger.exception("batch of %d failed; its unfinished rows run again one by one", len(batch))
            for job in batch:
                if job.state.finish_reason is not None:
                    continue  # answered in full before the failure
                if job.cancelled:  # its client left: nothing to run again for
                    job.state.finish_reason = "cancelled"
                    self.cancelled_rows += 1
                    continue
                job.state.restart()
                await self._run_group(loop, [job])

    def _run_batch(self, batch: list[_Job]) -> None:
        inputs = self._collate([job.prepared for job in batch])
        states = [job.state for job in batch]
        tracker = RowTracker(states, self._decode, self.eos_ids)
        sampler = RowSampler([job.settings for job in batch], device=torch.device(self.device),
                             generators=[state.generator for state in states])
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        config = GenerationConfig(
            max_new_tokens=max(job.settings.max_tokens for job in batch),
            do_sample=False,  # RowSampler does the sampling per row
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
        )
        mapped = batch[0] if batch[0].attention is not None else None
        if mapped is not None:
            layers = self.attention_maps.check_layers(mapped.attention.layers)
            mapped.hold_final = True  # the last chunk leaves with the map
        maps = self.attention_maps
        recording = maps.recording(layers) if mapped is not None else contextlib.nullcontext()
        with torch.inference_mode(), recording as store:
            self.model.generate(
                **inputs,
                generation_config=config,
                logits_processor=LogitsProcessorList([sampler, ReplayPrefix(states)]),
                stopping_criteria=StoppingCriteriaList([tracker]),
            )
        tracker.finish_all()
        self.cancelled_rows += sum(state.finish_reason == "cancelled" for state in states)
        if mapped is not None:
            result = None
            if mapped.state.finish_reason != "cancelled":
                result = maps.from_answer_prefill(mapped.prepared.inputs, store, layers)
            mapped.release_final(result)

    def _collate(self, prompts: list[PreparedPrompt]) -> dict[str, torch.Tensor]:
        """Left-pad the text tensors to one length; concatenate the image tensors in row order."""
        longest = max(p.prompt_tokens for p in prompts)
        out: dict[str, torch.Tensor] = {}
        for key in _TEXT_KEYS:
            if key not in prompts[0].inputs:
                continue
            fill = self.pad_id if key == "input_ids" else 0
            rows = []
            for p in prompts:
                t = p.inputs[key]  # (1, S)
                pad = torch.full((1, longest - t.shape[1]), fill, dtype=t.dtype)
                rows.append(torch.cat([pad, t], dim=1))
            out[key] = torch.cat(rows, dim=0).to(self.device)  # (B, S_max)
        for key in _IMAGE_KEYS:
            parts = [p.inputs[key] for p in prompts if key in p.inputs]
            if parts:
                tensor = torch.cat(parts, dim=0).to(self.device)
                out[key] = tensor.to(self.model.dtype) if key == "pixel_values" else tensor
        return out

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def _emitter(self, job: _Job):
        prepared = job.prepared

        def emit(text: str, token_ids: list[int], finish_reason) -> None:
            if job.first_token_at is None:
                job.first_token_at = time.perf_counter()
            if not job.stream and finish_reason is None:
                job.pending_text.append(text)  # waking the event loop per token costs more than it gives
                return
            if job.pending_text:
                text = "".join(job.pending_text) + text
                job.pending_text.clear()
            state = job.state
            chunk = GenerationChunk(
                text=text,
                token_ids=token_ids,
                finish_reason=finish_reason,
                prompt_tokens=prepared.prompt_tokens,
                completion_tokens=state.generated if state else 0,
                visual_tokens=prepared.visual_tokens,
                first_token_at=job.first_token_at,
            )
            job.send(chunk)

        return emit

