"""The attention zoom: its driver over a scripted backend, the request bodies, the modules' doctests, and one
trajectory, the same wherever it runs (inside the server, from ``zwz eval``'s client, over ``OpenAIBackend``),
against a live zwz server."""

from __future__ import annotations

import asyncio
import doctest
import importlib
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from zwz.analytics.zoom.attention_zoom import ZOOMED_VIEW_NOTE, AttentionZoomResult, run_attention_zoom
from zwz.analytics.zoom.backend import BackendError, BackendReply, user_turn
from zwz.analytics.zoom.requests import AttentionMapReply, ZoomModeIgnored, reply_trajectory, zoom_chat_body

MODEL = "qwen3_vl"


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


class ScriptedZoomBackend:
    """Answers the map with a fixed box and the chat with a fixed reply; records what it was asked."""

    def __init__(self, box: Any = (10, 20, 110, 70), *, images_encoded: int | None = None,
                 fail_answer: bool = False) -> None:
        self.box, self.images_encoded, self.fail_answer = box, images_encoded, fail_answer
        self.maps: list[tuple[Image.Image, str]] = []
        self.chats: list[dict[str, Any]] = []

    async def attention_map(self, image: Image.Image, question: str) -> AttentionMapReply:
        self.maps.append((image, question))
        return AttentionMapReply(self.box, visual_tokens=48)

    async def complete(self, messages, *, tools, sampling) -> BackendReply:
        self.chats.append({"messages": messages, "tools": tools, "sampling": sampling})
        if self.fail_answer:
            raise BackendError("HTTP 503: busy", status_code=503)
        return BackendReply("It says STOP.", prompt_tokens=90, completion_tokens=4, visual_tokens=60,
                            finish_reason="stop", images_encoded=self.images_encoded)


def run(backend, messages, **kwargs) -> AttentionZoomResult:
    return asyncio.run(run_attention_zoom(backend, messages, **kwargs))


def test_map_crop_answer():
    image = noise(200, 100)
    backend = ScriptedZoomBackend()
    result = run(backend, [user_turn([image], "What does the sign say?")], sampling={"max_tokens": 8})

    assert backend.maps == [(image, "What does the sign say?")]
    (chat,) = backend.chats
    assert chat["tools"] is None and chat["sampling"] == {"max_tokens": 8}
    (turn,) = chat["messages"]
    parts = turn["content"]
    assert [p["type"] for p in parts] == ["image", "image", "text"] and parts[0]["image"] is image
    assert np.array_equal(np.asarray(parts[1]["image"]), np.asarray(image.crop((10, 20, 110, 70))))
    assert parts[2]["text"] == f"{ZOOMED_VIEW_NOTE}\nWhat does the sign say?"

    assert (result.answer, result.finish_reason, result.zoom_box, result.crop_size) == (
        "It says STOP.", "stop", (10, 20, 110, 70), (100, 50))
    # The map's prefill encodes the image once; the answer encodes the image and the crop.
    assert (result.model_calls, result.image_encodings) == (2, 3)
    assert [(t.kind, t.images_sent, t.visual_tokens) for t in result.turns] == [
        ("attention_map", 1, 48), ("answer", 2, 60)]
    assert (result.prompt_tokens, result.completion_tokens, result.visual_tokens) == (90, 4, 60)
    assert result.to_dict()["mode"] == "attention_zoom" and result.total_ms >= sum(t.latency_ms for t in result.turns)


def test_the_conversation_is_kept_and_every_image_counted():
    first, second, earlier = noise(160, 120, 1), noise(80, 80, 2), noise(64, 64, 3)
    history = [{"role": "system", "content": "Be brief."}, user_turn([earlier], "And this?"),
               {"role": "assistant", "content": "A square."}]
    backend = ScriptedZoomBackend()
    result = run(backend, [*history, user_turn([first, second], "Which sign is red?")])
    messages = backend.chats[0]["messages"]
    assert messages[:3] == history
    # The map and the crop are of the last turn's first image (the one the note names).
    assert backend.maps[0][0] is first
    assert [p.get("image") for p in messages[3]["content"][:2]] == [first, second]
    assert result.image_encodings == 1 + 4 and result.turns[1].images_sent == 4

    cached = run(ScriptedZoomBackend(images_encoded=1), [user_turn([first], "?")])
    assert cached.image_encodings == 1 + 1  # a backend that caches image prefixes says what it encoded


def test_the_suggested_box_is_clipped_to_the_image():
    result = run(ScriptedZoomBackend(box=[-5.2, 40.4, 900, 99.6]), [user_turn([noise(200, 100)], "?")])
    assert result.zoom_box == (0, 40, 200, 100) and result.crop_size == (200, 60)


@pytest.mark.parametrize("box", [(50, 50, 50, 90), (300, 0, 400, 10), "the middle", None])
def test_an_unusable_box_is_a_backend_error_with_the_partial_trajectory(box):
    with pytest.raises(BackendError, match="suggested_box") as info:
        run(ScriptedZoomBackend(box=box), [user_turn([noise(200, 100)], "?")])
    assert info.value.partial.model_calls == 1 and info.value.partial.zoom_box is None


def test_a_failed_answer_keeps_the_partial_trajectory():
    with pytest.raises(BackendError, match="busy") as info:
        run(ScriptedZoomBackend(fail_answer=True), [user_turn([noise(200, 100)], "?")])
    partial = info.value.partial
    assert partial.model_calls == 1 and partial.zoom_box == (10, 20, 110, 70) and partial.answer == ""


@pytest.mark.parametrize("messages, message", [
    ([user_turn([], "No picture here.")], "needs an image in the last user message"),
    ([user_turn([Image.new("RGB", (8, 8))], "?"), {"role": "assistant", "content": "It is"}], "must end with a user"),
    ([], "must end with a user"),
])
def test_what_cannot_be_zoomed(messages, message):
    with pytest.raises(ValueError, match=message):
        run(ScriptedZoomBackend(), messages)


def test_request_bodies():
    messages = [{"role": "user", "content": "hi"}]
    agent = zoom_chat_body("agent", messages, model="m", max_tokens=512, temperature=0.0, max_turns=6,
                           fixed_turns=1, stream=True)
    assert agent == {"model": "m", "messages": messages, "max_tokens": 512, "temperature": 0.0, "zwz_mode": "agent",
                     "zwz_agent": {"max_turns": 6, "fixed_turns": 1}, "stream": True,
                     "stream_options": {"include_usage": True}}
    assert zoom_chat_body("attention_zoom", messages) == {"messages": messages, "zwz_mode": "attention_zoom"}
    with pytest.raises(ValueError, match="unknown zoom mode 'single'"):
        zoom_chat_body("single", messages)
    with pytest.raises(ZoomModeIgnored, match="zwz_mode='agent'"):
        reply_trajectory({"choices": []}, "agent")


@pytest.mark.parametrize("module", ["backend", "crop", "tool", "agent", "openai_backend", "requests",
                                    "attention_zoom"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(f"zwz.analytics.zoom.{module}"))
    assert result.failed == 0 and (result.attempted > 0 or module == "agent")


# -- one trajectory wherever it runs, against a live zwz server ----------------------------------------------
@pytest.fixture(scope="module")
def server(serve, tiny_models):
    with serve(tiny_models["qwen3_vl"]) as (url, app):
        yield url


def test_server_and_client_side_count_the_same(server):
    """The same item through the server's mode and through ``zwz eval``'s client-side driver: the same map, box,
    prompt and greedy answer, and the same model_calls and image_encodings."""
    from zwz.analytics.eval.client import Endpoint
    from zwz.analytics.eval.runner import EvalSettings, ModeRunner
    from zwz.analytics.zoom.openai_backend import OpenAIBackend
    from zwz.distill.benchmark import BenchItem

    buf = io.BytesIO()
    noise(320, 240, seed=21).save(buf, "PNG")  # lossless: the client's crop has the server's pixels
    item = BenchItem("z0", buf.getvalue(), None, "What is written on the small sign?", "STOP")

    async def outcomes():
        out = {}
        async with Endpoint(server, MODEL) as endpoint:
            for side in ("server", "client"):
                runner = ModeRunner(endpoint, EvalSettings(max_tokens=6, agent_side=side))
                out[side], _ = await runner.answer("attention_zoom", item)
        async with OpenAIBackend(server, MODEL) as backend:  # the driver over plain HTTP, outside the harness
            out["openai"] = await run_attention_zoom(backend, [user_turn([item.load_image()], item.prompt)],
                                                     sampling={"max_tokens": 6, "temperature": 0.0})
        return out

    got = asyncio.run(outcomes())
    server_side, client_side = got["server"].trajectory, got["client"].trajectory
    over_http = got["openai"].to_dict()
    for trajectory in (server_side, client_side, over_http):
        assert AttentionZoomResult(**{k: v for k, v in trajectory.items() if k != "turns"}).mode == "attention_zoom"
    keys = ("model_calls", "image_encodings", "zoom_box", "crop_size", "prompt_tokens", "visual_tokens", "answer")
    as_lists = [{k: list(v) if isinstance(v, tuple) else v for k, v in t.items() if k in keys}
                for t in (server_side, client_side, over_http)]
    assert as_lists[0] == as_lists[1] == as_lists[2]
    assert (server_side["model_calls"], server_side["image_encodings"]) == (2, 3)
    assert (got["server"].model_calls, got["server"].image_encodings) == (got["client"].model_calls,
                                                                          got["client"].image_encodings) == (2, 3)
    assert [t["kind"] for t in server_side["turns"]] == [t["kind"] for t in client_side["turns"]] == [
        "attention_map", "answer"]
    assert server_side["turns"][0]["visual_tokens"] == client_side["turns"][0]["visual_tokens"] > 0
    assert got["server"].prediction == got["client"].prediction == server_side["answer"]
