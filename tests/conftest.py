"""Shared test set-up.

Triton's interpreter must be switched on before any ``@triton.jit`` decorator runs, so it is set here,
at collection time, on machines without a CUDA device.
"""

from __future__ import annotations

import os

try:
    import torch

    _HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover - torch is a hard dependency
    _HAS_CUDA = False

if not _HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import base64
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# -------------------------------------------------------------------- tests write only under pytest's tmp dirs
_CHECKOUT = Path(__file__).resolve().parents[1]
_NOT_TEST_OUTPUT = {".venv", "__pycache__", ".pytest_cache"}  # the environment and Python's own caches
_ALLOW_ENV = "ZWZ_ALLOW_CHECKOUT_WRITES"


def _checkout_entries() -> set[str] | None:
    """``git status`` lines for the checkout (new, changed and ignored paths); None outside a git checkout."""
    import subprocess

    if not (_CHECKOUT / ".git").exists():
        return None
    out = subprocess.run(["git", "status", "--porcelain", "--ignored=matching", "--untracked-files=all"],
                         cwd=_CHECKOUT, capture_output=True, text=True, check=True).stdout
    entries = set()
    for line in out.splitlines():
        parts = Path(line[3:].rstrip("/")).parts
        if not any(p in _NOT_TEST_OUTPUT or p.endswith(".egg-info") for p in parts):
            entries.add(line)
    return entries


def _asked_for_paths() -> list[str]:
    """Checkout paths a developer asked the tests to write (the UI's docs screenshot, a screenshot folder)."""
    asked = [os.environ.get("ZWZ_UI_ARTIFACTS", "")]
    if os.environ.get("ZWZ_UI_DOCS_SCREENSHOT"):
        asked.append(str(_CHECKOUT / "docs" / "ui.png"))
    return [os.path.relpath(Path(a).resolve(), _CHECKOUT) for a in asked if a]


def pytest_sessionstart(session) -> None:
    session.config.stash[_before_key] = _checkout_entries()


def pytest_sessionfinish(session, exitstatus) -> None:
    """Fail the session if the tests left anything new in the checkout (they must write under tmp dirs)."""
    before = session.config.stash.get(_before_key, None)
    if before is None or os.environ.get(_ALLOW_ENV):
        return
    asked = _asked_for_paths()
    new = sorted(line for line in _checkout_entries() - before
                 if not any(line[3:] == a or line[3:].startswith(a.rstrip("/") + "/") for a in asked))
    if not new:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = ("write under tmp_path instead; set "
               f"{_ALLOW_ENV}=1 where others edit the same checkout meanwhile:\n  " + "\n  ".join(new))
    if reporter is not None:
        reporter.write_sep("=", "tests wrote into the checkout", red=True)
        reporter.write_line(message)
    else:
        print("tests wrote into the checkout: " + message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


_before_key = pytest.StashKey[set | None]()


@pytest.fixture(scope="session", autouse=True)
def _hypothesis_storage_in_tmp(tmp_path_factory) -> None:
    """Hypothesis (under schemathesis) keeps its example database and caches in ``.hypothesis/`` of the working
    directory by default: send them to a pytest tmp dir."""
    import importlib.util

    if importlib.util.find_spec("hypothesis") is not None:
        from hypothesis.configuration import set_hypothesis_home_dir

        set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Both tiny families, built once per test session (a few seconds)."""
    from zwz.tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    return {family: build_tiny_model(family, root / family) for family in ("qwen2_5_vl", "qwen3_vl")}


@contextmanager
def live_server(app) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server on a free loopback port; yield its base URL."""
    from zwz.serve_process import serve_in_thread

    with serve_in_thread(app, startup_timeout=300) as url:  # vLLM loads and profiles during start-up
        yield url


async def poll_until(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Poll ``condition`` on the running event loop until it holds; fail after ``timeout`` seconds (generous:
    the machine may be loaded; a bound, never a measurement)."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"{what}: not within {timeout:.0f} s"
        await asyncio.sleep(0.01)


@pytest.fixture(scope="session")
def until() -> Callable:
    """``await until(condition, what)``: :func:`poll_until`, for tests that wait on an engine's state."""
    return poll_until


@pytest.fixture(scope="session")
def run_app() -> Callable:
    """``with run_app(app) as url: ...`` runs any ASGI app under a live uvicorn server."""
    return live_server


@pytest.fixture(scope="module")
def serve_engine(request) -> str:
    """The engine ``serve`` starts: transformers, unless a test module parametrizes this fixture, as in

        pytestmark = pytest.mark.parametrize("serve_engine", ["transformers", "vllm"], indirect=True)

    The vLLM case is skipped, saying why, where vLLM is not installed.
    """
    engine = getattr(request, "param", "transformers")
    if engine == "vllm":
        from zwz.server.engines.vllm_setup import INSTALL_HINT, vllm_importable

        if not vllm_importable():
            pytest.skip(f"vLLM is not installed here ({INSTALL_HINT})")
    return engine


@pytest.fixture(scope="module")
def serve(serve_engine) -> Callable:
    """``with serve(model_dir, **settings) as (url, app): ...`` starts a zwz server on ``serve_engine``."""
    from zwz.server.api.app import create_app
    from zwz.server.launch import build_engine
    from zwz.server.settings import ServerSettings

    @contextmanager
    def _serve(model_dir: Path, **overrides):
        settings = ServerSettings(model=str(model_dir), engine=serve_engine, **overrides)
        app = create_app(settings, build_engine(settings))
        with live_server(app) as url:
            yield url, app

    return _serve


def png_data_url(width: int = 448, height: int = 448, color=(200, 30, 30), fmt: str = "PNG") -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, fmt)
    mime = {"PNG": "png", "JPEG": "jpeg", "TIFF": "tiff", "WEBP": "webp"}[fmt]
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode()


def noise_image(width: int = 448, height: int = 448, seed: int = 0):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def encoded_data_url(image, fmt: str = "PNG") -> str:
    """A data URL of ``image`` encoded as ``fmt`` (any PIL format, unlike zwz.endpoint.image_data_url's choice)."""
    buf = io.BytesIO()
    image.save(buf, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="session")
def images():
    """Helpers to build image payloads in tests."""

    class Images:
        png_data_url = staticmethod(png_data_url)
        noise = staticmethod(noise_image)
        data_url = staticmethod(encoded_data_url)

    return Images


class JudgeStandIn:
    """A stand-in for an external judge LLM behind an OpenAI-compatible ``/v1/chat/completions`` (served live).

    It answers from the response text it is asked about: "yes..." -> ``\\boxed{Yes}``, "no..." -> ``\\boxed{No}``
    (after a thinking block holding a decoy ``\\boxed{Yes}``), "error..." -> HTTP 500, "badreq..." -> HTTP 400,
    "flaky..." -> 503 once then Yes, anything else -> a reply without a verdict. It counts the calls per
    response text and keeps every request.
    """

    def __init__(self) -> None:
        import asyncio
        import re
        from collections import Counter

        from fastapi import FastAPI
        from fastapi.responses import JSONResponse

        self.calls: Counter[str] = Counter()
        self.requests: list[dict] = []
        self.app = FastAPI()

        @self.app.post("/v1/chat/completions")
        async def chat(body: dict, authorization: str | None = fastapi_header()) -> JSONResponse:
            self.requests.append({"body": body, "auth": authorization})
            prompt = body["messages"][-1]["content"]
            response = re.search(r"^The response is: (.*)$", prompt, re.M).group(1)
            self.calls[response] += 1
            if response.startswith("error"):
                return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, status_code=500)
            if response.startswith("badreq"):
                return JSONResponse({"error": {"message": "bad", "type": "invalid_request_error"}}, status_code=400)
            if response.startswith("flaky") and self.calls[response] == 1:
                return JSONResponse({"error": {"message": "busy"}}, status_code=503)
            if response.startswith(("yes", "flaky")):
                content = "The response names the same colour. \\boxed{Yes}"
            elif response.startswith("no"):
                content = "<think>\\boxed{Yes}?</think> They differ. \\boxed{No}"
            else:
                content = "I am not sure what to say."
            await asyncio.sleep(0.01)
            message = {"role": "assistant", "content": content}
            return JSONResponse({"id": "chatcmpl-test", "object": "chat.completion", "created": 0,
                                 "model": body["model"],
                                 "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})


def fastapi_header():
    from fastapi import Header

    return Header(default=None)


@pytest.fixture(scope="session")
def judge_llm() -> Iterator[JudgeStandIn]:
    """A live judge stand-in (:class:`JudgeStandIn`); its ``url`` is the ``.../v1`` base to give a Judge."""
    llm = JudgeStandIn()
    with live_server(llm.app) as url:
        llm.url = url + "/v1"
        yield llm
