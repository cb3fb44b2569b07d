"""Where the map says to look: the window holding the most attention beyond its fair share, and the top cells.

Objective. With ``p = A / sum(A)`` the map as a distribution over cells, a window ``R`` of the grid scores

    excess(R) = sum_{(i,j) in R} p(i, j) - |R| / (gh * gw)

i.e. its coverage (paper Eq. 2) minus the coverage a uniform map would give it (the window's share of the image
area; every cell covers the same original-pixel area because the processor stretches the whole image). Plain
mass would always prefer the largest window; the subtracted area term makes a window grow only while the cells
it adds hold more than the average cell. A uniform map scores 0 everywhere.

Search. Window heights and widths (in cells) run over integers between ``min_fraction`` and ``max_fraction`` of
the grid's side (at most 24 sizes per side, evenly spread), every position at a one-cell stride; each size's
positions are scored at once from a summed-area table. Ties (within 1e-9) go to the smaller window, then to the
top-most, left-most position. The winner is returned in original pixels, rounded outward so that it contains
its cells, and always inside the image.

    box = suggest_zoom_box(a_rel, GridGeometry.from_grid_thw(image.size, inputs["image_grid_thw"][0]))
    image.crop(box)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from zwz.analytics.attention.coverage import coverage
from zwz.analytics.attention.grid import GridGeometry, as_map

logger = logging.getLogger(__name__)

__all__ = ["excess_coverage", "suggest_zoom_box", "top_cells"]

_MAX_SIZES_PER_SIDE = 24
_TIE_TOL = 1e-9


def _side_sizes(n: int, min_fraction: float, max_fraction: float) -> list[int]:
    """Window lengths (in cells) along a side of ``n`` cells; never empty."""
    lo = max(1, math.ceil(min_fraction * n - 1e-9))
    hi = max(lo, min(n, math.floor(max_fraction * n + 1e-9)))
    lo = min(lo, hi)
    count = min(hi - lo + 1, _MAX_SIZES_PER_SIDE)
    return sorted({int(round(v)) for v in np.linspace(lo, hi, count)})


def _window_sizes(
    geometry: GridGeometry, min_fraction: float, max_fraction: float, aspect: float | None
) -> list[tuple[int, int]]:
    gh, gw = geometry.grid_shape
    heights = _side_sizes(gh, min_fraction, max_fraction)
    widths = _side_sizes(gw, min_fraction, max_fraction)
    if aspect is None:
        pairs = {(h, w) for h in heights for w in widths}
    else:
        # aspect is width / height in original pixels; one side comes from the range, the other follows.
        cell_w, cell_h = geometry.cell_size
        pairs = {(h, min(gw, max(1, round(aspect * h * cell_h / cell_w)))) for h in heights}
        pairs |= {(min(gh, max(1, round(w * cell_w / (aspect * cell_h)))), w) for w in widths}
    return sorted(pairs, key=lambda hw: (hw[0] * hw[1], hw))


def suggest_zoom_box(
    grid: Any,
    geometry: GridGeometry,
    *,
    min_fraction: float = 0.1,
    max_fraction: float = 0.5,
    aspect: float | None = None,
) -> tuple[int, int, int, int]:
    """The window maximising excess attention mass over uniform (module docstring), as integer pixels.

    ``min_fraction``/``max_fraction`` bound each side of the window as a fraction of the grid's side (at least
    one cell); ``aspect`` (width / height in original pixels) instead fixes one side from the other, clamped to
    the grid. A map with zero total mass raises ``ValueError``.

    >>> geo = GridGeometry((400, 400), (4, 4))
    >>> a = np.ones((4, 4)); a[1, 2] = 20.0
    >>> suggest_zoom_box(a, geo)
    (200, 100, 300, 200)
    >>> suggest_zoom_box(a, GridGeometry((1000, 700), (4, 4)))  # rounded outward, inside the image
    (500, 175, 750, 350)
    """
    if not 0.0 < min_fraction <= max_fraction <= 1.0:
        raise ValueError(f"need 0 < min_fraction <= max_fraction <= 1, got {min_fraction}, {max_fraction}")
    if aspect is not None and not (math.isfinite(aspect) and aspect > 0):
        raise ValueError(f"aspect must be a positive width/height ratio, got {aspect}")
    arr = as_map(grid, geometry.grid_shape)
    total = arr.sum()
    if total <= 0:
        raise ValueError("attention map has zero total mass; no window stands out")
    gh, gw = geometry.grid_shape
    sat = np.zeros((gh + 1, gw + 1))
    sat[1:, 1:] = (arr / total).cumsum(axis=0).cumsum(axis=1)  # sat[i, j] = mass of rows < i, cols < j

    best: tuple[float, int, int, int, int] | None = None  # (excess, i, j, h, w)
    for h, w in _window_sizes(geometry, min_fraction, max_fraction, aspect):  # smallest area first
        ri, rj = gh + 1 - h, gw + 1 - w
        mass = sat[h:, w:] - sat[:ri, w:] - sat[h:, :rj] + sat[:ri, :rj]  # (gh-h+1, gw-w+1), top-left anchored
        excess = mass - h * w / (gh * gw)
        top = float(excess.max())
        if best is None or top > best[0] + _TIE_TOL:
            i, j = divmod(int(np.flatnonzero(excess >= top - _TIE_TOL)[0]), excess.shape[1])
            best = (top, i, j, h, w)
    assert best is not None  # _window_sizes is never empty
    excess_best, i, j, h, w = best
    logger.debug("zoom window rows %d:%d cols %d:%d excess %.4f", i, i + h, j, j + w, excess_best)
    width, height = geometry.image_size
    # Integer floor/ceil of j * W / gw etc.: exact, and (gw * W) // gw == W keeps the box inside the image.
    return (j * width) // gw, (i * height) // gh, -(-(j + w) * width // gw), -(-(i + h) * height // gh)


def excess_coverage(grid: Any, geometry: GridGeometry, box: Sequence[float]) -> float:
    """The objective for any pixel box: coverage (Eq. 2) minus the box's share of the image area.

    >>> a = np.zeros((4, 4)); a[1, 2] = 1.0
    >>> excess_coverage(a, GridGeometry((400, 400), (4, 4)), (200, 100, 300, 200))
    0.9375
    """
    return coverage(grid, geometry, box) - geometry.area_fraction(box)


def top_cells(grid: Any, k: int) -> list[tuple[int, int, float]]:
    """The ``k`` largest cells as ``(row, col, value)``, largest first, ties in row-major order.

    >>> top_cells([[0.0, 3.0], [3.0, 1.0]], 3)
    [(0, 1, 3.0), (1, 0, 3.0), (1, 1, 1.0)]
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    arr = as_map(grid)
    flat = arr.reshape(-1)
    order = np.argsort(-flat, kind="stable")[:k]
    gw = arr.shape[1]
    return [(int(n // gw), int(n % gw), float(flat[n])) for n in order]
