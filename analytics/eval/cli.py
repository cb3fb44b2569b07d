"""``zwz eval``: a benchmark against an OpenAI-compatible endpoint, in the modes single, regional (the dual view,
paper Sec. 5.1), agent (tool-use zoom) and attention_zoom, and with ``--coverage`` the relative-attention
coverage of each item's evidence box (paper Sec. 5.2); resumable; a report with 95% intervals, the zooming
gap and the coverage. ``zwz eval-compare`` puts several runs (the arms of an ablation) side by side.

    zwz eval --base-url http://127.0.0.1:8000 --model ZwZ-8B --benchmark ZoomBench/ \\
        --modes single regional agent attention_zoom --out runs/zoombench \\
        --judge-url http://127.0.0.1:8001 --judge-model Qwen3-30B-A3B
    zwz eval --serve --zoomworld 120 --modes single regional agent attention_zoom --out runs/zoomworld
    zwz eval --serve runs/nano/student --zoomworld 300 --zoomworld-level nano --seed 7 --coverage \\
        --modes single regional agent --out runs/eval/bbox-in-image

``--serve [MODEL_DIR]`` starts ``zwz serve`` (the embedded zwz-nano without a folder) on a free port for the
run. Against plain vLLM use the modes single, regional and agent (client-side); attention_zoom needs a zwz
server; ``--agent-side server`` runs both zoom modes inside a zwz server (``zwz_mode``). The old mode
spellings ``global`` and ``attention-zoom`` are still taken, with a deprecation note.

Writes under ``--out``: ``predictions.jsonl`` (one line per finished (mode, item), appended as it finishes; a
rerun with the same ``--out`` skips those and retries failed ones), ``coverage.jsonl`` (``--coverage``: one line
per item with an evidence box), ``run.json`` (the settings a resumed run must match), ``judge_cache.jsonl``,
``report.json``, ``report.md`` and ``accuracy_vs_speed.png``. Exit status 1 when some items failed (rerun the
same command to retry them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from zwz.analytics.eval.cli_args import (add_common_arguments, check_common_arguments, endpoint_url, load_items,
                                         quiet_http_logs, settings_from_args)
from zwz.analytics.eval import compare
from zwz.analytics.eval.evaluation import evaluate
from zwz.analytics.eval.report import interval_text

__all__ = ["register", "run", "summary_lines"]


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="run a benchmark against an endpoint: dual view, agent, attention zoom",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p, verb="run", default_modes=("single", "regional"), agent_side="client")
    p.add_argument("--concurrency", type=int, default=4, help="items in flight at once")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed requests per mode before its items (start-up costs stay out of the latencies)")
    p.add_argument("--coverage", action="store_true",
                   help="also measure the relative-attention coverage of each item's evidence box (paper Table 8; "
                        "a zwz server, items with a bbox: ZoomWorld's have one)")
    p.set_defaults(func=run)
    compare.register(subparsers)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """What ``zwz eval`` prints at the end: a line per mode (accuracy % with its 95% interval), the zooming gap
    and the coverage."""
    lines = []
    for mode, s in report["modes"].items():
        acc = "–" if s["accuracy"] is None else f"{interval_text(s['accuracy'], s.get('ci95'))}%"
        p50 = "–" if not s["latency_ms"] else f"{s['latency_ms']['p50']:.0f} ms"
        calls = "–" if s["model_calls_mean"] is None else f"{s['model_calls_mean']:.2f}"
        lines.append(f"{mode:>14}: accuracy {acc} ({s['n_decided']}/{s['n_items']} decided, {s['n_unjudged']} "
                     f"unjudged, {s['n_errors']} errors), p50 {p50}, {calls} model calls/item")
    gap = report.get("zooming_gap")
    if gap and gap["gap"]["avg"] is not None:
        text = interval_text(gap["gap"]["avg"], gap["gap_ci95"]["avg"], signed=True)
        lines.append(f"{'zooming gap':>14}: {text} points (regional - single, {gap['n_pairs']['avg']} pairs)")
    cov = (report.get("coverage") or {}).get("all")
    if cov and cov["n"]:
        c, a = cov["coverage"], cov["area_share"]
        lines.append(f"{'coverage':>14}: {interval_text(c['estimate'], [c['low'], c['high']])}% of the attention "
                     f"in the evidence box, which is {interval_text(a['estimate'], None)}% of the image "
                     f"({cov['n']} items)")
    return lines


def run(args: argparse.Namespace) -> int:
    from zwz.scoring.judge import Judge

    check_common_arguments(args)
    quiet_http_logs()
    out = Path(args.out)
    items, benchmark = load_items(args, out)
    judge = (Judge(args.judge_url, args.judge_model, args.judge_api_key, cache_path=out / "judge_cache.jsonl")
             if args.judge_url else None)
    kwargs = dict(model=args.model, modes=args.modes, settings=settings_from_args(args), api_key=args.api_key,
                  judge=judge, concurrency=args.concurrency, benchmark=benchmark, timeout=args.timeout,
                  progress=not args.no_progress, warmup=args.warmup, coverage=args.coverage)
    try:
        with endpoint_url(args, out) as url:
            report = evaluate(items, out, base_url=url, **kwargs)
    except KeyboardInterrupt:
        print(f"zwz eval: interrupted; finished items are in {out / 'predictions.jsonl'} (rerun to resume)",
              file=sys.stderr)
        return 130
    finally:
        if judge is not None:
            judge.close()
    print("\n".join(summary_lines(report)))
    print(f"report: {out / 'report.md'}")
    return 1 if report["errors"] else 0
