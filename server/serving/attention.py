"""Attention maps over HTTP: POST /v1/zoom/attention, the payload the chat extension reuses, and the one
refusal every attention feature gives on an engine without maps (``require_attention_maps``)."""

from __future__ import annotations

import asyncio
import time

from PIL import Image

from zwz.analytics.attention.coverage import coverage
from zwz.analytics.attention.grid import GridGeometry
from zwz.analytics.attention.heatmap import overlay_png_base64
from zwz.analytics.attention.relative_attention import RelativeAttention
from zwz.analytics.attention.zoom_box import suggest_zoom_box
from zwz.server.api.errors import APIError
from zwz.server.api.protocol import AttentionMap, ZoomAttentionRequest, ZoomAttentionResponse
from zwz.server.engines.base import AttentionMapper, Engine
from zwz.server.metrics import ServerMetrics
from zwz.server.serving.media import MediaPolicy, load_image
from zwz.server.serving.visual_budget import VisualBudget, admit_for


def require_attention_maps(engine: Engine) -> AttentionMapper:
    """The engine's attention maps, or the 501 that chat ``zwz_attention``, /v1/zoom/attention and the
    ``attention_zoom`` mode all answer when it has none."""
    if engine.attention_maps is None:
        raise APIError(501, f"the {engine.info.engine} engine cannot compute attention maps; serve with "
                            "--engine transformers or --engine vllm, which both make them", code="not_supported")
    return engine.attention_maps


def check_box(box: list[float] | None, image_size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """A box must be non-empty and lie inside the image (original pixels)."""
    if box is None:
        return None
    x1, y1, x2, y2 = box
    width, height = image_size
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise APIError(400, f"box {list(box)} is empty or outside the {width}x{height} image "
                            "(need 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height)", param="box",
                       code="box_out_of_range")
    return (x1, y1, x2, y2)


def attention_payload(result: RelativeAttention, image: Image.Image, box: tuple[float, ...] | None,
                      heatmap: bool) -> AttentionMap:
    """Turn a computed map into the API's payload: coverage, suggested zoom box, optional heatmap."""
    t0 = time.perf_counter()
    geometry = GridGeometry.from_grid_thw(image.size, result.image_grid_thw)
    suggested = suggest_zoom_box(result.grid, geometry)
    payload = {
        "layer": result.layer,
        "grid": result.grid.tolist(),
        "grid_shape": result.grid_shape,
        "image_size": image.size,
        "suggested_box": tuple(int(v) for v in suggested),
        "method": result.method,
    }
    if len(result.layers) > 1:
        payload["layer_grids"] = {str(layer): grid.tolist() for layer, grid in result.layers.items()}
    if box is not None:
        payload["coverage"] = coverage(result.grid, geometry, box)
        if len(result.layers) > 1:
            payload["coverage_by_layer"] = {str(layer): coverage(grid, geometry, box)
                                            for layer, grid in result.layers.items()}
    if heatmap:
        payload["heatmap_png"] = overlay_png_base64(image, result.grid, box=box, suggested_box=suggested)
    timings = dict(result.timings_ms)
    timings["render"] = (time.perf_counter() - t0) * 1e3
    return AttentionMap(timings_ms=timings, **payload)


class AttentionService:
    mode = "attention_map"  # the metrics label of these requests

    def __init__(self, engine: Engine, served_model_names: list[str], media: MediaPolicy,
                 metrics: ServerMetrics) -> None:
        self.engine = engine
        self.served_model_names = served_model_names
        self.media = media
        self.visual = VisualBudget.for_model(engine.info)
        self.metrics = metrics

    async def create(self, request: ZoomAttentionRequest) -> ZoomAttentionResponse:
        started = time.perf_counter()
        if request.model is not None and request.model not in self.served_model_names:
            raise APIError(404, f"the model {request.model!r} does not exist; this server serves "
                                f"{', '.join(self.served_model_names)}", param="model", code="model_not_found")
        maps = require_attention_maps(self.engine)
        mm = request.mm_processor_kwargs
        # An image whose visual tokens overflow the context is refused from its header, undecoded.
        admit = admit_for(self.visual, mm.min_pixels if mm else None, mm.max_pixels if mm else None)
        image = await asyncio.to_thread(load_image, request.image, self.media, admit)
        box = check_box(request.box, image.size)
        result = await maps.analyze(image, request.question, layers=request.layer, method=request.method,
                                    min_pixels=mm.min_pixels if mm else None,
                                    max_pixels=mm.max_pixels if mm else None)
        payload = await asyncio.to_thread(attention_payload, result, image, box, request.heatmap)
        elapsed = time.perf_counter() - started
        payload.timings_ms["total"] = elapsed * 1e3
        t, rows, cols = result.image_grid_thw[0], *result.grid_shape
        self.metrics.requests.labels(mode=self.mode).inc()
        self.metrics.request_duration.labels(mode=self.mode).observe(elapsed)
        self.metrics.visual_tokens.labels(mode=self.mode).inc(t * rows * cols)
        return ZoomAttentionResponse(model=self.served_model_names[0], visual_tokens=t * rows * cols,
                                     **payload.model_dump())
