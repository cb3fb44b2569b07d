"""Training records -> the ``datasets.Dataset`` TRL's SFTTrainer and GRPOTrainer read.

    dataset = load_trl_dataset("out/train_rl.parquet")   # distill's RL or TRL parquet, or any ZoomBench-format file

Rows follow TRL's conversational vision-language layout (``prompt``/``completion`` message lists plus an
``images`` column); the reward columns (``answer``, ``question``, ``options``, ``dimension``) ride along so
that ``zwz.train.rewards`` receives them as keyword arguments. Images stay encoded in the Arrow table and are
decoded per batch (a decoded 74K-image set would not fit in memory).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["load_trl_dataset", "records_to_dataset"]


def _features():
    from datasets import Features, Image, List, Value

    part = {"type": Value("string"), "text": Value("string")}
    message = {"role": Value("string"), "content": List(part)}
    return Features({
        "prompt": List(message),
        "completion": List(message),
        "images": List(Image()),
        "answer": Value("string"),
        "question": Value("string"),
        "options": List(Value("string")),
        "dimension": Value("string"),
        "item_id": Value("string"),
    })  # fmt: skip


def _row(record) -> dict[str, Any]:
    images = [{"type": "image", "text": None} for _ in record.images]
    return {
        "prompt": [{"role": "user", "content": [*images, {"type": "text", "text": record.question}]}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": record.answer}]}],
        "images": [{"bytes": bytes(b), "path": None} for b in record.images],
        "answer": record.answer,
        "question": record.question,
        "options": record.options,
        "dimension": record.dimension,
        "item_id": record.item_id,
    }


def records_to_dataset(records: list) -> Any:
    """A TRL conversational VLM dataset from :class:`zwz.distill.training_data.TrainingRecord` objects."""
    try:
        from datasets import Dataset
    except ImportError as exc:
        raise ImportError("training needs the train extra: pip install 'zwz[train]'") from exc
    if not records:
        raise ValueError("the training data has no records")
    rows = [_row(r) for r in records]
    if any(not r["images"] for r in rows):
        raise ValueError("every training record needs at least one image")
    return Dataset.from_list(rows, features=_features())


def load_trl_dataset(path: str | Path, *, limit: int | None = None, view: str = "global",
                     mc_target: str = "letter") -> Any:
    """Read ``path`` (either parquet layout of ``zwz.distill.training_data``, or a benchmark) as a TRL dataset.

    ``limit`` keeps the first N records (quick runs); ``view`` ("regional": a benchmark's crops) and
    ``mc_target`` ("text": option text as the answer) are :func:`~zwz.distill.training_data.read_records`'.
    """
    from zwz.distill.training_data import read_records

    records = read_records(path, view=view, mc_target=mc_target)
    if limit is not None:
        records = records[:limit]
    logger.info("training on %d records from %s", len(records), path)
    return records_to_dataset(records)
