"""What the load test reads off the wire: streamed chat completions (no Locust, no gevent). Error envelopes are
read by ``zwz.endpoint.error_message``.

    reply, first_token_at = read_sse(response.iter_lines())     # the non-streaming shape, and a perf_counter
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

__all__ = ["ItemFailed", "content", "read_sse"]


class ItemFailed(Exception):
    """One item could not be answered; the message becomes its Locust error (one line)."""


def read_sse(lines: Iterable[bytes | str]) -> tuple[dict[str, Any], float | None]:
    """A streamed chat completion folded into the non-streaming shape, and the perf_counter of its first token.

    The first token is the first chunk carrying content, or a finish reason (an empty answer). An error event
    (zwz and vLLM send the OpenAI envelope inside a stream that already started) or a stream without
    ``data: [DONE]`` raise :class:`ItemFailed`.

    >>> events = [b'data: {"choices": [{"delta": {"role": "assistant", "content": ""}}]}', b"",
    ...           b'data: {"choices": [{"delta": {"content": "4"}, "finish_reason": "stop"}]}', b"",
    ...           b'data: {"choices": [], "usage": {"prompt_tokens": 9}}', b"data: [DONE]"]
    >>> reply, first = read_sse(events)
    >>> reply["choices"][0]["message"]["content"], reply["usage"], first is not None
    ('4', {'prompt_tokens': 9}, True)
    >>> read_sse([b'data: {"error": {"message": "queue full"}}', b"data: [DONE]"])
    Traceback (most recent call last):
    ...
    zwz.loadtest.wire.ItemFailed: error in stream: queue full
    """
    parts: list[str] = []
    finish = first = usage = trajectory = None
    for line in lines:
        if isinstance(line, str):
            line = line.encode()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        try:
            event = json.loads(data)
        except ValueError:
            raise ItemFailed(f"unreadable stream event: {data[:100]!r}") from None
        if "error" in event:
            error = event["error"]
            raise ItemFailed(f"error in stream: {error.get('message') if isinstance(error, dict) else error}")
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            if first is None and (delta.get("content") or choice.get("finish_reason")):
                first = time.perf_counter()
            parts.append(delta.get("content") or "")
            finish = choice.get("finish_reason") or finish
        usage = event.get("usage") or usage
        trajectory = event.get("zwz_trajectory") or trajectory
    else:
        raise ItemFailed("the stream ended without data: [DONE]")
    reply: dict[str, Any] = {"choices": [{"message": {"content": "".join(parts)}, "finish_reason": finish}],
                             "usage": usage}
    if trajectory is not None:
        reply["zwz_trajectory"] = trajectory
    return reply, first


def content(reply: dict[str, Any]) -> str:
    """The answer text of a chat completion.

    >>> content({"choices": [{"message": {"content": "B"}}]})
    'B'
    """
    try:
        return reply["choices"][0]["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ItemFailed(f"reply is not a chat completion: {str(reply)[:200]}") from None
