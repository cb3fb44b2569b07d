"""Chat completions: OpenAI request -> engine request -> OpenAI response or SSE stream (no HTTP here)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from PIL import Image

from zwz.server.engines.base import (
    AttentionOptions, ChatMessage, ClosingStream, Engine, GenerationChunk, GenerationRequest, SamplingParams,
)
from zwz.server.api.errors import APIError, as_api_error, error_body
from zwz.server.serving.media import MediaPolicy, load_image
from zwz.server.metrics import ServerMetrics
from zwz.server.serving.attention import attention_payload, check_box, require_attention_maps
from zwz.server.serving.modes import MODES
from zwz.server.serving.visual_budget import VisualBudget, admit_for
from zwz.server.serving.tool_parsing import ToolCallStream, extract_tool_calls
from zwz.server.api.protocol import (
    AttentionMap,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    DeltaMessage,
    ImagePart,
    ResponseMessage,
    StreamChoice,
    ToolCallDelta,
    Usage,
    new_completion_id,
)

# Base64 characters decoded on the event loop; larger images go to a thread. A 1344 px photo JPEG is ~72K
# characters and ~10 ms to decode: enough to stall other requests (1344 px p99 1.22 -> 1.02 vs plain vLLM).
_INLINE_DECODE_CHARS = 32 * 1024


def sse_event(chunk: ChatCompletionChunk) -> str:
    """One SSE event: zwz's extension fields only where set, deltas carrying only what changed (as OpenAI's)."""
    body = chunk.model_dump(exclude={name for name in ("usage", "zwz_attention", "zwz_trajectory")
                                     if getattr(chunk, name) is None})
    for choice in body["choices"]:
        choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
    return f"data: {json.dumps(body)}\n\n"


@dataclass
class ChatLimits:
    max_images_per_request: int
    media: MediaPolicy


class ChatService:
    def __init__(self, engine: Engine, served_model_names: list[str], limits: ChatLimits, metrics: ServerMetrics):
        self.engine = engine
        self.served_model_names = served_model_names
        self.limits = limits
        self.visual = VisualBudget.for_model(engine.info)
        self.metrics = metrics

    async def create(self, request: ChatCompletionRequest) -> ChatCompletionResponse | AsyncIterator[str]:
        """Answer ``request``; client errors raise ``APIError`` before anything is sent."""
        started = time.perf_counter()
        self._check_model(request.model)
        self._check_unsupported(request)
        if request.zwz_mode != "single":
            return await self._create_zoom_mode(request, started)
        generation, images = await self._to_generation_request(request)
        mapping = self._attention_request(request, generation, images)
        chunks = await self.engine.submit(generation)
        parse_tools = bool(request.tools) and request.tool_choice != "none"
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            # Closing the body must stop the engine's request even when no event was ever read.
            return ClosingStream(self._sse(request.model, chunks, started, include_usage, mapping, parse_tools),
                                 chunks.aclose)  # type: ignore[attr-defined]
        return await self._collect(request.model, chunks, started, mapping, parse_tools)

    async def _create_zoom_mode(self, request: ChatCompletionRequest, started: float):
        """The agent and attention-zoom modes: several engine calls, one OpenAI answer plus its trajectory."""
        mode = request.zwz_mode
        if request.zwz_attention is not None:
            raise APIError(400, "zwz_attention applies to single-pass answers", param="zwz_attention")
        if request.tools:
            raise APIError(400, f"tools cannot be combined with zwz_mode={mode} (the mode brings its own)", param="tools")
        generation, images = await self._to_generation_request(request)
        if not images:
            raise APIError(400, f"zwz_mode={mode} needs an image in the messages", param="zwz_mode")
        answer = await MODES[mode](self.engine, request, generation)
        usage = Usage(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                      total_tokens=answer.prompt_tokens + answer.completion_tokens, visual_tokens=answer.visual_tokens)
        self._observe(mode, started, None, usage)
        response = ChatCompletionResponse(
            model=request.model, usage=usage, zwz_trajectory=answer.trajectory,
            choices=[Choice(message=ResponseMessage(content=answer.text), finish_reason=answer.finish_reason)])
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            return self._replay(response, include_usage)
        return response

    @staticmethod
    async def _replay(response: ChatCompletionResponse, include_usage: bool) -> AsyncIterator[str]:
        """A finished answer as an SSE stream (the zoom modes know their answer only at the end): the role, then
        the whole answer on the finishing chunk with ``zwz_trajectory``, then (asked for) the usage."""
        def event(choices: list[StreamChoice], **extensions) -> str:
            return sse_event(ChatCompletionChunk(id=response.id, created=response.created, model=response.model,
                                                 choices=choices, **extensions))

        choice = response.choices[0]
        yield event([StreamChoice(delta=DeltaMessage(role="assistant", content=""))])
        yield event([StreamChoice(delta=DeltaMessage(content=choice.message.content),
                                  finish_reason=choice.finish_reason)], zwz_trajectory=response.zwz_trajectory)
        if include_usage:
            yield event([], usage=response.usage)
        yield "data: [DONE]\n\n"

    def _attention_request(self, request: ChatCompletionRequest, generation: GenerationRequest,
                           images: list[Image.Image]) -> tuple[Image.Image, tuple | None, bool] | None:
        """Validate the zwz_attention extension; return (last image, box, heatmap) for the payload."""
        options = request.zwz_attention
        if options is None:
            return None
        if not images:
            raise APIError(400, "zwz_attention needs an image in the messages", param="zwz_attention")
        require_attention_maps(self.engine)
        generation.attention = AttentionOptions(layers=options.layer)
        return images[-1], check_box(options.box, images[-1].size), options.heatmap

    async def _attention_payload(self, mapping, last: GenerationChunk) -> AttentionMap | None:
        if mapping is None or last.attention is None:
            return None
        image, box, heatmap = mapping
        return await asyncio.to_thread(attention_payload, last.attention, image, box, heatmap)

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

    async def _to_generation_request(self, request: ChatCompletionRequest) -> tuple[GenerationRequest, list[Image.Image]]:
        urls = [part.image_url.url for m in request.messages if isinstance(m.content, list)
                for part in m.content if isinstance(part, ImagePart)]
        if len(urls) > self.limits.max_images_per_request:
            raise APIError(400, f"{len(urls)} images in one request; this server allows at most "
                                f"{self.limits.max_images_per_request}", param="messages", code="too_many_images")
        mm = request.mm_processor_kwargs
        # Images whose visual tokens alone overflow the context are refused from their headers, undecoded.
        admit = admit_for(self.visual, mm.min_pixels if mm else None, mm.max_pixels if mm else None)
        # Decoding a large image takes a while, and a file or a remote fetch may block: keep the event loop
        # free. Small inline images (well under a millisecond) are cheaper to decode here than in a thread.
        inline = all(url.startswith("data:") for url in urls)
        if not inline or sum(len(url) for url in urls) > _INLINE_DECODE_CHARS:
            images = await asyncio.to_thread(lambda: [load_image(url, self.limits.media, admit) for url in urls])
        else:
            images = [load_image(url, self.limits.media, admit) for url in urls]
        image_iter = iter(images)
        messages: list[ChatMessage] = []
        for m in request.messages:
            content: list[str | Image.Image] = []
            if isinstance(m.content, str):
                if m.content:  # "" is no text, as Qwen's template reads an empty content (no stray newline)
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
        return GenerationRequest(
            messages=messages,
            sampling=sampling,
            tools=request.tools,
            min_pixels=mm.min_pixels if mm else None,
            max_pixels=mm.max_pixels if mm else None,
            stream=request.stream,
        ), images

    # -- answering -------------------------------------------------------------------------------------
    def _observe(self, mode: str, started: float, first_token_at: float | None, usage: Usage) -> None:
        m = self.metrics
        m.requests.labels(mode=mode).inc()
        m.request_duration.labels(mode=mode).observe(time.perf_counter() - started)
        if first_token_at is not None:
            m.time_to_first_token.labels(mode=mode).observe(first_token_at - started)
        m.prompt_tokens.labels(mode=mode).inc(usage.prompt_tokens)
        m.generation_tokens.labels(mode=mode).inc(usage.completion_tokens)
        m.visual_tokens.labels(mode=mode).inc(usage.visual_tokens)

    @staticmethod
    def _usage(last: GenerationChunk) -> Usage:
        return Usage(
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            total_tokens=last.prompt_tokens + last.completion_tokens,
            visual_tokens=last.visual_tokens,
        )

    async def _collect(self, model: str, chunks: AsyncIterator[GenerationChunk], started: float,
                       mapping=None, parse_tools: bool = False) -> ChatCompletionResponse:
        parts: list[str] = []
        first_token_at = None
        last = None
        async for chunk in chunks:
            parts.append(chunk.text)
            last = chunk
            first_token_at = chunk.first_token_at
        assert last is not None and last.finish_reason is not None
        self._observe("single", started, first_token_at, self._usage(last))
        message = ResponseMessage(content="".join(parts))
        finish_reason = last.finish_reason
        if parse_tools:
            content, calls = extract_tool_calls(message.content)
            if calls:
                message = ResponseMessage(content=content, tool_calls=[c.to_openai() for c in calls])
                finish_reason = "tool_calls"
        return ChatCompletionResponse(
            model=model,
            choices=[Choice(message=message, finish_reason=finish_reason)],
            usage=self._usage(last),
            zwz_attention=await self._attention_payload(mapping, last),
        )

    async def _sse(self, model: str, chunks: AsyncIterator[GenerationChunk], started: float,
                   include_usage: bool, mapping=None, parse_tools: bool = False) -> AsyncIterator[str]:
        completion_id, created = new_completion_id(), int(time.time())

        def event(choices: list[StreamChoice], usage: Usage | None = None, attention: AttentionMap | None = None) -> str:
            return sse_event(ChatCompletionChunk(id=completion_id, created=created, model=model, choices=choices,
                                                 usage=usage, zwz_attention=attention))

        first_token_at = None
        last = None
        try:
            yield event([StreamChoice(delta=DeltaMessage(role="assistant", content=""))])
            tools = ToolCallStream() if parse_tools else None
            async for chunk in chunks:
                first_token_at = chunk.first_token_at
                last = chunk
                text, finish_reason, calls = chunk.text, chunk.finish_reason, []
                if tools is not None:
                    text = tools.feed(text)
                    if finish_reason is not None:
                        rest, calls = tools.finish()
                        text += rest
                        finish_reason = "tool_calls" if calls else finish_reason
                if text or finish_reason:
                    attention = await self._attention_payload(mapping, chunk) if finish_reason else None
                    delta = DeltaMessage(content=text or None, tool_calls=[
                        ToolCallDelta(index=i, **c.to_openai()) for i, c in enumerate(calls)] or None)
                    yield event([StreamChoice(delta=delta, finish_reason=finish_reason)], attention=attention)
            assert last is not None
            self._observe("single", started, first_token_at, self._usage(last))
            if include_usage:
                yield event([], usage=self._usage(last))
        except Exception as exc:  # headers are gone: the error travels in the stream
            err = as_api_error(exc)
            self.metrics.record_error(err.status_code)
            yield f"data: {json.dumps(error_body(err.message, err.error_type, param=err.param, code=err.code))}\n\n"
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        yield "data: [DONE]\n\n"
