"""The ``zwz bench`` report: per mode and concurrency, accuracy and speed from the same requests.

Built from the worker's exact final Locust statistics (``cells/<mode>-u<N>.json``), never from the
per-second CSV. Fractions in ``report.json``, percentages in ``report.md``; times in ms.

    report = build_report([json.load(open(p)) for p in cell_files], meta={"model": "qwen3_vl", "slo_ms": 2000})
    write_report(report, "runs/bench")      # report.json, report.md, accuracy_vs_speed.png
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zwz.defaults import MODES
from zwz.reporting import log_x_axis, md_table, ms, num, pct, pyplot, save_figure, style_accuracy_axis
from zwz.reporting import write_report_files

__all__ = ["DEFINITIONS", "build_report", "plot_accuracy_vs_speed", "render_markdown", "summarize_cell",
           "write_report"]

DEFINITIONS = {
    "item": "one benchmark question answered end to end in its mode (all of its model calls)",
    "latency": "client-measured time of an answered item, from its first byte sent to the end of its last "
               "response (data: [DONE] when streaming); percentiles over answered items, to the millisecond",
    "ttft": "time to first token: from the item's start to the first streamed chunk carrying content (zwz's "
            "server-side zoom modes know their answer only at the end, so theirs is close to the latency; the "
            "client-side agent does not stream)",
    "items_per_s": "answered items per second of the measurement window (throughput)",
    "http_requests_per_s": "HTTP requests per second of the window, failed ones included",
    "goodput_per_s": "items answered successfully within the latency objective (latency <= slo_ms), per second "
                     "of the window",
    "slo_attainment": "share of the finished items (answered or failed) that were answered within slo_ms",
    "accuracy": "share of correct answers among the answers the rules (or the judge) decided; undecided "
                "answers are counted as unscored, failed items are not answers",
    "speed": "inference speed as in the paper (Fig. 5): the inverse of the mean per-item latency, items/s per "
             "client stream",
    "speed_ratio": "a mode's mean item latency / single-pass mean item latency at the same concurrency "
                   "(how many times slower than the single pass; the paper's ~10x for tool-use agents)",
    "window": "closed-loop load: each user sends its next item as soon as the last one finishes; the window "
              "opens after every user finished its warm-up items (statistics reset; items in flight then count "
              "when they finish) and closes when the items in flight at duration_s have finished",
}


# ------------------------------------------------------------------------------------------------ one cell
def _row(cell: dict[str, Any], kind: str, name: str | None = None) -> dict[str, Any] | None:
    name = cell["mode"] if name is None else name
    return next((r for r in cell["rows"] if r["type"] == kind and r["name"] == name), None)


def _times(row: dict[str, Any] | None) -> dict[str, float] | None:
    if not row or not row.get("timed"):
        return None
    return {k: row[k] for k in ("p50", "p90", "p99", "mean", "min", "max")}


def summarize_cell(cell: dict[str, Any], slo_ms: float) -> dict[str, Any]:
    """The figures of one (mode, users) cell, from its Locust rows (see ``zwz.loadtest.users``)."""
    window = cell["window_s"]
    item, score, slo = _row(cell, "ITEM"), _row(cell, "SCORE"), _row(cell, "SLO")
    unscored, calls = _row(cell, "UNSCORED"), _row(cell, "CALLS")
    n_items = item["requests"] if item else 0
    failed = item["failures"] if item else 0
    answered = n_items - failed
    scored = score["requests"] if score else 0
    correct = scored - (score["failures"] if score else 0)
    good = (slo["requests"] - slo["failures"]) if slo else 0
    http = [r for r in cell["rows"] if r["type"] == "POST"]
    latency = _times(item)
    errors = [{"where": f"{e['type']} {e['name']}", "error": e["error"], "count": e["count"]}
              for e in cell["errors"] if e["type"] in ("ITEM", "POST") or (e["type"] == "UNSCORED"
              and e["error"].startswith("judge"))]
    server = cell.get("server")
    server_summary = None
    if server:
        modes = server["by_mode"].values()
        n = sum(m["requests"] for m in modes)
        timed = [(m["requests"], m["mean_duration_ms"]) for m in modes if m["mean_duration_ms"] is not None]
        server_summary = {"requests": n, "mean_duration_ms": (sum(c * d for c, d in timed) / sum(c for c, _ in timed)
                                                              if timed else None),
                          "mean_batch_size": server["mean_batch_size"], "errors": server["errors"]}
    return {
        "mode": cell["mode"], "users": cell["users"], "window_s": window, "items": n_items, "answered": answered,
        "failed": failed, "failure_rate": failed / n_items if n_items else None,
        "scored": scored, "correct": correct, "unscored": unscored["requests"] if unscored else 0,
        "accuracy": correct / scored if scored else None,
        "latency_ms": latency, "ttft_ms": _times(_row(cell, "TTFT")),
        "items_per_s": answered / window if window else None,
        "http_requests": sum(r["requests"] for r in http), "http_failures": sum(r["failures"] for r in http),
        "http_requests_per_s": sum(r["requests"] for r in http) / window if window else None,
        "goodput_per_s": good / window if window else None,
        "slo_attainment": good / n_items if n_items else None,
        "model_calls_mean": calls["mean"] if calls and calls.get("timed") else None,
        "speed_items_per_s": 1e3 / latency["mean"] if latency and latency["mean"] else None,
        "client_cpu_s": cell.get("client_cpu_s"), "cut_off_items": cell.get("cut_off_items", 0),
        "warmup_complete": cell["warmup"]["complete"], "server": server_summary, "errors": errors,
        "client_exceptions": cell.get("client_exceptions", []),
    }


# ------------------------------------------------------------------------------------------------ the sweep
def _mode_order(mode: str) -> int:
    return MODES.index(mode) if mode in MODES else len(MODES)


def build_report(cells: Iterable[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """Aggregate cell results; ``meta`` must hold ``slo_ms`` and may hold model, endpoint, settings, ...

    >>> rows = lambda mode, t: [{"type": "ITEM", "name": mode, "requests": 4, "failures": 0, "timed": 4,
    ...     "p50": t, "p90": t, "p99": t, "mean": t, "min": t, "max": t},
    ...     {"type": "SCORE", "name": mode, "requests": 4, "failures": 1, "timed": 4},
    ...     {"type": "SLO", "name": mode, "requests": 4, "failures": 0, "timed": 4}]
    >>> cell = lambda mode, t: {"mode": mode, "users": 1, "window_s": 2.0, "rows": rows(mode, t), "errors": [],
    ...                         "warmup": {"complete": True}}
    >>> r = build_report([cell("single", 100), cell("agent", 1000)], {"slo_ms": 500})
    >>> r["cells"][0]["items_per_s"], r["accuracy"]["agent"]["accuracy"], r["speed_ratio"][0]["agent"]["mean"]
    (2.0, 0.75, 10.0)
    """
    slo_ms = meta["slo_ms"]
    summaries = sorted((summarize_cell(c, slo_ms) for c in cells), key=lambda s: (_mode_order(s["mode"]), s["users"]))
    accuracy: dict[str, Any] = {}
    for s in summaries:
        a = accuracy.setdefault(s["mode"], {"scored": 0, "correct": 0, "unscored": 0, "answered": 0})
        for k in ("scored", "correct", "unscored", "answered"):
            a[k] += s[k]
    for a in accuracy.values():
        a["accuracy"] = a["correct"] / a["scored"] if a["scored"] else None
    by_key = {(s["mode"], s["users"]): s for s in summaries}
    ratios = []
    for users in sorted({s["users"] for s in summaries}):
        base = by_key.get(("single", users))
        if not base or not base["latency_ms"]:
            continue
        entry: dict[str, Any] = {"users": users}
        for mode in sorted({s["mode"] for s in summaries} - {"single"}, key=_mode_order):
            other = by_key.get((mode, users))
            if not other or not other["latency_ms"]:
                continue
            entry[mode] = {
                "mean": other["latency_ms"]["mean"] / base["latency_ms"]["mean"],
                "p50": other["latency_ms"]["p50"] / base["latency_ms"]["p50"] if base["latency_ms"]["p50"] else None,
                "throughput": (base["items_per_s"] / other["items_per_s"]) if other["items_per_s"] else None,
            }
        ratios.append(entry)
    report = dict(meta)
    report |= {"definitions": DEFINITIONS, "cells": summaries, "accuracy": accuracy, "speed_ratio": ratios}
    report["failed_items"] = sum(s["failed"] for s in summaries)
    return report


# ------------------------------------------------------------------------------------------------ rendering
def _ms(v: float | None) -> str:
    return ms(v, unit=False)  # the column headers carry the unit


def _pct(v: float | None) -> str:
    return pct(v, 1)


def results_table(report: dict[str, Any]) -> list[str]:
    """The main table (also what ``zwz bench`` prints)."""
    rows = []
    for s in report["cells"]:
        lat, ttft = s["latency_ms"] or {}, s["ttft_ms"] or {}
        rows.append([s["mode"], str(s["users"]), str(s["items"]), str(s["failed"]),
                     f"{_pct(s['accuracy'])} ({s['correct']}/{s['scored']})", _ms(lat.get("p50")), _ms(lat.get("p90")),
                     _ms(lat.get("p99")), _ms(ttft.get("p50")), _ms(ttft.get("p99")), num(s["items_per_s"]),
                     num(s["goodput_per_s"]), _pct(s["slo_attainment"]), num(s["model_calls_mean"], 1)])
    return md_table(["mode", "users", "items", "failed", "accuracy % (correct/scored)", "p50 ms", "p90 ms", "p99 ms",
                   "TTFT p50", "TTFT p99", "items/s", f"goodput/s (≤{report['slo_ms']:g} ms)", "within SLO %",
                   "calls/item"], rows)


def ratio_table(report: dict[str, Any]) -> list[str]:
    modes = sorted({m for e in report["speed_ratio"] for m in e if m != "users"}, key=_mode_order)
    if not modes:
        return []
    rows = [[str(e["users"]), *(f"{num(e[m]['mean'])}× ({num(e[m]['p50'])}×, {num(e[m]['throughput'])}×)"
                                if m in e else "–" for m in modes)] for e in report["speed_ratio"]]
    return md_table(["users", *(f"{m} / single" for m in modes)], rows)


def render_markdown(report: dict[str, Any]) -> str:
    out = [f"# zwz bench: {report.get('model', '?')} on {report.get('benchmark', '?')}", ""]
    settings = ", ".join(f"{k}={v}" for k, v in (report.get("settings") or {}).items())
    out.append(f"Endpoint `{report.get('endpoint', '?')}`, {report.get('created', '')}; {report.get('duration_s')} s "
               f"per cell; latency objective {report['slo_ms']:g} ms. Settings: {settings}.")
    if report.get("random_weights"):
        out += ["", "**The served weights are random: accuracies mean nothing; speeds and costs do.**"]
    out += ["", "## Accuracy and speed by mode and concurrency", "", *results_table(report)]
    ratios = ratio_table(report)
    if ratios:
        out += ["", "## Speed relative to the single pass", "",
                "Mean item latency of the mode / the single pass's at the same concurrency (p50 ratio, and "
                "single-pass items/s / the mode's items/s, in brackets):", "", *ratios]
    out += ["", "## Accuracy by mode (all concurrency levels pooled)", ""]
    out += md_table(["mode", "accuracy %", "correct / scored", "unscored", "answered"],
                  [[m, _pct(a["accuracy"]), f"{a['correct']}/{a['scored']}", str(a["unscored"]), str(a["answered"])]
                   for m, a in sorted(report["accuracy"].items(), key=lambda kv: _mode_order(kv[0]))])
    server_rows = [[s["mode"], str(s["users"]), f"{s['server']['requests']:.0f}", _ms(s["server"]["mean_duration_ms"]),
                    num(s["server"]["mean_batch_size"]),
                    ", ".join(f"{k}: {v:.0f}" for k, v in s["server"]["errors"].items()) or "–",
                    num(s["client_cpu_s"], 1)] for s in report["cells"] if s["server"]]
    if server_rows:
        out += ["", "## The server's side (zwz `/metrics` over each window)", ""]
        out += md_table(["mode", "users", "requests", "mean ms", "mean batch size", "errors by status",
                       "client CPU s"], server_rows)
    out += ["", "## Definitions", ""] + [f"- **{k}**: {v}." for k, v in report["definitions"].items()]
    notes = []
    for s in report["cells"]:
        tag = f"{s['mode']} ×{s['users']}"
        for e in s["errors"][:5]:
            notes.append(f"- {tag}, `{e['where']}`: {e['count']} × {e['error']}")
        if s["cut_off_items"]:
            notes.append(f"- {tag}: {s['cut_off_items']} items still in flight at the drain timeout were cut off")
        if not s["warmup_complete"]:
            notes.append(f"- {tag}: the warm-up did not finish in time; cold requests may be in the figures")
        for e in s["client_exceptions"]:
            notes.append(f"- {tag}: client exception ({e['count']} ×): {e['message']}")
    if notes:
        out += ["", "## Errors and notes", "", *notes]
    if report.get("plot"):
        out += ["", f"![accuracy vs speed]({report['plot']})"]
    return "\n".join(out) + "\n"


def plot_accuracy_vs_speed(report: dict[str, Any], path: str | Path) -> Path:
    """Left: accuracy vs inference speed (paper Fig. 5, one point per concurrency level); right: throughput and
    goodput vs concurrency."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5), dpi=120)
    modes = sorted({s["mode"] for s in report["cells"]}, key=_mode_order)
    missing = []
    for i, mode in enumerate(modes):
        color = f"C{i}"
        cells = [s for s in report["cells"] if s["mode"] == mode]
        accuracy = report["accuracy"][mode]["accuracy"]
        points = [(s["speed_items_per_s"], s["users"]) for s in cells if s["speed_items_per_s"]]
        if accuracy is None or not points:
            missing.append(mode)
        else:
            xs = [x for x, _ in points]
            left.plot(xs, [100 * accuracy] * len(xs), "o-", color=color, label=mode, clip_on=False)
            for x, users in points:
                left.annotate(f"×{users}", (x, 100 * accuracy), textcoords="offset points", xytext=(4, 5), fontsize=8)
        users = [s["users"] for s in cells]
        right.plot(users, [s["items_per_s"] or 0 for s in cells], "o-", color=color, label=f"{mode} items/s")
        right.plot(users, [s["goodput_per_s"] or 0 for s in cells], "s--", color=color, alpha=0.6,
                   label=f"{mode} goodput")
    if any(line.get_xdata().size for line in left.get_lines()):
        log_x_axis(left, subs=(1.0, 2.0, 5.0))
        left.legend(fontsize=8)
    if missing:
        left.text(0.02, 0.97, "no scored answers: " + ", ".join(missing), transform=left.transAxes, fontsize=8,
                  va="top")
    style_accuracy_axis(left, report, "inference speed (1 / mean item latency, items/s; log)")
    right.set_xlabel("concurrent users")
    right.set_ylabel("items/s")
    right.set_title(f"throughput and goodput (≤{report['slo_ms']:g} ms)", fontsize=10)
    right.set_xticks(sorted({s["users"] for s in report["cells"]}))
    right.grid(True, alpha=0.3)
    right.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.14))  # below: lines stay visible
    return save_figure(fig, path)


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``accuracy_vs_speed.png`` (skipped with a warning without matplotlib), ``report.json``, ``report.md``."""
    return write_report_files(report, out_dir, plot=plot_accuracy_vs_speed, render=render_markdown)
