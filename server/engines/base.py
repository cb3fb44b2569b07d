"""The engine interface every backend (transformers, vLLM) implements, and the types it speaks.

The HTTP layer turns an OpenAI request into a ``GenerationRequest`` (images already decoded), hands it
to ``Engine.generate`` and consumes ``GenerationChunk``s; it never touches a model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass
class ChatMessage:
    """One chat turn with its content as text parts and decoded images, in order."""

    role: str
    content: list[str | Image.Image]
    tool_calls: list[dict[str, Any]] | None = None


@dataclass
class SamplingParams:
    """Decoding settings; ``None`` means "the model's own default" (its generation_config)."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class AttentionOptions:
    """Ask for the answer's relative-attention map (zwz extension), computed from the answer's own prefill."""

    layers: Any = None  # None (default layer), an int, a list of ints, or "all"


@dataclass
class GenerationRequest:
    messages: list[ChatMessage]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    tools: list[dict[str, Any]] | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    # False: the engine sends one chunk with the whole answer (one event-loop wake-up instead of one per token).
    stream: bool = True
    attention: AttentionOptions | None = None


@dataclass
class GenerationChunk:
    """A piece of the answer. The last chunk has ``finish_reason`` set and the final token counts."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    visual_tokens: int = 0
    first_token_at: float | None = None  # time.perf_counter() when the first token was generated
    attention: Any = None  # zwz.analytics.attention.relative_attention.RelativeAttention on the last chunk, when asked


class EngineError(Exception):
    """Base of errors an engine reports to the client; carries what the OpenAI envelope needs."""

    status_code = 500
    error_type = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequestError(EngineError):
    status_code = 400
    error_type = "invalid_request_error"


class EngineOverloadedError(EngineError):
    status_code = 503
    error_type = "server_overloaded"


@dataclass
class EngineInfo:
    model_dir: str
    engine: str
    family: str
    max_model_len: int
    device: str
    dtype: str
    random_weights: bool


@runtime_checkable
class Engine(Protocol):
    """What the server needs from a backend."""

    info: EngineInfo

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Validate and enqueue ``request``, returning its chunk stream.

        Client errors (``InvalidRequestError``) and a full queue (``EngineOverloadedError``) raise here,
        before any chunk, so the server can still answer with a plain JSON error. Closing the returned
        iterator early cancels the request.
        """
        ...
