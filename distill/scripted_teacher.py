"""A scripted, OpenAI-compatible stand-in teacher that answers from ZoomWorld scenes.

Tests and ``benchmarks/bench_distill.py`` cannot call a cloud VLM, so this small FastAPI app plays one: it
recognises which ZoomWorld image and panel a request shows (nearest thumbnail; the red box and the 2x zoom
barely move a 12 px thumbnail) and answers from the scene's ground truth. The model name picks a behaviour (``oracle-2`` is a second oracle with its own cache keys):

- ``oracle``: right answers; asks the panel's question plus one no one can answer (teachers then disagree);
- ``liar``: answers with one of the panel's wrong options (disagrees with the oracle);
- ``malformed``: question-generation replies that are not JSON; otherwise an oracle;
- ``flaky``: HTTP 500 on the first try of every distinct request, then an oracle (exercises retries);
- ``down``: always HTTP 503;
- ``student``: right only on counting and OCR panels (the difficulty filter drops those);
- ``judge``: a strict stand-in for the LLM judge (App. 10 prompt): ``\\boxed{Yes}`` only when the response
  equals the answer after normalisation. ZoomWorld's answers are single words of a closed vocabulary, so an
  answer the rules do not match is wrong; this makes ``zwz eval``, the GRPO reward and the difficulty filter
  decide every item (``zwz train nano`` uses it).

Crops of either level are recognised (checked on 200 nano crops at zoom 1 and 2: all found, the right panel).

    app = scripted_teacher_app("zoomworld/items.jsonl", latency=0.2)
    uvicorn.run(app, host="127.0.0.1", port=8011)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = ["UNANSWERABLE", "scripted_teacher_app"]

UNANSWERABLE = "What is the serial number printed on the back of this panel?"
EASY_FOR_STUDENT = ("counting", "ocr")
_THUMB = (12, 12)
_FULL_THUMB = (32, 24)
_LABEL = re.compile(r"panel labelled ([A-Z][0-9])")


@dataclass
class _Panel:
    item: int
    label: str
    dimension: str
    question: str
    answer: str
    distractors: list[str]


@dataclass
class _Seen:
    """A recognised request image: a panel's crop, or a full scene (an item index)."""

    panel: _Panel | None = None
    item: int | None = None


def _thumb(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize(size, Image.BILINEAR), dtype=np.float32).ravel()


class _Scenes:
    """Thumbnails of every ZoomWorld image and panel, for nearest-neighbour recognition."""

    def __init__(self, items_jsonl: Path) -> None:
        self.panels: list[_Panel] = []
        panel_thumbs, full_thumbs = [], []
        for item, line in enumerate(l for l in items_jsonl.read_text(encoding="utf-8").splitlines() if l.strip()):
            row = json.loads(line)
            with Image.open(items_jsonl.parent / row["image"]) as im:
                image = im.convert("RGB")
            full_thumbs.append(_thumb(image, _FULL_THUMB))
            for p in row["meta"]["panels"]:
                self.panels.append(_Panel(item, p["label"], p["dimension"], p["question"], p["answer"],
                                          list(p["distractors"])))  # fmt: skip
                panel_thumbs.append(_thumb(image.crop(tuple(p["box"])), _THUMB))
        self.panel_thumbs = np.stack(panel_thumbs)
        self.full_thumbs = np.stack(full_thumbs)

    def panel_of_crop(self, crop: Image.Image) -> _Panel:
        d = np.abs(self.panel_thumbs - _thumb(crop, _THUMB)).mean(axis=1)
        return self.panels[int(d.argmin())]

    def item_of_full(self, image: Image.Image) -> int:
        return int(np.abs(self.full_thumbs - _thumb(image, _FULL_THUMB)).mean(axis=1).argmin())

    def panel_by_label(self, item: int, text: str) -> _Panel | None:
        found = _LABEL.search(text)
        if found is None:
            return None
        return next((p for p in self.panels if p.item == item and p.label == found.group(1)), None)


def _decode(url: str) -> Image.Image:
    data = base64.b64decode(url.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def _parts(body: dict[str, Any]) -> tuple[list[str], str]:
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return [], content
    urls = [p["image_url"]["url"] for p in content if p.get("type") == "image_url"]
    text = "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return urls, text


def _reply(body: dict[str, Any], text: str, prompt: str) -> dict[str, Any]:
    tokens_in, tokens_out = len(prompt.split()) + 256, len(text.split())
    return {
        "id": "chatcmpl-scripted", "object": "chat.completion", "model": body.get("model", ""),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out},
    }  # fmt: skip


_JUDGE_LINES = re.compile(r"^The answer is: (.*)\nThe response is: (.*?)\nPlease check", re.S | re.M)


def _strict_verdict(prompt: str) -> str:
    """The judge prompt's verdict by normalised equality of the answer and the response.

    >>> from zwz.scoring.judge import format_judge_prompt
    >>> _strict_verdict(format_judge_prompt("What color?", "red", "Red.")), _strict_verdict(format_judge_prompt("?", "red", "blue"))
    ('\\\\boxed{Yes}', '\\\\boxed{No}')
    """
    from zwz.scoring import normalize_text

    found = _JUDGE_LINES.search(prompt)
    if found is None:
        return "I cannot tell."  # not the judge prompt: an unparseable verdict, as a confused judge would give
    same = normalize_text(found.group(1)) == normalize_text(found.group(2))
    return "\\boxed{Yes}" if same else "\\boxed{No}"


class _Script:
    def __init__(self, scenes: _Scenes) -> None:
        self.scenes = scenes
        self.seen: set[str] = set()  # request hashes already failed once (flaky)
        self.recognised: dict[bytes, _Seen] = {}

    def image(self, url: str) -> _Seen:
        """What an image shows, remembered by its data URL's hash (the same crop arrives m x k times)."""
        key = hashlib.sha256(url.encode()).digest()
        seen = self.recognised.get(key)
        if seen is None:
            image = _decode(url)
            if image.width < 1000:  # a crop
                seen = _Seen(panel=self.scenes.panel_of_crop(image))
            else:
                seen = _Seen(item=self.scenes.item_of_full(image))
            self.recognised[key] = seen
        return seen

    def panel(self, images: list[_Seen], text: str) -> _Panel | None:
        if images[0].panel is not None:
            return images[0].panel
        return self.scenes.panel_by_label(images[0].item, text)

    def answer(self, behaviour: str, images: list[_Seen], text: str, seed: int) -> str:
        if behaviour == "judge":
            return _strict_verdict(text)
        if "generating Visual Question Answering" in text:
            if behaviour == "malformed":
                return "Sure! Here are three questions: [{question: 'How many?'},"
            panel = self.panel(images, text)
            questions = [panel.question, UNANSWERABLE] if panel else [UNANSWERABLE]
            return json.dumps([{"question": q} for q in questions])
        if "Write three different wrong answers" in text:
            panel = self.panel(images, text)
            return json.dumps(panel.distractors if panel else ["a", "b", "c"])
        if "Is this question unambiguous" in text:
            return "Yes" if _LABEL.search(text) else "No"
        if "only appear once" in text:  # the inventory prompt (zwz.distill.sam3.inventory)
            return json.dumps([f"panel {p.label}" for p in self.scenes.panels if p.item == images[0].item])
        panel = self.panel(images, text)
        if panel is None or panel.question not in text:
            return f"unsure {seed % 7}"  # the unanswerable question: a different guess per sample
        if behaviour == "liar":
            return panel.distractors[seed % 3]
        if behaviour == "student" and panel.dimension not in EASY_FOR_STUDENT:
            return panel.distractors[0]
        return panel.answer


def scripted_teacher_app(items_jsonl: str | Path, *, latency: float = 0.0) -> FastAPI:
    """The stand-in teacher over a ZoomWorld folder's ``items.jsonl`` (written by ``write_zoomworld``)."""
    script = _Script(_Scenes(Path(items_jsonl)))
    app = FastAPI(title="zwz scripted teacher")
    app.state.requests = 0

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        raw = await request.body()
        body = json.loads(raw)
        app.state.requests += 1
        behaviour = str(body.get("model", "oracle")).split("-")[0]  # "oracle-2": a second, separate oracle
        if latency:
            await asyncio.sleep(latency)
        if behaviour == "down":
            return JSONResponse({"error": {"message": "teacher is down", "type": "server_error"}}, status_code=503)
        if behaviour == "flaky":
            digest = hashlib.sha256(raw).hexdigest()
            if digest not in script.seen:
                script.seen.add(digest)
                return JSONResponse({"error": {"message": "transient", "type": "server_error"}}, status_code=500)
        urls, text = _parts(body)
        images = await asyncio.to_thread(lambda: [script.image(u) for u in urls])
        answer = await asyncio.to_thread(script.answer, behaviour, images, text, int(body.get("seed") or 0))
        return JSONResponse(_reply(body, answer, text))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        names = ("oracle", "liar", "malformed", "flaky", "down", "student", "judge")
        return {"object": "list", "data": [{"id": n, "object": "model"} for n in names]}

    return app
