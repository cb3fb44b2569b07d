"""Durable append-only JSONL journals: what makes every stage of ``zwz distill`` resumable after ``kill -9``.

Each line is one complete JSON object, flushed and fsync'd before the next is written; a line torn by a crash
(the last one, without its newline or not valid JSON) is cut off when the journal is opened again, so a rerun
redoes exactly the work whose record never landed. One writer per file (the pipeline's event loop).

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "j.jsonl")
>>> with Journal(path) as j:
...     j.append({"key": "a", "n": 1})
>>> with open(path, "a") as fh:
...     _ = fh.write('{"key": "b", "n"')        # a torn line, as after kill -9 mid-write
>>> [r["key"] for r in Journal(path).records]
['a']
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["Journal"]


class Journal:
    """An append-only JSONL file; ``records`` holds what was durably written before (in file order)."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: list[dict[str, Any]] = self._recover()
        self._fh = None if readonly else self.path.open("a", encoding="utf-8")

    def _recover(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        records: list[dict[str, Any]] = []
        good = 0  # byte offset after the last complete, valid line
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn write followed by nothing valid: everything after it is cut
            good += len(line)
        if good < len(data) and not self.readonly:  # another process's file is read up to its last whole line
            logger.warning("%s: dropping %d bytes of a torn last record", self.path, len(data) - good)
            with self.path.open("r+b") as fh:
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably (flush + fsync) and remember it."""
        if self._fh is None:
            raise ValueError(f"{self.path} was opened read-only")
        self._fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.records.append(record)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
