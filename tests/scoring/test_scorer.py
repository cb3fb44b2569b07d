"""Rule-based scoring, the counting reward and the verl/TRL reward entry points (paper App. 9.2-9.3)."""

from __future__ import annotations

import logging
import math
import pickle

import pytest

from zwz.scoring import (
    RewardFn,
    ScoreResult,
    compute_score,
    compute_score_batch,
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


def test_compute_score_verl_hook(caplog: pytest.LogCaptureFixture) -> None:
    assert compute_score("zoomworld", "<think>about 9</think><answer>8</answer>", "10") == pytest.approx(0.8)
    assert compute_score("zoomworld", "(B)", "B") == 1.0
    info = {"question": "Which?\nA. wreath\nB. crown\nAnswer with the option's letter from the given choices."}
    assert compute_score("zoombench", "crown", "B", info) == 1.0  # options inferred from the question
    assert compute_score("zoombench", "wreath", "B", info) == 0.0
    with caplog.at_level(logging.WARNING, logger="zwz.scoring"):
        out = compute_score("zoomworld", "teal", "cyan", return_dict=True)
    assert out == {"score": 0.0, "method": "unjudged", "unjudged": True}
    assert "no judge configured" in caplog.text
    with pytest.raises(ValueError, match="together"):
        compute_score("zoomworld", "teal", "cyan", judge_base_url="http://127.0.0.1:1")


def test_compute_score_batch() -> None:
    out = compute_score_batch(["a", "a", "a"], ["(B)", "7", "teal"], ["B", "8", "cyan"], return_dict=True)
    assert [o["method"] for o in out] == ["rule", "counting", "unjudged"]
    assert compute_score_batch(["a"], ["7"], ["7"]) == [1.0]
