"""Attention maps as pictures: a colormap, an overlay on the original image, and PNG/base64 for the web.

    png_b64 = overlay_png_base64(image, a_rel, box=item_box, suggested_box=suggest_zoom_box(a_rel, geo),
                                 max_side=1024)
    html = f'<img src="data:image/png;base64,{png_b64}">'

The map is normalised robustly (its minimum to black, its 99th percentile to white, so one outlier token does
not wash the rest out), upsampled to the image bilinearly *before* colouring (interpolating values, not RGB
triples), and blended over the image. Boxes are in the image's pixels, x2/y2 exclusive.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from zwz.analytics.attention.grid import Box, as_map, clip_box

logger = logging.getLogger(__name__)

__all__ = [
    "BOX_COLOR",
    "LUT",
    "SUGGESTED_BOX_COLOR",
    "colorize",
    "normalize",
    "overlay",
    "overlay_png_base64",
    "to_png_base64",
]

BOX_COLOR = (0, 255, 0)  # the annotated key region: solid green
SUGGESTED_BOX_COLOR = (0, 200, 255)  # the suggested zoom window: dashed cyan

# Anchors of matplotlib's "inferno" (van der Walt & Smith, 2015), sampled at t = 0, 0.1, ..., 1.0. Its
# lightness rises monotonically, so brighter always means more attention, also in greyscale prints.
_ANCHORS = np.array(
    [
        (0, 0, 4),
        (22, 11, 57),
        (66, 10, 104),
        (106, 23, 110),
        (147, 38, 103),
        (188, 55, 84),
        (221, 81, 58),
        (243, 120, 25),
        (252, 165, 10),
        (246, 215, 70),
        (252, 255, 164),
    ],
    dtype=np.float64,
)  # (11, 3)


def _build_lut(anchors: np.ndarray, n: int = 256) -> np.ndarray:
    xp = np.linspace(0.0, 1.0, len(anchors))
    x = np.linspace(0.0, 1.0, n)
    lut = np.stack([np.interp(x, xp, anchors[:, c]) for c in range(3)], axis=1)  # (n, 3)
    return np.round(lut).astype(np.uint8)


LUT = _build_lut(_ANCHORS)  # (256, 3) uint8


def normalize(grid: Any, *, percentile: float = 99.0) -> np.ndarray:
    """Map to [0, 1]: the minimum to 0, the ``percentile``-th value (clipped above) to 1, float32 ``(gh, gw)``.

    When the percentile equals the minimum (a few hot cells among many cold ones) the maximum is used
    instead; an all-equal map gives all zeros.

    >>> normalize([[0.0, 1.0], [2.0, 4.0]], percentile=100.0).tolist()
    [[0.0, 0.25], [0.5, 1.0]]
    >>> normalize([[3.0, 3.0]]).tolist()
    [[0.0, 0.0]]
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    arr = as_map(grid)
    lo = float(arr.min())
    hi = float(np.percentile(arr, percentile))
    if hi <= lo:
        hi = float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.float32)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _apply_lut(t: np.ndarray) -> np.ndarray:
    idx = np.rint(np.clip(t, 0.0, 1.0) * (len(LUT) - 1)).astype(np.intp)
    return LUT[idx]  # (..., 3) uint8


def colorize(grid: Any, *, percentile: float = 99.0) -> np.ndarray:
    """The map in colour, one pixel per cell: uint8 ``(gh, gw, 3)`` (see :func:`normalize`).

    >>> rgb = colorize([[0.0, 1.0, 2.0]], percentile=100.0)
    >>> rgb.shape, rgb.dtype.name, rgb[0, 0].tolist(), rgb[0, 2].tolist()
    ((1, 3, 3), 'uint8', [0, 0, 4], [252, 255, 164])
    """
    return _apply_lut(normalize(grid, percentile=percentile))


def _line_width(size: tuple[int, int]) -> int:
    return max(2, round(min(size) / 200))


def _draw_box(draw: ImageDraw.ImageDraw, box: Box, color: tuple[int, int, int], width: int, dashed: bool) -> None:
    # Boxes are x2/y2 exclusive; PIL rectangles include their last pixel and grow the outline inward.
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x2, y2 = max(x2 - 1, x1), max(y2 - 1, y1)
    if not dashed:
        draw.rectangle((x1, y1, x2, y2), outline=color, width=width)
        return
    dash, gap = 4 * width, 2 * width
    w = width - 1
    for start in range(x1, x2 + 1, dash + gap):
        end = min(start + dash - 1, x2)
        draw.rectangle((start, y1, end, min(y1 + w, y2)), fill=color)
        draw.rectangle((start, max(y2 - w, y1), end, y2), fill=color)
    for start in range(y1, y2 + 1, dash + gap):
        end = min(start + dash - 1, y2)
        draw.rectangle((x1, start, min(x1 + w, x2), end), fill=color)
        draw.rectangle((max(x2 - w, x1), start, x2, end), fill=color)


def overlay(
    image: Image.Image,
    grid: Any,
    *,
    alpha: float = 0.5,
    box: Sequence[float] | None = None,
    suggested_box: Sequence[float] | None = None,
) -> Image.Image:
    """The map upsampled to ``image`` and blended over it (``alpha`` = the map's opacity); an RGB image.

    ``box`` (solid green) and ``suggested_box`` (dashed cyan) are in ``image``'s pixels, clipped to it; a box
    entirely outside raises ``ValueError``. Line width grows with the image (2 px up to 599 px sides).

    >>> img = Image.new("RGB", (64, 48), (128, 128, 128))
    >>> out = overlay(img, [[0.0, 1.0], [0.0, 0.0]], box=(32, 0, 64, 24))
    >>> out.size, out.mode, out.getpixel((32, 0))
    ((64, 48), 'RGB', (0, 255, 0))
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = image.convert("RGB")
    t = normalize(grid)  # (gh, gw) float32
    # Upsample the values, not the colours, so interpolated pixels stay on the colormap.
    t_img = Image.fromarray(t).resize(base.size, Image.Resampling.BILINEAR)
    heat = Image.fromarray(_apply_lut(np.asarray(t_img)))  # (H, W, 3)
    out = Image.blend(base, heat, alpha)
    width = _line_width(out.size)
    draw = ImageDraw.Draw(out)
    if suggested_box is not None:
        _draw_box(draw, clip_box(suggested_box, out.size), SUGGESTED_BOX_COLOR, width, dashed=True)
    if box is not None:  # drawn last: the annotation stays visible where the two boxes share an edge
        _draw_box(draw, clip_box(box, out.size), BOX_COLOR, width, dashed=False)
    return out


def to_png_base64(image: Image.Image) -> str:
    """PNG bytes of ``image``, base64 (ASCII, no ``data:`` prefix).

    >>> to_png_base64(Image.new("RGB", (1, 1)))[:8]
    'iVBORw0K'
    """
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def overlay_png_base64(
    image: Image.Image,
    grid: Any,
    *,
    alpha: float = 0.5,
    box: Sequence[float] | None = None,
    suggested_box: Sequence[float] | None = None,
    max_side: int | None = None,
) -> str:
    """:func:`overlay` as base64 PNG; ``max_side`` first shrinks the image (boxes scaled along) for the web.

    Boxes are in ``image``'s (original) pixels either way.

    >>> img = Image.new("RGB", (2000, 1000))
    >>> s = overlay_png_base64(img, [[1.0, 0.0]], box=(0, 0, 1000, 1000), max_side=200)
    >>> Image.open(io.BytesIO(base64.b64decode(s))).size
    (200, 100)
    """
    if max_side is not None:
        if max_side <= 0:
            raise ValueError(f"max_side must be positive, got {max_side}")
        width, height = image.size
        scale = max_side / max(width, height)
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            sx, sy = size[0] / width, size[1] / height
            image = image.convert("RGB").resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
            box = None if box is None else _scale_box(box, sx, sy)
            suggested_box = None if suggested_box is None else _scale_box(suggested_box, sx, sy)
    return to_png_base64(overlay(image, grid, alpha=alpha, box=box, suggested_box=suggested_box))


def _scale_box(box: Sequence[float], sx: float, sy: float) -> Box:
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1 * sx, y1 * sy, x2 * sx, y2 * sy
