"""HTTP routes: parse, authenticate, delegate to the services, format. No logic beyond that.

``build_routers`` declares each route with the statuses it can answer on this server (401 only when an
API key is set, 501 only on an engine without attention maps), so the OpenAPI schema tells the truth.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel, Field

from zwz.server.api.body_parsing import OffLoopBodyRoute
from zwz.server.api.errors import APIError, error_responses
from zwz.server.api.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ModelCard,
    ModelList,
    ZoomAttentionRequest,
    ZoomAttentionResponse,
)
from zwz.server.metrics import ServerMetrics


# The API key check is the routers' one dependency, present only where a key is set; the endpoints read
# the services from app.state themselves: each resolved dependency costs FastAPI's solver per request.
# As a Security dependency it also puts the bearer scheme in the OpenAPI schema, for generated clients.
_bearer = HTTPBearer(auto_error=False, description="The server's API key (--api-key).")


async def require_api_key(request: Request,
                          credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]) -> None:
    expected = request.app.state.settings.api_key
    token = credentials.credentials.strip() if credentials is not None else ""
    if not secrets.compare_digest(token.encode(), expected.encode()):
        raise APIError(401, "invalid or missing API key (send 'Authorization: Bearer <key>')", code="invalid_api_key")


class Health(BaseModel):
    status: str
    engine: str
    model: str
    random_weights: bool
    trained_on: str | None = Field(None, description="What the weights were trained on (the model card), if known.")
    uptime_s: float


async def list_models(request: Request) -> ModelList:
    info = request.app.state.engine.info
    created = request.app.state.started_at
    return ModelList(data=[ModelCard(id=name, created=created, max_model_len=info.max_model_len)
                           for name in request.app.state.served_model_names])


async def chat_completions(body: ChatCompletionRequest, request: Request):
    metrics: ServerMetrics = request.app.state.metrics
    metrics.in_flight.inc()
    try:
        result = await request.app.state.chat.create(body)
    except BaseException:
        metrics.in_flight.dec()
        raise
    if not body.stream:
        metrics.in_flight.dec()
        # An extension appears only when asked for; pydantic writes the JSON itself (no dict, no json.dumps).
        unasked = {name for name in ("zwz_attention", "zwz_trajectory") if getattr(result, name) is None}
        return Response(result.model_dump_json(exclude=unasked), media_type="application/json")

    async def close() -> None:
        metrics.in_flight.dec()
        await result.aclose()

    return _ClosingStream(result, close, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


class _ClosingStream(StreamingResponse):
    """A stream whose ``on_close`` runs however it ends. A client that leaves before the first byte makes
    Starlette cancel the response before it starts the body iterator, so a ``finally`` in the iterator would
    never run (the in-flight gauge would keep the request for ever)."""

    def __init__(self, content, on_close: Callable[[], Awaitable[None]], **kwargs) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()


async def zoom_attention(body: ZoomAttentionRequest, request: Request):
    """The relative-attention map of a question over an image (paper App. 12), with coverage and heatmap."""
    metrics: ServerMetrics = request.app.state.metrics
    metrics.in_flight.inc()
    try:
        result = await request.app.state.attention.create(body)
        return Response(result.model_dump_json(), media_type="application/json")
    finally:
        metrics.in_flight.dec()


async def health(request: Request) -> Health:
    info = request.app.state.engine.info
    return Health(status="ok", engine=info.engine, model=request.app.state.served_model_names[0],
                  random_weights=info.random_weights, trained_on=request.app.state.trained_on,
                  uptime_s=round(time.time() - request.app.state.started_at, 1))


async def metrics_endpoint(request: Request) -> Response:
    metrics: ServerMetrics = request.app.state.metrics
    metrics.queue_depth.set(request.app.state.engine.queue_depth)
    # Our registry plus the process-wide one (where engines such as vLLM register theirs).
    body = generate_latest(metrics.registry) + generate_latest(REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


# Before OpenAPI 3.2 (FastAPI writes 3.1) an event stream's `schema` describes one event, as parsed from the
# stream: its `data` (and `event`, `id`, `retry` where sent).
_SSE_EVENT = {"type": "object", "required": ["data"],
              "properties": {"data": {"type": "string", "description": "A chat.completion.chunk as JSON, or [DONE]."},
                             "event": {"type": "string"}, "id": {"type": "string"}, "retry": {"type": "integer"}}}
_SSE = {"text/event-stream": {"schema": _SSE_EVENT,
                              "description": "With `stream: true`: `data: <chat.completion.chunk JSON>` events, "
                                             "then `data: [DONE]`."}}
_PROMETHEUS = {"text/plain": {"schema": {"type": "string"},
                              "description": "Prometheus text exposition format."}}


def build_routers(*, api_key: bool, attention_maps: bool) -> list[APIRouter]:
    """The /v1 and ops routers, each route declaring exactly the statuses it can answer here."""
    auth = (401,) if api_key else ()
    no_maps = () if attention_maps else (501,)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)] if api_key else [],
                   route_class=OffLoopBodyRoute)
    v1.add_api_route("/models", list_models, methods=["GET"], responses=error_responses(*auth))
    v1.add_api_route(
        "/chat/completions", chat_completions, methods=["POST"], response_model=None,
        responses={200: {"model": ChatCompletionResponse, "content": _SSE,
                         "description": "The completion (JSON), or its SSE stream with `stream: true`."},
                   **error_responses(400, *auth, 404, 413, *no_maps, 503)})
    v1.add_api_route(
        "/zoom/attention", zoom_attention, methods=["POST"], response_model=None,
        responses={200: {"model": ZoomAttentionResponse, "description": "The attention map."},
                   **error_responses(400, *auth, 404, 413, *no_maps, 503)})
    ops = APIRouter()
    ops.add_api_route("/health", health, methods=["GET"])
    ops.add_api_route("/metrics", metrics_endpoint, methods=["GET"], response_class=PlainTextResponse,
                      responses={200: {"content": _PROMETHEUS, "description": "The server's and the engine's metrics."}})
    return [v1, ops]
