"""The Qwen reply format scanners every reader of model replies shares (zwz/reply_format.py)."""

from __future__ import annotations

import doctest

import pytest

import zwz.reply_format
from zwz.reply_format import (
    ToolCallBlock,
    after_thinking,
    answer_tag,
    boxed_contents,
    last_boxed,
    split_thinking,
    strip_tool_calls,
    tool_call_blocks,
)


@pytest.mark.parametrize(
    ("text", "thinking", "rest"),
    [
        ("<think>zoom?</think>It is red.", "<think>zoom?</think>", "It is red."),
        ("I count 4 or 5 fish.</think>5", "I count 4 or 5 fish.</think>", "5"),  # Qwen3: opened in the prompt
        ("<think>a</think>b<think>c</think>d", "<think>a</think>b<think>c</think>", "d"),  # the last close wins
        ("Let me see <think>hmm", "<think>hmm", "Let me see "),  # never closed: the rest is thinking
        ("plain", "", "plain"),
        ("", "", ""),
    ],
)
def test_split_thinking(text: str, thinking: str, rest: str) -> None:
    assert split_thinking(text) == (thinking, rest)
    assert after_thinking(text) == rest


def test_tool_call_blocks() -> None:
    text = 'a<tool_call>{"x": 1}</tool_call>b<tool_call>\n{oops\n<tool_call>{"y": 2}</tool_call><tool_call>{"z"'
    blocks = tool_call_blocks(text)
    assert [(b.body, b.closed) for b in blocks] == [
        ('{"x": 1}', True),
        ("\n{oops\n", False),  # ends at the next opening tag
        ('{"y": 2}', True),
        ('{"z"', False),  # ends at the end of the text (cut by max_tokens or a stop string)
    ]
    assert all(text[b.start : b.end].startswith("<tool_call>") for b in blocks)
    assert text[blocks[0].start : blocks[0].end] == '<tool_call>{"x": 1}</tool_call>'
    assert blocks[-1].end == len(text)
    assert tool_call_blocks("</tool_call> only a stray close") == []
    assert ToolCallBlock("b", 0, 1, True).closed


def test_strip_tool_calls() -> None:
    assert strip_tool_calls('Look.<tool_call>{"a": 1}</tool_call> Then </tool_call>done<tool_call>{') == "Look. Then done"


@pytest.mark.parametrize(
    ("text", "boxes"),
    [
        ("\\boxed{3}", ["3"]),
        ("\\boxed{\\frac{1}{2}} and \\fbox{B}", ["\\frac{1}{2}", "B"]),
        ("\\boxed {spaced}", ["spaced"]),
        ("\\boxed{\\text{No}}", ["\\text{No}"]),
        ("\\boxed{unclosed", []),
        ("\\boxed{a} \\boxed{open", ["a"]),
        ("no box", []),
    ],
)
def test_boxed_contents(text: str, boxes: list[str]) -> None:
    assert boxed_contents(text) == boxes
    assert last_boxed(text) == (boxes[-1] if boxes else None)


def test_answer_tag() -> None:
    assert answer_tag("<answer>4</answer> then <ANSWER>5</ANSWER>") == "5"
    assert answer_tag("<answer>\nmulti\nline\n</answer>") == "\nmulti\nline\n"
    assert answer_tag("<answer>never closed") is None


def test_doctests() -> None:
    result = doctest.testmod(zwz.reply_format)
    assert result.attempted > 0 and result.failed == 0


def test_every_reader_uses_the_one_scanner() -> None:
    """The server's tool-call parser and the zoom agent's tool read the same blocks out of the same reply."""
    import zwz.server.serving.tool_parsing as server_parsing
    from zwz.analytics.zoom import tool

    assert tool.split_thinking is split_thinking
    text = 'Look.<tool_call>{"name": "cut-off"<tool_call>{"name": "zoom", "arguments": {}}</tool_call>'
    content, calls = server_parsing.extract_tool_calls(text)
    assert content == 'Look.<tool_call>{"name": "cut-off"' and [c.name for c in calls] == ["zoom"]
    parsed = tool.extract_tool_calls("I zoom.</think>" + text)
    assert [raw for raw, _ in parsed] == ['{"name": "cut-off"', '{"name": "zoom", "arguments": {}}']
    assert isinstance(parsed[0][1], tool.ToolCallError) and parsed[1][1] == {"name": "zoom", "arguments": {}}
    assert tool.clean_answer("I zoom.</think>" + text) == "Look."
    assert doctest.testmod(server_parsing).failed == 0
