"""The ``zwz eval`` report: accuracy per mode and dimension, the zooming gap (paper Table 7), the
relative-attention coverage of the evidence box (paper Table 8), cost per item; 95% intervals throughout
(:mod:`zwz.analytics.eval.intervals`).

Accuracies are fractions in ``report.json`` and percentages in ``report.md``. An item counts in a mode's
accuracy only when it was decided (by rule or judge); rule-undecided items without a judge are ``unjudged``
and shown with the accuracy range they allow; failed requests and judge failures are errors, never 0.

The statistics (``report.json`` keys):

- ``modes[m]["ci95"]``, ``modes[m]["by_dimension"][d]["ci95"]``: accuracy = k / n over the decided items
  (``n_correct`` = k, ``n_decided`` = n), Wilson's 95% score interval.
- ``zooming_gap``: Global (the single pass) and Regional accuracy per dimension as above; ``gap`` =
  Regional - Global over the *paired* items (decided in both views), i.e. the mean per-item difference, with
  Newcombe's paired 95% interval (``gap_ci95``, ``n_pairs``). When both views decided every item this is
  exactly Regional - Global; the overall ("avg") gap pools all pairs, so it is weighted by items, as the
  paper's Table 7 Avg is.
- ``coverage`` (with ``zwz eval --coverage``): per item, Coverage(B) = the share of the relative-attention
  map's mass inside the evidence box (paper Eq. 2, computed by the server) and the box's share of the image
  area (the coverage a uniform map would give); per dimension and overall, their means, the mean per-item
  excess (coverage - area share) with 95% normal intervals, and the ratio of the means. Coverage above the
  area share = the model looks where the answer is.

    report = build_report(store.records.values(), {"single": items, "regional": items}, meta={...})
    write_report(report, "runs/zoomworld")        # report.json, report.md, accuracy_vs_speed.png
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from zwz.analytics.eval.intervals import Interval, mean_interval, newcombe_paired, wilson
from zwz.distill.benchmark import DIMENSIONS, BenchItem
from zwz.reporting import log_x_axis, md_table, ms, num, pct, pyplot, save_figure, style_accuracy_axis
from zwz.reporting import write_report_files

__all__ = ["DIMENSION_LABELS", "build_report", "coverage_stats", "interval_text", "ordered_dimensions",
           "plot_accuracy_vs_speed", "render_markdown", "write_report"]

_NO_DIMENSION = "(none)"
DIMENSION_LABELS = {"counting": "Counting", "ocr": "OCR", "color": "Color", "structure": "Structure",
                    "material": "Material", "identification": "Identification", "all": "All"}  # as Table 7 heads them
_LABELS = DIMENSION_LABELS


def _dims(items: Iterable[BenchItem]) -> list[str]:
    return ordered_dimensions(item.dimension for item in items)


def ordered_dimensions(names: Iterable[str | None]) -> list[str]:
    """The dimensions present, in ZoomBench's order, then any others sorted."""
    found = {name or _NO_DIMENSION for name in names}
    return [d for d in DIMENSIONS if d in found] + sorted(found - set(DIMENSIONS))


def _decided(record: dict[str, Any]) -> bool:
    return record.get("score") is not None and not record.get("error")


def _ci(interval: Interval | None) -> list[float | None] | None:
    return None if interval is None else [interval.low, interval.high]


def _accuracy(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy = k / n over the decided records, with its Wilson 95% interval (``ci95``)."""
    decided = [r for r in recs if _decided(r)]
    unjudged = sum(r.get("decided_by") == "unjudged" for r in recs)
    correct = float(sum(r["score"] for r in decided))
    out = {"n_decided": len(decided), "n_unjudged": unjudged, "n_errors": sum(bool(r.get("error")) for r in recs),
           "n_correct": correct, "accuracy": correct / len(decided) if decided else None,
           "ci95": _ci(wilson(correct, len(decided))) if decided else None}
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
                 meta: dict[str, Any] | None = None,
                 coverage: Iterable[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Aggregate the records of the planned (mode -> items) set; records of other items or modes are ignored.
    ``coverage``: the coverage pass's records (``coverage.jsonl``), summarised by :func:`coverage_stats`.

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
    report |= {"dimensions": dims, "modes": modes, "zooming_gap": _zooming_gap(by_mode, modes, dims)}
    report["errors"] = [{"mode": r["mode"], "id": r["id"], "stage": r.get("error_stage"), "error": r["error"]}
                        for recs in by_mode.values() for r in recs if r.get("error")]  # fmt: skip
    if coverage is not None:
        ids = {item.id for items in planned.values() for item in items}
        report["coverage"] = coverage_stats([r for r in coverage if r.get("id") in ids], dims)
        report["errors"] += [{"mode": "coverage", "id": r["id"], "stage": r.get("error_stage"), "error": r["error"]}
                             for r in coverage if r.get("id") in ids and r.get("error")]  # fmt: skip
    return report


def _zooming_gap(by_mode: dict[str, list[dict[str, Any]]], modes: dict[str, dict[str, Any]],
                 dims: list[str]) -> dict[str, Any] | None:
    """Paper Table 7: Global (the single pass), Regional and gap = Regional - Global per dimension and overall
    ("avg": all pairs pooled, so weighted by items as the paper's Avg is). The gap is the mean per-item
    difference over the items decided in both views, with Newcombe's paired 95% interval (method 10)."""
    if "single" not in modes or "regional" not in modes:
        return None
    table: dict[str, Any] = {"dimensions": dims}
    for view in ("single", "regional"):
        row = {d: modes[view]["by_dimension"][d]["accuracy"] for d in dims}
        table[view] = row | {"avg": modes[view]["accuracy"]}  # overall accuracy = the item-weighted average
    global_view = {r["id"]: r for r in by_mode["single"] if _decided(r)}
    pairs = [(r, global_view[r["id"]]) for r in by_mode["regional"] if _decided(r) and r["id"] in global_view]
    table["gap"], table["gap_ci95"], table["n_pairs"] = {}, {}, {}
    for key in [*dims, "avg"]:
        chosen = [p for p in pairs if key == "avg" or (p[0].get("dimension") or _NO_DIMENSION) == key]
        gap = newcombe_paired([r["score"] for r, _ in chosen], [g["score"] for _, g in chosen]) if chosen else None
        table["gap"][key] = None if gap is None else gap.estimate
        table["gap_ci95"][key] = _ci(gap)
        table["n_pairs"][key] = len(chosen)
    table["gap_method"] = "paired: mean per-item (regional - global) difference, Newcombe (1998) method 10"
    table["n_items"] = {d: modes["single"]["by_dimension"][d]["n_items"] for d in dims}
    return table


def coverage_stats(records: Iterable[dict[str, Any]], dims: list[str] | None = None) -> dict[str, Any]:
    """Paper Table 8's statistic beside its baseline: per dimension and overall (``all``), over the records
    with a coverage: ``coverage`` (mean Coverage(B), Eq. 2, with a 95% normal interval), ``area_share`` (mean
    share of the image inside the box: a uniform map's coverage), ``excess`` (mean per-item coverage - area
    share, 95% interval: above 0 = attention concentrates on the evidence) and ``ratio`` (mean coverage / mean
    area share).

    >>> recs = [{"id": "a", "dimension": "ocr", "coverage": 0.3, "area_share": 0.1},
    ...         {"id": "b", "dimension": "ocr", "coverage": 0.1, "area_share": 0.1}]
    >>> s = coverage_stats(recs)["all"]
    >>> round(s["coverage"]["estimate"], 3), round(s["excess"]["estimate"], 3), round(s["ratio"], 3)
    (0.2, 0.1, 2.0)
    """
    records = list(records)
    ok = [r for r in records if r.get("coverage") is not None and not r.get("error")]
    dims = dims if dims is not None else ordered_dimensions(r.get("dimension") for r in ok)

    def summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
        if not recs:
            return {"n": 0, "coverage": None, "area_share": None, "excess": None, "ratio": None}
        cov = mean_interval([r["coverage"] for r in recs], bounds=(0.0, 1.0))
        area = mean_interval([r["area_share"] for r in recs], bounds=(0.0, 1.0))
        excess = mean_interval([r["coverage"] - r["area_share"] for r in recs])
        return {"n": len(recs), "coverage": cov.as_dict(), "area_share": area.as_dict(), "excess": excess.as_dict(),
                "ratio": cov.estimate / area.estimate if area.estimate > 0 else None}

    by_dim = {d: summary([r for r in ok if (r.get("dimension") or _NO_DIMENSION) == d]) for d in dims}
    return {"dimensions": dims, "all": summary(ok), "by_dimension": by_dim,
            "n_errors": sum(bool(r.get("error")) for r in records), "layer": _one_layer(ok),
            "method": "mean per-item values, 95% normal-approximation intervals (mean +- 1.96 s / sqrt(n))"}


def _one_layer(records: list[dict[str, Any]]) -> int | list[int] | None:
    layers = sorted({r["layer"] for r in records if r.get("layer") is not None})
    return layers[0] if len(layers) == 1 else (layers or None)


def interval_text(estimate: float | None, ci: list[float | None] | None, *, digits: int = 1,
                  signed: bool = False) -> str:
    """A fraction and its interval as percentages: ``52.3 [47.1, 57.4]``.

    >>> interval_text(0.8, [0.4902, 0.9433]), interval_text(0.1, [-0.02, 0.2], signed=True)
    ('80.0 [49.0, 94.3]', '+10.0 [-2.0, +20.0]')
    >>> interval_text(None, None)
    '–'
    """
    if estimate is None:
        return pct(None)
    fmt = (lambda v: f"{100 * v:+.{digits}f}") if signed else (lambda v: f"{100 * v:.{digits}f}")  # noqa: E731
    if not ci or ci[0] is None or ci[1] is None:
        return fmt(estimate)
    return f"{fmt(estimate)} [{fmt(ci[0])}, {fmt(ci[1])}]"


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
    out += ["", "### With 95% Wilson intervals (k correct of n decided)", ""]
    rows = []
    for mode, s in modes.items():
        for key, stat in [("all", s), *((d, s["by_dimension"][d]) for d in dims)]:
            rows.append([mode, _LABELS.get(key, key), f"{num(stat['n_correct'], 0)}/{stat['n_decided']}",
                         interval_text(stat["accuracy"], stat["ci95"])])
    out += md_table(["mode", "dimension", "k/n", "accuracy % [95% CI]"], rows)
    gap = report.get("zooming_gap")
    if gap:
        out += ["", "## Zooming gap (paper Table 7 layout: Global is the single pass; gap = Regional − Global, "
                "Avg weighted by items)", ""]
        out += md_table(["Dual-View", *labels, "Avg"], [
            ["Global (single)", *(pct(gap["single"][k]) for k in [*dims, "avg"])],
            ["Regional", *(pct(gap["regional"][k]) for k in [*dims, "avg"])],
            ["*Zooming Gap*", *(pct(gap["gap"][k]) for k in [*dims, "avg"])],
            ["items", *(str(gap["n_items"][d]) for d in dims), str(sum(gap["n_items"].values()))],
            ["gap, 95% CI (paired)", *(interval_text(gap["gap"][k], gap["gap_ci95"][k], signed=True)
                                       for k in [*dims, "avg"])],
            ["pairs", *(str(gap["n_pairs"][k]) for k in [*dims, "avg"])],
        ])
        out += ["", "The gap is the mean per-item difference over the pairs (items decided in both views), with "
                "Newcombe's paired 95% interval (method 10)."]
        if modes["single"]["n_unjudged"] or modes["regional"]["n_unjudged"]:
            out += ["", "Over decided items only: the two views leave different items unjudged (see below)."]
    out += _coverage_markdown(report.get("coverage"))
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


def _coverage_markdown(cov: dict[str, Any] | None) -> list[str]:
    """The coverage section (paper Table 8's statistic beside the box's area share)."""
    if cov is None:
        return []
    out = ["", "## Relative-attention coverage of the evidence box (paper Table 8, Eq. 2)", ""]
    rows = []
    for key, stat in [*((d, cov["by_dimension"][d]) for d in cov["dimensions"]), ("all", cov["all"])]:
        if not stat["n"]:
            rows.append([_LABELS.get(key, key), "0", pct(None), pct(None), pct(None), pct(None)])
            continue
        c, a, e = stat["coverage"], stat["area_share"], stat["excess"]
        rows.append([_LABELS.get(key, key), str(stat["n"]), interval_text(c["estimate"], [c["low"], c["high"]]),
                     interval_text(a["estimate"], None),
                     interval_text(e["estimate"], [e["low"], e["high"]], signed=True),
                     num(stat["ratio"])])
    out += md_table(["dimension", "items", "coverage % [95% CI]", "box area share %",
                     "coverage − area share [95% CI]", "coverage / area share"], rows)
    layer = "" if cov.get("layer") is None else f" LLM layer {cov['layer']}."
    out += ["", "Coverage: the share of the relative-attention mass inside the evidence box; the area share is "
            "what a uniform map would give, so coverage above it means the model looks where the answer is. "
            f"Means over items, 95% normal intervals.{layer}"]
    smallest = min([s["n"] for s in [cov["all"], *cov["by_dimension"].values()] if s["n"]], default=0)
    if 0 < smallest < 30:
        out += ["", f"Some rows rest on {smallest} items: below ~30 the normal interval is too narrow."]
    if cov.get("n_errors"):
        out += ["", f"{cov['n_errors']} coverage requests failed (rerun to retry them)."]
    return out


def plot_accuracy_vs_speed(report: dict[str, Any], path: str | Path) -> Path:
    """Paper Fig. 5's view: x = p50 latency per item (log), y = accuracy with its Wilson 95% interval, one
    labelled point per mode."""
    plt = pyplot()
    points = [(m, s["latency_ms"]["p50"] / 1e3, 100 * s["accuracy"]) for m, s in report["modes"].items()
              if s["latency_ms"] and s["accuracy"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for mode, x, y in points:
        ci = report["modes"][mode].get("ci95")
        yerr = [[y - 100 * ci[0]], [100 * ci[1] - y]] if ci else None  # the Wilson 95% interval
        ax.errorbar([x], [y], yerr=yerr, fmt="o", ms=7, capsize=3, zorder=3, clip_on=False)
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
