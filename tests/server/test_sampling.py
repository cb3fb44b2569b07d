"""Sampling settings through the live API, on both engines: each one must change what the server answers.

A random tiny model's next-token distribution is nearly uniform (entropy 7.60 nats at temperature 1.0,
against ln 2048 = 7.62 for a uniform one; the likeliest first token of ``PROMPT`` has p = 0.0012), so two
48-token samples agree by chance with probability far below 1e-100, and the nucleus of a small ``top_p``
holds a known handful of tokens. A server that drops ``temperature``, ``top_p``, ``top_k`` or ``seed``
(or maps one of them wrongly into vLLM's ``SamplingParams``) fails here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import openai
import pytest

pytestmark = pytest.mark.parametrize("serve_engine", ["transformers", "vllm"], indirect=True)

PROMPT = [{"role": "user", "content": "Tell me a story about a red car."}]
TOKENS = 48
SEED_PAIRS = [(1, 2), (3, 4), (5, 6)]
# The model's own defaults in the second server: sample at 1.5 from the top 1 (so unset fields give greedy).
DEFAULTS = {"do_sample": True, "temperature": 1.5, "top_k": 1}


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def plain(serve, tiny_models):
    """A server on the tiny model as built (its generation_config does not sample)."""
    with serve(tiny_models["qwen3_vl"]) as (url, _):
        yield _client(url)


@pytest.fixture(scope="module")
def with_defaults(serve, tiny_models, tmp_path_factory):
    """A server on a copy of the same weights whose generation_config.json sets ``DEFAULTS``."""
    model = tmp_path_factory.mktemp("sampling-defaults") / "qwen3_vl"
    shutil.copytree(tiny_models["qwen3_vl"], model)
    config_path = model / "generation_config.json"
    config = json.loads(config_path.read_text())
    config.update(DEFAULTS)
    config_path.write_text(json.dumps(config))
    with serve(model) as (url, _):
        yield _client(url)


def ask(client: openai.OpenAI, *, stream: bool = False, **fields) -> tuple[str, str, int]:
    """(text, finish_reason, completion_tokens) of one answer to ``PROMPT``; ``top_k`` goes as an extra field."""
    extra = {"top_k": fields.pop("top_k")} if "top_k" in fields else None
    if "max_tokens" not in fields:
        fields.setdefault("max_completion_tokens", TOKENS)
    if not stream:
        r = client.chat.completions.create(model="qwen3_vl", messages=PROMPT, extra_body=extra, **fields)
        return r.choices[0].message.content, r.choices[0].finish_reason, r.usage.completion_tokens
    chunks = list(client.chat.completions.create(model="qwen3_vl", messages=PROMPT, extra_body=extra, stream=True,
                                                 stream_options={"include_usage": True}, **fields))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    (finish,) = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    return text, finish, chunks[-1].usage.completion_tokens


def greedy(client: openai.OpenAI, **fields) -> str:
    return ask(client, temperature=0, **fields)[0]


def first_tokens(client: openai.OpenAI, seeds: range, **fields) -> set[str]:
    """The distinct one-token answers over ``seeds`` (a token's text; a few tokens share one, e.g. "")."""
    answers = [ask(client, max_completion_tokens=1, seed=seed, **fields) for seed in seeds]
    assert {n for _, _, n in answers} == {1}
    return {text for text, _, _ in answers}


def test_max_completion_tokens_and_max_tokens_are_exact(plain):
    for n in (1, 5, TOKENS):
        for field in ("max_completion_tokens", "max_tokens"):
            for stream in (False, True):
                _, finish, count = ask(plain, stream=stream, temperature=0, **{field: n})
                assert (finish, count) == ("length", n), (field, n, stream)
    # A shorter answer is the start of the longer one (greedy), not another answer.
    assert greedy(plain).startswith(greedy(plain, max_completion_tokens=5))
    # Both set: max_completion_tokens (OpenAI's current name) wins over the deprecated max_tokens.
    assert ask(plain, temperature=0, max_completion_tokens=3, max_tokens=9)[1:] == ("length", 3)


def test_seed_decides_the_sample(plain):
    reference = greedy(plain)
    samples = {}
    for a, b in SEED_PAIRS:
        for seed in (a, b):
            # (A sample may end early: the two end-of-text tokens hold ~1/1000 of the mass at each step.)
            samples[seed] = ask(plain, temperature=1.0, seed=seed)[0]
        assert samples[a] != samples[b]
    assert len(set(samples.values())) == len(samples)  # no two seeds agree, and none is the greedy answer
    assert reference not in samples.values()
    # The same seed samples the same answer again, streamed or not.
    assert ask(plain, temperature=1.0, seed=1)[0] == samples[1]
    assert ask(plain, temperature=1.0, seed=1, stream=True)[0] == samples[1]


def test_top_k_one_is_greedy_and_top_k_bounds_the_choice(plain):
    reference = greedy(plain)
    for seed in (1, 2, 3):
        assert ask(plain, temperature=1.5, top_k=1, seed=seed)[0] == reference
    choices = first_tokens(plain, range(12), temperature=1.5, top_k=3)
    assert 2 <= len(choices) <= 3  # it still samples, among three tokens only


def test_small_top_p_narrows_the_choice(plain):
    # At temperature 1.0 the three likeliest first tokens hold 0.0032 of the mass, the first two 0.0022:
    # top_p 0.0025 keeps exactly those three; top_p 1.0 keeps all 2048.
    narrow = first_tokens(plain, range(16), temperature=1.0, top_p=0.0025)
    wide = first_tokens(plain, range(16), temperature=1.0, top_p=1.0)
    assert 2 <= len(narrow) <= 3
    assert len(wide) >= 12


def test_generation_config_defaults_apply_to_unset_fields_only(plain, with_defaults):
    reference = greedy(plain)
    # Everything unset: the defaults' top_k 1 makes sampling at 1.5 greedy, whatever the seed.
    for seed in (1, 2):
        assert ask(with_defaults, seed=seed)[0] == reference
    # top_k set to 0 (off): the default temperature 1.5 still applies, so seeds differ.
    one, two = (ask(with_defaults, top_k=0, seed=seed)[0] for seed in (1, 2))
    assert len({one, two, reference}) == 3
    # temperature set to 0: greedy although the defaults sample.
    assert ask(with_defaults, temperature=0, top_k=0, seed=1)[0] == reference
    # The plain model's generation_config does not sample: unset temperature is greedy there.
    for seed in (1, 2):
        assert ask(plain, top_k=0, seed=seed)[0] == reference
