"""Benchmark scoring and the RL reward (paper App. 9.2-9.3).

Tiers, in order: rule-based match (normalised/numeric equality, option letter for multiple choice); for the
RL reward only, the continuous counting reward (Eq. 3-4) when both sides parse as numbers; then an LLM judge
(:mod:`zwz.scoring.judge`) when one is configured. Without a judge an undecided item is *flagged*
(method ``"unjudged"``), never silently scored as wrong; verl's float hook reports it as 0.0 and logs it.

verl: ``custom_reward_function.path=analytics/scoring.py``, ``name=compute_score`` (or ``compute_score_batch``
with the batch reward manager); judge settings go in ``reward_kwargs`` (``judge_base_url``, ``judge_model``,
``judge_api_key``, ``judge_cache_path``, ``judge_timeout``, ``judge_max_retries``).
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from zwz.scoring.judge import Judge

logger = logging.getLogger(__name__)

__all__ = [
    "RewardFn",
    "ScoreResult",
    "compute_score",
    "compute_score_batch",
    "counting_reward",
    "extract_boxed",
    "extract_choice_letter",
    "extract_final_answer",
    "extract_number",
    "extract_options",
    "make_benchmark_scorer",
    "make_reward_fn",
    "normalize_text",
    "rule_match",
    "rule_match_batch",
]

Method = Literal["rule", "counting", "judge", "unjudged"]

# --------------------------------------------------------------------------------------------- extraction
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_PREFIX = re.compile(
    r"^(?:so,?\s+)?(?:the\s+)?(?:final\s+|correct\s+|best\s+)?(?:answer|option|choice)\s*(?:is|would be|:)\s*:?\s*",
    re.I,
)
_MARKDOWN = re.compile(r"[*_`$]+")
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
    found: str | None = None
    for match in _BOXED.finditer(text or ""):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found = text[start:i]
                break
    return found


def extract_final_answer(response: str) -> str:
    """The part of a model reply that states the answer.

    ``<think>`` blocks are dropped; then the last ``<answer>...</answer>``, else the last ``\\boxed{}``,
    else the whole reply, stripped.

    >>> extract_final_answer("<think>maybe 4</think><answer> 5 </answer>")
    '5'
    >>> extract_final_answer("It is \\\\boxed{B}.")
    'B'
    """
    text = _THINK.sub(" ", response or "")
    tags = _ANSWER_TAG.findall(text)
    if tags:
        text = tags[-1]
    boxed = extract_boxed(text)
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


def _clean_for_letter(text: str) -> str:
    text = _MARKDOWN.sub("", text).strip()
    return text.strip("\"' \t\n")


def extract_choice_letter(response: str, n_options: int = 4, options: Sequence[str] | None = None) -> str | None:
    """The option letter a reply commits to, or None. Strict: a capital letter alone is not an answer.

    Accepted: ``B``, ``(B)``, ``B.``, ``B)``, ``B. Blue car``, ``Answer: C``, ``The answer is (C).``,
    ``\\boxed{C}``, ``**C**``, a reply equal to one option's text, and a parenthesised letter when it is the
    only one in the reply. Letters beyond ``n_options`` never match.

    >>> [extract_choice_letter(r) for r in ["(B)", "Answer: C", "The answer is (C).", "\\\\boxed{D}", "**A**"]]
    ['B', 'C', 'C', 'D', 'A']
    >>> extract_choice_letter("blue car", options=["red car", "Blue car", "green", "black"])
    'B'
    >>> [extract_choice_letter(r) for r in ["I think A Blue car", "Because", "CAT", "E"]]
    [None, None, None, None]
    """
    if n_options < 1 or n_options > 26:
        raise ValueError(f"n_options must be in 1..26, got {n_options}")
    valid = _letters(n_options)
    text = _THINK.sub(" ", response or "")
    tags = _ANSWER_TAG.findall(text)
    if tags:
        text = tags[-1]
    boxed = extract_boxed(text)
    if boxed is not None:
        letter = _letter_from_short(_clean_for_letter(boxed), valid, options)
        if letter is not None:
            return letter
    text = _clean_for_letter(text)
    letter = _letter_from_short(text, valid, options)
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


def _letter_from_short(text: str, valid: str, options: Sequence[str] | None) -> str | None:
    """Letter from a reply that is only a letter, a letter plus option text, or an option's text."""
    text = _ANSWER_PREFIX.sub("", text).strip()
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


# ------------------------------------------------------------------------------------------------ numbers
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


def _residual_words(text: str) -> set[str]:
    """Words left once the numbers are cut out (the unit or noun, e.g. {'cm'})."""
    for _, (a, b) in sorted(_numbers(text), key=lambda x: x[1], reverse=True):
        text = text[:a] + " " + text[b:]
    return set(normalize_text(text).split())


# --------------------------------------------------------------------------------------------- rule match
_YES_NO = {"yes": True, "no": False, "true": True, "false": False}


def rule_match(prediction: str, answer: str, *, options: Sequence[str] | None = None) -> bool | None:
    """Rule-based verdict: True/False when rules can decide, None when a judge must.

    Multiple choice (``options`` given, or a bare-letter gold answer): compare option letters; a reply that
    names no letter is undecided. Open questions: normalised equality; numbers compare by value when their
    units/nouns are compatible (one word set contains the other); yes/no against yes/no.

    >>> rule_match("The answer is (C).", "C", options=["5", "4", "3", "2"])
    True
    >>> rule_match("3", "C", options=["5", "4", "3", "2"]), rule_match("B", "C", options=["5", "4", "3", "2"])
    (True, False)
    >>> rule_match("Five people.", "5"), rule_match("6", "5 people"), rule_match("35 mm", "3.5 cm")
    (True, False, None)
    >>> rule_match("Dark blue.", "blue") is None
    True
    """
    pred = extract_final_answer(prediction)
    gold = str(answer).strip()
    n = len(options) if options else 0
    if not options:
        bare = re.fullmatch(r"[\(\[]?([A-Z])[\)\]]?\.?", _clean_for_letter(gold))
        if bare:  # an MC item whose options were not given: letters up to the gold one (at least A-D)
            n = max(4, ord(bare.group(1)) - ord("A") + 1)
    gold_letter = _letter_from_short(_clean_for_letter(gold), _letters(n), options) if n else None
    if gold_letter is not None:
        pred_letter = extract_choice_letter(prediction, min(n, 26), options)
        return None if pred_letter is None else pred_letter == gold_letter
    if options:
        logger.warning("answer %r is neither an option letter nor an option; compared as open text", gold)

    pred = _ANSWER_PREFIX.sub("", _MARKDOWN.sub("", pred)).strip()
    norm_pred, norm_gold = normalize_text(pred), normalize_text(gold)
    if norm_pred and norm_pred == norm_gold:
        return True
    if norm_pred in _YES_NO and norm_gold in _YES_NO:
        return _YES_NO[norm_pred] == _YES_NO[norm_gold]
    gold_value, pred_value = extract_number(gold), extract_number(pred)
    if gold_value is not None and pred_value is not None:
        gold_words, pred_words = _residual_words(gold), _residual_words(pred)
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
    _check_lengths(predictions, answers, opts)
    out: list[float | None] = []
    for p, a, o in zip(predictions, answers, opts):
        verdict = rule_match(p, a, options=o)
        out.append(None if verdict is None else float(verdict))
    return out


# ------------------------------------------------------------------------------------------ counting (Eq. 3-4)
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


# ------------------------------------------------------------------------------------------------- scorers
@dataclass(frozen=True)
class ScoreResult:
    """A score and how it was decided. ``score`` is None only when ``method == "unjudged"``."""

    score: float | None
    method: Method


@dataclass(frozen=True)
class RewardFn:
    """Scores replies against ground truth: rule -> [counting] -> judge. Build it with a factory.

    Calling it on a batch returns ``list[float | None]`` (None: undecided and no judge). Picklable.

    >>> fn = make_reward_fn()
    >>> fn(["<answer>4</answer>", "B", "navy"], ["5", "B", "blue"])
    [0.8, 1.0, None]
    """

    judge: Judge | None = None
    counting: bool = True

    # TRL logs reward functions by __name__.
    __name__ = "zwz_reward"

    def score(
        self, response: str, answer: str, *, question: str = "", options: Sequence[str] | None = None
    ) -> ScoreResult:
        """Score one reply; raises :class:`~zwz.scoring.judge.JudgeError` if the judge fails.

        >>> make_benchmark_scorer().score("There are 4 fish.", "5")
        ScoreResult(score=0.0, method='rule')
        """
        result, _ = self._rule_stage(response, answer, options)
        if result is not None:
            return result
        if self.judge is None:
            return ScoreResult(None, "unjudged")
        verdict = self.judge.judge(question, _gold_for_judge(answer, options), extract_final_answer(response))
        return ScoreResult(float(verdict), "judge")

    def score_many(
        self,
        responses: Sequence[str],
        answers: Sequence[str],
        *,
        questions: Sequence[str] | None = None,
        options: Sequence[Sequence[str] | None] | None = None,
    ) -> list[ScoreResult]:
        """Score a batch; undecided items go to the judge concurrently."""
        qs = questions if questions is not None else [""] * len(responses)
        opts = options if options is not None else [None] * len(responses)
        _check_lengths(responses, answers, qs, opts)
        results: list[ScoreResult | None] = []
        pending: list[tuple[int, tuple[str, str, str]]] = []
        for i, (r, a, q, o) in enumerate(zip(responses, answers, qs, opts)):
            result, _ = self._rule_stage(r, a, o)
            results.append(result)
            if result is None:
                pending.append((i, (q, _gold_for_judge(a, o), extract_final_answer(r))))
        if pending and self.judge is not None:
            verdicts = self.judge.judge_many([t for _, t in pending])
            for (i, _), verdict in zip(pending, verdicts):
                results[i] = ScoreResult(float(verdict), "judge")
        return [r if r is not None else ScoreResult(None, "unjudged") for r in results]

    def __call__(
        self,
        completions: Sequence[str | Sequence[dict[str, Any]]],
        answers: Sequence[str],
        *,
        questions: Sequence[str] | None = None,
        options: Sequence[Sequence[str] | None] | None = None,
        **_: Any,
    ) -> list[float | None]:
        texts = [_completion_text(c) for c in completions]
        return [r.score for r in self.score_many(texts, answers, questions=questions, options=options)]

    def _rule_stage(
        self, response: str, answer: str, options: Sequence[str] | None
    ) -> tuple[ScoreResult | None, bool | None]:
        verdict = rule_match(response, answer, options=options)
        if verdict is True:
            return ScoreResult(1.0, "rule"), verdict
        if self.counting and not options:
            reward = counting_reward(extract_final_answer(response), str(answer))
            if reward is not None:
                return ScoreResult(reward, "counting"), verdict
        if verdict is False:
            return ScoreResult(0.0, "rule"), verdict
        return None, verdict


def _letters(n: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: max(0, min(n, 26))]


def _gold_for_judge(answer: str, options: Sequence[str] | None) -> str:
    """Give the judge "C. crown" rather than a bare "C" when the options are known."""
    if options:
        letter = _letter_from_short(_clean_for_letter(str(answer)), _letters(len(options)), options)
        if letter is not None:
            return f"{letter}. {options[ord(letter) - ord('A')]}"
    return str(answer)


def _completion_text(completion: str | Sequence[dict[str, Any]]) -> str:
    """A TRL completion is a string or a list of chat messages; take the last message's text."""
    if isinstance(completion, str):
        return completion
    content = completion[-1].get("content", "") if completion else ""
    if isinstance(content, list):  # multimodal content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _check_lengths(*seqs: Sequence[Any]) -> None:
    if len({len(s) for s in seqs}) > 1:
        raise ValueError(f"batch inputs differ in length: {[len(s) for s in seqs]}")


def make_reward_fn(judge: Judge | None = None, *, counting: bool = True) -> RewardFn:
    """The RL reward (App. 9.2): rule -> counting reward (Eq. 3-4) -> judge.

    >>> make_reward_fn().score("twelve", "a dozen")
    ScoreResult(score=1.0, method='rule')
    >>> make_reward_fn(judge="http://x")
    Traceback (most recent call last):
    ...
    TypeError: judge must be a zwz.scoring.judge.Judge or None, got str
    """
    if judge is not None and not isinstance(judge, Judge):
        raise TypeError(f"judge must be a zwz.scoring.judge.Judge or None, got {type(judge).__name__}")
    if not isinstance(counting, bool):
        raise TypeError("counting must be a bool")
    return RewardFn(judge=judge, counting=counting)


def make_benchmark_scorer(judge: Judge | None = None) -> RewardFn:
    """The benchmark scorer (App. 9.3): rule -> judge, 1/0, never the counting reward.

    >>> make_benchmark_scorer().score("46", "47")
    ScoreResult(score=0.0, method='rule')
    """
    return make_reward_fn(judge, counting=False)


# ------------------------------------------------------------------------------------------------ verl hooks
_JUDGES: dict[tuple[Any, ...], Judge] = {}


def _judge_from_kwargs(kwargs: dict[str, Any]) -> Judge | None:
    if kwargs.get("judge") is not None:
        judge = kwargs["judge"]
        if not isinstance(judge, Judge):
            raise TypeError(f"judge must be a Judge, got {type(judge).__name__}")
        return judge
    base_url, model = kwargs.get("judge_base_url"), kwargs.get("judge_model")
    if not base_url and not model:
        return None
    if not (base_url and model):
        raise ValueError("judge_base_url and judge_model must be given together")
    settings = {
        "api_key": kwargs.get("judge_api_key"),
        "cache_path": kwargs.get("judge_cache_path"),
        "timeout": float(kwargs.get("judge_timeout", 60.0)),
        "max_retries": int(kwargs.get("judge_max_retries", 2)),
    }
    key = (base_url, model, *settings.values())
    if key not in _JUDGES:  # one judge (and cache) per worker process
        _JUDGES[key] = Judge(base_url, model, **settings)
    return _JUDGES[key]


def _context(ground_truth: Any, extra_info: dict[str, Any] | None) -> tuple[str, str, list[str] | None]:
    info = extra_info or {}
    question = str(info.get("question") or info.get("prompt") or "")
    options = info.get("options")
    options = list(options) if options is not None else extract_options(question)
    return str(ground_truth), question, options


def _as_verl(result: ScoreResult, return_dict: bool) -> float | dict[str, Any]:
    if result.method == "unjudged":
        logger.warning("reward undecided by rules and no judge configured: scoring 0.0 (flagged unjudged)")
    score = 0.0 if result.score is None else float(result.score)
    if return_dict:
        return {"score": score, "method": result.method, "unjudged": result.method == "unjudged"}
    return score


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> float | dict[str, Any]:
    """verl reward hook (App. 9.2): rule -> counting reward -> judge (if configured).

    ``extra_info`` may carry ``question`` (or ``prompt``) and ``options``. Judge: ``judge=Judge(...)`` or
    ``judge_base_url``/``judge_model`` (+ ``judge_api_key``, ``judge_cache_path``, ``judge_timeout``,
    ``judge_max_retries``). Undecided without a judge scores 0.0 with a warning; ``return_dict=True``
    returns ``{"score", "method", "unjudged"}`` so verl logs the flag. A failing judge raises.

    >>> compute_score("zoomworld", "<think>about 9</think><answer>8</answer>", "10")
    0.8
    >>> compute_score("zoomworld", "teal", "blue", return_dict=True)
    {'score': 0.0, 'method': 'unjudged', 'unjudged': True}
    """
    gold, question, options = _context(ground_truth, extra_info)
    fn = RewardFn(judge=_judge_from_kwargs(kwargs), counting=True)
    return _as_verl(fn.score(solution_str, gold, question=question, options=options), kwargs.get("return_dict", False))


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[dict[str, Any] | None] | None = None,
    **kwargs: Any,
) -> list[float | dict[str, Any]]:
    """verl batch reward hook: like :func:`compute_score`, with the judge calls made concurrently.

    >>> compute_score_batch(["zw", "zw"], ["(B)", "7"], ["B", "7"])
    [1.0, 1.0]
    """
    infos = extra_infos if extra_infos is not None else [None] * len(solution_strs)
    _check_lengths(data_sources, solution_strs, ground_truths, infos)
    contexts = [_context(gt, info) for gt, info in zip(ground_truths, infos)]
    fn = RewardFn(judge=_judge_from_kwargs(kwargs), counting=True)
    golds, questions, options = ([c[k] for c in contexts] for k in range(3))
    results = fn.score_many(list(solution_strs), golds, questions=questions, options=options)
    return [_as_verl(r, kwargs.get("return_dict", False)) for r in results]
