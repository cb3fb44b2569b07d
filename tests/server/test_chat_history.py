"""How earlier turns are rendered: an assistant tool-call turn with content "" reads as one with no content."""

from __future__ import annotations

import openai
import pytest

MODEL = "qwen3_vl"
CALL = {"id": "call_0", "type": "function",
        "function": {"name": "image_zoom_in_tool", "arguments": '{"bbox_2d": [0, 0, 32, 32]}'}}  # fmt: skip


@pytest.fixture(scope="module")
def client(serve, tiny_models):
    with serve(tiny_models[MODEL]) as (url, _):
        yield openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)


def history(assistant_content: str | None) -> list[dict]:
    return [{"role": "user", "content": "Zoom into the corner."},
            {"role": "assistant", "content": assistant_content, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_0", "content": "It says STOP."}]  # fmt: skip


def test_empty_assistant_content_renders_like_no_content(client):
    replies = [client.chat.completions.create(model=MODEL, messages=history(c), max_tokens=8, temperature=0)
               for c in (None, "")]
    assert replies[0].usage.prompt_tokens == replies[1].usage.prompt_tokens
    assert replies[0].choices[0].message.content == replies[1].choices[0].message.content
    # text in that turn does count: the check above compares prompts, not a fixed length
    with_text = client.chat.completions.create(model=MODEL, messages=history("Let me look."), max_tokens=8,
                                               temperature=0)
    assert with_text.usage.prompt_tokens > replies[0].usage.prompt_tokens
