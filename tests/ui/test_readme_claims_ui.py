"""The README's ``zwz ui`` flags, on the real command (a subprocess) in a real headless Chromium: the server from
``ZWZ_SERVER``, its key from ``--api-key``, the model from ``--model-name`` (the UI then never asks the server
for its list) and the examples of a ``--benchmark`` file, run end to end against a live zwz server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from zwz.serve_process import free_port, stop_process, wait_until_up

KEY = "ui-key"
NAME = "zwz-tiny"


@pytest.fixture(scope="module")
def keyed_server(tiny_models, run_app) -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """A zwz server that wants ``KEY`` and serves the tiny model as ``NAME``; yields (URL, the (path,
    authorization) of every request it got)."""
    from zwz.server.api.app import create_app
    from zwz.server.launch import build_engine
    from zwz.server.settings import ServerSettings

    settings = ServerSettings(model=str(tiny_models["qwen3_vl"]), engine="transformers", api_key=KEY,
                              served_model_name=NAME)
    app = create_app(settings, build_engine(settings))
    seen: list[tuple[str, str | None]] = []

    async def recording(scope, receive, send):  # only watches: every request goes on to the real app
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            auth = headers.get(b"authorization")
            seen.append((scope["path"], auth.decode() if auth else None))
        await app(scope, receive, send)

    with run_app(recording) as url:
        yield url, seen


@pytest.fixture(scope="module")
def benchmark_file(tmp_path_factory, images) -> Path:
    folder = tmp_path_factory.mktemp("ui-bench")
    images.noise(320, 240, seed=9).save(folder / "shelf.png")
    row = {"id": "shelf-1", "image": "shelf.png", "prompt": "What colour is the label on the top shelf?",
           "answer": "red", "dimension": "color", "bbox": [40, 30, 200, 150]}
    path = folder / "items.jsonl"
    path.write_text(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="module")
def ui_command(keyed_server, benchmark_file, tmp_path_factory) -> Iterator[str]:
    """``ZWZ_SERVER=<server> zwz ui --api-key KEY --model-name NAME --benchmark FILE``; yields the UI's URL."""
    server_url, _ = keyed_server
    port = free_port()
    log = tmp_path_factory.mktemp("zwz-ui-flags") / "ui.log"
    cmd = [sys.executable, "-m", "zwz.cli", "ui", "--api-key", KEY, "--model-name", NAME, "--benchmark",
           str(benchmark_file), "--zoomworld", "0", "--port", str(port), "--max-tokens", "4"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZWZ_")} | {
        "ZWZ_SERVER": server_url, "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(log.parent)}
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, timeout=180, log_path=log, what="zwz ui")
        yield url
    finally:
        stop_process(proc)


def test_server_variable_key_model_name_and_benchmark_flags(browser, keyed_server, ui_command, page,
                                                          screenshot):  # browser first: no Chromium, no UI
    from playwright.sync_api import expect

    server_url, seen = keyed_server
    page.goto(ui_command)
    status_line = page.locator("#zwz-server")
    expect(status_line).not_to_contain_text("checking", timeout=30_000)
    line = status_line.inner_text()
    assert f"Server {server_url} · model {NAME} · transformers engine" in line, line  # ZWZ_SERVER, the key

    page.locator("#zwz-example input").click()
    page.locator("[data-testid=dropdown-option]", has_text="benchmark · shelf-1 · color · open").click()
    expect(page.locator("#zwz-status")).to_contain_text("Loaded shelf-1")
    field = lambda elem_id: page.locator(f"#{elem_id} textarea, #{elem_id} input").first  # noqa: E731
    assert field("zwz-question").input_value() == "What colour is the label on the top shelf?"
    assert field("zwz-box").input_value() == "40,30,200,150"
    assert field("zwz-reference").input_value() == "red"
    page.locator("#zwz-run").click()
    expect(page.locator("#zwz-status")).to_contain_text("Done in", timeout=90_000)
    screenshot(page, "ui-flags-benchmark-run")
    status = page.locator("#zwz-status").inner_text()
    assert "5 of 5 views answered" in status, status
    for panel in ("#zwz-single", "#zwz-regional", "#zwz-agent", "#zwz-attention-zoom"):
        text = page.locator(panel).inner_text()
        assert "Answer:" in text and ("✗ incorrect" in text or "? unjudged" in text or "✓ correct" in text), text
    assert page.outside_requests == []

    paths = {path for path, _ in seen}
    assert {"/health", "/v1/chat/completions", "/v1/zoom/attention"} <= paths
    assert "/v1/models" not in paths  # --model-name: the UI asked for that model, not for the list
    assert {auth for path, auth in seen if path.startswith("/v1/")} == {f"Bearer {KEY}"}
