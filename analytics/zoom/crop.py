"""Cutting the zoom tool's crop: a 0-1000 relative box of Qwen3-VL's grounding -> pixels -> a crop of at least
32 px a side (Qwen-Agent's rule; see ``zwz.analytics.zoom.tool`` for where this module differs from it).

    crop = crop_image(image, crop_box(request.bbox_2d, image.size))
"""

from __future__ import annotations

import math

from PIL import Image

__all__ = ["COORD_MAX", "MIN_CROP_SIDE", "QWEN_AGENT_CROP_MIN_PIXELS", "bbox_to_pixels", "crop_box", "crop_image",
           "grow_box"]

COORD_MAX = 1000  # Qwen3-VL grounds boxes in 0-1000 relative coordinates
MIN_CROP_SIDE = 32  # Qwen-Agent's floor on a crop side, in pixels
QWEN_AGENT_CROP_MIN_PIXELS = 256 * 32 * 32  # Qwen-Agent upsamples each crop to at least this many pixels


def bbox_to_pixels(bbox: tuple[float, float, float, float] | list[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """0-1000 relative box -> ``(left, top, right, bottom)`` pixels, rounded outward so it covers the region.

    >>> bbox_to_pixels([250, 250, 750, 750], (400, 200))
    (100, 50, 300, 150)
    >>> bbox_to_pixels([0, 0, 1, 1], (640, 480))
    (0, 0, 1, 1)
    """
    width, height = size
    x1, y1, x2, y2 = (float(v) / COORD_MAX for v in bbox)
    left, top = math.floor(x1 * width), math.floor(y1 * height)
    right, bottom = math.ceil(x2 * width), math.ceil(y2 * height)
    left, top = min(max(left, 0), width - 1), min(max(top, 0), height - 1)
    return left, top, min(max(right, left + 1), width), min(max(bottom, top + 1), height)


def _fit(start: float, length: int, limit: int) -> int:
    """Slide a span of ``length`` starting near ``start`` so it lies inside ``[0, limit]``."""
    return min(max(round(start), 0), limit - length)


def grow_box(box: tuple[int, int, int, int], size: tuple[int, int], min_side: int = MIN_CROP_SIDE) -> tuple[int, int, int, int]:
    """Scale a box with a side under ``min_side`` by ``min_side / shorter side`` around its centre, kept inside
    the image (a side never exceeds the image's).

    >>> grow_box((100, 100, 110, 105), (640, 480))   # 10 x 5 -> 64 x 32, same centre
    (73, 86, 137, 118)
    >>> grow_box((0, 470, 8, 480), (640, 480))       # at a corner: slid inside, not clipped
    (0, 440, 32, 480)
    >>> grow_box((5, 5, 60, 40), (640, 480))         # both sides already >= 32
    (5, 5, 60, 40)
    """
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    if min(width, height) >= min_side:
        return box
    scale = min_side / min(width, height)
    # The epsilon keeps float noise (10 * 6.4 = 64.000...01) from adding a pixel.
    new_w = min(size[0], math.ceil(width * scale - 1e-9))
    new_h = min(size[1], math.ceil(height * scale - 1e-9))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    new_left, new_top = _fit(cx - new_w / 2, new_w, size[0]), _fit(cy - new_h / 2, new_h, size[1])
    return new_left, new_top, new_left + new_w, new_top + new_h


def crop_box(bbox: tuple[float, float, float, float] | list[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The pixel box a zoom on an image of ``size`` cuts: :func:`bbox_to_pixels` then :func:`grow_box`.

    >>> crop_box([500, 500, 505, 505], (1000, 800))   # 5 x 4 px -> 40 x 32 px
    (482, 386, 522, 418)
    """
    return grow_box(bbox_to_pixels(bbox, size), size)


def crop_image(image: Image.Image, box: tuple[int, int, int, int], *, min_pixels: int | None = None,
               max_pixels: int | None = None) -> Image.Image:
    """Cut ``box`` out of ``image``; optionally rescale (aspect kept, bicubic) into ``[min_pixels, max_pixels]``."""
    crop = image.crop(box)
    area = crop.width * crop.height
    scale = 1.0
    if min_pixels is not None and area < min_pixels:
        scale = math.sqrt(min_pixels / area)
    elif max_pixels is not None and area > max_pixels:
        scale = math.sqrt(max_pixels / area)
    if scale != 1.0:
        new_size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
        crop = crop.resize(new_size, Image.Resampling.BICUBIC)
    return crop
