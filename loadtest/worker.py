"""The Locust side of ``zwz bench``: runs every cell of a sweep plan headless, in this process, one after another.

    python -m zwz.loadtest.worker runs/bench/plan.json runs/bench

``zwz bench`` starts it as a subprocess: Locust monkey-patches the whole process for gevent (threads,
sockets) on import, which must not reach the CLI process or a process that hosts a server. Each cell gets a
fresh ``Environment`` and runner (fresh statistics); the items and their request bodies are loaded once.

Per cell: spawn the users; warm up until every user has finished ``warmup_items`` items (untimed); reset
the statistics and open the window; after ``duration_s`` stop the users gracefully (items in flight finish
and count; the window closes when the last one does, or at ``drain_timeout_s``, when the rest are cut off);
read ``environment.stats`` (exact final figures, not the per-second CSV) and write ``cells/<mode>-u<N>.json``.
Progress goes to stdout as JSON lines; logs go to stderr.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # what `import locust` does; done first and explicitly, before anything opens a socket

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import locust.stats  # noqa: E402
import psutil  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.exception import CatchResponseError  # noqa: E402
from locust.stats import RequestStats, StatsError  # noqa: E402

from zwz.loadtest.plan import Cell, SweepPlan  # noqa: E402
from zwz.loadtest.server_metrics import in_flight, scrape, server_delta  # noqa: E402
from zwz.loadtest.users import USER_CLASSES, wait_for_scoring  # noqa: E402
from zwz.loadtest.workload import Workload, configure  # noqa: E402

logger = logging.getLogger("zwz.loadtest.worker")

__all__ = ["exact_buckets", "main", "run_cell", "stats_rows"]

PERCENTILES = (0.5, 0.9, 0.99)


def exact_buckets() -> None:
    """Keep response times to the millisecond (Locust rounds to 2 significant digits: 147 ms -> 150 ms).

    ``locust.stats.bucket_response_time`` is the documented hook for custom bucketing; a sweep holds a few
    thousand requests, so a key per millisecond costs nothing.
    """
    locust.stats.bucket_response_time = round


def _error_text(error: Any) -> str:
    if isinstance(error, CatchResponseError) and error.args:
        return str(error.args[0])
    return StatsError.parse_error(error)


def stats_rows(stats: RequestStats) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every row of the final statistics (counts, mean, min/max, percentiles, ms histogram) and every error."""
    rows = []
    for e in stats.entries.values():
        if not e.num_requests and not e.num_failures:
            continue
        timed = e.num_requests - e.num_none_requests
        row: dict[str, Any] = {"type": e.method, "name": e.name, "requests": e.num_requests,
                               "failures": e.num_failures, "timed": timed}
        if timed:
            row |= {"mean": e.avg_response_time, "min": e.min_response_time, "max": e.max_response_time}
            row |= {f"p{round(100 * q)}": e.get_response_time_percentile(q) for q in PERCENTILES}
            row["histogram"] = {str(k): v for k, v in sorted(e.response_times.items())}
        rows.append(row)
    errors = [{"type": e.method, "name": e.name, "error": _error_text(e.error), "count": e.occurrences}
              for e in stats.errors.values()]
    return rows, sorted(errors, key=lambda e: -e["count"])


_last_tick = 0.0


def _emit(**event: Any) -> None:
    """A progress line for ``zwz bench``; ticks at most twice a second."""
    global _last_tick
    if event.get("event") == "tick":
        now = time.monotonic()
        if now - _last_tick < 0.5:
            return
        _last_tick = now
    print(json.dumps(event), flush=True)


def _wait_idle(root: str, timeout: float) -> bool | None:
    """Wait until the server has no request in flight (True), times out (False) or cannot tell (None)."""
    deadline = time.monotonic() + timeout
    while True:
        busy = in_flight(scrape(root))
        if busy is None:
            return None
        if busy == 0:
            return True
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.1)


def run_cell(w: Workload, cell: Cell) -> dict[str, Any]:
    """Run one cell and return its result (see the module docstring)."""
    plan = w.plan
    idle = _wait_idle(w.root, plan.drain_timeout_s)
    if idle is False:
        logger.warning("%s: the server still has requests in flight from before; starting anyway", cell.key)
    w.start_cell(cell.mode)
    env = Environment(user_classes=[USER_CLASSES[cell.mode]], host=w.root, stop_timeout=plan.drain_timeout_s)
    runner = env.create_local_runner()
    t_spawn = time.monotonic()
    warm = not plan.warmup_items
    if not warm:  # warm-up: every user finishes its first items untimed (one-off costs stay out of the window)
        runner.start(cell.users, spawn_rate=cell.users)
        while not warm and time.monotonic() - t_spawn < plan.warmup_timeout_s:
            gevent.sleep(0.05)
            warm = len(w.finished) >= cell.users and min(w.finished.values()) >= plan.warmup_items
            _emit(event="tick", cell=cell.key, phase="warm-up", elapsed=time.monotonic() - t_spawn)
        if not warm:
            logger.warning("%s: warm-up did not finish in %.0f s; measuring anyway", cell.key, plan.warmup_timeout_s)
    warmup_s = time.monotonic() - t_spawn

    before = scrape(w.root)
    env.stats.reset_all()
    started_before = w.started - sum(w.finished.values())  # in flight at the reset: they finish in the window
    if not plan.warmup_items:  # no warm-up: the window holds every request the cell sends
        runner.start(cell.users, spawn_rate=cell.users)
    cpu = psutil.Process().cpu_times()
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < plan.duration_s:
        gevent.sleep(min(0.5, plan.duration_s - elapsed))
        _emit(event="tick", cell=cell.key, phase="run", elapsed=time.perf_counter() - t0)
    runner.stop()  # graceful: in-flight items finish (up to stop_timeout = drain_timeout_s)
    window_s = time.perf_counter() - t0
    cpu_after = psutil.Process().cpu_times()
    wait_for_scoring(timeout=plan.drain_timeout_s)
    cut_off = w.started - sum(w.finished.values())
    after = scrape(w.root)
    runner.quit()
    rows, errors = stats_rows(env.stats)
    return {
        "mode": cell.mode, "users": cell.users, "duration_s": plan.duration_s, "window_s": window_s,
        "warmup": {"items_per_user": plan.warmup_items, "complete": warm, "seconds": warmup_s,
                   "in_flight_at_reset": started_before},
        "cut_off_items": cut_off, "rows": rows, "errors": errors,
        "client_exceptions": [{"message": e["msg"], "count": e["count"]} for e in runner.exceptions.values()],
        "client_cpu_s": (cpu_after.user + cpu_after.system) - (cpu.user + cpu.system),
        "server": server_delta(before, after),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zwz.loadtest.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", help="plan.json written by zwz bench")
    parser.add_argument("out", help="folder for cells/<mode>-u<N>.json")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.WARNING), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exact_buckets()
    plan = SweepPlan.read(args.plan)
    try:
        w = configure(plan)
    except (OSError, ValueError) as exc:
        print(f"cannot load the benchmark: {exc}", file=sys.stderr)
        return 2
    cells_dir = Path(args.out) / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    for cell in plan.cells():
        _emit(event="start", cell=cell.key)
        result = run_cell(w, cell)
        path = cells_dir / f"{cell.key}.json"
        path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        _emit(event="done", cell=cell.key, path=str(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
