"""The zoom strategies' model calls served by this process's engine (the ``agent`` and ``attention_zoom`` modes).

Each call is answered as ``POST /v1/chat/completions`` would answer it, without the HTTP: a call that offers
tools gets the reply's ``<tool_call>`` blocks back as OpenAI ``tool_calls`` with ``finish_reason="tool_calls"``
(the same parser as the chat endpoint), so a server-side trajectory reads like one driven over HTTP.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from zwz.analytics.attention.grid import GridGeometry
from zwz.analytics.attention.zoom_box import suggest_zoom_box
from zwz.analytics.zoom.backend import BackendReply
from zwz.analytics.zoom.requests import AttentionMapReply
from zwz.server.engines.base import ChatMessage, Engine, GenerationRequest, SamplingParams
from zwz.server.serving.attention import require_attention_maps
from zwz.server.serving.tool_parsing import extract_tool_calls

__all__ = ["EngineBackend", "to_backend_messages"]


class EngineBackend:
    """``AttentionZoomBackend`` (and so ``ChatBackend``) over an in-process engine: the same weights that
    answer single-pass requests, with the request's pixel budget."""

    def __init__(self, engine: Engine, *, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
        self.engine = engine
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels

    async def complete(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
                       sampling: dict[str, Any] | None = None) -> BackendReply:
        request = GenerationRequest(
            messages=[_to_chat_message(m) for m in messages],
            sampling=SamplingParams(**(sampling or {})),
            tools=tools,
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
            stream=False,
        )
        parts, last = [], None
        async for chunk in await self.engine.submit(request):
            parts.append(chunk.text)
            last = chunk
        assert last is not None and last.finish_reason is not None  # an engine's last chunk always finishes
        text, finish_reason, tool_calls = "".join(parts), last.finish_reason, None
        if tools:
            content, calls = extract_tool_calls(text)
            if calls:
                text, finish_reason = content or "", "tool_calls"
                tool_calls = [call.to_openai() for call in calls]
        return BackendReply(text=text, tool_calls=tool_calls, prompt_tokens=last.prompt_tokens,
                            completion_tokens=last.completion_tokens, visual_tokens=last.visual_tokens,
                            finish_reason=finish_reason)

    async def attention_map(self, image: Image.Image, question: str) -> AttentionMapReply:
        """The relative-attention map of ``question`` over ``image`` and its suggested zoom box (no answer)."""
        result = await require_attention_maps(self.engine).analyze(
            image, question, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        box = suggest_zoom_box(result.grid, GridGeometry.from_grid_thw(image.size, result.image_grid_thw))
        t, rows, cols = result.image_grid_thw[0], *result.grid_shape
        return AttentionMapReply(box, visual_tokens=int(t * rows * cols))


def to_backend_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Engine messages -> the zoom strategies' conversation format (``zwz.analytics.zoom.backend``)."""
    out = []
    for message in messages:
        content = [{"type": "image", "image": part} if isinstance(part, Image.Image) else {"type": "text", "text": part}
                   for part in message.content]
        entry: dict[str, Any] = {"role": message.role, "content": content}
        if message.tool_calls:
            entry["tool_calls"] = message.tool_calls
        out.append(entry)
    return out


def _to_chat_message(message: dict[str, Any]) -> ChatMessage:
    content = message.get("content")
    tool_calls = message.get("tool_calls")
    if isinstance(content, str):
        return ChatMessage(role=message["role"], content=[content], tool_calls=tool_calls)
    parts: list[str | Image.Image] = []
    for part in content or []:
        if part.get("type") == "image":
            parts.append(part["image"])
        elif part.get("type") == "text":
            parts.append(part["text"])
        else:
            raise ValueError(f"unsupported content part {part.get('type')!r}")
    return ChatMessage(role=message["role"], content=parts, tool_calls=tool_calls)
