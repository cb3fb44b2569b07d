"""train/rewards.py: the RL reward's TRL, verl and batch faces over zwz.scoring (paper App. 9.2, Eq. 3-4).

The judge tier runs against tests/conftest.py's ``judge_llm``, a live local OpenAI-compatible stand-in that
answers "yes..." responses with \\boxed{Yes}, "no..." with \\boxed{No} and "error..." with HTTP 500.
"""

from __future__ import annotations

import doctest
import json
import logging
import math
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import zwz.train.rewards as rewards
from zwz.scoring.judge import Judge, JudgeError
from zwz.train.rewards import (
    OFFICIAL_LENGTH_CAP,
    REWARD_MODULE_PATH,
    compute_score,
    compute_score_batch,
    make_trl_reward,
    score_batch,
)

MC_QUESTION = "What colour is the car?\nA. red\nB. blue\nC. green\nD. black\nAnswer with the option's letter."
LONG = "five " * 59 + "five!"  # 300 characters stating 5
assert len(LONG) == OFFICIAL_LENGTH_CAP


# (reply, ground truth, question, expected reward); None: rules cannot decide and there is no judge.
TABLE = [
    # rules: normalised text, numbers by value, yes/no
    ("Red.", "red", "", 1.0),
    ("There are five people.", "5 people", "", 1.0),
    ("No", "yes", "", 0.0),
    ("navy", "blue", "", None),
    # multiple choice: the option letter (options read from the question), never the counting reward
    ("(B)", "B", MC_QUESTION, 1.0),
    ("The answer is B.", "B", MC_QUESTION, 1.0),
    ("blue", "B", MC_QUESTION, 1.0),  # the option's text
    ("C", "B", MC_QUESTION, 0.0),
    ("\\boxed{D}", "D", MC_QUESTION, 1.0),
    # counting reward, Eq. 3: max(0, 1 - |p - g| / |g|); Eq. 4: exp(-|p - g|) when g = 0
    ("46", "47", "", 1 - 1 / 47),
    ("9 birds", "10 birds", "", 0.9),
    ("20", "10", "", 0.0),
    ("2", "0", "", math.exp(-2)),
    ("0", "0", "", 1.0),
    # thinking: with and without the opening tag (Qwen3 templates open <think> in the prompt)
    ("I count 4 or 5 fish.</think>5", "5", "", 1.0),
    ("<think>maybe 4</think>5", "5", "", 1.0),
    ("Could be (A) or (C).</think>B", "B", MC_QUESTION, 1.0),
    ("It is 10, or 12?</think>9", "10", "", 0.9),  # the numbers in the thinking do not count
    ("<think>it is 5", "5", "", 0.0),  # ran out of tokens while thinking: no answer
    # <answer> tags and \boxed{}
    ("Let me look. <answer>7</answer>", "7", "", 1.0),
    ("<think>6?</think>So <answer>\\boxed{8}</answer>", "10", "", 0.8),
    ("The count is \\boxed{12}.", "a dozen", "", 1.0),
]


@pytest.mark.parametrize(("reply", "answer", "question", "expected"), TABLE)
def test_reward_table(reply: str, answer: str, question: str, expected: float | None) -> None:
    got = score_batch([reply], [answer], questions=[question])[0]
    assert got == (pytest.approx(expected) if expected is not None else None)
    # the three faces agree (verl reports undecided-without-judge as 0.0)
    assert compute_score("zw", reply, answer, {"question": question}) == pytest.approx(expected or 0.0)
    trl = make_trl_reward()([question], [[{"role": "assistant", "content": reply}]], answer=[answer], question=[question])
    assert trl == [got]


def test_length_cap() -> None:
    replies = [f"<answer>{LONG}</answer>", f"<answer>{LONG[1:]}</answer>", LONG, "y" * 500 + "</think>5"]
    assert score_batch(replies, ["5"] * 4, length_cap=OFFICIAL_LENGTH_CAP) == [0.0, 1.0, 0.0, 1.0]
    assert score_batch(replies[:1], ["5"]) == [1.0]  # off unless asked for
    out = compute_score("zw", replies[0], "5", length_cap=OFFICIAL_LENGTH_CAP, return_dict=True)
    assert out == {"score": 0.0, "method": "length", "unjudged": False}
    assert make_trl_reward(length_cap=OFFICIAL_LENGTH_CAP)(["q"], replies[:1], answer=["5"]) == [0.0]
    with pytest.raises(ValueError, match="length_cap"):
        make_trl_reward(length_cap=-1)


def test_trl_face() -> None:
    fn = make_trl_reward()
    assert fn.__name__ == "zwz_reward"
    clone = pickle.loads(pickle.dumps(fn))
    assert clone == fn and clone.__name__ == "zwz_reward"
    # TRL's conversational VLM layout: the question is the prompt's text when there is no question column
    prompts = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": MC_QUESTION}]}]] * 3
    completions = [[{"role": "assistant", "content": [{"type": "text", "text": t}]}] for t in ("blue", "red", "teal")]
    logged: dict[str, float] = {}
    out = clone(prompts, completions, completion_ids=[[1], [2], [3]], answer=["B", "B", "B"], options=[None] * 3,
                trainer_state=object(), log_metric=logged.__setitem__)  # fmt: skip
    assert out == [1.0, 0.0, None]  # "teal" names no option: undecided
    assert logged == {"zwz_reward/unjudged": pytest.approx(1 / 3), "zwz_reward/judged": 0.0}
    # an options column overrides the question; a custom answer column
    fn = make_trl_reward(answer_column="solution")
    assert fn(["Which?"], ["teal"], solution=["C"], options=[["red", "blue", "teal"]]) == [1.0]
    with pytest.raises(KeyError, match="no 'solution' column"):
        fn(["Which?"], ["teal"], answer=["C"])
    with pytest.raises(ValueError, match="answer_column"):
        make_trl_reward(answer_column="")
    with pytest.raises(TypeError, match="Judge"):
        make_trl_reward(judge="http://127.0.0.1:1")  # type: ignore[arg-type]


def test_verl_face(caplog: pytest.LogCaptureFixture) -> None:
    info = {"question": "Which?\nA. wreath\nB. crown", "options": None, "index": 3}
    assert compute_score("zoombench", "crown", "B", info) == 1.0
    assert compute_score("zoombench", "(A)", "B", info, return_dict=True) == {
        "score": 0.0, "method": "rule", "unjudged": False}  # fmt: skip
    assert compute_score("zw", "7 fish", "8", extra_info={"options": []}) == pytest.approx(7 / 8)
    with caplog.at_level(logging.WARNING):
        out = compute_score("zw", "teal", "cyan", return_dict=True)
    assert out == {"score": 0.0, "method": "unjudged", "unjudged": True}
    assert "no judge configured" in caplog.text
    # verl may add keyword arguments of its own: they are ignored; a misspelt judge setting is not
    assert compute_score("zw", "5", "5", reward_router_address=None) == 1.0
    with pytest.raises(ValueError, match="judge_modle"):
        compute_score("zw", "5", "5", judge_modle="m")
    with pytest.raises(ValueError, match="together"):
        compute_score("zw", "teal", "cyan", judge_base_url="http://127.0.0.1:1")
    batch = compute_score_batch(["a"] * 3, ["(B)", "7", "teal"], ["B", "8", "cyan"], return_dict=True)
    assert [o["method"] for o in batch] == ["rule", "counting", "unjudged"]
    assert compute_score_batch(["a"], ["7"], ["7"], [None]) == [1.0]
    with pytest.raises(ValueError, match="differ in length"):
        compute_score_batch(["a"], ["7", "8"], ["7"])


def test_judge_tier_and_cache(judge_llm, tmp_path: Path) -> None:
    judge = Judge(judge_llm.url, "judge-model", retry_backoff=0.0)
    replies = ["yes-rw navy", "blue? or red?</think>no-rw red", "Blue.", "<answer>4</answer>"]
    answers = ["blue", "blue", "blue", "5"]
    assert score_batch(replies, answers, questions=["Colour?"] * 4, judge=judge) == [1.0, 0.0, 1.0, 0.8]
    assert (judge_llm.calls["yes-rw navy"], judge_llm.calls["no-rw red"]) == (1, 1)  # rules decided the rest
    # the judge got the answer after </think>, not the thinking
    sent = [r["body"]["messages"][0]["content"] for r in judge_llm.requests[-2:]]  # the two concurrent calls
    assert any("The response is: no-rw red\n" in s for s in sent) and not any("or red?" in s for s in sent)
    calls = judge.calls
    assert score_batch(replies, answers, questions=["Colour?"] * 4, judge=judge) == [1.0, 0.0, 1.0, 0.8]
    assert judge.calls == calls and judge_llm.calls["yes-rw navy"] == 1  # cached: no second request

    trl = make_trl_reward(judge=judge)
    assert trl(["Colour?"] * 2, ["yes-trl", "no-trl"], answer=["blue", "blue"]) == [1.0, 0.0]
    assert pickle.loads(pickle.dumps(trl))(["Colour?"], ["yes-trl"], answer=["blue"]) == [1.0]  # cache travels
    assert judge_llm.calls["yes-trl"] == 1

    kwargs = {"judge_base_url": judge_llm.url, "judge_model": "judge-model", "judge_max_retries": 0,
              "judge_cache_path": str(tmp_path / "verdicts.jsonl")}  # fmt: skip
    assert compute_score("zw", "yes-verl", "cyan", {"question": "Colour?"}, **kwargs) == 1.0
    assert compute_score("zw", "no-verl", "cyan", {"question": "Colour?"}, return_dict=True, **kwargs) == {
        "score": 0.0, "method": "judge", "unjudged": False}  # fmt: skip
    assert compute_score_batch(["zw"] * 3, ["yes-b1", "no-b2", "cyan"], ["cyan"] * 3, **kwargs) == [1.0, 0.0, 1.0]
    assert compute_score("zw", "yes-verl", "cyan", {"question": "Colour?"}, **kwargs) == 1.0
    assert judge_llm.calls["yes-verl"] == 1  # one judge per worker process, and its cache
    assert len((tmp_path / "verdicts.jsonl").read_text().splitlines()) == 4


def test_failing_judge_raises(judge_llm) -> None:
    judge = Judge(judge_llm.url, "judge-model", max_retries=0)
    with pytest.raises(JudgeError, match=r"judge call to .* failed after 1 attempt\(s\): retryable HTTP status"):
        score_batch(["error-rw"], ["blue"], judge=judge)
    with pytest.raises(JudgeError, match=r"judge reply has no \\boxed\{Yes\|No\}: 'I am not sure what to say\.'"):
        make_trl_reward(judge=judge)(["q"], ["garbage-rw"], answer=["blue"])  # no verdict in the reply
    with pytest.raises(JudgeError, match=r"judge call to .* failed after 1 attempt\(s\): retryable HTTP status"):
        compute_score("zw", "error-verl", "cyan", judge_base_url=judge_llm.url, judge_model="m", judge_max_retries=0)


def test_module_path_for_launchers() -> None:
    assert REWARD_MODULE_PATH == Path(rewards.__file__).resolve() and REWARD_MODULE_PATH.name == "rewards.py"
    assert callable(getattr(rewards, rewards.VERL_FUNCTION)) and callable(getattr(rewards, rewards.VERL_BATCH_FUNCTION))


# verl's custom_reward_function loads the file by path; its environment has its own torch/transformers (or none).
_LOAD_BY_PATH = """
import importlib.util, json, sys
{prelude}
spec = importlib.util.spec_from_file_location("custom_module", {path!r})
module = importlib.util.module_from_spec(spec)  # as verl does; not registered in sys.modules
spec.loader.exec_module(module)
out = [
    module.compute_score("zw", "I count 4 or 5 fish.</think>5", "5"),
    module.compute_score("zw", "<answer>9</answer>", "10", return_dict=True),
    module.compute_score("zw", "blue", "B", {{"question": "Which?\\nA. red\\nB. blue"}}),
    module.compute_score_batch(["zw", "zw"], ["navy", "(A)"], ["blue", "A"], **{kwargs}),
    module.score_batch(["<answer>" + "x" * 300 + "</answer>"], ["x" * 300], length_cap=300),
    module.make_trl_reward()(["q"], ["5"], answer=["5"]),
]
heavy = sorted(m for m in ("torch", "transformers", "numpy", "PIL", "httpx") if m in sys.modules)
print(json.dumps({{"out": out, "heavy": heavy}}))
"""

_BLOCKER = """
import importlib.abc
BLOCKED = {"torch", "transformers", "numpy", "PIL"}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, Blocker())
"""


def _run(args: list[str], script: str) -> dict:
    proc = subprocess.run([sys.executable, *args, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bare_interpreter_loads_by_path() -> None:
    """``python -S -I``: no site-packages at all (so no torch, numpy, PIL, httpx, not even an installed zwz);
    the module finds the zwz package of the checkout it sits in."""
    got = _run(["-S", "-I"], _LOAD_BY_PATH.format(prelude="", path=str(REWARD_MODULE_PATH), kwargs={}))
    assert got["heavy"] == []
    assert got["out"] == [1.0, {"score": 0.9, "method": "counting", "unjudged": False}, 1.0, [0.0, 1.0], [0.0], [1.0]]


def test_blocked_heavy_imports_with_a_judge(judge_llm) -> None:
    """With the environment's packages but torch, transformers, numpy and PIL unimportable, the judge tier works."""
    kwargs = {"judge_base_url": judge_llm.url, "judge_model": "judge-model"}
    script = _LOAD_BY_PATH.format(prelude=_BLOCKER, path=str(REWARD_MODULE_PATH), kwargs=kwargs)
    script = script.replace('["navy", "(A)"]', '["yes-subprocess navy", "(A)"]')
    got = _run([], script)
    assert got["heavy"] == ["httpx"]
    assert got["out"][3] == [1.0, 1.0] and judge_llm.calls["yes-subprocess navy"] == 1


def test_doctests() -> None:
    result = doctest.testmod(rewards)
    assert result.attempted > 0 and result.failed == 0
