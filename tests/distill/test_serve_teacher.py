"""A real ``zwz serve`` (tiny random model) as the answer teacher: the wire works end to end, and random
weights never agree with themselves, so the funnel shows every question dropped at consensus."""

from __future__ import annotations

import httpx
import pytest

from zwz.distill.pipeline import run_local
from zwz.distill.teachers import Endpoint


@pytest.mark.slow
def test_zwz_serve_as_teacher(make_config, serve, tiny_models, tmp_path):
    with serve(tiny_models["qwen2_5_vl"]) as (url, _):
        model = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
        config = make_config(student=None, max_boxes=1, samples_per_teacher=2, max_tokens=8,
                             zoom=1.0)  # unscaled crops: a quarter of the visual tokens on these CPUs
        config.teachers = [Endpoint(url, model)]
        report = run_local(config, tmp_path)
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["questions"]["items_out"] == 4  # the scripted generator: 2 regions x 2 questions
    assert stages["answers"]["items_in"] == 4 and stages["answers"]["items_out"] == 0
    assert stages["answers"]["drops"] == {"no_consensus": 4}
    assert report["calls"]["by_endpoint"][f"{url}={model}"] == 4 * 2 and report["calls"]["failures"] == 0
    assert "no_consensus: 4" in (tmp_path / "report.md").read_text()
