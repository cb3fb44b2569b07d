"""Tool-call parsing, pinned down where mutation testing (tools/mutation.sh tool_parsing) found it loose.

What a client would see change: a valid call after an invalid block, calls without arguments or with
arguments already a JSON string, the OpenAI shape of a call, and streamed content that must never carry
any part of a block (one at the very start, or a second one later).
"""

from __future__ import annotations

import json
import re

from zwz.server.serving.tool_parsing import ParsedToolCall, ToolCallStream, extract_tool_calls

CALL = '<tool_call>\n{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [10, 20, 300, 400]}}\n</tool_call>'
ZOOM = ParsedToolCall("image_zoom_in_tool", '{"bbox_2d": [10, 20, 300, 400]}')


def test_a_bad_block_does_not_hide_the_calls_after_it():
    for bad in ("<tool_call>{oops</tool_call>", '<tool_call>["zoom"]</tool_call>',
                '<tool_call>{"arguments": {}}</tool_call>'):
        content, calls = extract_tool_calls(f"a {bad} b {CALL}")
        assert (content, calls) == (f"a {bad} b", [ZOOM])


def test_arguments_missing_or_already_json_text():
    assert extract_tool_calls('<tool_call>{"name": "zoom"}</tool_call>') == (None, [ParsedToolCall("zoom", "{}")])
    text = '<tool_call>{"name": "zoom", "arguments": "{\\"x\\": 1}"}</tool_call>'
    assert extract_tool_calls(text) == (None, [ParsedToolCall("zoom", '{"x": 1}')])


def test_openai_shape():
    first, second = ZOOM.to_openai(), ZOOM.to_openai()
    assert re.fullmatch(r"call_[0-9a-f]{24}", first["id"]) and first["id"] != second["id"]
    assert first == {"id": first["id"], "type": "function",
                     "function": {"name": "image_zoom_in_tool", "arguments": '{"bbox_2d": [10, 20, 300, 400]}'}}
    assert json.loads(first["function"]["arguments"]) == {"bbox_2d": [10, 20, 300, 400]}


def test_stream_holds_a_block_at_the_very_start():
    stream = ToolCallStream()
    assert stream.feed(CALL) == ""
    assert stream.finish() == ("", [ZOOM])


def test_stream_holds_everything_from_the_first_block_on():
    stream = ToolCallStream()
    sent = "".join(stream.feed(ch) for ch in f"abc {CALL} then {CALL} end")
    assert sent == "abc "
    assert stream.finish() == ("then  end", [ZOOM, ZOOM])
