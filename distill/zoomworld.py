"""ZoomWorld: a seeded, procedural fine-grained benchmark with known answers and evidence boxes.

Each image is a busy canvas (colour blotches, hundreds of tiny shapes and words) with a dozen small labelled
panels. One panel holds the evidence; the question names it by its tiny label ("the panel labelled K7"), and
the other panels hold the same kinds of content, so the answer needs zoom-level reading of a region well
under 10% of the image. The six ZoomBench dimensions are covered: counting, ocr, color, structure, material,
identification. Items come with the evidence box, a crop of it (with a margin) for the dual view, and a
multiple-choice or open prompt. Only PIL and numpy; the same seed gives byte-identical PNGs.

    python -c "from zwz.distill.zoomworld import write_zoomworld; write_zoomworld('zoomworld', 120, seed=0)"
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from zwz.distill.benchmark import DIMENSIONS, BenchItem

logger = logging.getLogger(__name__)

__all__ = ["DIMENSIONS", "expand_box", "generate_zoomworld", "iter_zoomworld", "write_zoomworld"]

DEFAULT_IMAGE_SIZE = (1536, 1152)
MIN_SIDE = 1024  # fine-grained means high resolution; R2I keeps images of at least ~1000 px per side
MAX_BOX_FRACTION = 0.1  # paper's tau: area(B) / area(I) < 0.1
CROP_MARGIN = 0.15  # fraction of the box side added on each side of the crop
MC_SUFFIX = "Answer with the option's letter from the given choices."
OPEN_SUFFIX = "Answer the question using a single word or number."
_GRID = (6, 4)  # panel cells (columns, rows)
_PANEL_FILL = (247, 246, 240)

Rng = np.random.Generator
Box = tuple[int, int, int, int]
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35), "green": (35, 150, 60), "blue": (35, 75, 215), "yellow": (240, 205, 30),
    "orange": (245, 135, 25), "purple": (135, 55, 175), "pink": (240, 120, 180), "brown": (125, 75, 35),
    "black": (20, 20, 20), "cyan": (30, 195, 215),
}  # fmt: skip
WORDS = (
    "ROOST", "COAST", "GHOST", "PLANT", "RIVER", "STONE", "LEMON", "TIGER", "CABLE", "MAPLE", "ORBIT", "PILOT",
    "QUILT", "RADAR", "SOLAR", "TULIP", "VIVID", "WALTZ", "ZEBRA", "BRAVO", "CEDAR", "DELTA", "EMBER", "FABLE",
    "GLYPH", "HAVEN", "IVORY", "JOLLY", "KAYAK", "LUNAR", "MOTEL", "NOBLE", "OPERA", "PRISM", "RELAY", "SPOKE",
    "TORCH", "UNITY", "VAPOR", "WHEAT", "YACHT", "ANCHOR", "BASKET", "CANDLE", "DINNER", "FALCON", "GARDEN",
    "HARBOR", "JUNGLE", "KETTLE", "LADDER", "MARKET", "NICKEL", "PEPPER", "RABBIT", "SILVER", "TICKET", "WINTER",
)  # fmt: skip
MATERIALS = ("wood", "brick", "tile", "fabric", "metal", "stone")
SHAPES = ("circle", "triangle", "square", "pentagon", "hexagon", "star", "diamond", "cross")
COUNTABLE = ("circle", "triangle", "square", "star", "diamond")
ARRANGEMENTS = ("row", "column", "diagonal", "ring", "grid")
# (country, layout, colours). Layouts: vertical/horizontal stripes, nordic cross (bg, cross[, inner]),
# plus (Swiss square flag), cross (St George), disc (bg, disc; Bangladesh's sits left of centre).
FLAGS: tuple[tuple[str, str, tuple[tuple[int, int, int], ...]], ...] = (
    ("France", "vertical", ((0, 35, 149), (255, 255, 255), (237, 41, 57))),
    ("Italy", "vertical", ((0, 146, 70), (255, 255, 255), (206, 43, 55))),
    ("Ireland", "vertical", ((22, 155, 98), (255, 255, 255), (255, 136, 62))),
    ("Belgium", "vertical", ((20, 20, 20), (253, 218, 36), (239, 51, 64))),
    ("Romania", "vertical", ((0, 43, 127), (252, 209, 22), (206, 17, 38))),
    ("Nigeria", "vertical", ((0, 135, 81), (255, 255, 255), (0, 135, 81))),
    ("Germany", "horizontal", ((20, 20, 20), (221, 0, 0), (255, 206, 0))),
    ("Russia", "horizontal", ((255, 255, 255), (0, 57, 166), (213, 43, 30))),
    ("Netherlands", "horizontal", ((174, 28, 40), (255, 255, 255), (33, 70, 139))),
    ("Austria", "horizontal", ((200, 16, 46), (255, 255, 255), (200, 16, 46))),
    ("Hungary", "horizontal", ((206, 41, 57), (255, 255, 255), (71, 112, 80))),
    ("Bulgaria", "horizontal", ((255, 255, 255), (0, 150, 110), (214, 38, 18))),
    ("Ukraine", "horizontal", ((0, 87, 183), (255, 215, 0))),
    ("Poland", "horizontal", ((255, 255, 255), (220, 20, 60))),
    ("Estonia", "horizontal", ((0, 114, 206), (20, 20, 20), (255, 255, 255))),
    ("Lithuania", "horizontal", ((253, 185, 19), (0, 106, 68), (193, 39, 45))),
    ("Sweden", "nordic", ((0, 106, 167), (254, 204, 2))),
    ("Denmark", "nordic", ((200, 16, 46), (255, 255, 255))),
    ("Finland", "nordic", ((255, 255, 255), (0, 47, 108))),
    ("Norway", "nordic", ((186, 12, 47), (255, 255, 255), (0, 32, 91))),
    ("Iceland", "nordic", ((2, 82, 156), (255, 255, 255), (220, 30, 53))),
    ("Switzerland", "plus", ((218, 41, 28), (255, 255, 255))),
    ("England", "cross", ((255, 255, 255), (206, 17, 36))),
    ("Japan", "disc", ((255, 255, 255), (188, 0, 45))),
    ("Bangladesh", "disc", ((0, 106, 78), (244, 42, 65))),
)


@dataclass(frozen=True)
class _Fact:
    """What the evidence panel shows: the question about it, the answer and three wrong options."""

    question: str
    answer: str
    distractors: tuple[str, str, str]
    variant: str


# ------------------------------------------------------------------------------------------ random helpers
def _pick(rng: Rng, seq: Sequence[object]) -> object:
    return seq[int(rng.integers(len(seq)))]


def _sample(rng: Rng, seq: Sequence[object], k: int) -> list[object]:
    return [seq[int(i)] for i in rng.permutation(len(seq))[:k]]


def _wrong(rng: Rng, pool: Sequence[str], answer: str) -> tuple[str, str, str]:
    a, b, c = _sample(rng, [p for p in pool if p != answer], 3)
    return (str(a), str(b), str(c))


# ----------------------------------------------------------------------------------------------- drawing
@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow >= 10.1 ships a scalable default font when FreeType is present; without it we scale the bitmap.
    return ImageFont.load_default(size=size) if features.check("freetype2") else ImageFont.load_default()


def _text(img: Image.Image, xy: tuple[int, int], text: str, size: int, fill: tuple[int, int, int]) -> Box:
    """Draw text with its top-left ink at ``xy``; return the inked box."""
    font = _font(size)
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


def _text_size(text: str, size: int) -> tuple[int, int]:
    font = _font(size)
    x0, y0, x1, y1 = font.getbbox(text)
    scale = 1 if isinstance(font, ImageFont.FreeTypeFont) else max(1, round(size / 11))
    return int(x1 - x0) * scale, int(y1 - y0) * scale


def _shape(
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


def _flag(img: Image.Image, box: Box, layout: str, colors: Sequence[tuple[int, int, int]]) -> None:
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


def _material(rng: Rng, size: tuple[int, int], name: str) -> Image.Image:
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
    swatch = Image.new("RGB", size, base.get(name, COLORS[str(_pick(rng, ("blue", "purple", "green", "red")))]))
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


# --------------------------------------------------------------------------------------- panel contents
def _counting(img: Image.Image, rng: Rng, area: Box, label: str) -> _Fact:
    draw = ImageDraw.Draw(img)
    x1, y1, x2, y2 = area
    kind, color = str(_pick(rng, COUNTABLE)), str(_pick(rng, list(COLORS)))
    n = int(rng.integers(3, 13))
    others = [(k, c) for k in COUNTABLE for c in COLORS if (k, c) != (kind, color)]
    extra = _sample(rng, others, int(rng.integers(2, 6)))
    cell = max(16, min(x2 - x1, y2 - y1) // 6)
    cells = [(cx, cy) for cx in range(x1, x2 - cell + 1, cell) for cy in range(y1, y2 - cell + 1, cell)]
    spots = _sample(rng, cells, min(len(cells), n + len(extra)))
    n = min(n, len(spots) - len(extra))
    for i, (cx, cy) in enumerate(spots):
        k, c = (kind, color) if i < n else extra[i - n]
        r = cell * rng.uniform(0.28, 0.36)
        _shape(draw, str(k), cx + cell / 2, cy + cell / 2, r, COLORS[str(c)], outline=(40, 40, 40))
    pool = [str(v) for v in range(max(0, n - 3), n + 4)]
    return _Fact(f"How many {color} {kind}s are in the panel labelled {label}?", str(n), _wrong(rng, pool, str(n)),
                 "count")  # fmt: skip


def _ocr(img: Image.Image, rng: Rng, area: Box, label: str) -> _Fact:
    x1, y1, x2, y2 = area
    word = str(_pick(rng, WORDS))
    size = int(rng.integers(12, 18))
    tw, th = _text_size(word, size)
    x = int(rng.integers(x1, max(x1 + 1, x2 - tw)))
    y = int(rng.integers(y1, max(y1 + 1, y2 - th)))
    _text(img, (x, y), word, size, (int(rng.integers(0, 80)),) * 3)
    variants: set[str] = set()
    letters = "ABCDEFGHIJKLMNOPRSTUVWY"
    while len(variants) < 8:  # near misses: one letter changed, dropped or added (cf. ROOST/COST/CONST/GHOST)
        i, op, ch = int(rng.integers(len(word))), int(rng.integers(3)), letters[int(rng.integers(len(letters)))]
        v = (word[:i] + ch + word[i + 1 :], word[:i] + word[i + 1 :], word[:i] + ch + word[i:])[op]
        if v != word and len(v) >= 3:
            variants.add(v)
    return _Fact(f"What word is printed in the panel labelled {label}?", word,
                 _wrong(rng, sorted(variants), word), "word")  # fmt: skip


def _color(img: Image.Image, rng: Rng, area: Box, label: str) -> _Fact:
    draw = ImageDraw.Draw(img)
    x1, y1, x2, y2 = area
    cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, min(x2 - x1, y2 - y1) * 0.24
    body, other, part = (str(c) for c in _sample(rng, list(COLORS), 3))
    obj = str(_pick(rng, ("house", "flower", "car", "mushroom")))
    ink = (40, 40, 40)
    if obj == "house":
        draw.rectangle((cx - s, cy - s * 0.3, cx + s, cy + s), fill=COLORS[body], outline=ink)
        draw.polygon([(cx - s * 1.15, cy - s * 0.3), (cx + s * 1.15, cy - s * 0.3), (cx, cy - s * 1.1)],
                     fill=COLORS[other], outline=ink)  # fmt: skip
        draw.rectangle((cx - s * 0.14, cy + s * 0.5, cx + s * 0.14, cy + s), fill=COLORS[part], outline=ink)
        question = "What color is the door of the house"
    elif obj == "flower":
        for a in range(6):
            px, py = cx + s * 0.6 * math.cos(a * math.pi / 3), cy + s * 0.6 * math.sin(a * math.pi / 3)
            draw.ellipse((px - s * 0.42, py - s * 0.42, px + s * 0.42, py + s * 0.42), fill=COLORS[body], outline=ink)
        draw.ellipse((cx - s * 0.22, cy - s * 0.22, cx + s * 0.22, cy + s * 0.22), fill=COLORS[part], outline=ink)
        question = "What color is the centre of the flower"
    elif obj == "car":
        draw.rectangle((cx - s, cy - s * 0.2, cx + s, cy + s * 0.4), fill=COLORS[body], outline=ink)
        draw.rectangle((cx - s * 0.5, cy - s * 0.6, cx + s * 0.45, cy - s * 0.2), fill=COLORS[other], outline=ink)
        for wx in (cx - s * 0.55, cx + s * 0.55):
            draw.ellipse((wx - s * 0.2, cy + s * 0.25, wx + s * 0.2, cy + s * 0.65), fill=COLORS[part], outline=ink)
        question = "What color are the wheels of the car"
    else:
        draw.rectangle((cx - s * 0.25, cy, cx + s * 0.25, cy + s), fill=COLORS[other], outline=ink)
        draw.pieslice((cx - s, cy - s * 0.8, cx + s, cy + s * 0.8), 180, 360, fill=COLORS[body], outline=ink)
        for dx, dy in ((-0.5, -0.25), (0.05, -0.55), (0.5, -0.2)):
            px, py = cx + s * dx, cy + s * dy
            draw.ellipse((px - s * 0.1, py - s * 0.1, px + s * 0.1, py + s * 0.1), fill=COLORS[part])
        question = "What color are the spots on the mushroom cap"
    # The object's other colours are the hardest wrong options.
    hard = [body, other]
    rest = _sample(rng, [c for c in COLORS if c not in (part, body, other)], 1)
    return _Fact(f"{question} in the panel labelled {label}?", part, (hard[0], hard[1], str(rest[0])), obj)


def _structure(img: Image.Image, rng: Rng, area: Box, label: str) -> _Fact:
    draw = ImageDraw.Draw(img)
    x1, y1, x2, y2 = area
    cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, min(x2 - x1, y2 - y1) * 0.25
    color = COLORS[str(_pick(rng, list(COLORS)))]
    variant = str(_pick(rng, ("sides", "shape", "arrangement")))
    if variant == "sides":
        k = int(rng.integers(3, 9))
        draw.regular_polygon((cx, cy, s), k, rotation=float(rng.uniform(0, 360)), outline=color, width=3)
        return _Fact(f"How many sides does the outlined polygon in the panel labelled {label} have?", str(k),
                     _wrong(rng, [str(v) for v in range(3, 10)], str(k)), variant)  # fmt: skip
    if variant == "shape":
        kind = str(_pick(rng, SHAPES))
        _shape(draw, kind, cx, cy, s * 0.7, color, outline=(40, 40, 40))
        return _Fact(f"What shape is the badge in the panel labelled {label}?", kind, _wrong(rng, SHAPES, kind),
                     variant)  # fmt: skip
    layout = str(_pick(rng, ARRANGEMENTS))
    if layout == "ring":
        pts = [(cx + s * math.cos(a * math.pi / 4), cy + s * math.sin(a * math.pi / 4)) for a in range(8)]
    elif layout == "grid":
        pts = [(cx + dx * s * 0.6, cy + dy * s * 0.6) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    else:
        step = [(-1, 0), (0, -1), (-1, -1)][("row", "column", "diagonal").index(layout)]
        pts = [(cx + step[0] * s * t, cy + step[1] * s * t) for t in np.linspace(-1.2, 1.2, 6)]
    for px, py in pts:
        draw.ellipse((px - 4, py - 4, px + 4, py + 4), fill=color)
    return _Fact(f"In what pattern are the dots in the panel labelled {label} arranged?", layout,
                 _wrong(rng, ARRANGEMENTS, layout), variant)  # fmt: skip


def _material_panel(img: Image.Image, rng: Rng, area: Box, label: str) -> _Fact:
    x1, y1, x2, y2 = area
    name = str(_pick(rng, MATERIALS))
    w, h = int((x2 - x1) * rng.uniform(0.55, 0.8)), int((y2 - y1) * rng.uniform(0.55, 0.8))
    x, y = int(rng.integers(x1, x2 - w + 1)), int(rng.integers(y1, y2 - h + 1))
    img.paste(_material(rng, (w, h), name), (x, y))
    ImageDraw.Draw(img).rectangle((x, y, x + w - 1, y + h - 1), outline=(60, 60, 60))
    return _Fact(f"What material does the swatch in the panel labelled {label} show?", name,
                 _wrong(rng, MATERIALS, name), name)  # fmt: skip


def _identification(img: Image.Image, rng: Rng, area: Box, label: str) -> _Fact:
    x1, y1, x2, y2 = area
    country, layout, colors = FLAGS[int(rng.integers(len(FLAGS)))]
    w = int(min(x2 - x1, (y2 - y1) * 1.5) * rng.uniform(0.22, 0.34))
    h = w if layout == "plus" else w * 2 // 3
    x, y = int(rng.integers(x1 + 4, max(x1 + 5, x2 - w))), int(rng.integers(y1, max(y1 + 1, y2 - h - h // 2)))
    ImageDraw.Draw(img).line((x - 2, y, x - 2, min(y2, y + 2 * h)), fill=(90, 90, 90), width=2)  # the pole
    _flag(img, (x, y, x + w, y + h), layout, colors)
    # Flags built like the answer (same layout) make the hardest wrong options.
    others = sorted((f for f in FLAGS if f[0] != country), key=lambda f: (f[1] != layout, float(rng.random())))
    wrong = (others[0][0], others[1][0], others[2][0])
    return _Fact(f"Which country's flag is shown in the panel labelled {label}?", country, wrong, layout)


_CONTENT: dict[str, Callable[[Image.Image, Rng, Box, str], _Fact]] = {
    "counting": _counting,
    "ocr": _ocr,
    "color": _color,
    "structure": _structure,
    "material": _material_panel,
    "identification": _identification,
}


# ---------------------------------------------------------------------------------------------- the scene
def _background(rng: Rng, size: tuple[int, int]) -> Image.Image:
    w, h = size
    blotches = rng.integers(150, 256, (9, 12, 3)).astype(np.uint8)
    img = Image.fromarray(blotches).resize((w, h), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    for _ in range(w * h // 6000):  # tiny shapes that answer nothing
        kind = str(_pick(rng, SHAPES))
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        _shape(draw, kind, float(rng.uniform(0, w)), float(rng.uniform(0, h)), float(rng.uniform(3, 11)), c)
    for _ in range(w * h // 25000):  # lower-case scraps of text (panel words are upper case)
        word = "".join(chr(97 + int(i)) for i in rng.integers(0, 26, int(rng.integers(3, 9))))
        _text(img, (int(rng.integers(0, w - 60)), int(rng.integers(0, h - 20))), word, int(rng.integers(9, 20)),
              tuple(int(v) for v in rng.integers(0, 140, 3)))  # fmt: skip
    return img


def _panels(rng: Rng, size: tuple[int, int], n: int) -> list[Box]:
    w, h = size
    cw, ch = w // _GRID[0], h // _GRID[1]
    cells = _sample(rng, [(i, j) for i in range(_GRID[0]) for j in range(_GRID[1])], n)
    boxes = []
    for i, j in cells:
        pw, ph = int(cw * rng.uniform(0.62, 0.92)), int(ch * rng.uniform(0.6, 0.9))
        x, y = i * cw + int(rng.integers(0, cw - pw + 1)), j * ch + int(rng.integers(0, ch - ph + 1))
        boxes.append((x, y, x + pw, y + ph))
    return boxes


def _labels(rng: Rng, n: int) -> list[str]:
    codes = [f"{a}{d}" for a in "ABCDEFGHJKLMNPRSTUVWXYZ" for d in "123456789"]
    return [str(c) for c in _sample(rng, codes, n)]


def _draw_panel(img: Image.Image, rng: Rng, box: Box, label: str, dimension: str) -> _Fact:
    draw = ImageDraw.Draw(img)
    x1, y1, x2, y2 = box
    draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=_PANEL_FILL, outline=(60, 60, 60), width=2)
    size = max(11, (y2 - y1) // 16)
    label_bottom = _text(img, (x1 + 6, y1 + 5), label, size, (30, 30, 30))[3]
    pad = max(6, (x2 - x1) // 20)
    return _CONTENT[dimension](img, rng, (x1 + pad, label_bottom + pad, x2 - pad, y2 - pad), label)


def expand_box(box: Box, margin: float, size: tuple[int, int]) -> Box:
    """``box`` grown by ``margin`` x its side on every side, clipped to an image of ``size`` (w, h).

    >>> expand_box((100, 100, 200, 150), 0.1, (1024, 1024))
    (90, 95, 210, 155)
    """
    x1, y1, x2, y2 = box
    dx, dy = round((x2 - x1) * margin), round((y2 - y1) * margin)
    return (max(0, x1 - dx), max(0, y1 - dy), min(size[0], x2 + dx), min(size[1], y2 + dy))


def _prompt(fact: _Fact, rng: Rng, multiple_choice: bool) -> tuple[str, str, list[str] | None]:
    if not multiple_choice:
        return f"{fact.question}\n{OPEN_SUFFIX}", fact.answer, None
    options = [str(o) for o in _sample(rng, [fact.answer, *fact.distractors], 4)]
    letter = "ABCD"[options.index(fact.answer)]
    lines = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(options))
    return f"{fact.question}\n{lines}\n{MC_SUFFIX}", letter, options


def _make_item(seed: int, index: int, dimension: str, mc_ratio: float, size: tuple[int, int]) -> BenchItem:
    rng = np.random.default_rng([seed, index])  # per-item stream: item i does not depend on n_items
    multiple_choice = bool(rng.random() < mc_ratio)
    img = _background(rng, size)
    n_panels = int(rng.integers(9, 14))
    boxes, labels = _panels(rng, size, n_panels), _labels(rng, n_panels)
    target = int(rng.integers(n_panels))
    fact: _Fact | None = None
    for k, (box, label) in enumerate(zip(boxes, labels)):
        dim = dimension if k == target else str(_pick(rng, DIMENSIONS))
        drawn = _draw_panel(img, rng, box, label, dim)
        fact = drawn if k == target else fact
    assert fact is not None
    bbox = boxes[target]
    fraction = (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]) / (size[0] * size[1])
    if not fraction < MAX_BOX_FRACTION:
        raise AssertionError(f"evidence box covers {fraction:.1%} of the image (must be < {MAX_BOX_FRACTION:.0%})")
    crop_box = expand_box(bbox, CROP_MARGIN, size)
    prompt, answer, options = _prompt(fact, rng, multiple_choice)
    return BenchItem(
        id=f"zw{seed}-{index:05d}",
        image=img,
        crop_image=img.crop(crop_box),
        prompt=prompt,
        answer=answer,
        dimension=dimension,
        options=options,
        bbox=bbox,
        multiple_choice=multiple_choice,
        meta={"answer_text": fact.answer, "label": labels[target], "crop_box": list(crop_box), "variant": fact.variant,
              "box_fraction": round(fraction, 5), "seed": seed, "index": index},  # fmt: skip
    )


def _check(n_items: int, image_size: tuple[int, int], mc_ratio: float, dims: Sequence[str]) -> None:
    if n_items < 0:
        raise ValueError(f"n_items must be >= 0, got {n_items}")
    if len(image_size) != 2 or min(image_size) < MIN_SIDE:
        raise ValueError(f"image_size must be (width, height) with both >= {MIN_SIDE}, got {image_size}")
    if not 0.0 <= mc_ratio <= 1.0:
        raise ValueError(f"multiple_choice_ratio must be in [0, 1], got {mc_ratio}")
    unknown = set(dims) - set(DIMENSIONS)
    if unknown or not dims:
        raise ValueError(f"dimensions must be a non-empty subset of {DIMENSIONS}, got {list(dims)}")


def iter_zoomworld(
    n_items: int,
    seed: int,
    *,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    multiple_choice_ratio: float = 0.5,
    dimensions: Sequence[str] = DIMENSIONS,
) -> Iterator[BenchItem]:
    """Yield ZoomWorld items one at a time (see :func:`generate_zoomworld`)."""
    dims = tuple(dimensions)
    _check(n_items, image_size, multiple_choice_ratio, dims)
    for index in range(n_items):
        # Dimensions cycle so every one appears once per len(dims) items.
        yield _make_item(seed, index, dims[index % len(dims)], multiple_choice_ratio, tuple(image_size))


def generate_zoomworld(
    n_items: int,
    seed: int,
    *,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    multiple_choice_ratio: float = 0.5,
    dimensions: Sequence[str] = DIMENSIONS,
) -> list[BenchItem]:
    """Generate ``n_items`` items (PIL images in memory); item ``i`` depends only on ``(seed, i)``.

    >>> items = generate_zoomworld(2, seed=0)
    >>> [i.dimension for i in items], items[0].load_image().size
    (['counting', 'ocr'], (1536, 1152))
    """
    return list(
        iter_zoomworld(
            n_items, seed, image_size=image_size, multiple_choice_ratio=multiple_choice_ratio, dimensions=dimensions
        )
    )


def write_zoomworld(
    out_dir: str | Path,
    n_items: int,
    seed: int,
    *,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    multiple_choice_ratio: float = 0.5,
    dimensions: Sequence[str] = DIMENSIONS,
) -> Path:
    """Write ``images/<id>.png``, ``crops/<id>.png`` and ``items.jsonl`` (paths relative) under ``out_dir``.

    The layout is what :func:`zwz.distill.benchmark.load_benchmark` reads. Returns the JSONL path.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "crops").mkdir(parents=True, exist_ok=True)
    jsonl = out / "items.jsonl"
    with jsonl.open("w", encoding="utf-8") as fh:
        for item in iter_zoomworld(
            n_items, seed, image_size=image_size, multiple_choice_ratio=multiple_choice_ratio, dimensions=dimensions
        ):
            image_rel, crop_rel = f"images/{item.id}.png", f"crops/{item.id}.png"
            item.load_image().save(out / image_rel, format="PNG")
            crop = item.load_crop()
            assert crop is not None
            crop.save(out / crop_rel, format="PNG")
            row = {
                "id": item.id, "image": image_rel, "crop_image": crop_rel, "prompt": item.prompt,
                "answer": item.answer, "dimension": item.dimension, "options": item.options,
                "bbox": list(item.bbox) if item.bbox else None, "multiple_choice": item.multiple_choice,
                "meta": item.meta,
            }  # fmt: skip
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    logger.info("wrote %d ZoomWorld items to %s", n_items, out)
    return jsonl
