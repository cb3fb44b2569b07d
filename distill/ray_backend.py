"""Run the R2I stages on Ray Data: ``zwz distill ... --backend ray`` (a local Ray on one machine, or the
cluster ``RAY_ADDRESS`` names; the pool and the run folder must then be on storage every node sees).

One streaming pipeline: ``ray.data.from_items(pool) -> map_batches(StageWorker[pool, propose]) ->
map_batches(StageWorker[zoom ... difficulty]) -> the driver``, two actor pools (``ActorPoolStrategy``): box
proposal (the SAM3 proposer in GPU actors when ``--sam3-model`` is given and the cluster has GPUs) and the
teacher stages in CPU actors (each with its own HTTP client, concurrency limit and call-cache file). A row
expands into any number of rows (one image into its regions, a region into its questions).

Ray Data's checkpointing is not used: it loses rows when one input row expands into many (ENVIRONMENT.md).
Each stage is idempotent instead: every actor appends each finished input to its own durable journal
(``work/ray_journals/<stage>/``) and answers inputs any journal already holds from it, so a killed run
resumes without repeating work. The driver then rebuilds every stage's outputs from the journals in input
order, exactly as the local backend does (the two can even share a run folder), so both give the same
records on the same input.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from zwz.distill.config import DistillConfig

logger = logging.getLogger(__name__)

__all__ = ["StageWorker", "run_ray"]

BATCH_SIZE = 4


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImportError("--backend ray needs Ray Data: pip install 'zwz[distill]' (ray[data]==2.60.0)") from exc
    return ray


class StageWorker:
    """A Ray actor running a chain of stages over batches of encoded inputs: each input goes through every
    stage of the chain in turn (its outputs fan out into the next), each finished (stage, input) journalled."""

    def __init__(self, config: dict[str, Any], work: str, stages: list[str], run_id: str) -> None:
        from zwz.distill.journal import Journal
        from zwz.distill.pipeline import make_context, stage_rows, teacher_pool

        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.config = DistillConfig.from_dict(config)
        self.work, self.stages = Path(work), list(stages)
        name = f"{self.stages[0]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.loop = asyncio.new_event_loop()
        self.teachers = teacher_pool(self.config, self.work, self.work / "ray_calls" / f"{name}.jsonl")
        self.loop.run_until_complete(self.teachers.__aenter__())
        self.ctx = make_context(self.config, self.work, self.teachers)
        self.done = {s: stage_rows(self.work, s) for s in self.stages}  # what earlier runs finished
        self.journals = {s: Journal(self.work / "ray_journals" / s / f"{name}.jsonl") for s in self.stages}
        self.stats_path = self.work / "ray_stats" / run_id / f"{name}.json"
        self.stats_path.parent.mkdir(parents=True, exist_ok=True)

    async def _through(self, depth: int, data: Any) -> list[dict[str, Any]]:
        from zwz.distill.pipeline import input_key, stage_row
        from zwz.distill.stages import STAGES

        stage = self.stages[depth]
        fn, kind = STAGES[stage]
        record = data if kind is str else kind.from_json(data)
        row = self.done[stage].get(input_key(record))
        if row is None:
            outputs, drops = await fn(self.ctx, record)
            row = stage_row(record, outputs, drops)
            self.journals[stage].append(row)
        if depth + 1 == len(self.stages):
            return row["out"]
        nested = await asyncio.gather(*(self._through(depth + 1, o) for o in row["out"]))
        return [o for outs in nested for o in outs]

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        asyncio.set_event_loop(self.loop)  # Ray calls actors from a pool thread, not the constructor's
        inputs = [json.loads(str(t)) for t in batch["record"]]
        nested = self.loop.run_until_complete(asyncio.gather(*(self._through(0, x) for x in inputs)))
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.teachers.stats.as_dict()))
        tmp.replace(self.stats_path)
        outputs = [json.dumps(o, ensure_ascii=False) for outs in nested for o in outs]
        return {"record": np.array(outputs, dtype=object)}


def _has_gpu(ray) -> bool:
    return bool(ray.cluster_resources().get("GPU", 0))


def _stats(work: Path, run_id: str) -> dict[str, Any]:
    totals: dict[str, Any] = {"requests": 0, "cache_hits": 0, "retries": 0, "failures": 0, "prompt_tokens": 0,
                              "completion_tokens": 0, "by_endpoint": {}}  # fmt: skip
    for path in sorted((work / "ray_stats" / run_id).glob("*.json")):
        for key, value in json.loads(path.read_text()).items():
            if key == "by_endpoint":
                for name, n in value.items():
                    totals["by_endpoint"][name] = totals["by_endpoint"].get(name, 0) + n
            else:
                totals[key] = totals.get(key, 0) + value
    return totals


def run_ray(config: DistillConfig, out: str | Path, *, restart: bool = False, force: bool = False,
            num_cpus: int | None = None) -> dict[str, Any]:  # fmt: skip
    """The pipeline on Ray Data; the same outputs and report as :func:`zwz.distill.pipeline.run_local`."""
    from ray.data import ActorPoolStrategy

    from zwz.distill.output import write_outputs
    from zwz.distill.pipeline import (close_stage, enabled_stages, encode_input, list_pool, open_stage,
                                      prepare_run, progress_bar, ray_journals)  # fmt: skip
    from zwz.distill.report import write_report

    ray = _ray()
    out = Path(out)
    work = prepare_run(config, out, restart=restart, force=force)
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), num_cpus=num_cpus, log_to_driver=False,
                 include_dashboard=False)  # fmt: skip
    ray.data.DataContext.get_current().enable_progress_bars = False  # our per-stage bars say it once
    start, run_id = time.perf_counter(), uuid.uuid4().hex[:12]
    pool = list_pool(config.images)
    stages = enabled_stages(config)
    gpu = config.sam3_model is not None and _has_gpu(ray)
    ds = ray.data.from_items([{"record": encode_input(p)} for p in pool])
    # Two actor pools: finding boxes (SAM3 on a GPU when there is one) and the teacher stages (CPU clients).
    # Fewer pools start faster; the chain inside a pool still journals every stage separately.
    for chain in (stages[:2], stages[2:]):
        uses_gpu = gpu and "propose" in chain
        ds = ds.map_batches(
            StageWorker, fn_constructor_kwargs={"config": config.to_dict(), "work": str(work), "stages": chain,
                                                "run_id": run_id},
            compute=ActorPoolStrategy(size=max(1, config.ray_actors)), batch_size=BATCH_SIZE,
            num_gpus=1 if uses_gpu else 0, num_cpus=0.5,
        )  # fmt: skip
    bar = progress_bar("ray pipeline", 0, 0, config.progress)
    for _ in ds.iter_rows():  # the last stage's records; the driver rebuilds everything from the journals
        bar.update(1)
    bar.close()
    records: list[Any] = pool
    reports = []
    for name in stages:
        journal, done, pending, report = open_stage(work, name, records)
        journal.close()
        if pending:
            raise RuntimeError(f"ray stage {name}: {len(pending)} inputs have no journal row "
                               f"(journals: {len(ray_journals(work, name))})")  # fmt: skip
        report.resumed = 0
        records, report = close_stage(name, records, done, report, start)
        reports.append(report)
    written = write_outputs(config, records, out)
    return write_report(out, config, reports, _stats(work, run_id), records, written,
                        seconds=time.perf_counter() - start)  # fmt: skip
