"""A finished request leaves nothing behind for the cycle collector (issue 11, defect 9).

Under steady load the transformers engine's RSS rose by ~100 MB and fell back every few minutes: each request's
job (with its image tensors) sat in a reference cycle (job -> row state -> its emitter -> job) until a full
garbage collection. With the cycle collector off, finished requests must still be freed, by reference counting.
"""

from __future__ import annotations

import gc
import time

import openai
import pytest

MODEL = "qwen3_vl"  # served under the folder name


@pytest.fixture(scope="module")
def server(serve, tiny_models):
    with serve(tiny_models["qwen3_vl"]) as (url, app):
        yield url, app


def _jobs() -> list[object]:
    return [o for o in gc.get_objects() if type(o).__name__ == "_Job"]


def _jobs_once_settled() -> list[object]:
    """The jobs still alive once the server has closed its last stream (it may do so just after the client read
    ``[DONE]``); 60 s is only a backstop."""
    deadline = time.monotonic() + 60
    while (left := _jobs()) and time.monotonic() < deadline:
        del left
        time.sleep(0.1)
    return _jobs()


def test_finished_requests_are_freed_without_the_cycle_collector(server, images):
    url, _ = server
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": images.png_data_url()}},
                                             {"type": "text", "text": "What color is the car?"}]}]
    client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)  # warm-up
    gc.collect()
    assert _jobs_once_settled() == []
    gc.disable()
    try:
        for _ in range(3):
            r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
            assert r.choices[0].finish_reason in ("stop", "length")
            chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4, stream=True))
            assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        left = _jobs_once_settled()
    finally:
        gc.enable()
    assert left == []
    # and the server goes on answering
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    assert r.usage.completion_tokens >= 1
