"""Per-request modes on chat completions: the same weights answer single-pass, agent and attention-zoom."""

from __future__ import annotations

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

MODEL = "qwen3_vl"
QUESTION = "What is written on the small sign?"


@pytest.fixture(scope="module")
def server(serve, tiny_models):
    with serve(tiny_models["qwen3_vl"]) as (url, app):
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="x", max_retries=0)


def messages_for(url: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": QUESTION}]}]


def requests_by_mode(server) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(httpx.get(server + "/metrics").text):
        for sample in family.samples:
            if sample.name == "zwz_requests_total":
                out[sample.labels["mode"]] = sample.value
    return out


def test_attention_zoom_mode(server, client, images):
    picture = images.noise(640, 480, seed=5)
    before = requests_by_mode(server)
    r = client.chat.completions.create(model=MODEL, messages=messages_for(images.data_url(picture)), max_tokens=6,
                                       extra_body={"zwz_mode": "attention_zoom"})
    trajectory = r.model_extra["zwz_trajectory"]
    assert trajectory["mode"] == "attention_zoom" and trajectory["model_calls"] == 2
    x1, y1, x2, y2 = trajectory["zoom_box"]
    assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480
    assert trajectory["crop_size"] == [x2 - x1, y2 - y1]
    assert r.usage.completion_tokens == 6 and r.choices[0].finish_reason == "length"
    # Two images in the answer's prompt: the original and the crop.
    assert r.usage.model_extra["visual_tokens"] > (640 // 32) * (480 // 32)
    after = requests_by_mode(server)
    assert after.get("attention_zoom", 0) - before.get("attention_zoom", 0) == 1
    assert after.get("single", 0) == before.get("single", 0)


def test_attention_zoom_stream(client, images):
    stream = client.chat.completions.create(model=MODEL, messages=messages_for(images.png_data_url(320, 320)),
                                            max_tokens=4, stream=True, stream_options={"include_usage": True},
                                            extra_body={"zwz_mode": "attention_zoom"})
    chunks = list(stream)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].model_extra["zwz_trajectory"]["mode"] == "attention_zoom"
    assert chunks[-1].usage.completion_tokens == 4


@pytest.mark.parametrize("extra, param, message", [
    ({"zwz_mode": "attention_zoom", "zwz_attention": {}}, "zwz_attention",
     r"zwz_attention applies to single-pass answers"),
    ({"zwz_mode": "agent", "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools",
     r"tools cannot be combined with zwz_mode=agent \(the mode brings its own\)"),
    ({"zwz_mode": "telepathy"}, "zwz_mode", r"zwz_mode: Input should be 'single', 'agent' or 'attention_zoom'"),
])
def test_mode_misuse_is_400(client, images, extra, param, message, good_request):
    with pytest.raises(openai.BadRequestError, match=message) as info:
        client.chat.completions.create(model=MODEL, messages=messages_for(images.png_data_url(64, 64)),
                                       max_tokens=2, extra_body=extra)
    assert param in info.value.body["param"]
    good_request(client, MODEL)


def test_mode_without_image_is_400(client, good_request):
    with pytest.raises(openai.BadRequestError, match=r"zwz_mode=attention_zoom needs an image in the messages") as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"zwz_mode": "attention_zoom"})
    assert info.value.body["param"] == "zwz_mode"
    good_request(client, MODEL)


def test_agent_mode_with_fixed_zoom_turns(server, client, images):
    """Random weights never ask for a zoom: fixed_turns makes the agent zoom twice, so 3 model calls."""
    before = requests_by_mode(server)
    r = client.chat.completions.create(model=MODEL, messages=messages_for(images.data_url(images.noise(512, 384))),
                                       max_tokens=8, extra_body={"zwz_mode": "agent",
                                                                 "zwz_agent": {"max_turns": 5, "fixed_turns": 2}})
    trajectory = r.model_extra["zwz_trajectory"]
    assert trajectory["mode"] == "agent"
    assert trajectory["model_calls"] == 3 and trajectory["forced_calls"] == 2
    assert trajectory["image_encodings"] == 1 + 2 + 3  # the history is re-sent every turn
    assert [t["crop_size"] is not None for t in trajectory["turns"]] == [True, True, False]
    assert trajectory["stopped"] == "answer"
    assert r.usage.prompt_tokens == sum(t["prompt_tokens"] for t in trajectory["turns"])
    after = requests_by_mode(server)
    assert after.get("agent", 0) - before.get("agent", 0) == 1


def test_agent_mode_turn_limit(client, images):
    r = client.chat.completions.create(model=MODEL, messages=messages_for(images.png_data_url(256, 256)),
                                       max_tokens=4, extra_body={"zwz_mode": "agent",
                                                                 "zwz_agent": {"max_turns": 2, "fixed_turns": 5}})
    trajectory = r.model_extra["zwz_trajectory"]
    assert trajectory["stopped"] == "turn_limit" and trajectory["model_calls"] == 2
    assert r.choices[0].finish_reason == "length"


# -- the whole conversation is kept ---------------------------------------------------------------------------
SYSTEM = "You are a terse assistant. Answer with one word, in capital letters, and never explain."


def zoomed_turn(url: str, crop_url: str, question: str = QUESTION) -> dict:
    """The last turn the attention zoom's answer call sends: the image, the crop, the note and the question."""
    from zwz.analytics.zoom.attention_zoom import ZOOMED_VIEW_NOTE

    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                        {"type": "image_url", "image_url": {"url": crop_url}},
                                        {"type": "text", "text": f"{ZOOMED_VIEW_NOTE}\n{question}"}]}


def test_attention_zoom_keeps_the_system_prompt_and_earlier_turns(client, images):
    """The answer call is exactly a single-pass request on [history..., image + crop + note + question]."""
    picture = images.noise(320, 256, seed=11)
    url = images.data_url(picture)
    history = [{"role": "system", "content": SYSTEM},
               {"role": "user", "content": [{"type": "image_url", "image_url": {"url": images.data_url(
                   images.noise(96, 96, seed=12))}}, {"type": "text", "text": "And this one?"}]},
               {"role": "assistant", "content": "A grey square."}]
    answers = {}
    for name, earlier in (("bare", []), ("system", history[:1]), ("history", history)):
        r = client.chat.completions.create(model=MODEL, messages=[*earlier, *messages_for(url)], max_tokens=6,
                                           temperature=0, extra_body={"zwz_mode": "attention_zoom"})
        trajectory = r.model_extra["zwz_trajectory"]
        crop_url = images.data_url(picture.crop(trajectory["zoom_box"]))
        by_hand = client.chat.completions.create(model=MODEL, messages=[*earlier, zoomed_turn(url, crop_url)],
                                                 max_tokens=6, temperature=0)
        assert r.choices[0].message.content == by_hand.choices[0].message.content
        assert r.usage.prompt_tokens == by_hand.usage.prompt_tokens
        # The map's prefill (1 image), then the answer: every image of the conversation and the crop.
        assert trajectory["image_encodings"] == 1 + 2 + (name == "history")
        answers[name] = r
    assert answers["bare"].usage.prompt_tokens < answers["system"].usage.prompt_tokens < \
        answers["history"].usage.prompt_tokens
    assert answers["bare"].choices[0].message.content != answers["system"].choices[0].message.content


def test_agent_keeps_the_system_prompt_and_earlier_turns(client, images):
    """The agent's first model call is the request's conversation with the zoom tool offered."""
    from zwz.analytics.zoom.tool import ZOOM_TOOL

    url = images.data_url(images.noise(256, 192, seed=13))
    conversation = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hello."},
                    {"role": "assistant", "content": "Hello. Send me a picture."}, *messages_for(url)]
    r = client.chat.completions.create(model=MODEL, messages=conversation, max_tokens=6, temperature=0,
                                       extra_body={"zwz_mode": "agent", "zwz_agent": {"max_turns": 1}})
    first = r.model_extra["zwz_trajectory"]["turns"][0]
    by_hand = client.chat.completions.create(model=MODEL, messages=conversation, max_tokens=6, temperature=0,
                                             tools=[ZOOM_TOOL], tool_choice="none")
    assert first["prompt_tokens"] == by_hand.usage.prompt_tokens
    assert first["reply_text"] == by_hand.choices[0].message.content
    bare = client.chat.completions.create(model=MODEL, messages=messages_for(url), max_tokens=6, temperature=0,
                                          extra_body={"zwz_mode": "agent", "zwz_agent": {"max_turns": 1}})
    assert bare.model_extra["zwz_trajectory"]["turns"][0]["prompt_tokens"] < first["prompt_tokens"]
    # Every model call reports how it finished, as an HTTP-driven agent's do.
    assert first["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("messages, param, error", [
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "IMAGE"}},
                                   {"type": "text", "text": "Look."}]},
      {"role": "user", "content": "What colour is it?"}], "zwz_mode",  # the last user turn has no image
     r"zwz_mode={mode} needs an image in the last user message"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "IMAGE"}},
                                   {"type": "text", "text": "Look."}]},
      {"role": "assistant", "content": "It is"}], "messages",  # nothing to answer: the last turn is the model's
     r"zwz_mode={mode}: the zoom modes answer the last user message: the conversation must end with a user turn"),
])
@pytest.mark.parametrize("mode", ["agent", "attention_zoom"])
def test_zoom_needs_an_image_in_the_last_user_turn(client, images, mode, messages, param, error, good_request):
    url = images.png_data_url(64, 64)
    for message in messages:
        if isinstance(message["content"], list):
            message["content"][0]["image_url"]["url"] = url
    with pytest.raises(openai.BadRequestError, match=error.format(mode=mode)) as info:
        client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, extra_body={"zwz_mode": mode})
    assert info.value.body["param"] == param
    good_request(client, MODEL)


# -- the answers' schema ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, kind", [("agent", "AgentResult"), ("attention_zoom", "AttentionZoomResult")])
def test_zoom_answers_validate_against_their_schema(server, images, mode, kind):
    from zwz.server.api.protocol import ChatCompletionChunk, ChatCompletionResponse

    body = {"model": MODEL, "messages": messages_for(images.png_data_url(128, 96)), "max_tokens": 3,
            "zwz_mode": mode, "zwz_agent": {"max_turns": 2, "fixed_turns": 1}} if mode == "agent" else {
            "model": MODEL, "messages": messages_for(images.png_data_url(128, 96)), "max_tokens": 3, "zwz_mode": mode}
    plain = httpx.post(server + "/v1/chat/completions", json=body, timeout=120).json()
    response = ChatCompletionResponse.model_validate(plain)
    assert type(response.zwz_trajectory).__name__ == kind and response.zwz_trajectory.mode == mode

    events = []
    with httpx.stream("POST", server + "/v1/chat/completions", timeout=120,
                      json=body | {"stream": True, "stream_options": {"include_usage": True}}) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(line[len("data: "):])
    chunks = [ChatCompletionChunk.model_validate_json(event) for event in events]
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and type(finishing[0].zwz_trajectory).__name__ == kind
    assert all(c.zwz_trajectory is None for c in chunks if c is not finishing[0])
    assert chunks[-1].usage.completion_tokens == response.usage.completion_tokens
    assert finishing[0].choices[0].delta.content == response.choices[0].message.content  # greedy: same answer


# -- the in-process backend reads replies as the chat endpoint does ------------------------------------------
class ScriptedEngine:
    """An engine that always writes one reply (random tiny weights never call a tool, so the real engine cannot
    show what the backend does with a tool call); it records every request."""

    def __init__(self, text: str) -> None:
        from zwz.server.engines.base import EngineInfo

        self.text = text
        self.requests = []
        self.info = EngineInfo("scripted", "scripted", "qwen3_vl", 4096, "cpu", "float32", True)
        self.attention_maps = None

    async def submit(self, request):
        from zwz.server.engines.base import GenerationChunk

        self.requests.append(request)

        async def chunks():
            yield GenerationChunk(text=self.text, finish_reason="stop", prompt_tokens=20, completion_tokens=9,
                                  visual_tokens=4)

        return chunks()


def test_engine_backend_keeps_finish_reason_and_tool_calls(images):
    import asyncio
    import json

    from zwz.analytics.zoom.agent import run_zoom_agent
    from zwz.analytics.zoom.tool import ZOOM_TOOL, ZOOM_TOOL_NAME
    from zwz.server.serving.agent_backend import EngineBackend

    call = {"name": ZOOM_TOOL_NAME, "arguments": {"bbox_2d": [0, 0, 500, 500], "label": "sign", "img_idx": 0}}
    engine = ScriptedEngine(f"Let me look.\n<tool_call>\n{json.dumps(call)}\n</tool_call>")
    backend = EngineBackend(engine)
    reply = asyncio.run(backend.complete([{"role": "user", "content": "Hi"}], tools=[ZOOM_TOOL], sampling={}))
    assert reply.finish_reason == "tool_calls" and reply.text == "Let me look."
    assert [c["function"]["name"] for c in reply.tool_calls] == [ZOOM_TOOL_NAME]
    assert json.loads(reply.tool_calls[0]["function"]["arguments"]) == call["arguments"]
    plain = asyncio.run(backend.complete([{"role": "user", "content": "Hi"}], tools=None, sampling={}))
    assert plain.finish_reason == "stop" and plain.tool_calls is None and "<tool_call>" in plain.text

    result = asyncio.run(run_zoom_agent(backend, [images.noise(200, 100)], "What does it say?", max_turns=2))
    assert result.zoom_calls == 2 and result.stopped == "turn_limit"
    assert [t.finish_reason for t in result.turns] == ["tool_calls", "tool_calls"]
    assert result.turns[0].crop_box_px == (0, 0, 100, 50)
    # The call goes back into the history as the template renders an assistant tool call.
    assistant = engine.requests[-1].messages[-2]  # the agent's second call: [user, assistant, tool response]
    assert assistant.role == "assistant" and assistant.content[0].startswith("Let me look.\n<tool_call>")
