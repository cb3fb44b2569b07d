"""README claims about the command line that no other test checked: plain ``zwz serve`` (no ``--model``) in a
real subprocess, ``--served-model-name`` and ``ZWZ_<NAME>`` variables taking effect there, every serve flag
being a setting, ``batch_wait_ms``, ``zwz eval --judge-url`` against a stand-in for a third-party judge, and
``zwz bench --no-stream`` / ``--drain-timeout``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from zwz.cli import build_parser, main
from zwz.defaults import SERVE_STARTUP_TIMEOUT_S
from zwz.serve_process import free_port, stop_process, wait_until_up

MODEL = "qwen3_vl"
needs_locust = pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                  reason="Locust is not installed (pip install 'zwz[bench]')")


def samples(url: str) -> dict[str, float]:
    """/metrics samples by name, labels (other than histogram buckets) folded into the name."""
    text = httpx.get(url + "/metrics").text
    return {s.name + "".join(f"[{v}]" for _, v in sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if "le" not in s.labels}


def chat_body(model: str = MODEL, text: str = "hi", max_tokens: int = 2) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}


# -- zwz serve: flags, variables, the embedded default ------------------------------------------------------------
def _serve_parser():
    parser = build_parser()
    action = next(a for a in parser._subparsers._group_actions if a.dest == "command")  # argparse's own table
    return action.choices["serve"]


def test_every_serve_flag_is_a_setting_and_reads_its_variable(monkeypatch):
    from zwz.server.cli import settings_from_args
    from zwz.server.settings import ServerSettings

    dests = {a.dest for a in _serve_parser()._actions if a.dest != "help"}
    assert dests - set(ServerSettings.model_fields) == {"log_level"}
    # The limits the README's Configuration lists (and the error table's --max-body-bytes) are flags too.
    readme_limits = {"max_body_bytes", "max_images_per_request", "max_image_pixels", "max_queue", "max_batch_size",
                     "batch_wait_ms", "default_max_tokens", "max_model_len"}
    assert readme_limits - dests == set()
    monkeypatch.setenv("ZWZ_MAX_QUEUE", "7")
    monkeypatch.setenv("ZWZ_BATCH_WAIT_MS", "2.5")
    monkeypatch.setenv("ZWZ_LOG_LEVEL", "debug")
    args = build_parser().parse_args(["serve"])
    settings = settings_from_args(args)
    assert (settings.max_queue, settings.batch_wait_ms, args.log_level) == (7, 2.5, "debug")
    flagged = settings_from_args(build_parser().parse_args(["serve", "--max-queue", "3", "--max-body-bytes", "99"]))
    assert (flagged.max_queue, flagged.max_body_bytes) == (3, 99)  # a flag beats the variable


def test_plain_zwz_serve_serves_the_trained_default_with_its_variables(tmp_path):
    """``zwz serve`` with no ``--model``: zwz-nano, the model shipped in the package, served under its folder's
    name with ``/health`` saying it is trained and on what; ZWZ_PORT, ZWZ_API_KEY, ZWZ_MAX_BODY_BYTES and
    ZWZ_MAX_MODEL_LEN configure it."""
    from zwz.server.launch import embedded_default_model

    log = tmp_path / "serve.log"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZWZ_")} | {
        "ZWZ_PORT": str(port), "ZWZ_API_KEY": "k", "ZWZ_MAX_BODY_BYTES": "2000", "ZWZ_MAX_MODEL_LEN": "1000"}
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "zwz.cli", "serve"], stdout=fh, stderr=subprocess.STDOUT,
                                env=env)
    url = f"http://127.0.0.1:{port}"  # ZWZ_HOST unset: the default loopback interface
    try:
        wait_until_up(url + "/health", proc, timeout=SERVE_STARTUP_TIMEOUT_S + 120, log_path=log)
        health = httpx.get(url + "/health").json()  # open without the key
        assert {k: health[k] for k in ("status", "engine", "model", "random_weights")} == {
            "status": "ok", "engine": "transformers", "model": "zwz-nano", "random_weights": False}
        assert "R2I items distilled by `zwz train nano`" in health["trained_on"]
        refused = httpx.get(url + "/v1/models")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        key = {"Authorization": "Bearer k"}
        cards = httpx.get(url + "/v1/models", headers=key).json()["data"]
        assert [(c["id"], c["max_model_len"]) for c in cards] == [("zwz-nano", 1000)]
        unknown = httpx.post(url + "/v1/chat/completions", headers=key, json=chat_body("tiny-qwen3-vl"))
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
        big = httpx.post(url + "/v1/chat/completions", headers=key, json=chat_body("zwz-nano", "x" * 3000))
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
        ok = httpx.post(url + "/v1/chat/completions", headers=key, json=chat_body("zwz-nano"), timeout=60)
        assert ok.status_code == 200 and 1 <= ok.json()["usage"]["completion_tokens"] <= 2
    finally:
        stop_process(proc)
    text = log.read_text()
    assert "RANDOM weights" not in text and str(embedded_default_model()) in text, text[-2000:]


# -- batch_wait_ms, and zwz bench on a server that holds every batch open --------------------------------------
WAIT_MS = 3000


@pytest.fixture(scope="module")
def waiting_server(serve, tiny_models) -> Iterator[str]:
    """A server whose engine waits ``batch_wait_ms`` for more requests before each batch starts."""
    with serve(tiny_models[MODEL], batch_wait_ms=WAIT_MS) as (url, _):
        yield url


def test_batch_wait_ms_lets_a_later_request_join_the_batch(waiting_server):
    url = waiting_server
    before = samples(url)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.post, url + "/v1/chat/completions", json=chat_body(), timeout=120)
        deadline = time.monotonic() + 60
        while samples(url)["zwz_requests_in_flight"] < 1:  # the first request is in the server
            assert time.monotonic() < deadline, "the first request never arrived"
            time.sleep(0.02)
        # It is prepared and taken by the scheduler within milliseconds; the second request comes well after,
        # yet within the wait, so both start in one batch.
        time.sleep(0.5)
        second = pool.submit(httpx.post, url + "/v1/chat/completions", json=chat_body(), timeout=120)
        replies = [first.result(), second.result()]
    assert [r.status_code for r in replies] == [200, 200]
    after = samples(url)
    assert after["zwz_batch_size_count"] - before.get("zwz_batch_size_count", 0) == 1
    assert after["zwz_batch_size_sum"] - before.get("zwz_batch_size_sum", 0) == 2


@pytest.fixture(scope="module")
def benchmark_file(tmp_path_factory) -> Path:
    """Two open questions on small images, in the ZoomBench JSONL layout (image paths relative to the file)."""
    folder = tmp_path_factory.mktemp("bench-items")
    rows = []
    for i, (colour, answer) in enumerate((((200, 30, 30), "red"), ((30, 30, 200), "blue"))):
        Image.new("RGB", (64, 64), colour).save(folder / f"item{i}.png")
        rows.append({"id": f"item{i}", "image": f"item{i}.png", "prompt": "What colour is the square?",
                     "answer": answer, "dimension": "color"})
    path = folder / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


BENCH = ["--modes", "single", "--users", "1", "--duration", "1", "--warmup-items", "0", "--slo-ms", "60000",
         "--max-tokens", "2", "--limit", "1", "--no-progress"]


@needs_locust
def test_bench_no_stream_drains_the_item_in_flight(waiting_server, benchmark_file, tmp_path, capsys):
    """The window closes with the last item in flight (it takes over ``WAIT_MS``, the window 1 s); not streamed:
    the answer is one JSON body and there is no time to first token."""
    out = tmp_path / "bench"
    assert main(["bench", "--base-url", waiting_server, "--benchmark", str(benchmark_file), "--out", str(out),
                 "--no-stream", "--drain-timeout", "60", *BENCH]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["stream"] is False
    (cell,) = report["cells"]
    assert (cell["items"], cell["answered"], cell["failed"], cell["cut_off_items"]) == (1, 1, 0, 0)
    assert cell["ttft_ms"] is None and cell["window_s"] * 1e3 >= WAIT_MS
    rows = json.loads((out / "cells" / "single-u1.json").read_text())["rows"]
    assert {r["type"] for r in rows} >= {"POST", "ITEM"} and "TTFT" not in {r["type"] for r in rows}
    assert "1 items still in flight" not in (out / "report.md").read_text()
    capsys.readouterr()


@needs_locust
def test_bench_drain_timeout_cuts_off_longer_items_and_reports_them(waiting_server, benchmark_file, tmp_path,
                                                                    capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--base-url", waiting_server, "--benchmark", str(benchmark_file), "--out", str(out),
                 "--drain-timeout", "0.5", *BENCH]) == 0
    (cell,) = json.loads((out / "report.json").read_text())["cells"]
    assert (cell["answered"], cell["cut_off_items"]) == (0, 1)
    assert "single ×1: 1 items still in flight at the drain timeout were cut off" in (out / "report.md").read_text()
    capsys.readouterr()


# -- zwz eval --judge-url ------------------------------------------------------------------------------------------
def judge_stand_in(calls: list[dict]):
    """A stand-in for a third-party judge LLM (OpenAI-compatible): Yes when the reference answer is "red"."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        calls.append({"body": body, "auth": request.headers.get("authorization")})
        verdict = "Yes" if "\nThe answer is: red\n" in body["messages"][-1]["content"] else "No"
        return JSONResponse({"id": "judge-1", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": f"\\boxed{{{verdict}}}"}}]})

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    return app


@pytest.fixture(scope="module")
def server(serve, tiny_models) -> Iterator[str]:
    with serve(tiny_models[MODEL]) as (url, _):
        yield url


def test_eval_judge_url_decides_what_the_rules_cannot(server, run_app, benchmark_file, tmp_path, capsys):
    calls: list[dict] = []
    out = tmp_path / "eval"
    with run_app(judge_stand_in(calls)) as judge_url:  # the README's form: the root, without /v1
        assert main(["eval", "--base-url", server, "--benchmark", str(benchmark_file), "--modes", "single",
                     "--out", str(out), "--judge-url", judge_url, "--judge-model", "judge-8b", "--judge-api-key",
                     "jk", "--max-tokens", "4", "--warmup", "0", "--concurrency", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    predictions = {r["id"]: r for r in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    assert {i: (r["decided_by"], r["score"]) for i, r in predictions.items()} == {
        "item0": ("judge", 1.0), "item1": ("judge", 0.0)}
    assert len(calls) == 2 and {c["auth"] for c in calls} == {"Bearer jk"}
    assert {c["body"]["model"] for c in calls} == {"judge-8b"}
    for call in calls:
        prompt = call["body"]["messages"][-1]["content"]
        question = re.search(r"^The question is: (.*)$", prompt, re.M).group(1)
        response = re.search(r"^The response is: (.*)$", prompt, re.M).group(1)
        assert "What colour is the square?" in question
        assert response in {r["prediction"].strip() for r in predictions.values()}
    single = json.loads((out / "report.json").read_text())["modes"]["single"]
    assert (single["accuracy"], single["n_decided"], single["n_unjudged"], single["n_errors"]) == (0.5, 2, 0, 0)
    assert single["decided_by"] == {"rule": 0, "judge": 2, "unjudged": 0}
    assert len((out / "judge_cache.jsonl").read_text().splitlines()) == 2
    assert "accuracy 50.0 [9.5, 90.5]% (2/2 decided, 0 unjudged, 0 errors)" in printed  # Wilson 95% interval
