"""``zwz train nano`` at its CI size: every stage for real (pools, model, teacher, R2I distill behind a live
``zwz serve``, student SFT + GRPO, eval, card, eval-compare), killed with SIGKILL in the teacher's training and
resumed by the same command."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zwz.train import nano

ARMS = ("bbox_in_image", "no_box")


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "zwz.cli", "train", "nano", "--out", str(out), "--scale", "ci", "--threads", "1",
            "--arms", *ARMS]


def _wait_for(path_test, proc: subprocess.Popen, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path_test():
        assert proc.poll() is None, f"exited before {what}:\n" + proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.1)


@pytest.mark.slow
def test_the_recipe_runs_end_to_end_and_resumes_after_kill_9(tmp_path):
    from safetensors import safe_open

    from zwz.model_card import read_card

    out = tmp_path / "nano"
    proc = subprocess.Popen(_command(out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:  # killed once the teacher's SFT has saved a checkpoint: the rerun resumes inside that stage
        _wait_for(lambda: any((out / "runs" / "teacher").glob("checkpoint-*/trainer_state.json")), proc,
                  "teacher checkpoint")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (out / "stages" / "teacher.json").exists(), "the teacher finished before the kill"

    done = subprocess.run(_command(out), capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    printed = done.stdout
    for stage in ("pools", "model"):
        assert f"{stage}: done before" in printed
    assert "teacher: done before" not in printed

    stages = json.loads((out / "timings.json").read_text())["stages"]
    assert set(stages) == {"pools", "model", "teacher", "compare"} | {
        f"{arm}/{s}" for arm in ARMS for s in ("distill", "student", "eval", "card")}
    results = json.loads((out / "results.json").read_text())
    assert set(results) == set(ARMS)
    for arm in ARMS:
        acc = results[arm]
        assert {"single", "regional", "agent", "zooming_gap", "coverage", "box_area_share"} <= set(acc)
        assert all(0.0 <= acc[m] <= 1.0 for m in ("single", "regional", "agent"))
        assert 0.0 < acc["box_area_share"] < 0.10  # the evidence is a small region
        student = out / "arms" / arm / "models" / "student"
        card = read_card(student)
        assert card is not None and f"variant {arm}" in card["trained_on"] and card["arm"] == arm
        with safe_open(str(student / "model.safetensors"), "pt") as f:  # shipped as bfloat16
            assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"BF16"}
    commands = (out / "commands.sh").read_text()
    for arm in ARMS:
        assert f"--variant {arm}" in commands
    assert (out / "compare" / "compare.md").is_file() and (out / "compare" / "global_accuracy.png").is_file()
    # distill never saw the labels: its annotations carry boxes and referents only
    for line in (out / "pools" / "distill" / "boxes.jsonl").read_text().splitlines():
        for panel in json.loads(line)["meta"]["panels"]:
            assert set(panel) == {"box", "label", "dimension"}

    again = subprocess.run(_command(out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("done before") == len(stages)


def _args(**over) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    nano.add_arguments(p)
    argv = ["--out", "x"] + [a for k, v in over.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    return p.parse_args(argv)


def test_a_folder_made_with_other_settings_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    nano._check_recipe(out, nano.recipe_from_args(_args(scale="ci")))
    args = _args(scale="ci", teacher_steps=7)
    args.out = str(out)
    assert nano.run_from_args(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "teacher_steps 40 -> 7" in err and "use another --out" in err


@pytest.mark.parametrize("over, message", [({"teacher_steps": 0}, "teacher-steps must be >= 1"),
                                           ({"grpo_generations": 1}, "grpo-generations >= 2")])
def test_bad_settings_are_one_line_errors(tmp_path, capsys, over, message):
    args = _args(scale="ci", **over)
    args.out = str(tmp_path / "run")
    assert nano.run_from_args(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "run").exists()  # nothing written for a recipe that cannot run


def test_pool_seeds_are_disjoint_across_recipe_seeds():
    from zwz.train.nano_stages import pool_seeds

    seen = [s for seed in range(50) for s in pool_seeds(seed).values()]
    assert len(seen) == len(set(seen))
