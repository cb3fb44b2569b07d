"""The suggested zoom window (maximum excess attention over uniform) and the top cells."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from zwz.analytics.attention.coverage import coverage
from zwz.analytics.attention.grid import GridGeometry
from zwz.analytics.attention.zoom_box import _side_sizes, excess_coverage, suggest_zoom_box, top_cells


def contains(outer, inner) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


def inside_image(box, geo) -> bool:
    x1, y1, x2, y2 = box
    width, height = geo.image_size
    return all(isinstance(v, int) for v in box) and 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height


def test_single_hot_cell_gives_exactly_that_cell():
    geo = GridGeometry((400, 400), (4, 4))
    a = np.ones((4, 4))
    a[1, 2] = 20.0
    assert suggest_zoom_box(a, geo) == (200, 100, 300, 200)


def test_single_hot_cell_is_contained_on_a_non_divisible_image():
    geo = GridGeometry((1000, 601), (5, 7))
    a = np.full((5, 7), 0.1)
    a[3, 6] = 5.0
    box = suggest_zoom_box(a, geo)
    assert inside_image(box, geo)
    assert contains(box, geo.cell_box(3, 6))
    assert coverage(a, geo, box) == pytest.approx(5.0 / a.sum(), abs=1e-3)  # rounded outward: slivers of neighbours


def test_min_fraction_bounds_the_window_from_below():
    geo = GridGeometry((800, 800), (8, 8))
    a = np.zeros((8, 8))
    a[5, 1] = 1.0
    box = suggest_zoom_box(a, geo, min_fraction=0.25)  # at least 2 cells a side
    assert (box[2] - box[0], box[3] - box[1]) == (200, 200)
    assert contains(box, geo.cell_box(5, 1))


def test_prefers_the_small_window_when_mass_is_concentrated():
    geo = GridGeometry((800, 800), (8, 8))
    a = np.full((8, 8), 0.01)
    a[2:4, 5:7] = 1.0  # a 2x2 hot block: every larger window only adds below-average cells
    assert suggest_zoom_box(a, geo) == (500, 200, 700, 400)


def test_grows_to_cover_a_spread_blob():
    geo = GridGeometry((1000, 1000), (10, 10))
    a = np.full((10, 10), 0.01)
    a[4:8, 1:4] = 1.0
    assert suggest_zoom_box(a, geo) == (100, 400, 400, 800)


def test_uniform_map_ties_go_to_the_smallest_top_left_window():
    geo = GridGeometry((1000, 1000), (10, 10))
    assert suggest_zoom_box(np.ones((10, 10)), geo) == (0, 0, 100, 100)


def test_matches_brute_force_search():
    rng = np.random.default_rng(0)
    for gh, gw in [(5, 7), (6, 6), (3, 9)]:
        geo = GridGeometry((997, 611), (gh, gw))
        hs, ws = _side_sizes(gh, 0.1, 0.5), _side_sizes(gw, 0.1, 0.5)
        for _ in range(5):
            a = rng.random((gh, gw)) ** 4
            p = a / a.sum()
            best = max(
                p[i : i + h, j : j + w].sum() - h * w / (gh * gw)
                for h, w in itertools.product(hs, ws)
                for i in range(gh - h + 1)
                for j in range(gw - w + 1)
            )
            box = suggest_zoom_box(a, geo)
            assert inside_image(box, geo)
            # The pixel box is rounded outward by < 1 px, so the excess of the pixel box is close but not exact.
            assert excess_coverage(a, geo, box) == pytest.approx(best, abs=0.01)


@pytest.mark.parametrize("shape, size", [((1, 9), (900, 50)), ((9, 1), (50, 900)), ((1, 1), (33, 17))])
def test_degenerate_grids(shape, size):
    geo = GridGeometry(size, shape)
    a = np.ones(shape)
    hot = (0, shape[1] - 2) if shape[1] > 1 else (max(shape[0] - 2, 0), 0)
    a[hot] = 30.0
    box = suggest_zoom_box(a, geo)
    assert inside_image(box, geo)
    assert contains(box, geo.cell_box(*hot))
    if shape == (1, 9):
        assert box == (700, 0, 800, 50)  # one cell: the single row is the whole height


def test_stays_inside_the_image_on_random_maps():
    rng = np.random.default_rng(1)
    for _ in range(30):
        gh, gw = rng.integers(1, 40, size=2)
        geo = GridGeometry((int(rng.integers(50, 4000)), int(rng.integers(50, 4000))), (int(gh), int(gw)))
        box = suggest_zoom_box(rng.random((gh, gw)) ** 8, geo, aspect=rng.choice([None, 0.5, 1.0, 3.0]))
        assert inside_image(box, geo)


def test_aspect_shapes_the_window():
    geo = GridGeometry((1200, 1200), (12, 12))
    a = np.full((12, 12), 0.01)
    a[6, 6] = 1.0
    x1, y1, x2, y2 = suggest_zoom_box(a, geo, aspect=2.0)
    assert (x2 - x1) == 2 * (y2 - y1)
    assert contains((x1, y1, x2, y2), geo.cell_box(6, 6))


FRACTIONS = r"need 0 < min_fraction <= max_fraction <= 1, got "


@pytest.mark.parametrize("kwargs, message", [
    ({"min_fraction": 0.0}, FRACTIONS + "0.0, 0.5"),
    ({"min_fraction": 0.6, "max_fraction": 0.5}, FRACTIONS + "0.6, 0.5"),
    ({"max_fraction": 1.2}, FRACTIONS + "0.1, 1.2"),
    ({"aspect": 0}, r"aspect must be a positive width/height ratio, got 0"),
])
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        suggest_zoom_box(np.ones((4, 4)), GridGeometry((400, 400), (4, 4)), **kwargs)


def test_rejects_zero_and_bad_maps():
    geo = GridGeometry((400, 400), (4, 4))
    with pytest.raises(ValueError, match="zero total mass"):
        suggest_zoom_box(np.zeros((4, 4)), geo)
    with pytest.raises(ValueError, match=r"attention map shape \(4, 5\) does not match the grid \(4, 4\)"):
        suggest_zoom_box(np.ones((4, 5)), geo)


def test_works_on_the_largest_grid():  # its speed is for benchmarks, not a unit test's wall clock
    geo = GridGeometry((3584, 3584), (128, 128))  # Qwen2.5-VL's largest default budget, 16384 merged tokens
    a = np.random.default_rng(2).random((128, 128))
    assert inside_image(suggest_zoom_box(a, geo), geo)


def test_top_cells():
    a = np.array([[0.0, 3.0, 1.0], [3.0, 2.0, 0.5]])
    assert top_cells(a, 3) == [(0, 1, 3.0), (1, 0, 3.0), (1, 1, 2.0)]
    assert len(top_cells(a, 100)) == 6
    assert top_cells(a, 0) == []
    with pytest.raises(ValueError, match=r"k must be >= 0, got -1"):
        top_cells(a, -1)
