"""The "thinking with images" zoom agent of Qwen3-VL's cookbook and Qwen-Agent: the tool-use baseline that ZwZ's
single pass is compared with, over any chat backend (``zwz.analytics.zoom.backend``): an OpenAI-compatible
endpoint (zwz, plain vLLM, ...: ``openai_backend.OpenAIBackend``) or a zwz server's own engine (``zwz_mode=agent``).

    async with OpenAIBackend("http://127.0.0.1:8000/v1", "ZwZ-8B") as backend:
        result = await run_zoom_agent(backend, [image], "What is written on the small sign?",
                                      sampling={"max_tokens": 1024, "temperature": 0})
    result.answer, result.model_calls, result.image_encodings, result.to_dict()

The conversation, in Qwen's wire format (see ``zwz.analytics.zoom.tool`` for the tool itself):

    [history]    optional: a system prompt, earlier turns (``history=``)
    user         original image(s), then the question
    assistant    reply with <tool_call>{"name": "image_zoom_in_tool", "arguments": {...}}</tool_call> block(s)
    user         "<tool_response>\\n" crop "\\n</tool_response>"  (one block per call, "\\n" between them; an
                 unusable call gets "Error: ..." as its block's text, so the model can try again)
    assistant    ...  until a reply has no tool call (its text is the answer) or ``max_turns`` model calls.

Tool responses travel as *user* turns, not OpenAI ``tool`` messages: those cannot carry images on most
endpoints, and Qwen's chat templates render a ``tool`` message as exactly this user turn. Calls an endpoint
returns as ``tool_calls`` objects are written back into the assistant text as ``<tool_call>`` blocks for the
same reason. Every call re-sends the whole history (endpoints are stateless), so image encodings grow
quadratically with the turns; ``AgentResult.image_encodings`` counts them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

from zwz.analytics.zoom.backend import (
    BackendError,
    BackendReply,
    ChatBackend,
    count_images,
    message_images,
    user_turn,
)
from zwz.analytics.zoom.crop import crop_box, crop_image
from zwz.analytics.zoom.tool import (
    ZOOM_TOOL,
    ZOOM_TOOL_NAME,
    ToolCallError,
    clean_answer,
    extract_tool_calls,
    format_tool_call,
    parse_call_json,
    validate_zoom_call,
)
from zwz.defaults import AGENT_FIXED_TURNS, AGENT_MAX_TURNS

logger = logging.getLogger(__name__)

__all__ = [
    "FORCED_ZOOM_BBOX",
    "AgentResult",
    "AgentTurn",
    "ToolCallRecord",
    "run_zoom_agent",
]

# The zoom `fixed_turns` forces: the centre quarter (half the width, half the height) of the latest image, so
# successive forced zooms close in on the centre of the previous crop.
FORCED_ZOOM_BBOX = (250.0, 250.0, 750.0, 750.0)


# -- the trajectory -------------------------------------------------------------------------------------------
@dataclass
class ToolCallRecord:
    """One tool call of a reply: executed (``crop_box_px`` set) or refused (``error`` set)."""

    call: dict[str, Any] | None  # the parsed call; None when it could not be parsed
    raw: str | None = None  # the text of an unparseable call
    error: str | None = None
    error_kind: Literal["malformed", "out_of_range"] | None = None
    img_idx: int | None = None
    crop_box_px: tuple[int, int, int, int] | None = None  # in the pixels of image img_idx
    crop_size: tuple[int, int] | None = None  # (width, height) of the image sent back
    forced: bool = False


@dataclass
class AgentTurn:
    """One model call. ``tool_call`` / ``crop_box_px`` / ``crop_size`` describe the turn's first executed zoom
    (else its first attempted call), ``error`` its first refused call; ``calls`` holds every call in order."""

    index: int
    reply_text: str
    tool_call: dict[str, Any] | None
    error: str | None
    crop_box_px: tuple[int, int, int, int] | None
    crop_size: tuple[int, int] | None
    prompt_tokens: int
    completion_tokens: int
    visual_tokens: int
    latency_ms: float
    forced: bool
    images_sent: int = 0
    finish_reason: str | None = None
    calls: list[ToolCallRecord] = field(default_factory=list)


@dataclass
class AgentResult:
    """The trajectory of one agent run (``to_dict()`` is the API's ``zwz_trajectory``)."""

    mode: Literal["agent"] = "agent"
    answer: str = ""
    stopped: Literal["answer", "turn_limit"] = "turn_limit"
    turns: list[AgentTurn] = field(default_factory=list)
    model_calls: int = 0
    image_encodings: int = 0  # images the model encoded, summed over calls (history re-sent each call)
    zoom_calls: int = 0  # crops made and sent back, forced ones included
    malformed_calls: int = 0
    out_of_range_calls: int = 0
    forced_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    visual_tokens: int = 0
    total_ms: float = 0.0

    def _add(self, turn: AgentTurn, encoded: int) -> None:
        self.turns.append(turn)
        self.model_calls += 1
        self.image_encodings += encoded
        self.prompt_tokens += turn.prompt_tokens
        self.completion_tokens += turn.completion_tokens
        self.visual_tokens += turn.visual_tokens
        for record in turn.calls:
            self.zoom_calls += record.crop_box_px is not None
            self.malformed_calls += record.error_kind == "malformed"
            self.out_of_range_calls += record.error_kind == "out_of_range"
            self.forced_calls += record.forced

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- the loop ---------------------------------------------------------------------------------------------------
def _calls_in_reply(reply: BackendReply) -> list[tuple[str, dict[str, Any] | ToolCallError]]:
    """The reply's calls: the endpoint's parsed ``tool_calls``, then any ``<tool_call>`` blocks left in its text
    (all of them when the endpoint parses none; those it could not parse when it does)."""
    out: list[tuple[str, dict[str, Any] | ToolCallError]] = []
    for tool_call in reply.tool_calls or []:
        function = tool_call.get("function") or {}
        arguments = function.get("arguments")
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        try:
            out.append((raw, parse_call_json(json.dumps({"name": function.get("name"), "arguments": arguments}))))
        except ToolCallError as exc:
            out.append((raw, exc))
    return out + extract_tool_calls(reply.text)


def _assistant_text(reply: BackendReply, forced_call: dict[str, Any] | None) -> str:
    parts = [reply.text] if reply.text else []
    for tool_call in reply.tool_calls or []:
        function = tool_call.get("function") or {}
        parts.append(format_tool_call(str(function.get("name")), function.get("arguments") or "{}"))
    if forced_call is not None:
        parts.append(format_tool_call(forced_call["name"], forced_call["arguments"]))
    return "\n".join(parts)


def _execute(parsed: dict[str, Any] | ToolCallError, raw: str | None, seen: list[Image.Image], *, forced: bool,
             crop_min_pixels: int | None, crop_max_pixels: int | None) -> tuple[ToolCallRecord, Image.Image | None]:
    """Validate one call and cut its crop (appended to ``seen``); a refused call yields its error record."""
    if isinstance(parsed, ToolCallError):
        return ToolCallRecord(call=None, raw=raw, error=str(parsed), error_kind=parsed.kind), None
    try:
        request = validate_zoom_call(parsed, len(seen))
    except ToolCallError as exc:
        return ToolCallRecord(call=parsed, error=str(exc), error_kind=exc.kind, forced=forced), None
    source = seen[request.img_idx]
    box = crop_box(request.bbox_2d, source.size)
    crop = crop_image(source, box, min_pixels=crop_min_pixels, max_pixels=crop_max_pixels)
    seen.append(crop)
    return ToolCallRecord(call=parsed, img_idx=request.img_idx, crop_box_px=box, crop_size=crop.size, forced=forced), crop


def _tool_response(outputs: list[tuple[ToolCallRecord, Image.Image | None]]) -> list[dict[str, Any]]:
    """The user turn carrying one ``<tool_response>`` block per call, adjacent text parts merged."""
    parts: list[dict[str, Any]] = []

    def text(value: str) -> None:
        if parts and parts[-1]["type"] == "text":
            parts[-1]["text"] += value
        else:
            parts.append({"type": "text", "text": value})

    for i, (record, crop) in enumerate(outputs):
        text(("\n" if i else "") + "<tool_response>\n")
        if crop is not None:
            parts.append({"type": "image", "image": crop})
        else:
            text(f"Error: {record.error}")
        text("\n</tool_response>")
    return parts


async def run_zoom_agent(
    backend: ChatBackend,
    images: list[Image.Image],
    question: str,
    *,
    max_turns: int = AGENT_MAX_TURNS,
    system_prompt: str | None = None,
    history: list[dict[str, Any]] | None = None,
    fixed_turns: int = AGENT_FIXED_TURNS,
    sampling: dict[str, Any] | None = None,
    crop_min_pixels: int | None = None,
    crop_max_pixels: int | None = None,
) -> AgentResult:
    """Answer ``question`` about ``images`` with the zoom tool; at most ``max_turns`` model calls (Qwen-Agent: 20).

    ``fixed_turns=K`` is a timing harness for models that never call tools (random weights): in each of the
    first K calls whose reply holds no executable zoom, the agent zooms on :data:`FORCED_ZOOM_BBOX` of the
    latest image as if the model had asked (the call is appended to the reply in the history and recorded with
    ``forced=True``); the model still generates its full reply every turn, so the cost is real.
    ``crop_min_pixels`` / ``crop_max_pixels`` rescale crops on the client (``QWEN_AGENT_CROP_MIN_PIXELS``
    reproduces Qwen-Agent); by default crops go as cut and the server's processor sizes them.

    ``history``: the conversation before the question's turn (its own system prompt and earlier turns, in the
    format of :mod:`zwz.analytics.zoom.backend`), sent with every call; ``img_idx`` then counts its images
    first, as the model sees them. ``system_prompt`` is the shorthand for a history of one system turn.

    A failed model call raises :class:`BackendError` with ``partial`` set to the trajectory so far.
    """
    if not images:
        raise ValueError("run_zoom_agent needs at least one image")
    if max_turns < 1 or fixed_turns < 0:
        raise ValueError(f"need max_turns >= 1 and fixed_turns >= 0 (got {max_turns}, {fixed_turns})")
    messages = list(history or [])
    if system_prompt:
        if messages and messages[0].get("role") == "system":
            raise ValueError("give the system prompt either as system_prompt or in history, not both")
        messages.insert(0, {"role": "system", "content": system_prompt})
    # img_idx indexes this: the conversation's images, the question's, then every crop in order.
    seen = [im for m in messages for im in message_images(m)] + list(images)
    messages.append(user_turn(images, question))
    crop_kw = {"crop_min_pixels": crop_min_pixels, "crop_max_pixels": crop_max_pixels}
    result = AgentResult()
    started = time.perf_counter()
    reply: BackendReply | None = None
    for index in range(max_turns):
        images_sent = count_images(messages)
        call_started = time.perf_counter()
        try:
            reply = await backend.complete(messages, tools=[ZOOM_TOOL], sampling=dict(sampling or {}))
        except BackendError as exc:
            result.total_ms = (time.perf_counter() - started) * 1000
            exc.partial = result
            raise
        latency_ms = (time.perf_counter() - call_started) * 1000

        outputs = [_execute(parsed, raw, seen, forced=False, **crop_kw) for raw, parsed in _calls_in_reply(reply)]
        forced_call = None
        if index < fixed_turns and not any(crop is not None for _, crop in outputs):
            bbox = list(FORCED_ZOOM_BBOX)
            forced_call = {"name": ZOOM_TOOL_NAME, "arguments": {"bbox_2d": bbox, "label": "centre (forced)",
                                                                 "img_idx": len(seen) - 1}}
            outputs.append(_execute(forced_call, None, seen, forced=True, **crop_kw))
        records = [record for record, _ in outputs]
        executed = [r for r in records if r.crop_box_px is not None]
        first = executed[0] if executed else (records[0] if records else None)
        turn = AgentTurn(
            index=index, reply_text=reply.text, tool_call=first.call if first else None,
            error=next((r.error for r in records if r.error), None),
            crop_box_px=first.crop_box_px if first else None, crop_size=first.crop_size if first else None,
            prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
            visual_tokens=reply.visual_tokens, latency_ms=latency_ms, forced=forced_call is not None,
            images_sent=images_sent, finish_reason=reply.finish_reason, calls=records,
        )
        result._add(turn, reply.images_encoded if reply.images_encoded is not None else images_sent)
        logger.debug("zoom agent turn %d: %d call(s), %d zoom(s), forced=%s, %.1f ms", index, len(records),
                     len(executed), turn.forced, latency_ms)
        if not records:
            result.answer, result.stopped = clean_answer(reply.text), "answer"
            break
        messages.append({"role": "assistant", "content": _assistant_text(reply, forced_call)})
        messages.append({"role": "user", "content": _tool_response(outputs)})
    else:
        assert reply is not None
        result.answer, result.stopped = clean_answer(reply.text), "turn_limit"
    result.total_ms = (time.perf_counter() - started) * 1000
    logger.debug("zoom agent: %s after %d call(s), %d zoom(s), %d malformed, %d out of range, %.0f ms",
                result.stopped, result.model_calls, result.zoom_calls, result.malformed_calls,
                result.out_of_range_calls, result.total_ms)
    return result
