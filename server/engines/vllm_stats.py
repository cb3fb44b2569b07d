"""A vLLM stat logger that hands per-step figures to the vLLM engine for zwz's own metrics.

vLLM calls ``record`` in the server process after every engine step (stats must be on). Two figures
matter to zwz: how many requests got their first token in that step (requests that started decoding
together: what ``zwz_batch_size`` counts on both engines) and how many are running.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vllm.v1.metrics.loggers import StatLoggerBase


class StepStatsLogger(StatLoggerBase):
    def __init__(self, vllm_config: Any, engine_index: int = 0, *,
                 on_batch: Callable[[int], None], on_running: Callable[[int], None]) -> None:
        self.on_batch = on_batch
        self.on_running = on_running

    def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None,
               engine_idx: int = 0) -> None:
        if iteration_stats is not None and iteration_stats.time_to_first_tokens_iter:
            self.on_batch(len(iteration_stats.time_to_first_tokens_iter))
        if scheduler_stats is not None:
            self.on_running(scheduler_stats.num_running_reqs)

    def log_engine_initialized(self) -> None:
        pass
