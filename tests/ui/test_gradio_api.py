"""The app's named API endpoints through ``gradio_client``, on the real demo command: ``zwz ui --with-server``
starts ``zwz serve`` with the tiny model, and stops it when the UI is stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
import pytest

from zwz.serve_process import free_port, stop_process, wait_until_up


@pytest.fixture(scope="module")
def demo_ui(tiny_models, tmp_path_factory):
    """``zwz ui --with-server --model <tiny>`` in a subprocess; yields (UI URL, process, log path)."""
    port = free_port()
    log = tmp_path_factory.mktemp("zwz-ui") / "ui.log"
    cmd = [sys.executable, "-m", "zwz.cli", "ui", "--with-server", "--model", str(tiny_models["qwen3_vl"]),
           "--port", str(port), "--zoomworld", "3", "--max-tokens", "4"]
    # TMPDIR: the demo server's log (a temporary folder) lands in this test's tmp dir too.
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(log.parent)}
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, timeout=180, log_path=log, what="zwz ui")
        yield url, proc, log
    finally:
        stop_process(proc)  # SIGTERM: the UI stops its server too


def test_named_endpoints_run_a_comparison(demo_ui, images, tmp_path):
    from gradio_client import Client, handle_file

    url, _, _ = demo_ui
    client = Client(url, verbose=False)
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/compare", "/load_example", "/list_examples", "/server_status"} <= set(named)

    line, fixed_turns = client.predict(0, api_name="/server_status")
    assert "qwen3_vl" in line and "random weights" in line and fixed_turns == 1

    _, question, box, reference, note, _ = client.predict("zoomworld:0:1", api_name="/load_example")
    assert "panel labelled" in question and re.fullmatch(r"\d+,\d+,\d+,\d+", box) and "zw0-00001" in note

    # An example, by key, with no image sent.
    out = client.predict(None, "zoomworld:0:1", question, box, reference, 4, 3, 1, None, 256 * 256,
                         api_name="/compare")
    summary = out[-1]
    assert "5 of 5 views answered" in out[0], out[0]
    assert summary["reference"] == reference and summary["box"] == [int(v) for v in box.split(",")]
    for view in ("single", "regional", "agent", "attention_zoom"):
        assert summary["views"][view]["verdict"] in ("correct", "incorrect", "unjudged"), summary["views"][view]
    assert summary["views"]["regional"]["images"][0].startswith("the example's crop")

    # An uploaded image, with a typed box.
    path = tmp_path / "photo.png"
    images.noise(160, 120).save(path)
    out = client.predict(handle_file(str(path)), None, "What is it?", "10,10,90,70", "", 4, 3, 1, None, 0,
                         api_name="/compare")
    views = out[-1]["views"]
    assert out[-1]["image_size"] == [160, 120]
    assert all(views[v].get("answer") is not None for v in ("single", "regional", "agent", "attention_zoom")), views
    assert 0.0 <= views["heatmap"]["coverage"] <= 1.0


def test_stopping_the_ui_stops_its_server(demo_ui):
    from gradio_client import Client

    url, proc, log = demo_ui
    line, _ = Client(url, verbose=False).predict(0, api_name="/server_status")
    server = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
    assert httpx.get(server + "/health").status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    with pytest.raises(httpx.ConnectError, match=r"Connection refused"):
        httpx.get(server + "/health", timeout=5)
