"""Soak: minutes of mixed traffic against a live zwz server; a table per minute and a verdict at the end.

    python benchmarks/bench_soak.py --minutes 30 --clients 2                     # transformers, tiny model
    python benchmarks/bench_soak.py --minutes 30 --clients 2 --engine vllm
    python benchmarks/bench_soak.py --url http://127.0.0.1:8000 --minutes 10      # a server already running

Closed-loop clients (each sends its next request when the last one ended) walk one fixed cycle of request
kinds: single answers, streams, the agent mode, the attention zoom, attention maps (``/v1/zoom/attention`` and
chat with ``zwz_attention``), bad requests (a 4xx is the right answer) and streams the client drops after the
first bytes. Without ``--url`` the server is started here (``zwz serve`` on the tiny model unless ``--model``).

Per interval (``--interval-s``, default a minute): requests ended, statuses, p50/p99 of the answered good
requests, the server's RSS (its process from /proc plus its child processes such as vLLM's engine core; with
``--url`` the ``process_resident_memory_bytes`` of ``/metrics``), sampled every 5 s: the interval's median,
peak and last sample, and the in-flight and queue gauges. Verdict: no 5xx, no unexpected status, every later
interval's RSS median within 10 % of the first (warm-up) interval's, and in-flight and queue back to 0 once the
load stops. ``--out`` gets ``summary.json`` and the server's log (and ``soak.png`` with matplotlib).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from zwz.endpoint import image_data_url, server_root, user_message
from zwz.analytics.zoom.requests import attention_map_body, zoom_chat_body
from zwz.loadtest.server_metrics import Samples, scrape, server_delta
from zwz.serve_process import serve_subprocess

from _server_memory import server_pid, server_rss_mb, total_rss_mb  # noqa: E402  (sibling script modules)
from _workload import percentile, scene  # noqa: E402

logger = logging.getLogger("bench_soak")

QUESTION = "What is written on the small sign near the door?"
BOX = [100, 100, 300, 260]  # inside every 448 px scene
# One client's cycle of request kinds: mostly plain answers, every other kind a few times per cycle.
CYCLE = ("single", "stream", "bad", "single", "agent", "disconnect", "chat_map", "single", "stream",
         "attention_map", "bad", "single", "attention_zoom", "stream", "disconnect", "single")
RSS_TOLERANCE = 0.10
# RSS swings with the requests in flight (their tensors are mmapped and returned when freed), so each interval's
# RSS is the median of samples this often; a leak or allocator growth moves the median, a busy moment does not.
RSS_SAMPLE_S = 5.0


@dataclass
class Interval:
    """What ended in one interval: statuses by kind, latencies of good answered requests, problems."""

    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, status or error name)
    latencies: list[float] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)  # MB, sampled every RSS_SAMPLE_S


class Traffic:
    """Request bodies per kind and one closed-loop client's send-and-check of each."""

    def __init__(self, model: str, size: int, max_tokens: int, images: int = 8) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.urls = [image_data_url(scene(size, seed)) for seed in range(images)]
        self._bad = itertools.cycle(self._bad_requests())

    def _messages(self, i: int) -> list[dict[str, Any]]:
        return [user_message([self.urls[i % len(self.urls)]], QUESTION)]

    def _chat(self, i: int, **extra: Any) -> dict[str, Any]:
        return {"model": self.model, "messages": self._messages(i), "max_tokens": self.max_tokens,
                "temperature": 0} | extra

    def _bad_requests(self) -> list[tuple[str, dict[str, Any]]]:
        good = self._chat(0)
        return [
            ("/v1/chat/completions", good | {"model": "no-such-model"}),                  # 404 model_not_found
            ("/v1/chat/completions", good | {"temperature": 7}),                          # 400 validation
            ("/v1/chat/completions", good | {"messages": [user_message(["data:image/png;base64,@@"], "?")]}),
            ("/v1/chat/completions", good | {"max_tokens": 10**7}),                       # over the context
            ("/v1/zoom/attention", attention_map_body(self.urls[0], QUESTION, model=self.model)
             | {"box": [9000, 9000, 9100, 9100]}),                                        # box outside the image
        ]

    def request(self, kind: str, i: int) -> tuple[str, dict[str, Any]]:
        if kind == "bad":
            return next(self._bad)
        if kind in ("single",):
            return "/v1/chat/completions", self._chat(i)
        if kind in ("stream", "disconnect"):
            return "/v1/chat/completions", self._chat(i, stream=True, stream_options={"include_usage": True})
        if kind == "chat_map":
            return "/v1/chat/completions", self._chat(i, zwz_attention={"box": BOX, "heatmap": True})
        if kind in ("agent", "attention_zoom"):
            return "/v1/chat/completions", zoom_chat_body(kind, self._messages(i), model=self.model,
                                                          max_tokens=self.max_tokens, temperature=0,
                                                          max_turns=3, fixed_turns=1)
        if kind == "attention_map":
            return "/v1/zoom/attention", attention_map_body(self.urls[i % len(self.urls)], QUESTION,
                                                            model=self.model, heatmap=True) | {"box": BOX}
        raise ValueError(f"unknown request kind {kind!r}")

    async def send(self, http: httpx.AsyncClient, kind: str, i: int) -> tuple[str, float, str | None]:
        """(status or error name, seconds, what was wrong or None) for one request of ``kind``."""
        path, body = self.request(kind, i)
        t0 = time.perf_counter()
        try:
            if kind in ("stream", "disconnect"):
                status, problem = await self._stream(http, path, body, drop=kind == "disconnect")
            else:
                resp = await http.post(path, json=body)
                status, problem = str(resp.status_code), _check(kind, resp)
        except httpx.HTTPError as exc:
            status, problem = type(exc).__name__, f"{kind}: {type(exc).__name__}: {exc}"
        return status, time.perf_counter() - t0, problem

    async def _stream(self, http: httpx.AsyncClient, path: str, body: dict, *, drop: bool) -> tuple[str, str | None]:
        async with http.stream("POST", path, json=body) as resp:
            if resp.status_code != 200:
                await resp.aread()
                return str(resp.status_code), f"stream: {resp.status_code} {resp.text[:200]}"
            if drop:  # read the first bytes, then leave: the connection closes mid-stream
                async for _ in resp.aiter_bytes():
                    break
                return "200", None
            done = False
            async for line in resp.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: ") and '"error"' in line[:20]:
                    return "stream_error", f"stream: {line[:200]}"
            return ("200", None) if done else ("stream_cut", "stream: ended without [DONE]")


def _check(kind: str, resp: httpx.Response) -> str | None:
    """What is wrong with a finished non-streaming reply (None: it is the answer ``kind`` expects)."""
    status = resp.status_code
    if kind == "bad":
        ok = 400 <= status < 500 and "error" in resp.json()
        return None if ok else f"bad request answered {status}: {resp.text[:200]}"
    if status != 200:
        return f"{kind}: {status} {resp.text[:200]}"
    reply = resp.json()
    expected = {"attention_map": "suggested_box", "chat_map": "zwz_attention", "agent": "zwz_trajectory",
                "attention_zoom": "zwz_trajectory"}.get(kind, "choices")
    return None if expected in reply else f"{kind}: reply without {expected}"


# -- the server's gauges ------------------------------------------------------------------------------------
def _sample_rss(pid: int | None, root: str) -> float | None:
    return total_rss_mb(pid, scrape(root) if pid is None else None)


def gauges(samples: Samples | None) -> tuple[float | None, float | None]:
    if samples is None:
        return None, None
    return samples.get(("zwz_requests_in_flight", ())), samples.get(("zwz_queue_depth", ()))


# -- the run --------------------------------------------------------------------------------------------------
async def soak(root: str, pid: int | None, args: argparse.Namespace) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=root, timeout=args.request_timeout_s,
                                 limits=httpx.Limits(max_connections=args.clients + 4)) as http:
        model = (await http.get("/v1/models")).json()["data"][0]["id"]
        traffic = Traffic(model, args.size, args.max_tokens)
        before = scrape(root)
        current = Interval()
        sent: Counter[str] = Counter()
        t0 = time.monotonic()
        end = t0 + args.seconds
        # One cycle shared by all clients: the n-th request sent has kind CYCLE[n % len(CYCLE)], so the mix of
        # a run of --max-requests is exact whatever the clients' speed.
        indices = itertools.count()

        async def client() -> None:
            nonlocal current
            while True:
                i = next(indices)
                if time.monotonic() >= end or (args.max_requests is not None and i >= args.max_requests):
                    return
                kind = CYCLE[i % len(CYCLE)]
                sent[kind] += 1
                status, seconds, problem = await traffic.send(http, kind, i)
                current.statuses[(kind, status)] += 1
                if problem:
                    current.unexpected.append(problem)
                elif kind not in ("bad", "disconnect"):
                    current.latencies.append(seconds)

        rows: list[dict[str, Any]] = []

        async def reporter() -> None:
            nonlocal current
            next_row = t0 + args.interval_s
            while time.monotonic() < end and not clients_done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(clients_done.wait(), max(0.0, min(RSS_SAMPLE_S, end - time.monotonic())))
                if clients_done.is_set():
                    break
                current.rss.append(await asyncio.to_thread(_sample_rss, pid, root))
                if time.monotonic() >= next_row or time.monotonic() >= end:
                    next_row += args.interval_s
                    done, current = current, Interval()
                    rows.append(await asyncio.to_thread(_row, len(rows) + 1, time.monotonic() - t0, done, root, pid))
                    print(format_row(rows[-1]), flush=True)

        clients_done = asyncio.Event()

        async def clients() -> None:
            await asyncio.gather(*[client() for _ in range(args.clients)])
            clients_done.set()

        print(header(), flush=True)
        await asyncio.gather(reporter(), clients())
        if current.statuses:  # what ended after the last interval closed
            rows.append(await asyncio.to_thread(_row, len(rows) + 1, time.monotonic() - t0, current, root, pid))
            print(format_row(rows[-1]), flush=True)
    after_row = await asyncio.to_thread(_settled, root, pid, args.settle_s)
    server = server_delta(before, after_row.pop("samples"))
    return {"rows": rows, "after": after_row, "sent": dict(sent), "server": server}


def _row(n: int, t: float, done: Interval, root: str, pid: int | None) -> dict[str, Any]:
    samples = scrape(root)
    rss, children = server_rss_mb(pid, samples)
    in_flight, queue = gauges(samples)
    done.rss.append(None if rss is None else rss + children)
    sampled = sorted(v for v in done.rss if v is not None)
    statuses = Counter()
    for (_, status), count in done.statuses.items():
        statuses[status] += count
    return {"interval": n, "t_s": round(t, 1), "requests": sum(done.statuses.values()),
            "statuses": dict(sorted(statuses.items())),
            "by_kind": {f"{k}:{s}": c for (k, s), c in sorted(done.statuses.items())},
            "p50_ms": percentile(done.latencies, 0.5) * 1e3 if done.latencies else None,
            "p99_ms": percentile(done.latencies, 0.99) * 1e3 if done.latencies else None,
            "rss_mb": rss, "children_rss_mb": children,
            "rss_median_mb": statistics.median(sampled) if sampled else None,
            "rss_peak_mb": sampled[-1] if sampled else None, "in_flight": in_flight, "queue": queue,
            "unexpected": done.unexpected[:20], "unexpected_count": len(done.unexpected)}


def _settled(root: str, pid: int | None, wait_s: float) -> dict[str, Any]:
    """The gauges and RSS once the load stopped: polled until in-flight and queue are 0 (or ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        samples = scrape(root)
        in_flight, queue = gauges(samples)
        if (in_flight == 0 and queue == 0) or time.monotonic() > deadline:
            rss, children = server_rss_mb(pid, samples)
            return {"in_flight": in_flight, "queue": queue, "rss_mb": rss, "children_rss_mb": children,
                    "samples": samples}
        time.sleep(0.5)


def header() -> str:
    return ("| interval | t s | requests | statuses | p50 ms | p99 ms | RSS MB median | peak | end | of which children "
            "| in-flight | queue |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def _num(value: float | None, fmt: str = ".0f") -> str:
    return "-" if value is None else format(value, fmt)


def format_row(row: dict[str, Any]) -> str:
    statuses = " ".join(f"{s}:{c}" for s, c in row["statuses"].items())
    return (f"| {row['interval']} | {row['t_s']:.0f} | {row['requests']} | {statuses} | {_num(row['p50_ms'], '.1f')} "
            f"| {_num(row['p99_ms'], '.1f')} | {_num(row['rss_median_mb'])} | {_num(row['rss_peak_mb'])} "
            f"| {_num(None if row['rss_mb'] is None else row['rss_mb'] + row['children_rss_mb'])} | {_num(row['children_rss_mb'])} "
            f"| {_num(row['in_flight'])} | {_num(row['queue'])} |")


def verdict(result: dict[str, Any], warmup: int = 1) -> dict[str, Any]:
    """The checks: no 5xx, nothing unexpected, RSS flat after the ``warmup`` intervals (against the last of
    them: on a loaded machine the first minute may see few requests), gauges back to 0."""
    rows, after = result["rows"], result["after"]
    statuses = Counter()
    for row in rows:
        statuses.update(row["statuses"])
    server_errors = sum(c for s, c in statuses.items() if s.isdigit() and int(s) >= 500)
    unexpected = sum(row["unexpected_count"] for row in rows)
    totals = [r["rss_median_mb"] for r in rows if r["rss_median_mb"] is not None]
    growth = None
    base, later = (totals[warmup - 1], totals[warmup:]) if len(totals) > warmup else (0, [])
    if later and base > 0:
        growth = max(later) / base - 1
    checks = {
        "no server errors (5xx)": server_errors == 0,
        "no unexpected status or error": unexpected == 0,
        "RSS within 10% of the warm-up's": None if growth is None else abs(growth) <= RSS_TOLERANCE
        and min(later) / base - 1 >= -RSS_TOLERANCE,
        "in-flight back to 0": after["in_flight"] == 0,
        "queue back to 0": after["queue"] == 0,
    }
    return {"checks": checks, "server_errors": server_errors, "unexpected": unexpected,
            "rss_growth": growth, "passed": all(v is not False for v in checks.values())}


def report(result: dict[str, Any]) -> None:
    v = result["verdict"]
    after, server = result["after"], result["server"] or {}
    print(f"\nafter the load: in-flight {_num(after['in_flight'])}, queue {_num(after['queue'])}, "
          f"RSS {_num(after['rss_mb'])} MB (+{_num(after['children_rss_mb'])} MB children)")
    print("sent by kind: " + ", ".join(f"{k} {c}" for k, c in sorted(result["sent"].items())))
    by_mode = {m: int(d["requests"]) for m, d in sorted(server.get("by_mode", {}).items())}
    print(f"server counted: answered {by_mode}, errors {({s: int(c) for s, c in server.get('errors', {}).items()})}")
    growth = "-" if v["rss_growth"] is None else f"{100 * v['rss_growth']:+.1f}%"
    print(f"RSS growth after warm-up (highest interval median vs the last warm-up interval's): {growth}")
    for name, ok in v["checks"].items():
        print(f"  {'PASS' if ok else 'not judged' if ok is None else 'FAIL'}: {name}")
    for row in result["rows"]:
        for problem in row["unexpected"][:3]:
            print(f"  unexpected (interval {row['interval']}): {problem}")
    print(f"verdict: {'PASS' if v['passed'] else 'FAIL'}")


def plot(result: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        logger.info("matplotlib is not installed: no plot")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    x = [r["t_s"] / 60 for r in rows]
    fig, rss_ax = plt.subplots(figsize=(8, 4))
    rss_ax.plot(x, [r["rss_median_mb"] or 0 for r in rows], "b-o", label="RSS MB (median)")
    rss_ax.set_xlabel("minutes")
    rss_ax.set_ylabel("server RSS MB (with children)")
    p50_ax = rss_ax.twinx()
    p50_ax.plot(x, [r["p50_ms"] or 0 for r in rows], "r-s", label="p50 ms")
    p50_ax.set_ylabel("p50 ms")
    fig.tight_layout()
    fig.savefig(out / "soak.png")
    print(f"plot: {out / 'soak.png'}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if args.url:
            root, pid = server_root(args.url), None
        else:
            extra = ["--engine", args.engine, *(["--max-model-len", str(args.max_model_len)] if args.max_model_len else [])]
            root = stack.enter_context(serve_subprocess(args.model, log_path=out / "server.log", extra_args=extra))
            pid = server_pid()
        print(f"soak: {root} engine={args.engine if not args.url else '(--url)'} clients={args.clients} "
              f"{args.seconds:.0f} s, {args.size} px, {args.max_tokens} tokens, interval {args.interval_s:.0f} s")
        result = asyncio.run(soak(root, pid, args))
    result["verdict"] = verdict(result, args.warmup_intervals)
    report(result)
    (out / "summary.json").write_text(json.dumps(result, indent=1, default=str))
    plot(result, out)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=None, help="run length in seconds (overrides --minutes)")
    parser.add_argument("--clients", type=int, default=2, help="closed-loop clients")
    parser.add_argument("--max-requests", type=int, default=None, help="stop after this many requests")
    parser.add_argument("--interval-s", type=float, default=60.0, help="one table row per this many seconds")
    parser.add_argument("--warmup-intervals", type=int, default=1,
                        help="intervals before RSS is judged; the last of them is the baseline")
    parser.add_argument("--engine", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--model", default=None, help="model folder (default: the embedded zwz-nano)")
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--url", default=None, help="soak a server already running instead of starting one")
    parser.add_argument("--size", type=int, default=448, help="image side in pixels")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--request-timeout-s", type=float, default=120.0)
    parser.add_argument("--settle-s", type=float, default=30.0, help="wait this long for the gauges to reach 0")
    parser.add_argument("--out", default="soak-out", help="folder for summary.json, server.log and the plot")
    args = parser.parse_args(argv)
    args.seconds = args.seconds if args.seconds is not None else args.minutes * 60
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would bury the table
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
