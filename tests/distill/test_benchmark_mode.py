"""``--benchmark``: no box drawn, crop and box kept, a ZoomBench-format folder that ``zwz eval`` loads and runs."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from zwz.distill.benchmark import load_benchmark
from zwz.distill.pipeline import run_local
from zwz.distill.prompts import ANSWER_INSTRUCTION, GROUNDING_SUFFIX


def test_benchmark_folder_loads_and_evaluates(make_config, zw_pool, teacher, tmp_path):
    report = run_local(make_config(benchmark=True, student=None), tmp_path / "run")
    folder = tmp_path / "run" / "benchmark"
    items = load_benchmark(folder)
    assert len(items) == report["kept"] == 4
    for item in items:
        assert GROUNDING_SUFFIX.strip() not in item.prompt and item.prompt.endswith(ANSWER_INSTRUCTION)
        source = Image.open(zw_pool / "images" / item.meta["source_image"]).convert("RGB")
        assert np.array_equal(np.asarray(item.load_image().convert("RGB")), np.asarray(source))  # nothing drawn
        assert item.load_crop().size == (item.bbox[2] - item.bbox[0], item.bbox[3] - item.bbox[1])
        assert item.dimension is not None and not item.multiple_choice
    mc = run_local(make_config(benchmark=True, student=None, multiple_choice=True), tmp_path / "mc")
    mc_items = load_benchmark(tmp_path / "mc" / "benchmark")
    assert len(mc_items) == mc["kept"] and all(i.multiple_choice and len(i.options) == 4 for i in mc_items)

    from zwz.cli import main

    out = tmp_path / "eval"
    # multiple choice, so every reply is decided by rule (no judge needed)
    code = main(["eval", "--base-url", teacher, "--model", "student", "--benchmark", str(tmp_path / "mc" / "benchmark"), "--modes",
                 "single", "regional", "agent", "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 0
    result = json.loads((out / "report.json").read_text())
    easy = sum(i.dimension in ("counting", "ocr") for i in mc_items)
    for mode in ("single", "regional", "agent"):
        summary = result["modes"][mode]
        assert summary["n_items"] == summary["n_decided"] == 4 and summary["n_errors"] == 0
        # the scripted student is right exactly on counting and OCR panels, in every view
        assert summary["accuracy"] == easy / 4
