"""Relative-attention coverage of a box (paper Sec. 5.2, Eq. 2) on hand-computed grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zwz.analytics.attention.coverage import coverage, coverage_by_layer
from zwz.analytics.attention.grid import GridGeometry

GEO = GridGeometry((400, 400), (4, 4))  # 100 x 100 px cells


def one_hot(shape=(4, 4), cell=(1, 2), value=5.0):
    a = np.zeros(shape)
    a[cell] = value
    return a


def test_box_exactly_on_the_hot_cell():
    assert coverage(one_hot(), GEO, (200, 100, 300, 200)) == 1.0
    assert coverage(one_hot(), GEO, GEO.cell_box(1, 2)) == 1.0


def test_box_on_half_the_hot_cell():
    assert coverage(one_hot(), GEO, (200, 100, 250, 200)) == 0.5
    assert coverage(one_hot(), GEO, (250, 150, 400, 400)) == 0.25


def test_box_missing_the_hot_cell():
    assert coverage(one_hot(), GEO, (0, 0, 200, 400)) == 0.0


def test_hand_computed_mixture():
    a = np.arange(16, dtype=float).reshape(4, 4)  # total 120
    # Rows 0-1, cols 0-1 whole (0 + 1 + 4 + 5 = 10) plus half of col 2 in those rows ((2 + 6) / 2 = 4).
    assert coverage(a, GEO, (0, 0, 250, 200)) == pytest.approx(14 / 120)


def test_uniform_map_covers_the_box_area_share():
    geo = GridGeometry((1000, 601), (5, 7))
    box = (123.4, 50, 877, 333)
    assert coverage(np.ones((5, 7)), geo, box) == pytest.approx(geo.area_fraction(box))


def test_cell_edge_boxes_on_a_non_divisible_image():
    # W = 1000, gw = 7 and H = 601, gh = 5: cell edges are not whole pixels. Eq. 2 over a cell-aligned box is
    # the plain sum over the cells it contains.
    geo = GridGeometry((1000, 601), (5, 7))
    a = np.random.default_rng(1).random((5, 7))
    x1, y1 = geo.cell_box(1, 2)[:2]
    x2, y2 = geo.cell_box(3, 4)[2:]
    assert coverage(a, geo, (x1, y1, x2, y2)) == pytest.approx(a[1:4, 2:5].sum() / a.sum(), rel=1e-12)


def test_invariant_to_original_resolution():
    a = np.random.default_rng(2).random((5, 7))
    box = (123, 77, 611, 401)
    small = coverage(a, GridGeometry((1000, 700), (5, 7)), box)
    large = coverage(a, GridGeometry((2000, 1400), (5, 7)), tuple(2 * v for v in box))
    assert small == pytest.approx(large, rel=1e-12)


def test_box_partly_outside_is_clipped():
    a = np.random.default_rng(3).random((4, 4))
    assert coverage(a, GEO, (-300, 150, 250, 1000)) == coverage(a, GEO, (0, 150, 250, 400))
    assert coverage(a, GEO, (-1, -1, 401, 401)) == pytest.approx(1.0)


def test_accepts_tensors_and_lists():
    a = one_hot()
    box = (200, 100, 250, 200)
    assert coverage(torch.tensor(a, dtype=torch.bfloat16), GEO, box) == 0.5
    assert coverage(a.tolist(), GEO, box) == 0.5


@pytest.mark.parametrize("box, message", [
    ((0, 0, 0, 10), r"empty or inverted box \(0, 0, 0, 10\): need x1 < x2 and y1 < y2"),
    ((50, 50, 10, 100), r"empty or inverted box \(50, 50, 10, 100\)"),
    ((400, 0, 500, 100), r"box \(400, 0, 500, 100\) lies entirely outside the 400x400 image"),
    ((-20, -20, -10, -10), r"box \(-20, -20, -10, -10\) lies entirely outside the 400x400 image"),
])
def test_bad_boxes_raise(box, message):
    with pytest.raises(ValueError, match=message):
        coverage(one_hot(), GEO, box)


@pytest.mark.parametrize(
    "grid, match",
    [
        (np.zeros((4, 4)), "zero total mass"),
        (one_hot(value=np.nan), "NaN or inf"),
        (one_hot(value=np.inf), "NaN or inf"),
        (one_hot(value=-1.0), "negative"),
        (np.ones((4, 5)), "does not match"),
        (np.ones(16), "2-D"),
    ],
)
def test_bad_maps_raise(grid, match):
    with pytest.raises(ValueError, match=match):
        coverage(grid, GEO, (0, 0, 100, 100))


def test_coverage_by_layer_matches_per_layer():
    maps = np.random.default_rng(4).random((6, 4, 4))
    box = (37, 0, 251, 399)
    assert coverage_by_layer(maps, GEO, box) == pytest.approx([coverage(m, GEO, box) for m in maps], rel=1e-12)
    assert coverage_by_layer(torch.tensor(maps), GEO, box) == pytest.approx(coverage_by_layer(maps, GEO, box))


def test_coverage_by_layer_errors_name_the_layer():
    maps = np.ones((3, 4, 4))
    maps[1] = 0.0
    with pytest.raises(ValueError, match=r"\[1\]"):
        coverage_by_layer(maps, GEO, (0, 0, 100, 100))
    with pytest.raises(ValueError, match=r"attention maps must be \(L, 4, 4\), got shape \(4, 4\)"):
        coverage_by_layer(np.ones((4, 4)), GEO, (0, 0, 100, 100))
    with pytest.raises(ValueError, match=r"attention maps must be \(L, 4, 4\), got shape \(2, 4, 3\)"):
        coverage_by_layer(np.ones((2, 4, 3)), GEO, (0, 0, 100, 100))
