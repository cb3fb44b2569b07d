"""The object inventory against a live OpenAI-compatible stand-in teacher (uvicorn on 127.0.0.1): strict
parsing (malformed replies counted, never raised), retries on 5xx/429, immediate failure on 4xx, and what
goes over the wire."""

from __future__ import annotations

import base64
import doctest
import importlib
import io

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image
from zwz.distill.sam3.inventory import (
    INVENTORY_PROMPT,
    InventoryRequestError,
    MalformedInventory,
    inventory_from_response,
    parse_inventory,
    request_inventory,
)

from zwz.serve_process import free_port

# model name -> reply text; the stand-in answers every request for that model with it.
REPLIES = {
    "good": '["red car", "street sign", "Red  car", "dog"]',
    "fenced": '```json\n["coffee cup", "laptop"]\n```',
    "empty": "[]",
    "prose": 'Sure! The objects are: ["dog", "cat"]',
    "numbered": "\\boxed{1. person\n2. coffee cup}",
    "not_strings": '["dog", 3, null]',
    "object": '{"objects": ["dog"]}',
    "blank_name": '["dog", "  "]',
}


def _teacher_app(state: dict) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        state["requests"].append({"body": body, "auth": request.headers.get("authorization")})
        model = body["model"]
        if model == "flaky":  # two overloads, then an answer
            state["flaky"] = state.get("flaky", 0) + 1
            if state["flaky"] <= 2:
                return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, status_code=503)
            model = "good"
        if model == "down":
            return JSONResponse({"error": {"message": "still overloaded"}}, status_code=500)
        if model not in REPLIES:
            return JSONResponse({"error": {"message": f"the model '{model}' does not exist"}}, status_code=404)
        return {"id": "x", "object": "chat.completion", "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLIES[model]},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112}}

    return app


@pytest.fixture(scope="module")
def teacher(run_app):
    state: dict = {"requests": []}
    with run_app(_teacher_app(state)) as url:
        yield url, state


IMAGE = Image.new("RGB", (64, 48), (30, 200, 90))


def test_replies_are_parsed_strictly_and_malformed_ones_counted(teacher):
    url, state = teacher
    results = {model: request_inventory(IMAGE, url, model, api_key="sk-test") for model in REPLIES}
    assert results["good"].names == ["red car", "street sign", "dog"]  # whitespace folded, repeat dropped
    assert results["fenced"].names == ["coffee cup", "laptop"]
    assert results["empty"].ok and results["empty"].names == []
    malformed = [m for m, r in results.items() if not r.ok]
    assert sorted(malformed) == ["blank_name", "not_strings", "numbered", "object", "prose"]
    for model in malformed:
        assert results[model].error.startswith("malformed: ") and results[model].names == []
        assert results[model].raw == REPLIES[model]
    assert results["good"].usage["total_tokens"] == 112

    sent = state["requests"][0]
    assert sent["auth"] == "Bearer sk-test"
    content = sent["body"]["messages"][0]["content"]
    assert content[0]["type"] == "image_url" and content[1] == {"type": "text", "text": INVENTORY_PROMPT}
    data = base64.b64decode(content[0]["image_url"]["url"].split(",", 1)[1])
    assert Image.open(io.BytesIO(data)).size == (64, 48)
    assert sent["body"]["temperature"] == 0.7 and "only appear once" in INVENTORY_PROMPT


def test_retries_overloads_and_fails_fast_on_client_errors(teacher):
    url, state = teacher
    before = len(state["requests"])
    inventory = request_inventory(IMAGE, url + "/v1", "flaky", backoff=0.01)
    assert inventory.names == ["red car", "street sign", "dog"]
    assert len(state["requests"]) - before == 3  # 503, 503, 200

    before = len(state["requests"])
    with pytest.raises(InventoryRequestError, match="HTTP 500: still overloaded \\(after 3 attempts\\)"):
        request_inventory(IMAGE, url, "down", retries=2, backoff=0.01)
    assert len(state["requests"]) - before == 3

    before = len(state["requests"])
    with pytest.raises(InventoryRequestError, match="HTTP 404: the model 'nope' does not exist"):
        request_inventory(IMAGE, url, "nope", backoff=0.01)
    assert len(state["requests"]) - before == 1  # a 404 is not retried


def test_unreachable_teacher_raises_after_retries():
    port = free_port()  # a port nobody listens on
    with pytest.raises(InventoryRequestError, match="ConnectError"):
        request_inventory(IMAGE, f"http://127.0.0.1:{port}", "good", retries=1, backoff=0.01, timeout=5)


def test_parser_edge_cases():
    with pytest.raises(MalformedInventory, match="over 60 characters"):
        parse_inventory('["' + "x" * 61 + '"]')
    assert inventory_from_response({"choices": []}).error.startswith("malformed: the response has no")
    assert inventory_from_response({"choices": [{"message": {"content": None}}]}).error == (
        "malformed: the reply content is not text")


def test_doctests():
    assert doctest.testmod(importlib.import_module("zwz.distill.sam3.inventory")).failed == 0
