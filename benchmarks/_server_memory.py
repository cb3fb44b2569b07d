"""A live server's memory as the soak benchmark reads it: its process and descendants from /proc when it is this
process's child, else ``process_resident_memory_bytes`` from its ``/metrics``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from zwz.loadtest.server_metrics import Samples


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def server_pid() -> int:
    """The ``zwz serve`` child of this process (``serve_subprocess`` started it)."""
    for pid in _children(os.getpid()):
        with contextlib.suppress(OSError):
            if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    raise RuntimeError("no zwz serve child process found")


def server_rss_mb(pid: int | None, samples: Samples | None) -> tuple[float | None, float]:
    """(RSS of the server process, RSS of its descendants) in MB; from /metrics when ``pid`` is unknown."""
    if pid is None:
        value = (samples or {}).get(("process_resident_memory_bytes", ()))
        return (value / 2**20 if value is not None else None), 0.0
    todo, rest = _children(pid), 0.0
    while todo:
        child = todo.pop()
        rest += _rss_mb(child) or 0.0
        todo += _children(child)
    return _rss_mb(pid), rest


def total_rss_mb(pid: int | None, samples: Samples | None) -> float | None:
    """The server's RSS with its descendants', in MB (None when unknown)."""
    rss, children = server_rss_mb(pid, samples)
    return None if rss is None else rss + children
