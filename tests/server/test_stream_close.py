"""A streamed chat request leaves the in-flight gauge, and closes its engine stream, however its client goes: even
before the first byte."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from starlette.requests import ClientDisconnect

from zwz.server.api.app import create_app
from zwz.server.settings import ServerSettings

BODY = json.dumps({"model": "scripted", "stream": True,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()  # fmt: skip


def in_flight(app) -> float:
    return app.state.metrics.in_flight._value.get()


async def call_leaving_before_the_first_byte(app, spec_version: str) -> None:
    """Drive the app as an ASGI server would for a client that is gone by the time the answer starts."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": spec_version}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "query_string": b"", "root_path": "", "server": ("test", 80), "client": ("test", 1),
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]}  # fmt: skip
    messages = [{"type": "http.request", "body": BODY, "more_body": False}]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            raise OSError("the client has gone")  # what a server's send does on a closed connection

    # ASGI 2.3 servers see the send's error; from 2.4 Starlette raises ClientDisconnect, which servers expect
    expected = (OSError, "the client has gone") if spec_version == "2.3" else (ClientDisconnect, "^$")
    with pytest.raises(expected[0], match=expected[1]):
        await app(scope, receive, send)


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_a_client_gone_before_the_first_byte_leaves_no_request_in_flight(scripted_engine, spec_version):
    engine = scripted_engine("abc")
    app = create_app(ServerSettings(served_model_name="scripted"), engine)

    async def scenario():
        await call_leaving_before_the_first_byte(app, spec_version)
        assert in_flight(app) == 0
        # the engine's stream was closed though never read: an engine stops decoding the row then
        assert engine.streams[-1].ag_frame is None  # a closed async generator has no frame left
        # and the app still answers a whole stream
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.post("/v1/chat/completions", content=BODY, headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
        assert "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                       for line in r.text.splitlines() if line.startswith("data: {")
                       and json.loads(line[6:])["choices"]) == "abc"  # fmt: skip
        assert in_flight(app) == 0

    asyncio.run(scenario())
