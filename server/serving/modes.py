"""The zoom modes of chat completions, so the same weights serve every protocol per request.

- ``agent``: the tool-use zoom agent baseline ("thinking with images", ``analytics/zoom_agent.py``), each
  model call served by this process's engine;
- ``attention_zoom``: training-free zoom: the relative-attention map picks a region, then one answer on
  [image, crop].
Both answer the last user turn about its images and report their model calls in ``zwz_trajectory``.
"""

from __future__ import annotations

import time
from typing import Any

from PIL import Image

from zwz.analytics.zoom.tool import ZOOMED_VIEW_NOTE
from zwz.server.engines.base import ChatMessage, GenerationRequest, SamplingParams
from zwz.server.api.errors import APIError



def last_user_question(request) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            if isinstance(message.content, str):
                return message.content
            return "\n".join(part.text for part in message.content or [] if getattr(part, "type", "") == "text")
    raise APIError(400, "zoom modes need a user message", param="messages")


async def run_agent_mode(engine, request, generation: GenerationRequest, images: list[Image.Image]):
    """(answer, finish_reason, usage totals, trajectory) of the tool-use agent."""
    from zwz.analytics.zoom.agent import run_zoom_agent
    from zwz.server.serving.agent_backend import EngineBackend

    options = request.zwz_agent
    backend = EngineBackend(engine, min_pixels=generation.min_pixels, max_pixels=generation.max_pixels)
    result = await run_zoom_agent(
        backend, images, last_user_question(request),
        max_turns=options.max_turns if options else 20,
        fixed_turns=options.fixed_turns if options else 0,
        sampling=_sampling_dict(generation.sampling),
    )
    trajectory = {"mode": "agent", **result.to_dict()}
    usage = (result.prompt_tokens, result.completion_tokens, result.visual_tokens)
    finish = "length" if result.stopped == "turn_limit" else "stop"
    return result.answer, finish, usage, trajectory


async def run_attention_zoom_mode(engine, request, generation: GenerationRequest, images: list[Image.Image]):
    """(answer, finish_reason, usage totals, trajectory): map -> suggested box -> answer on [image, crop]."""
    from zwz.analytics.attention.grid import GridGeometry
    from zwz.analytics.attention.zoom_box import suggest_zoom_box
    from zwz.server.serving.attention import require_attention_maps

    maps = require_attention_maps(engine)
    question = last_user_question(request)
    image = images[-1]
    t0 = time.perf_counter()
    result = await maps.analyze(image, question, min_pixels=generation.min_pixels, max_pixels=generation.max_pixels)
    box = suggest_zoom_box(result.grid, GridGeometry.from_grid_thw(image.size, result.image_grid_thw))
    map_ms = (time.perf_counter() - t0) * 1e3
    crop = image.crop(box)
    zoomed = GenerationRequest(
        messages=[ChatMessage("user", [*images, crop, f"{ZOOMED_VIEW_NOTE}\n{question}"])],
        sampling=generation.sampling, min_pixels=generation.min_pixels, max_pixels=generation.max_pixels,
        stream=False,
    )
    t1 = time.perf_counter()
    parts, last = [], None
    async for chunk in await engine.submit(zoomed):
        parts.append(chunk.text)
        last = chunk
    answer_ms = (time.perf_counter() - t1) * 1e3
    t, rows, cols = result.image_grid_thw[0], *result.grid_shape
    trajectory: dict[str, Any] = {
        "mode": "attention_zoom",
        "model_calls": 2,  # the map's prefill, then the answer
        "image_encodings": 1 + len(images) + 1,
        "zoom_box": list(box),
        "crop_size": list(crop.size),
        "turns": [
            {"index": 0, "kind": "attention_map", "latency_ms": map_ms, "visual_tokens": t * rows * cols},
            {"index": 1, "kind": "answer", "latency_ms": answer_ms, "prompt_tokens": last.prompt_tokens,
             "completion_tokens": last.completion_tokens, "visual_tokens": last.visual_tokens},
        ],
        "total_ms": map_ms + answer_ms,
    }
    usage = (last.prompt_tokens, last.completion_tokens, last.visual_tokens)
    return "".join(parts), last.finish_reason, usage, trajectory


def _sampling_dict(sampling: SamplingParams) -> dict[str, Any]:
    return {k: v for k, v in vars(sampling).items() if v is not None and v != []}


MODES = {"agent": run_agent_mode, "attention_zoom": run_attention_zoom_mode}
