"""Finding the checkpoint a killed run resumes from.

transformers writes ``checkpoint-<step>/`` folders; a run killed while saving can leave one half-written,
so only folders holding every file a resume reads count.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["checkpoint_step", "is_complete_checkpoint", "latest_checkpoint"]

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# What ``Trainer._load_from_checkpoint`` / ``_load_optimizer_and_scheduler`` / ``_load_rng_state`` read.
_REQUIRED = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors")


def checkpoint_step(folder: str | Path) -> int | None:
    """The step in a ``checkpoint-<step>`` folder name, else None.

    >>> checkpoint_step("runs/x/checkpoint-40"), checkpoint_step("runs/x/final")
    (40, None)
    """
    found = _CHECKPOINT_RE.match(Path(folder).name)
    return int(found.group(1)) if found else None


def is_complete_checkpoint(folder: str | Path) -> bool:
    folder = Path(folder)
    if not all((folder / name).is_file() for name in _REQUIRED):
        return False
    if not any((folder / name).is_file() for name in _WEIGHTS):
        return False
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except ValueError:
        return False
    return any(folder.glob("rng_state*.pth"))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete ``checkpoint-<step>`` folder with the highest step under ``output_dir``, or None."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = sorted(((checkpoint_step(p), p) for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None),
                   reverse=True)
    for step, folder in found:
        if is_complete_checkpoint(folder):
            return folder
        logger.warning("skipping incomplete checkpoint %s", folder)
    return None
