"""ZoomWorld's drawing primitives: text with a known ink box, named shapes, flags and material swatches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from zwz.distill.zoomworld.assets import COLORS, Box, Rng, pick

@lru_cache(maxsize=64)
def get_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow >= 10.1 ships a scalable default font when FreeType is present; without it we scale the bitmap.
    return ImageFont.load_default(size=size) if features.check("freetype2") else ImageFont.load_default()


def draw_text(img: Image.Image, xy: tuple[int, int], text: str, size: int, fill: tuple[int, int, int]) -> Box:
    """Draw text with its top-left ink at ``xy``; return the inked box."""
    font = get_font(size)
    x0, y0, x1, y1 = (int(v) for v in font.getbbox(text))
    if isinstance(font, ImageFont.FreeTypeFont):
        ImageDraw.Draw(img).text((xy[0] - x0, xy[1] - y0), text, font=font, fill=fill)
        return (xy[0], xy[1], xy[0] + x1 - x0, xy[1] + y1 - y0)
    scale = max(1, round(size / 11))  # bitmap default font is ~11 px tall
    mask = Image.new("L", (x1, y1), 0)
    ImageDraw.Draw(mask).text((0, 0), text, font=font, fill=255)
    mask = mask.resize((x1 * scale, y1 * scale), Image.NEAREST)
    img.paste(Image.new("RGB", mask.size, fill), xy, mask)
    return (xy[0], xy[1], xy[0] + mask.width, xy[1] + mask.height)


def text_size(text: str, size: int) -> tuple[int, int]:
    font = get_font(size)
    x0, y0, x1, y1 = font.getbbox(text)
    scale = 1 if isinstance(font, ImageFont.FreeTypeFont) else max(1, round(size / 11))
    return int(x1 - x0) * scale, int(y1 - y0) * scale


def draw_shape(
    draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, fill: object, outline: object = None
) -> None:
    """A named shape of circumradius ``r`` centred on (cx, cy)."""
    width = max(1, round(r / 8))
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)
    elif kind in ("triangle", "square", "pentagon", "hexagon", "diamond"):
        sides = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6, "diamond": 4}[kind]
        rotation = {"square": 45, "diamond": 0}.get(kind, 0)
        draw.regular_polygon((cx, cy, r), sides, rotation=rotation, fill=fill, outline=outline, width=width)
    elif kind == "star":
        pts = [
            (cx + (r if i % 2 == 0 else r * 0.45) * math.sin(i * math.pi / 5),
             cy - (r if i % 2 == 0 else r * 0.45) * math.cos(i * math.pi / 5))
            for i in range(10)
        ]  # fmt: skip
        draw.polygon(pts, fill=fill, outline=outline, width=width)
    elif kind == "cross":
        t = r * 0.35
        draw.rectangle((cx - t, cy - r, cx + t, cy + r), fill=fill, outline=outline, width=width)
        draw.rectangle((cx - r, cy - t, cx + r, cy + t), fill=fill, outline=outline, width=width)
    else:
        raise ValueError(f"unknown shape {kind!r}")


def draw_flag(img: Image.Image, box: Box, layout: str, colors: Sequence[tuple[int, int, int]]) -> None:
    draw = ImageDraw.Draw(img)
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if layout in ("vertical", "horizontal"):
        n = len(colors)
        for i, c in enumerate(colors):
            if layout == "vertical":
                draw.rectangle((x1 + w * i // n, y1, x1 + w * (i + 1) // n, y2), fill=c)
            else:
                draw.rectangle((x1, y1 + h * i // n, x2, y1 + h * (i + 1) // n), fill=c)
    else:
        draw.rectangle(box, fill=colors[0])
    if layout == "nordic":
        cx = x1 + w * 0.375  # the Nordic cross sits towards the hoist
        for t, c in ((h / 5, colors[1]), (h / 10, colors[2] if len(colors) > 2 else None)):
            if c is not None:
                draw.rectangle((cx - t / 2, y1, cx + t / 2, y2), fill=c)
                draw.rectangle((x1, y1 + h / 2 - t / 2, x2, y1 + h / 2 + t / 2), fill=c)
    elif layout in ("plus", "cross"):
        cx, cy, t = x1 + w / 2, y1 + h / 2, h / 5
        arm = (h * 0.3, h * 0.3) if layout == "plus" else (w / 2, h / 2)
        draw.rectangle((cx - t / 2, cy - arm[1], cx + t / 2, cy + arm[1]), fill=colors[1])
        draw.rectangle((cx - arm[0], cy - t / 2, cx + arm[0], cy + t / 2), fill=colors[1])
    elif layout == "disc":
        cx, cy, r = x1 + w * (0.45 if colors[0] != (255, 255, 255) else 0.5), y1 + h / 2, h * 0.3
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colors[1])
    draw.rectangle(box, outline=(90, 90, 90), width=1)


def material_swatch(rng: Rng, size: tuple[int, int], name: str) -> Image.Image:
    """A swatch whose texture stands for a material."""
    w, h = size
    if name == "metal":  # brushed vertical gradient with rivets
        ramp = np.linspace(150, 225, h)[:, None] + rng.normal(0, 6, (h, 1)) + np.zeros((1, w))
        swatch = Image.fromarray(np.clip(np.repeat(ramp[..., None], 3, 2), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(swatch)
        for x, y in ((6, 6), (w - 7, 6), (6, h - 7), (w - 7, h - 7)):
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(110, 110, 115), outline=(60, 60, 60))
        return swatch
    base = {"wood": (195, 145, 90), "brick": (215, 210, 200), "tile": (232, 232, 236), "stone": (150, 150, 148)}
    swatch = Image.new("RGB", size, base.get(name, COLORS[str(pick(rng, ("blue", "purple", "green", "red")))]))
    draw = ImageDraw.Draw(swatch)
    if name == "wood":  # wavy grain
        for k in range(int(rng.integers(8, 13))):
            y0, amp, phase = (k + 0.5) * h / 11, rng.uniform(1, 3.5), rng.uniform(0, 6.3)
            pts = [(x, y0 + amp * math.sin(x / 14 + phase)) for x in range(0, w + 4, 4)]
            draw.line(pts, fill=(125, 80, 45), width=2)
    elif name == "brick":  # running bond with mortar gaps
        bh, bw = int(rng.integers(11, 15)), int(rng.integers(26, 34))
        for row, y in enumerate(range(0, h, bh)):
            for x in range(-(bw // 2) * (row % 2), w, bw):
                c = tuple(int(v) for v in np.array((170, 70, 50)) + rng.integers(-15, 16, 3))
                draw.rectangle((x + 1, y + 1, x + bw - 2, y + bh - 2), fill=c)
    elif name == "tile":  # checker with grout
        t = int(rng.integers(14, 20))
        for i, x in enumerate(range(0, w, t)):
            for j, y in enumerate(range(0, h, t)):
                draw.rectangle((x, y, x + t - 1, y + t - 1), fill=(190, 205, 225) if (i + j) % 2 else (240, 240, 242),
                               outline=(150, 150, 150))  # fmt: skip
    elif name == "fabric":  # weave lines and polka dots
        for v in range(0, max(w, h), 3):
            draw.line((v, 0, v, h), fill=tuple(int(c * 0.85) for c in swatch.getpixel((0, 0))))
        for y in range(4, h, 10):
            for x in range(4 + 5 * ((y // 10) % 2), w, 10):
                draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(245, 245, 245))
    elif name == "stone":  # cobbles
        for _ in range(int(w * h / 260)):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(6, 11)
            g = int(rng.integers(110, 200))
            draw.ellipse((x - r, y - r * 0.8, x + r, y + r * 0.8), fill=(g, g, g - 6), outline=(70, 70, 70))
    return swatch


