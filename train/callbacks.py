"""A transformers ``TrainerCallback`` that keeps the JSONL log and redraws the curve at every checkpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from zwz.train.curves import CURVE_NAME, LOG_NAME, plot_curve

logger = logging.getLogger(__name__)

__all__ = ["CurveCallback"]

# The end-of-run summary (train_runtime, train_loss, ...) is not a step.
_SUMMARY_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"}


def _is_step_entry(entry: dict[str, Any]) -> bool:
    return "step" in entry and not (_SUMMARY_KEYS & entry.keys())


class CurveCallback(TrainerCallback):
    """Append each logged step to ``<out>/train_log.jsonl``; draw ``<out>/training_curve.png`` on save and at the end.

    On resume the log is rewritten from the checkpoint's ``log_history``, so steps logged after the last
    checkpoint of a killed run (which the resumed run repeats) are not counted twice.
    """

    def __init__(self, output_dir: str | Path, title: str) -> None:
        self.output_dir = Path(output_dir)
        self.log_path = self.output_dir / LOG_NAME
        self.title = title

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            entries = [e for e in state.log_history if _is_step_entry(e)]
            self.log_path.write_text("".join(json.dumps(e) + "\n" for e in entries))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        entry = {"step": state.global_step, **logs}
        if _is_step_entry(entry):
            with self.log_path.open("a") as fh:
                fh.write(json.dumps(entry) + "\n")

    def _draw(self, state) -> None:
        if state.is_world_process_zero:
            entries = [e for e in state.log_history if _is_step_entry(e)]
            png = plot_curve(entries, self.output_dir / CURVE_NAME, title=self.title)
            if png is not None:
                logger.info("training curve: %s", png)

    def on_save(self, args, state, control, **kwargs):
        self._draw(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._draw(state)
