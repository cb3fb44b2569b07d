"""The embedded default, zwz-nano (trained here by ``zwz train nano``), on both engines: it answers held-out
ZoomWorld items (a seed no pool of its recipe used) through the official ``openai`` client well above what
random weights or a guess can. Colour, open questions, global view: the dimension and form it learned (its
eval: 77% there; structure stayed at chance, see the README's zwz-nano results).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zwz.endpoint import image_data_url

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("serve_engine", ["transformers", "vllm"], indirect=True)]

HELD_OUT_SEED = 9001  # `zwz train nano --seed 0` drew its pools from seeds 1, 2 and 3
N_ITEMS = 30
# Six colours: a guess gets 1/6 (5 of 30 expected; P(>= 15 of 30 by guessing) < 1e-4); random weights get 0.
MIN_CORRECT = 15


@pytest.fixture(scope="module")
def held_out():
    from zwz.distill.zoomworld import generate_zoomworld
    from zwz.model_card import read_card
    from zwz.server.launch import embedded_default_model

    card = read_card(embedded_default_model())
    assert card is not None and "color" in card["recipe"]["dimensions"], card
    return generate_zoomworld(N_ITEMS, HELD_OUT_SEED, level="nano", dimensions=["color"], multiple_choice_ratio=0.0)


@pytest.fixture(scope="module")
def default_server(serve) -> Iterator[str]:
    from zwz.server.launch import embedded_default_model

    with serve(embedded_default_model()) as (url, _):
        yield url


def test_health_says_trained_and_on_what(default_server):
    import httpx

    health = httpx.get(default_server + "/health", timeout=10).json()
    assert health["model"] == "zwz-nano" and health["random_weights"] is False
    assert "R2I items distilled by `zwz train nano`" in health["trained_on"]


def test_it_answers_held_out_items_on_the_global_view(default_server, held_out):
    from openai import OpenAI

    from zwz.scoring.rules import rule_match

    client = OpenAI(base_url=default_server + "/v1", api_key="unused")
    correct, replies = 0, []
    for item in held_out:
        reply = client.chat.completions.create(
            model="zwz-nano", max_tokens=16, temperature=0,
            messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image_data_url(item.image)}},
                {"type": "text", "text": item.prompt}]}])
        text = reply.choices[0].message.content or ""
        replies.append((item.answer_text, text))
        correct += bool(rule_match(text, item.answer, options=item.options))
    assert correct >= MIN_CORRECT, f"{correct}/{len(held_out)} correct: {replies[:8]}"
