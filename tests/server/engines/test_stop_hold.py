"""The text a row holds back for a possible stop string: the fast scan equals the plain definition."""

from __future__ import annotations

import random

from zwz.server.engines.decoding import _held_back


def reference(text: str, stops: list[str]) -> int:
    """The longest tail of ``text`` that is a proper prefix of a stop (or 1 for a split character)."""
    hold = max((n for stop in stops for n in range(1, min(len(stop) - 1, len(text)) + 1)
                if text.endswith(stop[:n])), default=0)
    return max(hold, 1) if text.endswith("\ufffd") else hold


def test_fast_scan_equals_the_definition():
    rng = random.Random(0)
    for _ in range(5000):
        text = "".join(rng.choice("ab\ufffd") for _ in range(rng.randrange(0, 12)))
        stops = ["".join(rng.choice("ab") for _ in range(rng.randrange(1, 6))) for _ in range(rng.randrange(0, 4))]
        assert _held_back(text, stops) == reference(text, stops), (text, stops)


def test_a_long_stop_is_one_scan():
    assert _held_back("x" * 10_000 + "abc", ["abcd" * 256]) == 3
    assert _held_back("a" * 1023, ["a" * 1024]) == 1023
