"""Reply-format edges mutation testing (tools/mutation.sh tool_parsing) found untested: a reply that opens
with ``</think>`` and a thinking block opened twice and never closed."""

from __future__ import annotations

from zwz.reply_format import split_thinking


def test_close_tag_at_the_very_start():
    assert split_thinking("</think>5") == ("</think>", "5")


def test_unclosed_thinking_starts_at_the_first_open_tag():
    assert split_thinking("a <think>x <think>y") == ("<think>x <think>y", "a ")
