"""The vLLM engine in-process: greedy parity with the transformers engine, cancellation reaching vLLM, errors.

The HTTP API itself runs against both engines in test_chat_api.py and test_metrics.py.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

from zwz.server.engines.base import (
    AttentionOptions,
    ChatMessage,
    EngineOverloadedError,
    GenerationRequest,
    InvalidRequestError,
    SamplingParams,
)
from zwz.server.launch import build_engine
from zwz.server.settings import ServerSettings
from zwz.server.engines.vllm_setup import INSTALL_HINT, vllm_importable

pytestmark = pytest.mark.skipif(not vllm_importable(), reason=f"vLLM is not installed here ({INSTALL_HINT})")

QUESTION = "What is written on the small sign?"


def request(*content, stream: bool = True, **sampling) -> GenerationRequest:
    sampling = {"max_tokens": 24, "temperature": 0.0, **sampling}
    return GenerationRequest(messages=[ChatMessage("user", list(content))], sampling=SamplingParams(**sampling),
                             stream=stream)


async def answer(engine, req: GenerationRequest) -> tuple[str, list[int], list]:
    chunks = [chunk async for chunk in await engine.submit(req)]
    return "".join(c.text for c in chunks), [t for c in chunks for t in c.token_ids], chunks


def run_on(engine, coro_fn):
    """Start ``engine``, run ``coro_fn(engine)`` on one event loop, stop the engine."""
    async def main():
        await engine.start()
        try:
            return await coro_fn(engine)
        finally:
            await engine.stop()

    return asyncio.run(main())


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_greedy_tokens_equal_transformers_engine(tiny_models, images, family):
    """fp32, same image and question: vLLM's greedy tokens are the transformers engine's, and so are the counts."""
    cases = [
        request(images.noise(448, 336, seed=3), QUESTION),
        # A pixel budget reaches both processors the same way (vLLM: mm_processor_kwargs).
        request(images.noise(640, 480, seed=4), QUESTION, stream=False),
        request("Describe a red car.", max_tokens=12),
    ]
    cases[1].max_pixels = 256 * 256

    async def all_cases(engine):
        return [await answer(engine, case) for case in cases]

    results = {}
    for name in ("transformers", "vllm"):
        engine = build_engine(ServerSettings(model=str(tiny_models[family]), engine=name, dtype="float32"))
        results[name] = run_on(engine, all_cases)
    for case, hf, vl in zip(cases, results["transformers"], results["vllm"]):
        hf_text, hf_ids, hf_chunks = hf
        vl_text, vl_ids, vl_chunks = vl
        assert vl_text == hf_text
        if case.stream:  # the transformers engine hands out token ids only while streaming
            assert vl_ids[: len(hf_ids)] == hf_ids and len(hf_ids) >= len(vl_ids) - 1  # vLLM adds the end token
        for key in ("finish_reason", "prompt_tokens", "completion_tokens", "visual_tokens"):
            assert getattr(vl_chunks[-1], key) == getattr(hf_chunks[-1], key), key
    budgeted = results["vllm"][1][2]
    assert len(budgeted) == 1  # not streaming: one final chunk
    assert budgeted[0].visual_tokens <= 256 * 256 // (28 * 28 if family == "qwen2_5_vl" else 32 * 32)


@pytest.fixture(scope="module")
def engine(tiny_models):
    """A vLLM engine with small limits, running on its own event loop thread."""
    settings = ServerSettings(model=str(tiny_models["qwen2_5_vl"]), engine="vllm", limit_images=1, max_model_len=2048,
                              max_batch_size=2, max_queue=1)
    eng = build_engine(settings)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(eng.start())
    yield eng, loop
    loop.run_until_complete(eng.stop())
    loop.close()


def test_closing_the_stream_aborts_the_vllm_request(engine, images, until):
    eng, loop = engine

    async def scenario():
        before = eng.cancelled_rows
        stream = await eng.submit(request(images.noise(224, 224), QUESTION, max_tokens=1500))
        first = await stream.__anext__()
        assert first.finish_reason is None
        assert eng._llm.get_num_unfinished_requests() == 1
        await stream.aclose()  # what the server does when the client hangs up
        assert eng._llm.get_num_unfinished_requests() == 0
        assert eng.cancelled_rows == before + 1

        # A stream dropped without being read or closed still frees its slot and its vLLM request.
        dropped = await eng.submit(request(images.noise(224, 224), QUESTION, max_tokens=1500))
        del dropped
        gc.collect()
        await until(lambda: eng._llm.get_num_unfinished_requests() == 0, "vLLM dropping the abandoned request")
        assert eng.queue_depth == 0 and eng._in_flight == 0

        # Afterwards the engine answers normally.
        text, _, chunks = await answer(eng, request(images.noise(224, 224), QUESTION, max_tokens=5))
        assert chunks[-1].finish_reason == "length" and chunks[-1].completion_tokens == 5

    loop.run_until_complete(scenario())


def test_errors_come_before_the_first_chunk(engine, images, until):
    eng, loop = engine

    async def refused(req, message: str) -> InvalidRequestError | EngineOverloadedError:
        with pytest.raises((InvalidRequestError, EngineOverloadedError), match=message) as info:
            await eng.submit(req)
        return info.value

    async def scenario():
        two_images = request(images.noise(64, 64), images.noise(64, 64), QUESTION)  # vLLM's own limit: 1
        assert "image" in (await refused(two_images, r"At most 1 image\(s\) may be provided in one prompt")).message
        long = request(images.noise(224, 224), "describe every detail " * 600)
        err = await refused(long, r"the prompt has \d+ tokens \(64 of them visual\), over this model's context of 2048")
        assert err.code == "context_length_exceeded"
        too_many = request(images.noise(224, 224), QUESTION, max_tokens=2000)
        err = await refused(too_many, r"prompt \(\d+ tokens\) \+ max_tokens \(2000\) exceeds the context of 2048")
        assert (err.code, err.param) == ("context_length_exceeded", "max_tokens")
        budget = request(images.noise(224, 224), QUESTION)
        budget.max_pixels = 10  # under one visual token
        err = await refused(budget, r"pixel budget must satisfy 784 <= min_pixels <= max_pixels \(got 3136, 10\)")
        assert err.param == "mm_processor_kwargs"
        attention = request(images.noise(224, 224), QUESTION)
        attention.attention = AttentionOptions(layers=99)  # maps work on vLLM (test_vllm_attention.py); bad layers not
        err = await refused(attention, r"layer 99 is out of range: this model has 6 LLM layers")
        assert err.code == "layer_out_of_range"

        # Two running (max_batch_size) + one waiting (max_queue): the fourth is refused with 503.
        running = [await eng.submit(request(images.noise(64, 64), QUESTION, max_tokens=1500)) for _ in range(2)]
        waiting = asyncio.ensure_future(eng.submit(request(images.noise(64, 64), QUESTION, max_tokens=1500)))
        await until(lambda: eng._in_flight == 3, "the third request taking the waiting slot")
        err = await refused(request(QUESTION), r"the server is at capacity; retry later")
        assert isinstance(err, EngineOverloadedError)
        waiting.cancel()  # the waiting client leaves: vLLM drops it, the slot is freed
        with pytest.raises(asyncio.CancelledError, match=r"^$"):  # cancelled from here, so with no message
            await waiting
        for stream in running:
            await stream.aclose()
        assert eng._in_flight == 0 and eng._llm.get_num_unfinished_requests() == 0
        _, _, chunks = await answer(eng, request(images.noise(224, 224), QUESTION, max_tokens=3))
        assert chunks[-1].completion_tokens == 3

    loop.run_until_complete(scenario())


def test_streamed_deltas_with_a_stop_string_equal_the_final_answer(engine, images):
    """vLLM holds back text that may start a stop string; the deltas add up to the non-streamed answer."""
    eng, loop = engine

    async def scenario():
        for seed in range(10):  # random weights: find a picture whose answer is long enough to cut
            picture = images.noise(224, 224, seed=seed)
            full, _, _ = await answer(eng, request(picture, QUESTION, max_tokens=12, stream=False))
            if len(full.strip()) >= 5:
                break
        stop = full.strip()[2:5]
        streamed, _, chunks = await answer(eng, request(picture, QUESTION, max_tokens=12, stop=[stop]))
        assert streamed == full[: full.index(stop)]
        assert chunks[-1].finish_reason == "stop" and sum(1 for c in chunks if c.finish_reason) == 1
        assert all(c.first_token_at == chunks[0].first_token_at for c in chunks)

    loop.run_until_complete(scenario())
