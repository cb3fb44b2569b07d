"""``zwz train sft --view regional --mc-target text``: a benchmark's crops and option texts as training data."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from zwz.distill.training_data import read_records


@pytest.fixture(scope="module")
def nano_pool(tmp_path_factory):
    from zwz.distill.zoomworld import write_zoomworld

    folder = tmp_path_factory.mktemp("nano-pool")
    write_zoomworld(folder, 6, seed=5, level="nano", dimensions=["color", "structure"])
    return folder


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def test_regional_view_reads_the_crops(nano_pool):
    from zwz.distill.benchmark import load_benchmark

    items = load_benchmark(nano_pool)
    full = read_records(nano_pool)
    regional = read_records(nano_pool, view="regional")
    assert [r.item_id for r in regional] == [i.id for i in items]
    for item, g, r in zip(items, full, regional):
        assert _size(g.images[0]) == (448, 448) and g.box == [float(v) for v in item.bbox]
        assert _size(r.images[0]) == item.load_crop().size and r.box is None
        assert r.question == item.prompt and r.extra["view"] == "regional"


def test_mc_target_text_answers_with_the_option(nano_pool):
    letters = read_records(nano_pool)
    texts = read_records(nano_pool, mc_target="text")
    mc = [(a, b) for a, b in zip(letters, texts) if a.options]
    assert mc and any(not a.options for a in letters)  # the pool holds both kinds
    for a, b in mc:
        assert a.answer in "ABCD" and b.answer == a.options["ABCD".index(a.answer)]
    assert all(a.answer == b.answer for a, b in zip(letters, texts) if not a.options)


def test_distill_parquet_takes_only_the_defaults(train_data, tmp_path):
    with pytest.raises(ValueError, match="benchmarks"):
        read_records(train_data["trl"], view="regional")
    with pytest.raises(ValueError, match="view must be"):
        read_records(train_data["trl"], view="zoomed")


def test_cli_passes_view_and_mc_target(nano_pool, monkeypatch, tmp_path):
    from zwz import cli
    from zwz.train import trl_runner

    seen = {}
    monkeypatch.setattr(trl_runner, "run_training", lambda opts: seen.setdefault("opts", opts) and tmp_path)
    assert cli.main(["train", "sft", "--model", str(tmp_path), "--data", str(nano_pool), "--out", str(tmp_path / "r"),
                     "--view", "regional", "--mc-target", "text"]) == 0
    assert (seen["opts"].view, seen["opts"].mc_target) == ("regional", "text")
