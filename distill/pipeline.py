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

__all__ = [
    "ConfigMismatch", "StageReport", "close_stage", "decode_input", "enabled_stages", "encode_input", "list_pool",
    "make_context", "open_stage", "prepare_run", "progress_bar", "ray_journals", "run_local", "run_stage",
    "stage_row", "stage_rows", "teacher_pool",
]  # fmt: skip

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
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


def input_key(record: Any) -> str:
    return record if isinstance(record, str) else record.key


def _decode(stage: str, rows: list[dict[str, Any]]) -> list[Any]:
    cls = _OUTPUT_OF[stage]
    return [cls.from_json(r) for r in rows]


def encode_input(record: Any) -> str:
    """A stage input as a JSON string (file paths for the pool stage, records after it): for Ray rows."""
    return json.dumps(record if isinstance(record, str) else record.to_json(), ensure_ascii=False)


def decode_input(name: str, text: str) -> Any:
    _, kind = STAGES[name]
    data = json.loads(text)
    return data if kind is str else kind.from_json(data)


def stage_row(record: Any, outputs: list[Any], drops: Counter) -> dict[str, Any]:
    """The journal line of one finished input: its key, its outputs and why anything was dropped."""
    return {"key": input_key(record), "out": [o.to_json() for o in outputs], "drops": dict(drops)}


def ray_journals(work: Path, name: str) -> list[Path]:
    """The per-actor journals the Ray backend wrote for a stage."""
    return sorted((work / "ray_journals" / name).glob("*.jsonl"))


def stage_rows(work: Path, name: str) -> dict[str, dict]:
    """Every journalled row of a stage, by input key: the local journal and the Ray actors' journals."""
    rows: dict[str, dict] = {}
    for path in [*ray_journals(work, name), work / f"{name}.jsonl"]:
        if path.exists():
            rows.update((r["key"], r) for r in Journal(path, readonly=True).records)
    return rows


def open_stage(work: Path, name: str, inputs: list[Any]) -> tuple[Journal, dict[str, dict], list[Any], StageReport]:
    """The stage's journal, what it already holds (by key), the inputs still to do, and a fresh report."""
    journal = Journal(work / f"{name}.jsonl")
    done = stage_rows(work, name)
    pending = [x for x in inputs if input_key(x) not in done]
    return journal, done, pending, StageReport(name, items_in=len(inputs), resumed=len(inputs) - len(pending))


def close_stage(name: str, inputs: list[Any], done: dict[str, dict], report: StageReport, start: float
                ) -> tuple[list[Any], StageReport]:  # fmt: skip
    """Outputs in input order (so resumed and uninterrupted runs agree), one per id, and the stage's counts."""
    outputs: list[Any] = []
    drops: Counter = Counter()
    seen: set[str] = set()
    for x in inputs:
        row = done[input_key(x)]
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


async def run_stage(
    ctx: StageContext, name: str, inputs: list[Any], *, progress: bool = True, in_flight: int = 64
) -> tuple[list[Any], StageReport]:
    """Run one stage over ``inputs`` with a durable journal; returns its outputs in input order."""
    fn, _ = STAGES[name]
    journal, done, pending, report = open_stage(ctx.work, name, inputs)
    start = time.perf_counter()
    bar = progress_bar(name, len(inputs), report.resumed, progress)
    limit = asyncio.Semaphore(in_flight)  # bounds records held in memory; the teachers bound the calls

    async def one(record: Any) -> None:
        async with limit:
            outputs, drops = await fn(ctx, record)
        row = stage_row(record, outputs, drops)
        journal.append(row)
        done[row["key"]] = row
        bar.update(1)

    try:
        await asyncio.gather(*(one(x) for x in pending))
    finally:
        journal.close()
        bar.close()
    return close_stage(name, inputs, done, report, start)


class _NoBar:
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


def progress_bar(name: str, total: int, initial: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"{name:>15}", unit="rec", file=sys.stderr, leave=True)


def teacher_pool(config: DistillConfig, work: Path, cache_path: Path) -> TeacherPool:
    """The run's teacher clients; they replay every call cache of the run (either backend's)."""
    caches = [work / "calls.jsonl", *sorted((work / "ray_calls").glob("*.jsonl"))]
    return TeacherPool(cache_path=cache_path, read_cache_paths=[c for c in caches if c != cache_path],
                       concurrency=config.concurrency, timeout=config.timeout, max_retries=config.max_retries,
                       retry_backoff=config.retry_backoff)  # fmt: skip


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
    async with teacher_pool(config, work, work / "calls.jsonl") as teachers:
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
