"""OpenAI ``tool_calls`` from what the real engines generate, on both engines, streaming and not.

A random-weight model never writes a tool call, so this module first teaches the tiny Qwen3-VL one to:
``zwz train sft`` (the project's own trainer, its own options only) overfits two records - the question
gets ``CALL``, the same conversation after the tool's result gets ``ANSWER`` - and ``zwz train merge``
makes the model folder the server loads. The server then decodes greedily, as for any model, and its
hermes parser turns the generated ``<tool_call>`` block into OpenAI's fields.

zwz's TRL layout holds a single user turn with an image in front, while a request with ``tools`` is
rendered with a system turn first. So each record's question carries the served conversation itself,
rendered by the model's own chat template (system turn, tools and all, after a closing ``<|im_end|>``):
the trained prompt then ends exactly as the served one, with only the record's image turn before it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import openai
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("serve_engine", ["transformers", "vllm"], indirect=True)]

MODEL = "model"  # served under the folder name
TOOLS = [{"type": "function", "function": {
    "name": "image_zoom_in_tool", "description": "Zoom in on a region of the image.",
    "parameters": {"type": "object", "properties": {"bbox_2d": {"type": "array"}, "label": {"type": "string"}}},
}}]  # fmt: skip
ARGUMENTS = {"bbox_2d": [10, 20, 300, 400], "label": "sign"}
ASK = [{"role": "user", "content": "What does the sign say?"}]
RESULT = "The sign says STOP."
ANSWER = "It says STOP."
TRAIN_STEPS = 80  # loss 7.6 -> 0.004 at lr 3e-3; at 40 steps (loss 0.4) the call is not yet reliable


def _called(call_id: str = "call_0") -> dict:
    """The assistant turn that made the call, as a client sends it back."""
    call = {"id": call_id, "type": "function",
            "function": {"name": "image_zoom_in_tool", "arguments": json.dumps(ARGUMENTS)}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def _follow_up(call_id: str) -> list[dict]:
    return [*ASK, _called(call_id), {"role": "tool", "tool_call_id": call_id, "content": RESULT}]


@pytest.fixture(scope="session")
def tool_caller(tiny_models, tmp_path_factory) -> Path:
    """The tiny Qwen3-VL model, fine-tuned by ``zwz train sft`` to call ``image_zoom_in_tool``.

    80 steps on two ~200-token records (the module's whole set-up, training and serving, took 408 s on a shared
    2-core machine at load average 10: far over the minute aimed for, hence ``slow``).
    """
    from PIL import Image
    from transformers import AutoProcessor

    from zwz import compat
    from zwz.cli import main
    from zwz.distill.training_data import TrainingRecord, write_trl_parquet

    compat.install()
    base = tiny_models["qwen3_vl"]
    root = tmp_path_factory.mktemp("tool-caller")
    processor = AutoProcessor.from_pretrained(base, local_files_only=True)

    def rendered(messages: list[dict]) -> str:
        return processor.apply_chat_template(messages, tools=TOOLS, tokenize=False)

    end = "<|im_end|>\n"
    call_text = rendered([*ASK, _called()]).rsplit("<|im_start|>assistant\n", 1)[1].removesuffix(end)
    image = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(image, "PNG")  # every record needs one; 1 visual token
    records = [TrainingRecord(item_id, [image.getvalue()], end + rendered(messages).removesuffix(end), answer)
               for item_id, messages, answer in (("ask", ASK, call_text), ("answer", _follow_up("call_0"), ANSWER))]
    write_trl_parquet(records, root / "data.parquet")
    assert main(["train", "sft", "--model", str(base), "--data", str(root / "data.parquet"), "--out", str(root / "run"),
                 "--max-steps", str(TRAIN_STEPS), "--save-steps", str(TRAIN_STEPS), "--lr", "3e-3",
                 "--batch-size", "2", "--max-pixels", "1024", "--no-progress", "--log-level", "warning"]) == 0
    assert main(["train", "merge", str(root / "run"), "--out", str(root / MODEL)]) == 0
    return root / MODEL


@pytest.fixture(scope="module")
def client(serve, tool_caller):
    with serve(tool_caller) as (url, _):
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def test_tool_call_non_streaming(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "image_zoom_in_tool"
    assert json.loads(call.function.arguments) == ARGUMENTS


def test_tool_call_streaming(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ""
    calls = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    (call,) = calls
    assert call.index == 0 and call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "image_zoom_in_tool"
    assert json.loads(call.function.arguments) == ARGUMENTS
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_tool_choice_none_returns_the_raw_block(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="none", temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert choice.message.content == ('<tool_call>\n{"name": "image_zoom_in_tool", "arguments": '
                                      + json.dumps(ARGUMENTS) + "}\n</tool_call>")


@pytest.mark.parametrize("stream", [False, True])
def test_follow_up_with_the_tool_result(client, stream):
    first = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, temperature=0)
    (call,) = first.choices[0].message.tool_calls
    messages = _follow_up(call.id)
    if not stream:
        r = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, temperature=0)
        assert (r.choices[0].message.content, r.choices[0].finish_reason) == (ANSWER, "stop")
        assert r.choices[0].message.tool_calls is None
        return
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, temperature=0,
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
