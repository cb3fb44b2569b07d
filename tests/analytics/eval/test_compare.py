"""``zwz eval-compare`` on small synthetic runs: the tables carry each arm's intervals and the paper's figure only
where the paper has one; the plots are written; the CLI's errors are one line."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest
from PIL import Image

import zwz.analytics.eval.compare as compare_module
import zwz.analytics.eval.paper_figures as paper_module
from zwz.analytics.eval.compare import compare_runs
from zwz.analytics.eval.paper_figures import PAPER_FIGURES
from zwz.analytics.eval.report import build_report, write_report
from zwz.cli import main
from zwz.distill.benchmark import BenchItem


def test_doctests():
    for module in (compare_module, paper_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


def test_every_paper_figure_names_its_table():
    for arms in PAPER_FIGURES.values():
        for figures in arms.values():
            for figure in figures.values():
                assert figure.source.startswith(("Table 6", "Table 7", "Table 8")) and 0 < figure.value < 100


def write_run(out: Path, global_right: list[int], regional_right: list[int], coverage: float | None,
              agent_ms: float = 300.0) -> Path:
    """A run of 10 ocr items: single, regional and agent records, and (optionally) coverage records."""
    items = [BenchItem(f"i{i}", b"", b"", "q", "A", dimension="ocr") for i in range(10)]
    recs = []
    for mode, right, latency in [("single", global_right, 30.0), ("regional", regional_right, 25.0),
                                 ("agent", regional_right, agent_ms)]:
        recs += [{"id": f"i{i}", "mode": mode, "dimension": "ocr", "score": float(i in right), "decided_by": "rule",
                  "latency_ms": latency, "model_calls": 1} for i in range(10)]
    cov = None
    if coverage is not None:
        cov = [{"id": f"i{i}", "mode": "coverage", "dimension": "ocr", "coverage": coverage + 0.01 * (2 * (i % 2) - 1),
                "area_share": 0.06} for i in range(10)]
    report = build_report(recs, {"single": items, "regional": items, "agent": items},
                          {"model": out.name, "benchmark": "zoomworld(level=nano, seed=7, size=448x448)"},
                          coverage=cov)  # fmt: skip
    write_report(report, out)
    return out


@pytest.fixture
def runs(tmp_path):
    a = write_run(tmp_path / "direct", global_right=[0, 1], regional_right=list(range(8)), coverage=0.07)
    b = write_run(tmp_path / "bbox", global_right=list(range(8)), regional_right=list(range(9)), coverage=0.25)
    return a, b


def test_compare_tables(runs, tmp_path):
    out = tmp_path / "cmp"
    comparison = compare_runs(runs, out, labels=["Direct", "R2I + bbox-in-image"],
                              paper_arms=["direct", "bbox_in_image"])
    md = (out / "compare.md").read_text()
    # Global accuracy: 2/10 and 8/10 with their Wilson intervals (wrong intervals fail here), Table 6 beside.
    assert "| Direct | 20.0 [5.7, 51.0] (2/10) | 20.0 [5.7, 51.0] (2/10) | 40.95 [1] |" in md
    assert "| R2I + bbox-in-image | 80.0 [49.0, 94.3] (8/10) | 80.0 [49.0, 94.3] (8/10) | 52.90 [2] |" in md
    assert "[1] Table 6 (Zoom-Bench column; Qwen3-VL-8B, 10K samples): Direct Synthesis" in md
    # The gap: paired, Newcombe; the direct arm has no Table 7 entry, so its paper cell is blank.
    direct_gap = comparison["arms"][0]["zooming_gap"]["all"]
    assert direct_gap["estimate"] == pytest.approx(0.6) and direct_gap["n"] == 10
    # 2 both right, 6 regional only, 2 neither: ad - bc = 4 <= n/2, so phi = 0 and the limits square-and-add
    # the Wilson ones, 8/10 (0.4902, 0.9433) and 2/10 (0.0567, 0.5098): 0.6 - sqrt(2 * 0.3098^2) = 0.1619,
    # 0.6 + sqrt(2 * 0.1433^2) = 0.8027.
    assert (direct_gap["low"], direct_gap["high"]) == pytest.approx((0.1619, 0.8027), abs=2e-4)
    assert "| Direct | +60.0 [+16.2, +80.3] (n=10) | +60.0 [+16.2, +80.3] (n=10) |  |" in md
    # bbox-in-image has no Table 7 entry of its own: ZwZ-8B's figure, marked as the nearest one.
    assert "15.26 †" in md and "74K" in md
    # Coverage beside the area share, with the excess's interval: values c +- 0.01 (sd 0.01054), so
    # c +- 1.96 * 0.01054 / sqrt(10) = c +- 0.0065.
    assert "| R2I + bbox-in-image | 10 | 25.0 [24.3, 25.7] | 6.0 | +19.0 [+18.3, +19.7] | 4.17 | 21.64 †" in md
    assert "| Direct | 10 | 7.0 [6.3, 7.7] | 6.0 | +1.0 [+0.3, +1.7] | 1.17 |  |" in md
    # Accuracy vs speed: every mode, latency relative to the agent on the same weights.
    assert "| Direct | single | 20.0 [5.7, 51.0] (2/10) | 30.0 ms | 30.0 ms | 1.00 | 0.10 |" in md
    saved = json.loads((out / "compare.json").read_text())
    assert [a["label"] for a in saved["arms"]] == ["Direct", "R2I + bbox-in-image"] and saved["same_benchmark"]
    for name in ("global_accuracy", "zooming_gap", "coverage", "accuracy_vs_speed"):
        with Image.open(out / f"{name}.png") as png:
            assert png.format == "PNG" and png.width > 300
        assert f"({name}.png)" in md


def test_no_paper_arm_means_no_paper_figures(runs, tmp_path):
    comparison = compare_runs(runs, tmp_path / "c")
    assert [a["label"] for a in comparison["arms"]] == ["direct", "bbox"]  # the folder names
    assert all(not figures for a in comparison["arms"] for figures in a["paper"].values())
    assert "Paper figures" not in (tmp_path / "c" / "compare.md").read_text()


def test_runs_without_coverage_or_a_regional_view(tmp_path):
    items = [BenchItem("x", b"", None, "q", "A", dimension="color")]
    rec = [{"id": "x", "mode": "single", "dimension": "color", "score": 1.0, "decided_by": "rule", "latency_ms": 5.0}]
    write_report(build_report(rec, {"single": items}, {"benchmark": "b1"}), tmp_path / "one")
    write_run(tmp_path / "two", [0], [0], None)
    compare_runs([tmp_path / "one", tmp_path / "two" / "report.json"], tmp_path / "c", paper_arms=["base", None])
    md = (tmp_path / "c" / "compare.md").read_text()
    assert "different benchmarks" in md
    assert "| one | – | 100.0 [20.7, 100.0] (1/1) | 100.0 [20.7, 100.0] (1/1) | 37.87 [1] |" in md
    assert "| ↳ paper (one) | 47.97 [1] | 38.02 [1] | 37.87 [1] |  |" in md  # Table 7's row, for the runs' dims
    assert "| one | – | – | – | 63.08 [2] |" in md  # no regional view: the paper's figure still beside it


def test_cli(runs, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["eval-compare", *map(str, runs), "--labels", "A", "B", "--paper-arms", "no_box", "-",
                 "--out", str(out)]) == 0
    assert "46.27 [1]" in (out / "compare.md").read_text()
    assert main(["eval-compare", *map(str, runs), "--labels", "A", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith("2 runs but 1 labels")
    assert main(["eval-compare", *map(str, runs), "--paper-arms", "ours", "-", "--out", str(out)]) == 2
    assert "unknown paper arm(s) ours" in capsys.readouterr().err
    assert main(["eval-compare", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "no report.json" in capsys.readouterr().err
