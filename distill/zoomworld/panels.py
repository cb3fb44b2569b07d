"""What a ZoomWorld panel can show, one function per ZoomBench dimension; each returns the panel's fact."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from zwz.distill.zoomworld.assets import (
    ARRANGEMENTS, COLORS, COUNTABLE, FLAGS, MATERIALS, SHAPES, WORDS, Box, Fact, Rng, pick, sample, wrong,
)  # fmt: skip
from zwz.distill.zoomworld.drawing import draw_flag, draw_shape, draw_text, material_swatch, text_size

def _counting(img: Image.Image, rng: Rng, area: Box, label: str) -> Fact:
    draw = ImageDraw.Draw(img)
    x1, y1, x2, y2 = area
    kind, color = str(pick(rng, COUNTABLE)), str(pick(rng, list(COLORS)))
    n = int(rng.integers(3, 13))
    others = [(k, c) for k in COUNTABLE for c in COLORS if (k, c) != (kind, color)]
    extra = sample(rng, others, int(rng.integers(2, 6)))
    cell = max(16, min(x2 - x1, y2 - y1) // 6)
    cells = [(cx, cy) for cx in range(x1, x2 - cell + 1, cell) for cy in range(y1, y2 - cell + 1, cell)]
    spots = sample(rng, cells, min(len(cells), n + len(extra)))
    n = min(n, len(spots) - len(extra))
    for i, (cx, cy) in enumerate(spots):
        k, c = (kind, color) if i < n else extra[i - n]
        r = cell * rng.uniform(0.28, 0.36)
        draw_shape(draw, str(k), cx + cell / 2, cy + cell / 2, r, COLORS[str(c)], outline=(40, 40, 40))
    pool = [str(v) for v in range(max(0, n - 3), n + 4)]
    return Fact(f"How many {color} {kind}s are in the panel labelled {label}?", str(n), wrong(rng, pool, str(n)),
                 "count")  # fmt: skip


def _ocr(img: Image.Image, rng: Rng, area: Box, label: str) -> Fact:
    x1, y1, x2, y2 = area
    word = str(pick(rng, WORDS))
    size = int(rng.integers(12, 18))
    tw, th = text_size(word, size)
    x = int(rng.integers(x1, max(x1 + 1, x2 - tw)))
    y = int(rng.integers(y1, max(y1 + 1, y2 - th)))
    draw_text(img, (x, y), word, size, (int(rng.integers(0, 80)),) * 3)
    variants: set[str] = set()
    letters = "ABCDEFGHIJKLMNOPRSTUVWY"
    while len(variants) < 8:  # near misses: one letter changed, dropped or added (cf. ROOST/COST/CONST/GHOST)
        i, op, ch = int(rng.integers(len(word))), int(rng.integers(3)), letters[int(rng.integers(len(letters)))]
        v = (word[:i] + ch + word[i + 1 :], word[:i] + word[i + 1 :], word[:i] + ch + word[i:])[op]
        if v != word and len(v) >= 3:
            variants.add(v)
    return Fact(f"What word is printed in the panel labelled {label}?", word,
                 wrong(rng, sorted(variants), word), "word")  # fmt: skip


def _color(img: Image.Image, rng: Rng, area: Box, label: str) -> Fact:
    draw = ImageDraw.Draw(img)
    x1, y1, x2, y2 = area
    cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, min(x2 - x1, y2 - y1) * 0.24
    body, other, part = (str(c) for c in sample(rng, list(COLORS), 3))
    obj = str(pick(rng, ("house", "flower", "car", "mushroom")))
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
    rest = sample(rng, [c for c in COLORS if c not in (part, body, other)], 1)
    return Fact(f"{question} in the panel labelled {label}?", part, (hard[0], hard[1], str(rest[0])), obj)


def _structure(img: Image.Image, rng: Rng, area: Box, label: str) -> Fact:
    draw = ImageDraw.Draw(img)
    x1, y1, x2, y2 = area
    cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, min(x2 - x1, y2 - y1) * 0.25
    color = COLORS[str(pick(rng, list(COLORS)))]
    variant = str(pick(rng, ("sides", "shape", "arrangement")))
    if variant == "sides":
        k = int(rng.integers(3, 9))
        draw.regular_polygon((cx, cy, s), k, rotation=float(rng.uniform(0, 360)), outline=color, width=3)
        return Fact(f"How many sides does the outlined polygon in the panel labelled {label} have?", str(k),
                     wrong(rng, [str(v) for v in range(3, 10)], str(k)), variant)  # fmt: skip
    if variant == "shape":
        kind = str(pick(rng, SHAPES))
        draw_shape(draw, kind, cx, cy, s * 0.7, color, outline=(40, 40, 40))
        return Fact(f"What shape is the badge in the panel labelled {label}?", kind, wrong(rng, SHAPES, kind),
                     variant)  # fmt: skip
    layout = str(pick(rng, ARRANGEMENTS))
    if layout == "ring":
        pts = [(cx + s * math.cos(a * math.pi / 4), cy + s * math.sin(a * math.pi / 4)) for a in range(8)]
    elif layout == "grid":
        pts = [(cx + dx * s * 0.6, cy + dy * s * 0.6) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    else:
        step = [(-1, 0), (0, -1), (-1, -1)][("row", "column", "diagonal").index(layout)]
        pts = [(cx + step[0] * s * t, cy + step[1] * s * t) for t in np.linspace(-1.2, 1.2, 6)]
    for px, py in pts:
        draw.ellipse((px - 4, py - 4, px + 4, py + 4), fill=color)
    return Fact(f"In what pattern are the dots in the panel labelled {label} arranged?", layout,
                 wrong(rng, ARRANGEMENTS, layout), variant)  # fmt: skip


def _material_panel(img: Image.Image, rng: Rng, area: Box, label: str) -> Fact:
    x1, y1, x2, y2 = area
    name = str(pick(rng, MATERIALS))
    w, h = int((x2 - x1) * rng.uniform(0.55, 0.8)), int((y2 - y1) * rng.uniform(0.55, 0.8))
    x, y = int(rng.integers(x1, x2 - w + 1)), int(rng.integers(y1, y2 - h + 1))
    img.paste(material_swatch(rng, (w, h), name), (x, y))
    ImageDraw.Draw(img).rectangle((x, y, x + w - 1, y + h - 1), outline=(60, 60, 60))
    return Fact(f"What material does the swatch in the panel labelled {label} show?", name,
                 wrong(rng, MATERIALS, name), name)  # fmt: skip


def _identification(img: Image.Image, rng: Rng, area: Box, label: str) -> Fact:
    x1, y1, x2, y2 = area
    country, layout, colors = FLAGS[int(rng.integers(len(FLAGS)))]
    w = int(min(x2 - x1, (y2 - y1) * 1.5) * rng.uniform(0.22, 0.34))
    h = w if layout == "plus" else w * 2 // 3
    x, y = int(rng.integers(x1 + 4, max(x1 + 5, x2 - w))), int(rng.integers(y1, max(y1 + 1, y2 - h - h // 2)))
    ImageDraw.Draw(img).line((x - 2, y, x - 2, min(y2, y + 2 * h)), fill=(90, 90, 90), width=2)  # the pole
    draw_flag(img, (x, y, x + w, y + h), layout, colors)
    # Flags built like the answer (same layout) make the hardest wrong options.
    others = sorted((f for f in FLAGS if f[0] != country), key=lambda f: (f[1] != layout, float(rng.random())))
    wrong = (others[0][0], others[1][0], others[2][0])
    return Fact(f"Which country's flag is shown in the panel labelled {label}?", country, wrong, layout)


CONTENT: dict[str, Callable[[Image.Image, Rng, Box, str], Fact]] = {
    "counting": _counting,
    "ocr": _ocr,
    "color": _color,
    "structure": _structure,
    "material": _material_panel,
    "identification": _identification,
}

