"""/metrics, parsed with prometheus_client's own parser, checked against the traffic sent."""

from __future__ import annotations

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

MODEL = "qwen2_5_vl"


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(url + "/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def server(serve, tiny_models):
    with serve(tiny_models["qwen2_5_vl"]) as (url, app):
        yield url


def test_counters_match_traffic(server, images):
    client = openai.OpenAI(base_url=server + "/v1", api_key="x", max_retries=0)
    before = scrape(server)
    usages = []
    for i in range(3):
        messages = [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": images.png_data_url(224 + 28 * i, 224)}},
            {"type": "text", "text": "Count the dots."}]}]
        usages.append(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5 + i).usage)
    for _ in range(2):
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}],
                                                max_tokens=4, stream=True, stream_options={"include_usage": True})
        usages.append([c for c in stream][-1].usage)
    bad = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,xx=="}}]}]
    for _ in range(2):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=MODEL, messages=bad)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    after = scrape(server)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    mode = {"mode": "single"}
    assert delta("zwz_requests_total", **mode) == 5
    assert delta("zwz_request_duration_seconds_count", **mode) == 5
    assert delta("zwz_time_to_first_token_seconds_count", **mode) == 5
    assert delta("zwz_prompt_tokens_total", **mode) == sum(u.prompt_tokens for u in usages)
    assert delta("zwz_generation_tokens_total", **mode) == sum(u.completion_tokens for u in usages)
    assert delta("zwz_visual_tokens_total", **mode) == sum(u.model_extra["visual_tokens"] for u in usages) > 0
    assert delta("zwz_request_errors_total", status="400") == 2
    assert delta("zwz_request_errors_total", status="404") == 1
    assert delta("zwz_batch_size_count") >= 1
    assert value(after, "zwz_requests_in_flight") == 0
    assert value(after, "zwz_queue_depth") == 0
    # TTFT never exceeds the whole request.
    assert value(after, "zwz_time_to_first_token_seconds_sum", **mode) <= value(
        after, "zwz_request_duration_seconds_sum", **mode)
