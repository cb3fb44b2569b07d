"""What the overhead benchmarks share: the request image and percentiles (a free port: zwz.serve_process)."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def scene(size: int, seed: int = 0) -> bytes:
    """A photo-like JPEG (gradients and shapes compress like a photo; noise would not), different per seed."""
    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    for y in range(size):
        draw.line([(0, y), (size, y)], fill=(40 + 150 * y // size, (90 + seed * 7) % 255, 200 - 120 * y // size))
    for i in range(40):
        x, y, r = (i * 97 + seed * 31) % size, (i * 61 + seed * 17) % size, 8 + (i + seed) % 30
        draw.ellipse([x, y, x + r, y + r], fill=((i * 50 + seed) % 255, (i * 80) % 255, (i * 30 + seed * 3) % 255))
    draw.text((size // 3, size // 2), f"EXIT {seed}", fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]
