"""The zoom agent loop driven by a scripted backend, and once end to end against a live zwz server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from zwz.analytics.zoom.agent import AgentResult, run_zoom_agent
from zwz.analytics.zoom.backend import BackendError, BackendReply
from zwz.analytics.zoom.openai_backend import OpenAIBackend
from zwz.analytics.zoom.tool import ZOOM_TOOL, ZOOM_TOOL_NAME

MODEL = "qwen3_vl"  # the live server serves the tiny folder under its name


class ScriptedBackend:
    """Answers with pre-written replies (the last one repeats) and records every request it receives."""

    def __init__(self, *replies: str | BackendReply, fail_at: int | None = None):
        self.replies = [r if isinstance(r, BackendReply) else BackendReply(text=r, prompt_tokens=10, completion_tokens=5,
                                                                          visual_tokens=4) for r in replies]
        self.fail_at = fail_at
        self.requests: list[dict[str, Any]] = []

    async def complete(self, messages, *, tools, sampling) -> BackendReply:
        # Snapshot: the loop keeps appending to the same list.
        self.requests.append({"messages": [dict(m) for m in messages], "tools": tools, "sampling": sampling})
        if self.fail_at is not None and len(self.requests) - 1 == self.fail_at:
            raise BackendError("HTTP 503: busy", status_code=503)
        return self.replies[min(len(self.requests) - 1, len(self.replies) - 1)]


def call(bbox, img_idx=0, label="sign", name=ZOOM_TOOL_NAME) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": {"bbox_2d": bbox, "label": label,
                                                                     "img_idx": img_idx}}) + "\n</tool_call>"


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def run(backend, images, question="What does the sign say?", **kwargs) -> AgentResult:
    return asyncio.run(run_zoom_agent(backend, images, question, **kwargs))


def images_in(message: dict) -> list[Image.Image]:
    return [p["image"] for p in message["content"] if p["type"] == "image"]


# -- valid calls -------------------------------------------------------------------------------------------------
def test_zoom_then_answer():
    image = noise(400, 300)
    first = "The sign is small; let me look closer.\n" + call([100, 200, 600, 700])
    backend = ScriptedBackend(first, "<think>It reads STOP.</think>The sign says STOP.")
    result = run(backend, [image], sampling={"max_tokens": 64})

    assert (result.answer, result.stopped, result.model_calls, result.zoom_calls) == ("The sign says STOP.", "answer", 2, 1)
    assert result.malformed_calls == result.out_of_range_calls == result.forced_calls == 0
    turn = result.turns[0]
    assert turn.crop_box_px == (40, 60, 240, 210) and turn.crop_size == (200, 150)
    assert turn.tool_call["arguments"]["label"] == "sign" and turn.error is None and not turn.forced

    # First request: the image, then the question; the tool is offered; sampling passed through.
    opening = backend.requests[0]
    assert opening["tools"] == [ZOOM_TOOL] and opening["sampling"] == {"max_tokens": 64}
    assert [p["type"] for p in opening["messages"][0]["content"]] == ["image", "text"]
    assert opening["messages"][0]["content"][0]["image"] is image

    # Second request: the reply as the assistant turn, then a user turn holding the crop in a tool_response.
    user, assistant, response = backend.requests[1]["messages"]
    assert assistant == {"role": "assistant", "content": first}
    assert response["role"] == "user"
    assert [p["type"] for p in response["content"]] == ["text", "image", "text"]
    assert response["content"][0]["text"] == "<tool_response>\n" and response["content"][2]["text"] == "\n</tool_response>"
    crop = response["content"][1]["image"]
    assert np.array_equal(pixels(crop), pixels(image)[60:210, 40:240])


def test_img_idx_refers_to_a_previous_crop():
    image = noise(400, 300, seed=1)
    backend = ScriptedBackend(call([0, 0, 500, 500]), call([500, 500, 1000, 1000], img_idx=1), "It is a cat.")
    result = run(backend, [image])

    assert result.zoom_calls == 2 and result.answer == "It is a cat."
    assert [t.crop_box_px for t in result.turns[:2]] == [(0, 0, 200, 150), (100, 75, 200, 150)]
    second_crop = images_in(backend.requests[2]["messages"][-1])[0]
    # The lower-right quarter of the first crop is the original's [75:150, 100:200].
    assert np.array_equal(pixels(second_crop), pixels(image)[75:150, 100:200])


def test_several_calls_in_one_reply():
    image = noise(200, 100, seed=2)
    reply = "Two places.\n" + call([0, 0, 500, 1000], label="left") + "\n" + call([500, 0, 1000, 1000], label="right") + \
        "\n<tool_call>{not json}</tool_call>"
    backend = ScriptedBackend(reply, call([0, 0, 1000, 500], img_idx=2), "Both say 7.")
    result = run(backend, [image])

    assert (result.zoom_calls, result.malformed_calls, result.model_calls) == (3, 1, 3)
    turn = result.turns[0]
    assert [c.crop_box_px for c in turn.calls] == [(0, 0, 100, 100), (100, 0, 200, 100), None]
    assert turn.crop_box_px == (0, 0, 100, 100) and "not valid JSON" in turn.error
    response = backend.requests[1]["messages"][-1]["content"]
    assert [p["type"] for p in response] == ["text", "image", "text", "image", "text"]
    assert response[2]["text"] == "\n</tool_response>\n<tool_response>\n"
    assert response[4]["text"].startswith("\n</tool_response>\n<tool_response>\nError: ")
    assert response[4]["text"].endswith("\n</tool_response>")
    # img_idx 2 is the second crop of the first reply (the right half): its top half.
    third = images_in(backend.requests[2]["messages"][-1])[0]
    assert np.array_equal(pixels(third), pixels(image)[0:50, 100:200])


def test_openai_tool_calls_objects():
    image = noise(300, 300, seed=3)
    arguments = json.dumps({"bbox_2d": [0, 0, 500, 500], "label": "corner", "img_idx": 0})
    parsed = BackendReply(text="", tool_calls=[{"id": "call_1", "type": "function",
                                                "function": {"name": ZOOM_TOOL_NAME, "arguments": arguments}}])
    broken = BackendReply(text="Again.", tool_calls=[{"id": "call_2", "type": "function",
                                                      "function": {"name": ZOOM_TOOL_NAME, "arguments": "{bad"}}])
    backend = ScriptedBackend(parsed, broken, "A corner.")
    result = run(backend, [image])

    assert (result.zoom_calls, result.malformed_calls, result.answer) == (1, 1, "A corner.")
    assert result.turns[0].crop_box_px == (0, 0, 150, 150)
    # Parsed calls go back into the history as Qwen's <tool_call> text, answered by a user tool_response turn.
    assistant = backend.requests[1]["messages"][1]
    assert assistant["content"] == f'<tool_call>\n{{"name": "{ZOOM_TOOL_NAME}", "arguments": {arguments}}}\n</tool_call>'
    assert "Error: tool call arguments are not valid JSON" in backend.requests[2]["messages"][-1]["content"][0]["text"]


def test_blocks_an_endpoint_left_in_the_content_are_counted_too():
    """An endpoint parses the calls it can into tool_calls and leaves the others in the content (zwz, vLLM)."""
    arguments = json.dumps({"bbox_2d": [0, 0, 500, 500], "label": "corner", "img_idx": 0})
    mixed = BackendReply(text="Two looks.\n<tool_call>\n{not json\n</tool_call>", finish_reason="tool_calls",
                         tool_calls=[{"id": "c", "type": "function",
                                      "function": {"name": ZOOM_TOOL_NAME, "arguments": arguments}}])
    result = run(ScriptedBackend(mixed, "Done."), [noise(100, 100)])
    assert (result.zoom_calls, result.malformed_calls, result.answer) == (1, 1, "Done.")
    assert result.turns[0].finish_reason == "tool_calls" and len(result.turns[0].calls) == 2


def test_history_is_sent_and_its_images_are_counted():
    earlier, image = noise(64, 64, seed=1), noise(200, 200, seed=2)
    history = [{"role": "system", "content": "Be brief."},
               {"role": "user", "content": [{"type": "image", "image": earlier}, {"type": "text", "text": "This?"}]},
               {"role": "assistant", "content": "A square."}]
    backend = ScriptedBackend(call([0, 0, 500, 500], img_idx=1), "Red.")
    result = run(backend, [image], history=history)

    for request in backend.requests:
        assert request["messages"][:3] == history
    assert images_in(backend.requests[0]["messages"][3]) == [image]
    # img_idx counts the conversation's images first: 1 is the question's image, not the earlier one.
    assert result.turns[0].crop_box_px == (0, 0, 100, 100) and result.turns[0].calls[0].img_idx == 1
    assert result.image_encodings == 2 + 3 and result.answer == "Red."
    with pytest.raises(ValueError, match="not both"):
        run(ScriptedBackend("x"), [image], history=history, system_prompt="Be long.")


def test_lenient_json_single_quotes_and_trailing_text():
    image = noise(100, 100)
    single = "<tool_call>{'name': 'image_zoom_in_tool', 'arguments': {'bbox_2d': [0, 0, 500, 500], 'label': 'a', 'img_idx': 0}}</tool_call>"
    trailing = '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [0, 0, 500, 500], "label": "a", "img_idx": 0}}}</tool_call>'
    unterminated = '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [0, 0, 500, 500], "label": "a", "img_idx": 0}}'
    result = run(ScriptedBackend(single, trailing, unterminated, "done"), [image])
    assert (result.zoom_calls, result.malformed_calls, result.model_calls) == (3, 0, 4)


# -- refused calls: counted, answered with an error tool_response, the loop goes on ------------------------------
BAD_CALLS = {
    "malformed JSON": ('<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [1, 2, 3</tool_call>',
                       "malformed", "not valid JSON"),
    "wrong tool": (call([0, 0, 500, 500], name="image_search"), "malformed", "unknown tool 'image_search'"),
    "missing field": ('<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [0, 0, 9, 9], "img_idx": 0}}'
                      "</tool_call>", "malformed", "missing required argument(s): label"),
    "three numbers": (call([0, 0, 500]), "malformed", "bbox_2d must be 4 numbers"),
    "strings": (call(["0", "0", "500", "500"]), "malformed", "bbox_2d must be 4 numbers"),
    "fractional img_idx": (call([0, 0, 500, 500], img_idx=0.5), "malformed", "img_idx must be an integer"),
    "no arguments": ('<tool_call>{"name": "image_zoom_in_tool"}</tool_call>', "malformed", "no arguments object"),
    "over 1000": (call([0, 0, 1200, 500]), "out_of_range", "within 0-1000"),
    "negative": (call([-5, 0, 500, 500]), "out_of_range", "within 0-1000"),
    "inverted": (call([600, 100, 200, 500]), "out_of_range", "x1 < x2 and y1 < y2"),
    "empty": (call([300, 300, 300, 600]), "out_of_range", "x1 < x2 and y1 < y2"),
    "bad img_idx": (call([0, 0, 500, 500], img_idx=3), "out_of_range", "img_idx 3 does not exist: images 0-0"),
}


@pytest.mark.parametrize("reply,kind,message", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_refused_calls_are_counted_and_answered(reply, kind, message):
    backend = ScriptedBackend("Zooming. " + reply, "Final answer: B")
    result = run(backend, [noise(64, 64)])

    assert (result.stopped, result.answer, result.model_calls, result.zoom_calls) == ("answer", "Final answer: B", 2, 0)
    assert (result.malformed_calls, result.out_of_range_calls) == ((1, 0) if kind == "malformed" else (0, 1))
    turn = result.turns[0]
    assert message in turn.error and turn.calls[0].error_kind == kind and turn.crop_box_px is None
    response = backend.requests[1]["messages"][-1]
    assert response["role"] == "user" and len(response["content"]) == 1
    text = response["content"][0]["text"]
    assert text.startswith("<tool_response>\nError: ") and message in text and text.endswith("\n</tool_response>")


def test_turn_limit():
    backend = ScriptedBackend("<think>hmm</think>Still unsure.\n" + call([250, 250, 750, 750]))
    result = run(backend, [noise(128, 128)], max_turns=4)

    assert (result.stopped, result.model_calls, len(backend.requests)) == ("turn_limit", 4, 4)
    assert result.answer == "Still unsure."  # the last reply without thinking or tool calls
    assert result.zoom_calls == 4  # the last reply's call is executed too, but never shown to the model
    # The history is re-sent every call: 1 + 2 + 3 + 4 images encoded.
    assert [t.images_sent for t in result.turns] == [1, 2, 3, 4] and result.image_encodings == 10
    assert (result.prompt_tokens, result.completion_tokens, result.visual_tokens) == (40, 20, 16)


def test_image_encodings_with_cached_prefixes_and_several_images():
    cached = BackendReply(text=call([0, 0, 1000, 1000], img_idx=1), images_encoded=1)
    backend = ScriptedBackend(cached, cached, BackendReply(text="done", images_encoded=0))
    result = run(backend, [noise(64, 64), noise(80, 40, seed=5)])
    assert [t.images_sent for t in result.turns] == [2, 3, 4]
    assert result.image_encodings == 2  # what the backend reported, not what was sent
    assert [t.crop_box_px for t in result.turns[:2]] == [(0, 0, 80, 40), (0, 0, 80, 40)]


def test_tiny_boxes_grow_to_32_px():
    image = noise(640, 480, seed=4)
    backend = ScriptedBackend(call([500, 500, 505, 505]), call([995, 995, 1000, 1000]), "ok")
    result = run(backend, [image])

    centre, corner = result.turns[0], result.turns[1]
    # 4 x 3 px -> scaled by 32/3 around its centre (aspect kept, as Qwen-Agent does).
    assert centre.crop_size == (43, 32) and centre.crop_box_px == (300, 226, 343, 258)
    # At the corner the grown box slides inside the image rather than being clipped.
    left, top, right, bottom = corner.crop_box_px
    assert (right, bottom) == (640, 480) and min(corner.crop_size) == 32
    crop = images_in(backend.requests[2]["messages"][-1])[0]
    assert np.array_equal(pixels(crop), pixels(image)[top:bottom, left:right])


def test_client_side_crop_resize():
    backend = ScriptedBackend(call([0, 0, 100, 100]), call([0, 0, 1000, 1000]), "ok")
    result = run(backend, [noise(640, 640)], crop_min_pixels=256 * 32 * 32, crop_max_pixels=300 * 300)
    assert result.turns[0].crop_size == (512, 512)  # 64 x 64 upsampled to Qwen-Agent's floor
    assert result.turns[1].crop_size == (300, 300)  # the whole 640 x 640 original, downscaled


def test_fixed_turns_force_centre_zooms():
    image = noise(256, 256, seed=6)
    backend = ScriptedBackend("I see noise.")
    result = run(backend, [image], fixed_turns=2, max_turns=10)

    assert (result.stopped, result.answer, result.model_calls) == ("answer", "I see noise.", 3)
    assert (result.forced_calls, result.zoom_calls) == (2, 2)
    assert [t.forced for t in result.turns] == [True, True, False]
    assert [t.crop_box_px for t in result.turns[:2]] == [(64, 64, 192, 192), (32, 32, 96, 96)]
    assert [t.tool_call["arguments"]["img_idx"] for t in result.turns[:2]] == [0, 1]
    # The forced call is written into the reply it completes, as if the model had made it.
    assistant = backend.requests[1]["messages"][1]["content"]
    assert assistant.startswith("I see noise.\n<tool_call>\n") and '"img_idx": 0' in assistant
    second = images_in(backend.requests[2]["messages"][-1])[0]
    assert np.array_equal(pixels(second), pixels(image)[96:160, 96:160])  # centre of the centre


def test_fixed_turns_leave_real_calls_alone():
    bad_then_good = ScriptedBackend(call([0, 0, 2000, 10]), call([0, 0, 500, 500]), "done")
    result = run(bad_then_good, [noise(100, 100)], fixed_turns=2)
    # Turn 0: the refused call is counted and a forced zoom added; turn 1: the model's own zoom, nothing forced.
    assert [t.forced for t in result.turns] == [True, False, False]
    assert (result.out_of_range_calls, result.forced_calls, result.zoom_calls) == (1, 1, 2)
    assert [c.error_kind for c in result.turns[0].calls] == ["out_of_range", None]


def test_backend_errors_propagate_with_the_partial_trajectory():
    backend = ScriptedBackend(call([0, 0, 500, 500]), fail_at=1)
    with pytest.raises(BackendError, match="busy") as info:
        run(backend, [noise(64, 64)])
    assert info.value.status_code == 503 and info.value.partial.model_calls == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"run_zoom_agent needs at least one image"):
        run(ScriptedBackend("x"), [])
    with pytest.raises(ValueError, match=r"need max_turns >= 1 and fixed_turns >= 0 \(got 0, 0\)"):
        run(ScriptedBackend("x"), [noise(8, 8)], max_turns=0)


def test_result_is_json_serialisable():
    result = run(ScriptedBackend(call([0, 0, 500, 500]), "<tool_call>{'a': {1, 2}}</tool_call>", "fine"),
                 [noise(64, 64)])
    data = json.loads(json.dumps(result.to_dict()))
    assert data["turns"][0]["crop_box_px"] == [0, 0, 32, 32] and data["malformed_calls"] == 1


# -- against a live zwz server with the tiny random Qwen3-VL ------------------------------------------------------
@pytest.fixture(scope="module")
def server(serve, tiny_models):
    with serve(tiny_models["qwen3_vl"], max_images_per_request=4) as (url, app):
        yield url


def test_live_server_forced_trajectory(server):
    async def go() -> AgentResult:
        async with OpenAIBackend(server + "/v1", MODEL) as backend:
            return await run_zoom_agent(backend, [noise(448, 448, seed=7)], "What is written on the sign?",
                                        fixed_turns=2, max_turns=3, sampling={"max_tokens": 8, "temperature": 0})

    result = asyncio.run(go())
    assert (result.model_calls, result.forced_calls, result.zoom_calls) == (3, 2, 2)
    # Random weights never call the tool: the third reply ends the loop and is the answer.
    assert result.stopped == "answer" and result.answer == result.turns[-1].reply_text.strip()
    assert [t.crop_size for t in result.turns[:2]] == [(224, 224), (112, 112)]
    assert result.image_encodings == 6
    visual = [t.visual_tokens for t in result.turns]
    prompt = [t.prompt_tokens for t in result.turns]
    assert visual[0] > 0 and visual[0] < visual[1] < visual[2]  # each turn re-sends the history plus a crop
    assert prompt[0] < prompt[1] < prompt[2] and all(p > v for p, v in zip(prompt, visual))
    assert all(1 <= t.completion_tokens <= 8 and t.latency_ms > 0 for t in result.turns)
    assert result.total_ms >= sum(t.latency_ms for t in result.turns)
    assert result.visual_tokens == sum(visual) and result.prompt_tokens == sum(prompt)
    json.dumps(result.to_dict())


def test_live_server_tool_modes_give_the_same_prompt(server):
    async def prompt_tokens(mode: str) -> int:
        async with OpenAIBackend(server, MODEL, tool_mode=mode) as backend:
            messages = [{"role": "system", "content": "Look closely."},
                        {"role": "user", "content": [{"type": "image", "image": noise(64, 64)},
                                                     {"type": "text", "text": "Colour?"}]}]
            reply = await backend.complete(messages, tools=[ZOOM_TOOL], sampling={"max_tokens": 1})
            return reply.prompt_tokens

    assert asyncio.run(prompt_tokens("prompt")) == asyncio.run(prompt_tokens("request")) > 0


def test_live_server_errors_raise_backend_error(server):
    async def go(model: str, **kwargs) -> AgentResult:
        async with OpenAIBackend(server, model) as backend:
            return await run_zoom_agent(backend, [noise(64, 64)], "?", sampling={"max_tokens": 2}, **kwargs)

    with pytest.raises(BackendError, match="HTTP 404") as info:
        asyncio.run(go("no-such-model"))
    assert info.value.status_code == 404 and info.value.partial.model_calls == 0
    # The server takes at most 4 images per request: the fifth call of a forced trajectory is refused.
    with pytest.raises(BackendError, match="too_many_images|at most 4") as info:
        asyncio.run(go(MODEL, fixed_turns=10, max_turns=10))
    assert info.value.status_code == 400 and info.value.partial.model_calls == 4
