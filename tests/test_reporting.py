"""``zwz.reporting``: the number formats and markdown tables of both reports, and the report writer."""

from __future__ import annotations

import doctest
import json

import zwz.reporting
from zwz.reporting import pyplot, save_figure, style_accuracy_axis, write_report_files


def test_doctests():
    result = doctest.testmod(zwz.reporting)
    assert result.attempted >= 4 and result.failed == 0


def _plot(report, path):
    fig, ax = pyplot().subplots()
    ax.scatter([1.0], [50.0])
    style_accuracy_axis(ax, report, "speed")
    return save_figure(fig, path)


def test_write_report_files_writes_all_three(tmp_path):
    report = {"model": "m", "random_weights": True}
    paths = write_report_files(report, tmp_path / "out", plot=_plot, render=lambda r: f"# {r['model']}\n")
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert json.loads(paths["json"].read_text()) == {"model": "m", "random_weights": True,
                                                     "plot": "accuracy_vs_speed.png"}
    assert paths["md"].read_text() == "# m\n"


def test_a_missing_plotting_library_skips_the_plot_only(tmp_path, caplog):
    def no_matplotlib(report, path):
        raise ImportError("the accuracy-vs-speed plot needs matplotlib: pip install matplotlib")

    paths = write_report_files({"model": "m"}, tmp_path, plot=no_matplotlib, render=lambda r: "x\n")
    assert "png" not in paths and paths["md"].exists() and "plot" not in json.loads(paths["json"].read_text())
    assert "skipping the plot" in caplog.text
