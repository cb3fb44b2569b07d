"""ZoomWorld's nano level: small evidence boxes, determinism, answers that match the annotations, the file format."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from zwz.distill.benchmark import BenchItem, load_benchmark
from zwz.distill.proposals import load_annotations
from zwz.distill.zoomworld import (
    CROP_MARGIN,
    LEVELS,
    MC_SUFFIX,
    NANO_DIMENSIONS,
    NANO_IMAGE_SIZE,
    OPEN_SUFFIX,
    expand_box,
    generate_zoomworld,
    iter_zoomworld,
    write_zoomworld,
)
from zwz.distill.zoomworld.nano import NANO_AREA, NANO_COLORS, NANO_SHAPES, NANO_WORDS
from zwz.scoring import extract_options, rule_match


@pytest.fixture(scope="module")
def items() -> list[BenchItem]:
    return generate_zoomworld(48, seed=7, level="nano")


def test_levels() -> None:
    assert LEVELS == ("standard", "nano")
    with pytest.raises(ValueError, match="level"):
        generate_zoomworld(1, seed=0, level="tiny")


def test_canvas_and_small_evidence_box(items: list[BenchItem]) -> None:
    for item in items:
        image = item.load_image()
        assert image.size == NANO_IMAGE_SIZE and image.mode == "RGB"
        x1, y1, x2, y2 = item.bbox
        assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height
        fraction = (x2 - x1) * (y2 - y1) / (image.width * image.height)
        assert fraction < 0.1 and NANO_AREA[0] * 0.97 <= fraction <= NANO_AREA[1] * 1.03
        assert item.meta["box_fraction"] == pytest.approx(fraction, abs=1e-4)


def test_crop_is_the_box_with_its_margin(items: list[BenchItem]) -> None:
    for item in items:
        image = item.load_image()
        crop_box = expand_box(item.bbox, CROP_MARGIN, image.size)
        assert tuple(item.meta["crop_box"]) == crop_box
        assert np.array_equal(np.asarray(item.load_crop()), np.asarray(image.crop(crop_box)))


def test_evidence_is_drawn_inside_the_box_only(items: list[BenchItem]) -> None:
    # Outside the box the background shows; the box itself holds a white panel with a black frame.
    for item in items[:8]:
        pixels = np.asarray(item.load_image()).astype(int)
        x1, y1, x2, y2 = item.bbox
        assert (pixels[y1 + 1, x1 + 1] < 60).all() and (pixels[(y1 + y2) // 2, x1 + 1] < 60).all()
        inner = pixels[y1 + 12 : y2 - 12, x1 + 12 : x2 - 12].reshape(-1, 3)
        assert ((inner >= 245).all(axis=1)).mean() > 0.3  # mostly the white fill around the content


def test_same_seed_same_items_and_item_depends_only_on_seed_and_index(items: list[BenchItem]) -> None:
    again = generate_zoomworld(3, seed=7, level="nano")
    for x, y in zip(again, items):
        assert (x.id, x.prompt, x.answer, x.bbox, x.meta) == (y.id, y.prompt, y.answer, y.bbox, y.meta)
        assert x.load_image().tobytes() == y.load_image().tobytes()
    other = generate_zoomworld(3, seed=8, level="nano")
    assert [o.load_image().tobytes() for o in other] != [i.load_image().tobytes() for i in items[:3]]
    assert items[0].id == "zwn7-00000" and items[0].meta["level"] == "nano"


def test_dimensions_cycle_and_answers_match_the_annotations(items: list[BenchItem]) -> None:
    assert [i.dimension for i in items[:4]] == list(NANO_DIMENSIONS)
    vocab = {"color": NANO_COLORS, "structure": NANO_SHAPES, "counting": ("1", "2", "3", "4", "5"), "ocr": NANO_WORDS}
    for item in items:
        (panel,) = item.meta["panels"]
        assert tuple(panel["box"]) == item.bbox and panel["label"] == item.meta["label"] == "framed"
        assert panel["dimension"] == item.dimension
        assert panel["answer"] == item.meta["answer_text"] == item.answer_text
        assert panel["question"] in item.prompt and "the framed panel" in panel["question"]
        assert item.answer_text in vocab[item.dimension]
        assert len(set(panel["distractors"])) == 3 and item.answer_text not in panel["distractors"]
        assert set(panel["distractors"]) <= set(vocab[item.dimension])


def test_prompts_multiple_choice_and_open(items: list[BenchItem]) -> None:
    assert {i.multiple_choice for i in items} == {True, False}
    for item in items:
        if item.multiple_choice:
            assert item.answer in "ABCD" and len(item.options) == 4 and len(set(item.options)) == 4
            lines = item.prompt.splitlines()
            assert lines[-1] == MC_SUFFIX and extract_options(item.prompt) == item.options
            assert set(item.options) == {item.answer_text, *item.meta["panels"][0]["distractors"]}
            assert rule_match(item.answer, item.answer, options=item.options) is True
        else:
            assert item.options is None and item.prompt.endswith(OPEN_SUFFIX)
            assert rule_match(item.answer, item.answer) is True
    assert all(i.multiple_choice for i in generate_zoomworld(4, seed=1, level="nano", multiple_choice_ratio=1.0))


def _blobs(mask: np.ndarray) -> int:
    """Connected components (4-neighbour) of a boolean mask."""
    seen, count = np.zeros_like(mask), 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        count, stack = count + 1, [start]
        seen[start] = True
        while stack:
            y, x = stack.pop()
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
    return count


def test_counting_draws_the_number_of_dots() -> None:
    for item in generate_zoomworld(12, seed=3, level="nano", dimensions=["counting"]):
        x1, y1, x2, y2 = item.bbox
        inner = np.asarray(item.load_image())[y1 + 12 : y2 - 12, x1 + 12 : x2 - 12].astype(int)
        ink = (np.abs(inner - 250).sum(axis=2) > 60)  # not the panel's white
        assert _blobs(ink) == int(item.answer_text), item.id


def test_arguments() -> None:
    assert [i.dimension for i in generate_zoomworld(2, seed=0, level="nano", dimensions=["ocr"])] == ["ocr", "ocr"]
    assert generate_zoomworld(1, seed=0, level="nano", image_size=(448, 336))[0].load_image().size == (448, 336)
    with pytest.raises(ValueError, match="subset"):
        generate_zoomworld(1, seed=0, level="nano", dimensions=["material"])
    with pytest.raises(ValueError, match="224"):
        generate_zoomworld(1, seed=0, level="nano", image_size=(128, 128))
    # The standard level's size check is unchanged (the nano canvas is refused there).
    with pytest.raises(ValueError, match="1024"):
        generate_zoomworld(1, seed=0, image_size=NANO_IMAGE_SIZE)


def test_standard_level_is_unchanged() -> None:
    # Digest of the standard level's first item (seed 0) before the nano level existed: byte-identical.
    (item,) = list(iter_zoomworld(1, seed=0))
    assert item.id == "zw0-00000" and item.load_image().size == (1536, 1152)
    assert (hashlib.sha256(item.load_image().tobytes()).hexdigest()[:16], item.prompt, item.answer) == STANDARD_ITEM_0


STANDARD_ITEM_0 = (
    "70e281196ce85432",
    "How many green diamonds are in the panel labelled M5?\nAnswer the question using a single word or number.",
    "9",
)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.*"))}


def test_write_zoomworld_and_the_readers(tmp_path: Path) -> None:
    jsonl = write_zoomworld(tmp_path / "a", 6, seed=4, level="nano")
    write_zoomworld(tmp_path / "b", 6, seed=4, level="nano")
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b") and len(_digests(tmp_path / "a")) == 13
    loaded = load_benchmark(tmp_path / "a")
    made = generate_zoomworld(6, seed=4, level="nano")
    assert [(i.id, i.prompt, i.answer, i.bbox, i.options) for i in loaded] == [
        (i.id, i.prompt, i.answer, i.bbox, i.options) for i in made
    ]
    assert loaded[0].load_image().size == NANO_IMAGE_SIZE and loaded[0].load_crop() is not None
    assert json.loads(jsonl.read_text().splitlines()[0])["meta"]["panels"][0]["label"] == "framed"
    boxes = load_annotations(jsonl)  # what zwz distill --annotations reads
    assert len(boxes) == 6 and all(len(b) == 1 and b[0].label == "panel framed" for b in boxes.values())
