"""The training-data contract: both parquet layouts round-trip, with the column types verl and TRL expect."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from zwz.distill.training_data import (
    TrainingRecord,
    read_records,
    record_id,
    write_rl_parquet,
    write_trl_parquet,
)
from zwz.distill.zoomworld import write_zoomworld


def _png(color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 8), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def records() -> list[TrainingRecord]:
    return [
        TrainingRecord(record_id(_png("red"), [1, 2, 5, 6], 0), [_png("red")], "What colour is it?\n\nOnly focus.",
                       "red", dimension="color", box=[1.0, 2.0, 5.0, 6.0], extra={"consensus": 0.875}),
        TrainingRecord("b", [_png("blue"), _png("green")], "Which?\nA. x\nB. y\nAnswer with the option's letter.",
                       "B", options=["x", "y"], variant="no_box"),
    ]  # fmt: skip


@pytest.mark.parametrize("writer", [write_rl_parquet, write_trl_parquet])
def test_round_trip_is_exact(tmp_path, records, writer):
    path = tmp_path / "data.parquet"
    writer(records, path)
    assert read_records(path) == records


def test_rl_layout_columns_and_types(tmp_path, records):
    path = tmp_path / "rl.parquet"
    write_rl_parquet(records, path)
    table = pq.read_table(path)
    assert table.column_names == ["data_source", "prompt", "images", "ability", "reward_model", "extra_info"]
    rows = table.to_pylist()
    assert rows[0]["prompt"] == [{"role": "user", "content": "<image>What colour is it?\n\nOnly focus."}]
    assert rows[1]["prompt"][0]["content"].startswith("<image><image>Which?")
    assert rows[0]["images"][0] == {"bytes": records[0].images[0], "path": None}
    assert rows[0]["ability"] == "perception/color" and rows[1]["ability"] == "perception"
    assert rows[1]["reward_model"] == {"style": "rule", "ground_truth": "B"}
    info = rows[1]["extra_info"]
    assert info["index"] == 1 and info["options"] == ["x", "y"] and info["question"].startswith("Which?")
    assert table.schema.field("images").type.value_type.field("bytes").type == pa.binary()
    assert table.schema.field("extra_info").type.field("box").type == pa.list_(pa.float64())


def test_trl_layout_columns(tmp_path, records):
    path = tmp_path / "trl.parquet"
    write_trl_parquet(records, path)
    rows = pq.read_table(path).to_pylist()
    content = rows[1]["prompt"][0]["content"]
    assert [p["type"] for p in content] == ["image", "image", "text"] and content[2]["text"].startswith("Which?")
    assert rows[0]["completion"] == [{"role": "assistant", "content": [{"type": "text", "text": "red"}]}]
    assert rows[0]["answer"] == "red" and rows[0]["dimension"] == "color" and rows[1]["options"] == ["x", "y"]


def test_reads_a_benchmark(tmp_path):
    jsonl = write_zoomworld(tmp_path / "zw", 2, seed=3)
    records = read_records(jsonl.parent)
    assert len(records) == 2 and records[0].item_id == "zw3-00000"
    assert Image.open(io.BytesIO(records[0].images[0])).size == (1536, 1152)
    assert records[0].dimension == "counting" and records[0].box is not None


def test_bad_variant_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        TrainingRecord("x", [], "q", "a", variant="boxed")
    with pytest.raises(FileNotFoundError, match=r"no training data at .*nope\.parquet"):
        read_records(tmp_path / "nope.parquet")
