"""The engines' batch-size record stays bounded while indexing like the list it replaced."""

from __future__ import annotations

import doctest

import pytest

from zwz.server.engines import batch_log
from zwz.server.engines.batch_log import BatchLog


def test_doctest():
    assert doctest.testmod(batch_log).failed == 0


def test_keeps_the_newest_and_counts_all():
    log = BatchLog(keep=4)
    for size in range(1, 11):
        log.append(size)
    assert len(log) == 10
    assert log[6:] == [7, 8, 9, 10]
    assert log[8:9] == [9]
    assert log[-1] == 10 and log[6] == 7
    assert log[10:] == []  # nothing newer yet, as a list slice past the end
    assert len(log._recent) == 4  # bounded however many batches run


def test_older_batches_than_kept_are_an_error_not_a_wrong_answer():
    log = BatchLog(keep=2)
    for size in (3, 4, 5):
        log.append(size)
    with pytest.raises(IndexError, match="batch 0 is older than the 2 kept"):
        log[0:]
    with pytest.raises(IndexError, match=r"batch 0 is not kept \(kept: 1..2\)"):
        log[0]
    assert log[1:] == [4, 5]
