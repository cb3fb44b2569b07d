"""The ``zwz eval`` run: a benchmark against an OpenAI-compatible endpoint in the modes ``single``, ``regional``
(the dual view, paper Sec. 5.1), ``agent`` (tool-use zoom) and ``attention_zoom``, and with ``coverage=True``
the relative-attention coverage of each item's evidence box (paper Sec. 5.2, a zwz server); resumable; a
report with 95% intervals, the zooming gap and the coverage. The command line is :mod:`zwz.analytics.eval.cli`.

    report = evaluate(load_benchmark("ZoomBench/"), "runs/zoombench", base_url="http://127.0.0.1:8000",
                      modes=["single", "regional", "agent", "attention_zoom"], judge=Judge(url, model))

Against plain vLLM use the modes single, regional and agent (client-side); attention_zoom needs a zwz server;
``EvalSettings(agent_side="server")`` runs both zoom modes inside a zwz server (``zwz_mode``).

Writes under the output folder: ``predictions.jsonl`` (one line per finished (mode, item), appended as it
finishes; a rerun skips those and retries failed ones), ``coverage.jsonl`` (the coverage pass, likewise),
``run.json`` (the settings a resumed run must match), ``report.json``, ``report.md`` and ``accuracy_vs_speed.png``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from zwz.distill.benchmark import BenchItem
from zwz.analytics.eval.client import Endpoint, EvalError
from zwz.analytics.eval.coverage_pass import COVERAGE, run_coverage
from zwz.analytics.eval.report import build_report, write_report
from zwz.analytics.eval.runner import EvalSettings, ModeRunner, PredictionStore, rescore, run_mode
from zwz.defaults import MODE_ALIASES, REQUEST_TIMEOUT_S, canonical_modes
from zwz.scoring.judge import Judge
from zwz.scoring import make_benchmark_scorer

logger = logging.getLogger(__name__)

__all__ = ["evaluate", "evaluate_async"]


# -------------------------------------------------------------------------------------------------- the run
def _check_run_file(out: Path, store: PredictionStore, identity: dict[str, Any], modes: list[str],
                    settings: EvalSettings, coverage: PredictionStore | None = None) -> None:
    """Refuse to mix predictions (or coverage records) made with other settings into one file; record this run's
    settings."""
    path = out / "run.json"
    stored = bool(store.records) or bool(coverage and coverage.records)
    previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() and stored else {}
    # A run.json written before the modes took the API's names keys them the old way.
    previous["modes"] = {MODE_ALIASES.get(m, m): v for m, v in previous.get("modes", {}).items()}
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
    run = {**identity, "modes": merged}
    if previous.get(COVERAGE) is not None:
        run[COVERAGE] = previous[COVERAGE]
    if coverage is not None:
        now, before = settings.fingerprint(COVERAGE), previous.get(COVERAGE)
        if before is not None and before != now and coverage.records:
            raise EvalError(f"{out} holds coverage records made with other settings ({before} -> {now}); "
                            "use another --out")
        run[COVERAGE] = now
    path.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")


async def evaluate_async(items: list[BenchItem], out_dir: str | Path, *, base_url: str, model: str | None = None,
                         modes: list[str] | tuple[str, ...] = ("single", "regional"),
                         settings: EvalSettings | None = None, api_key: str | None = None, judge: Judge | None = None,
                         concurrency: int = 4, benchmark: str = "", timeout: float = REQUEST_TIMEOUT_S,
                         progress: bool = True, warmup: int = 1, coverage: bool = False,
                         transport: httpx.AsyncBaseTransport | None = None) -> dict[str, Any]:
    """:func:`evaluate` as a coroutine."""
    items, out, settings = list(items), Path(out_dir), settings or EvalSettings()
    with warnings.catch_warnings():  # the CLI says which spellings are deprecated; code may use either
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            modes = canonical_modes(modes)
        except ValueError as exc:
            raise EvalError(str(exc)) from None
    benchmark = benchmark or "benchmark"
    if concurrency < 1:
        raise EvalError("concurrency must be >= 1")
    if not items:
        raise EvalError("the benchmark has no items")
    planned = {mode: [i for i in items if mode != "regional" or i.crop_image is not None] for mode in modes}
    if "regional" in planned and len(planned["regional"]) < len(items):
        logger.warning("regional: %d items have no crop_image and are left out", len(items) - len(planned["regional"]))
    scorer = make_benchmark_scorer(judge)
    out.mkdir(parents=True, exist_ok=True)
    async with Endpoint(base_url, model, api_key=api_key, timeout=timeout, transport=transport) as endpoint:
        health = await endpoint.preflight()
        if coverage or ("attention_zoom" in modes and settings.agent_side == "client"):
            await endpoint.check_attention_endpoint()
        store = PredictionStore(out / "predictions.jsonl")
        coverage_store = PredictionStore(out / "coverage.jsonl") if coverage else None
        _check_run_file(out, store, {"model": endpoint.model, "benchmark": benchmark}, modes, settings,
                        coverage_store)
        meta = {"model": endpoint.model, "endpoint": endpoint.root, "benchmark": benchmark,
                "random_weights": health.get("random_weights"),
                "settings": {**vars(settings), "concurrency": concurrency, "warmup": warmup,
                             "judge": judge.model if judge else None}}
        backend = None
        if "agent" in modes and settings.agent_side == "client":
            from zwz.analytics.zoom.openai_backend import OpenAIBackend

            backend = OpenAIBackend(endpoint.api_base, endpoint.model, api_key, timeout=timeout,
                                    max_pixels=settings.max_pixels)

        def finish() -> dict[str, Any]:
            meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            report = build_report(store.records.values(), planned, meta,
                                  coverage=None if coverage_store is None else coverage_store.records.values())
            write_report(report, out)
            return report

        try:
            await rescore(store, {i.id: i for i in items}, scorer)
            runner = ModeRunner(endpoint, settings, backend)
            for mode in modes:
                counts = await run_mode(mode, planned[mode], runner, scorer, store, concurrency=concurrency,
                                        progress=progress, warmup=warmup)
                logger.info("%s: %d requested, %d failed", mode, counts["requested"], counts["errors"])
            if coverage_store is not None:
                counts = await run_coverage(items, endpoint, settings, coverage_store, concurrency=concurrency,
                                            progress=progress)
                logger.info("coverage: %d requested, %d failed", counts["requested"], counts["errors"])
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
    (untimed requests per mode before its items), ``coverage`` (also measure the relative-attention coverage
    of each item's evidence box: :mod:`zwz.analytics.eval.coverage_pass`; a zwz server), ``transport``.
    From code that already runs an event loop (a notebook), ``await evaluate_async(...)``.
    """
    return asyncio.run(evaluate_async(items, out_dir, **kwargs))
