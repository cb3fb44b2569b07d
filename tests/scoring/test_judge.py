"""The LLM judge against a real OpenAI-compatible HTTP server started on 127.0.0.1 for the test.

The server (tests/conftest.py's ``judge_llm``) stands in for an external judge LLM: it answers from the
response text it is asked about ("yes..." -> \\boxed{Yes}, "no..." -> \\boxed{No}, "garbage..." -> no box,
"error..." -> HTTP 500, "flaky..." -> 503 once then Yes, "badreq..." -> HTTP 400) and counts the calls.
"""

from __future__ import annotations

import asyncio
import doctest
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

import zwz.scoring.judge
from zwz.scoring import ScoreResult, make_benchmark_scorer, make_reward_fn
from zwz.scoring.judge import (
    JUDGE_PROMPT,
    Judge,
    JudgeError,
    format_judge_prompt,
    parse_verdict,
)
from zwz.serve_process import free_port

QUESTION = "What color is the valve handle?\nA. red\nB. blue\nC. yellow\nD. black"


@pytest.fixture()
def llm(judge_llm):
    return judge_llm


@pytest.fixture()
def base_url(judge_llm) -> str:
    return judge_llm.url


def make_judge(base_url: str, **kw: Any) -> Judge:
    kw.setdefault("retry_backoff", 0.0)
    return Judge(base_url, "judge-model", **kw)


def test_prompt_is_the_papers() -> None:
    lines = JUDGE_PROMPT.splitlines()
    assert lines[0] == (
        "Your task is to judge whether the response expresses the same meaning as the answer of a question."
    )
    assert lines[1:4] == ["The question is: {question}", "The answer is: {gt}", "The response is: {response}"]
    assert "Different phrasings of the same answer (e.g., 5 people vs five people)" in lines
    assert "Do NOT consider them equivalent if:" in lines
    assert lines[-1] == "Put your output within \\boxed{}."
    # values are inserted literally, even when they look like placeholders
    filled = format_judge_prompt("q {gt}", "g", "r {question}")
    assert "The question is: q {gt}\nThe answer is: g\nThe response is: r {question}" in filled


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{Yes}", True),
        ("\\boxed{no}", False),
        ("\\boxed{ YES }", True),
        ("\\boxed{\\text{No}}", False),
        ("\\boxed{No} wait, \\boxed{Yes}", True),  # last box wins
        ("**\\boxed{Yes.}**", True),
    ],
)
def test_parse_verdict(text: str, expected: bool) -> None:
    assert parse_verdict(text) is expected


NO_BOX = r"judge reply has no \\boxed\{Yes\|No\}: "


@pytest.mark.parametrize("text, message", [
    ("Yes", NO_BOX + "'Yes'"), ("", NO_BOX + "''"), ("\\boxed{Maybe}", r"judge verdict is neither Yes nor No: 'Maybe'"),
    ("\\boxed{Yes} then \\boxed{unsure}", r"judge verdict is neither Yes nor No: 'unsure'"),
    ("\\boxed{Yes", NO_BOX + r"'\\\\boxed\{Yes'"),
])
def test_parse_verdict_rejects(text: str, message: str) -> None:
    with pytest.raises(JudgeError, match=message):
        parse_verdict(text)


def test_verdicts_and_request_shape(base_url: str, llm) -> None:
    judge = make_judge(base_url, api_key="sk-test", max_tokens=64)
    assert judge.judge(QUESTION, "B", "yes-navy") is True
    assert judge.judge(QUESTION, "B", "no-red") is False
    sent = llm.requests[-1]
    assert sent["auth"] == "Bearer sk-test"
    assert sent["body"]["temperature"] == 0 and sent["body"]["model"] == "judge-model"
    assert sent["body"]["max_tokens"] == 64
    assert sent["body"]["messages"] == [{"role": "user", "content": format_judge_prompt(QUESTION, "B", "no-red")}]


def test_cache_hit_on_rerun(base_url: str, llm, tmp_path: Path) -> None:
    cache = tmp_path / "judge.jsonl"
    assert make_judge(base_url, cache_path=cache).judge(QUESTION, "B", "yes-cached") is True
    assert llm.calls["yes-cached"] == 1
    rerun = make_judge(base_url, cache_path=cache)  # a new process would build a new Judge
    assert rerun.cached(QUESTION, "B", "yes-cached") is True
    assert rerun.judge(QUESTION, "B", "yes-cached") is True
    assert llm.calls["yes-cached"] == 1 and rerun.calls == 0
    row = json.loads(cache.read_text().splitlines()[0])
    assert row["verdict"] is True and row["model"] == "judge-model" and "\\boxed{Yes}" in row["output"]
    # a different judge model is a different key
    assert Judge(base_url, "other-model", cache_path=cache).cached(QUESTION, "B", "yes-cached") is None


def test_torn_cache_line_is_skipped(base_url: str, tmp_path: Path) -> None:
    cache = tmp_path / "judge.jsonl"
    make_judge(base_url, cache_path=cache).judge(QUESTION, "B", "yes-torn")
    with cache.open("a") as fh:
        fh.write('{"key": "abc", "verd')
    assert make_judge(base_url, cache_path=cache).cached(QUESTION, "B", "yes-torn") is True


def test_garbage_reply_raises_and_is_not_cached(base_url: str, tmp_path: Path) -> None:
    cache = tmp_path / "judge.jsonl"
    judge = make_judge(base_url, cache_path=cache)
    with pytest.raises(JudgeError, match="boxed"):
        judge.judge(QUESTION, "B", "garbage-1")
    assert judge.cached(QUESTION, "B", "garbage-1") is None
    assert not cache.exists()


def test_server_error_raises_after_retries(base_url: str, llm) -> None:
    with pytest.raises(JudgeError, match="3 attempt"):
        make_judge(base_url, max_retries=2).judge(QUESTION, "B", "error-1")
    assert llm.calls["error-1"] == 3


def test_client_error_is_not_retried(base_url: str, llm) -> None:
    with pytest.raises(JudgeError, match="HTTP 400"):
        make_judge(base_url, max_retries=3).judge(QUESTION, "B", "badreq-1")
    assert llm.calls["badreq-1"] == 1


def test_transient_error_is_retried(base_url: str, llm) -> None:
    assert make_judge(base_url, max_retries=1).judge(QUESTION, "B", "flaky-1") is True
    assert llm.calls["flaky-1"] == 2


def test_unreachable_endpoint_raises() -> None:
    port = free_port()  # nothing listens there
    judge = Judge(f"http://127.0.0.1:{port}", "m", timeout=2, max_retries=1, retry_backoff=0)
    with pytest.raises(JudgeError, match="ConnectError"):
        judge.judge("q", "a", "r")


def test_async_and_batch(base_url: str, llm) -> None:
    judge = make_judge(base_url, concurrency=4)
    assert asyncio.run(judge.ajudge(QUESTION, "B", "yes-async")) is True
    triples = [(QUESTION, "B", f"yes-batch-{i % 3}") for i in range(6)] + [(QUESTION, "B", "no-batch")]
    assert judge.judge_many(triples) == [True] * 6 + [False]
    assert [llm.calls[f"yes-batch-{i}"] for i in range(3)] == [1, 1, 1]  # duplicates sent once
    with pytest.raises(JudgeError, match=r"judge reply has no \\boxed\{Yes\|No\}: 'I am not sure what to say\.'"):
        judge.judge_many([(QUESTION, "B", "yes-batch-0"), (QUESTION, "B", "garbage-batch")])

    async def inside_a_running_loop() -> list[bool]:
        return judge.judge_many([(QUESTION, "B", "no-in-loop")])

    assert asyncio.run(inside_a_running_loop()) == [False]


def test_judge_pickles(base_url: str) -> None:
    judge = make_judge(base_url)
    judge.judge(QUESTION, "B", "yes-pickle")
    clone = pickle.loads(pickle.dumps(judge))
    assert clone.cached(QUESTION, "B", "yes-pickle") is True
    assert clone.judge(QUESTION, "B", "no-pickle") is False


def test_scorers_fall_back_to_the_judge(base_url: str, llm, tmp_path: Path) -> None:
    scorer = make_benchmark_scorer(make_judge(base_url))
    results = scorer.score_many(
        ["B", "yes-scorer navy", "no-scorer red", "C"],
        ["B", "B", "B", "B"],
        questions=[QUESTION] * 4,
        options=[["red", "blue", "yellow", "black"]] * 4,
    )
    assert results == [
        ScoreResult(1.0, "rule"),
        ScoreResult(1.0, "judge"),
        ScoreResult(0.0, "judge"),
        ScoreResult(0.0, "rule"),
    ]
    # the judge sees the option text beside the gold letter
    assert "The answer is: B. blue" in llm.requests[-1]["body"]["messages"][0]["content"]
    with pytest.raises(JudgeError, match=r"judge reply has no \\boxed\{Yes\|No\}: 'I am not sure what to say\.'"):
        scorer.score("garbage-scorer", "blue", question="What color?")


def test_judge_sees_the_answer_after_a_lone_think_close(base_url: str, llm) -> None:
    """Qwen3 thinking replies carry only ``</think>``: the judge must get the final answer, not the thinking."""
    reply = "yes, it might be navy... or red?</think>no-after-think"
    assert make_reward_fn(make_judge(base_url)).score(reply, "blue", question="Colour?") == ScoreResult(0.0, "judge")
    assert llm.calls["no-after-think"] == 1
    sent = llm.requests[-1]["body"]["messages"][0]["content"]
    assert "The response is: no-after-think\n" in sent and "navy" not in sent


def test_doctests() -> None:
    assert doctest.testmod(zwz.scoring.judge).failed == 0
