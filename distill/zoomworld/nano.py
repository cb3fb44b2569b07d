"""ZoomWorld's nano level: a scene a model trained from scratch on 2 CPU cores can learn, still a zooming problem.

The standard level (1536x1152, ~300 distractors, a dozen panels named by 2-character labels) is for real
models. The nano level keeps what makes it a zooming problem, the evidence being a small region (5-9% of
the image) among distractors, and drops what a nano model cannot learn in minutes:

- a small canvas (448x448 by default: 14x14 = 196 Qwen3-VL visual tokens, 32x32 px each after the 2x2 merge);
- ONE evidence panel with a unique referent (a white panel with a thick black frame: "the framed panel")
  instead of a dozen panels told apart by tiny labels;
- big, coarse content along the dimensions a nano model learns first: ``color`` (one big shape, 6 colours),
  ``structure`` (which of 6 shapes), ``counting`` (1-5 big dots) and ``ocr`` (a 3-letter word, large type);
- a background of pale colour blotches and ~70 small shapes in the same colours and kinds as the evidence
  (3-9 px radius, against the evidence's 25-45 px), so no global colour or shape statistic gives the answer
  away reliably.

Items are :class:`~zwz.distill.benchmark.BenchItem` s exactly like the standard level's (same prompt format,
``MC_SUFFIX``/``OPEN_SUFFIX``, crop = box grown by ``CROP_MARGIN``, ``meta["panels"]`` native annotations), so
``zwz distill --annotations items.jsonl`` and ``zwz eval`` read them unchanged. Item ``i`` depends only on
``(seed, i)``.

    python -c "from zwz.distill.zoomworld import write_zoomworld; write_zoomworld('nano', 400, seed=0, level='nano')"
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from zwz.distill.benchmark import BenchItem
from zwz.distill.zoomworld.assets import COLORS, Box, Fact, Rng, pick, sample, wrong
from zwz.distill.zoomworld.drawing import draw_shape, draw_text, text_size
from zwz.distill.zoomworld.scene import _panel_annotation, evidence_item

NANO_IMAGE_SIZE = (448, 448)  # 14 x 14 merged 32-px Qwen3-VL tokens
NANO_DIMENSIONS = ("color", "structure", "counting", "ocr")
NANO_COLORS = ("red", "green", "blue", "yellow", "orange", "purple")
NANO_SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
NANO_WORDS = ("CAT", "DOG", "SUN", "BOX", "RED", "MAP", "HAT", "CUP", "PEN", "KEY", "BUS", "FOX")
NANO_AREA = (0.05, 0.09)  # the evidence panel's share of the image area
NANO_MIN_SIDE = 224  # below this the content is too small to read even on the crop
NANO_LABEL = "framed"  # the panel's referent (its annotation label)
_REFERENT = "the framed panel"
_FRAME = (20, 20, 20)
_PANEL_FILL = (250, 250, 250)
_DISTRACTORS_PER_PIXEL = 1 / 2800  # ~72 small shapes on 448x448


def _background(rng: Rng, size: tuple[int, int]) -> Image.Image:
    w, h = size
    blotches = rng.integers(170, 236, (5, 5, 3)).astype(np.uint8)  # pale, never as white as the panel
    img = Image.fromarray(blotches).resize((w, h), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    for _ in range(int(w * h * _DISTRACTORS_PER_PIXEL)):
        kind, color = str(pick(rng, NANO_SHAPES)), COLORS[str(pick(rng, NANO_COLORS))]
        draw_shape(draw, kind, float(rng.uniform(0, w)), float(rng.uniform(0, h)), float(rng.uniform(3, 9)), color)
    return img


def _panel_box(rng: Rng, size: tuple[int, int]) -> Box:
    w, h = size
    area = rng.uniform(*NANO_AREA) * w * h
    aspect = rng.uniform(0.8, 1.25)
    pw, ph = int(round((area * aspect) ** 0.5)), int(round((area / aspect) ** 0.5))
    x, y = int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - ph + 1))
    return (x, y, x + pw, y + ph)


def _draw_panel(img: Image.Image, box: Box) -> Box:
    """The white, thick-framed panel; returns the inner area content may use."""
    x1, y1, x2, y2 = box
    frame = max(4, (x2 - x1) // 16)
    ImageDraw.Draw(img).rectangle((x1, y1, x2 - 1, y2 - 1), fill=_PANEL_FILL, outline=_FRAME, width=frame)
    pad = frame + 3
    return (x1 + pad, y1 + pad, x2 - pad, y2 - pad)


def _color(img: Image.Image, rng: Rng, area: Box) -> Fact:
    x1, y1, x2, y2 = area
    color, kind = str(pick(rng, NANO_COLORS)), str(pick(rng, NANO_SHAPES))
    r = min(x2 - x1, y2 - y1) * rng.uniform(0.34, 0.44)
    draw_shape(ImageDraw.Draw(img), kind, (x1 + x2) / 2, (y1 + y2) / 2, r, COLORS[color])
    return Fact(f"What color is the shape in {_REFERENT}?", color, wrong(rng, NANO_COLORS, color), kind)


def _shape(img: Image.Image, rng: Rng, area: Box) -> Fact:
    x1, y1, x2, y2 = area
    kind, color = str(pick(rng, NANO_SHAPES)), str(pick(rng, NANO_COLORS))
    r = min(x2 - x1, y2 - y1) * rng.uniform(0.36, 0.46)
    draw_shape(ImageDraw.Draw(img), kind, (x1 + x2) / 2, (y1 + y2) / 2, r, COLORS[color])
    return Fact(f"What shape is drawn in {_REFERENT}?", kind, wrong(rng, NANO_SHAPES, kind), color)


def _counting(img: Image.Image, rng: Rng, area: Box) -> Fact:
    x1, y1, x2, y2 = area
    n, color = int(rng.integers(1, 6)), str(pick(rng, NANO_COLORS))
    cell_w, cell_h = (x2 - x1) / 3, (y2 - y1) / 3
    r = min(cell_w, cell_h) * 0.36
    draw = ImageDraw.Draw(img)
    for c in sample(rng, range(9), n):  # dots on a jittered 3x3 grid never touch
        cx = x1 + (int(c) % 3 + 0.5) * cell_w + rng.uniform(-0.1, 0.1) * cell_w
        cy = y1 + (int(c) // 3 + 0.5) * cell_h + rng.uniform(-0.1, 0.1) * cell_h
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=COLORS[color])
    return Fact(f"How many dots are in {_REFERENT}?", str(n), wrong(rng, [str(v) for v in range(1, 6)], str(n)), color)


def _ocr(img: Image.Image, rng: Rng, area: Box) -> Fact:
    x1, y1, x2, y2 = area
    word = str(pick(rng, NANO_WORDS))
    size = max(12, int((x2 - x1) * 0.3))
    while size > 12 and text_size(word, size)[0] > (x2 - x1) * 0.9:
        size -= 2
    tw, th = text_size(word, size)
    x = x1 + max(0, (x2 - x1 - tw) // 2) + int(rng.integers(-3, 4))
    y = y1 + max(0, (y2 - y1 - th) // 2) + int(rng.integers(-3, 4))
    draw_text(img, (x, y), word, size, (20, 20, 20))
    return Fact(f"What word is written in {_REFERENT}?", word, wrong(rng, NANO_WORDS, word), "word")


_CONTENT = {"color": _color, "structure": _shape, "counting": _counting, "ocr": _ocr}


def make_nano_item(seed: int, index: int, dimension: str, mc_ratio: float, size: tuple[int, int]) -> BenchItem:
    """Item ``index`` of the nano level for ``seed`` (see the module docstring)."""
    rng = np.random.default_rng([seed, index])
    multiple_choice = bool(rng.random() < mc_ratio)
    img = _background(rng, size)
    bbox = _panel_box(rng, size)
    fact = _CONTENT[dimension](img, rng, _draw_panel(img, bbox))
    panels = [_panel_annotation(bbox, NANO_LABEL, dimension, fact)]
    return evidence_item(f"zwn{seed}-{index:05d}", img, bbox, fact, NANO_LABEL, dimension, rng, multiple_choice,
                         panels, seed=seed, index=index, level="nano")
