"""``benchmarks/bench_soak.py`` against a live tiny server: one cycle of its traffic mix, counted exactly on the
client and in the server's own metrics, with the table and the verdict printed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_soak.py"


@pytest.mark.slow  # a real `zwz serve` subprocess and 16 requests, agent and maps included
def test_one_cycle_is_counted_and_judged(tiny_models, tmp_path):
    out = tmp_path / "soak"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--model", str(tiny_models["qwen3_vl"]), "--seconds", "900",
         "--max-requests", "16", "--clients", "2", "--interval-s", "5", "--max-tokens", "4", "--out", str(out)],
        capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| interval | t s | requests | statuses | p50 ms | p99 ms | RSS MB median |" in proc.stdout
    assert "\nverdict: " in proc.stdout
    result = json.loads((out / "summary.json").read_text())

    # The 16 requests are one pass over the cycle, whichever client sent which.
    assert result["sent"] == {"single": 5, "stream": 3, "bad": 2, "disconnect": 2, "agent": 1, "chat_map": 1,
                              "attention_map": 1, "attention_zoom": 1}
    by_kind = Counter()
    for row in result["rows"]:
        by_kind.update(row["by_kind"])
    assert sum(row["requests"] for row in result["rows"]) == 16
    # The first two bad requests of the rotation: an unknown model, then a temperature out of range.
    assert dict(by_kind) == {"single:200": 5, "stream:200": 3, "disconnect:200": 2, "agent:200": 1,
                             "chat_map:200": 1, "attention_map:200": 1, "attention_zoom:200": 1,
                             "bad:400": 1, "bad:404": 1}

    # The server saw the same: each zoom kind once, the two refusals, nothing else failed.
    server = result["server"]
    answered = {mode: int(d["requests"]) for mode, d in server["by_mode"].items()}
    assert {m: answered.get(m) for m in ("agent", "attention_zoom", "attention_map")} == {
        "agent": 1, "attention_zoom": 1, "attention_map": 1}
    # single: 5 answers, 3 streams, the chat with a map, and each dropped stream that finished before it noticed
    assert 9 <= answered["single"] <= 11
    assert {s: int(c) for s, c in server["errors"].items()} == {"400": 1, "404": 1}

    verdict = result["verdict"]
    assert verdict["server_errors"] == 0 and verdict["unexpected"] == 0
    assert verdict["checks"]["in-flight back to 0"] is True and verdict["checks"]["queue back to 0"] is True
    assert result["after"]["rss_mb"] > 0 and all(row["rss_median_mb"] > 0 for row in result["rows"])  # found, read
    assert "PASS: no server errors (5xx)" in proc.stdout


def _verdict_of(medians: list[float], warmup: int) -> dict:
    import importlib.util

    sys.path.insert(0, str(BENCH.parent))  # the script's own folder, as when it runs (its helper modules)
    try:
        spec = importlib.util.spec_from_file_location("bench_soak_under_test", BENCH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH.parent))
        sys.modules.pop("bench_soak_under_test", None)
    rows = [{"statuses": {"200": 10}, "unexpected_count": 0, "rss_median_mb": m} for m in medians]
    return module.verdict({"rows": rows, "after": {"in_flight": 0, "queue": 0}}, warmup)


def test_rss_is_judged_against_the_last_warm_up_interval():
    # a slow first minute, then a plateau: flat after a longer warm-up, not after one interval
    medians = [500.0, 600.0, 640.0, 630.0, 645.0]
    one = _verdict_of(medians, warmup=1)
    assert one["checks"]["RSS within 10% of the warm-up's"] is False and round(one["rss_growth"], 2) == 0.29
    three = _verdict_of(medians, warmup=3)
    assert three["checks"]["RSS within 10% of the warm-up's"] is True and three["passed"] is True
    assert round(three["rss_growth"], 4) == round(645 / 640 - 1, 4)
    assert _verdict_of(medians, warmup=5)["checks"]["RSS within 10% of the warm-up's"] is None  # nothing after it
