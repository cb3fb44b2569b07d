"""The zoom agent's chat backend, served by this process's engine (the agent mode's model calls)."""

from __future__ import annotations

from typing import Any

from PIL import Image

from zwz.server.engines.base import ChatMessage, Engine, GenerationRequest, SamplingParams


class EngineBackend:
    """``ChatBackend`` over an in-process engine: no HTTP, the same weights that answer single-pass requests."""

    def __init__(self, engine: Engine, *, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
        self.engine = engine
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels

    async def complete(self, messages: list[dict[str, Any]], *, tools: list[dict] | None = None,
                       sampling: dict[str, Any] | None = None):
        from zwz.analytics.zoom.agent import BackendReply

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
        return BackendReply(text="".join(parts), tool_calls=None, prompt_tokens=last.prompt_tokens,
                            completion_tokens=last.completion_tokens, visual_tokens=last.visual_tokens)


def _to_chat_message(message: dict[str, Any]) -> ChatMessage:
    content = message.get("content")
    if isinstance(content, str):
        return ChatMessage(role=message["role"], content=[content])
    parts: list[str | Image.Image] = []
    for part in content or []:
        if part.get("type") == "image":
            parts.append(part["image"])
        elif part.get("type") == "text":
            parts.append(part["text"])
        else:
            raise ValueError(f"unsupported content part {part.get('type')!r}")
    return ChatMessage(role=message["role"], content=parts)
