"""The OpenAPI schema describes the live server: what each route declares is what it answers, and back.

Probes a live server (the model-free scripted engine, which has no attention maps) with one request per
answer each route can give, and checks the status and content type against the route's declaration; then
schemathesis generates requests from the schema and checks every answer against it.
"""

from __future__ import annotations

import base64
import io

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from zwz.server.api.app import create_app
from zwz.server.settings import ServerSettings

MODEL = "scripted"
LIMIT = 64 * 1024
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.fixture(scope="module")
def live(run_app, scripted_engine):
    app = create_app(ServerSettings(max_body_bytes=LIMIT), scripted_engine("ok"))
    with run_app(app) as url:
        yield url, httpx.get(f"{url}/openapi.json").json()


def declared(schema: dict, method: str, path: str) -> dict[str, dict]:
    return schema["paths"][path][method.lower()]["responses"]


def png_url() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def with_image(text: str = "what?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_url()}},
                                         {"type": "text", "text": text}]}]


def chat(**extra) -> dict:
    return {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}], **extra}


def attention(**extra) -> dict:
    return {"image": "data:image/png;base64,AAAA", "question": "where?", **extra}


# (method, path, body, status): every answer a route gives on this server, one probe each.
PROBES = [
    ("GET", "/v1/models", None, 200),
    ("POST", "/v1/chat/completions", chat(), 200),
    ("POST", "/v1/chat/completions", chat(stream=True), 200),
    ("POST", "/v1/chat/completions", chat(temperature=5), 400),
    ("POST", "/v1/chat/completions", chat(model="nope"), 404),
    ("POST", "/v1/chat/completions", chat(pad="x" * LIMIT), 413),
    ("POST", "/v1/chat/completions", chat(messages=with_image(), zwz_attention={}), 501),
    ("POST", "/v1/zoom/attention", attention(image=png_url()), 501),
    ("POST", "/v1/zoom/attention", attention(question=""), 400),
    ("POST", "/v1/zoom/attention", attention(model="nope"), 404),
    ("POST", "/v1/zoom/attention", attention(pad="x" * LIMIT), 413),
    ("GET", "/health", None, 200),
    ("GET", "/metrics", None, 200),
]
# 503 needs a full engine queue, which the scripted engine never has (the engine tests cause it); the
# scripted engine has no attention maps, so its attention 200 is probed on the tiny model's server below.
UNPROBED = {("/v1/chat/completions", "503"), ("/v1/zoom/attention", "503"), ("/v1/zoom/attention", "200")}


def media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip()


def test_no_422_and_one_error_model(live):
    _, schema = live
    assert "securitySchemes" not in schema["components"]  # no API key set: nothing to send
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            for status, response in operation["responses"].items():
                if not status.startswith("2"):
                    assert response["content"] == {"application/json": {"schema": ERROR_REF}}, (method, path, status)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert set(schema["components"]["schemas"]["ErrorDetail"]["required"]) == {"message", "type"}


def test_media_types(live):
    _, schema = live
    assert set(declared(schema, "GET", "/metrics")["200"]["content"]) == {"text/plain"}
    assert set(declared(schema, "POST", "/v1/chat/completions")["200"]["content"]) == {"application/json",
                                                                                      "text/event-stream"}
    assert set(declared(schema, "POST", "/v1/zoom/attention")["200"]["content"]) == {"application/json"}


def test_probes_answer_what_is_declared_and_nothing_else(live):
    url, schema = live
    seen: dict[str, set[str]] = {}
    for method, path, body, status in PROBES:
        response = httpx.request(method, url + path, json=body, timeout=60)
        assert response.status_code == status, (method, path, response.text)
        responses = declared(schema, method, path)
        assert str(status) in responses, (method, path, status)
        assert media_type(response.headers["content-type"]) in responses[str(status)]["content"], (method, path)
        if status >= 400:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        seen.setdefault(path, set()).add(str(status))
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            expected = {s for s in operation["responses"] if (path, s) not in UNPROBED}
            assert seen[path] == expected, path
    assert httpx.post(f"{url}/v1/chat/completions", json=chat()).json()["choices"][0]["message"]["content"] == "ok"


def test_405_says_allow_in_the_envelope(live):
    url, schema = live
    for path, operations in schema["paths"].items():
        allowed = {m.upper() for m in operations}
        wrong = "DELETE" if "POST" in allowed else "POST"
        response = httpx.request(wrong, url + path)
        assert response.status_code == 405, path
        assert set(response.headers["allow"].replace(" ", "").split(",")) == allowed, path
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(f"{url}/health").status_code == 200


def test_401_and_501_declared_only_where_the_server_can_answer_them(run_app, scripted_engine, tiny_models):
    from zwz.server.launch import build_engine

    with run_app(create_app(ServerSettings(api_key="k"), scripted_engine("ok"))) as url:
        schema = httpx.get(f"{url}/openapi.json").json()
        for path in ("/v1/models", "/v1/chat/completions", "/v1/zoom/attention"):
            method = "GET" if path == "/v1/models" else "POST"
            assert "401" in declared(schema, method, path)
            assert httpx.request(method, url + path, json=chat()).status_code == 401
        assert "401" not in declared(schema, "GET", "/health")
        assert schema["components"]["securitySchemes"] == {"HTTPBearer": {
            "type": "http", "scheme": "bearer", "description": "The server's API key (--api-key)."}}
        assert schema["paths"]["/v1/models"]["get"]["security"] == [{"HTTPBearer": []}]
        assert "security" not in schema["paths"]["/health"]["get"]
        wrong = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer nope"})
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_api_key")
        good = httpx.post(f"{url}/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer k"})
        assert good.status_code == 200
    settings_ = ServerSettings(model=str(tiny_models["qwen3_vl"]), engine="transformers")
    with run_app(create_app(settings_, build_engine(settings_))) as url:  # an engine with attention maps
        schema = httpx.get(f"{url}/openapi.json").json()
        for path in ("/v1/chat/completions", "/v1/zoom/attention"):
            assert "501" not in declared(schema, "POST", path)
            assert "401" not in declared(schema, "POST", path)
        mapped = httpx.post(f"{url}/v1/zoom/attention", json=attention(image=png_url(), heatmap=False), timeout=120)
        assert mapped.status_code == 200, mapped.text
        assert "application/json" in declared(schema, "POST", "/v1/zoom/attention")["200"]["content"]
        assert mapped.json()["object"] == "zoom.attention"


# -- schemathesis: generated requests, every answer checked against the schema ----------------------------
# Driven through its Hypothesis strategies rather than its pytest plugin, whose lazy loader needs a
# pytest internal (Function._nodeid) that pytest 9 removed.
CHECKS = [schemathesis.checks.status_code_conformance, schemathesis.checks.content_type_conformance,
          schemathesis.checks.response_headers_conformance, schemathesis.checks.response_schema_conformance]
EXAMPLES = 25  # per operation and generation mode (negative ones for the POSTs)


def test_schemathesis_finds_no_5xx_and_no_schema_violation(live):
    url, _ = live
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "GET /v1/models", "POST /v1/chat/completions", "POST /v1/zoom/attention", "GET /health", "GET /metrics"}
    statuses: dict[str, set[int]] = {}
    for operation in operations:
        modes = [schemathesis.GenerationMode.POSITIVE]
        if operation.method.upper() == "POST":  # the GETs take no input to get wrong
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None)
            def run(case) -> None:
                if case.path == "/v1/chat/completions" and isinstance(case.body, dict) and "model" in case.body:
                    case.body["model"] = MODEL  # past the model check, into validation and the engine
                response = case.call_and_validate(checks=CHECKS, timeout=60)
                # No 5xx but the 501 this engine (without attention maps) declares for attention.
                assert response.status_code < 500 or (response.status_code == 501 and "attention" in response.text), \
                    response.text
                statuses.setdefault(case.path, set()).add(response.status_code)

            run()
    assert 200 in statuses["/v1/chat/completions"] and 400 in statuses["/v1/chat/completions"], statuses
    assert httpx.post(f"{url}/v1/chat/completions", json=chat()).json()["choices"][0]["message"]["content"] == "ok"


@pytest.mark.parametrize("stream", [False, True])
def test_a_real_answer_conforms_streamed_or_not(live, stream):
    """Not left to the generator's luck: a well-formed request, whole and as SSE events, checked on the schema."""
    url, _ = live
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operation = schema["/v1/chat/completions"]["POST"]
    case = operation.Case(body=chat(stream=stream), media_type="application/json")
    response = case.call_and_validate(checks=CHECKS, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"][0].startswith("text/event-stream" if stream else "application/json")
