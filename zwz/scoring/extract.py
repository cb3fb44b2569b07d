"""Reading the answer out of a model reply: the final answer, ``\\boxed{}``, the options of a multiple-choice
prompt and the option letter a reply commits to (paper App. 9.2-9.3).

Thinking is cut with :func:`zwz.reply_format.split_thinking`: what counts is the text after the last
``</think>`` (Qwen3 thinking templates open ``<think>`` in the prompt, so a reply may carry only the close).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from zwz.reply_format import after_thinking, answer_tag, last_boxed

__all__ = [
    "answer_region",
    "extract_boxed",
    "extract_choice_letter",
    "extract_final_answer",
    "extract_options",
    "normalize_text",
]

ANSWER_PREFIX = re.compile(
    r"^(?:so,?\s+)?(?:the\s+)?(?:final\s+|correct\s+|best\s+)?(?:answer|option|choice)\s*(?:is|would be|:)\s*:?\s*",
    re.I,
)
MARKDOWN = re.compile(r"[*_`$]+")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_OPTION_LINE = re.compile(r"^\s*[\(\[]?([A-Z])(?:[\)\]]|\.(?=\s)|\))\s*(\S.*?)\s*$")
_OPTION_INLINE = re.compile(r"(?:^|(?<=\s))[\(\[]?([A-Z])(?:[\)\]]|\.)\s+")


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (braces balanced), or None.

    >>> extract_boxed("so \\\\boxed{3} ... finally \\\\boxed{\\\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> extract_boxed("no box") is None
    True
    """
    return last_boxed(text)


def answer_region(response: str) -> str:
    """The reply after its thinking, narrowed to the last ``<answer>...</answer>`` when there is one.

    >>> answer_region("<think>maybe 4</think>I say <answer>5</answer>"), answer_region("4 or 5?</think> 5 ")
    ('5', ' 5 ')
    """
    text = after_thinking(response or "")
    tagged = answer_tag(text)
    return text if tagged is None else tagged


def extract_final_answer(response: str) -> str:
    """The part of a model reply that states the answer.

    Thinking is dropped (up to the last ``</think>``, with or without its ``<think>``); then the last
    ``<answer>...</answer>``, else the last ``\\boxed{}``, else the whole rest, stripped.

    >>> extract_final_answer("<think>maybe 4</think><answer> 5 </answer>")
    '5'
    >>> extract_final_answer("I count 4 or 5 fish.</think>5")
    '5'
    >>> extract_final_answer("It is \\\\boxed{B}.")
    'B'
    """
    text = answer_region(response)
    boxed = last_boxed(text)
    return (boxed if boxed is not None else text).strip()


def normalize_text(text: str) -> str:
    """Lower case, NFKC, ``\\text{}`` unwrapped, punctuation to spaces, articles dropped, spaces collapsed.

    >>> normalize_text("  The Off-White  car. ")
    'off white car'
    """
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = re.sub(r"\\text(?:bf|rm)?\s*\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"[^\w\s]|_", " ", text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def extract_options(prompt: str) -> list[str] | None:
    """Option texts of a multiple-choice prompt, in letter order, or None.

    Options are lines ``A. ...`` / ``(A) ...`` / ``A) ...`` with consecutive letters from A (at least two);
    a single line ``A. x B. y C. z`` is accepted when no line-per-option block exists.

    >>> extract_options("What flag?\\nA. Greek\\nB. Turkish\\nC. Russian\\nD. Ukrainian\\n"
    ...                 "Answer with the option's letter from the given choices.")
    ['Greek', 'Turkish', 'Russian', 'Ukrainian']
    >>> extract_options("How many lamps?\\n(A) 0\\n(B) 2")
    ['0', '2']
    >>> extract_options("How many fish? A. 5 B. 4 C. 3 D. 2")
    ['5', '4', '3', '2']
    >>> extract_options("What is written on the sign?") is None
    True
    """
    found: list[str] = []
    for line in (prompt or "").splitlines():
        match = _OPTION_LINE.match(line)
        if match and ord(match.group(1)) - ord("A") == len(found):
            found.append(match.group(2))
        elif match and match.group(1) == "A":  # a later block restarts the options
            found = [match.group(2)]
    if len(found) >= 2:
        return found
    for line in (prompt or "").splitlines():
        marks = list(_OPTION_INLINE.finditer(line))
        start = next((i for i, m in enumerate(marks) if m.group(1) == "A"), None)
        if start is None:
            continue
        marks = marks[start:]
        letters = [m.group(1) for m in marks]
        if len(marks) >= 2 and letters == [chr(ord("A") + i) for i in range(len(marks))]:
            ends = [m.start() for m in marks[1:]] + [len(line)]
            texts = [line[m.end() : end].strip() for m, end in zip(marks, ends)]
            if all(texts):
                return texts
    return None


def clean_for_letter(text: str) -> str:
    """Markdown emphasis and surrounding quotes removed, so ``**"C"**`` reads as ``C``."""
    text = MARKDOWN.sub("", text).strip()
    return text.strip("\"' \t\n")


def letters(n: int) -> str:
    """The first ``n`` option letters (at most 26).

    >>> letters(4)
    'ABCD'
    """
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: max(0, min(n, 26))]


def extract_choice_letter(response: str, n_options: int = 4, options: Sequence[str] | None = None) -> str | None:
    """The option letter a reply commits to, or None. Strict: a capital letter alone is not an answer.

    Accepted: ``B``, ``(B)``, ``B.``, ``B)``, ``B. Blue car``, ``Answer: C``, ``The answer is (C).``,
    ``\\boxed{C}``, ``**C**``, a reply equal to one option's text, and a parenthesised letter when it is the
    only one in the reply. Letters beyond ``n_options`` never match. Thinking is ignored.

    >>> [extract_choice_letter(r) for r in ["(B)", "Answer: C", "The answer is (C).", "\\\\boxed{D}", "**A**"]]
    ['B', 'C', 'C', 'D', 'A']
    >>> extract_choice_letter("Is it (A) or (C)?</think>C")
    'C'
    >>> extract_choice_letter("blue car", options=["red car", "Blue car", "green", "black"])
    'B'
    >>> [extract_choice_letter(r) for r in ["I think A Blue car", "Because", "CAT", "E"]]
    [None, None, None, None]
    """
    if n_options < 1 or n_options > 26:
        raise ValueError(f"n_options must be in 1..26, got {n_options}")
    valid = letters(n_options)
    text = answer_region(response)
    boxed = last_boxed(text)
    if boxed is not None:
        letter = letter_from_short(clean_for_letter(boxed), valid, options)
        if letter is not None:
            return letter
    text = clean_for_letter(text)
    letter = letter_from_short(text, valid, options)
    if letter is not None:
        return letter
    # "Answer: C", "the correct option is (B).", "Final answer: D" (last one wins).
    keyed = re.findall(
        r"(?i:\b(?:answer|option|choice))(?:\s+(?i:is|would be|should be))?\s*[:：]?\s*"
        rf"(?:[\(\[]([{valid}])[\)\]]|([{valid}])(?=[.,;:!)]|\s*$))",
        text,
    )
    if keyed:
        return next(x for x in keyed[-1] if x)
    parenthesised = set(re.findall(rf"\(([{valid}])\)", text))
    if len(parenthesised) == 1:
        return parenthesised.pop()
    return None


def letter_from_short(text: str, valid: str, options: Sequence[str] | None) -> str | None:
    """Letter from a reply that is only a letter, a letter plus option text, or an option's text."""
    text = ANSWER_PREFIX.sub("", text).strip()
    match = re.fullmatch(rf"[\(\[]?([{valid}])[\)\]]?[.:)]?", text)
    if match:
        return match.group(1)
    match = re.fullmatch(rf"[\(\[]?([{valid}])(?:[\)\]]|[.:)])\s*(.+?)", text, re.S)
    if match:
        letter, rest = match.groups()
        if set(re.findall(rf"[\(\[]([{valid}])[\)\]]", rest)) - {letter}:  # "(A) is wrong, (B) is right"
            return None
        if options:
            named = _option_by_text(rest, options, valid)
            if named is not None and named != letter:  # "B. red" where red is option C: contradictory
                return None
        return letter
    if options:
        said = text.rstrip(".").strip().lower()
        exact = [valid[i] for i, opt in enumerate(options[: len(valid)]) if opt.strip().lower() == said]
        if len(exact) == 1:
            return exact[0]
        if re.match(rf"[{valid}]\s", text):  # "A blue car": option A, or the article? Undecidable.
            return None
        return _option_by_text(text, options, valid)
    return None


def _option_by_text(text: str, options: Sequence[str], valid: str) -> str | None:
    norm = normalize_text(text)
    if not norm:
        return None
    hits = [valid[i] for i, opt in enumerate(options[: len(valid)]) if normalize_text(opt) == norm]
    return hits[0] if len(hits) == 1 else None
