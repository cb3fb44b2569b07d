"""Attention maps on the vLLM engine, captured in its workers, against the transformers engine's maps.

One live zwz server on vLLM per family for the whole module (each vLLM start costs ~15-20 s), with a small
token budget per step so that every image prompt here is prefilled in several chunks, and other requests
batched beside the maps; a transformers server on the same checkpoint answers the same requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import torch

from zwz.server.engines.base import (
    AttentionOptions,
    ChatMessage,
    GenerationRequest,
    InvalidRequestError,
    SamplingParams,
)
from zwz.server.engines.vllm_attention_worker import CaptureSpec, _Capture
from zwz.server.engines.vllm_setup import INSTALL_HINT, vllm_importable

QUESTION = "Where is the small red square in this picture?"
CHUNK_TOKENS = 64  # max_num_batched_tokens: a 448 px image alone is 256 tokens, so prompts take several steps
SIZES = [(224, 224), (448, 336), (560, 700)]

needs_vllm = pytest.mark.skipif(not vllm_importable(), reason=f"vLLM is not installed here ({INSTALL_HINT})")


# -- the capture bookkeeping alone (no vLLM) ---------------------------------------------------------------
def test_capture_overwrites_by_position_and_reports_gaps():
    spec = CaptureSpec("m", "question", (0,), prompt_len=10, keep_from=2)
    capture = _Capture(spec)
    keys = torch.arange(10.0)[:, None, None].expand(10, 1, 2)  # key row p holds the value p
    capture.record(0, keys[0:4], keys[0:4], start=0)  # first chunk: positions 0-3, only 2-3 kept
    assert capture.missing() == "layer 0: the last prompt position was not captured"
    capture.record(0, keys[7:10], keys[7:10], start=7)  # a later chunk, out of order, holds the last position
    assert capture.missing() == "layer 0: 3 prompt keys were not captured"
    capture.record(0, keys[4:7] * 0 - 1, keys[4:7] * 0 - 1, start=4)  # wrong values first ...
    capture.record(0, keys[0:7], keys[0:7], start=0)  # ... then a recompute from 0 (preemption) overwrites them
    assert capture.missing() is None
    assert capture.keys[0][:, 0, 0].tolist() == [float(p) for p in range(2, 10)]
    assert capture.query[0].tolist() == [[9.0, 9.0]]  # (Hq, D) of the last position
    capture.release()  # the map is made: the tensors go, even while the request still decodes
    assert capture.closed and not capture.keys and not capture.query


def test_capture_spec_round_trips_through_extra_args():
    spec = CaptureSpec("zwz-map-3", "generic", (1, 4), prompt_len=300, keep_from=270)

    class Params:
        extra_args = {"other": 1, **spec.to_extra_args()}

    assert CaptureSpec.from_sampling_params(Params()) == spec
    Params.extra_args = {"other": 1}
    assert CaptureSpec.from_sampling_params(Params()) is None


def test_tensor_parallel_ranks_add_up_to_the_all_heads_map():
    """Each rank returns its heads' sum; the map is the mean over every head, whatever the split."""
    from zwz.server.engines.vllm_attention import AttentionCaptureError, combine_ranks

    rng = np.random.default_rng(0)
    per_head = rng.random((2, 8, 2, 5))  # (layers, heads, question/generic, T)
    ranks = [{"layers": [3, 7], "head_sums": per_head[:, heads].sum(1).tolist(), "num_heads": len(heads)}
             for heads in ([0, 1, 2], [3, 4, 5, 6, 7])]  # uneven on purpose
    np.testing.assert_allclose(combine_ranks(ranks, [3, 7], 5).numpy(), per_head.mean(1), rtol=1e-6)
    pipeline = [{"layers": [3], "head_sums": per_head[:1].sum(1).tolist(), "num_heads": 8},
                {"layers": [7], "head_sums": per_head[1:].sum(1).tolist(), "num_heads": 8}]
    np.testing.assert_allclose(combine_ranks(pipeline, [3, 7], 5).numpy(), per_head.mean(1), rtol=1e-6)
    with pytest.raises(AttentionCaptureError, match="no worker returned layers \\[7\\]"):
        combine_ranks(pipeline[:1], [3, 7], 5)
    with pytest.raises(AttentionCaptureError, match="incomplete"):
        combine_ranks([{"error": "map m: the question capture is incomplete"}], [3], 5)


# -- live servers ------------------------------------------------------------------------------------------
@dataclass
class Stack:
    family: str
    engine: Any  # the VllmEngine behind ``url``
    loop: asyncio.AbstractEventLoop  # the server's event loop, where the engine runs
    url: str  # zwz on vLLM
    hf_url: str  # zwz on transformers, same checkpoint

    def run(self, coro, timeout: float = 600):
        """Run ``coro`` on the server's loop (vLLM's async engine lives there)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def open_captures(self) -> list[int]:
        return self.run(self.engine._llm.collective_rpc("zwz_attention_open"))


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def stack(request, tiny_models, run_app) -> Iterator[Stack]:
    if not vllm_importable():
        pytest.skip(f"vLLM is not installed here ({INSTALL_HINT})")
    from zwz.server.api.app import create_app
    from zwz.server.engines.vllm_engine import VllmEngine
    from zwz.server.engines.vllm_setup import VllmSettings
    from zwz.server.launch import build_engine
    from zwz.server.settings import ServerSettings

    family = request.param
    folder = tiny_models[family]
    engine = VllmEngine(folder, VllmSettings(dtype="float32", max_num_batched_tokens=CHUNK_TOKENS, max_num_seqs=8))
    loops: list[asyncio.AbstractEventLoop] = []
    start = engine.start

    async def start_here() -> None:  # remember the server's loop, to call the engine directly in tests
        loops.append(asyncio.get_running_loop())
        await start()

    engine.start = start_here
    vllm_app = create_app(ServerSettings(model=str(folder), engine="vllm", served_model_name=family), engine)
    hf_settings = ServerSettings(model=str(folder), engine="transformers", dtype="float32", served_model_name=family)
    hf_app = create_app(hf_settings, build_engine(hf_settings))
    with run_app(vllm_app) as url, run_app(hf_app) as hf_url:
        yield Stack(family, engine, loops[0], url, hf_url)


@pytest.fixture(scope="module")
def hf_reference(stack, tiny_models):
    """The transformers engine's fast relative attention on the same checkpoint, fp32."""
    from zwz.analytics.attention import capture
    from zwz.analytics.attention.relative_attention import build_pair, relative_attention
    from zwz.server.engines.model_loading import load_model

    loaded = load_model(tiny_models[stack.family], device="cpu", dtype="float32",
                        attn_implementation=capture.attn_implementation())

    def reference(image, question: str = QUESTION):
        pair = build_pair(loaded.processor, image, question)
        return relative_attention(loaded.model, loaded.processor, pair, layers="all")

    return reference


def chat(*content, max_tokens: int = 12, attention: AttentionOptions | None = None,
         stream: bool = True) -> GenerationRequest:
    return GenerationRequest(messages=[ChatMessage("user", list(content))],
                             sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0), stream=stream,
                             attention=attention)


async def answer(engine, request: GenerationRequest) -> tuple[list[int], Any]:
    """The answer's token ids and its last chunk."""
    chunks = [c async for c in await engine.submit(request)]
    return [t for chunk in chunks for t in chunk.token_ids], chunks[-1]


def assert_maps_equal(vllm_result, hf_result, rtol: float = 1e-4) -> None:
    assert sorted(vllm_result.layers) == sorted(hf_result.layers)
    assert vllm_result.grid_shape == hf_result.grid_shape
    assert vllm_result.image_grid_thw == hf_result.image_grid_thw
    for layer in hf_result.layers:
        np.testing.assert_allclose(vllm_result.question[layer], hf_result.question[layer], rtol=rtol, atol=0)
        np.testing.assert_allclose(vllm_result.generic[layer], hf_result.generic[layer], rtol=rtol, atol=0)
        np.testing.assert_allclose(vllm_result.layers[layer], hf_result.layers[layer], rtol=rtol, atol=0)


def assert_grids_equal(a: dict, b: dict, rtol: float = 1e-4) -> None:
    """Two API maps (``layer_grids`` per layer) agree to ``rtol`` of each grid's largest value."""
    assert set(a["layer_grids"]) == set(b["layer_grids"])
    for layer, grid in b["layer_grids"].items():
        x, y = np.array(a["layer_grids"][layer]), np.array(grid)
        assert np.abs(x - y).max() <= rtol * np.abs(y).max(), layer


def messages_with(picture_url: str, question: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": picture_url}},
                                         {"type": "text", "text": question}]}]


@needs_vllm
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_maps_equal_transformers_every_layer_chunked_in_a_batch(stack, hf_reference, images, size):
    """Every layer, prompts prefilled in chunks of 64 tokens, two plain answers decoded in the same batches."""
    engine = stack.engine
    picture = images.noise(*size, seed=sum(size))
    others = [chat(images.noise(320, 240, seed=1), "Describe it.", max_tokens=16), chat("Say hello.", max_tokens=16)]

    async def batch():
        plain = [asyncio.ensure_future(answer(engine, r)) for r in others]
        result = await engine.attention_maps.analyze(picture, QUESTION, layers="all")
        await asyncio.gather(*plain)
        return result

    result = stack.run(batch())
    expected = hf_reference(picture)
    visual = result.grid_shape[0] * result.grid_shape[1]
    assert visual > CHUNK_TOKENS or size == (224, 224)  # the larger prompts' images span several steps
    assert_maps_equal(result, expected)
    assert set(result.timings_ms) >= {"prefill", "generic_suffix", "map"}
    assert stack.open_captures() == [0]  # captures freed once the map is made


@needs_vllm
def test_chat_maps_streaming_and_not_equal_transformers_and_leave_the_answer(stack, images):
    picture = images.data_url(images.noise(448, 336, seed=5))
    body = {"messages": messages_with(picture), "max_tokens": 10, "temperature": 0}
    mapped = {"zwz_attention": {"layer": "all", "box": [40, 30, 300, 200]}}
    vllm = openai.OpenAI(base_url=stack.url + "/v1", api_key="x", max_retries=0)
    hf = openai.OpenAI(base_url=stack.hf_url + "/v1", api_key="x", max_retries=0)
    plain = vllm.chat.completions.create(model=stack.family, **body)
    whole = vllm.chat.completions.create(model=stack.family, **body, extra_body=mapped)
    chunks = list(vllm.chat.completions.create(model=stack.family, **body, extra_body=mapped, stream=True))
    expected = hf.chat.completions.create(model=stack.family, **body, extra_body=mapped)

    assert whole.choices[0].message.content == plain.choices[0].message.content  # greedy: the map changes nothing
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == plain.choices[0].message.content
    assert plain.choices[0].message.content == expected.choices[0].message.content
    assert "zwz_attention" not in (plain.model_extra or {})
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    reference = expected.model_extra["zwz_attention"]
    for got in (whole.model_extra["zwz_attention"], finals[0].model_extra["zwz_attention"]):
        assert_grids_equal(got, reference)
        assert got["coverage"] == pytest.approx(reference["coverage"], rel=1e-4)
        assert got["suggested_box"] == reference["suggested_box"] and got["grid_shape"] == reference["grid_shape"]
    assert stack.open_captures() == [0]


@needs_vllm
def test_plain_request_next_to_a_map_gets_the_same_tokens(stack, images):
    engine = stack.engine
    plain = chat(images.noise(400, 300, seed=8), "What is in the corner?", max_tokens=16)
    mapped = chat(images.noise(448, 448, seed=9), QUESTION, max_tokens=16, attention=AttentionOptions(layers=[0, 2]))
    unmapped = chat(images.noise(448, 448, seed=9), QUESTION, max_tokens=16)

    alone = stack.run(answer(engine, plain))[0]
    without_map = stack.run(answer(engine, unmapped))[0]

    async def together():
        return await asyncio.gather(answer(engine, plain), answer(engine, mapped), answer(engine, plain))

    beside, (with_map, last), again = stack.run(together())
    assert beside[0] == alone and again[0] == alone
    assert with_map == without_map
    assert last.attention is not None and sorted(last.attention.layers) == [0, 2]


@needs_vllm
def test_cancelled_mapped_stream_frees_its_captures(stack, images):
    engine = stack.engine

    async def leave_early():
        stream = await engine.submit(chat(images.noise(448, 448, seed=2), QUESTION, max_tokens=64,
                                          attention=AttentionOptions(layers="all")))
        await stream.__anext__()
        await stream.aclose()

    stack.run(leave_early())
    deadline = time.monotonic() + 30
    while stack.open_captures() != [0] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack.open_captures() == [0]


BAD_REQUESTS = [
    ("/v1/zoom/attention", {"image": "IMAGE", "question": QUESTION, "layer": 6}),
    ("/v1/zoom/attention", {"image": "IMAGE", "question": QUESTION, "layer": [0, -9]}),
    ("/v1/zoom/attention", {"image": "IMAGE", "question": QUESTION, "box": [500, 10, 700, 100]}),
    ("/v1/zoom/attention", {"question": QUESTION}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "zwz_attention": {}}),
    ("/v1/chat/completions", {"messages": "IMAGE_MESSAGES", "zwz_attention": {"layer": 99}}),
    ("/v1/chat/completions", {"messages": "IMAGE_MESSAGES", "zwz_attention": {"box": [0, 0, 900, 10]}}),
    ("/v1/chat/completions", {"messages": "IMAGE_MESSAGES", "zwz_attention": {}, "zwz_mode": "agent"}),
]


@needs_vllm
@pytest.mark.parametrize("path, body", BAD_REQUESTS, ids=lambda v: v if isinstance(v, str) else "")
def test_bad_requests_get_the_transformers_engine_400s(stack, images, path, body, good_request):
    picture = images.data_url(images.noise(448, 336, seed=4))
    body = {"model": stack.family, "max_tokens": 4,
            **{k: (picture if v == "IMAGE" else messages_with(picture) if v == "IMAGE_MESSAGES" else v)
               for k, v in body.items()}}
    if path.endswith("attention"):
        body.pop("max_tokens")
    got = httpx.post(stack.url + path, json=body, timeout=120)
    expected = httpx.post(stack.hf_url + path, json=body, timeout=120)
    assert expected.status_code == 400, expected.text
    assert got.status_code == 400, got.text
    assert got.json() == expected.json()
    good_request(openai.OpenAI(base_url=stack.url + "/v1", api_key="x", max_retries=0), stack.family)


@needs_vllm
def test_reference_method_is_refused_on_vllm(stack, images, good_request):
    picture = images.data_url(images.noise(224, 224))
    r = httpx.post(stack.url + "/v1/zoom/attention", json={"image": picture, "question": QUESTION,
                                                            "method": "reference"}, timeout=120)
    assert r.status_code == 400 and r.json()["error"]["param"] == "method", r.text
    good_request(openai.OpenAI(base_url=stack.url + "/v1", api_key="x", max_retries=0), stack.family)


@needs_vllm
def test_attention_zoom_mode_answers_as_on_transformers(stack, images):
    picture = images.data_url(images.noise(448, 448, seed=6))
    body = {"model": stack.family, "messages": messages_with(picture), "max_tokens": 8, "temperature": 0,
            "zwz_mode": "attention_zoom"}
    got = httpx.post(stack.url + "/v1/chat/completions", json=body, timeout=120)
    expected = httpx.post(stack.hf_url + "/v1/chat/completions", json=body, timeout=120)
    assert got.status_code == 200, got.text
    assert got.json()["choices"][0]["message"]["content"] == expected.json()["choices"][0]["message"]["content"]
    assert got.json()["zwz_trajectory"]["mode"] == "attention_zoom"
