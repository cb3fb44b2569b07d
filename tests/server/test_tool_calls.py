"""Qwen <tool_call> blocks become OpenAI tool_calls when a request carries tools (streaming and not).

A random-weight model never writes a tool call, so a scripted engine (``ScriptedEngine`` in conftest.py:
the engine protocol, fixed text token by token) stands behind the real app, server and openai client.
"""

from __future__ import annotations

import json
import openai
import pytest

from zwz.server.serving.tool_parsing import ToolCallStream, extract_tool_calls

CALL = '<tool_call>\n{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [10, 20, 300, 400], "label": "sign", "img_idx": 0}}\n</tool_call>'
TOOLS = [{"type": "function", "function": {"name": "image_zoom_in_tool", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize("script, content", [
    (f"Let me zoom.\n{CALL}", "Let me zoom."),
    (CALL, None),
])
def test_tool_calls_non_streaming(serve_scripted, scripted_engine, script, content):
    with serve_scripted(scripted_engine(script)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        r = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}], tools=TOOLS)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content == content
        (call,) = choice.message.tool_calls
        assert call.function.name == "image_zoom_in_tool"
        assert json.loads(call.function.arguments)["bbox_2d"] == [10, 20, 300, 400]
        # Without tools in the request the text comes back untouched.
        plain = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}])
        assert plain.choices[0].message.content == script and plain.choices[0].finish_reason == "stop"


def test_tool_calls_streaming_hold_back_the_block(serve_scripted, scripted_engine):
    with serve_scripted(scripted_engine(f"Looking closer <tool_c then\n{CALL}")) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        chunks = list(client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}],
                                                     tools=TOOLS, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Looking closer <tool_c then\n"  # the partial tag was released once it was not a block
    calls = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    assert [tc.function.name for tc in calls] == ["image_zoom_in_tool"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_invalid_block_stays_in_content():
    content, calls = extract_tool_calls("a <tool_call>{oops</tool_call> b")
    assert calls == [] and content == "a <tool_call>{oops</tool_call> b"
    content, calls = extract_tool_calls(f"{CALL}\n{CALL}")
    assert len(calls) == 2 and content is None


def test_stream_splitter_char_by_char():
    stream = ToolCallStream()
    text = f"abc {CALL} tail"
    sent = "".join(stream.feed(ch) for ch in text)
    assert sent == "abc "
    rest, calls = stream.finish()
    assert rest == "tail" and len(calls) == 1
