"""Start ``zwz serve`` in a subprocess for a demo, and stop it afterwards.

    with serve_subprocess(model_dir=None) as url:       # the embedded tiny model
        ...                                             # http://127.0.0.1:<free port>
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

logger = logging.getLogger(__name__)

__all__ = ["free_port", "serve_subprocess"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def serve_subprocess(model_dir: str | None = None, *, api_key: str | None = None, log_path: str | Path | None = None,
                     startup_timeout: float = 900.0) -> Iterator[str]:
    """``zwz serve`` on a free loopback port for the duration of the block; yields its base URL.

    Raises ``RuntimeError`` (with the end of the server's log) when it exits or does not get healthy in time.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "zwz.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning"]
    if model_dir:
        cmd += ["--model", str(model_dir)]
    env = dict(os.environ)
    if api_key:
        env["ZWZ_API_KEY"] = api_key
    log = Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix="zwz-ui-")) / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    logger.info("starting zwz serve on %s (log: %s)", url, log)
    with log.open("ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"zwz serve exited with status {proc.returncode} at start-up; "
                                   f"end of {log}:\n{_tail(log)}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"zwz serve was not healthy within {startup_timeout:.0f} s; see {log}")
            time.sleep(0.25)
        logger.info("zwz serve is up on %s", url)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logger.info("zwz serve stopped")
