"""Qwen's ``<tool_call>`` blocks in generated text -> OpenAI ``tool_calls`` (hermes-style, as vLLM parses them).

Qwen-VL models call tools by writing ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``.
A request that carries ``tools`` gets them back as OpenAI ``tool_calls`` (arguments as a JSON string) and
``finish_reason="tool_calls"``; text outside the blocks stays the message content. A block that is not a
valid call is left in the content, so nothing the model wrote is lost.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from zwz.reply_format import TOOL_CALL_OPEN, tool_call_blocks


@dataclass
class ParsedToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it

    def to_openai(self) -> dict:
        return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


def extract_tool_calls(text: str) -> tuple[str | None, list[ParsedToolCall]]:
    """Split ``text`` into (content without valid tool-call blocks, the calls).

    >>> content, calls = extract_tool_calls('Let me look.\\n<tool_call>\\n{"name": "zoom", "arguments": {"x": 1}}\\n</tool_call>')
    >>> content, calls[0].name, calls[0].arguments
    ('Let me look.', 'zoom', '{"x": 1}')
    >>> extract_tool_calls("<tool_call>not json</tool_call>")[1]
    []
    >>> extract_tool_calls('<tool_call>{"name": "cut-off"<tool_call>{"name": "zoom", "arguments": {}}</tool_call>')
    ('<tool_call>{"name": "cut-off"', [ParsedToolCall(name='zoom', arguments='{}')])
    """
    calls: list[ParsedToolCall] = []
    kept: list[str] = []
    pos = 0
    for block in tool_call_blocks(text):
        if not block.closed:  # an unterminated block is not a call: it stays in the content
            continue
        try:
            payload = json.loads(block.body)
        except json.JSONDecodeError:
            continue
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            continue
        arguments = payload.get("arguments", {})
        calls.append(ParsedToolCall(payload["name"], arguments if isinstance(arguments, str) else json.dumps(arguments)))
        kept.append(text[pos : block.start])
        pos = block.end
    kept.append(text[pos:])
    content = "".join(kept).strip()
    return (content or None), calls


class ToolCallStream:
    """Streams content while holding back anything from the first ``<tool_call>`` on, then parses it."""

    def __init__(self) -> None:
        self._text = ""
        self._sent = 0

    def feed(self, delta: str) -> str:
        """Add generated text; return the part that is safe to send as content now."""
        self._text += delta
        at = self._text.find(TOOL_CALL_OPEN, self._sent)
        if at >= 0:
            safe = at
        else:  # a partial "<tool_c" at the end may still become a block
            safe = len(self._text)
            for n in range(min(len(TOOL_CALL_OPEN) - 1, len(self._text)), 0, -1):
                if self._text.endswith(TOOL_CALL_OPEN[:n]):
                    safe -= n
                    break
        safe = max(safe, self._sent)
        out = self._text[self._sent : safe]
        self._sent = safe
        return out

    def finish(self) -> tuple[str, list[ParsedToolCall]]:
        """The held-back text that is not a valid call (to send as content), and the calls."""
        content, calls = extract_tool_calls(self._text[self._sent :])
        self._sent = len(self._text)
        return content or "", calls
