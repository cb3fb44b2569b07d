"""Token-grid geometry: cells in original pixels and a box's area share of each cell."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zwz.analytics.attention.grid import GridGeometry, as_map, as_maps, clip_box


@pytest.mark.parametrize("row", [[1, 10, 14], (1, 10, 14), np.array([1, 10, 14]), torch.tensor([1, 10, 14])])
def test_from_grid_thw_merges_2x2(row):
    geo = GridGeometry.from_grid_thw((1000, 700), row)
    assert geo.grid_shape == (5, 7)
    assert geo.image_size == (1000, 700)


def test_from_grid_thw_takes_a_row_of_the_processor_tensor():
    thw = torch.tensor([[1, 34, 46]])
    assert GridGeometry.from_grid_thw((640, 480), thw[0]).grid_shape == (17, 23)
    assert GridGeometry.from_grid_thw((640, 480), [1, 34, 46], merge_size=1).grid_shape == (34, 46)


@pytest.mark.parametrize("row, message", [
    ([2, 10, 14], r"expected a single image \(t == 1\), got t=2; videos are not supported"),
    ([1, 11, 14], r"patch grid 11x14 is not divisible by merge_size=2"),
    ([1, 10], r"image_grid_thw row must be \(t, h, w\), got \[1, 10\]"),
    ([1, 10, 14, 1], r"image_grid_thw row must be \(t, h, w\), got \[1, 10, 14, 1\]"),
])
def test_from_grid_thw_rejects(row, message):
    with pytest.raises(ValueError, match=message):
        GridGeometry.from_grid_thw((1000, 700), row)


@pytest.mark.parametrize("size, shape, message", [
    ((0, 10), (1, 1), r"image_size must be positive \(W, H\), got \(0, 10\)"),
    ((10, 10), (0, 3), r"grid_shape must be positive \(gh, gw\), got \(0, 3\)"),
])
def test_geometry_rejects_empty(size, shape, message):
    with pytest.raises(ValueError, match=message):
        GridGeometry(size, shape)


def test_cells_tile_the_image():
    geo = GridGeometry((1000, 601), (5, 7))
    assert geo.cell_box(0, 0)[:2] == (0.0, 0.0)
    assert geo.cell_box(4, 6)[2:] == (1000.0, 601.0)
    assert geo.cell_box(2, 3)[2] == geo.cell_box(2, 4)[0]
    with pytest.raises(IndexError, match=r"cell \(5, 0\) is outside the 5x7 grid"):
        geo.cell_box(5, 0)


def test_cell_box_maps_back_to_exactly_its_cell():
    # 1000 / 7 and 601 / 5 are not integers: edges round-trip through floats and must still be exact.
    geo = GridGeometry((1000, 601), (5, 7))
    for i in range(5):
        for j in range(7):
            expected = np.zeros((5, 7))
            expected[i, j] = 1.0
            np.testing.assert_array_equal(geo.box_to_cell_weights(geo.cell_box(i, j)), expected)


def test_edge_through_the_middle_of_a_cell_gives_half():
    geo = GridGeometry((400, 400), (4, 4))
    w = geo.box_to_cell_weights((150, 100, 200, 200))
    expected = np.zeros((4, 4))
    expected[1, 1] = 0.5
    np.testing.assert_array_equal(w, expected)
    # Half in both directions: a quarter.
    assert geo.box_to_cell_weights((0, 0, 50, 50))[0, 0] == 0.25


def test_integer_box_on_a_non_divisible_grid():
    # W = 1000, gw = 7: cell 2 spans [285.71, 428.57); a box from pixel 286 keeps 1 - (286 * 7 / 1000 - 2).
    geo = GridGeometry((1000, 100), (1, 7))
    w = geo.box_to_cell_weights((286, 0, 1000, 100))[0]
    np.testing.assert_allclose(w, [0, 0, 1 - 0.002, 1, 1, 1, 1], atol=1e-12)
    # A box ending on pixel 571 (cell 4 starts at 571.43) leaves cell 4 out entirely.
    w = geo.box_to_cell_weights((0, 0, 571, 100))[0]
    np.testing.assert_allclose(w, [1, 1, 1, 3.997 - 3, 0, 0, 0], atol=1e-12)


def test_weights_sum_to_box_area_in_cells():
    rng = np.random.default_rng(0)
    geo = GridGeometry((1003, 517), (9, 13))
    cell_w, cell_h = geo.cell_size
    for _ in range(50):
        x1, x2 = sorted(rng.uniform(0, 1003, 2))
        y1, y2 = sorted(rng.uniform(0, 517, 2))
        w = geo.box_to_cell_weights((x1, y1, x2, y2))
        assert w.min() >= 0 and w.max() <= 1
        assert w.sum() * cell_w * cell_h == pytest.approx((x2 - x1) * (y2 - y1), rel=1e-9)
        assert geo.area_fraction((x1, y1, x2, y2)) == pytest.approx(w.sum() / w.size, rel=1e-9)


def test_weights_invariant_to_image_scale():
    small, large = GridGeometry((1000, 700), (5, 7)), GridGeometry((2000, 1400), (5, 7))
    box = (123, 77, 611, 401)
    np.testing.assert_allclose(
        small.box_to_cell_weights(box), large.box_to_cell_weights(tuple(2 * v for v in box)), atol=1e-12
    )


def test_box_partly_outside_is_clipped():
    geo = GridGeometry((400, 300), (3, 4))
    np.testing.assert_array_equal(
        geo.box_to_cell_weights((-100, 150, 250, 900)), geo.box_to_cell_weights((0, 150, 250, 300))
    )
    assert clip_box((-100, 150, 250, 900), (400, 300)) == (0.0, 150.0, 250.0, 300.0)


OUTSIDE = r"lies entirely outside the 400x300 image"


@pytest.mark.parametrize(
    "box, message",
    [
        ((10, 10, 10, 20), r"empty or inverted box \(10, 10, 10, 20\): need x1 < x2 and y1 < y2"),
        ((30, 10, 20, 20), r"empty or inverted box \(30, 10, 20, 20\)"),
        ((500, 10, 600, 20), OUTSIDE),  # right of the image
        ((400, 0, 450, 300), OUTSIDE),  # touching the right edge from outside
        ((-50, -50, 0, 0), OUTSIDE),  # touching the corner
        ((0, 0, float("nan"), 10), r"box has non-finite coordinates: \(0, 0, nan, 10\)"),
        ((0, 0, float("inf"), 10), r"box has non-finite coordinates: \(0, 0, inf, 10\)"),
        ((0, 0, 10), r"a box is \(x1, y1, x2, y2\), got 3 values: \(0, 0, 10\)"),
    ],
)
def test_bad_boxes_raise(box, message):
    geo = GridGeometry((400, 300), (3, 4))
    with pytest.raises(ValueError, match=message):
        geo.box_to_cell_weights(box)


def test_as_map_accepts_tensors_and_validates():
    t = torch.arange(6, dtype=torch.bfloat16).reshape(2, 3)
    np.testing.assert_array_equal(as_map(t, (2, 3)), np.arange(6).reshape(2, 3))
    assert as_maps(t[None].repeat(4, 1, 1), (2, 3)).shape == (4, 2, 3)
    for bad, message in ((np.zeros((2, 3, 1)), r"must be 2-D \(gh, gw\), got shape \(2, 3, 1\)"),
                         (np.array([[1.0, -1.0]]), r"has negative values \(min -1\)"),
                         (np.array([[1.0, np.inf]]), r"has NaN or inf values"),
                         (np.zeros((0, 3)), r"is empty \(shape \(0, 3\)\)")):
        with pytest.raises(ValueError, match=message):
            as_map(bad)
    with pytest.raises(ValueError, match="does not match"):
        as_map(np.zeros((2, 3)), (3, 2))
    with pytest.raises(ValueError, match=r"attention maps must be \(L, 2, 3\), got shape \(2, 3\)"):
        as_maps(np.zeros((2, 3)), (2, 3))
