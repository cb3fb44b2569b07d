"""The report kit ``zwz eval`` and ``zwz bench`` share: number formats, markdown tables, the accuracy-vs-speed
plot's styling and the writer of ``report.json`` / ``report.md`` / ``accuracy_vs_speed.png``.

    lines = md_table(["mode", "accuracy %"], [["single", pct(0.5)]])
    write_report_files(report, "runs/x", plot=plot_fn, render=render_fn)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["DASH", "log_x_axis", "md_table", "ms", "num", "pct", "pyplot", "save_figure", "style_accuracy_axis",
           "write_report_files"]

DASH = "–"  # what a missing figure reads as


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage.

    >>> pct(0.5), pct(1 / 3, 1), pct(None)
    ('50.00', '33.3', '–')
    """
    return DASH if value is None else f"{100 * value:.{digits}f}"


def ms(value: float | None, *, unit: bool = True) -> str:
    """Milliseconds: whole from 100 ms on, one decimal below.

    >>> ms(1234.5), ms(12.34), ms(12.34, unit=False), ms(None)
    ('1234 ms', '12.3 ms', '12.3', '–')
    """
    if value is None:
        return DASH
    text = f"{value:.0f}" if value >= 100 else f"{value:.1f}"
    return text + " ms" if unit else text


def num(value: float | None, digits: int = 2) -> str:
    """
    >>> num(2.0), num(2.25, 1), num(None)
    ('2.00', '2.2', '–')
    """
    return DASH if value is None else f"{value:.{digits}f}"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines.

    >>> md_table(["a", "b"], [["1", "2"]])
    ['| a | b |', '| --- | --- |', '| 1 | 2 |']
    """
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend; an ImportError that says what to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("the accuracy-vs-speed plot needs matplotlib: pip install matplotlib") from exc
    return plt


def log_x_axis(ax, *, subs: tuple[float, ...] | None = None) -> None:
    """A log x axis labelled 0.5, 1, 2 rather than 2x10^0 (``subs``: major ticks at those multiples only)."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    if subs is None:
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    else:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def style_accuracy_axis(ax, report: dict[str, Any], xlabel: str) -> None:
    """The accuracy (%) axis both reports plot against speed; the title flags random weights."""
    ax.set_ylim(-3, 103)  # points at 0 or 100 stay visible
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    title = f"accuracy vs speed: {report.get('model', '')}"
    ax.set_title(title + (" (random weights)" if report.get("random_weights") else ""), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write as PNG and close ``fig``."""
    plt = pyplot()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def write_report_files(report: dict[str, Any], out_dir: str | Path, *,
                       plot: Callable[[dict[str, Any], Path], Path],
                       render: Callable[[dict[str, Any]], str]) -> dict[str, Path]:
    """Write ``accuracy_vs_speed.png`` with ``plot`` (skipped with a warning without matplotlib), then
    ``report.json`` and ``report.md`` rendered by ``render``; returns the paths by kind (json, md, png)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md"}
    try:
        paths["png"] = plot(report, out / "accuracy_vs_speed.png")
        report["plot"] = paths["png"].name
    except ImportError as exc:
        logger.warning("%s; skipping the plot", exc)
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["md"].write_text(render(report), encoding="utf-8")
    return paths
