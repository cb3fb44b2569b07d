"""The ``zwz bench`` sweep: Locust load tests of the answering modes over concurrency levels, accuracy and speed
from the same requests (paper Fig. 5 as a load test), with latency percentiles, time to first token, throughput
and goodput under a latency objective. The command line is :mod:`zwz.loadtest.cli`.

    plan = SweepPlan(base_url="http://127.0.0.1:8000", model="", benchmark="runs/bench/zoomworld",
                     modes=["single", "agent"], users=[1, 2, 4], duration_s=30, slo_ms=2000)
    report = bench(plan, "runs/bench")

Each (mode, users) cell: the users warm up (``warmup_items`` each, untimed), then replay the items closed-loop
for ``duration_s`` seconds; the zoom modes run inside the zwz server (``agent_side="server"``, ``zwz_mode``) or
are driven from the client (``"client"``, any OpenAI-compatible endpoint for the agent). Locust runs headless
in a worker subprocess (``python -m zwz.loadtest.worker``), since its gevent monkey-patching must stay out of
this process; the report is built from its exact final statistics.

Writes under the output folder: ``plan.json``, ``cells/<mode>-u<N>.json`` (every Locust row, with ms
histograms), ``worker.log``, ``report.json``, ``report.md`` and ``accuracy_vs_speed.png``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zwz.analytics.eval.client import Endpoint, EvalError
from zwz.analytics.eval.runner import EvalSettings
from zwz.loadtest.plan import SweepPlan
from zwz.loadtest.report import build_report, summarize_cell, write_report

logger = logging.getLogger(__name__)

__all__ = ["BenchError", "LOCUST_HINT", "bench", "preflight", "require_locust", "run_sweep"]

LOCUST_HINT = "zwz bench needs Locust: pip install 'zwz[bench]' (or pip install locust)"


class BenchError(EvalError):
    """A sweep cannot start or go on; the message is one line for the CLI."""


def require_locust() -> str:
    """Locust's version; an ImportError that says what to install when it is missing."""
    if importlib.util.find_spec("locust") is None:
        raise ImportError(LOCUST_HINT)
    from importlib.metadata import version

    return version("locust")


async def preflight(plan: SweepPlan) -> tuple[str, dict[str, Any]]:
    """Reachability, key and model (the only served one when none was named); ``/health`` of a zwz server."""
    async with Endpoint(plan.base_url, plan.model or None, api_key=plan.api_key, timeout=30.0) as endpoint:
        health = await endpoint.preflight()
        zoom_modes = {"agent", "attention_zoom"} & set(plan.modes)
        if zoom_modes and plan.settings.agent_side == "server" and "engine" not in health:
            raise BenchError(f"{endpoint.root} is not a zwz server: the server-side {', '.join(sorted(zoom_modes))} "
                             "mode(s) need one (use --agent-side client, or drop those modes)")
        if "attention_zoom" in plan.modes and plan.settings.agent_side == "client":
            await endpoint.check_attention_endpoint()
        assert endpoint.model is not None
        return endpoint.model, health


def _cell_line(summary: dict[str, Any]) -> str:
    lat = summary["latency_ms"] or {}
    fmt = lambda v: "–" if v is None else f"{v:.0f} ms"  # noqa: E731
    return (f"{summary['mode']:>14} ×{summary['users']:<3} {summary['answered']:>5} answered, "
            f"{summary['failed']} failed; {summary['items_per_s'] or 0:.2f} items/s, "
            f"p50 {fmt(lat.get('p50'))}, p99 {fmt(lat.get('p99'))}")


def run_sweep(plan: SweepPlan, out_dir: str | Path, *, progress: bool = True, log_level: str = "warning",
              startup_timeout: float = 120.0) -> list[dict[str, Any]]:
    """Run every cell of ``plan`` in a Locust worker subprocess; return the cell results (also under ``out/cells``).

    Raises :class:`BenchError` when the worker fails; the cells finished before stay on disk.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    for stale in cells_dir.glob("*.json"):  # a rerun into the same folder must not mix in old cells
        stale.unlink()
    plan_path = plan.write(out / "plan.json")
    cells = plan.cells()
    per_cell = plan.warmup_timeout_s + plan.duration_s + 2 * plan.drain_timeout_s + 10
    budget = startup_timeout + per_cell * len(cells)
    log_path = out / "worker.log"
    cmd = [sys.executable, "-m", "zwz.loadtest.worker", str(plan_path), str(out), "--log-level", log_level]
    results: list[dict[str, Any]] = []
    bar = tqdm(total=len(cells) * plan.duration_s, unit="s", disable=not (progress and sys.stderr.isatty()),
               dynamic_ncols=True,
               bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
        watchdog = threading.Timer(budget, proc.kill)
        watchdog.daemon = True
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    logger.debug("worker: %s", line.rstrip())
                    continue
                done_s = len(results) * plan.duration_s
                if event["event"] == "tick":
                    bar.set_description_str(f"{event['cell']} {event['phase']}")
                    if event["phase"] == "run":
                        bar.update(done_s + min(event["elapsed"], plan.duration_s) - bar.n)
                elif event["event"] == "done":
                    results.append(json.loads(Path(event["path"]).read_text(encoding="utf-8")))
                    bar.update(len(results) * plan.duration_s - bar.n)
                    finished = _cell_line(summarize_cell(results[-1], plan.slo_ms))
                    if progress:
                        bar.write(finished, file=sys.stderr)
                    else:
                        logger.info(finished)
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            watchdog.cancel()
            bar.close()
    if rc != 0:
        tail = [ln for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        why = "it ran past its time budget" if rc == -9 else (tail[-1] if tail else f"exit status {rc}")
        raise BenchError(f"the Locust worker failed after {len(results)}/{len(cells)} cells: {why} (see {log_path})")
    return results


def bench(plan: SweepPlan, out_dir: str | Path, *, benchmark_name: str = "", progress: bool = True,
          log_level: str = "warning") -> dict[str, Any]:
    """Preflight, sweep and report (``report.json``, ``report.md``, ``accuracy_vs_speed.png`` under ``out_dir``)."""
    locust_version = require_locust()
    model, health = asyncio.run(preflight(plan))
    plan.model = model
    out = Path(out_dir)
    meta: dict[str, Any] = {
        "model": model, "endpoint": plan.base_url, "benchmark": benchmark_name or plan.benchmark,
        "random_weights": health.get("random_weights"), "engine": health.get("engine"),
        "duration_s": plan.duration_s, "slo_ms": plan.slo_ms, "users": plan.users, "modes": plan.modes,
        "settings": {**vars(plan.settings), "stream": plan.stream, "warmup_items": plan.warmup_items,
                     "judge": plan.judge.model if plan.judge else None},
        "locust": locust_version,
    }
    results: list[dict[str, Any]] = []
    report: dict[str, Any] | None = None
    try:
        results = run_sweep(plan, out, progress=progress, log_level=log_level)
    finally:  # an interrupted or failed sweep still reports the cells it finished
        if not results:
            results = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((out / "cells").glob("*.json"))]
        if results:
            meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            report = build_report(results, meta)
            write_report(report, out)
    if report is None:
        raise BenchError("the sweep finished no cell")
    return report
