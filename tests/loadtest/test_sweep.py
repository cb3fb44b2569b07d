"""Short real Locust runs against a live zwz server on the tiny model: every mode produces rows, failures are
counted, the report and the plot are written; plain ``locust -f`` runs the same users."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from zwz.cli import main
from zwz.loadtest.bench import run_sweep
from zwz.loadtest.report import build_report

pytestmark = pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                reason="Locust is not installed (pip install 'zwz[bench]')")
MODES = ["single", "regional", "agent", "attention_zoom"]


@pytest.fixture(scope="module")
def server(serve, tiny_models):
    with serve(tiny_models["qwen3_vl"]) as (url, app):
        yield url


def _tiny(*args):
    return ["--max-tokens", "4", "--max-pixels", str(128 * 128), "--agent-max-turns", "2", "--agent-fixed-turns", "1",
            "--agent-max-tokens", "4", *args]


def test_every_mode_at_every_level_produces_rows_and_a_report(server, zoomworld, tmp_path, row, capsys):
    out = tmp_path / "bench"
    rc = main(["bench", "--base-url", server, "--benchmark", str(zoomworld), "--modes", *MODES, "--users", "1", "2",
               "--duration", "1", "--warmup-items", "0", "--slo-ms", "5000", "--out", str(out), "--no-progress",
               *_tiny()])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "| mode | users | items | failed |" in printed and "agent / single" in printed

    report = json.loads((out / "report.json").read_text())
    assert [(c["mode"], c["users"]) for c in report["cells"]] == [(m, u) for m in MODES for u in (1, 2)]
    for summary in report["cells"]:
        cell = json.loads((out / "cells" / f"{summary['mode']}-u{summary['users']}.json").read_text())
        item, post = row(cell, "ITEM"), row(cell, "POST")
        assert item["requests"] > 0 and item["failures"] == 0 and summary["failed"] == 0, cell["errors"]
        assert post["requests"] == item["requests"]  # server-side modes: one HTTP request per item
        assert item["p50"] <= item["p90"] <= item["p99"] <= round(item["max"])  # percentiles: whole ms
        assert row(cell, "TTFT")["p50"] <= item["p50"] + 1  # streamed: the first token comes before the end
        assert row(cell, "SLO")["requests"] == item["requests"]
        assert row(cell, "CALLS")["mean"] == (2 if summary["mode"] in ("agent", "attention_zoom") else 1)
        decided = sum(r["requests"] for r in cell["rows"] if r["type"] in ("SCORE", "UNSCORED"))
        assert decided == item["requests"]  # every answer is scored or counted as undecided
        assert summary["items_per_s"] > 0 and summary["speed_items_per_s"] > 0
        # The server counted the same requests (its mode label; regional is a single pass for it).
        server_mode = {"regional": "single"}.get(summary["mode"], summary["mode"])
        assert cell["server"]["by_mode"][server_mode]["requests"] == item["requests"]  # no warm-up: exactly
    assert {e["users"] for e in report["speed_ratio"]} == {1, 2}
    assert all(e["agent"]["mean"] > 0 for e in report["speed_ratio"])
    assert (out / "accuracy_vs_speed.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert "## Speed relative to the single pass" in md and "![accuracy vs speed](accuracy_vs_speed.png)" in md


def test_client_side_zoom_modes(server, tiny_plan, tmp_path, row):
    # No warm-up: an item in flight when a warm-up ends has made some of its calls before the window.
    plan = tiny_plan(server, modes=["agent", "attention_zoom"], users=[1], warmup_items=0)
    plan = replace(plan, settings=replace(plan.settings, agent_side="client"))
    agent, zoom = run_sweep(plan, tmp_path, progress=False)
    items = row(agent, "ITEM")["requests"]
    assert items > 0 and row(agent, "ITEM")["failures"] == 0, agent["errors"]
    assert row(agent, "POST", "agent:call")["requests"] == 2 * items == row(agent, "CALLS")["mean"] * items
    items = row(zoom, "ITEM")["requests"]
    assert items > 0 and row(zoom, "ITEM")["failures"] == 0, zoom["errors"]
    assert row(zoom, "POST", "attention_zoom:map")["requests"] == items
    assert row(zoom, "POST", "attention_zoom:answer")["requests"] == items
    assert row(zoom, "TTFT")["requests"] == items


def test_failed_requests_are_counted_not_scored(server, tiny_plan, tmp_path, row):
    plan = tiny_plan(server, model="no-such-model", users=[2], duration_s=1.0, warmup_items=0)
    (cell,) = run_sweep(plan, tmp_path, progress=False)
    item = row(cell, "ITEM")
    assert item["requests"] > 0 and item["failures"] == item["requests"] and item["timed"] == 0
    assert row(cell, "POST")["failures"] == item["requests"]
    assert row(cell, "SLO")["failures"] == item["requests"]
    assert not any(r["type"] in ("SCORE", "UNSCORED", "TTFT") for r in cell["rows"])
    (error,) = [e for e in cell["errors"] if e["type"] == "ITEM"]
    assert error["count"] == item["requests"] and error["error"].startswith("HTTP 404: the model 'no-such-model'")
    assert cell["server"]["errors"] == {"404": item["requests"]}  # the server saw exactly these

    summary = build_report([cell], {"slo_ms": plan.slo_ms})["cells"][0]
    assert summary["failed"] == summary["items"] and summary["accuracy"] is None and summary["goodput_per_s"] == 0


def test_unknown_model_stops_the_cli_in_one_line(server, zoomworld, tmp_path, capsys):
    rc = main(["bench", "--base-url", server, "--model", "nope", "--benchmark", str(zoomworld), "--out",
               str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "unknown model 'nope'" in err[0] and "it serves: qwen3_vl" in err[0]


def test_plain_locust_runs_the_same_users(server, zoomworld, tmp_path):
    import zwz.loadtest

    locustfile = Path(zwz.loadtest.__file__).with_name("locustfile.py")
    stats = tmp_path / "stats"
    # --stop-timeout: items in flight at the time limit finish and count (each user answers at least one).
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", "2", "-r", "2", "-t", "3s",
           "--stop-timeout", "60", "--host", server, "--json-file", str(stats), "--only-summary", "--zwz-benchmark", str(zoomworld),
           "--zwz-max-tokens", "4", "--zwz-max-pixels", str(128 * 128), "SingleUser", "RegionalUser"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = {(r["method"], r["name"]): r for r in json.loads(Path(f"{stats}.json").read_text())}
    for mode in ("single", "regional"):
        assert found[("ITEM", mode)]["num_requests"] > 0 and found[("ITEM", mode)]["num_failures"] == 0
        assert ("SLO", mode) in found and ("CALLS", mode) in found and ("POST", mode) in found


@pytest.fixture(scope="module")
def flaky_server(run_app, tiny_models):
    """A zwz server whose every second chat request gets an injected 400; yields (url, counts)."""
    from fastapi.responses import JSONResponse

    from zwz.server.api.app import create_app
    from zwz.server.launch import build_engine
    from zwz.server.settings import ServerSettings

    settings = ServerSettings(model=str(tiny_models["qwen3_vl"]), engine="transformers")
    app = create_app(settings, build_engine(settings))
    counts = {"chat": 0, "injected": 0}

    @app.middleware("http")
    async def every_second_chat_fails(request, call_next):
        if request.url.path == "/v1/chat/completions":
            counts["chat"] += 1
            if counts["chat"] % 2 == 0:
                counts["injected"] += 1
                error = {"message": "injected failure", "type": "invalid_request_error", "param": None, "code": None}
                return JSONResponse({"error": error}, status_code=400)
        return await call_next(request)

    with run_app(app) as url:
        yield url, counts


def test_injected_errors_are_counted_exactly(flaky_server, tiny_plan, tmp_path, row):
    url, counts = flaky_server
    (cell,) = run_sweep(tiny_plan(url, users=[2], duration_s=1.5, warmup_items=0), tmp_path, progress=False)
    item, post = row(cell, "ITEM"), row(cell, "POST")
    # No warm-up and a graceful drain: Locust's final statistics hold every request the server saw.
    assert post["requests"] == counts["chat"] and counts["injected"] > 0
    assert post["failures"] == item["failures"] == counts["injected"]
    assert item["requests"] - item["failures"] == item["timed"] == row(cell, "CALLS")["requests"]
    assert row(cell, "SLO")["requests"] == item["requests"]
    assert {e["error"] for e in cell["errors"] if e["type"] == "ITEM"} == {"HTTP 400: injected failure"}
    summary = build_report([cell], {"slo_ms": 5000})["cells"][0]
    assert summary["failed"] == counts["injected"] and summary["failure_rate"] == pytest.approx(1 / 2, abs=0.2)
