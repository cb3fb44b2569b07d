"""UI test set-up: the Gradio app in-process on a free loopback port, a headless Debian Chromium through
Playwright, and screenshots in the test's tmp dir (also copied to ``$ZWZ_UI_ARTIFACTS`` when that is set, so
CI can keep them).

Chromium is the distribution's package (``apt-get install -y chromium``), never Playwright's own download.
"""

from __future__ import annotations

import os

# Before gradio is imported anywhere: no telemetry, no version check.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from zwz.serve_process import free_port

ARTIFACTS = os.environ.get("ZWZ_UI_ARTIFACTS")  # a folder to keep the screenshots in; tests write only tmp dirs
CHROMIUM = os.environ.get("ZWZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-default-apps", "--disable-extensions", "--disable-sync",
    "--no-first-run", "--metrics-recording-only", "--mute-audio",
]  # fmt: skip


@pytest.fixture(scope="module")
def zwz_server(serve, tiny_models) -> Iterator[str]:
    """A live zwz server with the tiny random Qwen3-VL (served as "qwen3_vl"), shared by a module's tests."""
    with serve(tiny_models["qwen3_vl"]) as (url, _):
        yield url


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nothing listens on (a server that stopped)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def ui_app() -> Callable:
    """``with ui_app(server_url, **build_kwargs) as url:`` serves the UI in this process (a thread)."""
    from zwz.ui.app import build_app, launch

    @contextmanager
    def _run(server_url: str, **kwargs) -> Iterator[str]:
        demo = build_app(server_url, **kwargs)
        url = launch(demo, host="127.0.0.1", port=free_port(), block=False)
        try:
            yield url.rstrip("/")
        finally:
            demo.close()

    return _run


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium; the UI tests are skipped only when the browser itself is absent.

    Module-scoped: Playwright's sync API keeps an event loop running in this thread while it is open, which
    would stop other modules' ``asyncio.run``.
    """
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium; or set ZWZ_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page that may only talk to loopback; requests elsewhere are refused and recorded."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    outside: list[str] = []

    def route(r):
        host = r.request.url.split("/")[2].split(":")[0] if "://" in r.request.url else ""
        if r.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.outside_requests = outside
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def screenshot(tmp_path) -> Callable:
    """``screenshot(page, name)``: a full-page PNG in the test's tmp dir (and ``$ZWZ_UI_ARTIFACTS``)."""

    def _shot(page, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if ARTIFACTS:
            Path(ARTIFACTS).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(ARTIFACTS) / path.name)
        return path

    return _shot
