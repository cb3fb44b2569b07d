"""The workload a Locust process replays: benchmark items, their request bodies per mode, and the scorer.

No Locust and no gevent here (``users`` runs it under gevent; tests build bodies in-process).

    w = Workload(plan, load_benchmark(plan.benchmark))
    w.start_cell("agent")
    item = w.next_item("agent")
    w.payload("agent", item)        # the serialized chat body: {"model", "messages", ..., "zwz_mode": "agent", ...}
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from zwz.distill.benchmark import BenchItem, load_benchmark
from zwz.endpoint import api_base, auth_headers, image_data_url, server_root, user_message
from zwz.analytics.eval.runner import score_record
from zwz.analytics.zoom.requests import ZOOM_MODES, zoom_chat_body
from zwz.scoring.judge import Judge
from zwz.scoring import make_benchmark_scorer
from zwz.loadtest.plan import SweepPlan

__all__ = ["SCORE", "UNSCORED", "UNJUDGED", "WRONG", "Workload", "configure", "workload"]

SCORE, UNSCORED = "SCORE", "UNSCORED"
WRONG = "wrong answer"
UNJUDGED = "unjudged: the rules could not decide (no --judge-url)"
# Request bodies and data URLs kept in memory between items; beyond this they are rebuilt per item (before its
# clock starts), so a full ZoomBench does not hold every image twice.
_CACHE_BYTES = 512 * 2**20

# fire(request_type, name, response_time_ms or None, error or None): a Locust request event.
Fire = Callable[[str, str, float | None, str | None], None]


class Workload:
    """The benchmark items, their request bodies and the scorer, shared by every user of the process."""

    def __init__(self, plan: SweepPlan, items: list[BenchItem]) -> None:
        if not items:
            raise ValueError(f"{plan.benchmark} has no items")
        self.plan = plan
        self.items = items
        self.api_base = api_base(plan.base_url)
        self.root = server_root(plan.base_url)
        self.headers = {"Content-Type": "application/json", **auth_headers(plan.api_key)}
        judge = None
        if plan.judge is not None:
            judge = Judge(plan.judge.url, plan.judge.model, plan.judge.api_key, cache_path=plan.judge.cache_path)
        self.scorer = make_benchmark_scorer(judge)
        self._cache: dict[tuple[str, ...], str | bytes] = {}
        self._cached_bytes = 0
        self._cursors: dict[str, Iterator[BenchItem]] = {}
        self.started = 0  # items begun since start_cell (warm-up included)
        self.finished: Counter[int] = Counter()  # items finished (answered or failed) per user (id)

    # -- per cell ------------------------------------------------------------------------------------------
    def items_for(self, mode: str) -> list[BenchItem]:
        return [i for i in self.items if i.crop_image is not None] if mode == "regional" else self.items

    def start_cell(self, *modes: str) -> None:
        """Restart each mode's item sequence (every cell replays the same items) and prebuild its payloads."""
        for mode in modes:
            items = self.items_for(mode)
            if not items:
                raise ValueError(f"{mode}: no item has a crop_image")
            for item in items:
                if self._cached_bytes < _CACHE_BYTES:
                    self.payload(mode, item)
            self._cursors[mode] = itertools.cycle(items)
        self.started = 0
        self.finished.clear()

    def next_item(self, mode: str) -> BenchItem:
        return next(self._cursors[mode])  # greenlets share one thread: no lock needed

    # -- payloads ------------------------------------------------------------------------------------------
    def _remember(self, key: tuple[str, ...], value: str | bytes) -> str | bytes:
        if self._cached_bytes + len(value) <= _CACHE_BYTES:
            self._cache[key] = value
            self._cached_bytes += len(value)
        return value

    def url(self, item: BenchItem, kind: str = "image") -> str:
        """The item's image (or crop) as a data URL; encoded files are sent as they are (cheap, lossless)."""
        key = ("url", item.id, kind)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._remember(key, image_data_url(item.image if kind == "image" else item.crop_image))
        return hit  # type: ignore[return-value]

    def sampling(self, max_tokens: int) -> dict[str, Any]:
        return self.plan.settings.sampling(max_tokens)

    def stream_fields(self) -> dict[str, Any]:
        return {"stream": True, "stream_options": {"include_usage": True}} if self.plan.stream else {}

    def one_request(self, mode: str) -> bool:
        """Whether the mode is one chat request (the zoom modes are when they run inside the server)."""
        return mode in ("single", "regional") or self.plan.settings.agent_side == "server"

    def payload(self, mode: str, item: BenchItem) -> bytes | str:
        """One-request modes: the serialized chat body; client-side modes: the original's data URL."""
        if not self.one_request(mode):
            return self.url(item)
        key = ("body", mode, item.id)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        s = self.plan.settings
        url = self.url(item, "crop" if mode == "regional" else "image")
        messages = [user_message([url], item.prompt)]
        if mode in ZOOM_MODES:  # run inside the server
            body = zoom_chat_body(mode, messages, model=self.plan.model, temperature=s.temperature,
                                  max_tokens=s.agent_max_tokens if mode == "agent" else s.max_tokens,
                                  max_pixels=s.max_pixels, max_turns=s.agent_max_turns, fixed_turns=s.agent_fixed_turns)
        else:
            body = {"model": self.plan.model, "messages": messages, **self.sampling(s.max_tokens)}
        return self._remember(key, json.dumps(body | self.stream_fields()).encode())

    # -- scoring -------------------------------------------------------------------------------------------
    def score(self, fire: Fire, mode: str, item: BenchItem, answer: str, latency_ms: float) -> None:
        """Fire ``SCORE`` (failed when wrong) or ``UNSCORED`` (the rules could not decide, or the judge failed)."""
        record: dict[str, Any] = {"prediction": answer}
        score_record(record, item, self.scorer)
        if record["score"] is None:
            fire(UNSCORED, mode, None, record["error"] or UNJUDGED)
        else:
            fire(SCORE, mode, latency_ms, None if record["score"] >= 1.0 else WRONG)


_WORKLOAD: Workload | None = None


def configure(plan: SweepPlan, items: list[BenchItem] | None = None) -> Workload:
    """Load the plan's items (``limit`` applied) and make them this process's workload."""
    global _WORKLOAD
    if items is None:
        items = load_benchmark(plan.benchmark)
        items = items[: plan.limit] if plan.limit is not None else items
    _WORKLOAD = Workload(plan, items)
    return _WORKLOAD


def workload() -> Workload:
    if _WORKLOAD is None:
        raise RuntimeError("zwz.loadtest.workload.configure(plan) must run before the users start")
    return _WORKLOAD
