"""``--backend ray`` on a local Ray (2 CPUs): the same records and funnel as the local backend."""

from __future__ import annotations

import pytest

from zwz.distill.pipeline import run_local
from zwz.distill.training_data import read_records

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _funnel(report):
    return [(s["name"], s["items_in"], s["items_out"], s["drops"]) for s in report["stages"]]


@pytest.mark.slow
def test_ray_gives_the_local_records(local_ray, make_config, tmp_path):
    from zwz.distill.ray_backend import run_ray

    local = run_local(make_config(multiple_choice=True), tmp_path / "local")
    on_ray = run_ray(make_config(multiple_choice=True, backend="ray", ray_actors=1), tmp_path / "ray")
    assert _funnel(on_ray) == _funnel(local) and on_ray["kept"] == local["kept"] > 0
    for name in ("train_rl.parquet", "train_trl.parquet"):
        assert read_records(tmp_path / "ray" / name) == read_records(tmp_path / "local" / name)
    assert on_ray["calls"]["requests"] == local["calls"]["requests"]
    # a rerun resumes from the journals: nothing is asked again
    again = run_ray(make_config(multiple_choice=True, backend="ray", ray_actors=1), tmp_path / "ray")
    assert again["calls"]["requests"] == 0 and _funnel(again) == _funnel(local)
