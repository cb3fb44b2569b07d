"""Resuming: ``kill -9`` of a real ``zwz distill`` subprocess mid-stage, several times, then a rerun whose
output equals an uninterrupted run's; a changed config refuses to resume unless told to."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zwz.distill.config import DistillConfig
from zwz.distill.pipeline import ConfigMismatch, run_local
from zwz.distill.teachers import Endpoint
from zwz.distill.training_data import read_records


def _command(zw_pool: Path, url: str, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "zwz.cli", "distill", "--images", str(zw_pool / "images"),
        "--annotations", str(zw_pool / "items.jsonl"), "--teacher", f"{url}=oracle-1", "--teacher", f"{url}=oracle-2",
        "--question-teacher", f"{url}=oracle", "--student", f"{url}=student", "--max-boxes", "2",
        "--concurrency", "2", "--out", str(out), "--no-progress",
    ]  # fmt: skip


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _run_until(cmd: list[str], journal: Path, n_lines: int, timeout: float = 120) -> bool:
    """Start ``cmd``; SIGKILL it once ``journal`` has ``n_lines`` lines. False if it finished first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if _lines(journal) >= n_lines:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-2000:]
    return False


def test_kill_9_mid_stage_then_rerun_equals_a_clean_run(zw_pool, slow_teacher, teacher, tmp_path):
    reference = tmp_path / "clean"
    subprocess.run(_command(zw_pool, teacher, reference), check=True, capture_output=True)
    out = tmp_path / "killed"
    work = out / "work"
    kills = [(work / "questions.jsonl", 1), (work / "answers.jsonl", 3), (work / "difficulty.jsonl", 1)]
    killed = [_run_until(_command(zw_pool, slow_teacher, out), journal, n) for journal, n in kills]
    assert killed == [True, True, True], "the run finished before it could be killed"
    assert not (out / "train_rl.parquet").exists()
    done = subprocess.run(_command(zw_pool, slow_teacher, out), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    for name in ("train_rl.parquet", "train_trl.parquet"):
        assert read_records(out / name) == read_records(reference / name)
    for journal in work.glob("*.jsonl"):  # no input journalled twice, no torn line left behind
        keys = [json.loads(line)["key"] for line in journal.read_text().splitlines()]
        assert len(keys) == len(set(keys)), journal.name
    assert json.loads((out / "report.json").read_text())["kept"] == json.loads((reference / "report.json").read_text())["kept"]


def test_changed_config_refuses_to_resume(make_config, tmp_path):
    run_local(make_config(student=None), tmp_path)
    with pytest.raises(ConfigMismatch, match="--restart"):
        run_local(make_config(student=None, tau=0.05), tmp_path)
    # runtime-only settings (concurrency, retries) do not count as a change
    run_local(make_config(student=None, concurrency=3), tmp_path)
    report = run_local(make_config(student=None, tau=0.05), tmp_path, force=True)
    assert report["stages"][1]["resumed"] == 2  # --force kept the old journals
    report = run_local(make_config(student=None, tau=0.05), tmp_path, restart=True)
    assert report["stages"][1]["resumed"] == 0


def test_cli_reports_a_config_mismatch_in_one_line(zw_pool, teacher, tmp_path):
    from zwz.cli import main

    args = ["distill", "--images", str(zw_pool / "images"), "--annotations", str(zw_pool / "items.jsonl"),
            "--teacher", f"{teacher}=oracle", "--out", str(tmp_path), "--no-progress", "--max-boxes", "1",
            "--questions", "1"]  # fmt: skip
    assert main(args) == 0
    assert main([*args, "--tau", "0.01"]) == 2
    assert main([*args, "--teacher", "no-model-here"]) == 2


def test_rerun_of_a_finished_run_makes_no_calls(make_config, tmp_path):
    first = run_local(make_config(student=None), tmp_path)
    again = run_local(make_config(student=None), tmp_path)
    assert again["calls"]["requests"] == 0 and again["kept"] == first["kept"]
    assert all(s["resumed"] == s["items_in"] for s in again["stages"])


def test_config_file_and_bad_values(tmp_path, zw_pool):
    with pytest.raises(ValueError, match="--tau"):
        DistillConfig(images="x", annotations="y", teachers=[Endpoint("u", "m")], question_teacher=Endpoint("u", "m"),
                      tau=0)  # fmt: skip
    with pytest.raises(ValueError, match="--annotations"):
        DistillConfig(images="x", teachers=[Endpoint("u", "m")], question_teacher=Endpoint("u", "m"))
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"images": "x", "annotations": "y", "teachers": ["http://h:1=m"], "tau": 0.05}))
    config = DistillConfig.from_dict(DistillConfig.from_file(path))
    assert config.tau == 0.05 and config.question_teacher == Endpoint("http://h:1", "m")
    path.write_text(json.dumps({"images": "x", "teachers": ["http://h:1=m"], "tua": 0.05}))
    with pytest.raises(ValueError, match="unknown config keys: tua"):
        DistillConfig.from_dict(DistillConfig.from_file(path))
