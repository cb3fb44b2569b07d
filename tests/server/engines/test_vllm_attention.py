"""Attention maps on the vLLM engine, captured in its workers, against the transformers engine's maps.

One vLLM engine per family for the whole module (each start costs ~15-20 s), with a small token budget per
step so that every prompt here is prefilled in several chunks, and other requests batched beside the maps.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
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


def test_capture_spec_round_trips_through_extra_args():
    spec = CaptureSpec("zwz-map-3", "generic", (1, 4), prompt_len=300, keep_from=270)

    class Params:
        extra_args = {"other": 1, **spec.to_extra_args()}

    assert CaptureSpec.from_sampling_params(Params()) == spec
    Params.extra_args = {"other": 1}
    assert CaptureSpec.from_sampling_params(Params()) is None


# -- a live vLLM engine ------------------------------------------------------------------------------------
class _Loop:
    """One event loop in a thread for the module, so one started engine serves every test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 600):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def vllm_maps(request, tiny_models) -> Iterator[tuple]:
    """(family, engine, maps, loop) for a started vLLM engine with chunked prefill."""
    if not vllm_importable():
        pytest.skip(f"vLLM is not installed here ({INSTALL_HINT})")
    from zwz.server.engines.vllm_attention import VllmAttentionMaps
    from zwz.server.engines.vllm_engine import VllmEngine
    from zwz.server.engines.vllm_setup import VllmSettings

    family = request.param
    engine = VllmEngine(tiny_models[family], VllmSettings(dtype="float32", max_num_batched_tokens=CHUNK_TOKENS,
                                                          max_num_seqs=8))
    loop = _Loop()
    loop.run(engine.start())
    maps = getattr(engine, "attention_maps", None)
    if maps is None:  # an engine without the integration: build the maps over its running AsyncLLM
        num_layers = engine._vllm_config.model_config.hf_config.get_text_config().num_hidden_layers
        maps = VllmAttentionMaps(engine._llm, engine.processor, num_layers=num_layers, render=engine._render)
        loop.run(maps.install())
    try:
        yield family, engine, maps, loop
    finally:
        loop.run(engine.stop())
        loop.close()


@pytest.fixture(scope="module")
def hf_reference(vllm_maps, tiny_models):
    """The transformers engine's fast relative attention on the same checkpoint, fp32."""
    from zwz.analytics.attention import capture
    from zwz.analytics.attention.relative_attention import build_pair, relative_attention
    from zwz.server.engines.model_loading import load_model

    family = vllm_maps[0]
    loaded = load_model(tiny_models[family], device="cpu", dtype="float32",
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


async def answer_tokens(engine, request: GenerationRequest) -> list[int]:
    return [t for chunk in [c async for c in await engine.submit(request)] for t in chunk.token_ids]


def assert_maps_equal(vllm_result, hf_result, rtol: float = 1e-4) -> None:
    assert sorted(vllm_result.layers) == sorted(hf_result.layers)
    assert vllm_result.grid_shape == hf_result.grid_shape
    assert vllm_result.image_grid_thw == hf_result.image_grid_thw
    for layer in hf_result.layers:
        np.testing.assert_allclose(vllm_result.question[layer], hf_result.question[layer], rtol=rtol, atol=0)
        np.testing.assert_allclose(vllm_result.generic[layer], hf_result.generic[layer], rtol=rtol, atol=0)
        np.testing.assert_allclose(vllm_result.layers[layer], hf_result.layers[layer], rtol=rtol, atol=0)


@needs_vllm
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_maps_equal_transformers_every_layer_chunked_in_a_batch(vllm_maps, hf_reference, images, size):
    """Every layer, prompts prefilled in chunks of 64 tokens, two plain answers decoded in the same batches."""
    family, engine, maps, loop = vllm_maps
    picture = images.noise(*size, seed=sum(size))
    others = [chat(images.noise(320, 240, seed=1), "Describe it.", max_tokens=16), chat("Say hello.", max_tokens=16)]

    async def batch():
        plain = [asyncio.ensure_future(answer_tokens(engine, r)) for r in others]
        result = await maps.analyze(picture, QUESTION, layers="all")
        await asyncio.gather(*plain)
        return result

    result = loop.run(batch())
    expected = hf_reference(picture)
    visual = result.grid_shape[0] * result.grid_shape[1]
    assert visual > CHUNK_TOKENS or size == (224, 224)  # the larger prompts' images span several steps
    assert_maps_equal(result, expected)
    assert set(result.timings_ms) >= {"prefill", "generic_suffix", "map"}
    assert loop.run(engine._llm.collective_rpc("zwz_attention_open")) == [0]  # captures freed


@needs_vllm
def test_bad_map_requests_are_refused_like_transformers(vllm_maps, images):
    family, engine, maps, loop = vllm_maps
    with pytest.raises(InvalidRequestError) as err:
        loop.run(maps.analyze(images.noise(224, 224), QUESTION, layers=99))
    assert err.value.code == "layer_out_of_range" and err.value.param == "layer"
    with pytest.raises(InvalidRequestError) as err:
        loop.run(maps.analyze(images.noise(224, 224), QUESTION, method="reference"))
    assert err.value.param == "method"
    rendered = loop.run(engine._render(chat("No picture here.")))
    with pytest.raises(InvalidRequestError, match="needs an image"):
        maps.plan(rendered.engine_input, [0])
