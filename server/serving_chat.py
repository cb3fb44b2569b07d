"""Chat completions: OpenAI request -> engine request -> OpenAI response or SSE stream (no HTTP here)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from PIL import Image

from zwz.server.engine import ChatMessage, Engine, GenerationChunk, GenerationRequest, SamplingParams
from zwz.server.errors import APIError, as_api_error, error_body
from zwz.server.media import MediaPolicy, load_image
from zwz.server.metrics import ServerMetrics
from zwz.server.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    DeltaMessage,
    ImagePart,
    ResponseMessage,
    StreamChoice,
    Usage,
    new_completion_id,
)

logger = logging.getLogger(__name__)

_INLINE_DECODE_CHARS = 256 * 1024  # base64 characters; about a 450 px JPEG


@dataclass
class ChatLimits:
    max_images_per_request: int
    media: MediaPolicy


class ChatService:
    mode = "single"

    def __init__(self, engine: Engine, served_model_names: list[str], limits: ChatLimits, metrics: ServerMetrics):
        self.engine = engine
        self.served_model_names = served_model_names
        self.limits = limits
        self.metrics = metrics

    async def create(self, request: ChatCompletionRequest) -> ChatCompletionResponse | AsyncIterator[str]:
        """Answer ``request``; client errors raise ``APIError`` before anything is sent."""
        started = time.perf_counter()
        self._check_model(request.model)
        self._check_unsupported(request)
        generation = await self._to_generation_request(request)
        chunks = await self.engine.submit(generation)
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            return self._sse(request.model, chunks, started, include_usage)
        return await self._collect(request.model, chunks, started)

    # -- validation --------------------------------------------------------------------------------------
    def _check_model(self, model: str) -> None:
        if model not in self.served_model_names:
            raise APIError(404, f"the model {model!r} does not exist; this server serves "
                                f"{', '.join(self.served_model_names)}", param="model", code="model_not_found")

    @staticmethod
    def _check_unsupported(request: ChatCompletionRequest) -> None:
        if request.n not in (None, 1):
            raise APIError(400, "only n=1 is supported", param="n")
        if request.logprobs:
            raise APIError(400, "logprobs are not supported", param="logprobs")
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(request, name):
                raise APIError(400, f"{name} is not supported", param=name)

    async def _to_generation_request(self, request: ChatCompletionRequest) -> GenerationRequest:
        urls = [part.image_url.url for m in request.messages if isinstance(m.content, list)
                for part in m.content if isinstance(part, ImagePart)]
        if len(urls) > self.limits.max_images_per_request:
            raise APIError(400, f"{len(urls)} images in one request; this server allows at most "
                                f"{self.limits.max_images_per_request}", param="messages", code="too_many_images")
        # Decoding a large image takes a while: keep the event loop free. Small ones (well under a
        # millisecond) are cheaper to decode here than to hand to a thread.
        if sum(len(url) for url in urls) > _INLINE_DECODE_CHARS:
            images = await asyncio.to_thread(lambda: [load_image(url, self.limits.media) for url in urls])
        else:
            images = [load_image(url, self.limits.media) for url in urls]
        image_iter = iter(images)
        messages: list[ChatMessage] = []
        for m in request.messages:
            content: list[str | Image.Image] = []
            if isinstance(m.content, str):
                content.append(m.content)
            elif m.content:
                for part in m.content:
                    content.append(next(image_iter) if isinstance(part, ImagePart) else part.text)
            tool_calls = None
            if m.tool_calls:
                tool_calls = [{"type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
                              for c in m.tool_calls]
            role = "system" if m.role == "developer" else m.role
            messages.append(ChatMessage(role=role, content=content, tool_calls=tool_calls))
        stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        sampling = SamplingParams(
            max_tokens=request.max_completion_tokens or request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=request.top_k,
            seed=request.seed,
            stop=stop,
        )
        mm = request.mm_processor_kwargs
        return GenerationRequest(
            messages=messages,
            sampling=sampling,
            tools=request.tools,
            min_pixels=mm.min_pixels if mm else None,
            max_pixels=mm.max_pixels if mm else None,
            stream=request.stream,
        )

    # -- answering -------------------------------------------------------------------------------------
    def _observe(self, started: float, first_token_at: float | None, last: GenerationChunk) -> None:
        m, mode = self.metrics, self.mode
        m.requests.labels(mode=mode).inc()
        m.request_duration.labels(mode=mode).observe(time.perf_counter() - started)
        if first_token_at is not None:
            m.time_to_first_token.labels(mode=mode).observe(first_token_at - started)
        m.prompt_tokens.labels(mode=mode).inc(last.prompt_tokens)
        m.generation_tokens.labels(mode=mode).inc(last.completion_tokens)
        m.visual_tokens.labels(mode=mode).inc(last.visual_tokens)

    @staticmethod
    def _usage(last: GenerationChunk) -> Usage:
        return Usage(
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            total_tokens=last.prompt_tokens + last.completion_tokens,
            visual_tokens=last.visual_tokens,
        )

    async def _collect(self, model: str, chunks: AsyncIterator[GenerationChunk], started: float) -> ChatCompletionResponse:
        parts: list[str] = []
        first_token_at = None
        last = None
        async for chunk in chunks:
            parts.append(chunk.text)
            last = chunk
            first_token_at = chunk.first_token_at
        assert last is not None and last.finish_reason is not None
        self._observe(started, first_token_at, last)
        return ChatCompletionResponse(
            model=model,
            choices=[Choice(message=ResponseMessage(content="".join(parts)), finish_reason=last.finish_reason)],
            usage=self._usage(last),
        )

    async def _sse(self, model: str, chunks: AsyncIterator[GenerationChunk], started: float,
                   include_usage: bool) -> AsyncIterator[str]:
        completion_id, created = new_completion_id(), int(time.time())

        def event(choices: list[StreamChoice], usage: Usage | None = None) -> str:
            chunk = ChatCompletionChunk(id=completion_id, created=created, model=model, choices=choices, usage=usage)
            body = chunk.model_dump(exclude={"usage"} if usage is None else None)
            for choice in body["choices"]:  # deltas carry only what changed, as OpenAI's do
                choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
            return f"data: {json.dumps(body)}\n\n"

        first_token_at = None
        last = None
        try:
            yield event([StreamChoice(delta=DeltaMessage(role="assistant", content=""))])
            async for chunk in chunks:
                first_token_at = chunk.first_token_at
                last = chunk
                if chunk.text or chunk.finish_reason:
                    yield event([StreamChoice(delta=DeltaMessage(content=chunk.text or None),
                                              finish_reason=chunk.finish_reason)])
            assert last is not None
            self._observe(started, first_token_at, last)
            if include_usage:
                yield event([], usage=self._usage(last))
        except Exception as exc:  # headers are gone: the error travels in the stream
            err = as_api_error(exc)
            self.metrics.record_error(err.status_code)
            yield f"data: {json.dumps(error_body(err.message, err.error_type, param=err.param, code=err.code))}\n\n"
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        yield "data: [DONE]\n\n"
