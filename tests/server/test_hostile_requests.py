"""Hostile request bodies on a live server: out-of-range sampling fields, unpaired surrogates, oversized shapes.

Each is a 400 in the OpenAI envelope naming the field, followed by a good request; well-formed requests sent
together with the bad ones get exactly the tokens they get alone. Both engines.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

MODEL = "qwen3_vl"

pytestmark = pytest.mark.parametrize("serve_engine", ["transformers", "vllm"], indirect=True)


@pytest.fixture(scope="module")
def server(serve, tiny_models):
    with serve(tiny_models["qwen3_vl"]) as (url, app):
        yield url


def user(text="Describe a red car.") -> list[dict]:
    return [{"role": "user", "content": text}]


def body(**fields) -> dict:
    return {"model": MODEL, "messages": user(), "max_tokens": 6, "temperature": 0, **fields}


def post(url: str, payload: dict | str, path: str = "/v1/chat/completions") -> httpx.Response:
    # json.dumps escapes a lone surrogate as \\ud800, as a client in any language may send it.
    content = payload if isinstance(payload, str) else json.dumps(payload)
    return httpx.post(url + path, content=content, headers={"content-type": "application/json"}, timeout=300)


def refused(url: str, payload: dict | str, param: str | None, says: str, path: str = "/v1/chat/completions",
            code: str | None = None) -> None:
    r = post(url, payload, path)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert says in error["message"], error["message"]
    good = post(url, body())  # the server still answers
    assert good.status_code == 200 and good.json()["usage"]["completion_tokens"] == 6


@pytest.mark.parametrize(("fields", "param", "says"), [
    ({"seed": 2**63}, "seed", "less than or equal to 9223372036854775807"),
    ({"seed": 2**64, "temperature": 1.0}, "seed", "less than or equal to"),
    ({"seed": -(2**63) - 1}, "seed", "greater than or equal to -9223372036854775808"),
    ({"temperature": 2.5}, "temperature", "less than or equal to 2"),
    ({"temperature": -0.1}, "temperature", "greater than or equal to 0"),
    ({"top_p": 0}, "top_p", "greater than 0"),
    ({"top_p": 1.5}, "top_p", "less than or equal to 1"),
    ({"top_k": -1}, "top_k", "greater than or equal to 0"),
    ({"top_k": 2**63}, "top_k", "less than or equal to"),
    ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
    ({"max_tokens": 2**64}, "max_tokens", "less than or equal to"),
    ({"max_completion_tokens": 2**70}, "max_completion_tokens", "less than or equal to"),
    ({"n": 0}, "n", "greater than or equal to 1"),
    ({"n": 2}, "n", "only n=1"),
    ({"frequency_penalty": 3}, "frequency_penalty", "less than or equal to 2"),
    ({"presence_penalty": 0.5}, "presence_penalty", "not supported"),
    ({"logprobs": True}, "logprobs", "not supported"),
    ({"mm_processor_kwargs": {"max_pixels": 2**64}}, "mm_processor_kwargs.max_pixels", "less than or equal to"),
])
def test_out_of_range_sampling_fields_are_400(server, fields, param, says):
    refused(server, body(**fields), param, says)


def test_nan_and_infinity_are_400(server):
    # Python's json (FastAPI's parser) reads these non-standard literals; the bounds must still hold.
    for field, literal in (("temperature", "NaN"), ("top_p", "NaN"), ("temperature", "Infinity")):
        raw = json.dumps(body()).replace('"temperature": 0', f'"{field}": {literal}')
        refused(server, raw, field, "Input should be")


def test_a_seed_at_the_64_bit_edge_samples(server):
    answers = [post(server, body(seed=seed, temperature=1.0)).json() for seed in (2**63 - 1, 2**63 - 1, -(2**63))]
    assert answers[0]["choices"] == answers[1]["choices"]  # the same seed, the same answer
    assert [a["usage"]["completion_tokens"] for a in answers] == [6, 6, 6]


SURROGATE = "a\ud800b"
TOOL = {"type": "function", "function": {"name": "zoom", "parameters": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize(("fields", "param"), [
    ({"messages": user(SURROGATE)}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": SURROGATE}]}]}, "messages.0.content.0.text"),
    ({"messages": [{"role": "system", "content": SURROGATE}, *user()]}, "messages.0.content"),
    ({"messages": [*user(), {"role": "assistant", "content": SURROGATE}, *user()]}, "messages.1.content"),
    ({"messages": [*user(), {"role": "tool", "content": SURROGATE, "tool_call_id": "c1"}]}, "messages.1.content"),
    ({"messages": [*user(), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "zoom", "arguments": '{"x": "\ud83d"}'}}]}]},
     "messages.1.tool_calls.0.function.arguments"),
    ({"stop": [SURROGATE]}, "stop.0"),
    ({"stop": "\udfff"}, "stop"),
    ({"tools": [{**TOOL, "function": {**TOOL["function"], "description": SURROGATE}}]}, "tools.0.function.description"),
    ({"messages": [{"role": "user", "content": "hi", "name": SURROGATE}]}, "messages.0.name"),
])
def test_unpaired_surrogates_are_400(server, fields, param):
    refused(server, body(**fields), param, "unpaired UTF-16 surrogate", code="invalid_unicode")


def test_a_surrogate_pair_is_text(server):
    r = post(server, body(messages=user("a car \ud83d\ude97")))  # json.dumps sends the emoji as a pair of escapes
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 6


def test_unpaired_surrogate_in_an_attention_question_is_400(server, images):
    payload = {"model": MODEL, "image": images.png_data_url(), "question": "where\udc00?"}
    refused(server, payload, "question", "unpaired UTF-16 surrogate", path="/v1/zoom/attention",
            code="invalid_unicode")


@pytest.mark.parametrize(("fields", "param", "says", "code"), [
    ({"stop": [f"s{i}" for i in range(100_000)]}, "stop", "100000 stop strings; this server allows at most 16",
     "too_many_stop_sequences"),
    ({"stop": ["x" * 1025]}, "stop.0", "1025 characters in a stop string; this server allows at most 1024",
     "stop_too_long"),
    ({"messages": user() * 2049}, "messages", "2049 messages; this server allows at most 2048", "too_many_messages"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}] * 4097}]}, "messages",
     "4097 content parts; this server allows at most 4096", "too_many_content_parts"),
    ({"tools": [TOOL] * 129}, "tools", "129 tools; this server allows at most 128", "too_many_tools"),
    ({"messages": user("x" * 1_000_001)}, None, "characters of text or more; this server allows at most 1000000",
     "too_much_text"),
    ({"zwz_unknown": [0] * 100_001}, None, "JSON values or more; this server allows at most 100000",
     "too_many_values"),
])  # fmt: skip
def test_request_shape_limits_are_400(server, fields, param, says, code):
    refused(server, body(**fields), param, says, code=code)


def test_a_million_tiny_messages_are_refused_by_count(server):
    """A 30 MB body of 900k messages (parsed in the worker process, under the app's limits): refused on its count."""
    refused(server, body(messages=[{"role": "user", "content": "a"}] * 900_000), "messages",
            "900000 messages; this server allows at most 2048", code="too_many_messages")


def test_neighbours_of_bad_requests_get_their_own_tokens(server):
    """Well-formed requests sent together with bad ones (100k stop strings, a seed over 64 bits, a surrogate)
    get the tokens they get alone, streaming and not."""
    good = [body(max_tokens=12), body(max_tokens=12, stream=True),
            body(max_tokens=12, temperature=1.0, seed=3), body(max_tokens=12, temperature=1.0, seed=3, stream=True)]
    bad = [body(stop=[f"s{i}" for i in range(100_000)]), body(seed=2**63, temperature=1.0),
           body(messages=user(SURROGATE)), body(seed=2**64, temperature=1.0, stream=True)]

    async def answer(client: httpx.AsyncClient, payload: dict) -> tuple[int, str]:
        r = await client.post(server + "/v1/chat/completions", content=json.dumps(payload),
                              headers={"content-type": "application/json"})
        if r.status_code != 200 or not payload.get("stream"):
            return r.status_code, r.json()["choices"][0]["message"]["content"] if r.status_code == 200 else ""
        events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        assert all("error" not in e for e in events)
        return r.status_code, "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])

    async def scenario():
        async with httpx.AsyncClient(timeout=300) as client:
            alone = [await answer(client, p) for p in good]
            together = await asyncio.gather(*(answer(client, p) for p in [bad[0], good[0], bad[1], good[1], bad[2],
                                                                          good[2], bad[3], good[3]]))
            after = await answer(client, good[0])
        return alone, together, after

    alone, together, after = asyncio.run(scenario())
    assert [status for status, _ in alone] == [200] * 4
    assert alone[0][1] == alone[1][1] and alone[2][1] == alone[3][1]  # streamed as answered whole
    assert list(together[1::2]) == alone
    assert [status for status, _ in together[0::2]] == [400] * 4
    assert after == alone[0]
