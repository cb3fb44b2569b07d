"""Per-request modes on chat completions: the same weights answer single-pass, agent and attention-zoom."""

from __future__ import annotations

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

MODEL = "qwen3_vl"
QUESTION = "What is written on the small sign?"


@pytest.fixture(scope="module")
def server(serve, tiny_models):
    with serve(tiny_models["qwen3_vl"]) as (url, app):
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="x", max_retries=0)


def messages_for(url: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": QUESTION}]}]


def requests_by_mode(server) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(httpx.get(server + "/metrics").text):
        for sample in family.samples:
            if sample.name == "zwz_requests_total":
                out[sample.labels["mode"]] = sample.value
    return out


def test_attention_zoom_mode(server, client, images):
    picture = images.noise(640, 480, seed=5)
    before = requests_by_mode(server)
    r = client.chat.completions.create(model=MODEL, messages=messages_for(images.data_url(picture)), max_tokens=6,
                                       extra_body={"zwz_mode": "attention_zoom"})
    trajectory = r.model_extra["zwz_trajectory"]
    assert trajectory["mode"] == "attention_zoom" and trajectory["model_calls"] == 2
    x1, y1, x2, y2 = trajectory["zoom_box"]
    assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480
    assert trajectory["crop_size"] == [x2 - x1, y2 - y1]
    assert r.usage.completion_tokens == 6 and r.choices[0].finish_reason == "length"
    # Two images in the answer's prompt: the original and the crop.
    assert r.usage.model_extra["visual_tokens"] > (640 // 32) * (480 // 32)
    after = requests_by_mode(server)
    assert after.get("attention_zoom", 0) - before.get("attention_zoom", 0) == 1
    assert after.get("single", 0) == before.get("single", 0)


def test_attention_zoom_stream(client, images):
    stream = client.chat.completions.create(model=MODEL, messages=messages_for(images.png_data_url(320, 320)),
                                            max_tokens=4, stream=True, stream_options={"include_usage": True},
                                            extra_body={"zwz_mode": "attention_zoom"})
    chunks = list(stream)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].model_extra["zwz_trajectory"]["mode"] == "attention_zoom"
    assert chunks[-1].usage.completion_tokens == 4


@pytest.mark.parametrize("extra, param", [
    ({"zwz_mode": "attention_zoom", "zwz_attention": {}}, "zwz_attention"),
    ({"zwz_mode": "agent", "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"zwz_mode": "telepathy"}, "zwz_mode"),
])
def test_mode_misuse_is_400(client, images, extra, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=messages_for(images.png_data_url(64, 64)),
                                       max_tokens=2, extra_body=extra)
    assert param in info.value.body["param"]


def test_mode_without_image_is_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"zwz_mode": "attention_zoom"})
    assert info.value.body["param"] == "zwz_mode"


def test_agent_mode_with_fixed_zoom_turns(server, client, images):
    """Random weights never ask for a zoom: fixed_turns makes the agent zoom twice, so 3 model calls."""
    before = requests_by_mode(server)
    r = client.chat.completions.create(model=MODEL, messages=messages_for(images.data_url(images.noise(512, 384))),
                                       max_tokens=8, extra_body={"zwz_mode": "agent",
                                                                 "zwz_agent": {"max_turns": 5, "fixed_turns": 2}})
    trajectory = r.model_extra["zwz_trajectory"]
    assert trajectory["mode"] == "agent"
    assert trajectory["model_calls"] == 3 and trajectory["forced_calls"] == 2
    assert trajectory["image_encodings"] == 1 + 2 + 3  # the history is re-sent every turn
    assert [t["crop_size"] is not None for t in trajectory["turns"]] == [True, True, False]
    assert trajectory["stopped"] == "answer"
    assert r.usage.prompt_tokens == sum(t["prompt_tokens"] for t in trajectory["turns"])
    after = requests_by_mode(server)
    assert after.get("agent", 0) - before.get("agent", 0) == 1


def test_agent_mode_turn_limit(client, images):
    r = client.chat.completions.create(model=MODEL, messages=messages_for(images.png_data_url(256, 256)),
                                       max_tokens=4, extra_body={"zwz_mode": "agent",
                                                                 "zwz_agent": {"max_turns": 2, "fixed_turns": 5}})
    trajectory = r.model_extra["zwz_trajectory"]
    assert trajectory["stopped"] == "turn_limit" and trajectory["model_calls"] == 2
    assert r.choices[0].finish_reason == "length"
