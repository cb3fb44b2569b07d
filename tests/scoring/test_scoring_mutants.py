"""Scoring, pinned down where mutation testing (tools/mutation.sh scoring) found it loose.

Each case is a reply whose verdict or reward would change under a plausible slip in the code: option
blocks that restart, replies spread over lines, options that only normalisation tells apart, letters past
the default A-D, the judge tier's inputs and outputs, and the batch faces' length checks.
"""

from __future__ import annotations

import logging

import pytest

from zwz.scoring import (
    ScoreResult,
    counting_reward,
    extract_choice_letter,
    extract_options,
    make_benchmark_scorer,
    make_reward_fn,
    normalize_text,
    rule_match,
    rule_match_batch,
)
from zwz.scoring.extract import clean_for_letter, letters
from zwz.scoring.judge import Judge, format_judge_prompt
from zwz.scoring.numbers import residual_words
from zwz.scoring.scorer import completion_text, gold_for_judge

OPTIONS = ["red car", "Blue car", "green", "black"]


# -- extract -------------------------------------------------------------------------------------------------
def test_normalize_unwraps_latex_text():
    assert normalize_text("\\text{Red} car") == "red car"
    assert normalize_text("\\textbf {Blue}") == "blue"


def test_options_a_later_block_restarts():
    prompt = "Example:\nA. cat\nB. dog\nNow the question.\nA. red\nB. blue\nC. green"
    assert extract_options(prompt) == ["red", "blue", "green"]


def test_inline_options_after_a_plain_line():
    assert extract_options("Look closely.\nIs it on? A. yes B. no") == ["yes", "no"]


def test_quotes_and_emphasis_around_a_letter():
    assert clean_for_letter('**"C"**') == "C"
    assert clean_for_letter("'X'") == "X"
    assert extract_choice_letter('"C"') == "C"


def test_letters_of_no_options():
    assert letters(0) == ""
    assert letters(26) == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@pytest.mark.parametrize("n", [0, 27])
def test_choice_letter_needs_1_to_26_options(n):
    with pytest.raises(ValueError, match=rf"^n_options must be in 1\.\.26, got {n}$"):
        extract_choice_letter("A", n)
    assert extract_choice_letter("A", 1) == "A"
    assert extract_choice_letter("Z", 26) == "Z"


def test_choice_letter_from_option_text():
    assert extract_choice_letter("\\boxed{Blue car}", 4, OPTIONS) == "B"
    assert extract_choice_letter("The answer is blue car", 4, OPTIONS) == "B"
    assert extract_choice_letter("the Blue Car!", 4, OPTIONS) == "B"  # only normalisation finds it
    assert extract_choice_letter("B. Blue car\nIt matches the picture.", 4, OPTIONS) == "B"


def test_exact_option_text_decides_between_normalised_twins():
    # "a box" and "box" normalise alike; the reply's exact text (any case, a full stop) names one.
    assert extract_choice_letter("BOX.", 2, ["a box", "box"]) == "B"
    assert extract_choice_letter("a box", 2, ["a box", "box"]) == "A"
    assert extract_choice_letter("box", 3, ["box", "crate", "box"]) is None  # two options say it: undecidable


# -- rules ---------------------------------------------------------------------------------------------------
def test_bare_letter_gold_without_options():
    assert rule_match("I believe (C)", "C") is True
    assert rule_match("I pick (F)", "F") is True  # letters run up to the gold one
    assert rule_match("I pick (G)", "F") is None  # beyond it: not a letter answer
    assert rule_match("E", "B") is None  # the default is A-D
    assert rule_match("5 cm", "A) 5 cm") is True  # not a bare letter: open text


def test_gold_as_option_text():
    assert rule_match("B", "Blue car", options=OPTIONS) is True
    assert rule_match("B", "B", options=[str(i) for i in range(27)]) is True  # letters stop at Z


def test_gold_outside_the_options_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="zwz.scoring.rules"):
        assert rule_match("purple", "purple", options=OPTIONS) is True
    assert caplog.messages == ["answer 'purple' is neither an option letter nor an option; compared as open text"]


def test_open_answers_after_markdown_and_prefix():
    assert rule_match("**Blue**", "blue") is True
    assert rule_match("**Answer:** blue", "blue") is True
    assert rule_match("yes", "maybe") is None  # yes/no only against yes/no


def test_rule_match_batch_lengths():
    with pytest.raises(ValueError, match=r"^batch inputs differ in length: \[2, 1, 2\]$"):
        rule_match_batch(["B", "red"], ["B"], [None, None])
    with pytest.raises(ValueError, match=r"^batch inputs differ in length: \[2, 2, 1\]$"):
        rule_match_batch(["B", "red"], ["B", "red"], [None])
    assert rule_match_batch(["B", "red"], ["B", "red"], [None, None]) == [1.0, 1.0]


# -- numbers -------------------------------------------------------------------------------------------------
def test_residual_words_cut_every_number():
    assert residual_words("12 cm 3 mm") == {"cm", "mm"}


def test_counting_reward_numbers_and_infinities():
    assert counting_reward(2.5e-05, 2.5e-05) == 1.0  # numeric ground truth, even where str() has an exponent
    assert counting_reward(float("inf"), 5) is None
    assert counting_reward(5, float("nan")) is None
    assert counting_reward("4", 5) == 0.8


# -- scorer --------------------------------------------------------------------------------------------------
def test_completion_text_shapes():
    assert completion_text([]) == ""
    assert completion_text([{"role": "assistant"}]) == ""
    assert completion_text([{"role": "assistant", "content": None}]) == ""
    parts = [{"type": "text", "text": "4"}, {"type": "image"}, "stray", {"type": "text", "text": "2"}]
    assert completion_text([{"role": "assistant", "content": parts}]) == "42"


def test_gold_for_judge_reads_option_text():
    assert gold_for_judge("blue car", OPTIONS) == "B. Blue car"
    assert gold_for_judge("purple", OPTIONS) == "purple"


@pytest.mark.parametrize(("cap", "shown"), [(0, "0"), (True, "True"), (2.5, "2.5")])
def test_length_cap_must_be_a_positive_int(cap, shown):
    with pytest.raises(ValueError, match=rf"^length_cap must be a positive int or None, got {shown}$"):
        make_reward_fn(length_cap=cap)
    assert make_reward_fn(length_cap=1).length_cap == 1


def test_counting_must_be_a_bool():
    with pytest.raises(TypeError, match=r"^counting must be a bool$"):
        make_reward_fn(counting=1)
    assert make_reward_fn(counting=False).counting is False


def test_options_reach_the_rules():
    fn = make_reward_fn()
    assert fn.score("blue car", "B", options=OPTIONS) == ScoreResult(1.0, "rule")
    assert fn(["blue car", "green"], ["B", "B"], options=[OPTIONS, OPTIONS]) == [1.0, 0.0]


@pytest.mark.parametrize("short", ["responses", "answers", "questions", "options"])
def test_score_many_checks_every_length(short):
    args = {"responses": ["B", "C"], "answers": ["B", "B"], "questions": ["q", "q"], "options": [None, None]}
    args[short] = args[short][:1]
    sizes = [len(args[k]) for k in ("responses", "answers", "questions", "options")]
    with pytest.raises(ValueError, match=rf"^batch inputs differ in length: \[{', '.join(map(str, sizes))}\]$"):
        make_reward_fn().score_many(args["responses"], args["answers"], questions=args["questions"],
                                    options=args["options"])
    assert make_reward_fn().score_many(["B", "C"], ["B", "B"]) == [ScoreResult(1.0, "rule"), ScoreResult(0.0, "rule")]


def test_undecided_without_a_judge_is_flagged():
    assert make_reward_fn().score_many(["navy"], ["blue"]) == [ScoreResult(None, "unjudged")]
    assert make_reward_fn().score("navy", "blue") == ScoreResult(None, "unjudged")


def judge(judge_llm) -> Judge:
    return Judge(judge_llm.url, "judge-model", retry_backoff=0.0)


def prompts(judge_llm, n: int) -> list[str]:
    return [r["body"]["messages"][0]["content"] for r in judge_llm.requests[-n:]]


def test_judge_gets_question_gold_and_final_answer(judge_llm):
    fn = make_reward_fn(judge(judge_llm))
    assert fn.judge is not None
    assert fn.score("<think>hmm</think>yes-mutant navy", "blue car", question="Which car?", options=OPTIONS) == \
        ScoreResult(1.0, "judge")
    assert prompts(judge_llm, 1) == [format_judge_prompt("Which car?", "B. Blue car", "yes-mutant navy")]
    assert fn.score("no-mutant red", "blue", question="Colour?") == ScoreResult(0.0, "judge")
    assert prompts(judge_llm, 1) == [format_judge_prompt("Colour?", "blue", "no-mutant red")]


def test_no_question_reaches_the_judge_as_empty(judge_llm):
    fn = make_reward_fn(judge(judge_llm))
    assert fn.score("yes-noq navy", "blue") == ScoreResult(1.0, "judge")
    assert prompts(judge_llm, 1) == [format_judge_prompt("", "blue", "yes-noq navy")]
    assert fn.score_many(["no-noq red"], ["blue"]) == [ScoreResult(0.0, "judge")]
    assert prompts(judge_llm, 1) == [format_judge_prompt("", "blue", "no-noq red")]


def test_batch_sends_only_the_undecided_to_the_judge(judge_llm):
    fn = make_reward_fn(judge(judge_llm))
    before = len(judge_llm.requests)
    got = fn.score_many(["B", "yes-batch navy", "no-batch red", "4"], ["B", "blue car", "blue", "5"],
                        questions=["q1", "q2", "q3", "q4"], options=[OPTIONS, OPTIONS, None, None])
    assert got == [ScoreResult(1.0, "rule"), ScoreResult(1.0, "judge"), ScoreResult(0.0, "judge"),
                   ScoreResult(0.8, "counting")]
    assert sorted(prompts(judge_llm, len(judge_llm.requests) - before)) == sorted([
        format_judge_prompt("q2", "B. Blue car", "yes-batch navy"),
        format_judge_prompt("q3", "blue", "no-batch red"),
    ])
    assert fn(["yes-call navy"], ["blue"], questions=["q5"]) == [1.0]
    assert prompts(judge_llm, 1) == [format_judge_prompt("q5", "blue", "yes-call navy")]


def test_benchmark_scorer_keeps_its_judge(judge_llm):
    scorer = make_benchmark_scorer(judge(judge_llm))
    assert scorer.score("yes-bench navy", "blue") == ScoreResult(1.0, "judge")
    assert scorer.score("46", "47") == ScoreResult(0.0, "rule")  # never the counting reward
