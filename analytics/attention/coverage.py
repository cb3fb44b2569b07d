"""Relative-attention coverage of a key-region box (paper Sec. 5.2, Eq. 2).

    Coverage(B) = sum_{(i,j) in B~} A_rel(i, j) / sum_{(i,j)} A_rel(i, j)

``B~`` is the box mapped to the merged token grid. The paper does not say how cells cut by the box edge count;
here each cell counts with the fraction of its area inside the box (:meth:`GridGeometry.box_to_cell_weights`),
which equals the paper's sum for boxes on cell edges, is continuous in the box, and does not depend on the
original image's resolution.

    geo = GridGeometry.from_grid_thw(image.size, inputs["image_grid_thw"][0])
    coverage(a_rel, geo, item_box)                  # a_rel: (gh, gw)
    coverage_by_layer(a_rel_layers, geo, item_box)  # (L, gh, gw) -> one value per layer
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from zwz.analytics.attention.grid import GridGeometry, as_map, as_maps

logger = logging.getLogger(__name__)

__all__ = ["coverage", "coverage_by_layer"]


def coverage(grid: Any, geometry: GridGeometry, box: Sequence[float]) -> float:
    """Share of the map's mass inside ``box`` (original pixels, x2/y2 exclusive), in [0, 1] (Eq. 2).

    ``grid`` is ``(gh, gw)`` matching ``geometry.grid_shape`` (numpy, nested lists or a torch tensor), finite
    and non-negative; a map with zero total mass raises ``ValueError``, as does a box outside the image.

    >>> geo = GridGeometry((400, 400), (4, 4))
    >>> a = np.zeros((4, 4)); a[1, 2] = 3.0
    >>> coverage(a, geo, (200, 100, 300, 200))  # exactly the hot cell
    1.0
    >>> coverage(a, geo, (250, 0, 400, 400))  # the right half of it
    0.5
    """
    arr = as_map(grid, geometry.grid_shape)
    total = arr.sum()
    if total <= 0:
        raise ValueError("attention map has zero total mass; coverage is undefined")
    weights = geometry.box_to_cell_weights(box)  # (gh, gw)
    return float(np.clip((arr * weights).sum() / total, 0.0, 1.0))


def coverage_by_layer(maps: Any, geometry: GridGeometry, box: Sequence[float]) -> list[float]:
    """Eq. 2 for each layer of ``maps`` ``(L, gh, gw)``; a layer with zero mass raises ``ValueError``.

    >>> geo = GridGeometry((200, 100), (1, 2))
    >>> coverage_by_layer([[[1.0, 0.0]], [[1.0, 3.0]]], geo, (0, 0, 100, 100))
    [1.0, 0.25]
    """
    arr = as_maps(maps, geometry.grid_shape)  # (L, gh, gw)
    totals = arr.sum(axis=(1, 2))  # (L,)
    empty = np.flatnonzero(totals <= 0)
    if empty.size:
        raise ValueError(f"attention maps of layers {empty.tolist()} have zero total mass; coverage is undefined")
    weights = geometry.box_to_cell_weights(box)  # (gh, gw)
    inside = np.einsum("lhw,hw->l", arr, weights)  # (L,)
    return np.clip(inside / totals, 0.0, 1.0).tolist()
