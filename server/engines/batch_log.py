"""The sizes of the batches an engine started: the newest ones kept, the count of all of them."""

from __future__ import annotations

from collections import deque


class BatchLog:
    """Batch sizes by absolute index, keeping only the newest ``keep`` (a server that runs for weeks starts
    millions of batches; issue 11's soak named unbounded records like this one).

    >>> log = BatchLog(keep=3)
    >>> for size in (1, 8, 2, 5):
    ...     log.append(size)
    >>> len(log), log[1:], log[-1]
    (4, [8, 2, 5], 5)
    """

    def __init__(self, keep: int = 4096) -> None:
        self._recent: deque[int] = deque(maxlen=keep)
        self._count = 0

    def append(self, size: int) -> None:
        self._recent.append(size)
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int | slice) -> int | list[int]:
        first = self._count - len(self._recent)  # absolute index of the oldest size kept
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            if start < first and start < stop:
                raise IndexError(f"batch {start} is older than the {len(self._recent)} kept")
            return [self._recent[i - first] for i in range(start, stop, step)]
        i = index + self._count if index < 0 else index
        if not first <= i < self._count:
            raise IndexError(f"batch {index} is not kept (kept: {first}..{self._count - 1})")
        return self._recent[i - first]
