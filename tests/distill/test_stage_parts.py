"""The R2I building blocks on their own: prompts and strict parsing, consensus, grounding pixels and strings,
the durable journal, box filtering and native annotations, the teacher client's retry rules."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from PIL import Image

from zwz.distill.consensus import consensus
from zwz.distill.grounding import ground_image, ground_question, multiple_choice_question, shuffle_options
from zwz.distill.imaging import zoom_in
from zwz.distill.journal import Journal
from zwz.distill.prompts import (
    GROUNDING_SUFFIX, MalformedReply, parse_distractors, parse_questions, question_prompt,
)  # fmt: skip
from zwz.distill.proposals import NativeBox, filter_boxes, load_annotations
from zwz.distill.teachers import Endpoint, TeacherError, TeacherPool


def test_question_prompt_is_the_papers():
    prompt = question_prompt(3)
    assert prompt.startswith("You are an expert specialist in generating Visual Question Answering (VQA) datasets.")
    assert "generate three high-quality and valid questions" in prompt
    assert "return an empty JSON list: []" in prompt and prompt.count('{"question": "Question') == 3


NOT_JSON, NO_QUESTION = r"not JSON \(Expecting value at char 0\)", r'item 0 has no non-empty "question" string'


@pytest.mark.parametrize("reply, message", [
    ("Here you go: [{question: 'x'}]", NOT_JSON), ('{"question": "x"}', r"expected a JSON list, got dict"),
    ('[{"question": ""}]', NO_QUESTION), ('[{"question": 3}]', NO_QUESTION), ("", NOT_JSON), ('["x"]', NO_QUESTION),
])  # fmt: skip
def test_malformed_questions_raise(reply, message):
    with pytest.raises(MalformedReply, match=message):
        parse_questions(reply, 3)


def test_questions_parse_strictly():
    assert parse_questions("[]", 3) == []
    text = '```json\n[{"question": "A?"}, {"question": "A?"}, {"question": "B?"}, {"question": "C?"}, {"question": "D?"}]\n```'
    assert parse_questions(text, 3) == ["A?", "B?", "C?"]  # duplicates removed, at most K
    with pytest.raises(MalformedReply, match="3 distinct"):
        parse_distractors('["red", "Red", "blue"]', "red")


def test_consensus_threshold_and_failures():
    assert consensus(["7"] * 7 + ["8"], 8, 0.875).answer == "7"  # 7/8 > 6/8
    assert consensus(["7"] * 6 + ["8", "9"], 8, 0.875).answer is None  # 6/8 is not > 6/8
    assert consensus(["7"] * 6 + ["8", "9"], 8, 0.75).answer == "7"  # the official code's >= 0.75
    assert consensus(["seven", "7", "7.", "The answer is 7"] * 2, 8, 0.875).answer == "7"
    failed = consensus(["7"] * 6 + [None, None], 8, 0.875)
    assert failed.answer is None and failed.agreement == 0.75  # failed calls count against consensus


def test_red_box_pixels_and_suffix():
    image = Image.new("RGB", (400, 300), (10, 200, 10))
    drawn, box = ground_image(image, (100, 100, 200, 150), expand=0.05, width=5)
    assert box == (95.0, 97.5, 205.0, 152.5)
    px = np.asarray(drawn)
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    assert (px[y1 : y1 + 5, x1:x2] == (255, 0, 0)).all() and (px[y1:y2, x2 - 5 : x2] == (255, 0, 0)).all()
    assert (px[y1 + 5, x1 + 5] == (10, 200, 10)).all() and (px[y1 - 1, x1] == (10, 200, 10)).all()
    assert ground_question("Q?", "bbox_in_image", box) == (
        "Q?\n\nOnly focus on the objects inside the red bounding box in the image to answer this question.")
    assert ground_question("Q?", "no_box", box) == ground_question("Q?", "direct", box) == "Q?"
    assert GROUNDING_SUFFIX.startswith("\n\n")


def test_zoom_is_2x_lanczos():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    crop = zoom_in(image, (10, 20, 30, 50))
    assert crop.size == (40, 60)
    assert np.array_equal(np.asarray(crop), np.asarray(image.crop((10, 20, 30, 50)).resize((40, 60), Image.LANCZOS)))


def test_multiple_choice_is_seeded_and_laid_out():
    options, letter = shuffle_options("red", ["blue", "green", "pink"], "s1")
    assert sorted(options) == ["blue", "green", "pink", "red"] and options["ABCD".index(letter)] == "red"
    assert shuffle_options("red", ["blue", "green", "pink"], "s1") == (options, letter)
    letters = {shuffle_options("red", ["blue", "green", "pink"], f"s{i}")[1] for i in range(40)}
    assert letters == set("ABCD")  # the answer is not always in one place
    text = multiple_choice_question("Q?", options)
    assert text.splitlines()[1:] == [f"{l}. {o}" for l, o in zip("ABCD", options)] + [
        "Answer with the option's letter from the given choices."]


def test_journal_survives_a_torn_line(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append({"key": "a"})
        journal.append({"key": "b"})
    with path.open("ab") as fh:
        fh.write(b'{"key": "c", "out": [')
    journal = Journal(path)
    assert [r["key"] for r in journal.records] == ["a", "b"]
    journal.append({"key": "c"})
    journal.close()
    assert [json.loads(l)["key"] for l in path.read_text().splitlines()] == ["a", "b", "c"]


def test_box_filter_and_coco_annotations(tmp_path):
    coco = {
        "images": [{"id": 1, "file_name": "sub/a.jpg", "width": 1000, "height": 1000}],
        "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "sign"}],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 40]},
            {"image_id": 1, "category_id": 2, "bbox": [100, 100, 40, 40]},
            {"image_id": 1, "category_id": 2, "bbox": [300, 300, 40, 40]},  # two dogs: not unique
            {"image_id": 1, "category_id": 3, "bbox": [0, 0, 500, 500]},  # 25% of the image: > tau
            {"image_id": 1, "category_id": 3, "bbox": [0, 0, 2, 50], "iscrowd": 1},
        ],
    }  # fmt: skip
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    boxes = load_annotations(path)["a.jpg"]
    kept, drops = filter_boxes(boxes, (1000, 1000), tau=0.1)
    assert [(b.label, b.box) for b, _ in kept] == [("cup", (10.0, 10.0, 60.0, 50.0))]
    assert dict(drops) == {"not_unique": 2, "too_large": 1}
    kept, drops = filter_boxes([NativeBox((0, 0, 3, 30), "thin")], (100, 100), 0.1)
    assert not kept and dict(drops) == {"box_too_small": 1}
    with pytest.raises(ValueError, match="COCO"):
        (tmp_path / "bad.json").write_text("[]")
        load_annotations(tmp_path / "bad.json")


def test_teacher_retries_only_what_is_worth_it(run_app, tmp_path):
    app, seen = FastAPI(), []

    @app.post("/v1/chat/completions")
    async def chat(body: dict) -> JSONResponse:
        seen.append(body["model"])
        if body["model"] == "bad" or (body["model"] == "busy" and seen.count("busy") < 3):
            status = 400 if body["model"] == "bad" else 429
            return JSONResponse({"error": {"message": f"no {body['model']}"}}, status_code=status)
        return JSONResponse({"choices": [{"message": {"content": "ok"}}], "usage": {"prompt_tokens": 5}})

    async def go(url):
        async with TeacherPool(cache_path=tmp_path / "calls.jsonl", retry_backoff=0.0, max_retries=3) as pool:
            reply = await pool.chat(Endpoint(url, "busy"), [], "hi")
            with pytest.raises(TeacherError, match="HTTP 400: no bad"):
                await pool.chat(Endpoint(url, "bad"), [], "hi")
            cached = await pool.chat(Endpoint(url, "busy"), [], "hi")
            return reply, cached, pool.stats

    with run_app(app) as url:
        reply, cached, stats = asyncio.run(go(url))
        assert reply.text == "ok" and not reply.cached and cached.cached
        assert seen == ["busy", "busy", "busy", "bad"]  # 429 retried twice; 400 never
        assert stats.retries == 2 and stats.failures == 1 and stats.prompt_tokens == 5

        async def again():
            async with TeacherPool(cache_path=tmp_path / "calls.jsonl") as pool:
                return (await pool.chat(Endpoint(url, "busy"), [], "hi")).cached

        assert asyncio.run(again()) and len(seen) == 4  # the on-disk cache answers a new process


def test_consensus_asks_the_judge_what_rules_cannot_decide(judge_llm, tmp_path):
    from zwz.scoring.judge import Judge, JudgeError

    judge = Judge(judge_llm.url, "judge", cache_path=tmp_path / "judge.jsonl", retry_backoff=0.0)
    # the stand-in says Yes to replies starting "yes", No to "no", and gives no verdict otherwise
    result = consensus(["red", "yes crimson", "yes scarlet", "no blue"], 4, 0.75, question="Colour?", judge=judge)
    assert result.answer == "red" and result.agreement == 0.75
    assert result.clusters == [["red", "yes crimson", "yes scarlet"], ["no blue"]]
    # A failed judge is an error the answer stage counts, never a silent "no".
    with pytest.raises(JudgeError, match=r"judge reply has no \\boxed\{Yes\|No\}"):
        consensus(["red", "maybe pink"], 2, 0.5, question="Colour?", judge=judge)
