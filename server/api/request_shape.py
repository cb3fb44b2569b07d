"""Limits on what one request may carry, checked on the raw JSON before pydantic validates a single item.

A body of a million tiny messages, 100k stop strings or a string holding an unpaired surrogate costs seconds
(or a 500 from the tokenizer) once it is validated, templated and tokenized; counted on the parsed dict it
is a 400 at once. The request models call ``check_chat_shape`` / ``check_attention_shape`` from
``mode="before"`` validators with ``current_limits()``: the app's settings (``max_messages``, ...), bound
for the duration of a request with ``bound_limits`` by the route that parses the body (inline, or in the
worker process that parses big bodies), and the settings' defaults where nothing is bound.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields
from typing import Any, NoReturn

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from zwz.server.settings import ServerSettings

# After json.loads, a code point in this range is a surrogate without its pair (a pair becomes one code point):
# text that is not Unicode, which no tokenizer can encode.
_SURROGATE = re.compile("[\ud800-\udfff]")

Loc = tuple[str | int, ...]
# The kinds of refusal below; the error envelope carries them as its `code`.
SHAPE_ERROR_CODES = frozenset({"too_many_messages", "too_many_content_parts", "too_many_stop_sequences",
                               "stop_too_long", "too_many_tools", "too_many_values", "too_much_text",
                               "invalid_unicode"})


@dataclass(frozen=True)
class RequestLimits:
    """The request-shape limits of ``ServerSettings`` (see their descriptions there)."""

    max_messages: int
    max_content_parts: int
    max_text_chars: int
    max_stop_sequences: int
    max_stop_chars: int
    max_tools: int
    max_json_values: int

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> RequestLimits:
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


_DEFAULTS = RequestLimits.from_settings(ServerSettings.model_construct())  # the defaults, no ZWZ_* variable read
_current: ContextVar[RequestLimits] = ContextVar("zwz_request_limits", default=_DEFAULTS)


@contextmanager
def bound_limits(limits: RequestLimits) -> Iterator[None]:
    """Validate the requests parsed inside this block against ``limits``."""
    token = _current.set(limits)
    try:
        yield
    finally:
        _current.reset(token)


def current_limits() -> RequestLimits:
    return _current.get()


def _refuse(title: str, loc: Loc, kind: str, message: str) -> NoReturn:
    assert kind in SHAPE_ERROR_CODES, kind
    # A ValidationError raised in a before-validator keeps its loc, so the client's error names the field.
    # No input echoed: it may be megabytes.
    raise ValidationError.from_exception_data(
        title, [InitErrorDetails(type=PydanticCustomError(kind, message.replace("{", "{{").replace("}", "}}")),
                                 loc=loc, input=None)])


def _over(what: str, count: int, limit: int, setting: str) -> str:
    return f"{count} {what}; this server allows at most {limit} (--{setting.replace('_', '-')})"


def check_chat_shape(data: Any, limits: RequestLimits, title: str = "ChatCompletionRequest") -> None:
    """Refuse a raw chat request over ``limits``; counts first, then one walk over its values."""
    if not isinstance(data, dict):
        return  # pydantic says what is wrong with it
    messages = data.get("messages")
    if isinstance(messages, list):
        if len(messages) > limits.max_messages:
            _refuse(title, ("messages",), "too_many_messages",
                    _over("messages", len(messages), limits.max_messages, "max_messages"))
        parts = sum(len(m["content"]) for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list))
        if parts > limits.max_content_parts:
            _refuse(title, ("messages",), "too_many_content_parts",
                    _over("content parts", parts, limits.max_content_parts, "max_content_parts"))
    stop = data.get("stop")
    stops = stop if isinstance(stop, list) else [stop] if isinstance(stop, str) else []
    if len(stops) > limits.max_stop_sequences:
        _refuse(title, ("stop",), "too_many_stop_sequences",
                _over("stop strings", len(stops), limits.max_stop_sequences, "max_stop_sequences"))
    for i, s in enumerate(stops):
        if isinstance(s, str) and len(s) > limits.max_stop_chars:
            _refuse(title, ("stop", i) if isinstance(stop, list) else ("stop",), "stop_too_long",
                    _over("characters in a stop string", len(s), limits.max_stop_chars, "max_stop_chars"))
    tools = data.get("tools")
    if isinstance(tools, list) and len(tools) > limits.max_tools:
        _refuse(title, ("tools",), "too_many_tools", _over("tools", len(tools), limits.max_tools, "max_tools"))
    _check_values(data, limits, title, media=lambda loc: loc[-2:] == ("image_url", "url"))


def check_attention_shape(data: Any, limits: RequestLimits, title: str = "ZoomAttentionRequest") -> None:
    """Refuse a raw ``/v1/zoom/attention`` request over ``limits`` (its question, its layer list, ...)."""
    if isinstance(data, dict):
        _check_values(data, limits, title, media=lambda loc: loc == ("image",))


def _check_values(data: dict, limits: RequestLimits, title: str, media) -> None:
    """One walk over every JSON value: how many there are, the text they hold (image URLs aside), and that
    every string is Unicode. Values are counted before they are visited, so the walk's cost is bounded by the
    limits whatever the body holds."""
    values = 1 + len(data)
    chars = 0
    stack: list[tuple[dict | list, Loc]] = [(data, ())]
    while stack:
        container, loc = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            if isinstance(key, str):  # keys are text too: a tool's schema reaches the prompt whole
                _check_text(key, loc, title)
                chars += len(key)
            if isinstance(value, str):
                _check_text(value, (*loc, key), title)
                if not media((*loc, key)):
                    chars += len(value)
            elif isinstance(value, (dict, list)) and value:
                values += len(value)
                if values > limits.max_json_values:
                    _refuse(title, (), "too_many_values",
                            _over("JSON values or more", values, limits.max_json_values, "max_json_values"))
                stack.append((value, (*loc, key)))
        if chars > limits.max_text_chars:
            _refuse(title, (), "too_much_text",
                    _over("characters of text or more", chars, limits.max_text_chars, "max_text_chars"))


def _check_text(text: str, loc: Loc, title: str) -> None:
    if not text.isascii() and _SURROGATE.search(text) is not None:
        _refuse(title, loc, "invalid_unicode", "the text holds an unpaired UTF-16 surrogate (such as \\ud800), "
                                               "which is not Unicode; send valid UTF-8 text")
