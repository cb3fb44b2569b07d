"""A ZoomWorld scene (busy background, a dozen labelled panels, one holding the evidence) and the item API."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from zwz.distill.benchmark import DIMENSIONS, BenchItem
from zwz.distill.zoomworld.assets import SHAPES, Box, Fact, Rng, pick, sample
from zwz.distill.zoomworld.drawing import draw_shape, draw_text
from zwz.distill.zoomworld.panels import CONTENT

from zwz.defaults import ZOOMWORLD_SIZE

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = ZOOMWORLD_SIZE  # the standard canvas, from the shared defaults table
MIN_SIDE = 1024  # fine-grained means high resolution; R2I keeps images of at least ~1000 px per side
MAX_BOX_FRACTION = 0.1  # paper's tau: area(B) / area(I) < 0.1
CROP_MARGIN = 0.15  # fraction of the box side added on each side of the crop
MC_SUFFIX = "Answer with the option's letter from the given choices."
OPEN_SUFFIX = "Answer the question using a single word or number."
LEVELS = ("standard", "nano")  # nano: see zwz.distill.zoomworld.nano
_GRID = (6, 4)  # panel cells (columns, rows)
_PANEL_FILL = (247, 246, 240)


def _background(rng: Rng, size: tuple[int, int]) -> Image.Image:
    w, h = size
    blotches = rng.integers(150, 256, (9, 12, 3)).astype(np.uint8)
    img = Image.fromarray(blotches).resize((w, h), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    for _ in range(w * h // 6000):  # tiny shapes that answer nothing
        kind = str(pick(rng, SHAPES))
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw_shape(draw, kind, float(rng.uniform(0, w)), float(rng.uniform(0, h)), float(rng.uniform(3, 11)), c)
    for _ in range(w * h // 25000):  # lower-case scraps of text (panel words are upper case)
        word = "".join(chr(97 + int(i)) for i in rng.integers(0, 26, int(rng.integers(3, 9))))
        draw_text(img, (int(rng.integers(0, w - 60)), int(rng.integers(0, h - 20))), word, int(rng.integers(9, 20)),
              tuple(int(v) for v in rng.integers(0, 140, 3)))  # fmt: skip
    return img


def _panels(rng: Rng, size: tuple[int, int], n: int) -> list[Box]:
    w, h = size
    cw, ch = w // _GRID[0], h // _GRID[1]
    cells = sample(rng, [(i, j) for i in range(_GRID[0]) for j in range(_GRID[1])], n)
    boxes = []
    for i, j in cells:
        pw, ph = int(cw * rng.uniform(0.62, 0.92)), int(ch * rng.uniform(0.6, 0.9))
        x, y = i * cw + int(rng.integers(0, cw - pw + 1)), j * ch + int(rng.integers(0, ch - ph + 1))
        boxes.append((x, y, x + pw, y + ph))
    return boxes


def _labels(rng: Rng, n: int) -> list[str]:
    codes = [f"{a}{d}" for a in "ABCDEFGHJKLMNPRSTUVWXYZ" for d in "123456789"]
    return [str(c) for c in sample(rng, codes, n)]


def _draw_panel(img: Image.Image, rng: Rng, box: Box, label: str, dimension: str) -> Fact:
    draw = ImageDraw.Draw(img)
    x1, y1, x2, y2 = box
    draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=_PANEL_FILL, outline=(60, 60, 60), width=2)
    size = max(11, (y2 - y1) // 16)
    label_bottom = draw_text(img, (x1 + 6, y1 + 5), label, size, (30, 30, 30))[3]
    pad = max(6, (x2 - x1) // 20)
    return CONTENT[dimension](img, rng, (x1 + pad, label_bottom + pad, x2 - pad, y2 - pad), label)


def expand_box(box: Box, margin: float, size: tuple[int, int]) -> Box:
    """``box`` grown by ``margin`` x its side on every side, clipped to an image of ``size`` (w, h).

    >>> expand_box((100, 100, 200, 150), 0.1, (1024, 1024))
    (90, 95, 210, 155)
    """
    x1, y1, x2, y2 = box
    dx, dy = round((x2 - x1) * margin), round((y2 - y1) * margin)
    return (max(0, x1 - dx), max(0, y1 - dy), min(size[0], x2 + dx), min(size[1], y2 + dy))


def _prompt(fact: Fact, rng: Rng, multiple_choice: bool) -> tuple[str, str, list[str] | None]:
    if not multiple_choice:
        return f"{fact.question}\n{OPEN_SUFFIX}", fact.answer, None
    options = [str(o) for o in sample(rng, [fact.answer, *fact.distractors], 4)]
    letter = "ABCD"[options.index(fact.answer)]
    lines = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(options))
    return f"{fact.question}\n{lines}\n{MC_SUFFIX}", letter, options


def _panel_annotation(box: Box, label: str, dimension: str, fact: Fact) -> dict[str, object]:
    """One panel as a native annotation (what a dataset with object boxes would give the R2I pipeline)."""
    return {"box": list(box), "label": label, "dimension": dimension, "question": fact.question,
            "answer": fact.answer, "distractors": list(fact.distractors)}  # fmt: skip


def _make_item(seed: int, index: int, dimension: str, mc_ratio: float, size: tuple[int, int]) -> BenchItem:
    rng = np.random.default_rng([seed, index])  # per-item stream: item i does not depend on n_items
    multiple_choice = bool(rng.random() < mc_ratio)
    img = _background(rng, size)
    n_panels = int(rng.integers(9, 14))
    boxes, labels = _panels(rng, size, n_panels), _labels(rng, n_panels)
    target = int(rng.integers(n_panels))
    facts: list[Fact] = []
    dims: list[str] = []
    for k, (box, label) in enumerate(zip(boxes, labels)):
        dims.append(dimension if k == target else str(pick(rng, DIMENSIONS)))
        facts.append(_draw_panel(img, rng, box, label, dims[-1]))
    panels = [_panel_annotation(*p) for p in zip(boxes, labels, dims, facts)]
    return evidence_item(f"zw{seed}-{index:05d}", img, boxes[target], facts[target], labels[target], dimension, rng,
                         multiple_choice, panels, seed=seed, index=index)


def evidence_item(item_id: str, img: Image.Image, bbox: Box, fact: Fact, label: str, dimension: str, rng: Rng,
                  multiple_choice: bool, panels: list[dict[str, object]], **meta: object) -> BenchItem:
    """The item asking about ``fact`` in the panel at ``bbox`` of the drawn ``img`` (either level): the evidence
    share checked, the crop, the prompt (drawn from ``rng`` last), ``meta`` (seed, index, ...) before the panels."""
    size = img.size
    fraction = (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]) / (size[0] * size[1])
    if not fraction < MAX_BOX_FRACTION:
        raise AssertionError(f"evidence box covers {fraction:.1%} of the image (must be < {MAX_BOX_FRACTION:.0%})")
    crop_box = expand_box(bbox, CROP_MARGIN, size)
    prompt, answer, options = _prompt(fact, rng, multiple_choice)
    return BenchItem(
        id=item_id,
        image=img,
        crop_image=img.crop(crop_box),
        prompt=prompt,
        answer=answer,
        dimension=dimension,
        options=options,
        bbox=bbox,
        multiple_choice=multiple_choice,
        meta={"answer_text": fact.answer, "label": label, "crop_box": list(crop_box), "variant": fact.variant,
              "box_fraction": round(fraction, 5), **meta, "panels": panels},
    )


def _level(level: str) -> tuple[tuple[int, int], tuple[str, ...], int, Callable[..., BenchItem]]:
    """A level's default canvas, dimensions, smallest side and item maker."""
    if level == "standard":
        return DEFAULT_IMAGE_SIZE, DIMENSIONS, MIN_SIDE, _make_item
    if level == "nano":
        from zwz.distill.zoomworld import nano  # imported here: nano builds on this module's helpers

        return nano.NANO_IMAGE_SIZE, nano.NANO_DIMENSIONS, nano.NANO_MIN_SIDE, nano.make_nano_item
    raise ValueError(f"level must be one of {LEVELS}, got {level!r}")


def _check(
    n_items: int, image_size: tuple[int, int], mc_ratio: float, dims: Sequence[str], known: Sequence[str], min_side: int
) -> None:
    if n_items < 0:
        raise ValueError(f"n_items must be >= 0, got {n_items}")
    if len(image_size) != 2 or min(image_size) < min_side:
        raise ValueError(f"image_size must be (width, height) with both >= {min_side}, got {image_size}")
    if not 0.0 <= mc_ratio <= 1.0:
        raise ValueError(f"multiple_choice_ratio must be in [0, 1], got {mc_ratio}")
    unknown = set(dims) - set(known)
    if unknown or not dims:
        raise ValueError(f"dimensions must be a non-empty subset of {tuple(known)}, got {list(dims)}")


def iter_zoomworld(
    n_items: int,
    seed: int,
    *,
    image_size: tuple[int, int] | None = None,
    multiple_choice_ratio: float = 0.5,
    dimensions: Sequence[str] | None = None,
    level: str = "standard",
) -> Iterator[BenchItem]:
    """Yield ZoomWorld items one at a time (see :func:`generate_zoomworld`)."""
    default_size, known, min_side, make = _level(level)
    size = tuple(image_size) if image_size is not None else default_size
    dims = tuple(dimensions) if dimensions is not None else known
    _check(n_items, size, multiple_choice_ratio, dims, known, min_side)
    for index in range(n_items):
        # Dimensions cycle so every one appears once per len(dims) items.
        yield make(seed, index, dims[index % len(dims)], multiple_choice_ratio, size)


def generate_zoomworld(
    n_items: int,
    seed: int,
    *,
    image_size: tuple[int, int] | None = None,
    multiple_choice_ratio: float = 0.5,
    dimensions: Sequence[str] | None = None,
    level: str = "standard",
) -> list[BenchItem]:
    """Generate ``n_items`` items (PIL images in memory); item ``i`` depends only on ``(seed, i)``.

    ``level`` is ``"standard"`` (for real models; ``image_size`` defaults to the standard canvas, all six
    dimensions) or ``"nano"`` (one framed panel on a 448x448 canvas, for models trained from scratch here:
    see :mod:`zwz.distill.zoomworld.nano`). ``image_size`` and ``dimensions`` default to the level's.

    >>> items = generate_zoomworld(2, seed=0)
    >>> [i.dimension for i in items], items[0].load_image().size
    (['counting', 'ocr'], (1536, 1152))
    """
    return list(
        iter_zoomworld(
            n_items, seed, image_size=image_size, multiple_choice_ratio=multiple_choice_ratio, dimensions=dimensions,
            level=level,
        )
    )


def write_zoomworld(
    out_dir: str | Path,
    n_items: int,
    seed: int,
    *,
    image_size: tuple[int, int] | None = None,
    multiple_choice_ratio: float = 0.5,
    dimensions: Sequence[str] | None = None,
    level: str = "standard",
) -> Path:
    """Write ``images/<id>.png``, ``crops/<id>.png`` and ``items.jsonl`` (paths relative) under ``out_dir``.

    The layout is what :func:`zwz.distill.benchmark.load_benchmark` reads (either level). Returns the JSONL path.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "crops").mkdir(parents=True, exist_ok=True)
    jsonl = out / "items.jsonl"
    with jsonl.open("w", encoding="utf-8") as fh:
        for item in iter_zoomworld(
            n_items, seed, image_size=image_size, multiple_choice_ratio=multiple_choice_ratio, dimensions=dimensions,
            level=level,
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
    logger.info("wrote %d ZoomWorld items (%s level) to %s", n_items, level, out)
    return jsonl
