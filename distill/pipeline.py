"""Run the R2I pipeline on one machine, resumably: ``zwz distill ... --backend local`` (the default).

    zwz distill --images pool/ --annotations pool/items.jsonl \\
        --teacher http://127.0.0.1:8001=Qwen3-VL-235B --teacher http://127.0.0.1:8002=GLM-4.5V \\
        --question-teacher http://127.0.0.1:8001=Qwen3-VL-235B --student http://127.0.0.1:8003=Qwen3-VL-8B \\
        --out runs/r2i

Every stage keeps a journal ``<out>/work/<stage>.jsonl`` with one line per input record (its outputs and drop
reasons), written durably as each input finishes. A rerun of the same command skips what a journal holds, so
after ``kill -9`` at any moment it finishes the job, and because outputs are always assembled in input order
(and teacher replies are replayed from the call cache) the result equals an uninterrupted run's. The run's
config fingerprint lives in ``<out>/config.json``; a different config refuses to resume there unless
``restart`` (start over) or ``force`` (keep the old work, adopt the new config) is given.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zwz.distill.config import DistillConfig
from zwz.distill.journal import Journal
from zwz.distill.proposals import BoxProposer, load_annotations
from zwz.distill.records import QA, Item, PoolImage, Region
from zwz.distill.stages import STAGES, StageContext
from zwz.distill.teachers import TeacherPool

logger = logging.getLogger(__name__)

__all__ = ["ConfigMismatch", "StageReport", "enabled_stages", "list_pool", "prepare_run", "run_local"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_TYPES: dict[str, type] = {"PoolImage": PoolImage, "Region": Region, "QA": QA, "Item": Item}
_OUTPUT_OF = {"pool": PoolImage, "propose": Region, "zoom": Region, "questions": QA, "answers": QA,
              "validate": QA, "ground": Item, "multiple_choice": Item, "difficulty": Item}  # fmt: skip


class ConfigMismatch(ValueError):
    """The output folder holds a run with another config."""


@dataclass
class StageReport:
    name: str
    items_in: int = 0
    items_out: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    resumed: int = 0  # inputs whose records were already journalled


def enabled_stages(config: DistillConfig) -> list[str]:
    """The stages a config runs, in order."""
    names = ["pool", "propose", "zoom", "questions", "answers"]
    if config.validate:
        names.append("validate")
    names.append("ground")
    if config.multiple_choice:
        names.append("multiple_choice")
    if config.student is not None:
        names.append("difficulty")
    return names


def list_pool(images: str | Path) -> list[str]:
    """The pool's image files: a folder (recursive, sorted) or a manifest (JSONL with an ``image`` path, or
    a text file with one path per line; relative paths are relative to the manifest)."""
    path = Path(images)
    if path.is_dir():
        return [str(p) for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not path.is_file():
        raise FileNotFoundError(f"no image folder or manifest at {path}")
    files = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix.lower() == ".jsonl":
            try:
                value = json.loads(line)["image"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}:{lineno}: expected a JSON object with an 'image' path") from None
        else:
            value = line.strip()
        file = Path(str(value))
        files.append(str(file if file.is_absolute() else path.parent / file))
    return files


def prepare_run(config: DistillConfig, out: Path, *, restart: bool = False, force: bool = False) -> Path:
    """Create or reopen ``out``; refuse a different config unless ``restart`` or ``force``. Returns work/."""
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    fingerprint = config.fingerprint()
    if saved.exists() and not restart:
        old = json.loads(saved.read_text(encoding="utf-8"))
        if old.get("fingerprint") != fingerprint and not force:
            raise ConfigMismatch(
                f"{out} holds a run with another config (fingerprint {old.get('fingerprint')} != {fingerprint}); "
                "use --restart to start over there, --force to resume with the new config, or another --out"
            )
    if restart and (out / "work").exists():
        shutil.rmtree(out / "work")
    work = out / "work"
    work.mkdir(exist_ok=True)
    tmp = saved.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "config": config.to_dict()}, indent=2, default=str))
    tmp.replace(saved)
    return work


def _key(record: Any) -> str:
    return record if isinstance(record, str) else record.key


def _decode(stage: str, rows: list[dict[str, Any]]) -> list[Any]:
    cls = _OUTPUT_OF[stage]
    return [cls.from_json(r) for r in rows]


async def run_stage(
    ctx: StageContext, name: str, inputs: list[Any], *, progress: bool = True, in_flight: int = 64
) -> tuple[list[Any], StageReport]:
    """Run one stage over ``inputs`` with a durable journal; returns its outputs in input order."""
    fn, _ = STAGES[name]
    journal = Journal(ctx.work / f"{name}.jsonl")
    done = {r["key"]: r for r in journal.records}
    pending = [x for x in inputs if _key(x) not in done]
    report = StageReport(name, items_in=len(inputs), resumed=len(inputs) - len(pending))
    start = time.perf_counter()
    bar = _bar(name, len(inputs), report.resumed, progress)
    limit = asyncio.Semaphore(in_flight)  # bounds records held in memory; the teachers bound the calls

    async def one(record: Any) -> None:
        async with limit:
            outputs, drops = await fn(ctx, record)
        row = {"key": _key(record), "out": [o.to_json() for o in outputs], "drops": dict(drops)}
        journal.append(row)
        done[row["key"]] = row
        bar.update(1)

    try:
        await asyncio.gather(*(one(x) for x in pending))
    finally:
        journal.close()
        bar.close()
    outputs: list[Any] = []
    drops: Counter = Counter()
    seen: set[str] = set()
    for x in inputs:
        row = done[_key(x)]
        drops.update(row["drops"])
        for o in _decode(name, row["out"]):
            if o.key not in seen:  # the same box proposed twice, say: one record per id
                seen.add(o.key)
                outputs.append(o)
            else:
                drops["duplicate"] += 1
    report.items_out, report.drops = len(outputs), dict(sorted(drops.items()))
    report.seconds = round(time.perf_counter() - start, 3)
    logger.info("%s: %d in, %d out, drops %s (%.1f s)", name, report.items_in, report.items_out, report.drops,
                report.seconds)  # fmt: skip
    return outputs, report


class _NoBar:
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


def _bar(name: str, total: int, initial: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"{name:>15}", unit="rec", file=sys.stderr, leave=True)


def make_context(config: DistillConfig, work: Path, teachers: TeacherPool,
                 proposer: BoxProposer | None = None) -> StageContext:  # fmt: skip
    """The shared stage context: native boxes loaded, the SAM3 proposer and the judge made if configured."""
    annotations = load_annotations(config.annotations) if config.annotations else {}
    if proposer is None and config.sam3_model:
        from zwz.distill.box_proposer import sam3_proposer

        proposer = sam3_proposer(config.sam3_model, config.sam3_threshold)
    judge = None
    if config.equivalence_judge is not None:
        from zwz.scoring.judge import Judge

        e = config.equivalence_judge
        judge = Judge(e.url, e.model, e.api_key(), cache_path=work / "judge_cache.jsonl")
    return StageContext(config, teachers, work, annotations, proposer, judge)


async def run_stages(
    config: DistillConfig, work: Path, *, proposer: BoxProposer | None = None,
    on_stage: Callable[[StageReport], None] | None = None,
) -> tuple[list[Item], list[StageReport], dict[str, Any]]:  # fmt: skip
    """All enabled stages in order; returns the final items, the per-stage reports and the call statistics."""
    pool_files = list_pool(config.images)
    reports: list[StageReport] = []
    async with TeacherPool(cache_path=work / "calls.jsonl", concurrency=config.concurrency, timeout=config.timeout,
                           max_retries=config.max_retries, retry_backoff=config.retry_backoff) as teachers:  # fmt: skip
        ctx = make_context(config, work, teachers, proposer)
        records: list[Any] = pool_files
        for name in enabled_stages(config):
            records, report = await run_stage(ctx, name, records, progress=config.progress,
                                              in_flight=max(16, 4 * config.concurrency))  # fmt: skip
            reports.append(report)
            if on_stage is not None:
                on_stage(report)
        stats = teachers.stats.as_dict()
    return records, reports, stats


def run_local(config: DistillConfig, out: str | Path, *, restart: bool = False, force: bool = False,
              proposer: BoxProposer | None = None) -> dict[str, Any]:  # fmt: skip
    """Run (or resume) the whole pipeline and write the outputs and the funnel report; returns the report."""
    from zwz.distill.output import write_outputs
    from zwz.distill.report import write_report

    out = Path(out)
    work = prepare_run(config, out, restart=restart, force=force)
    start = time.perf_counter()
    items, reports, stats = asyncio.run(run_stages(config, work, proposer=proposer))
    written = write_outputs(config, items, out)
    return write_report(out, config, reports, stats, items, written, seconds=time.perf_counter() - start)
