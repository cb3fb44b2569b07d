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


# Every test runs against both engines (vLLM is skipped, saying why, where it is not installed).
pytestmark = pytest.mark.parametrize("serve_engine", ["transformers", "vllm"], indirect=True)


@pytest.fixture(scope="module")
def server(serve, tiny_models):
    with serve(tiny_models["qwen2_5_vl"]) as (url, app):
        yield url


def test_counters_match_traffic(server, images, good_request):
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
        with pytest.raises(openai.BadRequestError, match=r"the data is not an image this server can read"):
            client.chat.completions.create(model=MODEL, messages=bad)
    with pytest.raises(openai.NotFoundError, match=r"the model 'nope' does not exist; this server serves qwen2_5_vl"):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    after = scrape(server)
    good_request(client, MODEL)  # after the scrape: the figures below count only the requests above

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
    assert delta("zwz_batch_size_count") == 5  # one after another: each answered request started alone
    assert value(after, "zwz_requests_in_flight") == 0
    assert value(after, "zwz_queue_depth") == 0
    # TTFT never exceeds the whole request.
    assert value(after, "zwz_time_to_first_token_seconds_sum", **mode) <= value(
        after, "zwz_request_duration_seconds_sum", **mode)


def total(samples, name) -> float:
    """The sum of a metric over all its label sets."""
    return sum(v for (n, _), v in samples.items() if n == name)


def test_one_scrape_shows_zwz_and_engine_metrics(server, serve_engine, images):
    """vLLM's own vllm:* metrics come in the same scrape as zwz_*, and count the same requests."""
    client = openai.OpenAI(base_url=server + "/v1", api_key="x", max_retries=0)
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": images.png_data_url(224, 224)}},
                                             {"type": "text", "text": "Count the dots."}]}]
    before = scrape(server)
    usage = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6).usage
    after = scrape(server)
    assert total(after, "zwz_requests_total") - total(before, "zwz_requests_total") == 1
    vllm_names = {name for name, _ in after if name.startswith("vllm:")}
    if serve_engine != "vllm":
        assert not vllm_names
        return
    for name in ("vllm:num_requests_running", "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds_count"):
        assert name in vllm_names, name
    for vllm_name, zwz_value in (("vllm:prompt_tokens_total", usage.prompt_tokens),
                                 ("vllm:generation_tokens_total", usage.completion_tokens),
                                 ("vllm:request_success_total", 1)):
        assert total(after, vllm_name) - total(before, vllm_name) == zwz_value, vllm_name
