"""Finding the resume point, the curve, and one-line CLI errors (no training here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _checkpoint(root: Path, step: int, complete: bool = True) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "model.safetensors"):
        (folder / name).write_bytes(b"x")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}) if complete else '{"global_')
    return folder


def test_latest_complete_checkpoint_wins(tmp_path):
    from zwz.train.checkpoints import latest_checkpoint

    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, 2)
    best = _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 12, complete=False)  # killed while writing trainer_state.json
    partial = tmp_path / "checkpoint-14"
    partial.mkdir()  # killed before anything was written
    (tmp_path / "final").mkdir()
    assert latest_checkpoint(tmp_path) == best


def test_curve_png_from_log_and_nothing_without_entries(tmp_path):
    from zwz.train.curves import plot_curve

    assert plot_curve([], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    assert plot_curve([{"step": 1, "reward": None}, {"step": 2, "reward": float("nan")}], tmp_path / "n.png") is None
    entries = [{"step": s, "reward": s / 10 if s % 3 else None, "loss": 1 / s} for s in range(1, 11)]
    png = plot_curve(entries, tmp_path / "curve.png", title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["grpo", "--model", "{tmp}/nope", "--data", "{tmp}/d.parquet", "--out", "{tmp}/o"], "no config.json"),
    (["grpo", "--model", "{tmp}", "--data", "{tmp}/d.parquet", "--out", "{tmp}/o", "--num-generations", "1"],
     "num_generations must be >= 2"),
    (["sft", "--model", "{tmp}", "--data", "{tmp}/d.parquet", "--out", "{tmp}/o", "--save-steps", "0"],
     "save_steps must be >= 1"),
    (["grpo", "--model", "{tmp}", "--data", "{tmp}/d.parquet", "--out", "{tmp}/o", "--judge-url", "http://j"],
     "--judge-url and --judge-model go together"),
])
def test_bad_input_is_one_line(argv, message, tmp_path, capsys):
    from zwz.cli import main

    assert main(["train", *[a.format(tmp=tmp_path) for a in argv]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_reward_fn_spec_is_checked(tmp_path):
    from zwz.train.trl_runner import load_reward_fn

    with pytest.raises(ValueError, match="FILE.py:NAME"):
        load_reward_fn("no_colon")
    with pytest.raises(FileNotFoundError, match=r"reward file .*missing\.py does not exist"):
        load_reward_fn(f"{tmp_path}/missing.py:f")
    (tmp_path / "r.py").write_text("def f(prompts, completions, **kw):\n    return [1.0] * len(completions)\n")
    assert load_reward_fn(f"{tmp_path}/r.py:f")([], ["a", "b"]) == [1.0, 1.0]
    with pytest.raises(ValueError, match="no function"):
        load_reward_fn(f"{tmp_path}/r.py:g")
