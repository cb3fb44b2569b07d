"""The request-shape limits are settings: a ``--max-*`` flag or ``ZWZ_MAX_*`` variable changes what a live
server accepts, for bodies parsed inline and for big ones parsed in the worker process alike.

The limits are checked at the API's edge, before either engine sees a request, so the transformers engine
stands for both here (test_hostile_requests.py runs the defaults on both engines).
"""

from __future__ import annotations

import json

import httpx
import pytest

from zwz.server.api.request_shape import RequestLimits
from zwz.server.settings import ServerSettings

MODEL = "qwen3_vl"


@pytest.fixture(scope="module")
def server(serve, tiny_models):
    with serve(tiny_models["qwen3_vl"], max_messages=4, max_stop_sequences=2, max_stop_chars=8,
               max_text_chars=3_000_000) as (url, app):
        yield url


def chat(url: str, messages: list[dict], **fields) -> httpx.Response:
    payload = {"model": MODEL, "messages": messages, "max_tokens": 3, "temperature": 0, **fields}
    return httpx.post(url + "/v1/chat/completions", content=json.dumps(payload),
                      headers={"content-type": "application/json"}, timeout=300)


def check_refused(r: httpx.Response, param: str, says: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert says in r.json()["error"]["message"]


def test_configured_limits_hold_inline_and_in_the_worker(server):
    turn = {"role": "user", "content": "hi"}
    check_refused(chat(server, [turn] * 5), "messages", "5 messages; this server allows at most 4 (--max-messages)")
    assert chat(server, [turn] * 4).status_code == 200
    check_refused(chat(server, [turn], stop=["a", "b", "c"]), "stop", "3 stop strings; this server allows at most 2")
    check_refused(chat(server, [turn], stop=["123456789"]), "stop.0", "allows at most 8 (--max-stop-chars)")
    assert chat(server, [turn], stop=["12345678", "b"]).status_code == 200
    # Over 1 MiB: parsed in the worker process, which must apply this app's limits, not the defaults.
    big = {"role": "user", "content": "word " * 240_000}
    check_refused(chat(server, [big] * 2 + [turn] * 3), "messages", "5 messages; this server allows at most 4")
    r = chat(server, [big, turn], max_tokens=1)  # 1.2 M characters: over the default limit, not this server's
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert chat(server, [turn]).status_code == 200


def test_every_limit_reads_its_variable(monkeypatch):
    names = [name for name in RequestLimits.__dataclass_fields__]
    for i, name in enumerate(names):
        monkeypatch.setenv(f"ZWZ_{name.upper()}", str(10 + i))
    limits = RequestLimits.from_settings(ServerSettings())
    assert [getattr(limits, name) for name in names] == [10 + i for i in range(len(names))]
