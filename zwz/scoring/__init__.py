"""Answer scoring shared by evaluation, distillation and training (paper App. 9.2-9.3, App. 10).

extract (answers, boxes, options, letters) -> numbers (number words, counting reward Eq. 3-4) -> rules
(rule_match) -> scorer (RewardFn, the tiers); judge (the LLM judge, imported on its own: it needs httpx).
"""

from zwz.scoring.extract import (
    extract_boxed,
    extract_choice_letter,
    extract_final_answer,
    extract_options,
    normalize_text,
)
from zwz.scoring.numbers import counting_reward, extract_number
from zwz.scoring.rules import rule_match, rule_match_batch
from zwz.scoring.scorer import RewardFn, ScoreResult, make_benchmark_scorer, make_reward_fn

__all__ = [
    "RewardFn",
    "ScoreResult",
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
