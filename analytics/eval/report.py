"""The ``zwz eval`` report: accuracy per mode and dimension, the zooming gap (paper Table 7), cost per item.

Accuracies are fractions in ``report.json`` and percentages in ``report.md``. An item counts in a mode's
accuracy only when it was decided (by rule or judge); rule-undecided items without a judge are ``unjudged``
and shown with the accuracy range they allow; failed requests and judge failures are errors, never 0.

    report = build_report(store.records.values(), {"single": items, "regional": items}, meta={...})
    write_report(report, "runs/zoomworld")        # report.json, report.md, accuracy_vs_speed.png
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from zwz.distill.benchmark import DIMENSIONS, BenchItem
from zwz.reporting import log_x_axis, md_table, ms, num, pct, pyplot, save_figure, style_accuracy_axis
from zwz.reporting import write_report_files

__all__ = ["build_report", "plot_accuracy_vs_speed", "render_markdown", "write_report"]

_NO_DIMENSION = "(none)"
_LABELS = {"counting": "Counting", "ocr": "OCR", "color": "Color", "structure": "Structure", "material": "Material",
           "identification": "Identification"}


def _dims(items: Iterable[BenchItem]) -> list[str]:
    found = {item.dimension or _NO_DIMENSION for item in items}
    return [d for d in DIMENSIONS if d in found] + sorted(found - set(DIMENSIONS))


def _accuracy(recs: list[dict[str, Any]]) -> dict[str, Any]:
    decided = [r for r in recs if r.get("score") is not None and not r.get("error")]
    unjudged = sum(r.get("decided_by") == "unjudged" for r in recs)
    correct = float(sum(r["score"] for r in decided))
    out = {"n_decided": len(decided), "n_unjudged": unjudged, "n_errors": sum(bool(r.get("error")) for r in recs),
           "accuracy": correct / len(decided) if decided else None}
    if unjudged:  # the range the undecided items allow, so an unjudged run never reads as a plain score
        total = len(decided) + unjudged
        out["accuracy_if_unjudged_wrong"] = correct / total
        out["accuracy_if_unjudged_right"] = (correct + unjudged) / total
    return out


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _mode_stats(recs: list[dict[str, Any]], n_items: int, dims: list[str]) -> dict[str, Any]:
    answered = [r for r in recs if r.get("error_stage") != "request"]
    latencies = [r["latency_ms"] for r in answered if r.get("latency_ms") is not None]
    stats: dict[str, Any] = {"n_items": n_items, "n_answered": len(answered), "n_missing": n_items - len(recs)}
    stats |= _accuracy(recs)
    stats["n_judge_errors"] = sum(r.get("error_stage") == "judge" for r in recs)
    stats["decided_by"] = {k: sum(r.get("decided_by") == k for r in recs) for k in ("rule", "judge", "unjudged")}
    stats["by_dimension"] = {
        d: {"n_items": sum((r.get("dimension") or _NO_DIMENSION) == d for r in recs),
            **_accuracy([r for r in recs if (r.get("dimension") or _NO_DIMENSION) == d])} for d in dims
    }  # fmt: skip
    stats["latency_ms"] = ({"p50": float(np.percentile(latencies, 50)), "p90": float(np.percentile(latencies, 90)),
                            "mean": float(np.mean(latencies))} if latencies else None)  # fmt: skip
    stats["model_calls_mean"] = _mean([r["model_calls"] for r in answered if r.get("model_calls") is not None])
    stats["image_encodings_mean"] = _mean([r["image_encodings"] for r in answered
                                           if r.get("image_encodings") is not None])
    stats["tokens_mean"] = {k: _mean([r["tokens"][k] for r in answered if (r.get("tokens") or {}).get(k) is not None])
                            for k in ("prompt", "completion", "visual")}  # fmt: skip
    return stats


def build_report(records: Iterable[dict[str, Any]], planned: Mapping[str, list[BenchItem]],
                 meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Aggregate the records of the planned (mode -> items) set; records of other items or modes are ignored.

    >>> from zwz.distill.benchmark import BenchItem
    >>> items = [BenchItem(str(i), b"", None, "q", "a", dimension="ocr") for i in range(2)]
    >>> recs = [{"id": i, "mode": m, "score": s, "decided_by": "rule", "latency_ms": t, "dimension": "ocr"}
    ...         for i, m, s, t in [("0", "single", 0.0, 10), ("1", "single", 1.0, 30),
    ...                            ("0", "regional", 1.0, 5), ("1", "regional", 1.0, 5)]]
    >>> r = build_report(recs, {"single": items, "regional": items})
    >>> r["modes"]["single"]["accuracy"], r["zooming_gap"]["gap"]["ocr"], r["modes"]["single"]["latency_ms"]["p50"]
    (0.5, 0.5, 20.0)
    """
    by_mode: dict[str, list[dict[str, Any]]] = {mode: [] for mode in planned}
    wanted = {mode: {item.id for item in items} for mode, items in planned.items()}
    for record in records:
        if record.get("id") in wanted.get(record.get("mode"), ()):
            by_mode[record["mode"]].append(record)
    dims = _dims(item for items in planned.values() for item in items)
    modes = {mode: _mode_stats(recs, len(planned[mode]), dims) for mode, recs in by_mode.items()}
    base = (modes.get("single") or {}).get("latency_ms")
    for stats in modes.values():
        lat = stats["latency_ms"]
        stats["latency_p50_vs_single"] = lat["p50"] / base["p50"] if lat and base and base["p50"] > 0 else None
    report: dict[str, Any] = dict(meta or {})
    report |= {"dimensions": dims, "modes": modes, "zooming_gap": _zooming_gap(modes, dims)}
    report["errors"] = [{"mode": r["mode"], "id": r["id"], "stage": r.get("error_stage"), "error": r["error"]}
                        for recs in by_mode.values() for r in recs if r.get("error")]  # fmt: skip
    return report


def _zooming_gap(modes: dict[str, dict[str, Any]], dims: list[str]) -> dict[str, Any] | None:
    """Paper Table 7: Global (the single pass), Regional and gap = Regional - Global per dimension; Avg weighted
    by item count."""
    if "single" not in modes or "regional" not in modes:
        return None
    table: dict[str, Any] = {"dimensions": dims}
    for view in ("single", "regional"):
        row = {d: modes[view]["by_dimension"][d]["accuracy"] for d in dims}
        table[view] = row | {"avg": modes[view]["accuracy"]}  # overall accuracy = the item-weighted average
    table["gap"] = {k: (table["regional"][k] - table["single"][k])
                    if table["regional"][k] is not None and table["single"][k] is not None else None
                    for k in [*dims, "avg"]}  # fmt: skip
    table["n_items"] = {d: modes["single"]["by_dimension"][d]["n_items"] for d in dims}
    return table


# -------------------------------------------------------------------------------------------------- rendering
def render_markdown(report: dict[str, Any]) -> str:
    """``report.md``: accuracy, the zooming gap (Table 7 layout), cost per item, and what was not scored."""
    dims, modes = report["dimensions"], report["modes"]
    labels = [_LABELS.get(d, d) for d in dims]
    out = [f"# zwz eval: {report.get('model', '?')} on {report.get('benchmark', '?')}", ""]
    if report.get("endpoint"):
        out.append(f"Endpoint `{report['endpoint']}`, {report.get('created', '')}. Settings: "
                   + ", ".join(f"{k}={v}" for k, v in (report.get("settings") or {}).items()) + ".")
    if report.get("random_weights"):
        out += ["", "**The served weights are random: the accuracies below mean nothing; the costs do.**"]
    out += ["", "## Accuracy (%)", ""]
    rows = []
    for mode, s in modes.items():
        span = (f"{pct(s['accuracy_if_unjudged_wrong'])}–{pct(s['accuracy_if_unjudged_right'])}"
                if s["n_unjudged"] else "")
        rows.append([mode, pct(s["accuracy"]), *(pct(s["by_dimension"][d]["accuracy"]) for d in dims),
                     f"{s['n_decided']}/{s['n_items']}", str(s["n_unjudged"]), span, str(s["n_errors"])])
    out += md_table(["mode", "all", *labels, "decided / items", "unjudged", "range if unjudged", "errors"], rows)
    gap = report.get("zooming_gap")
    if gap:
        out += ["", "## Zooming gap (paper Table 7 layout: Global is the single pass; gap = Regional − Global, "
                "Avg weighted by items)", ""]
        out += md_table(["Dual-View", *labels, "Avg"], [
            ["Global (single)", *(pct(gap["single"][k]) for k in [*dims, "avg"])],
            ["Regional", *(pct(gap["regional"][k]) for k in [*dims, "avg"])],
            ["*Zooming Gap*", *(pct(gap["gap"][k]) for k in [*dims, "avg"])],
            ["items", *(str(gap["n_items"][d]) for d in dims), str(sum(gap["n_items"].values()))],
        ])
        if modes["single"]["n_unjudged"] or modes["regional"]["n_unjudged"]:
            out += ["", "Over decided items only: the two views leave different items unjudged (see below)."]
    out += ["", "## Cost per item", ""]
    rows = []
    for mode, s in modes.items():
        lat, tok = s["latency_ms"] or {}, s["tokens_mean"]
        rows.append([mode, ms(lat.get("p50")), ms(lat.get("p90")), num(s["latency_p50_vs_single"]),
                     num(s["model_calls_mean"]), num(s["image_encodings_mean"]), num(tok["prompt"], 0),
                     num(tok["visual"], 0), num(tok["completion"], 1)])
    out += md_table(["mode", "p50 latency", "p90 latency", "p50 / single p50", "model calls", "image encodings",
                   "prompt tokens", "visual tokens", "completion tokens"], rows)
    out += ["", "Latency is per item, client-measured, under the run's concurrency; model calls and image "
                "encodings are means per answered item."]
    notes = []
    for mode, s in modes.items():
        if s["n_unjudged"]:
            notes.append(f"- {mode}: {s['n_unjudged']} answers the rules could not decide are **unjudged** (not "
                         "counted in the accuracy); rerun with --judge-url/--judge-model to judge them.")
        if s["n_errors"]:
            notes.append(f"- {mode}: {s['n_errors']} errors ({s['n_judge_errors']} from the judge); "
                         "rerun to retry them.")
        if s["n_missing"]:
            notes.append(f"- {mode}: {s['n_missing']} items not run yet.")
    if notes:
        out += ["", "## Not scored", "", *notes]
    for e in report.get("errors", [])[:20]:
        out.append(f"  - `{e['mode']}` `{e['id']}`: {e['error']}")
    if report.get("plot"):
        out += ["", f"![accuracy vs speed]({report['plot']})"]
    return "\n".join(out) + "\n"


def plot_accuracy_vs_speed(report: dict[str, Any], path: str | Path) -> Path:
    """Paper Fig. 5's view: x = p50 latency per item (log), y = accuracy, one labelled point per mode."""
    plt = pyplot()
    points = [(m, s["latency_ms"]["p50"] / 1e3, 100 * s["accuracy"]) for m, s in report["modes"].items()
              if s["latency_ms"] and s["accuracy"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for mode, x, y in points:
        ax.scatter([x], [y], s=50, zorder=3, clip_on=False)
        ax.annotate(mode, (x, y), textcoords="offset points", xytext=(6, 5), fontsize=9)
    if points:
        log_x_axis(ax)
    else:
        ax.text(0.5, 0.5, "no mode has both a latency and an accuracy", ha="center", transform=ax.transAxes)
    style_accuracy_axis(ax, report, "p50 latency per item (s, log scale)")
    return save_figure(fig, path)


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``accuracy_vs_speed.png`` (skipped with a warning without matplotlib), ``report.md``."""
    return write_report_files(report, out_dir, plot=plot_accuracy_vs_speed, render=render_markdown)
