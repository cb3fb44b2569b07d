"""Rule-based verdicts (paper App. 9.2-9.3): option letters for multiple choice, normalised text, numbers by
value, yes/no. What rules cannot decide is left to a judge (None), never guessed."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from zwz.scoring.extract import (
    ANSWER_PREFIX,
    MARKDOWN,
    clean_for_letter,
    extract_choice_letter,
    extract_final_answer,
    letter_from_short,
    letters,
    normalize_text,
)
from zwz.scoring.numbers import extract_number, residual_words

logger = logging.getLogger(__name__)

__all__ = ["check_same_length", "rule_match", "rule_match_batch"]

_YES_NO = {"yes": True, "no": False, "true": True, "false": False}


def rule_match(prediction: str, answer: str, *, options: Sequence[str] | None = None) -> bool | None:
    """Rule-based verdict: True/False when rules can decide, None when a judge must.

    The reply is read after its thinking (a ``</think>`` with or without its ``<think>``). Multiple choice
    (``options`` given, or a bare-letter gold answer): compare option letters; a reply that names no letter
    is undecided. Open questions: normalised equality; numbers compare by value when their units/nouns are
    compatible (one word set contains the other); yes/no against yes/no.

    >>> rule_match("The answer is (C).", "C", options=["5", "4", "3", "2"])
    True
    >>> rule_match("3", "C", options=["5", "4", "3", "2"]), rule_match("B", "C", options=["5", "4", "3", "2"])
    (True, False)
    >>> rule_match("Five people.", "5"), rule_match("6", "5 people"), rule_match("35 mm", "3.5 cm")
    (True, False, None)
    >>> rule_match("I count 4 or 5 fish.</think>5", "5")
    True
    >>> rule_match("Dark blue.", "blue") is None
    True
    """
    pred = extract_final_answer(prediction)
    gold = str(answer).strip()
    n = len(options) if options else 0
    if not options:
        bare = re.fullmatch(r"[\(\[]?([A-Z])[\)\]]?\.?", clean_for_letter(gold))
        if bare:  # an MC item whose options were not given: letters up to the gold one (at least A-D)
            n = max(4, ord(bare.group(1)) - ord("A") + 1)
    gold_letter = letter_from_short(clean_for_letter(gold), letters(n), options) if n else None
    if gold_letter is not None:
        pred_letter = extract_choice_letter(prediction, min(n, 26), options)
        return None if pred_letter is None else pred_letter == gold_letter
    if options:
        logger.warning("answer %r is neither an option letter nor an option; compared as open text", gold)

    pred = ANSWER_PREFIX.sub("", MARKDOWN.sub("", pred)).strip()
    norm_pred, norm_gold = normalize_text(pred), normalize_text(gold)
    if norm_pred and norm_pred == norm_gold:
        return True
    if norm_pred in _YES_NO and norm_gold in _YES_NO:
        return _YES_NO[norm_pred] == _YES_NO[norm_gold]
    gold_value, pred_value = extract_number(gold), extract_number(pred)
    if gold_value is not None and pred_value is not None:
        gold_words, pred_words = residual_words(gold), residual_words(pred)
        if gold_words <= pred_words or pred_words <= gold_words:
            return math.isclose(gold_value, pred_value, rel_tol=1e-9, abs_tol=1e-9)
    return None


def rule_match_batch(
    predictions: Sequence[str], answers: Sequence[str], options: Sequence[Sequence[str] | None] | None = None
) -> list[float | None]:
    """:func:`rule_match` over a batch: 1.0 / 0.0, or None where rules cannot decide.

    >>> rule_match_batch(["B", "red", "dark red"], ["B", "Red.", "red"])
    [1.0, 1.0, None]
    """
    opts = options if options is not None else [None] * len(predictions)
    check_same_length(predictions, answers, opts)
    out: list[float | None] = []
    for p, a, o in zip(predictions, answers, opts):
        verdict = rule_match(p, a, options=o)
        out.append(None if verdict is None else float(verdict))
    return out


def check_same_length(*seqs: Sequence[Any]) -> None:
    """Raise ValueError when batch inputs differ in length.

    >>> check_same_length([1, 2], "ab")
    >>> check_same_length([1], [1, 2])
    Traceback (most recent call last):
    ...
    ValueError: batch inputs differ in length: [1, 2]
    """
    if len({len(s) for s in seqs}) > 1:
        raise ValueError(f"batch inputs differ in length: {[len(s) for s in seqs]}")
