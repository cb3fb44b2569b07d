"""Geometry of the merged visual-token grid: which original-image pixels each map cell stands for.

Qwen-VL processors stretch the whole original image of ``W x H`` pixels to ``(2 * gw * patch, 2 * gh * patch)``
(patch 14 for Qwen2.5-VL, 16 for Qwen3-VL; no padding, no cropping) and merge 2x2 patches into one LLM token,
so ``image_grid_thw = (1, 2 * gh, 2 * gw)`` and merged token ``(i, j)`` covers the original-pixel cell
``[j * W / gw, (j + 1) * W / gw) x [i * H / gh, (i + 1) * H / gh)``. A box given on the original image (paper
Sec. 5.2, ``B = (x1, y1, x2, y2)``) maps to the grid as the fraction of each cell's area it covers, so boxes
that cut through cells count those cells in proportion, and the result does not depend on the image's size,
only on the box relative to it.

    geo = GridGeometry.from_grid_thw(image.size, inputs["image_grid_thw"][0])
    weights = geo.box_to_cell_weights((x1, y1, x2, y2))   # (gh, gw), each in [0, 1]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["Box", "GridGeometry", "as_map", "as_maps", "clip_box"]

# (x1, y1, x2, y2) in original-image pixels; x2/y2 exclusive as in PIL's ``Image.crop``.
Box = tuple[float, float, float, float]

# Grid coordinates this close to an integer are taken as that cell edge: ``cell_box`` returns float edges such
# as 1000 * 3 / 7, and converting them back (x * gw / W) can land 1e-16 off the integer.
_EDGE_SNAP = 1e-9


def clip_box(box: Sequence[float], image_size: tuple[int, int]) -> Box:
    """Validate ``box`` (x1, y1, x2, y2; x2/y2 exclusive) and clip it to the image ``(W, H)``.

    Raises ``ValueError`` for a box that is not four finite numbers, is empty or inverted (``x2 <= x1`` or
    ``y2 <= y1``), or lies entirely outside the image (touching an edge from outside counts as outside).

    >>> clip_box((-10, 20, 50.5, 500), (100, 80))
    (0.0, 20.0, 50.5, 80.0)
    >>> clip_box((10, 10, 10, 20), (100, 80))  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValueError: empty or inverted box
    """
    if len(box) != 4:
        raise ValueError(f"a box is (x1, y1, x2, y2), got {len(box)} values: {box!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(np.isfinite((x1, y1, x2, y2))):
        raise ValueError(f"box has non-finite coordinates: {box!r}")
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty or inverted box {box!r}: need x1 < x2 and y1 < y2")
    width, height = image_size
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if cx2 <= cx1 or cy2 <= cy1:
        raise ValueError(f"box {box!r} lies entirely outside the {width}x{height} image")
    return cx1, cy1, cx2, cy2


def as_map(grid: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    """``grid`` as a finite, non-negative float64 ``(gh, gw)`` array; torch tensors (any device/dtype) too.

    >>> as_map([[0, 1], [2, 3]]).dtype
    dtype('float64')
    >>> as_map([[0.0, float("nan")]])  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValueError: attention map has NaN or inf values
    """
    arr = _to_numpy(grid)
    if arr.ndim != 2:
        raise ValueError(f"attention map must be 2-D (gh, gw), got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"attention map shape {arr.shape} does not match the grid {tuple(shape)}")
    _check_values(arr)
    return arr


def as_maps(maps: Any, shape: tuple[int, int]) -> np.ndarray:
    """Per-layer maps ``(L, gh, gw)`` as a finite, non-negative float64 array (see :func:`as_map`).

    >>> as_maps([[[1, 2]], [[3, 4]]], (1, 2)).shape
    (2, 1, 2)
    """
    arr = _to_numpy(maps)
    if arr.ndim != 3 or arr.shape[1:] != tuple(shape):
        raise ValueError(f"attention maps must be (L, {shape[0]}, {shape[1]}), got shape {arr.shape}")
    _check_values(arr)
    return arr


def _to_numpy(values: Any) -> np.ndarray:
    # Duck-typed so torch is not imported here; bf16 has no numpy dtype, hence float() before numpy().
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def _check_values(arr: np.ndarray) -> None:
    if arr.size == 0:
        raise ValueError(f"attention map is empty (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise ValueError("attention map has NaN or inf values")
    if (arr < 0).any():
        raise ValueError(f"attention map has negative values (min {arr.min():.3g}); mass must be >= 0")


def _snap(u: float) -> float:
    r = round(u)
    return float(r) if abs(u - r) <= _EDGE_SNAP else u


def _axis_overlap(lo: float, hi: float, n: int) -> np.ndarray:
    """Overlap of the grid-unit interval ``[lo, hi)`` with each unit cell ``[k, k + 1)``, k < n."""
    edges = np.arange(n, dtype=np.float64)
    return np.clip(np.minimum(hi, edges + 1.0) - np.maximum(lo, edges), 0.0, 1.0)


@dataclass(frozen=True)
class GridGeometry:
    """An original image of ``image_size = (W, H)`` pixels seen as a ``grid_shape = (gh, gw)`` token grid.

    >>> geo = GridGeometry.from_grid_thw((1000, 700), (1, 10, 14))
    >>> geo.grid_shape, geo.cell_size
    ((5, 7), (142.85714285714286, 140.0))
    >>> w = geo.box_to_cell_weights(geo.cell_box(2, 3))  # cell edges at 1000 * 3 / 7, ...: still exact
    >>> float(w[2, 3]), float(w.sum())
    (1.0, 1.0)
    """

    image_size: tuple[int, int]  # (W, H) original pixels
    grid_shape: tuple[int, int]  # (gh, gw) merged tokens

    def __post_init__(self) -> None:
        width, height = self.image_size
        gh, gw = self.grid_shape
        if width <= 0 or height <= 0:
            raise ValueError(f"image_size must be positive (W, H), got {self.image_size}")
        if gh <= 0 or gw <= 0:
            raise ValueError(f"grid_shape must be positive (gh, gw), got {self.grid_shape}")

    @classmethod
    def from_grid_thw(
        cls, image_size: tuple[int, int], image_grid_thw_row: Sequence[int] | Any, merge_size: int = 2
    ) -> GridGeometry:
        """From one row of the processor's ``image_grid_thw`` ``(t, h, w)`` in patches (list, array or tensor).

        >>> GridGeometry.from_grid_thw((640, 480), [1, 34, 46]).grid_shape
        (17, 23)
        """
        thw = [int(v) for v in _to_numpy(image_grid_thw_row).reshape(-1)]
        if len(thw) != 3:
            raise ValueError(f"image_grid_thw row must be (t, h, w), got {thw}")
        t, h, w = thw
        if t != 1:
            raise ValueError(f"expected a single image (t == 1), got t={t}; videos are not supported")
        if merge_size <= 0 or h % merge_size or w % merge_size:
            raise ValueError(f"patch grid {h}x{w} is not divisible by merge_size={merge_size}")
        width, height = (int(v) for v in image_size)
        return cls(image_size=(width, height), grid_shape=(h // merge_size, w // merge_size))

    @property
    def cell_size(self) -> tuple[float, float]:
        """(width, height) of one cell in original pixels."""
        return self.image_size[0] / self.grid_shape[1], self.image_size[1] / self.grid_shape[0]

    def cell_box(self, i: int, j: int) -> Box:
        """Original-pixel box of cell ``(row i, column j)``, float edges.

        >>> GridGeometry((1000, 600), (3, 7)).cell_box(1, 2)
        (285.7142857142857, 200.0, 428.57142857142856, 400.0)
        """
        gh, gw = self.grid_shape
        if not (0 <= i < gh and 0 <= j < gw):
            raise IndexError(f"cell ({i}, {j}) is outside the {gh}x{gw} grid")
        width, height = self.image_size
        return j * width / gw, i * height / gh, (j + 1) * width / gw, (i + 1) * height / gh

    def box_to_cell_weights(self, box: Sequence[float]) -> np.ndarray:
        """Fraction of each cell's area inside ``box`` (original pixels, x2/y2 exclusive): ``(gh, gw)`` in [0, 1].

        The box is clipped to the image first; an empty/inverted box or one entirely outside raises
        ``ValueError``. Exact on edges: a box edge through the middle of a cell gives that cell 0.5.

        >>> geo = GridGeometry((400, 400), (4, 4))
        >>> geo.box_to_cell_weights((150, 100, 400, 200))[1]
        array([0. , 0.5, 1. , 1. ])
        >>> float(geo.box_to_cell_weights((-50, -50, 50, 50)).sum())  # clipped to the top-left half-cell
        0.25
        """
        x1, y1, x2, y2 = clip_box(box, self.image_size)
        width, height = self.image_size
        gh, gw = self.grid_shape
        # Grid units: multiply before dividing so integer pixels on a cell edge map to exact integers.
        cols = _axis_overlap(_snap(x1 * gw / width), _snap(x2 * gw / width), gw)  # (gw,)
        rows = _axis_overlap(_snap(y1 * gh / height), _snap(y2 * gh / height), gh)  # (gh,)
        return np.outer(rows, cols)  # (gh, gw)

    def area_fraction(self, box: Sequence[float]) -> float:
        """Share of the image's area inside ``box`` after clipping.

        >>> GridGeometry((400, 200), (2, 4)).area_fraction((0, 0, 200, 400))
        0.5
        """
        x1, y1, x2, y2 = clip_box(box, self.image_size)
        return (x2 - x1) * (y2 - y1) / (self.image_size[0] * self.image_size[1])
