"""Answer consensus (paper Alg. 2 HIGHCONSENSUS / CONSENSUSMAP): cluster the m x k teacher answers, keep the
majority when its share reaches the threshold.

Two answers are the same when the project's rule matcher says so (normalised text, numbers by value); an
optional LLM judge decides the pairs the rules cannot (the official code asks an LLM to cluster answers).

>>> consensus(["Red", "red.", "red", "dark red"], 4, 0.75)
Consensus(answer='Red', agreement=0.75, clusters=[['Red', 'red.', 'red'], ['dark red']])
>>> consensus(["3", "three", "4", None], 4, 0.75).answer is None
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zwz.scoring import extract_final_answer, normalize_text, rule_match

if TYPE_CHECKING:
    from zwz.scoring.judge import Judge

__all__ = ["Consensus", "consensus", "same_answer"]


@dataclass
class Consensus:
    answer: str | None  # the majority's most common spelling, None when below the threshold
    agreement: float  # majority size / answers requested (failed calls count against consensus)
    clusters: list[list[str]]


def same_answer(a: str, b: str, *, question: str = "", judge: Judge | None = None) -> bool:
    """Whether two short answers say the same thing: rules first, then the judge if one is given."""
    verdict = rule_match(a, b)
    if verdict is None:
        verdict = rule_match(b, a)
    if verdict is None and judge is not None:
        verdict = judge.judge(question, b, a)
    return bool(verdict)


def consensus(
    answers: Sequence[str | None], requested: int, threshold: float, *, question: str = "",
    judge: Judge | None = None,
) -> Consensus:  # fmt: skip
    """Greedy clustering in answer order; ``None`` entries are failed calls (they join no cluster)."""
    clusters: list[list[str]] = []
    for raw in answers:
        if raw is None:
            continue
        text = extract_final_answer(raw).strip()
        if not normalize_text(text):
            continue  # an empty reply votes for nothing
        for cluster in clusters:
            if same_answer(text, cluster[0], question=question, judge=judge):
                cluster.append(text)
                break
        else:
            clusters.append([text])
    if not clusters:
        return Consensus(None, 0.0, [])
    best = max(clusters, key=len)  # the first of equally large clusters: deterministic
    agreement = len(best) / max(1, requested)
    if agreement + 1e-9 < threshold:
        return Consensus(None, round(agreement, 4), clusters)
    spellings = [normalize_text(t) for t in best]
    top = max(dict.fromkeys(spellings), key=spellings.count)
    answer = next(t for t in best if normalize_text(t) == top).rstrip(".")
    return Consensus(answer, round(agreement, 4), clusters)
