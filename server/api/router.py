"""HTTP routes: parse, authenticate, delegate to the services, format. No logic beyond that."""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from zwz.server.api.errors import APIError
from zwz.server.api.protocol import ChatCompletionRequest, ModelCard, ModelList, ZoomAttentionRequest
from zwz.server.engines.base import Engine
from zwz.server.metrics import ServerMetrics
from zwz.server.serving.attention import AttentionService
from zwz.server.serving.chat import ChatService


# Dependencies are ``async def`` on purpose: FastAPI runs plain ``def`` ones in a thread pool, and each
# such hop cost about a millisecond per request on a busy 2-core machine.
async def require_api_key(request: Request) -> None:
    expected = request.app.state.settings.api_key
    if not expected:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), expected.encode()):
        raise APIError(401, "invalid or missing API key (send 'Authorization: Bearer <key>')", code="invalid_api_key")


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def get_chat(request: Request) -> ChatService:
    return request.app.state.chat


async def get_metrics(request: Request) -> ServerMetrics:
    return request.app.state.metrics


async def get_attention(request: Request) -> AttentionService:
    return request.app.state.attention


EngineDep = Annotated[Engine, Depends(get_engine)]
Chat = Annotated[ChatService, Depends(get_chat)]
Attention = Annotated[AttentionService, Depends(get_attention)]
Metrics = Annotated[ServerMetrics, Depends(get_metrics)]

v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])
ops = APIRouter()


@v1.get("/models")
async def list_models(request: Request, engine: EngineDep) -> ModelList:
    info = engine.info
    created = request.app.state.started_at
    return ModelList(data=[ModelCard(id=name, created=created, max_model_len=info.max_model_len)
                           for name in request.app.state.served_model_names])


@v1.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, chat: Chat, metrics: Metrics):
    metrics.in_flight.inc()
    try:
        result = await chat.create(body)
    except BaseException:
        metrics.in_flight.dec()
        raise
    if not body.stream:
        metrics.in_flight.dec()
        payload = result.model_dump()
        for extension in ("zwz_attention", "zwz_trajectory"):  # an extension appears only when asked for
            if payload.get(extension) is None:
                payload.pop(extension, None)
        return JSONResponse(payload)

    async def stream():
        try:
            async for event in result:
                yield event
        finally:
            metrics.in_flight.dec()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@v1.post("/zoom/attention")
async def zoom_attention(body: ZoomAttentionRequest, attention: Attention, metrics: Metrics):
    """The relative-attention map of a question over an image (paper App. 12), with coverage and heatmap."""
    metrics.in_flight.inc()
    try:
        return (await attention.create(body)).model_dump()
    finally:
        metrics.in_flight.dec()


@ops.get("/health")
async def health(request: Request, engine: EngineDep) -> dict:
    info = engine.info
    return {"status": "ok", "engine": info.engine, "model": request.app.state.served_model_names[0],
            "random_weights": info.random_weights, "uptime_s": round(time.time() - request.app.state.started_at, 1)}


@ops.get("/metrics")
async def metrics_endpoint(engine: EngineDep, metrics: Metrics) -> Response:
    metrics.queue_depth.set(engine.queue_depth)
    # Our registry plus the process-wide one (where engines such as vLLM register theirs).
    body = generate_latest(metrics.registry) + generate_latest(REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
