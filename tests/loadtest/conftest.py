"""Load-test set-up: a small ZoomWorld on disk and a tiny-model plan that keeps every cell to a second or two.

Locust is never imported in the test process (its gevent monkey-patching would reach the uvicorn server the
tests host in a thread): sweeps run in the worker subprocess, as ``zwz bench`` runs them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from zwz.analytics.eval.runner import EvalSettings
from zwz.loadtest.plan import SweepPlan

MODEL = "qwen3_vl"
# Small everything: 12 visual tokens per image, 4 answer tokens, an agent that zooms once (2 model calls).
SETTINGS = EvalSettings(max_tokens=4, max_pixels=128 * 128, agent_max_turns=2, agent_fixed_turns=1, agent_max_tokens=4,
                        agent_side="server")
TINY_ARGS = ["--max-tokens", "4", "--max-pixels", str(128 * 128), "--agent-max-turns", "2", "--agent-fixed-turns", "1",
             "--agent-max-tokens", "4"]

@pytest.fixture(scope="session")
def zoomworld(tmp_path_factory) -> Path:
    """Four ZoomWorld items (one per dimension from counting on) at the smallest size, written to disk."""
    from zwz.distill.zoomworld import write_zoomworld

    folder = tmp_path_factory.mktemp("zoomworld")
    write_zoomworld(folder, 4, seed=0, image_size=(1024, 1024))
    return folder


@pytest.fixture
def tiny_plan(zoomworld):
    """``tiny_plan(url, modes=[...], users=[...], ...)``: a short sweep plan against a test server."""

    def make(url: str, **overrides) -> SweepPlan:
        plan = SweepPlan(base_url=url, model=MODEL, benchmark=str(zoomworld), modes=["single"], users=[1],
                         duration_s=1.5, slo_ms=5000, settings=SETTINGS, warmup_items=1, warmup_timeout_s=60,
                         drain_timeout_s=60, timeout_s=60)
        return replace(plan, **overrides)

    return make


@pytest.fixture(scope="session")
def row():
    """``row(cell, "ITEM")``: the Locust row ``kind name`` of a cell result (name: the cell's mode by default)."""

    def get(cell: dict, kind: str, name: str | None = None) -> dict:
        name = cell["mode"] if name is None else name
        found = [r for r in cell["rows"] if r["type"] == kind and r["name"] == name]
        assert found, f"no {kind} {name} row in {[(r['type'], r['name']) for r in cell['rows']]}"
        return found[0]

    return get
