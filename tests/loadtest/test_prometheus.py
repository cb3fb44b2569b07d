"""A real Prometheus server (the Debian package) scraping zwz during a short Locust run, queried over its HTTP API;
and the metric reference in README.md checked against what the server exports."""

from __future__ import annotations

import importlib.util
import math
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from zwz.loadtest.bench import run_sweep
from zwz.serve_process import free_port, stop_process
from zwz.server.metrics import ServerMetrics

REPO = Path(__file__).resolve().parents[2]
SCRAPE_CONFIG = REPO / "loadtest" / "prometheus.yml"
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus binary is not installed "
                                      "(Debian: apt-get install -y prometheus)")
needs_locust = pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                  reason="Locust is not installed (pip install 'zwz[bench]')")


def test_every_exported_metric_is_documented_in_the_readme():
    exported = {}
    for family in text_string_to_metric_families(_exposition(ServerMetrics())):
        if family.name.endswith("_created"):  # prometheus_client's creation timestamps, not metrics of ours
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        exported[name] = family.type
    table = dict(re.findall(r"^\| `(zwz_\w+)` \| (\w+) \|", (REPO / "README.md").read_text(), flags=re.M))
    assert exported and {k: v for k, v in table.items() if k in exported} == exported
    assert set(exported) <= set(table), f"undocumented: {sorted(set(exported) - set(table))}"


def _exposition(metrics: ServerMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install -y prometheus)")
def test_the_shipped_scrape_config_is_valid():
    done = subprocess.run([PROMTOOL, "check", "config", str(SCRAPE_CONFIG)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def server(serve, tiny_models):
    with serve(tiny_models["qwen3_vl"]) as (url, app):
        yield url


@pytest.fixture
def prometheus(server, tmp_path):
    """Prometheus scraping the test server every second, with the shipped config's job; yields its URL."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "zwz"]
    job["scrape_interval"] = "1s"
    job["static_configs"] = [{"targets": [urlparse(server).netloc]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: httpx.get(url + "/-/ready", timeout=2).status_code == 200, 60, "Prometheus is not ready")
        yield url
    finally:
        stop_process(proc, grace=15)
        log.close()


def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
            if got:
                return got
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {timeout:.0f} s")
        time.sleep(0.2)


def _query(prometheus: str, promql: str) -> list[float]:
    body = httpx.get(prometheus + "/api/v1/query", params={"query": promql}, timeout=10).json()
    assert body["status"] == "success", body
    return [float(r["value"][1]) for r in body["data"]["result"]]


def _served(server: str, name: str, **labels) -> float:
    for family in text_string_to_metric_families(httpx.get(server + "/metrics").text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


@needs_prometheus
@needs_locust
def test_prometheus_scrapes_zwz_during_a_locust_run(server, prometheus, tiny_plan, tmp_path, row):
    _until(lambda: _query(prometheus, 'up{job="zwz"}') == [1.0], 60, "zwz is not up in Prometheus")
    (cell,) = run_sweep(tiny_plan(server, users=[2], duration_s=3.0), tmp_path, progress=False)
    items = row(cell, "ITEM")["requests"]
    served = _served(server, "zwz_requests_total", mode="single")
    assert served >= items > 0  # the warm-up items are the server's too

    # A scrape after the run holds every request; PromQL over the run gives rates and quantiles.
    _until(lambda: _query(prometheus, 'zwz_requests_total{mode="single"}') == [served], 60,
           "Prometheus never saw the final count")
    assert _query(prometheus, 'increase(zwz_requests_total{mode="single"}[1m])')[0] > 0
    assert _query(prometheus, 'sum(rate(zwz_generation_tokens_total[1m]))')[0] > 0
    for histogram in ("zwz_request_duration_seconds", "zwz_time_to_first_token_seconds"):
        promql = f'histogram_quantile(0.9, sum by (le) (rate({histogram}_bucket{{mode="single"}}[1m])))'
        (p90,) = _query(prometheus, promql)
        assert math.isfinite(p90) and p90 > 0, histogram
    (batch,) = _query(prometheus, "sum(rate(zwz_batch_size_sum[1m])) / sum(rate(zwz_batch_size_count[1m]))")
    assert batch >= 1
    assert _query(prometheus, "zwz_requests_in_flight") == [0.0]
