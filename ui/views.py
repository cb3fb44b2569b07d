"""The UI's views of one question, each answered through the server independently and concurrently.

- ``single``: one pass on the whole image (the paper's global view);
- ``regional``: one pass on the evidence crop (an example's ``crop_image``, else the evidence box's region);
- ``agent``: the tool-use zoom agent (``zwz_mode="agent"``); its crops are re-cut here from the boxes in
  ``zwz_trajectory``, so no image travels back;
- ``attention_zoom``: the relative-attention map picks a region, then one pass on [image, crop]
  (``zwz_mode="attention_zoom"``);
- ``heatmap``: the relative-attention map itself (``POST /v1/zoom/attention``), with the box's coverage.

A view that fails carries its error; the others are unaffected.

    query = Query(image, "What word is on the sign?", box=(410, 220, 520, 300))
    async with ZwzClient(url) as client:
        async for result in run_views(client, query):
            print(result.view, result.answer or result.error, result.latency_ms)
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw

from zwz.defaults import AGENT_FIXED_TURNS, AGENT_MAX_TURNS, ANSWER_MAX_TOKENS
from zwz.analytics.zoom.requests import ZoomModeIgnored, pixel_budget, reply_trajectory, zoom_mode_fields
from zwz.endpoint import image_data_url
from zwz.ui.client import ServerError, ZwzClient

logger = logging.getLogger(__name__)

__all__ = ["ANSWER_VIEWS", "VIEWS", "Query", "RunSettings", "ViewResult", "ViewUnavailable", "agent_crops",
           "draw_boxes", "format_box", "parse_box", "run_views", "verdict"]

ANSWER_VIEWS = ("single", "regional", "agent", "attention_zoom")  # the API's mode names (zwz.defaults.MODES)
VIEWS = (*ANSWER_VIEWS, "heatmap")
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class RunSettings:
    """Request settings shared by the views (greedy decoding throughout, so runs are repeatable)."""

    max_tokens: int = ANSWER_MAX_TOKENS
    agent_max_turns: int = AGENT_MAX_TURNS
    agent_fixed_turns: int = AGENT_FIXED_TURNS  # zoom this many times even when the model does not ask (random-weight demos)
    layer: int | None = None  # attention layer; None: the server's default (by relative depth)
    max_pixels: int | None = None  # per-request image pixel budget; None: the server's


@dataclass
class Query:
    """One question about one image. ``crop``: the regional view's image (None: cut ``box``)."""

    image: Image.Image
    question: str
    box: Box | None = None
    crop: Image.Image | None = None
    crop_note: str = "the evidence box"
    reference: str | None = None  # the expected answer, when known
    options: list[str] | None = None  # multiple-choice option texts, when the reference is a letter
    image_bytes: bytes | None = None  # the uploaded file, sent as it is when the server reads its format
    settings: RunSettings = field(default_factory=RunSettings)


@dataclass
class ViewResult:
    """One view's outcome: an answer with its cost, or an error."""

    view: str
    answer: str | None = None
    error: str | None = None
    skipped: bool = False  # the view could not apply to this query (``error`` says why); not a failure
    latency_ms: float | None = None  # wall time of the view's HTTP call(s), seen from the UI
    model_calls: int | None = None
    visual_tokens: int | None = None
    verdict: str | None = None  # "correct" | "incorrect" | "unjudged"; None: no reference answer
    images: list[tuple[Image.Image, str]] = field(default_factory=list)  # what the view looked at, captioned
    box: Box | None = None  # regional: the crop's box; attention_zoom / heatmap: the zoom box
    coverage: float | None = None  # heatmap: share of the map's mass inside the evidence box
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready fields (no images) for the API output and logs."""
        out = {"view": self.view, "answer": self.answer, "error": self.error, "skipped": self.skipped or None,
               "latency_ms": self.latency_ms,
               "model_calls": self.model_calls, "visual_tokens": self.visual_tokens, "verdict": self.verdict,
               "box": list(self.box) if self.box else None, "coverage": self.coverage,
               "images": [caption for _, caption in self.images], **self.details}
        return {k: v for k, v in out.items() if v is not None}


# -- boxes ------------------------------------------------------------------------------------------------
def parse_box(text: str | None, size: tuple[int, int]) -> Box | None:
    """``"x1, y1, x2, y2"`` (pixels; brackets, commas or spaces) -> a box inside an image of ``size``.

    Blank text is no box. Raises ``ValueError`` with a message for the UI.

    >>> parse_box("[10, 20, 110.4, 80]", (200, 100)), parse_box("  ", (200, 100))
    ((10, 20, 110, 80), None)
    >>> parse_box("10 20 300 80", (200, 100))
    Traceback (most recent call last):
    ...
    ValueError: evidence box (10, 20, 300, 80) is not inside the 200x100 image
    """
    if not text or not text.strip():
        return None
    parts = text.replace("[", " ").replace("]", " ").replace("(", " ").replace(")", " ").replace(",", " ").split()
    try:
        values = [round(float(p)) for p in parts]
    except ValueError:
        raise ValueError(f"evidence box {text.strip()!r} is not four numbers x1,y1,x2,y2") from None
    if len(values) != 4:
        raise ValueError(f"evidence box {text.strip()!r} is not four numbers x1,y1,x2,y2")
    x1, y1, x2, y2 = values
    width, height = size
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise ValueError(f"evidence box ({x1}, {y1}, {x2}, {y2}) is not inside the {width}x{height} image")
    return x1, y1, x2, y2


def format_box(box: Box | list[int] | None) -> str:
    """``(1, 2, 3, 4)`` -> ``"1,2,3,4"``; None -> ``""``."""
    return "" if box is None else ",".join(str(int(v)) for v in box)


def draw_boxes(image: Image.Image, boxes: list[tuple[Box, tuple[int, int, int]]],
               max_side: int | None = 1024) -> Image.Image:
    """A copy of ``image`` (downscaled to ``max_side``) with each (box, colour) outlined."""
    out = image.convert("RGB")
    scale = 1.0
    if max_side and max(out.size) > max_side:
        scale = max_side / max(out.size)
        out = out.resize((round(out.width * scale), round(out.height * scale)), Image.Resampling.LANCZOS)
    else:
        out = out.copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 300))
    for box, colour in boxes:
        draw.rectangle([round(v * scale) for v in box], outline=colour, width=width)
    return out


def agent_crops(image: Image.Image, trajectory: dict[str, Any] | None) -> list[tuple[Image.Image, str]]:
    """The crops the agent took, re-cut from the boxes in its trajectory, captioned.

    Each executed call names ``img_idx`` (0: the image; k: the k-th crop so far) and ``crop_box_px`` in that
    image's pixels; crops are replayed in order so nested zooms cut from the crop they zoomed into.

    >>> traj = {"turns": [{"index": 0, "calls": [{"img_idx": 0, "crop_box_px": [0, 0, 50, 40], "forced": True,
    ...          "call": {"arguments": {"label": "centre"}}}]},
    ...         {"index": 1, "calls": [{"img_idx": 1, "crop_box_px": [10, 10, 30, 30], "call": None}]}]}
    >>> [(c.size, caption) for c, caption in agent_crops(Image.new("RGB", (100, 80)), traj)]
    [((50, 40), 'turn 1: centre [0,0,50,40] of image 0 (forced)'), ((20, 20), 'turn 2: [10,10,30,30] of image 1')]
    """
    seen = [image]
    out: list[tuple[Image.Image, str]] = []
    for turn in (trajectory or {}).get("turns") or []:
        for call in turn.get("calls") or []:
            box, idx = call.get("crop_box_px"), call.get("img_idx")
            if box is None or idx is None or not 0 <= int(idx) < len(seen):
                continue
            crop = seen[int(idx)].crop(tuple(int(v) for v in box))
            size = call.get("crop_size")
            if size and tuple(size) != crop.size:  # the agent rescaled the crop it sent
                crop = crop.resize(tuple(int(v) for v in size), Image.Resampling.BICUBIC)
            seen.append(crop)
            label = ((call.get("call") or {}).get("arguments") or {}).get("label")
            named = f"{label} " if label else ""
            caption = f"turn {int(turn.get('index', 0)) + 1}: {named}[{format_box(box)}] of image {idx}"
            out.append((crop, caption + (" (forced)" if call.get("forced") else "")))
    return out


# -- scoring ----------------------------------------------------------------------------------------------
def verdict(answer: str, reference: str | None, question: str = "", options: list[str] | None = None) -> str | None:
    """``correct`` / ``incorrect`` by the benchmark rules (App. 9.3), ``unjudged`` when the rules cannot decide
    (the UI runs no LLM judge); None without a reference.

    >>> verdict("B", "B", options=["red", "blue"]), verdict("7", "9"), verdict("anything", None)
    ('correct', 'incorrect', None)
    """
    if reference is None or not reference.strip():
        return None
    from zwz.scoring import make_benchmark_scorer

    result = make_benchmark_scorer().score(answer, reference.strip(), question=question, options=options)
    if result.score is None:
        return "unjudged"
    return "correct" if result.score >= 1.0 else "incorrect"


class ViewUnavailable(Exception):
    """The view cannot run for this query (not a server failure); the message says why."""


# -- the views --------------------------------------------------------------------------------------------
def _pixels(settings: RunSettings) -> dict[str, Any]:
    return pixel_budget(settings.max_pixels)


def _usage(body: dict[str, Any]) -> int | None:
    return (body.get("usage") or {}).get("visual_tokens")


async def _single(client: ZwzClient, q: Query, url: str) -> ViewResult:
    reply = await client.chat([url], q.question, max_tokens=q.settings.max_tokens, extra=_pixels(q.settings))
    return ViewResult("single", reply.text, latency_ms=reply.latency_ms, model_calls=1,
                      visual_tokens=_usage(reply.body))


async def _regional(client: ZwzClient, q: Query, url: str) -> ViewResult:
    if q.crop is not None:
        crop, box = q.crop, q.box
    elif q.box is not None:
        crop, box = q.image.crop(q.box), q.box
    else:
        raise ViewUnavailable("needs an evidence box: click two corners on the image or type x1,y1,x2,y2")
    crop_url = await asyncio.to_thread(image_data_url, crop)
    reply = await client.chat([crop_url], q.question, max_tokens=q.settings.max_tokens, extra=_pixels(q.settings))
    caption = f"{q.crop_note}, {crop.width}x{crop.height} px"
    return ViewResult("regional", reply.text, latency_ms=reply.latency_ms, model_calls=1,
                      visual_tokens=_usage(reply.body), images=[(crop, caption)], box=box)


async def _agent(client: ZwzClient, q: Query, url: str) -> ViewResult:
    s = q.settings
    extra = zoom_mode_fields("agent", max_turns=s.agent_max_turns, fixed_turns=s.agent_fixed_turns) | _pixels(s)
    reply = await client.chat([url], q.question, max_tokens=s.max_tokens, extra=extra)
    trajectory = _trajectory(reply.body, "agent")
    crops = await asyncio.to_thread(agent_crops, q.image, trajectory)
    details = {k: trajectory.get(k) for k in ("stopped", "zoom_calls", "malformed_calls", "out_of_range_calls",
                                               "forced_calls", "image_encodings")}
    return ViewResult("agent", reply.text, latency_ms=reply.latency_ms, model_calls=trajectory.get("model_calls"),
                      visual_tokens=_usage(reply.body), images=crops, details=details)


async def _attention_zoom(client: ZwzClient, q: Query, url: str) -> ViewResult:
    reply = await client.chat([url], q.question, max_tokens=q.settings.max_tokens,
                              extra=zoom_mode_fields("attention_zoom") | _pixels(q.settings))
    trajectory = _trajectory(reply.body, "attention_zoom")
    box = tuple(int(v) for v in trajectory.get("zoom_box") or ())
    images = []
    if len(box) == 4:
        images.append((q.image.crop(box), f"zoom box [{format_box(box)}]"))
    return ViewResult("attention_zoom", reply.text, latency_ms=reply.latency_ms,
                      model_calls=trajectory.get("model_calls"), visual_tokens=_usage(reply.body), images=images,
                      box=box if len(box) == 4 else None,
                      details={"image_encodings": trajectory.get("image_encodings")})


async def _heatmap(client: ZwzClient, q: Query, url: str) -> ViewResult:
    s = q.settings
    reply = await client.attention(url, q.question, box=list(q.box) if q.box else None, layer=s.layer,
                                   max_pixels=s.max_pixels)
    body = reply.body
    images = []
    if body.get("heatmap_png"):
        heat = await asyncio.to_thread(_decode_png, body["heatmap_png"])
        images.append((heat, f"layer {body.get('layer')}, grid {body.get('grid_shape')}"))
    box = body.get("suggested_box")
    details = {"layer": body.get("layer"), "grid_shape": body.get("grid_shape"),
               "server_ms": (body.get("timings_ms") or {}).get("total")}
    return ViewResult("heatmap", latency_ms=reply.latency_ms, model_calls=1, visual_tokens=body.get("visual_tokens"),
                      images=images, box=tuple(int(v) for v in box) if box else None, coverage=body.get("coverage"),
                      details=details)


def _trajectory(body: dict[str, Any], mode: str) -> dict[str, Any]:
    try:
        return reply_trajectory(body, mode)
    except ZoomModeIgnored as exc:  # a plain OpenAI-compatible server ignores zwz_mode and answers in one pass
        raise ServerError(str(exc)) from None


def _decode_png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


_RUNNERS: dict[str, Callable[[ZwzClient, Query, str], Awaitable[ViewResult]]] = {
    "single": _single, "regional": _regional, "agent": _agent, "attention_zoom": _attention_zoom, "heatmap": _heatmap,
}


async def _guarded(view: str, client: ZwzClient, q: Query, url: str) -> ViewResult:
    try:
        result = await _RUNNERS[view](client, q, url)
    except ViewUnavailable as exc:
        return ViewResult(view, error=str(exc), skipped=True)
    except ServerError as exc:
        return ViewResult(view, error=str(exc))
    except Exception as exc:  # a bug in one view must not take the others down
        logger.exception("view %s failed", view)
        return ViewResult(view, error=f"{type(exc).__name__}: {exc}")
    if view in ANSWER_VIEWS:
        result.verdict = await asyncio.to_thread(verdict, result.answer or "", q.reference, q.question, q.options)
    return result


async def run_views(client: ZwzClient, q: Query, views: tuple[str, ...] = VIEWS) -> AsyncIterator[ViewResult]:
    """Run ``views`` concurrently; yield each result as it finishes (errors included, never raised)."""
    url = await asyncio.to_thread(image_data_url, q.image, q.image_bytes)
    tasks = [asyncio.ensure_future(_guarded(view, client, q, url)) for view in views]
    try:
        for next_done in asyncio.as_completed(tasks):
            yield await next_done
    finally:  # a consumer that stops early (the page went away) leaves no request running
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
