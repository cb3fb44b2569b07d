"""The bench report from cell results: figures, definitions, rendering and the plot."""

from __future__ import annotations

import json

from zwz.loadtest.report import build_report, render_markdown, write_report


def _cell(mode, users, *, items, failed, latency, correct, scored, within_slo, window=2.0, calls=1, ttft=None):
    timed = {"p50": latency, "p90": latency, "p99": latency, "mean": latency, "min": latency, "max": latency}
    rows = [
        {"type": "POST", "name": mode, "requests": items * calls, "failures": failed, "timed": items * calls, **timed},
        {"type": "ITEM", "name": mode, "requests": items, "failures": failed, "timed": items - failed, **timed},
        {"type": "SCORE", "name": mode, "requests": scored, "failures": scored - correct, "timed": scored, **timed},
        {"type": "SLO", "name": mode, "requests": items, "failures": items - within_slo, "timed": items - failed},
        {"type": "CALLS", "name": mode, "requests": items - failed, "failures": 0, "timed": items - failed,
         "mean": calls},
    ]  # fmt: skip
    if ttft:
        rows.append({"type": "TTFT", "name": mode, "requests": items - failed, "failures": 0, "timed": items - failed,
                     **{k: ttft for k in timed}})
    errors = [{"type": "ITEM", "name": mode, "error": "HTTP 503: queue full", "count": failed}] if failed else []
    return {"mode": mode, "users": users, "window_s": window, "rows": rows, "errors": errors,
            "warmup": {"complete": True}, "cut_off_items": 0, "client_cpu_s": 0.1, "server": None}


def test_report_figures_and_definitions(tmp_path):
    cells = [
        _cell("single", 1, items=20, failed=0, latency=100, correct=6, scored=10, within_slo=20, ttft=40),
        _cell("agent", 1, items=4, failed=1, latency=1000, correct=3, scored=3, within_slo=1, calls=3),
    ]
    report = build_report(cells, {"model": "m", "slo_ms": 500, "duration_s": 2, "random_weights": True})
    single, agent = report["cells"]  # single pass first, whatever the order of the cells
    got = (single["mode"], single["items_per_s"], single["goodput_per_s"], single["accuracy"])
    assert got == ("single", 10, 10, 0.6)
    assert single["ttft_ms"]["p50"] == 40 and single["speed_items_per_s"] == 10
    assert (agent["answered"], agent["failed"], agent["failure_rate"]) == (3, 1, 0.25)
    assert agent["slo_attainment"] == 0.25 and agent["goodput_per_s"] == 0.5 and agent["model_calls_mean"] == 3
    assert agent["errors"] == [{"where": "ITEM agent", "error": "HTTP 503: queue full", "count": 1}]
    ratio = report["speed_ratio"][0]
    assert ratio["users"] == 1 and ratio["agent"]["mean"] == 10 and ratio["agent"]["throughput"] == 10 / 1.5
    assert report["failed_items"] == 1 and report["accuracy"]["agent"]["accuracy"] == 1.0

    paths = write_report(report, tmp_path)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["md"].read_text()
    assert "| agent | 1 | 4 | 1 | 100.0 (3/3) | 1000 |" in md
    assert "**goodput_per_s**" in md and "random" in md and "HTTP 503: queue full" in md
    assert json.loads(paths["json"].read_text())["plot"] == "accuracy_vs_speed.png"


def test_report_without_scored_answers_or_single_pass():
    report = build_report([_cell("regional", 2, items=3, failed=3, latency=10, correct=0, scored=0, within_slo=0)],
                          {"slo_ms": 100})
    cell = report["cells"][0]
    assert (cell["answered"], cell["failed"], cell["accuracy"], cell["latency_ms"]) == (0, 3, None, None)
    assert cell["goodput_per_s"] == 0 and cell["slo_attainment"] == 0 and report["speed_ratio"] == []
    assert "| regional | 2 | 3 | 3 | – (0/0) | – |" in render_markdown(report)
