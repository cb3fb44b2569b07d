"""The reward's TRL, verl and plain faces, pinned down where mutation testing (tools/mutation.sh reward)
found them loose: which column or ``extra_info`` key each face reads the question and options from, what
reaches the judge, the judge settings verl passes, the length checks, and the logged judged share.
"""

from __future__ import annotations

import logging
import re

import pytest

import zwz.train.rewards as rewards
from zwz.scoring import make_reward_fn
from zwz.scoring.judge import Judge, format_judge_prompt
from zwz.train.rewards import TrlReward, compute_score, compute_score_batch, item_context, make_trl_reward, score_batch

MC = "Which?\nA. wreath\nB. crown"


def judge(judge_llm) -> Judge:
    return Judge(judge_llm.url, "judge-model", retry_backoff=0.0)


def last_prompt(judge_llm) -> str:
    return judge_llm.requests[-1]["body"]["messages"][0]["content"]


# -- item context --------------------------------------------------------------------------------------------
def test_item_context_option_lists():
    assert item_context(MC, []) == (MC, ["wreath", "crown"])  # an empty list: read them from the question
    assert item_context("Q", ["only"]) == ("Q", ["only"])
    assert item_context("Q", (1, 2)) == ("Q", ["1", "2"])


# -- TRL -----------------------------------------------------------------------------------------------------
def test_trl_default_columns():
    fn = TrlReward(make_reward_fn())
    assert (fn.answer_column, fn.question_column, fn.options_column) == ("answer", "question", "options")
    made = make_trl_reward()
    assert (made.answer_column, made.question_column, made.options_column) == ("answer", "question", "options")
    # the question column wins over the prompt's text
    assert made(["unrelated prompt"], ["crown"], answer=["B"], question=[MC]) == [1.0]


def test_trl_custom_columns():
    fn = make_trl_reward(question_column="q", options_column="choices")
    assert fn(["x"], ["teal"], answer=["C"], choices=[["red", "blue", "teal"]]) == [1.0]
    assert fn(["x"], ["crown"], answer=["B"], q=[MC]) == [1.0]


@pytest.mark.parametrize("name", ["answer_column", "question_column", "options_column"])
def test_trl_column_names_must_be_given(name):
    with pytest.raises(ValueError, match=rf"^{name} must be a non-empty column name$"):
        make_trl_reward(**{name: ""})
    assert make_trl_reward(**{name: "col"}) == make_trl_reward(**{name: "col"})


def test_trl_counting_off_and_equality():
    fn = make_trl_reward(counting=False)
    assert fn.reward.counting is False
    assert fn(["q"], ["46"], answer=["47"]) == [0.0]
    assert make_trl_reward() != fn
    assert make_trl_reward() == make_trl_reward()


def test_trl_missing_answer_column_lists_the_dataset_columns():
    message = "the dataset has no 'answer' column for the reward (it has: ['options', 'solution'])"
    with pytest.raises(KeyError, match=f"^{re.escape(repr(message))}$"):
        make_trl_reward()(["q"], ["5"], solution=["5"], options=[None], trainer_state=None, log_extra=None,
                          log_metric=None, environments=None)
    assert make_trl_reward(answer_column="solution")(["q"], ["5"], solution=["5"]) == [1.0]


@pytest.mark.parametrize("short", ["prompts", "completions", "answer", "question", "options"])
def test_trl_checks_every_length(short):
    args = {"prompts": ["p", "p"], "completions": ["5", "6"], "answer": ["5", "5"], "question": ["q", "q"],
            "options": [None, None]}
    args[short] = args[short][:1]
    sizes = [len(args[k]) for k in ("prompts", "completions", "answer", "question", "options")]
    with pytest.raises(ValueError, match=rf"^batch inputs differ in length: \[{', '.join(map(str, sizes))}\]$"):
        make_trl_reward()(args.pop("prompts"), args.pop("completions"), **args)
    assert make_trl_reward()(["p", "p"], ["5", "6"], answer=["5", "5"]) == [1.0, 0.8]  # 6 for 5: counting


def test_trl_judge_sees_the_question_and_the_share_is_logged(judge_llm):
    logged: dict[str, float] = {}
    fn = make_trl_reward(judge(judge_llm))
    out = fn(["prompt text", "prompt text"], ["yes-trl navy", "5"], answer=["blue", "5"], question=["Colour?", "n?"],
             log_metric=logged.__setitem__)
    assert out == [1.0, 1.0]
    assert last_prompt(judge_llm) == format_judge_prompt("Colour?", "blue", "yes-trl navy")
    assert logged == {"zwz_reward/unjudged": 0.0, "zwz_reward/judged": 0.5}


# -- verl ----------------------------------------------------------------------------------------------------
def test_verl_reads_prompt_and_options_from_extra_info():
    assert compute_score("zw", "crown", "B", {"prompt": MC}) == 1.0
    assert compute_score("zw", "teal", "C", {"question": "Which?", "options": ["red", "blue", "teal"]}) == 1.0
    assert compute_score_batch(["zw", "zw"], ["crown", "teal"], ["B", "C"],
                               [{"question": MC}, {"options": ["red", "blue", "teal"]}]) == [1.0, 1.0]


def test_verl_judge_object_and_settings(judge_llm):
    j = judge(judge_llm)
    assert compute_score("zw", "yes-verl navy", "blue", {"question": "Colour?"}, judge=j) == 1.0
    assert last_prompt(judge_llm) == format_judge_prompt("Colour?", "blue", "yes-verl navy")
    assert compute_score_batch(["zw"], ["no-verlb red"], ["blue"], [{"question": "Hue?"}], judge=j) == [0.0]
    assert last_prompt(judge_llm) == format_judge_prompt("Hue?", "blue", "no-verlb red")
    with pytest.raises(TypeError, match=r"^judge must be a Judge, got str$"):
        compute_score("zw", "teal", "cyan", judge="http://127.0.0.1:1")
    assert compute_score("zw", "cyan", "cyan", judge=j) == 1.0


def test_verl_judge_from_settings(judge_llm):
    built = rewards._judge_from_kwargs({"judge_base_url": judge_llm.url, "judge_model": "judge-model",
                                        "judge_api_key": "sk-verl", "judge_timeout": "5", "judge_max_retries": "0"})
    assert (built.api_key, built.timeout, built.max_retries) == ("sk-verl", 5.0, 0)
    plain = rewards._judge_from_kwargs({"judge_base_url": judge_llm.url, "judge_model": "judge-model"})
    assert (plain.api_key, plain.timeout, plain.max_retries) == (None, 60.0, 2)
    assert compute_score("zw", "yes-key navy", "blue", judge_base_url=judge_llm.url, judge_model="judge-model",
                         judge_api_key="sk-verl") == 1.0
    assert judge_llm.requests[-1]["auth"] == "Bearer sk-verl"
    with pytest.raises(ValueError, match=r"^judge_base_url and judge_model must be given together$"):
        compute_score("zw", "teal", "cyan", judge_model="judge-model")


def test_verl_warns_only_when_unjudged(caplog):
    with caplog.at_level(logging.WARNING, logger="zwz.train.rewards"):
        assert compute_score("zw", "5", "5") == 1.0
        assert caplog.messages == []
        assert compute_score("zw", "teal", "cyan") == 0.0
    assert caplog.messages == ["reward undecided by rules and no judge configured: scoring 0.0 (flagged unjudged)"]


@pytest.mark.parametrize("short", range(4))
def test_verl_batch_checks_every_length(short):
    args = [["zw", "zw"], ["5", "6"], ["5", "5"], [None, None]]
    args[short] = args[short][:1]
    sizes = ", ".join(str(len(a)) for a in args)
    with pytest.raises(ValueError, match=rf"^batch inputs differ in length: \[{sizes}\]$"):
        compute_score_batch(*args)
    assert compute_score_batch(["zw", "zw"], ["5", "6"], ["5", "5"], [None, None]) == [1.0, 0.8]  # 6 for 5: counting


# -- plain ---------------------------------------------------------------------------------------------------
def test_plain_options_counting_and_judge(judge_llm):
    assert score_batch(["teal"], ["C"], options=[["red", "blue", "teal"]]) == [1.0]
    assert score_batch(["46"], ["47"], counting=False) == [0.0]
    assert score_batch(["yes-plain navy"], ["blue"], questions=["Shade?"], judge=judge(judge_llm)) == [1.0]
    assert last_prompt(judge_llm) == format_judge_prompt("Shade?", "blue", "yes-plain navy")


@pytest.mark.parametrize("short", ["responses", "answers", "questions", "options"])
def test_plain_checks_every_length(short):
    args = {"responses": ["5", "6"], "answers": ["5", "5"], "questions": [None, None], "options": [None, None]}
    args[short] = args[short][:1]
    sizes = ", ".join(str(len(args[k])) for k in ("responses", "answers", "questions", "options"))
    with pytest.raises(ValueError, match=rf"^batch inputs differ in length: \[{sizes}\]$"):
        score_batch(args["responses"], args["answers"], questions=args["questions"], options=args["options"])
    assert score_batch(["5", "6"], ["5", "5"]) == [1.0, 0.8]  # 6 for 5: counting
