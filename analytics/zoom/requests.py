"""The request bodies of zwz's zoom extensions, built once for every client (``zwz eval``, ``zwz bench``, the UI),
and the readers of what comes back.

- a chat body that runs a zoom strategy inside a zwz server: ``zwz_mode`` ``"agent"`` (with ``zwz_agent``
  options) or ``"attention_zoom"``, plus sampling and the per-request pixel budget;
- the body of ``POST /v1/zoom/attention`` (the attention-zoom map, for a client-side attention zoom);
- :func:`reply_trajectory`: the ``zwz_trajectory`` of a zoom-mode reply (a plain OpenAI server ignores
  ``zwz_mode`` and answers single-pass: :class:`ZoomModeIgnored`); :func:`parse_attention_map`.

    body = zoom_chat_body("agent", [user_message([url], question)], max_tokens=512, max_turns=20)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zwz.defaults import AGENT_FIXED_TURNS, AGENT_MAX_TURNS

__all__ = [
    "ZOOM_MODES",
    "AttentionMapReply",
    "ZoomModeIgnored",
    "attention_map_body",
    "parse_attention_map",
    "pixel_budget",
    "reply_trajectory",
    "zoom_chat_body",
    "zoom_mode_fields",
]

ZOOM_MODES = ("agent", "attention_zoom")  # the zwz_mode values that run a zoom strategy in the server


class ZoomModeIgnored(ValueError):
    """The endpoint answered a zoom-mode request without a ``zwz_trajectory``: it is not a zwz server."""


@dataclass(frozen=True)
class AttentionMapReply:
    """What the attention zoom needs from a map: its suggested box (original-image pixels) and its cost."""

    suggested_box: Any  # as received; attention_zoom.suggested_crop_box checks it
    visual_tokens: int | None = None


def pixel_budget(max_pixels: int | None) -> dict[str, Any]:
    """The per-request pixel budget field (vLLM's name, which zwz reads too); nothing when unset.

    >>> pixel_budget(200_000), pixel_budget(None)
    ({'mm_processor_kwargs': {'max_pixels': 200000}}, {})
    """
    return {"mm_processor_kwargs": {"max_pixels": max_pixels}} if max_pixels else {}


def zoom_mode_fields(mode: str, *, max_turns: int = AGENT_MAX_TURNS, fixed_turns: int = AGENT_FIXED_TURNS
                     ) -> dict[str, Any]:
    """The chat-body fields that make a zwz server run ``mode`` (``agent`` or ``attention_zoom``).

    >>> zoom_mode_fields("agent", max_turns=6)
    {'zwz_mode': 'agent', 'zwz_agent': {'max_turns': 6, 'fixed_turns': 0}}
    >>> zoom_mode_fields("attention_zoom")
    {'zwz_mode': 'attention_zoom'}
    """
    if mode == "agent":
        return {"zwz_mode": "agent", "zwz_agent": {"max_turns": max_turns, "fixed_turns": fixed_turns}}
    if mode == "attention_zoom":
        return {"zwz_mode": "attention_zoom"}
    raise ValueError(f"unknown zoom mode {mode!r}; choose from {', '.join(ZOOM_MODES)}")


def zoom_chat_body(mode: str, messages: list[dict[str, Any]], *, max_tokens: int | None = None,
                   temperature: float | None = None, max_pixels: int | None = None, model: str | None = None,
                   max_turns: int = AGENT_MAX_TURNS, fixed_turns: int = AGENT_FIXED_TURNS,
                   stream: bool = False) -> dict[str, Any]:
    """A chat-completions body that runs the zoom strategy ``mode`` inside a zwz server.

    ``max_tokens`` bounds each model call of the agent, and the answer of the attention zoom. Streaming asks
    for the usage chunk too (the zoom modes report their totals there).

    >>> body = zoom_chat_body("attention_zoom", [], max_tokens=64, temperature=0.0, max_pixels=10_000)
    >>> sorted(body)
    ['max_tokens', 'messages', 'mm_processor_kwargs', 'temperature', 'zwz_mode']
    """
    body: dict[str, Any] = {"model": model} if model is not None else {}
    body["messages"] = messages
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    body |= pixel_budget(max_pixels) | zoom_mode_fields(mode, max_turns=max_turns, fixed_turns=fixed_turns)
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def attention_map_body(image_url: str, question: str, *, model: str | None = None, max_pixels: int | None = None,
                       heatmap: bool = False) -> dict[str, Any]:
    """The body of ``POST /v1/zoom/attention``; no heatmap by default (the zoom needs only the box).

    >>> attention_map_body("data:x", "Where is the cat?", model="m")
    {'model': 'm', 'image': 'data:x', 'question': 'Where is the cat?', 'heatmap': False}
    """
    body: dict[str, Any] = {"model": model} if model is not None else {}
    return body | {"image": image_url, "question": question, "heatmap": heatmap} | pixel_budget(max_pixels)


def parse_attention_map(body: Any, source: str = "the endpoint") -> AttentionMapReply:
    """A ``/v1/zoom/attention`` reply -> :class:`AttentionMapReply`; ValueError when it carries no box.

    >>> parse_attention_map({"suggested_box": [1, 2, 30, 40], "visual_tokens": 12})
    AttentionMapReply(suggested_box=[1, 2, 30, 40], visual_tokens=12)
    """
    if not isinstance(body, dict) or "suggested_box" not in body:
        raise ValueError(f"{source} reply has no suggested_box: {str(body)[:200]!r}")
    tokens = body.get("visual_tokens")
    return AttentionMapReply(body["suggested_box"], int(tokens) if isinstance(tokens, (int, float)) else None)


def reply_trajectory(reply: Any, mode: str) -> dict[str, Any]:
    """The ``zwz_trajectory`` of a zoom-mode reply; :class:`ZoomModeIgnored` when there is none.

    >>> reply_trajectory({"zwz_trajectory": {"mode": "agent", "model_calls": 3}}, "agent")["model_calls"]
    3
    """
    trajectory = reply.get("zwz_trajectory") if isinstance(reply, dict) else None
    if not isinstance(trajectory, dict):
        raise ZoomModeIgnored(f"the server ignored zwz_mode={mode!r} (its reply has no zwz_trajectory): "
                              "is it a zwz server?")
    return trajectory
