"""What a ``zwz bench`` sweep runs: the plan the CLI hands to the Locust worker process, as plain JSON.

No Locust (and so no gevent) here: this module is imported by the CLI process as well as the worker.

    plan = SweepPlan(base_url="http://127.0.0.1:8000", model="qwen3_vl", benchmark="runs/b/zoomworld",
                     modes=["single", "agent"], users=[1, 2, 4], duration_s=30, slo_ms=2000)
    plan.cells()   # [Cell("single", 1), Cell("single", 2), ..., Cell("agent", 4)]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zwz.analytics.eval.runner import EvalSettings
from zwz.defaults import REQUEST_TIMEOUT_S, canonical_modes

__all__ = ["Cell", "JudgeSpec", "SweepPlan"]


@dataclass(frozen=True)
class Cell:
    """One load level: ``users`` concurrent closed-loop clients in one mode."""

    mode: str
    users: int

    @property
    def key(self) -> str:
        """The cell's file name stem.

        >>> Cell("attention_zoom", 4).key
        'attention_zoom-u4'
        """
        return f"{self.mode}-u{self.users}"


@dataclass
class JudgeSpec:
    """The optional LLM judge (App. 10 prompt) for answers the rules cannot decide."""

    url: str
    model: str
    api_key: str | None = None
    cache_path: str | None = None


@dataclass
class SweepPlan:
    """Everything the worker needs; written as ``plan.json`` next to the results."""

    base_url: str
    model: str
    benchmark: str  # a ZoomBench-format file or folder (ZoomWorld is written to disk by the CLI first)
    modes: list[str]
    users: list[int]
    duration_s: float
    slo_ms: float
    settings: EvalSettings = field(default_factory=EvalSettings)
    api_key: str | None = None
    limit: int | None = None
    stream: bool = True
    warmup_items: int = 1  # per user, untimed, before each cell's window opens
    warmup_timeout_s: float = 120.0
    drain_timeout_s: float = 120.0  # in-flight items may finish after the window; longer ones are cut off
    timeout_s: float = REQUEST_TIMEOUT_S  # per HTTP request
    judge: JudgeSpec | None = None

    def __post_init__(self) -> None:
        self.modes = canonical_modes(self.modes)  # the API's names, de-duplicated; ValueError for unknown ones
        if not self.users or any(u < 1 for u in self.users):
            raise ValueError("--users needs positive concurrency levels")
        if self.duration_s <= 0 or self.slo_ms <= 0:
            raise ValueError("--duration and --slo-ms must be positive")
        if self.settings.agent_side not in ("client", "server"):
            raise ValueError("agent_side must be 'client' or 'server'")

    def cells(self) -> list[Cell]:
        """Mode by mode, each over the concurrency levels in the order given."""
        return [Cell(mode, users) for mode in self.modes for users in self.users]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepPlan:
        data = dict(data)
        data["settings"] = EvalSettings(**data.get("settings") or {})
        data["judge"] = JudgeSpec(**data["judge"]) if data.get("judge") else None
        return cls(**data)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: str | Path) -> SweepPlan:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
