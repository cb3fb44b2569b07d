"""Numbers in short answers and the continuous counting reward (paper App. 9.2, Eq. 3-4)."""

from __future__ import annotations

import math
import re

from zwz.scoring.extract import normalize_text

__all__ = ["counting_reward", "extract_number", "residual_words"]

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_ONES = "one|two|three|four|five|six|seven|eight|nine"
_NUMBER = re.compile(
    r"(?P<dozen>\b(?:half\s+a\s+|a\s+)?dozen\b)"
    rf"|(?P<tens>\b(?:{'|'.join(_TENS)})\b)(?:[\s-]+(?P<ones>\b(?:{_ONES})\b))?"
    rf"|(?P<unit>\b(?:{'|'.join(sorted(_UNITS, key=len, reverse=True))})\b)"
    # A digit run not glued to a preceding letter ("A4" is a label); letters after it are a unit ("3cm").
    r"|(?<![A-Za-z0-9.])(?P<sign>[-−]?)(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?",
    re.I,
)


def _numbers(text: str) -> list[tuple[float, tuple[int, int]]]:
    out = []
    for m in _NUMBER.finditer(text):
        if m.group("dozen"):
            value = 6.0 if m.group("dozen").lower().startswith("half") else 12.0
        elif m.group("tens"):
            value = _TENS[m.group("tens").lower()] + (_UNITS[m.group("ones").lower()] if m.group("ones") else 0)
        elif m.group("unit"):
            value = float(_UNITS[m.group("unit").lower()])
        else:
            value = float(m.group("int").replace(",", "") + (m.group("frac") or ""))
            value = -value if m.group("sign") else value
        out.append((float(value), m.span()))
    return out


def extract_number(text: str) -> float | None:
    """The one number a short answer states, or None (none, or several different ones).

    Digits (``1,234``, ``-2.5``), number words zero..twenty and the tens (``twenty-one``), ``a dozen``;
    units and nouns around the number are ignored.

    >>> [extract_number(t) for t in ["5 people", "3 cm", "-2.5", "1,234", "twenty-one", "a dozen", "5 (five)"]]
    [5.0, 3.0, -2.5, 1234.0, 21.0, 12.0, 5.0]
    >>> [extract_number(t) for t in ["red", "3 or 4", "A4", "someone"]]
    [None, None, None, None]
    """
    values = {v for v, _ in _numbers(str(text))}
    return values.pop() if len(values) == 1 else None


def residual_words(text: str) -> set[str]:
    """Words left once the numbers are cut out (the unit or noun).

    >>> residual_words("3 cm"), residual_words("twelve eggs")
    ({'cm'}, {'eggs'})
    """
    for _, (a, b) in sorted(_numbers(text), key=lambda x: x[1], reverse=True):
        text = text[:a] + " " + text[b:]
    return set(normalize_text(text).split())


def counting_reward(pred: str | float, gt: str | float) -> float | None:
    """Continuous counting reward: ``max(0, 1 - |p - g| / |g|)`` (Eq. 3), ``exp(-|p - g|)`` if g = 0 (Eq. 4).

    None when either side does not parse as a number.

    >>> counting_reward("46", "47") == 1 - 1 / 47
    True
    >>> counting_reward(10, 5), round(counting_reward("one", "0"), 4), counting_reward("many", "3")
    (0.0, 0.3679, None)
    """
    p = float(pred) if isinstance(pred, (int, float)) else extract_number(pred)
    g = float(gt) if isinstance(gt, (int, float)) else extract_number(gt)
    if p is None or g is None or not (math.isfinite(p) and math.isfinite(g)):
        return None
    if g == 0:
        return math.exp(-abs(p - g))
    return max(0.0, 1.0 - abs(p - g) / abs(g))
