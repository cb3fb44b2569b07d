"""A request that fails never takes the requests batched with it down, on either engine.

The engines run in-process on the tiny model, with requests given straight to ``Engine.submit`` (what the API
refuses at its edge still reaches an engine this way). Each case batches well-formed neighbours (greedy and
seeded sampling, streaming and not) with the bad row and checks that they get exactly the tokens they get
alone, then that the engine still answers.

On the transformers engine the batch is made deterministic: a long "blocker" request holds the decoding
thread while the others are admitted, and closing it lets all of them start together as the next batch.
"""

from __future__ import annotations

import asyncio

import pytest

from zwz.server.engines.base import ChatMessage, GenerationRequest, InvalidRequestError, SamplingParams
from zwz.server.engines.vllm_setup import INSTALL_HINT, vllm_importable
from zwz.server.launch import build_engine
from zwz.server.settings import ServerSettings


def request(text: str, *, stream: bool, **sampling) -> GenerationRequest:
    return GenerationRequest(messages=[ChatMessage("user", [text])], stream=stream,
                             sampling=SamplingParams(**{"max_tokens": 10, "temperature": 0.0, **sampling}))


def neighbours() -> list[GenerationRequest]:
    return [request("Describe a red car.", stream=False),
            request("Describe a red car.", stream=True),
            request("Tell me about boats.", stream=True, temperature=1.0, seed=11),
            request("Tell me about boats.", stream=False, temperature=0.8, top_p=0.9, top_k=50, seed=5)]


async def collect(stream) -> tuple[str, list[int], str, int]:
    chunks = [chunk async for chunk in stream]
    return ("".join(c.text for c in chunks), [t for c in chunks for t in c.token_ids], chunks[-1].finish_reason,
            chunks[-1].completion_tokens)


async def outcome(engine, req: GenerationRequest):
    """The answer, or the exception the request ended with (at submit or while streaming)."""
    try:
        return await collect(await engine.submit(req))
    except Exception as exc:  # the outcome under test
        return exc


class FailsOnItsFourthLook(str):
    """A stop string that raises the fourth time the stop check reads it: a row whose own data breaks inside
    the batched ``generate`` after three steps, past every check made when it arrived. It stands for any
    fault a row can carry; nothing of the engine is replaced."""

    looks = 0

    def __getitem__(self, index):
        type(self).looks += 1
        if type(self).looks >= 4:
            raise RuntimeError("this row's stop check broke")
        return super().__getitem__(index)


@pytest.fixture(scope="module")
def transformers_engine(tiny_models):
    engine = build_engine(ServerSettings(model=str(tiny_models["qwen3_vl"]), engine="transformers", max_batch_size=8))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(engine.start())
    yield engine, loop
    loop.run_until_complete(engine.stop())
    loop.close()


async def batched_transformers(engine, requests: list[GenerationRequest]) -> list:
    """``requests`` started as one batch (those refused at submit excepted); their outcomes, in order."""
    blocker = await engine.submit(request("Count to a million.", stream=True, max_tokens=3000))
    first = await blocker.__anext__()
    assert first.finish_reason is None  # it holds the decoding thread
    admitted: list = []
    for req in requests:
        try:
            admitted.append(await engine.submit(req))
        except InvalidRequestError as exc:
            admitted.append(exc)
    await blocker.aclose()  # its row stops at the next step; everything admitted meanwhile starts together
    return [s if isinstance(s, Exception) else await _outcome_of(s) for s in admitted]


async def _outcome_of(stream):
    try:
        return await collect(stream)
    except Exception as exc:  # the outcome under test
        return exc


def test_a_row_failing_inside_the_batch_fails_alone(transformers_engine):
    engine, loop = transformers_engine

    async def scenario():
        alone = [await outcome(engine, req) for req in neighbours()]
        assert [a[2:] for a in alone] == [("length", 10)] * 4
        bad = request("Describe a red car.", stream=True, stop=[FailsOnItsFourthLook("zz")])
        before = len(engine.batch_sizes)
        results = await batched_transformers(engine, [*neighbours()[:2], bad, *neighbours()[2:]])
        # One batch of five failed at its fourth step; its rows ran again one by one, going on from there.
        assert engine.batch_sizes[before + 1:] == [5, 1, 1, 1, 1, 1]
        assert isinstance(results[2], RuntimeError) and "stop check broke" in str(results[2])
        assert results[:2] + results[3:] == alone  # text, streamed token ids, finish reason, token count
        assert await outcome(engine, neighbours()[0]) == alone[0]

    loop.run_until_complete(scenario())


def test_a_row_refused_on_arrival_never_joins_the_batch(transformers_engine):
    engine, loop = transformers_engine

    async def scenario():
        alone = [await outcome(engine, req) for req in neighbours()]
        bad = [request("Describe a red car.", stream=True, temperature=1.0, seed=2**64),  # over torch's seeds
               request("Describe a red car.", stream=False, stop=[b"\n"]),  # not text
               request("a red \ud800 car", stream=True)]  # not Unicode: the tokenizer would raise a TypeError
        before = len(engine.batch_sizes)
        results = await batched_transformers(engine, [neighbours()[0], bad[0], *neighbours()[1:3], bad[1],
                                                      neighbours()[3], bad[2]])
        assert engine.batch_sizes[before + 1:] == [4]  # the four neighbours, together, nothing run again
        assert isinstance(results[1], InvalidRequestError) and results[1].param == "seed"
        assert isinstance(results[4], InvalidRequestError) and results[4].param == "stop"
        assert isinstance(results[6], InvalidRequestError) and results[6].code == "invalid_unicode"
        assert [results[0], *results[2:4], results[5]] == alone
        assert await outcome(engine, neighbours()[1]) == alone[1]

    loop.run_until_complete(scenario())


@pytest.mark.skipif(not vllm_importable(), reason=f"vLLM is not installed here ({INSTALL_HINT})")
def test_vllm_refuses_a_bad_row_before_its_engine_core(tiny_models):
    """vLLM's engine core serves every running request: a row it cannot take (a seed over 64 bits, a stop that
    is not text: before, the core dropped it and its client waited for ever) is refused in this process."""
    engine = build_engine(ServerSettings(model=str(tiny_models["qwen3_vl"]), engine="vllm", dtype="float32"))

    async def scenario():
        await engine.start()
        try:
            alone = [await outcome(engine, req) for req in neighbours()]
            bad = [request("Describe a red car.", stream=True, temperature=1.0, seed=2**64),
                   request("Describe a red car.", stream=False, stop=[b"\n"]),
                   request("Describe a red car.", stream=True, stop=["a\ud800"]),
                   request("a red \ud800 car", stream=False)]
            together = await asyncio.gather(*(outcome(engine, req) for req in [*neighbours(), *bad]))
            assert together[:4] == alone
            assert [(type(e), e.param) for e in together[4:]] == [(InvalidRequestError, "seed"),
                                                                 (InvalidRequestError, "stop"),
                                                                 (InvalidRequestError, "stop"),
                                                                 (InvalidRequestError, "messages")]
            assert await outcome(engine, neighbours()[2]) == alone[2]
        finally:
            await engine.stop()

    asyncio.run(scenario())


def test_a_stream_closed_unread_stops_its_row(transformers_engine, until):
    """The server closes a stream it never read when the client left before the first byte: the row must stop
    (dropped from the queue or cancelled in its batch), not decode to ``max_tokens`` for nobody."""
    engine, loop = transformers_engine

    async def scenario():
        before = engine.cancelled_rows
        stream = await engine.submit(request("Describe a red car.", stream=True, max_tokens=2000))
        await stream.aclose()
        await until(lambda: engine.cancelled_rows == before + 1, "the unread row stopping", 60)
        text, _, finish, count = await collect(await engine.submit(request("Describe a red car.", stream=False)))
        assert (finish, count) == ("length", 10) and text

    loop.run_until_complete(scenario())
