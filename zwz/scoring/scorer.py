"""The scorer and the RL reward over the scoring tiers (paper App. 9.2-9.3).

Tiers, in order: rule-based match (normalised/numeric equality, option letter for multiple choice); for the
RL reward only, the continuous counting reward (Eq. 3-4) when both sides parse as numbers; then an LLM judge
(:mod:`zwz.scoring.judge`) when one is configured. Without a judge an undecided item is *flagged*
(method ``"unjudged"``), never silently scored as wrong. The RL faces (TRL, verl) are in ``train/rewards.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from zwz.scoring.extract import answer_region, clean_for_letter, extract_final_answer, letter_from_short, letters
from zwz.scoring.numbers import counting_reward
from zwz.scoring.rules import check_same_length, rule_match

if TYPE_CHECKING:  # the judge (and httpx) is imported only when one is configured: rewards stay light
    from zwz.scoring.judge import Judge

__all__ = ["Method", "RewardFn", "ScoreResult", "make_benchmark_scorer", "make_reward_fn"]

# "length": the answer ran past the reward's length cap.
Method = Literal["rule", "counting", "judge", "unjudged", "length"]


@dataclass(frozen=True)
class ScoreResult:
    """A score and how it was decided. ``score`` is None only when ``method == "unjudged"``."""

    score: float | None
    method: Method


@dataclass(frozen=True)
class RewardFn:
    """Scores replies against ground truth: [length cap] -> rule -> [counting] -> judge. Build it with a factory.

    Replies are read after their thinking (a ``</think>`` with or without its ``<think>``); a reply that
    states nothing after it scores 0 by rule. Calling it on a batch returns ``list[float | None]`` (None:
    undecided and no judge). Picklable.

    >>> fn = make_reward_fn()
    >>> fn(["<answer>4</answer>", "B", "navy", "4 or 5?</think>5"], ["5", "B", "blue", "5"])
    [0.8, 1.0, None, 1.0]
    """

    judge: Judge | None = None
    counting: bool = True
    length_cap: int | None = None

    # TRL logs reward functions by __name__.
    __name__ = "zwz_reward"

    def score(
        self, response: str, answer: str, *, question: str = "", options: Sequence[str] | None = None
    ) -> ScoreResult:
        """Score one reply; raises :class:`~zwz.scoring.judge.JudgeError` if the judge fails.

        >>> make_benchmark_scorer().score("There are 4 fish.", "5")
        ScoreResult(score=0.0, method='rule')
        """
        result = self.rule_stage(response, answer, options)
        if result is not None:
            return result
        if self.judge is None:
            return ScoreResult(None, "unjudged")
        verdict = self.judge.judge(question, gold_for_judge(answer, options), extract_final_answer(response))
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
        check_same_length(responses, answers, qs, opts)
        results: list[ScoreResult | None] = []
        pending: list[tuple[int, tuple[str, str, str]]] = []
        for i, (r, a, q, o) in enumerate(zip(responses, answers, qs, opts)):
            result = self.rule_stage(r, a, o)
            results.append(result)
            if result is None:
                pending.append((i, (q, gold_for_judge(a, o), extract_final_answer(r))))
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
        texts = [completion_text(c) for c in completions]
        return [r.score for r in self.score_many(texts, answers, questions=questions, options=options)]

    def rule_stage(self, response: str, answer: str, options: Sequence[str] | None) -> ScoreResult | None:
        """Everything short of the judge: the length cap, the rules, the counting reward; None if undecided.

        >>> make_reward_fn(length_cap=10).rule_stage("<answer>" + "5" * 10 + "</answer>", "5", None)
        ScoreResult(score=0.0, method='length')
        """
        if self.length_cap is not None and len(answer_region(response).strip()) >= self.length_cap:
            return ScoreResult(0.0, "length")
        if not extract_final_answer(response):  # nothing stated after the thinking (e.g. it ran out of tokens)
            return ScoreResult(0.0, "rule")
        verdict = rule_match(response, answer, options=options)
        if verdict is True:
            return ScoreResult(1.0, "rule")
        if self.counting and not options:
            reward = counting_reward(extract_final_answer(response), str(answer))
            if reward is not None:
                return ScoreResult(reward, "counting")
        if verdict is False:
            return ScoreResult(0.0, "rule")
        return None


def gold_for_judge(answer: str, options: Sequence[str] | None) -> str:
    """Give the judge "C. crown" rather than a bare "C" when the options are known.

    >>> gold_for_judge("C", ["wreath", "tiara", "crown"]), gold_for_judge("crown", None)
    ('C. crown', 'crown')
    """
    if options:
        letter = letter_from_short(clean_for_letter(str(answer)), letters(len(options)), options)
        if letter is not None:
            return f"{letter}. {options[ord(letter) - ord('A')]}"
    return str(answer)


def completion_text(completion: str | Sequence[dict[str, Any]]) -> str:
    """A TRL completion is a string or a list of chat messages; take the last message's text.

    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "5"}]}]), completion_text("B")
    ('5', 'B')
    """
    if isinstance(completion, str):
        return completion
    content = completion[-1].get("content", "") if completion else ""
    if isinstance(content, list):  # multimodal content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def make_reward_fn(judge: Judge | None = None, *, counting: bool = True, length_cap: int | None = None) -> RewardFn:
    """The RL reward (App. 9.2): [length cap] -> rule -> counting reward (Eq. 3-4) -> judge.

    >>> make_reward_fn().score("twelve", "a dozen")
    ScoreResult(score=1.0, method='rule')
    >>> make_reward_fn(judge="http://x")
    Traceback (most recent call last):
    ...
    TypeError: judge must be a zwz.scoring.judge.Judge or None, got str
    """
    if judge is not None:
        from zwz.scoring.judge import Judge

        if not isinstance(judge, Judge):
            raise TypeError(f"judge must be a zwz.scoring.judge.Judge or None, got {type(judge).__name__}")
    if not isinstance(counting, bool):
        raise TypeError("counting must be a bool")
    if length_cap is not None and (isinstance(length_cap, bool) or not isinstance(length_cap, int) or length_cap < 1):
        raise ValueError(f"length_cap must be a positive int or None, got {length_cap!r}")
    return RewardFn(judge=judge, counting=counting, length_cap=length_cap)


def make_benchmark_scorer(judge: Judge | None = None) -> RewardFn:
    """The benchmark scorer (App. 9.3): rule -> judge, 1/0, never the counting reward.

    >>> make_benchmark_scorer().score("46", "47")
    ScoreResult(score=0.0, method='rule')
    """
    return make_reward_fn(judge, counting=False)
