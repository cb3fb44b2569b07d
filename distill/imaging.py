"""The pixel operations of R2I (paper Sec. 3.1, App. 8.1): zoom in on a box, expand it, draw it, encode images.

>>> from PIL import Image
>>> zoom_in(Image.new("RGB", (100, 80)), (10, 10, 30, 20)).size
(40, 20)
>>> expand_box((100, 100, 200, 150), 0.05, (1000, 1000))
(95.0, 97.5, 205.0, 152.5)
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

__all__ = [
    "BOX_COLOR",
    "box_area_fraction",
    "draw_box",
    "encode_png",
    "expand_box",
    "image_hash",
    "save_png_atomic",
    "zoom_in",
]

BOX_COLOR = (255, 0, 0)  # the paper's red rectangle
Box = Sequence[float]


def zoom_in(image: Image.Image, box: Box, scale: float = 2.0) -> Image.Image:
    """Crop ``box`` (x1, y1, x2, y2 pixels) and upscale it ``scale`` x with LANCZOS (paper: 2x)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    crop = image.convert("RGB").crop((x1, y1, x2, y2))
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    return crop.resize(size, Image.LANCZOS)


def expand_box(box: Box, fraction: float, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """``box`` grown by ``fraction`` of its width/height on each side (paper: 5%), clipped to ``size`` (w, h)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = (x2 - x1) * fraction, (y2 - y1) * fraction
    return (max(0.0, x1 - dx), max(0.0, y1 - dy), min(float(size[0]), x2 + dx), min(float(size[1]), y2 + dy))


def box_area_fraction(box: Box, size: tuple[int, int]) -> float:
    """area(B) / area(I), the paper's sparsity ratio compared against tau.

    >>> box_area_fraction((0, 0, 10, 10), (100, 100))
    0.01
    """
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1) / float(size[0] * size[1])


def draw_box(image: Image.Image, box: Box, width: int = 5, color: tuple[int, int, int] = BOX_COLOR) -> Image.Image:
    """A copy of ``image`` with a ``width``-px rectangle drawn just inside ``box`` (paper: red, 5 px)."""
    out = image.convert("RGB").copy()
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    ImageDraw.Draw(out).rectangle((x1, y1, x2 - 1, y2 - 1), outline=color, width=width)
    return out


def encode_png(image: Image.Image) -> bytes:
    """Lossless PNG bytes (deterministic for the same pixels); fast compression, since a 1.7 MP image takes
    about twice as long at PNG's default level for 30% fewer bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def image_hash(data: bytes) -> str:
    """The content id of an encoded image (first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(data).hexdigest()[:16]


def save_png_atomic(image: Image.Image | bytes, path: Path) -> Path:
    """Write a PNG via a temporary file and a rename, so a crash never leaves a half-written image."""
    data = image if isinstance(image, bytes) else encode_png(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
