"""The ZoomBench loader: HF parquet layout, JSONL with paths, the official converted JSON, ZoomWorld round trip."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zwz.distill.benchmark import DIMENSIONS, BenchItem, canonical_dimension, load_benchmark
from zwz.distill.zoomworld import generate_zoomworld, write_zoomworld

MC_PROMPT = (
    "What flag is displayed on the stern of the boat?\nA. Greek flag\nB. Turkish flag\nC. Russian flag\n"
    "D. Ukrainian flag\nAnswer with the option's letter from the given choices."
)
PAREN_PROMPT = "How many table lamps are in the image? Select from the following choices.\n(A) 0\n(B) 2\n(C) 1\n(D) 3"
OPEN_PROMPT = "What word is visible on the poster behind the character?"


def _png(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def hf_parquet(tmp_path: Path) -> Path:
    """A parquet written the way HF `datasets` stores an Image feature: struct<bytes: binary, path: string>."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    rows = [
        (MC_PROMPT, "C", "Object Identification", (1200, 900), (0, 0, 255)),
        (PAREN_PROMPT, "C", "Fine-Grained Counting", (1000, 800), (255, 0, 0)),
        (OPEN_PROMPT, "CONST", "OCR", (1600, 1200), (0, 255, 0)),
    ]
    table = pa.table(
        {
            "image": pa.array(
                [{"bytes": _png(s, c), "path": f"img{i}.png"} for i, (*_, s, c) in enumerate(rows)], image_type
            ),
            "crop_image": pa.array(
                [{"bytes": _png((64, 48), c), "path": None} for *_, c in rows[:2]] + [None], image_type
            ),
            "prompt": [r[0] for r in rows],
            "answer": [r[1] for r in rows],
            "category": [r[2] for r in rows],
        }
    )
    path = tmp_path / "data" / "test-00000-of-00001.parquet"
    path.parent.mkdir()
    pq.write_table(table, path)
    return path


def test_hf_parquet_layout(hf_parquet: Path) -> None:
    items = load_benchmark(hf_parquet)
    assert [i.id for i in items] == ["0", "1", "2"]
    mc, paren, open_ = items
    assert isinstance(mc.image, bytes)  # kept encoded until asked for
    assert mc.load_image().size == (1200, 900) and mc.load_image().getpixel((0, 0)) == (0, 0, 255)
    assert mc.load_crop().size == (64, 48)  # type: ignore[union-attr]
    assert mc.multiple_choice and mc.options == ["Greek flag", "Turkish flag", "Russian flag", "Ukrainian flag"]
    assert mc.answer_text == "Russian flag" and mc.dimension == "identification"
    assert paren.options == ["0", "2", "1", "3"] and paren.dimension == "counting"
    assert not open_.multiple_choice and open_.options is None and open_.answer == "CONST"
    assert open_.crop_image is None and open_.load_crop() is None and open_.dimension == "ocr"
    # a folder (an HF snapshot) finds the parquet files inside
    assert [i.prompt for i in load_benchmark(hf_parquet.parent.parent)] == [i.prompt for i in items]


def test_jsonl_with_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (1100, 1024), (9, 9, 9)).save(tmp_path / "imgs" / "a.png")
    Image.new("RGB", (40, 30), (9, 9, 9)).save(tmp_path / "imgs" / "a_crop.png")
    rows = [
        {"id": "q1", "image": "imgs/a.png", "crop_image": "imgs/a_crop.png", "prompt": MC_PROMPT, "answer": "C",
         "type": "Color Attributes", "bbox": [10, 20, 50, 60]},
        {"image": str(tmp_path / "imgs" / "a.png"), "prompt": OPEN_PROMPT, "answer": " ghost "},
    ]  # fmt: skip
    path = tmp_path / "bench.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    first, second = load_benchmark(path)
    assert first.id == "q1" and first.image == tmp_path / "imgs" / "a.png"
    assert first.load_image().size == (1100, 1024) and first.load_crop().size == (40, 30)  # type: ignore[union-attr]
    assert first.dimension == "color" and first.bbox == (10, 20, 50, 60) and first.options is not None
    assert second.id == "1" and second.answer == "ghost" and second.dimension is None and second.crop_image is None


def test_official_converted_json(tmp_path: Path) -> None:
    Image.new("RGB", (1024, 1024)).save(tmp_path / "image_0.png")
    rows = [{"images": [str(tmp_path / "image_0.png")], "crop_images": [], "query": PAREN_PROMPT, "response": "C"}]
    (tmp_path / "zoombench.json").write_text(json.dumps(rows))
    (item,) = load_benchmark(tmp_path / "zoombench.json")
    assert item.prompt == PAREN_PROMPT and item.answer == "C" and item.multiple_choice
    assert item.crop_image is None and item.load_image().size == (1024, 1024)


def test_missing_column_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"image": "x.png", "prompt": "Q?"}) + "\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) answer \(found: image, prompt\)") as err:
        load_benchmark(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_other_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "x.png", "prompt": "Q?", "answer": "A"}\n{not json}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        load_benchmark(bad)
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported"):
        load_benchmark(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match=r"no benchmark at .*missing"):
        load_benchmark(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no items.jsonl"):
        load_benchmark(tmp_path / "empty")


def test_parquet_without_pyarrow_says_what_to_install(hf_parquet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        load_benchmark(hf_parquet)


def test_zoomworld_round_trip(tmp_path: Path) -> None:
    write_zoomworld(tmp_path, 6, seed=21)
    loaded = load_benchmark(tmp_path)
    made = generate_zoomworld(6, seed=21)
    assert len(loaded) == len(made) == 6
    for got, want in zip(loaded, made):
        for field in ("id", "prompt", "answer", "dimension", "options", "bbox", "multiple_choice", "meta"):
            assert getattr(got, field) == getattr(want, field), field
        assert isinstance(got.image, Path) and got.image.is_file()
        assert np.array_equal(np.asarray(got.load_image()), np.asarray(want.load_image()))
        assert np.array_equal(np.asarray(got.load_crop()), np.asarray(want.load_crop()))


def test_bench_item_and_dimensions() -> None:
    item = BenchItem("x", Image.new("RGB", (4, 4)), None, "Q?", "B", options=["a", "b"], multiple_choice=True)
    assert item.answer_text == "b" and item.load_crop() is None
    assert BenchItem("y", b"", None, "Q?", "Z", options=["a"], multiple_choice=True).answer_text == "Z"
    names = ["Fine-Grained Counting", "OCR", "Color Attributes", "Structural Attributes", "Material Attributes",
             "Object Identification"]  # fmt: skip
    assert [canonical_dimension(n) for n in names] == list(DIMENSIONS)
