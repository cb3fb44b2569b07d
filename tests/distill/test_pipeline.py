"""The R2I pipeline end to end on ZoomWorld with live scripted teachers: exact funnel counts, the written
parquet, and what disagreeing, malformed, flaky and dead teachers do."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from zwz.distill.pipeline import run_local
from zwz.distill.prompts import GROUNDING_SUFFIX, MC_INSTRUCTION
from zwz.distill.training_data import read_records

EASY = ("counting", "ocr")  # what the scripted student gets right


def _panels(zw_pool) -> list[list[dict]]:
    """Per image, the two smallest panels (the run keeps --max-boxes 2, smallest first)."""
    rows = [json.loads(l) for l in (zw_pool / "items.jsonl").read_text().splitlines()]
    area = lambda p: (p["box"][2] - p["box"][0]) * (p["box"][3] - p["box"][1])  # noqa: E731
    return [sorted(r["meta"]["panels"], key=area)[:2] for r in rows]


def _funnel(report) -> dict[str, tuple[int, int, dict]]:
    return {s["name"]: (s["items_in"], s["items_out"], s["drops"]) for s in report["stages"]}


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory, zw_pool, teacher):
    from zwz.distill.config import DistillConfig
    from zwz.distill.teachers import Endpoint

    config = DistillConfig(images=str(zw_pool / "images"), annotations=str(zw_pool / "items.jsonl"),
                           teachers=[Endpoint(teacher, "oracle-1"), Endpoint(teacher, "oracle-2")],
                           question_teacher=Endpoint(teacher, "oracle"), student=Endpoint(teacher, "student"),
                           max_boxes=2, progress=False)  # fmt: skip
    out = tmp_path_factory.mktemp("oracle-run")
    return out, run_local(config, out)


def test_funnel_counts_are_exact(oracle_run, zw_pool):
    _, report = oracle_run
    panels = _panels(zw_pool)
    n_panels = sum(len(json.loads(l)["meta"]["panels"]) for l in (zw_pool / "items.jsonl").read_text().splitlines())
    easy = sum(p["dimension"] in EASY for image in panels for p in image)
    funnel = _funnel(report)
    assert funnel["pool"] == (2, 2, {})
    assert funnel["propose"] == (2, 4, {"over_max_boxes": n_panels - 4})
    assert funnel["zoom"] == (4, 4, {})
    # The oracle asks each panel's question and one nobody can answer (answers scatter): half fail consensus.
    assert funnel["questions"] == (4, 8, {})
    assert funnel["answers"] == (8, 4, {"no_consensus": 4})
    assert funnel["ground"] == (4, 4, {})
    assert funnel["difficulty"] == (4, 4 - easy, {"too_easy": easy} if easy else {})
    assert report["kept"] == 4 - easy
    # 4 question calls + 8 x 8 answers + 4 x 4 student answers
    assert report["calls"]["requests"] == 4 + 64 + 16 and report["calls"]["retries"] == 0
    for name in ("report.md", "report.json", "funnel.png", "contact_sheet.png"):
        assert (oracle_run[0] / name).stat().st_size > 0


def test_parquet_layouts_and_grounding(oracle_run, zw_pool):
    out, report = oracle_run
    kept_panels = [p for image in _panels(zw_pool) for p in image if p["dimension"] not in EASY]
    rl = pq.read_table(out / "train_rl.parquet")
    assert rl.schema.field("images").type == pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    assert rl.schema.field("reward_model").type == pa.struct([("style", pa.string()), ("ground_truth", pa.string())])
    rows = rl.to_pylist()
    assert len(rows) == len(kept_panels) == report["kept"]
    answers = {p["question"]: p["answer"] for p in kept_panels}
    for row in rows:
        question = row["extra_info"]["question"]
        assert question.endswith(GROUNDING_SUFFIX) and row["prompt"][0]["content"] == "<image>" + question
        assert row["reward_model"]["ground_truth"] == answers[question[: -len(GROUNDING_SUFFIX)]]
    for record in read_records(out / "train_trl.parquet"):
        image = np.asarray(Image.open(io.BytesIO(record.images[0])).convert("RGB"))
        source = np.asarray(Image.open(zw_pool / "images" / record.extra["source_image"]).convert("RGB"))
        x1, y1, x2, y2 = (int(round(v)) for v in record.box)
        rx1, ry1, rx2, ry2 = record.extra["region_box"]
        # the drawn box is the region grown 5% per side, 5 px wide, pure red; nothing else changed
        assert x1 == round(rx1 - 0.05 * (rx2 - rx1)) and y2 == round(ry2 + 0.05 * (ry2 - ry1))
        assert (image[y1 : y1 + 5, x1 + 10 : x2 - 10] == (255, 0, 0)).all()
        assert (image[(y1 + y2) // 2, x1 : x1 + 5] == (255, 0, 0)).all()
        mask = np.ones(image.shape[:2], bool)
        mask[y1:y2, x1:x2] = False
        assert (image[mask] == source[mask]).all()


def test_disagreeing_teachers_fail_consensus(make_config, tmp_path):
    report = run_local(make_config(teachers=("oracle", "liar"), student=None), tmp_path / "a")
    assert _funnel(report)["answers"] == (8, 0, {"no_consensus": 8})  # 4 of 8 agree at best: < 7/8
    # at the official code's looser threshold the oracle's 4 of 8 are still short of 0.75; at 0.5 they pass
    report = run_local(make_config(teachers=("oracle", "liar"), student=None, consensus=0.5), tmp_path / "b")
    assert _funnel(report)["answers"] == (8, 4, {"no_consensus": 4})


def test_malformed_question_json_is_counted_and_dropped(make_config, tmp_path):
    report = run_local(make_config(question="malformed", student=None), tmp_path)
    assert _funnel(report)["questions"] == (4, 0, {"malformed_json": 4})
    assert report["kept"] == 0 and not pq.read_table(tmp_path / "train_rl.parquet").num_rows


def test_flaky_teacher_is_retried_and_dead_teacher_reported(make_config, tmp_path):
    report = run_local(make_config(teachers=("flaky", "oracle"), student=None), tmp_path / "flaky")
    assert _funnel(report)["answers"] == (8, 4, {"no_consensus": 4})
    assert report["calls"]["retries"] == 8 * 4  # every distinct flaky call fails once
    report = run_local(make_config(teachers=("oracle", "down"), student=None, max_retries=1), tmp_path / "down")
    assert _funnel(report)["answers"] == (8, 0, {"teacher_error": 8})
    assert report["calls"]["failures"] == 8 * 4


def test_validation_and_multiple_choice_layout(make_config, tmp_path):
    report = run_local(make_config(student=None, multiple_choice=True, validate=True), tmp_path)
    assert _funnel(report)["validate"] == (4, 4, {})  # the scripted validator accepts labelled questions
    assert _funnel(report)["multiple_choice"] == (4, 4, {})
    for record in read_records(tmp_path / "train_rl.parquet"):
        lines = record.question.split("\n")
        assert lines[-1] == MC_INSTRUCTION and [l[:3] for l in lines[-5:-1]] == ["A. ", "B. ", "C. ", "D. "]
        assert record.options[ord(record.answer) - ord("A")] == record.extra["answer_text"]
        assert GROUNDING_SUFFIX.strip() in record.question


@pytest.mark.parametrize("variant", ["bbox_in_question", "no_box"])
def test_ablation_variants_draw_nothing(make_config, zw_pool, tmp_path, variant):
    report = run_local(make_config(student=None, variant=variant), tmp_path)
    records = read_records(tmp_path / "train_rl.parquet")
    assert len(records) == report["kept"] == 4
    for record in records:
        source = (zw_pool / "images" / record.extra["source_image"]).read_bytes()
        assert record.images[0] == source and record.variant == variant  # the full image, untouched
        assert record.box == record.extra["region_box"]
        if variant == "no_box":
            assert record.question == record.extra["question_raw"]
        else:
            coords = ", ".join(str(int(round(v))) for v in record.box)
            assert f"inside the bounding box [{coords}] in the image" in record.question


def test_unreadable_and_small_images_are_counted_not_fatal(make_config, zw_pool, tmp_path):
    import shutil

    folder = tmp_path / "pool"
    shutil.copytree(zw_pool / "images", folder)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    Image.new("RGB", (640, 480)).save(folder / "small.png")
    config = make_config(student=None, max_boxes=1, questions_per_crop=1)
    config.images = str(folder)
    report = run_local(config, tmp_path / "out")
    assert _funnel(report)["pool"] == (4, 2, {"too_small": 1, "unreadable": 1})
    assert _funnel(report)["propose"][:2] == (2, 2)
