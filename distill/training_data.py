"""The training-data contract between ``zwz distill`` (writes) and ``zwz train`` (reads).

One record type, two parquet layouts over it, and one reader for both (and for ZoomBench-format benchmarks):

- verl's RL layout (``data_source``, ``prompt`` with one ``<image>`` tag per image, ``images``, ``ability``,
  ``reward_model{style, ground_truth}``, ``extra_info``); its reward hook reads question/options/dimension
  from ``extra_info``, so everything a reward needs travels in the row (the official parquet missed some);
- TRL's conversational VLM layout (``prompt``/``completion`` message lists plus ``images``), which
  ``SFTTrainer`` and ``GRPOTrainer`` read as they are.

    records = read_records("out/train_rl.parquet")          # or out/train_trl.parquet, or a benchmark folder
    write_trl_parquet(records, "sft.parquet")

>>> import tempfile, os
>>> rec = TrainingRecord("id1", [b"\\x89PNG..."], "What colour?", "red", dimension="color", box=[1.0, 2.0, 3.0, 4.0])
>>> path = os.path.join(tempfile.mkdtemp(), "rl.parquet")
>>> write_rl_parquet([rec], path)
>>> read_records(path) == [rec]
True
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "MC_TARGETS",
    "VARIANTS",
    "VIEWS",
    "TrainingRecord",
    "read_records",
    "record_id",
    "rl_schema",
    "trl_schema",
    "write_rl_parquet",
    "write_trl_parquet",
]

# The grounding variants the paper compares (Table 6); bbox_in_image is the method, the rest are ablations.
VARIANTS = ("bbox_in_image", "bbox_in_question", "no_box", "direct")
IMAGE_TAG = "<image>"  # verl expands one tag per entry of ``images``
VIEWS = ("global", "regional")  # a benchmark item's full image, or its evidence crop
MC_TARGETS = ("letter", "text")  # a multiple-choice answer as the option's letter, or its text


@dataclass
class TrainingRecord:
    """One training item: what the student sees (``images``, ``question``) and the ground truth."""

    item_id: str
    images: list[bytes]
    question: str
    answer: str
    dimension: str | None = None
    options: list[str] | None = None
    box: list[float] | None = None
    variant: str = "bbox_in_image"
    data_source: str = "zwz_r2i"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.box is not None and len(self.box) != 4:
            raise ValueError(f"box must be [x1, y1, x2, y2], got {self.box!r}")


def record_id(image: bytes, box: Sequence[float] | None, question_index: int) -> str:
    """A stable id: the content hash of the source image, the box and the question's index.

    >>> record_id(b"img", [1, 2, 3, 4], 0) == record_id(b"img", [1.0, 2.0, 3.0, 4.0], 0)
    True
    >>> len(record_id(b"img", None, 1))
    16
    """
    h = hashlib.sha256(hashlib.sha256(image).digest())
    h.update(json.dumps([float(v) for v in box] if box is not None else None).encode())
    h.update(str(question_index).encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ schemas
def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError("training parquet needs pyarrow: pip install 'zwz[eval]' (or pyarrow)") from exc
    return pa, pq


def _image_type():
    pa, _ = _pa()
    return pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))


def rl_schema():
    """The arrow schema of :func:`write_rl_parquet` (verl's RL dataset columns)."""
    pa, _ = _pa()
    return pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("images", _image_type()),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct([
            ("index", pa.int64()), ("item_id", pa.string()), ("question", pa.string()), ("answer", pa.string()),
            ("dimension", pa.string()), ("options", pa.list_(pa.string())), ("box", pa.list_(pa.float64())),
            ("variant", pa.string()), ("extra", pa.string()),
        ])),
    ])  # fmt: skip


def trl_schema():
    """The arrow schema of :func:`write_trl_parquet` (TRL's conversational vision-language columns)."""
    pa, _ = _pa()
    part = pa.struct([("type", pa.string()), ("text", pa.string())])
    message = pa.struct([("role", pa.string()), ("content", pa.list_(part))])
    return pa.schema([
        ("prompt", pa.list_(message)),
        ("completion", pa.list_(message)),
        ("images", _image_type()),
        ("answer", pa.string()),
        ("question", pa.string()),
        ("options", pa.list_(pa.string())),
        ("dimension", pa.string()),
        ("box", pa.list_(pa.float64())),
        ("item_id", pa.string()),
        ("variant", pa.string()),
        ("data_source", pa.string()),
        ("extra", pa.string()),
    ])  # fmt: skip


# ---------------------------------------------------------------------------------------------- writing
def _images(record: TrainingRecord) -> list[dict[str, Any]]:
    return [{"bytes": bytes(b), "path": None} for b in record.images]


def _rl_row(record: TrainingRecord, index: int) -> dict[str, Any]:
    return {
        "data_source": record.data_source,
        "prompt": [{"role": "user", "content": IMAGE_TAG * len(record.images) + record.question}],
        "images": _images(record),
        "ability": f"perception/{record.dimension}" if record.dimension else "perception",
        "reward_model": {"style": "rule", "ground_truth": record.answer},
        "extra_info": {
            "index": index, "item_id": record.item_id, "question": record.question, "answer": record.answer,
            "dimension": record.dimension, "options": record.options, "box": record.box,
            "variant": record.variant, "extra": json.dumps(record.extra, sort_keys=True),
        },
    }  # fmt: skip


def _trl_row(record: TrainingRecord) -> dict[str, Any]:
    parts = [{"type": "image", "text": None} for _ in record.images]
    return {
        "prompt": [{"role": "user", "content": [*parts, {"type": "text", "text": record.question}]}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": record.answer}]}],
        "images": _images(record),
        "answer": record.answer,
        "question": record.question,
        "options": record.options,
        "dimension": record.dimension,
        "box": record.box,
        "item_id": record.item_id,
        "variant": record.variant,
        "data_source": record.data_source,
        "extra": json.dumps(record.extra, sort_keys=True),
    }


def _write(rows: list[dict[str, Any]], schema, path: str | Path) -> None:
    pa, pq = _pa()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)  # a reader never sees a half-written file


def write_rl_parquet(records: Iterable[TrainingRecord], path: str | Path) -> None:
    """Write ``records`` in verl's RL layout (one row per record; ``extra_info.index`` is the row number)."""
    rows = [_rl_row(r, i) for i, r in enumerate(records)]
    _write(rows, rl_schema(), path)
    logger.info("wrote %d records (verl RL layout) to %s", len(rows), path)


def write_trl_parquet(records: Iterable[TrainingRecord], path: str | Path) -> None:
    """Write ``records`` in TRL's conversational VLM layout (prompt, completion, images, ...)."""
    rows = [_trl_row(r) for r in records]
    _write(rows, trl_schema(), path)
    logger.info("wrote %d records (TRL layout) to %s", len(rows), path)


# ---------------------------------------------------------------------------------------------- reading
def _image_bytes(images: list[dict[str, Any]] | None, path: Path) -> list[bytes]:
    out = []
    for image in images or []:
        if image.get("bytes") is not None:
            out.append(bytes(image["bytes"]))
        elif image.get("path"):
            file = Path(image["path"])
            out.append((file if file.is_absolute() else path.parent / file).read_bytes())
        else:
            raise ValueError(f"{path}: an image entry has neither bytes nor path")
    return out


def _extra(value: str | None) -> dict[str, Any]:
    return json.loads(value) if value else {}


def _from_rl(row: dict[str, Any], path: Path) -> TrainingRecord:
    info = row.get("extra_info") or {}
    question = info.get("question")
    if question is None:  # a verl parquet written elsewhere: take the text after the image tags
        question = row["prompt"][-1]["content"].replace(IMAGE_TAG, "")
    return TrainingRecord(
        item_id=str(info.get("item_id") or info.get("index", "")),
        images=_image_bytes(row.get("images"), path),
        question=question,
        answer=str(row["reward_model"]["ground_truth"]),
        dimension=info.get("dimension"),
        options=info.get("options"),
        box=info.get("box"),
        variant=info.get("variant") or "bbox_in_image",
        data_source=row.get("data_source") or "zwz_r2i",
        extra=_extra(info.get("extra")),
    )


def _from_trl(row: dict[str, Any], path: Path) -> TrainingRecord:
    question = row.get("question")
    if question is None:
        question = "".join(p.get("text") or "" for p in row["prompt"][-1]["content"] if p.get("type") == "text")
    answer = row.get("answer")
    if answer is None:
        answer = "".join(p.get("text") or "" for p in row["completion"][-1]["content"] if p.get("type") == "text")
    return TrainingRecord(
        item_id=str(row.get("item_id") or ""),
        images=_image_bytes(row.get("images"), path),
        question=question,
        answer=str(answer),
        dimension=row.get("dimension"),
        options=row.get("options"),
        box=row.get("box"),
        variant=row.get("variant") or "bbox_in_image",
        data_source=row.get("data_source") or "zwz_r2i",
        extra=_extra(row.get("extra")),
    )


def _encoded(source: Any) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, Path):
        return source.read_bytes()
    buf = io.BytesIO()
    source.save(buf, format="PNG")  # a decoded PIL image: store it losslessly
    return buf.getvalue()


def _from_benchmark(path: Path, view: str, mc_target: str) -> list[TrainingRecord]:
    from zwz.distill.benchmark import load_benchmark

    records = []
    for item in load_benchmark(path):
        if view == "regional" and item.crop_image is None:
            raise ValueError(f"{path}: item {item.id} has no crop_image, which view 'regional' trains on")
        image = item.crop_image if view == "regional" else item.image
        box = [float(v) for v in item.bbox] if item.bbox and view == "global" else None  # a crop has no box of I
        records.append(TrainingRecord(
            item_id=item.id, images=[_encoded(image)], question=item.prompt,
            answer=item.answer_text if mc_target == "text" else item.answer,
            dimension=item.dimension, options=item.options, box=box, variant="no_box", data_source="benchmark",
            extra={"multiple_choice": item.multiple_choice, "view": view},
        ))  # fmt: skip
    return records


def read_records(path: str | Path, *, view: str = "global", mc_target: str = "letter") -> list[TrainingRecord]:
    """Read records back from either parquet layout (exact round trip), or from any ZoomBench-format benchmark.

    A parquet with ``reward_model`` is verl's layout, one with ``completion`` is TRL's; anything else (a
    benchmark parquet, JSONL, JSON or folder) goes through :func:`zwz.distill.benchmark.load_benchmark`.
    For a benchmark, ``view`` picks the image: ``"global"`` (the full image) or ``"regional"`` (its evidence
    crop, the teacher's view in R2I), and ``mc_target`` a multiple-choice item's answer: ``"letter"`` (as the
    benchmark states it) or ``"text"`` (the chosen option's text, which the scorer takes too and which a model
    trained from scratch learns far sooner: docs/nano-learning-curves.md). Distill's parquet holds one view
    and its own answers, so only the defaults apply to it.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if mc_target not in MC_TARGETS:
        raise ValueError(f"mc_target must be one of {MC_TARGETS}, got {mc_target!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no training data at {path}")
    if path.is_file() and path.suffix.lower() == ".parquet":
        _, pq = _pa()
        names = set(pq.read_schema(path).names)
        if "reward_model" in names or "completion" in names:
            if (view, mc_target) != ("global", "letter"):
                raise ValueError(f"{path} is distill's training parquet: view 'regional' and mc_target 'text' "
                                 "apply to ZoomBench-format benchmarks (with crops) only")
            convert = _from_rl if "reward_model" in names else _from_trl
            records = []
            for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
                records.extend(convert(row, path) for row in batch.to_pylist())
            logger.info("read %d records from %s", len(records), path)
            return records
    return _from_benchmark(path, view, mc_target)
