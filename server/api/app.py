"""Assembles the FastAPI app: settings, engine, services, routes, middleware. No logic of its own."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from zwz.model_card import read_card
from zwz.server.api.body_parsing import BodyParser
from zwz.server.api.errors import document_errors, install_error_handlers
from zwz.server.api.limits import BodySizeLimit
from zwz.server.api.request_shape import RequestLimits
from zwz.server.api.router import build_routers
from zwz.server.engines.base import Engine, missing_members
from zwz.server.metrics import ServerMetrics
from zwz.server.serving.attention import AttentionService
from zwz.server.serving.chat import ChatLimits, ChatService
from zwz.server.serving.media import MediaPolicy
from zwz.server.settings import ServerSettings


def create_app(settings: ServerSettings, engine: Engine, *, own_engine: bool = True) -> FastAPI:
    """The app serving ``engine``; with ``own_engine`` the app starts and stops it with its lifespan."""
    missing = missing_members(engine)
    if missing:  # at assembly, not on the first request that needs the member
        raise TypeError(f"{type(engine).__name__} does not implement the Engine protocol "
                        f"(zwz.server.engines.base): it lacks {', '.join(missing)}")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await engine.start()
        try:
            yield
        finally:
            app.state.body_parser.shutdown()
            if own_engine:
                await engine.stop()

    app = FastAPI(title="zwz", version="0.1.0", lifespan=lifespan)
    metrics = ServerMetrics()
    served = [settings.served_model_name or Path(engine.info.model_dir).name]
    media = MediaPolicy(
        max_image_pixels=settings.max_image_pixels,
        max_image_bytes=settings.max_body_bytes,
        allowed_local_dir=settings.allowed_local_media_dir,
        allow_remote=settings.allow_remote_media,
        remote_timeout_s=settings.remote_media_timeout_s,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.served_model_names = served
    card = read_card(engine.info.model_dir)
    app.state.trained_on = card["trained_on"] if card else None
    app.state.started_at = int(time.time())
    app.state.body_parser = BodyParser()
    app.state.request_limits = RequestLimits.from_settings(settings)  # once: the routes bind them per request
    app.state.chat = ChatService(engine, served, ChatLimits(settings.max_images_per_request, media), metrics)
    app.state.attention = AttentionService(engine, served, media, metrics)
    engine.batch_listeners.append(metrics.batch_size.observe)
    install_error_handlers(app, on_error=metrics.record_error)
    for router in build_routers(api_key=bool(settings.api_key), attention_maps=engine.attention_maps is not None):
        app.include_router(router)
    document_errors(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, on_reject=metrics.record_error)
    return app
