"""``kill -9`` of a real ``zwz train`` process, then the same command: it resumes at the saved step.

The resumed run must end where an uninterrupted run ends, weight for weight: that holds only when the step
count, optimiser, scheduler, RNG and data position all came back from the checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

STEPS = 4


def _command(model: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "zwz.cli", "train", "sft", "--model", str(model), "--data", str(data),
            "--out", str(out), "--max-steps", str(STEPS), "--save-steps", "2", "--save-total-limit", "10",
            "--max-pixels", str(64 * 64), "--lr", "1e-3", "--no-progress", "--log-level", "info"]


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_kill_9_then_same_command_resumes(tiny_models, train_data, tmp_path):
    import torch

    from zwz.train.checkpoints import is_complete_checkpoint, latest_checkpoint
    from zwz.train.curves import LOG_NAME, read_log

    model, data = tiny_models["qwen3_vl"], train_data["trl"]
    out = tmp_path / "killed"
    proc = subprocess.Popen(_command(model, data, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    try:
        while not is_complete_checkpoint(out / "checkpoint-2"):
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint-2 within 300 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    killed_at = latest_checkpoint(out)
    assert killed_at is not None and not (out / "final").exists(), "the run finished before it was killed"
    saved_step = json.loads((killed_at / "trainer_state.json").read_text())["global_step"]
    assert saved_step < STEPS
    stamp = (killed_at / "trainer_state.json").stat().st_mtime_ns

    resumed = subprocess.run(_command(model, data, out), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {killed_at}" in resumed.stderr
    assert (killed_at / "trainer_state.json").stat().st_mtime_ns == stamp  # not redone from scratch
    state = json.loads((out / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    assert [e["step"] for e in read_log(out / LOG_NAME)] == list(range(1, STEPS + 1))  # each step once

    from zwz.train.options import TrainOptions
    from zwz.train.trl_runner import run_training

    straight = run_training(TrainOptions(method="sft", model=str(model), data=str(data),
                                         output_dir=str(tmp_path / "straight"), max_steps=STEPS, save_steps=2,
                                         max_pixels=64 * 64, learning_rate=1e-3, progress=False))
    again = run_training(TrainOptions(method="sft", model=str(model), data=str(data), output_dir=str(out),
                                      max_steps=STEPS, save_steps=2, max_pixels=64 * 64, learning_rate=1e-3,
                                      progress=False))
    assert not (out / f"checkpoint-{STEPS + 1}").exists()  # a finished run is not trained a step further
    assert _weights(again).keys() == _weights(out / "final").keys()

    a, b = _weights(out / "final"), _weights(straight)
    mismatched = [k for k in a if not torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5)]
    assert not mismatched, f"resumed run differs from an uninterrupted one in {len(mismatched)} tensors"
