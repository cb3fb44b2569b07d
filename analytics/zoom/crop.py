"""Cutting the zoom tool's crop: a 0-1000 relative box of Qwen3-VL's grounding -> pixels -> a crop of at least
32 px a side (Qwen-Agent's rule; see ``zwz.analytics.zoom.tool`` for where this module differs from it), and no
longer than ``MAX_ASPECT_RATIO`` times its width, which the Qwen-VL processor would refuse.

    crop = crop_image(image, crop_box(request.bbox_2d, image.size))
"""

from __future__ import annotations

import math

from PIL import Image

__all__ = ["COORD_MAX", "MAX_ASPECT_RATIO", "MIN_CROP_SIDE", "QWEN_AGENT_CROP_MIN_PIXELS", "bbox_to_pixels",
           "crop_box", "crop_image", "fit_aspect_ratio", "grow_box"]

COORD_MAX = 1000  # Qwen3-VL grounds boxes in 0-1000 relative coordinates
MIN_CROP_SIDE = 32  # Qwen-Agent's floor on a crop side, in pixels
QWEN_AGENT_CROP_MIN_PIXELS = 256 * 32 * 32  # Qwen-Agent upsamples each crop to at least this many pixels
# The Qwen-VL processors' smart_resize refuses a longer:shorter side ratio over 200 (transformers'
# qwen2_vl image processing, used by Qwen2.5-VL and Qwen3-VL alike; qwen-vl-utils' MAX_RATIO).
MAX_ASPECT_RATIO = 200


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


def fit_aspect_ratio(box: tuple[int, int, int, int], size: tuple[int, int],
                     max_ratio: float = MAX_ASPECT_RATIO) -> tuple[int, int, int, int]:
    """Widen the shorter side of a box longer than ``max_ratio`` : 1 around its centre, kept inside the image, so
    the processor takes the crop (always possible inside an image that is itself within the ratio).

    >>> fit_aspect_ratio((0, 0, 7000, 32), (7000, 40))   # 218.75:1 -> 7000 x 35 = 200:1
    (0, 0, 7000, 35)
    >>> fit_aspect_ratio((5, 5, 60, 40), (640, 480))     # within the ratio: unchanged
    (5, 5, 60, 40)
    """
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    if max(width, height) <= max_ratio * min(width, height):
        return box
    if width > height:
        new_h = min(size[1], math.ceil(width / max_ratio))
        new_top = _fit((top + bottom) / 2 - new_h / 2, new_h, size[1])
        return left, new_top, right, new_top + new_h
    new_w = min(size[0], math.ceil(height / max_ratio))
    new_left = _fit((left + right) / 2 - new_w / 2, new_w, size[0])
    return new_left, top, new_left + new_w, bottom


def crop_box(bbox: tuple[float, float, float, float] | list[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The pixel box a zoom on an image of ``size`` cuts: :func:`bbox_to_pixels`, :func:`grow_box`, then
    :func:`fit_aspect_ratio`.

    >>> crop_box([500, 500, 505, 505], (1000, 800))   # 5 x 4 px -> 40 x 32 px
    (482, 386, 522, 418)
    >>> crop_box([0, 0, 1000, 1], (7000, 40))          # a 7000 x 1 strip -> 7000 x 35, not 7000 x 32 (218:1)
    (0, 0, 7000, 35)
    """
    return fit_aspect_ratio(grow_box(bbox_to_pixels(bbox, size), size), size)


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
        new_w, new_h = max(1, round(crop.width * scale)), max(1, round(crop.height * scale))
        # Rounding the shorter side down can push a crop at the ratio limit just past it.
        if new_w > new_h * MAX_ASPECT_RATIO:
            new_h = math.ceil(new_w / MAX_ASPECT_RATIO)
        elif new_h > new_w * MAX_ASPECT_RATIO:
            new_w = math.ceil(new_h / MAX_ASPECT_RATIO)
        crop = crop.resize((new_w, new_h), Image.Resampling.BICUBIC)
    return crop
