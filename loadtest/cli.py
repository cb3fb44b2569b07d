"""``zwz bench``: Locust load tests of the answering modes over concurrency levels: accuracy and speed from the
same requests (paper Fig. 5 as a load test), with latency percentiles, time to first token, throughput and
goodput under a latency objective.

    zwz bench --serve --zoomworld 24 --modes single agent attention_zoom regional --users 1 2 4 \\
        --duration 30 --slo-ms 2000 --max-pixels 200704 --agent-fixed-turns 2 --out runs/bench
    zwz bench --base-url http://gpu-box:8000 --model ZwZ-8B --benchmark ZoomBench.parquet \\
        --modes single agent --users 1 8 32 --duration 120 --slo-ms 10000 --out runs/bench-8b

``--serve [MODEL_DIR]`` starts ``zwz serve`` (the embedded zwz-nano without a folder) on a free port for the
sweep. Each (mode, users) cell: the users warm up (``--warmup-items`` each, untimed), then replay the items
closed-loop for ``--duration`` seconds; the zoom modes run inside the zwz server (``--agent-side server``,
``zwz_mode``) or are driven from the client (``--agent-side client``, any OpenAI-compatible endpoint for the
agent). Locust runs headless in a worker subprocess (``python -m zwz.loadtest.worker``). The old mode spellings
``global`` and ``attention-zoom`` are still taken, with a deprecation note.

Writes under ``--out``: ``plan.json``, ``cells/<mode>-u<N>.json`` (every Locust row, with ms histograms),
``worker.log``, ``report.json``, ``report.md`` and ``accuracy_vs_speed.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from zwz.analytics.eval.cli_args import (add_common_arguments, check_common_arguments, endpoint_url, load_items,
                                         quiet_http_logs, settings_from_args)
from zwz.loadtest.bench import BenchError, bench, preflight, require_locust
from zwz.loadtest.plan import JudgeSpec, SweepPlan
from zwz.loadtest.report import ratio_table, results_table

__all__ = ["plan_from_args", "register", "run"]


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="Locust load test: accuracy vs speed of the modes over concurrency",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p, verb="sweep", default_modes=("single", "agent"), agent_side="server")
    p.add_argument("--users", nargs="+", type=int, default=[1, 2, 4], metavar="N",
                   help="concurrency levels: closed-loop users per cell (default: 1 2 4)")
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds per cell (default 30)")
    p.add_argument("--slo-ms", type=float, default=2000.0,
                   help="latency objective per item for goodput (default 2000 ms)")
    p.add_argument("--no-stream", action="store_true", help="non-streaming requests (no time to first token)")
    p.add_argument("--warmup-items", type=int, default=1, help="untimed items per user before each cell (default 1)")
    p.add_argument("--drain-timeout", type=float, default=120.0,
                   help="seconds the items in flight at the end of a cell may take to finish")
    p.set_defaults(func=run)


def plan_from_args(args: argparse.Namespace, base_url: str, benchmark: str) -> SweepPlan:
    """The sweep the arguments describe (its checks run here, before anything starts)."""
    judge = None
    if args.judge_url:
        judge = JudgeSpec(args.judge_url, args.judge_model, args.judge_api_key,
                          cache_path=str(Path(args.out) / "judge_cache.jsonl"))
    return SweepPlan(base_url=base_url, model=args.model or "", benchmark=benchmark, modes=args.modes,
                     users=args.users, duration_s=args.duration, slo_ms=args.slo_ms,
                     settings=settings_from_args(args), api_key=args.api_key, limit=args.limit,
                     stream=not args.no_stream, warmup_items=args.warmup_items, timeout_s=args.timeout,
                     drain_timeout_s=args.drain_timeout, judge=judge)


def run(args: argparse.Namespace) -> int:
    check_common_arguments(args)  # a bad mode or count: one line, before anything starts
    if args.warmup_items < 0:
        raise BenchError("--warmup-items cannot be negative")
    require_locust()
    quiet_http_logs()
    out = Path(args.out)
    benchmark = str(out / "zoomworld") if args.zoomworld is not None else args.benchmark
    plan = plan_from_args(args, args.base_url or "", benchmark)
    if args.serve is None:
        asyncio.run(preflight(plan))  # an unreachable server or an unknown model: one line, before any work
    out.mkdir(parents=True, exist_ok=True)
    _, name = load_items(args, out)  # ZoomWorld is written under --out once; the worker reads it from disk
    kwargs = dict(benchmark_name=name, progress=not args.no_progress, log_level=args.log_level)
    try:
        with endpoint_url(args, out) as url:
            report = bench(replace(plan, base_url=url), out, **kwargs)
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
