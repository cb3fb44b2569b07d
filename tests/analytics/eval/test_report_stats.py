"""The report's statistics: accuracy with Wilson intervals (k, n), the paired zooming gap, and coverage beside the
evidence box's area share."""

from __future__ import annotations

import doctest

import pytest

import zwz.analytics.eval.report as report_module
from zwz.analytics.eval.intervals import newcombe_paired, wilson
from zwz.analytics.eval.report import build_report, coverage_stats, render_markdown
from zwz.distill.benchmark import BenchItem


def test_doctests():
    result = doctest.testmod(report_module)
    assert result.attempted > 0 and result.failed == 0


def items(n: int, dimension: str = "color") -> list[BenchItem]:
    return [BenchItem(f"{dimension}{i}", b"", b"", "q", "A", dimension=dimension) for i in range(n)]


def records(mode: str, scores: list[float | None], dimension: str = "color") -> list[dict]:
    return [{"id": f"{dimension}{i}", "mode": mode, "dimension": dimension, "score": s,
             "decided_by": "rule" if s is not None else "unjudged", "latency_ms": 10.0} for i, s in enumerate(scores)]


def test_accuracy_carries_k_n_and_the_wilson_interval():
    bench = items(10)
    report = build_report(records("single", [1.0] * 8 + [0.0] * 2), {"single": bench})
    s = report["modes"]["single"]
    assert (s["n_correct"], s["n_decided"], s["accuracy"]) == (8.0, 10, 0.8)
    assert s["ci95"] == pytest.approx([0.4902, 0.9433], abs=1e-4)
    assert s["by_dimension"]["color"]["ci95"] == s["ci95"]
    markdown = render_markdown(report)
    assert "| single | All | 8/10 | 80.0 [49.0, 94.3] |" in markdown


def test_the_gap_is_paired_over_the_items_decided_in_both_views():
    bench = items(6)
    single = records("single", [0.0, 0.0, 1.0, 0.0, 1.0, None])  # item 5 unjudged in the global view
    regional = records("regional", [1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    report = build_report(single + regional, {"single": bench, "regional": bench})
    gap = report["zooming_gap"]
    assert gap["single"]["avg"] == pytest.approx(2 / 5) and gap["regional"]["avg"] == 1.0 - 1 / 6
    # Pairs: items 0-4; regional 4/5 vs global 2/5 on them.
    assert gap["n_pairs"] == {"color": 5, "avg": 5}
    assert gap["gap"]["avg"] == pytest.approx(0.4)
    expected = newcombe_paired([1, 1, 1, 0, 1], [0, 0, 1, 0, 1])
    assert gap["gap_ci95"]["avg"] == pytest.approx([expected.low, expected.high])
    assert expected.low > 0 or expected.low < 0  # a real interval, not a point
    assert "Newcombe" in gap["gap_method"]
    markdown = render_markdown(report)
    assert "| gap, 95% CI (paired) |" in markdown and "| pairs | 5 | 5 |" in markdown


def test_coverage_beside_the_area_share():
    recs = [{"id": "a", "dimension": "ocr", "coverage": 0.30, "area_share": 0.05, "layer": 4},
            {"id": "b", "dimension": "ocr", "coverage": 0.20, "area_share": 0.07, "layer": 4},
            {"id": "c", "dimension": "color", "coverage": 0.04, "area_share": 0.06, "layer": 4},
            {"id": "d", "dimension": "color", "coverage": None, "area_share": None, "error": "x"}]
    stats = coverage_stats(recs)
    assert stats["dimensions"] == ["ocr", "color"] and stats["n_errors"] == 1 and stats["layer"] == 4
    everything = stats["all"]
    assert everything["n"] == 3
    assert everything["coverage"]["estimate"] == pytest.approx(0.18)
    assert everything["area_share"]["estimate"] == pytest.approx(0.06)
    assert everything["excess"]["estimate"] == pytest.approx(0.12)
    assert everything["ratio"] == pytest.approx(3.0)
    # Excess per item: 0.25, 0.13, -0.02 -> sd 0.13528; 0.12 +- 1.95996 * 0.13528 / sqrt(3)
    assert everything["excess"]["low"] == pytest.approx(0.12 - 0.15308, abs=1e-4)
    assert everything["coverage"]["low"] >= 0.0  # a share's interval stays in [0, 1]
    assert stats["by_dimension"]["ocr"]["coverage"]["estimate"] == pytest.approx(0.25)
    assert stats["by_dimension"]["color"]["n"] == 1 and stats["by_dimension"]["color"]["coverage"]["low"] is None


def test_the_report_has_coverage_only_for_its_items():
    bench = items(2, "ocr")
    cov = [{"id": "ocr0", "mode": "coverage", "dimension": "ocr", "coverage": 0.5, "area_share": 0.1},
           {"id": "other", "mode": "coverage", "dimension": "ocr", "coverage": 0.9, "area_share": 0.1},
           {"id": "ocr1", "mode": "coverage", "dimension": "ocr", "coverage": None, "area_share": None,
            "error": "/zoom/attention: boom", "error_stage": "request"}]
    report = build_report(records("single", [1.0, 0.0], "ocr"), {"single": bench}, coverage=cov)
    assert report["coverage"]["all"]["n"] == 1 and report["coverage"]["all"]["coverage"]["estimate"] == 0.5
    assert [e["mode"] for e in report["errors"]] == ["coverage"]
    markdown = render_markdown(report)
    assert "Relative-attention coverage" in markdown and "| All | 1 | 50.0 | 10.0 | +40.0 | 5.00 |" in markdown
    assert "coverage" not in build_report(records("single", [1.0, 0.0], "ocr"), {"single": bench})


def test_wilson_is_the_one_implementation():
    bench = items(3)
    report = build_report(records("single", [1.0, 0.0, 0.0]), {"single": bench})
    w = wilson(1, 3)
    assert report["modes"]["single"]["ci95"] == [w.low, w.high]
