"""Rule-based scoring, the counting reward and the scorer tiers (paper App. 9.2-9.3); the RL faces are tested in
tests/train/test_rewards.py."""

from __future__ import annotations

import doctest
import importlib
import math
import pickle

import pytest

from zwz.scoring import (
    RewardFn,
    ScoreResult,
    counting_reward,
    extract_boxed,
    extract_choice_letter,
    extract_final_answer,
    extract_number,
    extract_options,
    make_benchmark_scorer,
    make_reward_fn,
    normalize_text,
    rule_match,
    rule_match_batch,
)

OPTIONS = ["red car", "Blue car", "green", "black"]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("B)", "B"),
        (" [C] ", "C"),
        ("Answer: C", "C"),
        ("ANSWER: B", "B"),
        ("The answer is (C).", "C"),
        ("The answer is: D", "D"),
        ("The correct option is B.", "B"),
        ("Based on the image, the answer is B.", "B"),
        ("\\boxed{C}", "C"),
        ("so \\boxed{(A)}", "A"),
        ("**C**", "C"),
        ("Final answer: **B**", "B"),
        ("<think>A or B?</think><answer>D</answer>", "D"),
        ("B. Blue car", "B"),
        ("(B) Blue car", "B"),
        ("B: Blue car", "B"),
        ("blue car", "B"),  # the reply repeats an option's text
        ("Blue car.", "B"),
        ("I believe (D)", "D"),
    ],
)
def test_choice_letter_accepts(response: str, expected: str) -> None:
    assert extract_choice_letter(response, 4, OPTIONS) == expected


@pytest.mark.parametrize(
    "response",
    [
        "I think A Blue car",  # article or option letter: undecidable
        "A Blue car",
        "Because",  # capitals inside words
        "CAT",
        "The answer is C because",  # bare letter followed by prose
        "answer: c",  # lower case letters are words
        "a",
        "E",  # beyond the options
        "(E)",
        "B. red car",  # letter and text contradict
        "(A) is wrong, (B) is right",
        "It could be either",
        "",
    ],
)
def test_choice_letter_rejects(response: str) -> None:
    assert extract_choice_letter(response, 4, OPTIONS) is None


def test_choice_letter_validates_option_count() -> None:
    with pytest.raises(ValueError, match="n_options"):
        extract_choice_letter("A", 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", 5.0),
        ("5 people", 5.0),
        ("3 cm", 3.0),
        ("3cm", 3.0),
        ("-2.5", -2.5),
        ("−7", -7.0),
        ("1,234", 1234.0),
        ("0.5", 0.5),
        ("5.", 5.0),
        ("Twelve", 12.0),
        ("twenty-one", 21.0),
        ("twenty one", 21.0),
        ("ninety", 90.0),
        ("a dozen", 12.0),
        ("half a dozen", 6.0),
        ("There are 12 birds.", 12.0),
        ("5 (five)", 5.0),
        ("red", None),
        ("3 or 4", None),
        ("3-4", None),
        ("1,2", None),
        ("A4", None),  # a label, not a number
        ("someone", None),  # "one" inside a word
        ("often", None),
        ("", None),
    ],
)
def test_extract_number(text: str, expected: float | None) -> None:
    assert extract_number(text) == expected


@pytest.mark.parametrize(
    ("prediction", "answer", "options", "expected"),
    [
        # multiple choice: the gold answer is a letter
        ("The answer is (C).", "C", ["5", "4", "3", "2"], True),
        ("3", "C", ["5", "4", "3", "2"], True),  # repeats the option text
        ("C. 3", "C", ["5", "4", "3", "2"], True),
        ("B", "C", ["5", "4", "3", "2"], False),
        ("**D**", "D", None, True),  # options unknown, bare-letter gold
        ("Because of the crown", "D", ["wreath", "tiara", "headdress", "crown"], None),
        ("I think A Blue car", "B", OPTIONS, None),
        ("crown", "crown", ["wreath", "tiara", "headdress", "crown"], True),  # gold given as option text
        # open questions
        ("Red", "red.", None, True),
        ("  the RED ", "red", None, True),
        ("The answer is red.", "red", None, True),
        ("off-white", "off white", None, True),
        ("Five people.", "5", None, True),
        ("There are 5 people.", "5 people", None, True),
        ("<answer>Seven</answer>", "7", None, True),
        ("\\boxed{7}", "7", None, True),
        ("3.0", "3", None, True),
        ("twelve", "a dozen", None, True),
        ("6", "5 people", None, False),
        ("yes.", "Yes", None, True),
        ("No", "yes", None, False),
        ("35 mm", "3.5 cm", None, None),  # units differ: the judge decides
        ("5 fish", "5 people", None, None),
        ("dark red", "red", None, None),
        ("navy", "blue", None, None),
        ("", "red", None, None),
    ],
)
def test_rule_match(prediction: str, answer: str, options: list[str] | None, expected: bool | None) -> None:
    assert rule_match(prediction, answer, options=options) is expected


def test_rule_match_batch() -> None:
    out = rule_match_batch(["B", "blue", "teal"], ["B", "C", "cyan"], [None, ["red", "green", "blue", "pink"], None])
    assert out == [1.0, 1.0, None]
    with pytest.raises(ValueError, match="differ in length"):
        rule_match_batch(["a"], ["a", "b"])


def test_extractors() -> None:
    assert extract_boxed("\\boxed{a} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_boxed("\\boxed{unclosed") is None
    assert extract_final_answer("<think>\\boxed{3}</think>It is <answer>\\boxed{4}</answer>") == "4"
    assert normalize_text("The Off-White, car!") == "off white car"


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Q?\nA. 5\nB. 4\nC. 3\nD. 2\nAnswer with the option's letter from the given choices.", ["5", "4", "3", "2"]),
        ("How many table lamps?\n(A) 0\n(B) 2\n(C) 1\n(D) 3", ["0", "2", "1", "3"]),
        ("Q?\nA) wreath\nB) crown", ["wreath", "crown"]),
        ("What flag? A. Greek flag B. Turkish flag C. Russian flag", ["Greek flag", "Turkish flag", "Russian flag"]),
        ("What word is written on the sign?", None),
        ("Answer with a single word.", None),
        ("Q?\nA. only one option", None),
        ("Q?\nB. starts at B\nC. then C", None),
    ],
)
def test_extract_options(prompt: str, expected: list[str] | None) -> None:
    assert extract_options(prompt) == expected


@pytest.mark.parametrize(
    ("pred", "gt", "expected"),
    [
        ("46", "47", 1 - 1 / 47),  # Eq. 3
        ("5", "5", 1.0),
        ("10", "5", 0.0),  # clipped at 0
        ("-1", "4", 0.0),
        ("0", "0", 1.0),  # Eq. 4
        ("2", "0", math.exp(-2)),
        ("one", "zero", math.exp(-1)),
        (3, 4, 0.75),
        ("many", "3", None),
        ("3", "red", None),
    ],
)
def test_counting_reward(pred: str | float, gt: str | float, expected: float | None) -> None:
    got = counting_reward(pred, gt)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_reward_tiers() -> None:
    fn = make_reward_fn()
    assert fn.score("Answer: B", "B") == ScoreResult(1.0, "rule")
    assert fn.score("<answer>9</answer>", "10") == ScoreResult(pytest.approx(0.9), "counting")
    assert fn.score("nine", "10 birds") == ScoreResult(pytest.approx(0.9), "counting")
    # multiple choice never gets the counting reward, even with numeric options
    assert fn.score("B", "C", options=["5", "4", "3", "2"]) == ScoreResult(0.0, "rule")
    assert fn.score("teal", "cyan") == ScoreResult(None, "unjudged")


def test_benchmark_scorer_never_uses_counting() -> None:
    scorer = make_benchmark_scorer()
    assert scorer.counting is False
    assert scorer.score("46", "47") == ScoreResult(0.0, "rule")
    assert scorer.score("47 fish", "47") == ScoreResult(1.0, "rule")
    assert scorer.score("teal", "cyan") == ScoreResult(None, "unjudged")


def test_reward_fn_batch_and_trl_completions() -> None:
    fn = make_reward_fn()
    completions = [
        [{"role": "assistant", "content": "<answer>4</answer>"}],
        "B",
        [{"role": "assistant", "content": [{"type": "text", "text": "navy"}]}],
    ]
    assert fn(completions, ["5", "B", "blue"]) == [pytest.approx(0.8), 1.0, None]
    assert fn.__name__ == "zwz_reward"


def test_factory_validates_and_is_picklable() -> None:
    with pytest.raises(TypeError, match="Judge"):
        make_reward_fn(judge="http://127.0.0.1:1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bool"):
        make_reward_fn(counting=1)  # type: ignore[arg-type]
    fn = make_reward_fn(counting=False)
    clone = pickle.loads(pickle.dumps(fn))
    assert isinstance(clone, RewardFn) and clone == fn


# -- the lone </think> bug: Qwen3 thinking templates open <think> in the prompt, so replies carry only the close
@pytest.mark.parametrize(
    ("prediction", "answer", "options", "expected"),
    [
        ("I count 4 or 5 fish.</think>5", "5", None, True),
        ("I count 4 or 5 fish.</think>4", "5", None, False),
        ("Maybe five?</think>\n\n<answer>6</answer>", "6", None, True),
        ("Is it (A) or (C)? The answer is A.</think>C", "C", ["5", "4", "3", "2"], True),
        ("The answer is C.</think>(A)", "C", ["5", "4", "3", "2"], False),
        ("It could be red.</think>blue", "blue", None, True),
        ("It is blue.</think>red", "blue", None, None),  # open text: the judge decides, on "red"
        ("<think>first</think>draft<think>second</think>red", "red", None, True),  # the last close counts
    ],
)
def test_lone_think_close_is_scored_on_the_final_answer(
    prediction: str, answer: str, options: list[str] | None, expected: bool | None
) -> None:
    assert rule_match(prediction, answer, options=options) is expected


def test_lone_think_close_in_every_tier() -> None:
    assert extract_final_answer("hmm, 4 or 5?</think> 5 ") == "5"
    assert extract_choice_letter("Is it (A) or (B)?</think>B", 4, OPTIONS) == "B"
    assert extract_choice_letter("The answer is (A).</think>", 4, OPTIONS) is None  # thinking is not an answer
    fn = make_reward_fn()
    # the counting reward reads the final answer, not the numbers in the thinking
    assert fn.score("Maybe 10 or 12.</think>9", "10") == ScoreResult(pytest.approx(0.9), "counting")
    assert fn.score("3 or 4?</think>5", "5") == ScoreResult(1.0, "rule")


def test_unclosed_think_is_no_answer() -> None:
    """A reply that ran out of tokens inside its thinking stated nothing: 0 by rule, never the judge's call."""
    assert extract_final_answer("<think>it is 5") == ""
    assert make_reward_fn().score("<think>it is 5", "5") == ScoreResult(0.0, "rule")
    assert make_benchmark_scorer().score("", "red") == ScoreResult(0.0, "rule")


def test_length_cap() -> None:
    fn = make_reward_fn(length_cap=300)
    long = "x" * 299 + "5"
    assert fn.score(f"<answer>{long}</answer>", "5") == ScoreResult(0.0, "length")
    assert fn.score(f"<answer>{long[1:]}</answer>", "5").method != "length"  # 299 characters pass
    assert fn.score("y" * 1000 + "</think><answer>5</answer>", "5") == ScoreResult(1.0, "rule")  # thinking is not capped
    assert make_reward_fn().score(f"<answer>{long}</answer>", "5").method != "length"  # off by default
    with pytest.raises(ValueError, match="length_cap"):
        make_reward_fn(length_cap=0)


@pytest.mark.parametrize(
    "module", ["zwz.scoring.extract", "zwz.scoring.numbers", "zwz.scoring.rules", "zwz.scoring.scorer"]
)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
