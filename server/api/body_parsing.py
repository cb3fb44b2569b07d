"""Big JSON bodies are parsed and validated in a worker process, so the event loop keeps serving meanwhile.

pydantic (and ``json``) hold the GIL for a whole parse: a 30 MB body of a million tiny messages takes
seconds, and a thread would stall the loop just the same. Bodies over ``threshold_bytes`` therefore go to a
one-worker process pool (one at a time: a flood of big bodies queues there, not on the loop), which runs
the route's own pydantic model on the raw bytes, so every validator the model has (the request-shape
limits included) applies. An invalid body comes back as its error list only (no input echoed); a valid
one comes back as the model instance, which FastAPI then accepts without validating it again.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from zwz.server.api.request_shape import RequestLimits, bound_limits

logger = logging.getLogger(__name__)

# Bodies up to this many bytes are parsed inline: a 448 px photo's request is ~40 KB and parses in well under
# a millisecond, while the hop to the worker process costs a few.
DEFAULT_THRESHOLD_BYTES = 1024 * 1024
# A worker that parsed a huge body keeps its peak memory; a fresh one after this many parses gives it back.
_PARSES_PER_WORKER = 8


def _validate(model: type[BaseModel], body: bytes,
              limits: RequestLimits) -> tuple[BaseModel | None, list[dict[str, Any]]]:
    """In the worker: ``model`` from ``body`` under the app's request-shape ``limits``, or the errors
    (without their input, which may be megabytes)."""
    try:
        with bound_limits(limits):
            return model.model_validate_json(body), []
    except ValidationError as exc:
        return None, exc.errors(include_url=False, include_input=False, include_context=False)


class BodyParser:
    """The worker process pool, started on the first big body and shut down with the app."""

    def __init__(self, threshold_bytes: int = DEFAULT_THRESHOLD_BYTES) -> None:
        self.threshold_bytes = threshold_bytes
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the server process has engine and event-loop threads whose locks a fork copies.
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             max_tasks_per_child=_PARSES_PER_WORKER)
        return self._pool

    async def parse(self, model: type[BaseModel], body: bytes, limits: RequestLimits) -> BaseModel:
        """``model`` validated from ``body`` off the loop; ``RequestValidationError`` as FastAPI would raise it."""
        loop = asyncio.get_running_loop()
        try:
            value, errors = await loop.run_in_executor(self._executor(), _validate, model, body, limits)
        except BrokenProcessPool:
            # The worker died (killed for memory, say): the next big body gets a fresh one; this one fails.
            self.shutdown()
            raise
        if errors:
            raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in errors])
        return value

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class OffLoopBodyRoute(APIRoute):
    """An ``APIRoute`` whose JSON body, when over the app's ``body_parser`` threshold, is parsed by that parser."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        body_field = self.body_field
        model = body_field.field_info.annotation if body_field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return handler

        async def route(request: Request) -> Response:
            parser: BodyParser | None = getattr(request.app.state, "body_parser", None)
            # The request models check their shape against the app's limits, here or in the worker.
            limits: RequestLimits = request.app.state.request_limits
            with bound_limits(limits):
                # Only what FastAPI itself would parse as JSON (a JSON content type, or none).
                if parser is not None and "json" in request.headers.get("content-type", "application/json"):
                    body = await request.body()  # kept on the request: FastAPI's handler reads it from there
                    if len(body) > parser.threshold_bytes:
                        # FastAPI takes request.json() as the body to validate; a model instance passes as is.
                        request._json = await parser.parse(model, body, limits)
                return await handler(request)

        return route
