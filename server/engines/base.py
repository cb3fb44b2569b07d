"""The engine interface every backend (transformers, vLLM) implements, and the types it speaks.

The serving layer turns an OpenAI request into a ``GenerationRequest`` (images already decoded), hands it
to ``Engine.submit`` and consumes ``GenerationChunk``s; it never touches a model. What an engine can do
beyond generating is declared on it (``attention_maps``), never probed with ``hasattr``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from PIL import Image

if TYPE_CHECKING:  # the attention maths imports torch; the contract itself does not need it
    from zwz.analytics.attention.relative_attention import LayerSpec, Method, RelativeAttention

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

    layers: LayerSpec = None  # None (default layer), an int, a list of ints, or "all"


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
    attention: RelativeAttention | None = None  # on the last chunk, when the request asked for a map


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


class AttentionMapper(Protocol):
    """An engine's relative-attention maps (paper App. 12): over a question alone, or attached to an answer.

    An engine that has one also honours ``GenerationRequest.attention``; an engine without one
    (``Engine.attention_maps is None``) is refused by the serving layer before it is asked.
    """

    async def analyze(self, image: Image.Image, question: str, *, layers: LayerSpec = None,
                      method: Method = "fast", min_pixels: int | None = None,
                      max_pixels: int | None = None) -> RelativeAttention:
        """The relative-attention map of ``question`` over ``image`` (no answer generated)."""
        ...


class ClosingStream:
    """``items`` as an async iterator whose ``aclose`` also runs ``on_close``, whether it was read or not.

    An async generator closed before its first ``__anext__`` never runs its ``finally`` (a client that leaves
    before the first byte closes the stream unstarted), so cancelling there alone would let the request decode
    on to its token limit for nobody.
    """

    def __init__(self, items: AsyncGenerator[Any, None], on_close: Callable[[], Awaitable[None]]) -> None:
        self._items = items
        self._on_close = on_close

    def __aiter__(self) -> ClosingStream:
        return self

    def __anext__(self) -> Awaitable[Any]:
        return self._items.__anext__()

    async def aclose(self) -> None:
        try:
            await self._items.aclose()
        finally:
            await self._on_close()


@runtime_checkable
class Engine(Protocol):
    """What the server needs from a backend."""

    info: EngineInfo
    # Observers (the server's metrics) called with the size of every batch that starts decoding.
    batch_listeners: list[Callable[[int], None]]
    # The attention-map capability, or None where the engine has none.
    attention_maps: AttentionMapper | None

    @property
    def queue_depth(self) -> int:
        """Requests admitted but not decoding yet."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Validate and enqueue ``request``, returning its chunk stream.

        Client errors (``InvalidRequestError``) and a full queue (``EngineOverloadedError``) raise here,
        before any chunk, so the server can still answer with a plain JSON error. Closing the returned
        iterator early cancels the request, even when it was never read (see :class:`ClosingStream`).
        """
        ...


def missing_members(engine: object) -> list[str]:
    """The ``Engine`` members ``engine`` lacks (empty when it implements the protocol).

    >>> missing_members(object())
    ['attention_maps', 'batch_listeners', 'info', 'queue_depth', 'start', 'stop', 'submit']
    """
    declared = set(Engine.__annotations__) | {name for name in vars(Engine) if not name.startswith("_")}
    return sorted(name for name in declared if not hasattr(engine, name))
