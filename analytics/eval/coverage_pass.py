"""The coverage pass of ``zwz eval --coverage`` (paper Sec. 5.2, Table 8): for each item with an evidence box,
the relative-attention map of its question over the full image (``POST /v1/zoom/attention``: a zwz server)
and Coverage(B), the share of the map's mass inside the box (Eq. 2, computed by the server with the same code
the UI and the API use), with the box's share of the image area beside it (what a uniform map would cover).

    store = PredictionStore(out / "coverage.jsonl")
    await run_coverage(items, endpoint, settings, store, concurrency=4)
    coverage_stats(store.records.values())           # zwz.analytics.eval.report: means with 95% intervals

Each finished item is one line of ``coverage.jsonl`` (mode ``coverage``), appended as it finishes; a rerun
skips those and retries failed ones. Items without a ``bbox`` are left out (a ZoomBench parquet has none).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from zwz.analytics.attention.grid import GridGeometry
from zwz.analytics.eval.client import Endpoint, RequestFailed
from zwz.analytics.eval.runner import EvalSettings, PredictionStore
from zwz.analytics.zoom.requests import attention_map_body
from zwz.distill.benchmark import BenchItem
from zwz.endpoint import image_data_url

logger = logging.getLogger(__name__)

__all__ = ["COVERAGE", "measure_coverage", "run_coverage"]

COVERAGE = "coverage"  # the records' mode (in coverage.jsonl) and the key of its settings in run.json


def _record(reply: dict[str, Any], item: BenchItem) -> dict[str, Any]:
    """Coverage, area share, layer and grid of an attention-map reply; RequestFailed when it lacks them."""
    assert item.bbox is not None
    try:
        coverage = float(reply["coverage"])
        geometry = GridGeometry(tuple(reply["image_size"]), tuple(reply["grid_shape"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RequestFailed(f"/zoom/attention reply has no coverage, image_size or grid_shape ({exc!r}): "
                            f"{str(reply)[:200]}") from None
    return {"coverage": coverage, "area_share": geometry.area_fraction(item.bbox), "layer": reply.get("layer"),
            "grid_shape": list(geometry.grid_shape), "image_size": list(geometry.image_size)}


async def measure_coverage(item: BenchItem, endpoint: Endpoint, settings: EvalSettings) -> dict[str, Any]:
    """One item's coverage record (``id``, ``dimension``, ``coverage``, ``area_share``, ``latency_ms``, ...)."""
    if item.bbox is None:
        raise ValueError(f"item {item.id} has no evidence box")
    record: dict[str, Any] = {"id": item.id, "mode": COVERAGE, "dimension": item.dimension, "bbox": list(item.bbox),
                              "coverage": None, "area_share": None, "latency_ms": None, "error": None,
                              "error_stage": None}  # fmt: skip
    try:
        url = await asyncio.to_thread(image_data_url, item.image)  # encoded before the clock starts
    except (OSError, ValueError) as exc:
        return record | {"error": f"cannot read the item's image: {exc}", "error_stage": "request"}
    body = attention_map_body(url, item.prompt, max_pixels=settings.max_pixels) | {"box": list(item.bbox)}
    started = time.perf_counter()
    try:
        record |= _record(await endpoint.attention(body), item)
    except RequestFailed as exc:
        return record | {"error": str(exc), "error_stage": "request"}
    record["latency_ms"] = round((time.perf_counter() - started) * 1e3, 3)
    return record


async def run_coverage(items: list[BenchItem], endpoint: Endpoint, settings: EvalSettings, store: PredictionStore,
                       *, concurrency: int = 4, progress: bool = True) -> dict[str, int]:
    """Measure the items with a box not in ``store`` yet, ``concurrency`` at a time; counts of requested and
    failed items."""
    from tqdm.auto import tqdm

    boxed = [item for item in items if item.bbox is not None]
    if len(boxed) < len(items):
        logger.warning("coverage: %d items have no evidence box and are left out", len(items) - len(boxed))
    todo = [item for item in boxed if (COVERAGE, item.id) not in store.records]
    sem = asyncio.Semaphore(concurrency)
    counts = {"requested": len(todo), "errors": 0}
    bar = tqdm(total=len(boxed), initial=len(boxed) - len(todo), desc=f"{COVERAGE:>14}", unit="item",
               disable=not progress, dynamic_ncols=True)

    async def one(item: BenchItem) -> dict[str, Any]:
        async with sem:
            record = await measure_coverage(item, endpoint, settings)
        store.append(record)
        return record

    tasks = [asyncio.ensure_future(one(item)) for item in todo]
    try:
        for next_done in asyncio.as_completed(tasks):
            record = await next_done
            if record["error"]:
                counts["errors"] += 1
                (logger.warning if counts["errors"] == 1 else logger.debug)(
                    "coverage %s: %s", record["id"], record["error"])
                bar.set_postfix(errors=counts["errors"])
            bar.update(1)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        bar.close()
    return counts
