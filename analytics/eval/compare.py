"""``zwz eval-compare``: several ``zwz eval`` runs side by side (the arms of an ablation, paper Table 6), with
their 95% intervals and the paper's figure where it gives one for that arm.

    zwz eval-compare runs/eval/direct runs/eval/no-box runs/eval/bbox-in-question runs/eval/bbox-in-image \\
        --labels "Direct synthesis" "R2I + no-box" "R2I + bbox-in-question" "R2I + bbox-in-image" \\
        --paper-arms direct no_box bbox_in_question bbox_in_image --out runs/eval/compare

Each RUN is a ``zwz eval --out`` folder (or its ``report.json``); the statistics are the ones the run's report
holds (:mod:`zwz.analytics.eval.report`): nothing is recomputed here. Writes under ``--out``:
``compare.md`` (a table per statistic: global accuracy, regional accuracy, zooming gap, coverage vs the box's
area share, accuracy vs speed per mode), ``compare.json`` (the same numbers), and the plots
``global_accuracy.png``, ``zooming_gap.png``, ``coverage.png`` (bars with 95% error bars) and
``accuracy_vs_speed.png`` (paper Fig. 5's view: accuracy vs mean latency per item, each arm's modes joined).
``--paper-arms`` keys (``-`` for none): :data:`zwz.analytics.eval.paper_figures.PAPER_ARMS`.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zwz.analytics.eval.paper_figures import PAPER_ARMS, paper_figure
from zwz.analytics.eval.report import DIMENSION_LABELS, interval_text, ordered_dimensions
from zwz.reporting import DASH, log_x_axis, md_table, ms, num, pyplot, save_figure

logger = logging.getLogger(__name__)

__all__ = ["build_comparison", "compare_runs", "load_run", "register", "render_comparison", "run",
           "write_comparison"]

_LABELS = DIMENSION_LABELS
_NO_ARM = "-"


# ------------------------------------------------------------------------------------------------ reading
def load_run(path: str | Path) -> dict[str, Any]:
    """A run's ``report.json`` (``path`` is the run folder or the file itself)."""
    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no report.json (is it a `zwz eval --out` folder?)")
    report = json.loads(file.read_text(encoding="utf-8"))
    if "modes" not in report:
        raise ValueError(f"{file}: not a zwz eval report (no 'modes')")
    return report


def _cell(stat: dict[str, Any] | None) -> dict[str, Any] | None:
    """An accuracy entry of a report -> {estimate, low, high, k, n}."""
    if not stat or stat.get("accuracy") is None:
        return None
    ci = stat.get("ci95") or [None, None]
    return {"estimate": stat["accuracy"], "low": ci[0], "high": ci[1], "k": stat.get("n_correct"),
            "n": stat["n_decided"]}


def _accuracy_row(report: dict[str, Any], mode: str, dims: list[str]) -> dict[str, Any] | None:
    stats = report["modes"].get(mode)
    if stats is None:
        return None
    return {"all": _cell(stats), **{d: _cell(stats["by_dimension"].get(d)) for d in dims}}


def _gap_row(report: dict[str, Any], dims: list[str]) -> dict[str, Any] | None:
    gap = report.get("zooming_gap")
    if not gap or "gap_ci95" not in gap:
        return None

    def one(key: str) -> dict[str, Any] | None:
        value = gap["gap"].get(key)
        if value is None:
            return None
        ci = gap["gap_ci95"][key] or [None, None]
        return {"estimate": value, "low": ci[0], "high": ci[1], "n": gap["n_pairs"][key]}

    return {"all": one("avg"), **{d: one(d) for d in dims}}


def _coverage_row(report: dict[str, Any], dims: list[str]) -> dict[str, Any] | None:
    cov = report.get("coverage")
    if not cov:
        return None

    def one(stat: dict[str, Any] | None) -> dict[str, Any] | None:
        if not stat or not stat["n"]:
            return None
        return {"coverage": stat["coverage"], "area_share": stat["area_share"], "excess": stat["excess"],
                "ratio": stat["ratio"], "n": stat["n"]}

    return {"all": one(cov["all"]), **{d: one(cov["by_dimension"].get(d)) for d in dims}}


def _speed_rows(report: dict[str, Any]) -> dict[str, Any]:
    rows = {}
    agent = (report["modes"].get("agent") or {}).get("latency_ms")
    for mode, stats in report["modes"].items():
        lat = stats.get("latency_ms")
        rows[mode] = {"accuracy": _cell(stats), "latency_mean_ms": lat["mean"] if lat else None,
                      "latency_p50_ms": lat["p50"] if lat else None, "model_calls_mean": stats.get("model_calls_mean"),
                      "latency_vs_agent": lat["mean"] / agent["mean"] if lat and agent and agent["mean"] > 0 else None}
    return rows


def _paper(statistic: str, arm: str | None, dims: list[str]) -> dict[str, Any]:
    found = {k: paper_figure(statistic, arm, k) for k in ["all", *dims]}
    return {k: {"value": f.value, "source": f.source, "exact": f.exact} for k, f in found.items() if f is not None}


def build_comparison(reports: Sequence[dict[str, Any]], labels: Sequence[str],
                     paper_arms: Sequence[str | None] | None = None,
                     runs: Sequence[str] | None = None) -> dict[str, Any]:
    """The numbers of ``compare.json``: per arm (label, paper arm), each statistic per dimension and overall.

    >>> r = {"modes": {"single": {"accuracy": 0.5, "ci95": [0.1, 0.9], "n_correct": 1.0, "n_decided": 2,
    ...                           "by_dimension": {}, "latency_ms": None, "model_calls_mean": None}},
    ...      "dimensions": []}
    >>> c = build_comparison([r], ["A"], ["no_box"])
    >>> c["arms"][0]["global_accuracy"]["all"]["estimate"], c["arms"][0]["paper"]["global_accuracy"]["all"]["value"]
    (0.5, 46.27)
    """
    if len(labels) != len(reports):
        raise ValueError(f"{len(reports)} runs but {len(labels)} labels")
    paper_arms = list(paper_arms) if paper_arms is not None else [None] * len(reports)
    if len(paper_arms) != len(reports):
        raise ValueError(f"{len(reports)} runs but {len(paper_arms)} --paper-arms")
    unknown = [a for a in paper_arms if a is not None and a not in PAPER_ARMS]
    if unknown:
        raise ValueError(f"unknown paper arm(s) {', '.join(unknown)}; choose from {', '.join(PAPER_ARMS)} "
                         f"or {_NO_ARM}")
    dims = ordered_dimensions(d for report in reports for d in report.get("dimensions", []))
    modes: list[str] = []
    for report in reports:
        modes += [m for m in report["modes"] if m not in modes]
    arms = []
    for i, (report, label, arm) in enumerate(zip(reports, labels, paper_arms)):
        arms.append({
            "label": label, "run": runs[i] if runs else None, "paper_arm": arm, "model": report.get("model"),
            "benchmark": report.get("benchmark"), "random_weights": report.get("random_weights"),
            "global_accuracy": _accuracy_row(report, "single", dims),
            "regional_accuracy": _accuracy_row(report, "regional", dims),
            "zooming_gap": _gap_row(report, dims), "coverage": _coverage_row(report, dims),
            "speed": _speed_rows(report),
            "paper": {s: _paper(s, arm, dims) for s in ("global_accuracy", "regional_accuracy", "zooming_gap",
                                                          "coverage")},
        })  # fmt: skip
    benchmarks = sorted({str(a["benchmark"]) for a in arms})
    return {"dimensions": dims, "modes": modes, "arms": arms, "same_benchmark": len(benchmarks) == 1,
            "benchmarks": benchmarks}


# ---------------------------------------------------------------------------------------------- rendering
def _acc_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return DASH
    text = interval_text(cell["estimate"], [cell["low"], cell["high"]])
    k = cell.get("k")
    return f"{text} ({num(k, 0) if k is not None else '?'}/{cell['n']})"


def _gap_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return DASH
    return f"{interval_text(cell['estimate'], [cell['low'], cell['high']], signed=True)} (n={cell['n']})"


def _cov_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return DASH
    c, a = cell["coverage"], cell["area_share"]
    return f"{interval_text(c['estimate'], [c['low'], c['high']])} vs {interval_text(a['estimate'], None)}"


class _Footnotes:
    """The paper figures' sources, numbered as they first appear in a table."""

    def __init__(self) -> None:
        self.sources: list[str] = []

    def mark(self, figure: dict[str, Any] | None) -> str:
        if figure is None:
            return ""
        if figure["source"] not in self.sources:
            self.sources.append(figure["source"])
        dagger = "" if figure["exact"] else " †"
        return f"{figure['value']:.2f}{dagger} [{self.sources.index(figure['source']) + 1}]"

    def lines(self) -> list[str]:
        if not self.sources:
            return []
        out = ["", "Paper figures (percent as printed; † = not this arm's own entry but the same strategy at the "
                   "full 74K data scale):"]
        return out + [f"[{i + 1}] {s}" for i, s in enumerate(self.sources)]


def _paper_per_dim(arm: dict[str, Any], statistic: str, dims: list[str], notes: _Footnotes) -> list[str] | None:
    """The paper's per-dimension row for an arm, when it gives one for a dimension the runs have."""
    figures = arm["paper"][statistic]
    if not any(d in figures for d in dims):
        return None
    return [f"↳ paper ({arm['label']})", *(notes.mark(figures.get(d)) or DASH for d in dims),
            notes.mark(figures.get("all")) or DASH, ""]


def _stat_table(comparison: dict[str, Any], statistic: str, text, notes: _Footnotes) -> list[str]:
    dims = comparison["dimensions"]
    rows = []
    for arm in comparison["arms"]:
        row = arm[statistic]
        figure = arm["paper"][statistic].get("all")
        if row is None:
            rows.append([arm["label"], *(DASH for _ in dims), DASH, notes.mark(figure)])
            continue
        rows.append([arm["label"], *(text(row.get(d)) for d in dims), text(row["all"]), notes.mark(figure)])
        per_dim = _paper_per_dim(arm, statistic, dims, notes)
        if per_dim:
            rows.append(per_dim)
    return md_table(["arm", *(_LABELS.get(d, d) for d in dims), "All", "paper (All)"], rows)


def _coverage_summary(comparison: dict[str, Any], notes: _Footnotes) -> list[str]:
    rows = []
    for arm in comparison["arms"]:
        cell = (arm["coverage"] or {}).get("all")
        figure = notes.mark(arm["paper"]["coverage"].get("all"))
        if cell is None:
            rows.append([arm["label"], DASH, DASH, DASH, DASH, DASH, figure])
            continue
        c, a, e = cell["coverage"], cell["area_share"], cell["excess"]
        rows.append([arm["label"], str(cell["n"]), interval_text(c["estimate"], [c["low"], c["high"]]),
                     interval_text(a["estimate"], None),
                     interval_text(e["estimate"], [e["low"], e["high"]], signed=True), num(cell["ratio"]), figure])
    return md_table(["arm", "items", "coverage % [95% CI]", "box area share %", "coverage − area share [95% CI]",
                     "coverage / area share", "paper coverage (Table 8)"], rows)


def _speed_table(comparison: dict[str, Any]) -> list[str]:
    rows = []
    for arm in comparison["arms"]:
        for mode, s in arm["speed"].items():
            rows.append([arm["label"], mode, _acc_text(s["accuracy"]), ms(s["latency_mean_ms"]),
                         ms(s["latency_p50_ms"]), num(s["model_calls_mean"]), num(s["latency_vs_agent"])])
    return md_table(["arm", "mode", "accuracy % [95% CI] (k/n)", "mean latency", "p50 latency", "model calls",
                     "mean latency / agent's"], rows)


def render_comparison(comparison: dict[str, Any]) -> str:
    """``compare.md``: one table per statistic, the paper's figure beside each arm where it has one."""
    notes = _Footnotes()
    out = ["# zwz eval-compare", ""]
    out += md_table(["arm", "run", "model", "benchmark", "paper arm"], [
        [a["label"], f"`{a['run']}`" if a["run"] else DASH, str(a["model"]), str(a["benchmark"]),
         PAPER_ARMS.get(a["paper_arm"], DASH) if a["paper_arm"] else DASH] for a in comparison["arms"]])
    if not comparison["same_benchmark"]:
        out += ["", "**The runs are on different benchmarks: their figures are not comparable item for item.**"]
    if any(a["random_weights"] for a in comparison["arms"]):
        out += ["", "**Some runs served random weights: their accuracies mean nothing.**"]
    out += ["", "## Global-view accuracy (the single pass), % [95% Wilson CI] (k correct / n decided)", ""]
    out += _stat_table(comparison, "global_accuracy", _acc_text, notes)
    out += ["", "## Regional-view accuracy (the evidence crop), % [95% Wilson CI] (k / n)", ""]
    out += _stat_table(comparison, "regional_accuracy", _acc_text, notes)
    out += ["", "## Zooming gap (Regional − Global, paper Table 7), points [95% paired CI] (pairs)", ""]
    out += _stat_table(comparison, "zooming_gap", _gap_text, notes)
    out += ["", "Over the items decided in both views: the mean per-item difference, Newcombe's paired interval."]
    out += ["", "## Relative-attention coverage of the evidence box (paper Table 8) vs the box's area share", ""]
    out += _coverage_summary(comparison, notes)
    out += ["", "Per dimension: coverage % [95% CI] vs the box's area share %.", ""]
    out += _stat_table(comparison, "coverage", _cov_text, notes)
    out += ["", "Coverage above the area share: the model looks where the answer is (a uniform map scores the "
                "area share)."]
    out += ["", "## Accuracy vs speed per mode (paper Fig. 5: speed = 1 / mean time per item)", ""]
    out += _speed_table(comparison)
    out += ["", "The paper's Fig. 5 is a plot (its numbers are not printed); Sec. 4.2 reports ZwZ about 10x faster "
                "than agentic and tool-use baselines. Latency is client-measured per item under each run's "
                "concurrency: compare runs made with the same settings."]
    out += notes.lines()
    plots = comparison.get("plots") or {}
    if plots:
        out += ["", *(f"![{name}]({file})" for name, file in plots.items())]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------------- plots
def _bars(comparison: dict[str, Any], statistic: str, path: Path, *, ylabel: str, title: str) -> Path:
    """Grouped bars (a group per dimension and All, a bar per arm) with 95% error bars; for coverage, the box's
    area share is a black tick on each bar; the paper's All figure is a star where it has one."""
    import numpy as np

    plt = pyplot()
    keys = [*comparison["dimensions"], "all"]
    arms = comparison["arms"]
    width = 0.8 / max(1, len(arms))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(keys) * max(1, len(arms)) * 0.45 + 2), 4.2), dpi=120)
    x = np.arange(len(keys))
    for i, arm in enumerate(arms):
        row = arm[statistic] or {}
        values, low, high, shares = [], [], [], []
        for key in keys:
            cell = row.get(key)
            if cell is not None and statistic == "coverage":
                shares.append(100 * cell["area_share"]["estimate"])
                cell = cell["coverage"]
            elif statistic == "coverage":
                shares.append(np.nan)
            if cell is None:
                values.append(np.nan)
                low.append(0.0)
                high.append(0.0)
                continue
            v = 100 * cell["estimate"]
            values.append(v)
            low.append(v - 100 * cell["low"] if cell.get("low") is not None else 0.0)
            high.append(100 * cell["high"] - v if cell.get("high") is not None else 0.0)
        offset = x - 0.4 + width * (i + 0.5)
        ax.bar(offset, values, width, yerr=[low, high], capsize=3, label=arm["label"])
        if shares:
            ax.scatter(offset, shares, marker="_", s=400 * width, color="black", zorder=4,
                       label="box area share" if i == 0 else None)
        figure = arm["paper"][statistic].get("all")
        if figure is not None:
            ax.scatter([offset[-1]], [figure["value"]], marker="*", s=90, color="gold", edgecolor="black", zorder=5,
                       label="paper (All)" if not any(a["paper"][statistic].get("all") for a in arms[:i]) else None)
    ax.set_xticks(x, [_LABELS.get(k, k) for k in keys])
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _speed_plot(comparison: dict[str, Any], path: Path) -> Path:
    """Paper Fig. 5's view over the arms: x = mean latency per item (s, log), y = accuracy with its Wilson 95%
    interval; a marker per mode, a colour per arm, each arm's modes joined."""
    plt = pyplot()
    markers = {"single": "o", "regional": "s", "agent": "^", "attention_zoom": "D"}
    fig, ax = plt.subplots(figsize=(6.5, 4.4), dpi=120)
    plotted = False
    for i, arm in enumerate(comparison["arms"]):
        colour = f"C{i % 10}"
        points = [(mode, s["latency_mean_ms"] / 1e3, s["accuracy"]) for mode, s in arm["speed"].items()
                  if mode != "regional" and s["latency_mean_ms"] and s["accuracy"] is not None]
        points.sort(key=lambda p: p[1])
        if len(points) > 1:
            ax.plot([p[1] for p in points], [100 * p[2]["estimate"] for p in points], color=colour, alpha=0.5)
        for mode, x, cell in points:
            y = 100 * cell["estimate"]
            yerr = [[y - 100 * cell["low"]], [100 * cell["high"] - y]] if cell["low"] is not None else None
            ax.errorbar([x], [y], yerr=yerr, fmt=markers.get(mode, "o"), color=colour, capsize=3, ms=7,
                        label=f"{arm['label']}: {mode}", clip_on=False)
            plotted = True
    if plotted:
        log_x_axis(ax, subs=(1.0, 2.0, 5.0))
        ax.legend(fontsize=7, ncol=2)
    else:
        ax.text(0.5, 0.5, "no run has a mode with both a latency and an accuracy", ha="center", transform=ax.transAxes)
    ax.set_ylim(-3, 103)
    ax.set_xlabel("mean latency per item (s, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy vs speed per arm and mode (regional left out: it is given the crop)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path)


def write_comparison(comparison: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write the plots (skipped with a warning without matplotlib), ``compare.json`` and ``compare.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    try:
        paths["global_accuracy"] = _bars(comparison, "global_accuracy", out / "global_accuracy.png",
                                         ylabel="global-view accuracy (%)", title="global-view accuracy, 95% CI")
        paths["zooming_gap"] = _bars(comparison, "zooming_gap", out / "zooming_gap.png",
                                     ylabel="regional − global (points)", title="zooming gap, paired 95% CI")
        paths["coverage"] = _bars(comparison, "coverage", out / "coverage.png", ylabel="attention in the box (%)",
                                  title="relative-attention coverage (bars, 95% CI) vs box area share (ticks)")
        paths["accuracy_vs_speed"] = _speed_plot(comparison, out / "accuracy_vs_speed.png")
    except ImportError as exc:
        logger.warning("%s; skipping the plots", exc)
    comparison["plots"] = {name: p.name for name, p in paths.items()}
    paths["json"] = out / "compare.json"
    paths["json"].write_text(json.dumps(comparison, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["md"] = out / "compare.md"
    paths["md"].write_text(render_comparison(comparison), encoding="utf-8")
    return paths


def compare_runs(runs: Sequence[str | Path], out_dir: str | Path, *, labels: Sequence[str] | None = None,
                 paper_arms: Sequence[str | None] | None = None) -> dict[str, Any]:
    """Read the runs' reports, write the comparison under ``out_dir`` and return it (labels: the folder names
    by default; ``paper_arms``: a :data:`PAPER_ARMS` key or None per run)."""
    reports = [load_run(r) for r in runs]
    labels = list(labels) if labels else [Path(r).name if Path(r).is_dir() else Path(r).parent.name for r in runs]
    comparison = build_comparison(reports, labels, paper_arms, runs=[str(r) for r in runs])
    write_comparison(comparison, out_dir)
    return comparison


# --------------------------------------------------------------------------------------------------- CLI
def register(subparsers) -> None:
    p = subparsers.add_parser("eval-compare", help="several zwz eval runs side by side (ablation arms), with intervals",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="zwz eval --out folders (or their report.json)")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="one per run (default: the folder names)")
    p.add_argument("--paper-arms", nargs="+", metavar="ARM",
                   help=f"one per run, the paper's arm it corresponds to: {', '.join(PAPER_ARMS)} or {_NO_ARM}")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    arms = None if args.paper_arms is None else [None if a == _NO_ARM else a for a in args.paper_arms]
    compare_runs(args.runs, args.out, labels=args.labels, paper_arms=arms)
    print(f"comparison: {Path(args.out) / 'compare.md'}")
    return 0
