"""The last stage: the kept items as training parquet (verl RL + TRL layouts, :mod:`zwz.distill.training_data`)
or, with ``--benchmark``, as a ZoomBench-format folder that ``zwz eval`` loads (full image without a box, the
key-region crop and the box for the dual view; paper App. 8.2).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from zwz.distill.config import DistillConfig
from zwz.distill.imaging import save_png_atomic
from zwz.distill.prompts import ANSWER_INSTRUCTION
from zwz.distill.records import Item
from zwz.distill.training_data import TrainingRecord, write_rl_parquet, write_trl_parquet

logger = logging.getLogger(__name__)

__all__ = ["to_training_record", "write_benchmark", "write_outputs"]


def to_training_record(item: Item) -> TrainingRecord:
    """One kept item as the training contract's record (provenance in ``extra``)."""
    region = item.qa.region
    return TrainingRecord(
        item_id=item.item_id,
        images=[Path(item.image_path).read_bytes()],
        question=item.question,
        answer=item.answer,
        dimension=item.dimension,
        options=item.options,
        box=[float(v) for v in item.box] if item.box is not None else None,
        variant=item.variant,
        extra={
            "source_image": region.image.name, "image_id": region.image.image_id, "region_box": region.box,
            "label": region.label, "box_origin": region.origin, "box_fraction": region.fraction,
            "question_raw": item.qa.question, "answer_text": item.qa.answer, "agreement": item.qa.agreement,
            "student_correct": item.student_correct,
        },
    )  # fmt: skip


def write_benchmark(items: list[Item], folder: Path) -> Path:
    """``images/``, ``crops/`` and ``items.jsonl`` (paths relative) in the layout ``load_benchmark`` reads."""
    from zwz.distill.imaging import zoom_in

    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for item in items:
        region = item.qa.region
        image_rel = f"images/{region.image.image_id}{Path(region.image.path).suffix.lower()}"
        if not (folder / image_rel).exists():
            shutil.copyfile(region.image.path, folder / (image_rel + ".tmp"))
            (folder / (image_rel + ".tmp")).replace(folder / image_rel)
        crop_rel = f"crops/{item.item_id}.png"
        with Image.open(region.image.path) as im:
            save_png_atomic(zoom_in(im, region.box, 1.0), folder / crop_rel)  # the key region, unscaled
        prompt = item.question if item.options else f"{item.question}\n{ANSWER_INSTRUCTION}"
        rows.append({
            "id": item.item_id, "image": image_rel, "crop_image": crop_rel, "prompt": prompt, "answer": item.answer,
            "dimension": item.dimension, "options": item.options, "bbox": [int(round(v)) for v in region.box],
            "multiple_choice": item.options is not None,
            "meta": {"answer_text": item.qa.answer, "agreement": item.qa.agreement, "source_image": region.image.name,
                     "label": region.label, "box_fraction": region.fraction, "student_correct": item.student_correct},
        })  # fmt: skip
    jsonl = folder / "items.jsonl"
    tmp = jsonl.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(jsonl)
    logger.info("wrote a %d-item benchmark to %s", len(rows), folder)
    return jsonl


def write_outputs(config: DistillConfig, items: list[Item], out: Path) -> dict[str, Any]:
    """Write the run's product; returns the paths written."""
    if config.benchmark:
        return {"benchmark": str(write_benchmark(items, out / "benchmark"))}
    records = [to_training_record(i) for i in items]
    rl, trl = out / "train_rl.parquet", out / "train_trl.parquet"
    write_rl_parquet(records, rl)
    write_trl_parquet(records, trl)
    return {"rl_parquet": str(rl), "trl_parquet": str(trl)}
