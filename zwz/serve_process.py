"""Starting a ``zwz serve`` subprocess for a run, a demo or a test, and finding a free loopback port.

``zwz eval --serve``, ``zwz bench --serve``, ``zwz ui --with-server``, the tests and the benchmarks all start
their server here, so start-up, the health wait and the shutdown behave the same everywhere.

    with serve_subprocess(None, log_path=out / "server.log") as url:   # the embedded default, zwz-nano
        ...                                                             # http://127.0.0.1:<free port>
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from zwz.defaults import SERVE_STARTUP_TIMEOUT_S

logger = logging.getLogger(__name__)

__all__ = ["ServeError", "free_port", "serve_in_thread", "serve_subprocess", "stop_process", "wait_until_up"]


class ServeError(RuntimeError):
    """The server subprocess exited or did not come up in time; the message is one line naming its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it).

    >>> 1024 <= free_port() < 65536
    True
    """
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_until_up(url: str, proc: subprocess.Popen, *, timeout: float, log_path: Path | None = None,
                  what: str = "zwz serve") -> None:
    """Poll ``url`` until it answers 200; :class:`ServeError` when ``proc`` exits first or ``timeout`` passes.

    The end of ``log_path`` is logged at error level, so the one-line message stays one line.
    """
    see = f"; see {log_path}" if log_path else ""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            if log_path:
                logger.error("end of %s:\n%s", log_path, _tail(log_path))
            raise ServeError(f"{what} exited with status {proc.returncode} at start-up{see}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise ServeError(f"{what} did not come up within {timeout:.0f} s{see}")
        time.sleep(0.25)


def stop_process(proc: subprocess.Popen, *, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns once the process is gone."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def serve_subprocess(model_dir: str | os.PathLike[str] | None = None, *, log_path: str | Path | None = None,
                     api_key: str | None = None, startup_timeout: float = SERVE_STARTUP_TIMEOUT_S,
                     extra_args: list[str] | None = None) -> Iterator[str]:
    """``zwz serve`` on a free loopback port for the duration of the block; yields its base URL.

    ``model_dir`` None serves the embedded default (zwz-nano); the server's output goes to ``log_path`` (default: a
    fresh temporary folder); ``api_key`` is passed as ``ZWZ_API_KEY``. Raises :class:`ServeError` when the
    server exits or is not healthy within ``startup_timeout`` seconds; the server is stopped on leaving.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "zwz.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", *(["--model", str(model_dir)] if model_dir else []), *(extra_args or [])]
    env = dict(os.environ) | ({"ZWZ_API_KEY": api_key} if api_key else {})
    log = Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix="zwz-serve-")) / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    logger.info("starting zwz serve on %s (log: %s)", url, log)
    with log.open("ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until_up(url + "/health", proc, timeout=startup_timeout, log_path=log)
        logger.info("zwz serve is up on %s", url)
        yield url
    finally:
        stop_process(proc)
        logger.info("zwz serve stopped")


@contextmanager
def serve_in_thread(app, *, name: str = "uvicorn", startup_timeout: float = 300.0) -> Iterator[str]:
    """Run an ASGI ``app`` under a real uvicorn server in a daemon thread of this process, on a free loopback
    port; yield its base URL, stop it on exit. ``ServeError`` when it is not up within ``startup_timeout``."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ServeError(f"{name} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
