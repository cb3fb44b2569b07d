"""``zwz eval``: a benchmark against an OpenAI-compatible endpoint, in the global, regional (the dual view,
paper Sec. 5.1), tool-use agent and attention-zoom modes; resumable; a report with the zooming gap.

    zwz eval --base-url http://127.0.0.1:8000 --model ZwZ-8B --benchmark ZoomBench/ \\
        --modes global regional agent attention-zoom --out runs/zoombench \\
        --judge-url http://127.0.0.1:8001 --judge-model Qwen3-30B-A3B
    zwz eval --serve --zoomworld 120 --modes global regional agent attention-zoom --out runs/zoomworld

``--serve [MODEL_DIR]`` starts ``zwz serve`` (the embedded tiny model without a folder) on a free port for the
run. Against plain vLLM use the modes global, regional and agent (client-side); attention-zoom needs a zwz
server; ``--agent-side server`` runs both zoom modes inside a zwz server (``zwz_mode``).

Writes under ``--out``: ``predictions.jsonl`` (one line per finished (mode, item), appended as it finishes; a
rerun skips those and retries failed ones), ``run.json`` (the settings a resumed run must match),
``judge_cache.jsonl``, ``report.json``, ``report.md`` and ``accuracy_vs_speed.png``. Exit status 1 when some
items failed (rerun the same command to retry them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from zwz.distill.benchmark import BenchItem, load_benchmark
from zwz.analytics.eval.client import Endpoint, EvalError
from zwz.analytics.eval.report import build_report, write_report
from zwz.analytics.eval.runner import MODES, EvalSettings, ModeRunner, PredictionStore, rescore, run_mode
from zwz.scoring.judge import Judge
from zwz.scoring import make_benchmark_scorer

logger = logging.getLogger(__name__)

__all__ = ["evaluate", "evaluate_async", "load_items", "register", "run", "serve_subprocess"]


# -------------------------------------------------------------------------------------------------- the run
def _check_run_file(out: Path, store: PredictionStore, identity: dict[str, Any], modes: list[str],
                    settings: EvalSettings) -> None:
    """Refuse to mix predictions made with other settings into one file; record this run's settings."""
    path = out / "run.json"
    previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() and store.records else {}
    stored_modes = {mode for mode, _ in store.records}
    for key, value in identity.items():
        if key in previous and previous[key] != value:
            raise EvalError(f"{out} holds predictions for {key} {previous[key]!r}, not {value!r}; use another --out")
    merged = dict(previous.get("modes", {}))
    for mode in modes:
        now, before = settings.fingerprint(mode), merged.get(mode)
        if before is not None and before != now and mode in stored_modes:
            diff = ", ".join(f"{k} {before.get(k)!r} -> {v!r}" for k, v in now.items() if before.get(k) != v)
            raise EvalError(f"{out} holds {mode} predictions made with other settings ({diff}); use another --out")
        merged[mode] = now
    path.write_text(json.dumps({**identity, "modes": merged}, indent=2) + "\n", encoding="utf-8")


async def evaluate_async(items: list[BenchItem], out_dir: str | Path, *, base_url: str, model: str | None = None,
                         modes: list[str] | tuple[str, ...] = ("global", "regional"),
                         settings: EvalSettings | None = None, api_key: str | None = None, judge: Judge | None = None,
                         concurrency: int = 4, benchmark: str = "", timeout: float = 600.0, progress: bool = True,
                         warmup: int = 1, transport: httpx.AsyncBaseTransport | None = None) -> dict[str, Any]:
    """:func:`evaluate` as a coroutine."""
    items, out, modes, settings = list(items), Path(out_dir), list(modes), settings or EvalSettings()
    benchmark = benchmark or "benchmark"
    if concurrency < 1:
        raise EvalError("concurrency must be >= 1")
    if not items:
        raise EvalError("the benchmark has no items")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise EvalError(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    planned = {mode: [i for i in items if mode != "regional" or i.crop_image is not None] for mode in modes}
    if "regional" in planned and len(planned["regional"]) < len(items):
        logger.warning("regional: %d items have no crop_image and are left out", len(items) - len(planned["regional"]))
    scorer = make_benchmark_scorer(judge)
    out.mkdir(parents=True, exist_ok=True)
    async with Endpoint(base_url, model, api_key=api_key, timeout=timeout, transport=transport) as endpoint:
        health = await endpoint.preflight()
        if "attention-zoom" in modes and settings.agent_side == "client":
            await endpoint.check_attention_endpoint()
        store = PredictionStore(out / "predictions.jsonl")
        _check_run_file(out, store, {"model": endpoint.model, "benchmark": benchmark}, modes, settings)
        meta = {"model": endpoint.model, "endpoint": endpoint.root, "benchmark": benchmark,
                "random_weights": health.get("random_weights"),
                "settings": {**vars(settings), "concurrency": concurrency, "warmup": warmup,
                             "judge": judge.model if judge else None}}
        backend = None
        if "agent" in modes and settings.agent_side == "client":
            from zwz.analytics.zoom.agent import OpenAIBackend

            backend = OpenAIBackend(endpoint.api_base, endpoint.model, api_key, timeout=timeout,
                                    max_pixels=settings.max_pixels)

        def finish() -> dict[str, Any]:
            meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            report = build_report(store.records.values(), planned, meta)
            write_report(report, out)
            return report

        try:
            await rescore(store, {i.id: i for i in items}, scorer)
            runner = ModeRunner(endpoint, settings, backend)
            for mode in modes:
                counts = await run_mode(mode, planned[mode], runner, scorer, store, concurrency=concurrency,
                                        progress=progress, warmup=warmup)
                logger.info("%s: %d requested, %d failed", mode, counts["requested"], counts["errors"])
        except BaseException:  # a fatal endpoint error or Ctrl-C: still report what was finished
            try:
                finish()
            except Exception:
                logger.exception("could not write the report")
            raise
        finally:
            if backend is not None:
                await backend.aclose()
        report = finish()
    return report


def evaluate(items: list[BenchItem], out_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Run ``items`` against an endpoint, resuming from ``out_dir``; return the report (also written there).

    Keyword arguments are :func:`evaluate_async`'s: ``base_url`` (required), ``model`` (default: the endpoint's
    only one), ``modes``, ``settings`` (:class:`EvalSettings`), ``api_key``, ``judge`` (a
    :class:`~zwz.scoring.judge.Judge`; without one, rule-undecided answers are reported as unjudged),
    ``concurrency``, ``benchmark`` (a name recorded in ``run.json``), ``timeout``, ``progress``, ``warmup``
    (untimed requests per mode before its items), ``transport``.
    From code that already runs an event loop (a notebook), ``await evaluate_async(...)``.
    """
    return asyncio.run(evaluate_async(items, out_dir, **kwargs))


# ----------------------------------------------------------------------------------------------- the inputs
def parse_image_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def load_items(args: argparse.Namespace, out: Path) -> tuple[list[BenchItem], str]:
    """The benchmark items (``--limit`` applied) and a name for them; ZoomWorld is generated once under ``out``."""
    if args.zoomworld is not None:
        from zwz.distill.zoomworld import write_zoomworld

        folder, size = out / "zoomworld", tuple(args.zoomworld_size)
        spec = {"n": args.zoomworld, "seed": args.seed, "size": list(size)}
        spec_path = folder / "spec.json"
        if not (spec_path.exists() and json.loads(spec_path.read_text()) == spec and (folder / "items.jsonl").exists()):
            logger.info("generating %d ZoomWorld items (seed %d) under %s", args.zoomworld, args.seed, folder)
            write_zoomworld(folder, args.zoomworld, args.seed, image_size=size)
            spec_path.write_text(json.dumps(spec) + "\n")
        items, name = load_benchmark(folder), f"zoomworld(seed={args.seed}, size={size[0]}x{size[1]})"
    else:
        items, name = load_benchmark(args.benchmark), str(Path(args.benchmark).resolve())
    return (items[: args.limit] if args.limit is not None else items), name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_subprocess(model_dir: str | None, log_path: Path, *, api_key: str | None = None,
                     startup_timeout: float = 900.0) -> Iterator[str]:
    """``zwz serve`` on a free loopback port for the duration of the block; yields its base URL."""
    port = _free_port()
    cmd = [sys.executable, "-m", "zwz.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning"]
    cmd += ["--model", model_dir] if model_dir else []
    env = dict(os.environ) | ({"ZWZ_API_KEY": api_key} if api_key else {})
    url = f"http://127.0.0.1:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if proc.poll() is not None:
                    raise EvalError(f"zwz serve exited with status {proc.returncode} at start-up; see {log_path}")
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise EvalError(f"zwz serve did not start within {startup_timeout:.0f} s; see {log_path}")
                time.sleep(0.25)
            logger.info("serving on %s (log: %s)", url, log_path)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------------------------------------- CLI
def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="run a benchmark against an endpoint: dual view, agent, attention zoom",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--base-url", help="OpenAI-compatible endpoint (http://host:port or .../v1)")
    where.add_argument("--serve", nargs="?", const="", metavar="MODEL_DIR",
                       help="start `zwz serve` for the run (the embedded tiny model without MODEL_DIR)")
    p.add_argument("--model", help="served model name (default: the endpoint's only model)")
    p.add_argument("--api-key", help="bearer key of the endpoint")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--benchmark", help="ZoomBench-format parquet / JSONL / JSON file or folder")
    data.add_argument("--zoomworld", type=int, metavar="N", help="generate (and cache under --out) N ZoomWorld items")
    p.add_argument("--seed", type=int, default=0, help="ZoomWorld seed")
    p.add_argument("--zoomworld-size", type=parse_image_size, default=(1536, 1152), metavar="WxH", help="ZoomWorld image size")
    p.add_argument("--modes", nargs="+", choices=MODES, default=["global", "regional"])
    p.add_argument("--out", required=True, help="output folder (rerun with the same folder to resume)")
    p.add_argument("--limit", type=int, default=None, help="only the first N items")
    p.add_argument("--concurrency", type=int, default=4, help="items in flight at once")
    p.add_argument("--max-tokens", type=int, default=64, help="answer tokens (global, regional, attention-zoom)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-pixels", type=int, default=None,
                   help="image pixel budget per request (mm_processor_kwargs; vLLM and zwz)")
    p.add_argument("--agent-max-turns", type=int, default=20, help="agent: model calls at most (Qwen-Agent: 20)")
    p.add_argument("--agent-fixed-turns", type=int, default=0,
                   help="agent: zoom this many times even when the model does not ask (timing harness)")
    p.add_argument("--agent-max-tokens", type=int, default=512, help="agent: tokens per model call")
    p.add_argument("--agent-side", choices=["client", "server"], default="client",
                   help="run the agent and attention-zoom modes here (any endpoint) or inside a zwz server")
    p.add_argument("--judge-url", help="OpenAI-compatible endpoint of the LLM judge (App. 10 prompt)")
    p.add_argument("--judge-model")
    p.add_argument("--judge-api-key")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per HTTP request")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed requests per mode before its items (start-up costs stay out of the latencies)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=run)


def _summary(report: dict[str, Any]) -> list[str]:
    lines = []
    for mode, s in report["modes"].items():
        acc = "–" if s["accuracy"] is None else f"{100 * s['accuracy']:.2f}%"
        p50 = "–" if not s["latency_ms"] else f"{s['latency_ms']['p50']:.0f} ms"
        calls = "–" if s["model_calls_mean"] is None else f"{s['model_calls_mean']:.2f}"
        lines.append(f"{mode:>14}: accuracy {acc} ({s['n_decided']}/{s['n_items']} decided, {s['n_unjudged']} "
                     f"unjudged, {s['n_errors']} errors), p50 {p50}, {calls} model calls/item")
    gap = report.get("zooming_gap")
    if gap and gap["gap"]["avg"] is not None:
        lines.append(f"{'zooming gap':>14}: {100 * gap['gap']['avg']:+.2f} points (regional - global)")
    return lines


def run(args: argparse.Namespace) -> int:
    if bool(args.judge_url) != bool(args.judge_model):
        raise EvalError("--judge-url and --judge-model go together")
    if args.limit is not None and args.limit < 1 or args.zoomworld is not None and args.zoomworld < 1:
        raise EvalError("--limit and --zoomworld need a positive count")
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would bury the progress bars
    out = Path(args.out)
    items, benchmark = load_items(args, out)
    settings = EvalSettings(max_tokens=args.max_tokens, temperature=args.temperature, max_pixels=args.max_pixels,
                            agent_max_turns=args.agent_max_turns, agent_fixed_turns=args.agent_fixed_turns,
                            agent_max_tokens=args.agent_max_tokens, agent_side=args.agent_side)
    judge = (Judge(args.judge_url, args.judge_model, args.judge_api_key, cache_path=out / "judge_cache.jsonl")
             if args.judge_url else None)
    modes = list(dict.fromkeys(args.modes))
    kwargs = dict(model=args.model, modes=modes, settings=settings, api_key=args.api_key, judge=judge,
                  concurrency=args.concurrency, benchmark=benchmark, timeout=args.timeout,
                  progress=not args.no_progress, warmup=args.warmup)
    try:
        if args.serve is not None:
            with serve_subprocess(args.serve or None, out / "server.log", api_key=args.api_key) as url:
                report = evaluate(items, out, base_url=url, **kwargs)
        else:
            report = evaluate(items, out, base_url=args.base_url, **kwargs)
    except KeyboardInterrupt:
        print(f"zwz eval: interrupted; finished items are in {out / 'predictions.jsonl'} (rerun to resume)",
              file=sys.stderr)
        return 130
    finally:
        if judge is not None:
            judge.close()
    print("\n".join(_summary(report)))
    print(f"report: {out / 'report.md'}")
    return 1 if report["errors"] else 0
