"""The request rules both engines share (pixel budget, context checks, generation_config defaults), pinned
down where mutation testing (tools/mutation.sh request_policy) found them reachable only through a live server.

The image processor is transformers' own PIL Qwen2-VL processor (14 px patches, 2x2 merge: one visual token
per 784 pixels) and the defaults a real ``GenerationConfig``.
"""

from __future__ import annotations

import pytest

from zwz.server.engines.base import InvalidRequestError, SamplingParams
from zwz.server.engines.request_policy import RowSettings, check_context, pixel_budget, row_settings

# transformers only after zwz: importing zwz first hides CUDA-built torchvision wheels from it (zwz/compat.py).
from transformers import GenerationConfig  # noqa: E402
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil  # noqa: E402

PROCESSOR = Qwen2VLImageProcessorPil()  # shortest_edge 3136, longest_edge 1003520
TOKEN = 28 * 28


def test_pixel_budget_unset_bounds_keep_the_processors():
    assert pixel_budget(PROCESSOR, None, None) == {"shortest_edge": 3136, "longest_edge": 1003520}
    assert pixel_budget(PROCESSOR, 4096, None) == {"shortest_edge": 4096, "longest_edge": 1003520}
    assert pixel_budget(PROCESSOR, None, 8192) == {"shortest_edge": 3136, "longest_edge": 8192}


def test_pixel_budget_bounds_are_inclusive():
    assert pixel_budget(PROCESSOR, TOKEN, TOKEN) == {"shortest_edge": TOKEN, "longest_edge": TOKEN}


@pytest.mark.parametrize(("lo", "hi"), [(TOKEN - 1, 4096), (4096, 4095), (None, 3135)])
def test_pixel_budget_refuses_an_impossible_budget(lo, hi):
    got_lo = 3136 if lo is None else lo
    message = rf"^pixel budget must satisfy 784 <= min_pixels <= max_pixels \(got {got_lo}, {hi}\)$"
    with pytest.raises(InvalidRequestError, match=message) as e:
        pixel_budget(PROCESSOR, lo, hi)
    assert (e.value.param, e.value.code, e.value.status_code) == ("mm_processor_kwargs", None, 400)
    assert pixel_budget(PROCESSOR, got_lo if got_lo >= TOKEN else TOKEN, 8192)["longest_edge"] == 8192


def test_context_full_prompt_is_refused():
    with pytest.raises(InvalidRequestError, match=r"^the prompt has 100 tokens \(60 of them visual\), over this "
                       r"model's context of 100; send a smaller image \(max_pixels\) or a shorter prompt$") as e:
        check_context(100, 60, None, 100)
    assert (e.value.param, e.value.code) == ("messages", "context_length_exceeded")
    assert check_context(99, 60, None, 100) is None  # one token of room is enough


def test_context_max_tokens_past_the_end_is_refused():
    with pytest.raises(InvalidRequestError,
                       match=r"^prompt \(90 tokens\) \+ max_tokens \(11\) exceeds the context of 100 tokens$") as e:
        check_context(90, 0, 11, 100)
    assert (e.value.param, e.value.code) == ("max_tokens", "context_length_exceeded")
    assert check_context(90, 0, 10, 100) is None  # exactly filling the context is allowed


SAMPLING_CONFIG = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.8, top_k=20)
GREEDY_CONFIG = GenerationConfig()  # do_sample, temperature, top_p, top_k all unset


def settings(sampling: SamplingParams, defaults: GenerationConfig, prompt_tokens: int = 40) -> RowSettings:
    return row_settings(sampling, defaults, prompt_tokens=prompt_tokens, max_model_len=100, default_max_tokens=16)


def test_unset_fields_take_the_generation_config():
    assert settings(SamplingParams(), SAMPLING_CONFIG) == RowSettings(
        max_tokens=16, temperature=0.7, top_p=0.8, top_k=20, seed=None, stop=())


def test_set_fields_override_the_generation_config():
    sampling = SamplingParams(max_tokens=5, temperature=0.0, top_p=0.5, top_k=0, seed=3, stop=["</a>", "", "x"])
    assert settings(sampling, SAMPLING_CONFIG) == RowSettings(
        max_tokens=5, temperature=0.0, top_p=0.5, top_k=0, seed=3, stop=("</a>", "x"))


def test_a_greedy_config_stays_greedy():
    assert settings(SamplingParams(), GREEDY_CONFIG) == RowSettings(max_tokens=16, temperature=0.0, top_p=1.0, top_k=0)
    # Its top_k is not applied without do_sample; top_p is (the request may still sample).
    config = GenerationConfig(do_sample=False, temperature=0.3, top_p=0.9, top_k=5)
    assert settings(SamplingParams(), config) == RowSettings(max_tokens=16, temperature=0.0, top_p=0.9, top_k=0)
    assert settings(SamplingParams(temperature=0.5, top_k=4), config) == RowSettings(
        max_tokens=16, temperature=0.5, top_p=0.9, top_k=4)


def test_sampling_config_without_values_samples_plainly():
    config = GenerationConfig(do_sample=True, temperature=None, top_p=None, top_k=None)
    assert settings(SamplingParams(), config) == RowSettings(max_tokens=16, temperature=1.0, top_p=1.0, top_k=0)


def test_default_max_tokens_is_capped_by_the_room_left():
    assert settings(SamplingParams(), GREEDY_CONFIG, prompt_tokens=90).max_tokens == 10
    assert settings(SamplingParams(), GREEDY_CONFIG, prompt_tokens=84).max_tokens == 16
    # A requested max_tokens is kept: check_context refuses one that does not fit.
    assert settings(SamplingParams(max_tokens=30), GREEDY_CONFIG, prompt_tokens=90).max_tokens == 30
    assert settings(SamplingParams(max_tokens=0), GREEDY_CONFIG).max_tokens == 1  # at least one token


def test_seed_bounds_are_64_bits_inclusive():
    for seed in (-(2**63), 2**63 - 1, 0):
        assert settings(SamplingParams(seed=seed), GREEDY_CONFIG).seed == seed
    assert settings(SamplingParams(seed=-1), GREEDY_CONFIG).seed is None  # -1: no seed, as in vLLM
    for seed in (-(2**63) - 1, 2**63):
        with pytest.raises(InvalidRequestError, match=r"^seed must be a 64-bit integer \(-9223372036854775808 to "
                           r"9223372036854775807\)$") as e:
            settings(SamplingParams(seed=seed), GREEDY_CONFIG)
        assert e.value.param == "seed"
    assert settings(SamplingParams(seed=-2), GREEDY_CONFIG).seed == -2


def test_tiny_temperature_is_raised_to_the_sampling_floor():
    assert settings(SamplingParams(temperature=1e-9), GREEDY_CONFIG).temperature == 1e-2
    assert settings(SamplingParams(temperature=0.5), GREEDY_CONFIG).temperature == 0.5
    assert settings(SamplingParams(temperature=0.0), GREEDY_CONFIG).temperature == 0.0


def test_stop_strings_must_encode():
    with pytest.raises(InvalidRequestError, match=r"^stop strings must be valid Unicode text \(got 'a\\ud800'\)$") as e:
        settings(SamplingParams(stop=["a\ud800"]), GREEDY_CONFIG)
    assert e.value.param == "stop"
    assert settings(SamplingParams(stop=["é", "</a>"]), GREEDY_CONFIG).stop == ("é", "</a>")  # non-ASCII is fine
