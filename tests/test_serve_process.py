"""``zwz.serve_process``: a real ``zwz serve`` subprocess on the tiny model comes up, answers and is stopped; a
server that cannot start is one ``ServeError`` line naming its log."""

from __future__ import annotations

import doctest
import signal
import socket
import subprocess
import sys

import httpx
import pytest

import zwz.serve_process
from zwz.serve_process import ServeError, free_port, serve_subprocess, stop_process, wait_until_up


def test_doctests():
    result = doctest.testmod(zwz.serve_process)
    assert result.attempted > 0 and result.failed == 0


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # raises when something holds it


@pytest.mark.slow  # a real `zwz serve`: torch, transformers and the tiny model load in the subprocess
def test_serve_subprocess_serves_and_stops(tiny_models, tmp_path):
    log = tmp_path / "logs" / "server.log"
    with serve_subprocess(tiny_models["qwen3_vl"], log_path=log, api_key="k") as url:
        health = httpx.get(url + "/health", timeout=10).json()
        assert health["random_weights"] is True  # the tiny model
        assert httpx.get(url + "/v1/models", timeout=10).status_code == 401  # the key reached the server
        models = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer k"}, timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["qwen3_vl"]
    assert log.exists()
    with pytest.raises(httpx.ConnectError, match=r"Connection refused"):
        httpx.get(url + "/health", timeout=5)


def test_a_server_that_cannot_start_is_one_line(tmp_path):
    log = tmp_path / "server.log"
    with pytest.raises(ServeError, match=r"zwz serve exited with status 2 at start-up") as info:
        with serve_subprocess(None, log_path=log, extra_args=["--no-such-flag"], startup_timeout=120):
            pass
    message = str(info.value)
    assert message == f"zwz serve exited with status 2 at start-up; see {log}"
    assert "unrecognized arguments: --no-such-flag" in log.read_text()


def test_wait_until_up_gives_up_on_time_and_stop_process_kills(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(ServeError, match="did not come up within 1 s"):
            wait_until_up(f"http://127.0.0.1:{free_port()}/health", proc, timeout=1, what="sleeper")
    finally:
        stop_process(proc, grace=5)
    assert proc.returncode == -signal.SIGTERM  # the sleeper ends on the SIGTERM, within the grace
