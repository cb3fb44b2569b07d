"""Fixtures for the R2I pipeline tests: a small ZoomWorld pool and a live scripted stand-in teacher."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

POOL_IMAGES = 2
POOL_SIZE = (1024, 1024)  # ZoomWorld's minimum: the smallest images the tests can make


@pytest.fixture(scope="session")
def zw_pool(tmp_path_factory) -> Path:
    """A 2-image ZoomWorld folder (images/, crops/, items.jsonl with every panel as a native box)."""
    from zwz.distill.zoomworld import write_zoomworld

    return write_zoomworld(tmp_path_factory.mktemp("zw-pool"), POOL_IMAGES, seed=7, image_size=POOL_SIZE).parent


@pytest.fixture(scope="session")
def teacher(zw_pool, run_app) -> Iterator[str]:
    """The scripted teacher (all behaviours: oracle, liar, malformed, flaky, down, student), served live."""
    from zwz.distill.scripted_teacher import scripted_teacher_app

    with run_app(scripted_teacher_app(zw_pool / "items.jsonl")) as url:
        yield url


@pytest.fixture(scope="session")
def slow_teacher(zw_pool, run_app) -> Iterator[str]:
    """The same teacher at 150 ms per call, so a subprocess can be killed mid-stage."""
    from zwz.distill.scripted_teacher import scripted_teacher_app

    with run_app(scripted_teacher_app(zw_pool / "items.jsonl", latency=0.15)) as url:
        yield url


@pytest.fixture()
def make_config(zw_pool, teacher) -> Callable:
    """``make_config(teachers=["oracle-1", "oracle-2"], student="student", **overrides)`` -> DistillConfig."""
    from zwz.distill.config import DistillConfig
    from zwz.distill.teachers import Endpoint

    def _make(teachers=("oracle-1", "oracle-2"), question="oracle", student="student", url=None, **overrides):
        base = url or teacher
        settings = {"max_boxes": 2, "progress": False, "retry_backoff": 0.01, **overrides}
        return DistillConfig(
            images=str(zw_pool / "images"), annotations=str(zw_pool / "items.jsonl"),
            teachers=[Endpoint(base, t) for t in teachers], question_teacher=Endpoint(base, question),
            student=Endpoint(base, student) if student else None, **settings,
        )  # fmt: skip

    return _make
