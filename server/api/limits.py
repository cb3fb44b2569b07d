"""ASGI middleware that refuses request bodies over a size limit with a 413 in the OpenAI envelope.

Many clients (Python's urllib, ``curl --data-binary @file`` without ``Expect``) send the whole body before
reading the answer. Were the server to answer and close while such a client still sends, the kernel resets
the connection and the client sees "connection reset", never the 413. So the rest of the body is read and
dropped first, within bounds (``DRAIN_FACTOR`` times the limit, ``DRAIN_SECONDS``): past them the 413 goes
out anyway. A client that sent ``Expect: 100-continue`` and nothing yet is answered at once: it waits for
the server's word before sending.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zwz.server.api.errors import error_response

logger = logging.getLogger(__name__)

DRAIN_FACTOR = 4
DRAIN_SECONDS = 10.0


class _TooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's body parsing passes it on as a 413."""

    code = "request_too_large"  # the envelope's code, as on the 413 sent before the app runs


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, on_reject=None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            if headers.get(b"expect", b"").lower() != b"100-continue":
                await self._drain(receive, 0)
            await self._reject(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    if message.get("more_body", False):
                        await self._drain(receive, seen)
                    raise _TooLarge(413, f"request body is over the limit of {self.max_bytes} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(scope, receive, send)

    async def _drain(self, receive: Receive, seen: int) -> None:
        """Read and drop the rest of the body, up to the bounds, so the client is reading when the 413 comes."""
        budget = DRAIN_FACTOR * self.max_bytes
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while seen <= budget:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away
                    seen += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        return
        except TimeoutError:
            pass  # bounded on purpose: answer now, whatever the client still sends
        logger.info("413: stopped reading an oversized body after %d bytes", seen)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.on_reject is not None:
            self.on_reject(413)
        response = error_response(413, f"request body is over the limit of {self.max_bytes} bytes",
                                  code=_TooLarge.code)
        await response(scope, receive, send)
