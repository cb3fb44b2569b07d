"""The vLLM engine: vLLM's async engine (``AsyncLLM``) embedded in the zwz server process.

A request's prompt is built exactly as the transformers engine builds it (``conversation.render_prompt``:
the model processor's chat template over the same conversation), rendered by vLLM's own renderer
(tokenization, and image preprocessing with the request's pixel budget as ``mm_processor_kwargs``), checked
against the context by the same rules (``request_policy``), then generated with its own sampling settings;
vLLM batches running requests continuously and reuses cached prefixes. Streaming requests read vLLM's delta
outputs, others one final output. Closing a chunk stream early aborts its vLLM request. Attention maps are captured inside
vLLM's workers (``vllm_attention.py``): a mapped request is the map's question, armed through its sampling
parameters, and its map arrives on its last chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zwz.server.engines.base import (
    EngineInfo,
    EngineOverloadedError,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    InvalidRequestError,
)
from zwz.server.engines.batch_log import BatchLog
from zwz.server.engines.conversation import render_prompt
from zwz.server.engines.model_loading import detect_family
from zwz.server.engines.request_policy import check_context, pixel_budget, row_settings
from zwz.server.engines.vllm_attention import AnswerMap, VllmAttentionMaps
from zwz.server.engines.vllm_setup import VllmSettings, apply_cpu_environment, engine_args, on_cpu_platform

_FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length", "abort": "cancelled"}


@dataclass
class _Rendered:
    engine_input: Any  # vLLM's EngineInput: expanded prompt token ids plus processed images
    prompt_tokens: int
    visual_tokens: int
    images: list[Any] = dataclasses.field(default_factory=list)  # the decoded images, in prompt order
    size: dict[str, int] | None = None  # the request's pixel budget (the processor's ``size``), if it set one


class VllmEngine:
    """Engine backed by vLLM's ``AsyncLLM`` (its engine core runs in worker processes it starts)."""

    # Attention maps, captured inside vLLM's workers (vllm_attention.py).
    attention_maps: VllmAttentionMaps

    def __init__(self, model_dir: str | Path, settings: VllmSettings | None = None, *,
                 random_weights: bool = False) -> None:
        from zwz import compat

        compat.install()  # before vLLM starts processes: they inherit the hook through PYTHONPATH
        from transformers import AutoProcessor, GenerationConfig
        from vllm.usage.usage_lib import UsageContext

        self.settings = settings or VllmSettings()
        family = detect_family(model_dir)
        cpu = on_cpu_platform()
        if cpu:
            apply_cpu_environment()
        self._vllm_config = engine_args(model_dir, self.settings, cpu=cpu).create_engine_config(
            UsageContext.OPENAI_API_SERVER)
        model_config = self._vllm_config.model_config
        self.processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
        try:
            self._defaults = GenerationConfig.from_pretrained(model_dir, local_files_only=True)
        except OSError:  # no generation_config.json: transformers' defaults (greedy)
            self._defaults = GenerationConfig()
        self.image_token_id: int = model_config.hf_config.image_token_id
        self.max_num_seqs: int = self._vllm_config.scheduler_config.max_num_seqs
        self.info = EngineInfo(
            model_dir=str(model_dir),
            engine="vllm",
            family=family,
            max_model_len=model_config.max_model_len,
            device="cpu" if cpu else "cuda",
            dtype=str(model_config.dtype).removeprefix("torch."),
            random_weights=random_weights,
        )
        text_config = model_config.hf_config.get_text_config()
        self.attention_maps = VllmAttentionMaps(None, self.processor, num_layers=text_config.num_hidden_layers,
                                                render=self._render)
        self._llm: Any = None
        self._tok_params: Any = None
        self._request_ids = itertools.count()
        self._in_flight = 0  # admitted and not finished: running, waiting in vLLM, or being rendered
        self._running = 0  # running in vLLM's last step
        # Observers (e.g. metrics) called with the number of requests that started decoding together.
        self.batch_listeners: list[Callable[[int], None]] = []
        self.batch_sizes = BatchLog()  # the newest sizes (tests read them), bounded
        self.cancelled_rows = 0  # requests whose client left before the answer was complete

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start vLLM's engine core (loads the weights, profiles memory: seconds to minutes)."""
        if self._llm is not None:
            return
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        from zwz.server.engines.vllm_stats import StepStatsLogger

        stats = functools.partial(StepStatsLogger, on_batch=self._on_batch, on_running=self._on_running)
        self._llm = AsyncLLM.from_vllm_config(self._vllm_config, usage_context=UsageContext.OPENAI_API_SERVER,
                                              stat_loggers=[stats], disable_log_stats=False)
        # zwz checks the context itself after the images are expanded, with the transformers engine's errors.
        self._tok_params = dataclasses.replace(self._llm.renderer.default_cmpl_tok_params, max_total_tokens=None)
        self.attention_maps.llm = self._llm
        await self.attention_maps.install()  # hooks the workers' model runners; idle until a map is asked for

    async def stop(self) -> None:
        if self._llm is not None:
            from vllm.v1.metrics.prometheus import unregister_vllm_metrics

            llm, self._llm = self._llm, None
            llm.shutdown()
            unregister_vllm_metrics()  # no stale vllm:* series in /metrics once this engine is gone

    @property
    def queue_depth(self) -> int:
        """Requests admitted but not running yet."""
        return max(0, self._in_flight - self._running)

    def _on_batch(self, size: int) -> None:
        self.batch_sizes.append(size)
        for listener in self.batch_listeners:
            listener(size)

    def _on_running(self, running: int) -> None:
        self._running = running

    # -- requests --------------------------------------------------------------------------------------
    async def submit(self, request: GenerationRequest) -> _RequestStream:
        if self._llm is None:
            raise RuntimeError("engine not started")
        layers = None if request.attention is None else self.attention_maps.check_layers(request.attention.layers)
        # Running slots plus the waiting room; beyond that, refuse before spending time on preprocessing.
        if self._in_flight >= self.max_num_seqs + self.settings.max_queue:
            raise EngineOverloadedError("the server is at capacity; retry later", code="queue_full")
        self._in_flight += 1
        release = _Once(self._release)
        answer_map: AnswerMap | None = None
        try:
            for attempt in range(2):
                rendered = await self._render(request)
                params = self._sampling_params(request, rendered.prompt_tokens)
                if layers is not None:  # this request is the map's question: its prefill is captured
                    last_image = rendered.images[-1] if rendered.images else None
                    plan = self.attention_maps.plan(rendered.engine_input, layers, last_image, rendered.size)
                    params = self.attention_maps.arm(params, plan)
                outputs = self._llm.generate(rendered.engine_input, params, f"zwz-{next(self._request_ids)}")
                if layers is not None:
                    answer_map = self.attention_maps.start(plan)  # the generic prompt's prefill, beside it
                # The first output comes after vLLM validated and scheduled the request: its errors are still
                # plain client errors here, and streaming starts with a token, as vLLM's own server does.
                first = await _vllm_call(outputs.__anext__())
                if attempt or not _image_cache_drift(first):
                    break
                # vLLM's renderer thought the engine held an image it never received (an earlier request was
                # refused after rendering); vLLM dropped the stale entries, so render again, with the data.
                if answer_map is not None:
                    await answer_map.cancel()
                    answer_map = None
            if answer_map is not None:
                answer_map.prefill_done()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):  # the client left before the first token
                self.cancelled_rows += 1
            if answer_map is not None:
                await answer_map.cancel()
            release()
            raise
        return _RequestStream(self, outputs, first, rendered, delta=request.stream, release=release,
                              attention=answer_map)

    def _release(self) -> None:
        self._in_flight -= 1

    async def _render(self, request: GenerationRequest) -> _Rendered:
        text, images = render_prompt(self.processor, request)
        prompt: dict[str, Any] = {"prompt": text}
        size = None
        if images:
            prompt["multi_modal_data"] = {"image": images}
            if request.min_pixels is not None or request.max_pixels is not None:
                size = pixel_budget(self.processor.image_processor, request.min_pixels, request.max_pixels)
                prompt["mm_processor_kwargs"] = {"size": size}
        (engine_input,) = await _vllm_call(self._llm.renderer.render_cmpl_async([prompt], self._tok_params))
        token_ids = engine_input["prompt_token_ids"]
        visual_tokens = sum(1 for t in token_ids if t == self.image_token_id)
        check_context(len(token_ids), visual_tokens, request.sampling.max_tokens, self.info.max_model_len)
        return _Rendered(engine_input=engine_input, prompt_tokens=len(token_ids), visual_tokens=visual_tokens,
                         images=images, size=size)

    def _sampling_params(self, request: GenerationRequest, prompt_tokens: int) -> Any:
        import msgspec
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        row = row_settings(request.sampling, self._defaults, prompt_tokens=prompt_tokens,
                           max_model_len=self.info.max_model_len, default_max_tokens=self.settings.default_max_tokens)
        # vLLM checks its parameters here, in this process: a bad one fails this request, never vLLM's engine
        # core (where an error would end every running request).
        with _client_errors():
            params = SamplingParams(
                max_tokens=row.max_tokens,
                temperature=row.temperature,
                top_p=row.top_p,
                top_k=row.top_k,
                seed=row.seed,
                stop=list(row.stop) or None,
                # Not streaming: one output at the end instead of one per token.
                output_kind=RequestOutputKind.DELTA if request.stream else RequestOutputKind.FINAL_ONLY,
            )
            # The engine core decodes them with msgspec; what it cannot decode is dropped there and its client
            # waits for ever. The same round trip here (a few microseconds) refuses such a request first.
            msgspec.msgpack.decode(msgspec.msgpack.encode(params), type=SamplingParams)
        return params


def _image_cache_drift(out: Any) -> bool:
    """vLLM's retryable "multimodal_cache_miss": the request ended at once, before any token."""
    completion = out.outputs[0] if out.outputs else None
    return bool(out.finished and completion is not None and completion.finish_reason == "error"
                and not completion.token_ids)


@contextlib.contextmanager
def _client_errors():
    """vLLM's client errors (bad input, too many images, bad sampling parameters) as ours."""
    import msgspec
    from vllm.exceptions import VLLMValidationError

    try:
        yield
    except VLLMValidationError as exc:
        raise InvalidRequestError(exc.args[0] if exc.args else str(exc), param=exc.parameter) from None
    except (ValueError, msgspec.MsgspecError) as exc:  # vLLM's input processing: bad prompts and images
        raise InvalidRequestError(str(exc)) from None


async def _vllm_call(awaitable):
    """Await a vLLM call, turning its client errors into ours."""
    with _client_errors():
        return await awaitable


class _Once:
    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn: Callable[[], None] | None = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


class _RequestStream:
    """The chunks of one vLLM request. Frees its admission slot once, however it ends (even unread)."""

    def __init__(self, engine: VllmEngine, outputs: Any, first: Any, rendered: _Rendered, *, delta: bool,
                 release: _Once, attention: AnswerMap | None = None) -> None:
        self._engine = engine
        self._attention = attention  # the map to attach to the last chunk
        self._outputs = outputs
        self._pending = first
        self._rendered = rendered
        self._delta = delta
        self._release = release
        self._completion_tokens = 0
        self._first_token_at: float | None = None
        self._finished = False

    def __aiter__(self) -> _RequestStream:
        return self

    async def __anext__(self) -> GenerationChunk:
        if self._finished:
            self._release()
            raise StopAsyncIteration
        try:
            out = self._pending if self._pending is not None else await self._outputs.__anext__()
        except (asyncio.CancelledError, GeneratorExit):  # the client left while waiting (vLLM aborted it)
            self._end(cancelled=True)
            await self._abandon_map()
            raise
        except BaseException:
            self._end(cancelled=False)
            await self._abandon_map()
            raise
        self._pending = None
        chunk = self._chunk(out)
        if chunk.finish_reason is not None and self._attention is not None:
            if chunk.finish_reason == "cancelled":
                await self._abandon_map()
            else:
                attention, self._attention = self._attention, None
                chunk.attention = await attention.result()
        return chunk

    async def _abandon_map(self) -> None:
        attention, self._attention = self._attention, None
        if attention is not None:
            await attention.cancel()

    async def aclose(self) -> None:
        self._end(cancelled=True)  # a no-op once the answer is complete
        await self._abandon_map()
        await self._outputs.aclose()  # vLLM aborts an unfinished request when its generator closes

    def __del__(self) -> None:
        self._release()

    def _end(self, *, cancelled: bool) -> None:
        if not self._finished:
            self._finished = True
            self._engine.cancelled_rows += cancelled
        self._release()

    def _chunk(self, out: Any) -> GenerationChunk:
        completion = out.outputs[0]
        count = len(completion.token_ids)
        self._completion_tokens = self._completion_tokens + count if self._delta else count
        if self._first_token_at is None and count:
            self._first_token_at = _first_token_time(out)
        reason: FinishReason | None = None
        if out.finished:
            self._end(cancelled=False)
            if completion.finish_reason not in _FINISH_REASONS:
                raise RuntimeError(f"vLLM ended the request with {completion.finish_reason!r}")
            reason = _FINISH_REASONS[completion.finish_reason]
        return GenerationChunk(
            text=completion.text,
            token_ids=list(completion.token_ids),
            finish_reason=reason,
            prompt_tokens=self._rendered.prompt_tokens,
            completion_tokens=self._completion_tokens,
            visual_tokens=self._rendered.visual_tokens,
            first_token_at=self._first_token_at,
        )


def _first_token_time(out: Any) -> float:
    """When the first token was generated, on ``time.perf_counter``'s clock.

    vLLM stamps it with ``time.monotonic`` in its engine process (same machine, same clock); the final-only
    output of a non-streaming request arrives long after it.
    """
    now = time.perf_counter()
    stamp = getattr(out.metrics, "first_token_ts", 0.0) if out.metrics is not None else 0.0
    return now - max(0.0, time.monotonic() - stamp) if stamp else now

