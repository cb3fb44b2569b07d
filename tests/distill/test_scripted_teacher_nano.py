"""The scripted teacher on ZoomWorld's nano level: it recognises distill's crops and asks the panel's question;
its ``judge`` behaviour decides answers by normalised equality (the stand-in judge of ``zwz train nano``)."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from PIL import Image

from zwz.distill.imaging import zoom_in
from zwz.distill.prompts import question_prompt


@pytest.fixture(scope="module")
def nano_pool(tmp_path_factory):
    from zwz.distill.zoomworld import write_zoomworld

    return write_zoomworld(tmp_path_factory.mktemp("nano"), 24, seed=11, level="nano").parent


def _ask(url: str, model: str, text: str, image: Image.Image | None = None) -> str:
    content: list | str = text
    if image is not None:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = base64.b64encode(buf.getvalue()).decode()
        content = [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
                   {"type": "text", "text": text}]
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    reply.raise_for_status()
    return reply.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("zoom", [1.0, 2.0])
def test_nano_crops_get_their_panels_question(nano_pool, run_app, zoom):
    from zwz.distill.scripted_teacher import scripted_teacher_app

    rows = [json.loads(line) for line in (nano_pool / "items.jsonl").read_text().splitlines()]
    with run_app(scripted_teacher_app(nano_pool / "items.jsonl")) as url:
        for row in rows:
            panel = row["meta"]["panels"][0]
            with Image.open(nano_pool / row["image"]) as im:
                crop = zoom_in(im.convert("RGB"), panel["box"], zoom)
            questions = json.loads(_ask(url, "oracle", question_prompt(1), crop))
            assert questions[0]["question"] == panel["question"]
            assert _ask(url, "oracle", panel["question"], crop) == panel["answer"]


def test_strict_judge(nano_pool, run_app, tmp_path):
    from zwz.distill.scripted_teacher import scripted_teacher_app
    from zwz.scoring.judge import Judge

    with run_app(scripted_teacher_app(nano_pool / "items.jsonl")) as url:
        judge = Judge(url, "judge", cache_path=tmp_path / "cache.jsonl")
        try:
            verdicts = judge.judge_many([("What color?", "red", "Red."), ("What color?", "red", "a red star"),
                                         ("What shape?", "star", "circle")])
        finally:
            judge.close()
    assert verdicts == [True, False, False]
