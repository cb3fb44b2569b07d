"""Training-free attention zoom (paper App. 12), the one implementation that the server's ``attention_zoom``
mode, ``zwz eval``'s client-side mode and the Locust user all run: the relative-attention map of the question
picks a region, the region is cropped, and the model answers once on [image, crop].

    result = await run_attention_zoom(backend, [user_turn([image], "What is written on the small sign?")],
                                      sampling={"max_tokens": 64, "temperature": 0})
    result.answer, result.zoom_box, result.to_dict()   # the dict is the reply's ``zwz_trajectory``

``backend`` is an :class:`AttentionZoomBackend`: a chat backend that can also compute the map (the server's
engine, ``OpenAIBackend`` against a zwz server's ``POST /v1/zoom/attention``, the eval and Locust adapters).

The conversation is kept whole: the system prompt and earlier turns go to the answer call as they came. The
zoom applies to the last user turn (it must be the last message): the map is computed for that turn's first
image (the one :data:`ZOOMED_VIEW_NOTE` names) and its text; the answer's last turn is that turn's images, the
crop, then the note and the text.

Cost, counted the same wherever it runs: ``model_calls`` = 2 (the map's prefill, then the answer);
``image_encodings`` = 1 (the map's prefill encodes the image once) + every image the answer call sends (all the
conversation's images plus the crop, unless the backend reports fewer because it caches image prefixes). The
token totals (``prompt_tokens``...) are the answer call's, as the API's ``usage`` reports them; the map's
visual tokens are in its step.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from PIL import Image

from zwz.analytics.zoom.backend import (
    BackendError,
    BackendReply,
    ChatBackend,
    count_images,
    split_last_user_turn,
    user_turn,
)
from zwz.analytics.zoom.crop import fit_aspect_ratio
from zwz.analytics.zoom.requests import AttentionMapReply

logger = logging.getLogger(__name__)

__all__ = [
    "ZOOMED_VIEW_NOTE",
    "AttentionZoomBackend",
    "AttentionZoomResult",
    "ZoomStep",
    "run_attention_zoom",
    "suggested_crop_box",
    "zoomed_conversation",
]

# Told to the model with the crop, so it knows what the second image is.
ZOOMED_VIEW_NOTE = "The last image is a zoomed-in view of the region of the first image that matters most."


class AttentionZoomBackend(ChatBackend, Protocol):
    """A chat backend that also computes the relative-attention map's suggested zoom box for a question."""

    async def attention_map(self, image: Image.Image, question: str) -> AttentionMapReply: ...


@dataclass
class ZoomStep:
    """One model call of the attention zoom: the map's prefill (``attention_map``) or the ``answer``."""

    index: int
    kind: Literal["attention_map", "answer"]
    latency_ms: float
    visual_tokens: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    images_sent: int = 1
    finish_reason: str | None = None


@dataclass
class AttentionZoomResult:
    """The trajectory of one attention zoom (``to_dict()`` is the API's ``zwz_trajectory``)."""

    mode: Literal["attention_zoom"] = "attention_zoom"
    answer: str = ""
    finish_reason: str | None = None
    model_calls: int = 0
    image_encodings: int = 0
    zoom_box: tuple[int, int, int, int] | None = None  # pixels of the zoomed image
    crop_size: tuple[int, int] | None = None
    turns: list[ZoomStep] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    visual_tokens: int = 0
    total_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def suggested_crop_box(box: Any, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A map's suggested box as a crop box inside an image of ``size``: rounded, clipped, widened to the
    processor's aspect-ratio limit (``crop.fit_aspect_ratio``); ValueError if empty.

    >>> suggested_crop_box([10.4, -3, 700, 50.6], (640, 480))
    (10, 0, 640, 51)
    >>> suggested_crop_box([0, 0, 7000, 20], (7000, 40))
    (0, 0, 7000, 35)
    """
    try:
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"suggested_box {box!r} is not four numbers") from None
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(size[0], x2), min(size[1], y2)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"suggested_box {box!r} is empty inside the {size[0]}x{size[1]} image")
    return fit_aspect_ratio((x1, y1, x2, y2), size)


def zoomed_conversation(history: list[dict[str, Any]], images: list[Image.Image], question: str,
                        crop: Image.Image) -> list[dict[str, Any]]:
    """The answer call's conversation: ``history`` as it came, then the zoomed turn [images, crop, note + question].

    >>> turn = zoomed_conversation([], ["image"], "What is it?", "crop")[-1]
    >>> [p.get("image") for p in turn["content"]], turn["content"][-1]["text"].endswith("What is it?")
    (['image', 'crop', None], True)
    """
    return [*history, user_turn([*images, crop], f"{ZOOMED_VIEW_NOTE}\n{question}")]


async def run_attention_zoom(backend: AttentionZoomBackend, messages: list[dict[str, Any]], *,
                             sampling: dict[str, Any] | None = None) -> AttentionZoomResult:
    """Answer the last user turn of ``messages`` by attention zoom: map -> suggested box -> crop -> one answer.

    Raises ValueError when that turn has no image, and :class:`BackendError` (``partial`` set) when a call
    fails or the map's box is unusable.
    """
    history, images, question = split_last_user_turn(messages)
    if not images:
        raise ValueError("attention zoom needs an image in the last user message")
    image = images[0]
    result = AttentionZoomResult()
    started = time.perf_counter()
    try:
        mapped = await backend.attention_map(image, question)
        map_ms = (time.perf_counter() - started) * 1e3
        result.turns.append(ZoomStep(0, "attention_map", map_ms, visual_tokens=mapped.visual_tokens))
        result.model_calls, result.image_encodings = 1, 1  # the map's prefill encodes the image once
        try:
            box = suggested_crop_box(mapped.suggested_box, image.size)
        except ValueError as exc:
            raise BackendError(f"attention map: {exc}") from None
        crop = image.crop(box)
        result.zoom_box, result.crop_size = box, crop.size
        zoomed = zoomed_conversation(history, images, question, crop)
        images_sent = count_images(zoomed)
        answer_started = time.perf_counter()
        reply: BackendReply = await backend.complete(zoomed, tools=None, sampling=dict(sampling or {}))
    except BackendError as exc:
        result.total_ms = (time.perf_counter() - started) * 1e3
        exc.partial = result
        raise
    result.turns.append(ZoomStep(
        1, "answer", (time.perf_counter() - answer_started) * 1e3, visual_tokens=reply.visual_tokens,
        prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens, images_sent=images_sent,
        finish_reason=reply.finish_reason))
    result.model_calls += 1
    result.image_encodings += reply.images_encoded if reply.images_encoded is not None else images_sent
    result.answer, result.finish_reason = reply.text, reply.finish_reason
    result.prompt_tokens, result.completion_tokens = reply.prompt_tokens, reply.completion_tokens
    result.visual_tokens = reply.visual_tokens
    result.total_ms = (time.perf_counter() - started) * 1e3
    logger.debug("attention zoom: box %s, crop %s, %.0f ms", box, crop.size, result.total_ms)
    return result
