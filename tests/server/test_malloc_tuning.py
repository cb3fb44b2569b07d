"""``zwz.server.launch.tune_malloc``: glibc's arenas and mmap threshold fixed for a long-running server (issue 11,
defect 9), for the server process and the processes it starts; a value the user set is kept.

Each case runs in a fresh interpreter: mallopt changes the process for good, and the environment is inherited."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_PROBE = """
import json, os
from zwz.server.launch import tune_malloc
first, second = tune_malloc(), tune_malloc()
child = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
print(json.dumps({"first": first, "second": second, "env": child}))
"""


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    out = subprocess.run([sys.executable, "-c", _PROBE], env=clean, capture_output=True, text=True, timeout=300,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tuning_is_applied_once_and_inherited():
    result = _probe()
    assert result["first"] == {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 262144}
    assert result["second"] == {}  # already in place: nothing to do
    assert result["env"] == {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "262144"}


def test_a_value_the_user_set_is_kept():
    result = _probe(MALLOC_ARENA_MAX="4")
    assert result["first"] == {"MALLOC_MMAP_THRESHOLD_": 262144}
    assert result["env"] == {"MALLOC_ARENA_MAX": "4", "MALLOC_MMAP_THRESHOLD_": "262144"}
