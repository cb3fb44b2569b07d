"""What the zoom strategies need from a model: one chat call (:class:`ChatBackend`), its reply, its failure, and
the conversation format they speak.

Messages are OpenAI-shaped dicts whose image parts hold decoded images, ``{"type": "image", "image": PIL.Image}``
(a backend turns them into data URLs or hands them to an engine). Backends: ``openai_backend.OpenAIBackend``
(any OpenAI-compatible HTTP endpoint), ``zwz.server.serving.agent_backend.EngineBackend`` (the server's own
engine), the eval harness's and the load test's adapters.

    history, images, question = split_last_user_turn(messages)
    messages = [*history, user_turn(images, question)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "BackendError",
    "BackendReply",
    "ChatBackend",
    "count_images",
    "message_images",
    "message_text",
    "split_last_user_turn",
    "user_turn",
]


class BackendError(RuntimeError):
    """A model call failed (HTTP status, transport, unreadable reply). ``partial``: the trajectory so far."""

    def __init__(self, message: str, *, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.partial: Any = None  # the strategy's result object so far (AgentResult, AttentionZoomResult)


@dataclass
class BackendReply:
    """One model call's answer, as an OpenAI chat completion reports it."""

    text: str
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI shape: {"id", "type", "function": {"name", "arguments"}}
    prompt_tokens: int = 0
    completion_tokens: int = 0
    visual_tokens: int = 0
    finish_reason: str | None = None
    images_encoded: int | None = None  # set by a backend that caches image prefixes; None: all sent were encoded


class ChatBackend(Protocol):
    """One chat call. Messages are OpenAI-shaped; image parts are ``{"type": "image", "image": PIL.Image}``."""

    async def complete(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                       sampling: dict[str, Any]) -> BackendReply: ...


def user_turn(images: list[Image.Image], text: str) -> dict[str, Any]:
    """A user turn: the images in order, then the text (Qwen-VL's usual layout).

    >>> [p["type"] for p in user_turn([None, None], "Which is bigger?")["content"]]
    ['image', 'image', 'text']
    """
    return {"role": "user", "content": [*({"type": "image", "image": im} for im in images),
                                        {"type": "text", "text": text}]}


def message_images(message: dict[str, Any]) -> list[Image.Image]:
    """The images of one message, in order."""
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [part["image"] for part in content if part.get("type") == "image"]


def message_text(message: dict[str, Any]) -> str:
    """The text of one message; several text parts are joined by newlines.

    >>> message_text({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]})
    'a\\nb'
    """
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(part["text"] for part in content or [] if part.get("type") == "text")


def count_images(messages: list[dict[str, Any]]) -> int:
    """Images in a conversation: what a model call re-encodes when it is sent (endpoints are stateless)."""
    return sum(len(message_images(m)) for m in messages)


def split_last_user_turn(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Image.Image], str]:
    """``(history, images, question)``: the turns before the last user turn (system prompt and earlier turns
    kept as they are), and that turn's images and text. The zoom strategies answer that turn, so it must be
    the last message.

    >>> history, images, question = split_last_user_turn([{"role": "system", "content": "Be brief."},
    ...                                                   user_turn(["img"], "What is it?")])
    >>> [m["role"] for m in history], images, question
    (['system'], ['img'], 'What is it?')
    """
    if not messages or messages[-1].get("role") != "user":
        raise ValueError("the zoom modes answer the last user message: the conversation must end with a user turn")
    last = messages[-1]
    return list(messages[:-1]), message_images(last), message_text(last)
