"""The Qwen reply format, read in one place: thinking, ``<tool_call>`` blocks, ``\\boxed{}`` and ``<answer>``.

Scoring, the judge, the zoom agent and the server's tool-call parser all read model replies; they share these
scanners so that a reply means the same thing everywhere (a copy that needed an opening ``<think>`` once
scored Qwen3 thinking replies on their reasoning instead of their answer). Standard library only: the RL
reward module imports this in verl's environment.

    thinking, rest = split_thinking(reply)             # Qwen3 replies may carry only the closing </think>
    for block in tool_call_blocks(rest): ...           # ToolCallBlock(body, start, end, closed)
    last_boxed(rest), answer_tag(rest)                 # '\\frac{1}{2}', '5'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "THINK_CLOSE",
    "THINK_OPEN",
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "ToolCallBlock",
    "after_thinking",
    "answer_tag",
    "boxed_contents",
    "last_boxed",
    "split_thinking",
    "strip_tool_calls",
    "tool_call_blocks",
]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)


# -- thinking ------------------------------------------------------------------------------------------------
def split_thinking(text: str) -> tuple[str, str]:
    """``(thinking, rest)``: text up to the last ``</think>`` and what follows it.

    Qwen3 thinking templates open ``<think>`` in the prompt, so a reply may hold only the closing tag. A
    ``<think>`` that never closes (the reply ran out of tokens) makes everything from it thinking.

    >>> split_thinking("<think>zoom?</think>It is red.")
    ('<think>zoom?</think>', 'It is red.')
    >>> split_thinking("I count 4 or 5 fish.</think>5")
    ('I count 4 or 5 fish.</think>', '5')
    >>> split_thinking("no tags")
    ('', 'no tags')
    >>> split_thinking("Let me see <think>hmm")
    ('<think>hmm', 'Let me see ')
    """
    text = text or ""
    end = text.rfind(THINK_CLOSE)
    if end >= 0:
        cut = end + len(THINK_CLOSE)
        return text[:cut], text[cut:]
    start = text.find(THINK_OPEN)
    if start >= 0:
        return text[start:], text[:start]
    return "", text


def after_thinking(text: str) -> str:
    """The part of a reply after its thinking (see :func:`split_thinking`).

    >>> after_thinking("<think>maybe 4</think> 5"), after_thinking("4 or 5?</think>5"), after_thinking("<think>4")
    (' 5', '5', '')
    """
    return split_thinking(text)[1]


# -- tool calls ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolCallBlock:
    """One ``<tool_call>`` block: its body and its span ``text[start:end]`` (tags included).

    ``closed`` is False when the block ends at the next ``<tool_call>`` or at the end of the text (a reply cut
    by ``max_tokens`` or by a ``</tool_call>`` stop string).
    """

    body: str
    start: int
    end: int
    closed: bool


def tool_call_blocks(text: str) -> list[ToolCallBlock]:
    """Every ``<tool_call>`` block in ``text``, in order, unterminated ones included.

    A block ends at its closing tag, at the next opening tag, or at the end of the text.

    >>> [(b.body, b.closed) for b in tool_call_blocks('a<tool_call>{"x": 1}</tool_call>b<tool_call>{oops<tool_call>{')]
    [('{"x": 1}', True), ('{oops', False), ('{', False)]
    >>> tool_call_blocks("no calls")
    []
    """
    blocks: list[ToolCallBlock] = []
    pos = 0
    while (start := text.find(TOOL_CALL_OPEN, pos)) >= 0:
        body_start = start + len(TOOL_CALL_OPEN)
        close = text.find(TOOL_CALL_CLOSE, body_start)
        reopen = text.find(TOOL_CALL_OPEN, body_start)
        if close >= 0 and (reopen < 0 or close < reopen):
            pos = close + len(TOOL_CALL_CLOSE)
            blocks.append(ToolCallBlock(text[body_start:close], start, pos, True))
        else:
            pos = reopen if reopen >= 0 else len(text)
            blocks.append(ToolCallBlock(text[body_start:pos], start, pos, False))
    return blocks


def strip_tool_calls(text: str) -> str:
    """``text`` without its ``<tool_call>`` blocks and without stray ``</tool_call>`` tags.

    >>> strip_tool_calls('It says STOP.\\n<tool_call>{"name": "x"}</tool_call> </tool_call>')
    'It says STOP.\\n '
    """
    pieces, pos = [], 0
    for block in tool_call_blocks(text):
        pieces.append(text[pos : block.start])
        pos = block.end
    pieces.append(text[pos:])
    return "".join(pieces).replace(TOOL_CALL_CLOSE, "")


# -- answers -------------------------------------------------------------------------------------------------
def boxed_contents(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}`` (or ``\\fbox{...}``) whose braces balance, by opening position.

    >>> boxed_contents("so \\\\boxed{3} ... finally \\\\boxed{\\\\frac{1}{2}} \\\\boxed{open")
    ['3', '\\\\frac{1}{2}']
    """
    found: list[str] = []
    for match in _BOXED.finditer(text or ""):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    found.append(text[start:i])
                    break
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}``, or None.

    >>> last_boxed("so \\\\boxed{3} ... finally \\\\boxed{\\\\frac{1}{2}}"), last_boxed("no box")
    ('\\\\frac{1}{2}', None)
    """
    boxes = boxed_contents(text)
    return boxes[-1] if boxes else None


def answer_tag(text: str) -> str | None:
    """Content of the last closed ``<answer>...</answer>`` (any case), or None.

    >>> answer_tag("reasoning <answer> 5 </answer>"), answer_tag("<answer>cut off")
    (' 5 ', None)
    """
    tags = _ANSWER_TAG.findall(text or "")
    return tags[-1] if tags else None
