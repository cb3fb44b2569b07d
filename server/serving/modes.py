"""The zoom modes of chat completions, so the same weights serve every protocol per request.

- ``agent``: the tool-use zoom agent baseline ("thinking with images", ``zwz.analytics.zoom.agent``);
- ``attention_zoom``: training-free zoom (``zwz.analytics.zoom.attention_zoom``): the relative-attention map
  picks a region, then one answer on [image, crop].

Both run the same code as their client-side drivers, each model call served by this process's engine
(``agent_backend.EngineBackend``). The whole conversation is kept (system prompt, earlier turns); the mode
answers the last user turn, which must be the last message and carry an image. The trajectory comes back as
the reply's ``zwz_trajectory``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from zwz.analytics.zoom.agent import AgentResult, run_zoom_agent
from zwz.analytics.zoom.attention_zoom import AttentionZoomResult, run_attention_zoom
from zwz.analytics.zoom.backend import split_last_user_turn
from zwz.defaults import AGENT_FIXED_TURNS, AGENT_MAX_TURNS
from zwz.server.api.errors import APIError
from zwz.server.api.protocol import ChatCompletionRequest
from zwz.server.engines.base import Engine, GenerationRequest, SamplingParams
from zwz.server.serving.agent_backend import EngineBackend, to_backend_messages
from zwz.server.serving.attention import require_attention_maps

__all__ = ["MODES", "ZoomAnswer", "run_agent_mode", "run_attention_zoom_mode"]


@dataclass
class ZoomAnswer:
    """One zoom-mode answer: what the OpenAI reply carries, and the trajectory behind it."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    visual_tokens: int
    trajectory: AgentResult | AttentionZoomResult


def _conversation(mode: str, generation: GenerationRequest) -> list[dict[str, Any]]:
    """The request's conversation for the zoom strategies; a 400 when its last user turn cannot be zoomed."""
    messages = to_backend_messages(generation.messages)
    try:
        _, images, _ = split_last_user_turn(messages)
    except ValueError as exc:
        raise APIError(400, f"zwz_mode={mode}: {exc}", param="messages") from None
    if not images:
        raise APIError(400, f"zwz_mode={mode} needs an image in the last user message", param="zwz_mode")
    return messages


def _backend(engine: Engine, generation: GenerationRequest) -> EngineBackend:
    return EngineBackend(engine, min_pixels=generation.min_pixels, max_pixels=generation.max_pixels)


async def run_agent_mode(engine: Engine, request: ChatCompletionRequest, generation: GenerationRequest) -> ZoomAnswer:
    """The tool-use agent; ``finish_reason`` is ``length`` when it stopped at its turn limit."""
    history, images, question = split_last_user_turn(_conversation("agent", generation))
    options = request.zwz_agent
    result = await run_zoom_agent(
        _backend(engine, generation), images, question, history=history,
        max_turns=options.max_turns if options else AGENT_MAX_TURNS,
        fixed_turns=options.fixed_turns if options else AGENT_FIXED_TURNS,
        sampling=_sampling_dict(generation.sampling),
    )
    finish = "length" if result.stopped == "turn_limit" else "stop"
    return ZoomAnswer(result.answer, finish, result.prompt_tokens, result.completion_tokens, result.visual_tokens,
                      result)


async def run_attention_zoom_mode(engine: Engine, request: ChatCompletionRequest,
                                  generation: GenerationRequest) -> ZoomAnswer:
    """Map -> suggested box -> one answer on [image, crop]; the answer call's finish reason and usage."""
    require_attention_maps(engine)  # refuse before any work
    messages = _conversation("attention_zoom", generation)
    result = await run_attention_zoom(_backend(engine, generation), messages,
                                      sampling=_sampling_dict(generation.sampling))
    return ZoomAnswer(result.answer, result.finish_reason, result.prompt_tokens, result.completion_tokens,
                      result.visual_tokens, result)


def _sampling_dict(sampling: SamplingParams) -> dict[str, Any]:
    return {k: v for k, v in vars(sampling).items() if v is not None and v != []}


MODES: dict[str, Callable[[Engine, ChatCompletionRequest, GenerationRequest], Awaitable[ZoomAnswer]]] = {
    "agent": run_agent_mode, "attention_zoom": run_attention_zoom_mode}
