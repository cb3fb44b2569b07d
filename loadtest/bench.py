"""``zwz bench``: Locust load tests of the answering modes over concurrency levels: accuracy and speed from the
same requests (paper Fig. 5 as a load test), with latency percentiles, time to first token, throughput and
goodput under a latency objective.

    zwz bench --serve --zoomworld 24 --modes single agent attention-zoom regional --users 1 2 4 \\
        --duration 30 --slo-ms 2000 --max-pixels 200704 --agent-fixed-turns 2 --out runs/bench
    zwz bench --base-url http://gpu-box:8000 --model ZwZ-8B --benchmark ZoomBench.parquet \\
        --modes single agent --users 1 8 32 --duration 120 --slo-ms 10000 --out runs/bench-8b

``--serve [MODEL_DIR]`` starts ``zwz serve`` (the embedded tiny model without a folder) on a free port for the
sweep. Each (mode, users) cell: the users warm up (``--warmup-items`` each, untimed), then replay the items
closed-loop for ``--duration`` seconds; the zoom modes run inside the zwz server (``--agent-side server``,
``zwz_mode``) or are driven from the client (``--agent-side client``, any OpenAI-compatible endpoint for the
agent). Locust runs headless in a worker subprocess (``python -m zwz.loadtest.worker``), since its gevent
monkey-patching must stay out of this process; the report is built from its exact final statistics.

Writes under ``--out``: ``plan.json``, ``cells/<mode>-u<N>.json`` (every Locust row, with ms histograms),
``worker.log``, ``report.json``, ``report.md`` and ``accuracy_vs_speed.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zwz.analytics.eval.client import Endpoint, EvalError
from zwz.analytics.eval.runner import EvalSettings
from zwz.loadtest.plan import MODES, JudgeSpec, SweepPlan, normalize_modes
from zwz.loadtest.report import build_report, ratio_table, results_table, summarize_cell, write_report

logger = logging.getLogger(__name__)

__all__ = ["BenchError", "bench", "preflight", "register", "run", "run_sweep"]

LOCUST_HINT = "zwz bench needs Locust: pip install 'zwz[bench]' (or pip install locust)"


class BenchError(EvalError):
    """A sweep cannot start or go on; the message is one line for the CLI."""


def _require_locust() -> str:
    if importlib.util.find_spec("locust") is None:
        raise ImportError(LOCUST_HINT)
    from importlib.metadata import version

    return version("locust")


async def preflight(plan: SweepPlan) -> tuple[str, dict[str, Any]]:
    """Reachability, key and model (the only served one when none was named); ``/health`` of a zwz server."""
    async with Endpoint(plan.base_url, plan.model or None, api_key=plan.api_key, timeout=30.0) as endpoint:
        health = await endpoint.preflight()
        zoom_modes = {"agent", "attention-zoom"} & set(plan.modes)
        if zoom_modes and plan.settings.agent_side == "server" and "engine" not in health:
            raise BenchError(f"{endpoint.root} is not a zwz server: the server-side {', '.join(sorted(zoom_modes))} "
                             "mode(s) need one (use --agent-side client, or drop those modes)")
        if "attention-zoom" in plan.modes and plan.settings.agent_side == "client":
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
    locust_version = _require_locust()
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


# ---------------------------------------------------------------------------------------------------- CLI
def register(subparsers) -> None:
    from zwz.analytics.eval.evaluation import parse_image_size

    p = subparsers.add_parser("bench", help="Locust load test: accuracy vs speed of the modes over concurrency",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--base-url", help="OpenAI-compatible endpoint (http://host:port or .../v1)")
    where.add_argument("--serve", nargs="?", const="", metavar="MODEL_DIR",
                       help="start `zwz serve` for the sweep (the embedded tiny model without MODEL_DIR)")
    p.add_argument("--model", help="served model name (default: the endpoint's only model)")
    p.add_argument("--api-key", help="bearer key of the endpoint")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--benchmark", help="ZoomBench-format parquet / JSONL / JSON file or folder")
    data.add_argument("--zoomworld", type=int, metavar="N", help="generate (and cache under --out) N ZoomWorld items")
    p.add_argument("--seed", type=int, default=0, help="ZoomWorld seed")
    p.add_argument("--zoomworld-size", type=parse_image_size, default=(1536, 1152), metavar="WxH", help="ZoomWorld image size")
    p.add_argument("--limit", type=int, default=None, help="only the first N items")
    p.add_argument("--modes", nargs="+", default=["single", "agent"], metavar="MODE",
                   help=f"of {', '.join(MODES)} (default: single agent)")
    p.add_argument("--users", nargs="+", type=int, default=[1, 2, 4], metavar="N",
                   help="concurrency levels: closed-loop users per cell (default: 1 2 4)")
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds per cell (default 30)")
    p.add_argument("--slo-ms", type=float, default=2000.0,
                   help="latency objective per item for goodput (default 2000 ms)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--max-tokens", type=int, default=64, help="answer tokens (single, regional, attention-zoom)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-pixels", type=int, default=None,
                   help="image pixel budget per request (mm_processor_kwargs; vLLM and zwz)")
    p.add_argument("--agent-max-turns", type=int, default=20, help="agent: model calls at most (Qwen-Agent: 20)")
    p.add_argument("--agent-fixed-turns", type=int, default=0,
                   help="agent: zoom this many times even when the model does not ask (timing harness)")
    p.add_argument("--agent-max-tokens", type=int, default=512, help="agent: tokens per model call")
    p.add_argument("--agent-side", choices=["server", "client"], default="server",
                   help="run the agent and attention-zoom modes inside the zwz server (default) or from the client")
    p.add_argument("--no-stream", action="store_true", help="non-streaming requests (no time to first token)")
    p.add_argument("--warmup-items", type=int, default=1, help="untimed items per user before each cell (default 1)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per HTTP request")
    p.add_argument("--drain-timeout", type=float, default=120.0,
                   help="seconds the items in flight at the end of a cell may take to finish")
    p.add_argument("--judge-url", help="OpenAI-compatible endpoint of the LLM judge (App. 10 prompt)")
    p.add_argument("--judge-model")
    p.add_argument("--judge-api-key")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=run)


def _plan_from_args(args: argparse.Namespace, base_url: str, benchmark: str) -> SweepPlan:
    settings = EvalSettings(max_tokens=args.max_tokens, temperature=args.temperature, max_pixels=args.max_pixels,
                            agent_max_turns=args.agent_max_turns, agent_fixed_turns=args.agent_fixed_turns,
                            agent_max_tokens=args.agent_max_tokens, agent_side=args.agent_side)
    judge = None
    if args.judge_url:
        judge = JudgeSpec(args.judge_url, args.judge_model, args.judge_api_key,
                          cache_path=str(Path(args.out) / "judge_cache.jsonl"))
    return SweepPlan(base_url=base_url, model=args.model or "", benchmark=benchmark, modes=args.modes,
                     users=args.users, duration_s=args.duration, slo_ms=args.slo_ms, settings=settings,
                     api_key=args.api_key, limit=args.limit, stream=not args.no_stream,
                     warmup_items=args.warmup_items, timeout_s=args.timeout, drain_timeout_s=args.drain_timeout,
                     judge=judge)


def run(args: argparse.Namespace) -> int:
    from zwz.analytics.eval.evaluation import load_items, serve_subprocess

    args.modes = normalize_modes(args.modes)  # a bad mode: one line, before anything starts
    if bool(args.judge_url) != bool(args.judge_model):
        raise BenchError("--judge-url and --judge-model go together")
    if args.limit is not None and args.limit < 1 or args.zoomworld is not None and args.zoomworld < 1:
        raise BenchError("--limit and --zoomworld need a positive count")
    if args.warmup_items < 0:
        raise BenchError("--warmup-items cannot be negative")
    _require_locust()
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    out = Path(args.out)
    benchmark = str(out / "zoomworld") if args.zoomworld is not None else args.benchmark
    plan = _plan_from_args(args, args.base_url or "", benchmark)  # checks the numbers before anything starts
    if args.serve is None:
        asyncio.run(preflight(plan))  # an unreachable server or an unknown model: one line, before any work
    out.mkdir(parents=True, exist_ok=True)
    _, name = load_items(args, out)  # ZoomWorld is written under --out once; the worker reads it from disk
    kwargs = dict(benchmark_name=name, progress=not args.no_progress, log_level=args.log_level)
    try:
        if args.serve is not None:
            with serve_subprocess(args.serve or None, out / "server.log", api_key=args.api_key) as url:
                report = bench(replace(plan, base_url=url), out, **kwargs)
        else:
            report = bench(plan, out, **kwargs)
    except KeyboardInterrupt:
        print(f"zwz bench: interrupted; finished cells are reported in {out / 'report.md'}", file=sys.stderr)
        return 130
    print("\n".join(results_table(report)))
    ratios = ratio_table(report)
    if ratios:
        print("\nmean item latency vs single pass (p50 ratio, throughput ratio):")
        print("\n".join(ratios))
    if report["failed_items"]:
        print(f"{report['failed_items']} items failed; the errors are listed in {out / 'report.md'}")
    print(f"report: {out / 'report.md'}")
    return 0

