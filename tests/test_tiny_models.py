"""zwz make-model: offline tiny checkpoints that transformers loads, byte-identical when rebuilt."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import torch

from zwz.tiny_models import PLAIN_ADDED_TOKENS, SPECIAL_TOKENS, build_tiny_model, is_tiny_model


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_rebuild_is_byte_identical(tmp_path, tiny_models, family):
    again = build_tiny_model(family, tmp_path / family)
    assert _digest(again) == _digest(tiny_models[family])
    other_seed = build_tiny_model(family, tmp_path / f"{family}-seed1", seed=1)
    assert _digest(other_seed)["model.safetensors"] != _digest(again)["model.safetensors"]


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_folder_loads_and_generates(tiny_models, family, images):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_models[family]
    assert is_tiny_model(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == family
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    tok = processor.tokenizer
    for token in SPECIAL_TOKENS + PLAIN_ADDED_TOKENS:
        ids = tok.encode(token, add_special_tokens=False)
        assert len(ids) == 1, token  # every Qwen marker is a single token
    assert config["image_token_id"] == tok.convert_tokens_to_ids("<|image_pad|>")

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is the color?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>What is the color?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    inputs = processor(text=[text], images=[images.noise(448, 448)], return_tensors="pt")
    n_image_tokens = int((inputs["input_ids"] == config["image_token_id"]).sum())
    assert n_image_tokens == int(inputs["image_grid_thw"].prod()) // 4
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_qwen3_template_renders_tools_and_tool_responses(tiny_models):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_models["qwen3_vl"])
    tool = {"type": "function", "function": {"name": "image_zoom_in_tool", "parameters": {"type": "object"}}}
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Read the sign."}]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [1, 2, 3, 4]}}}]},
        {"role": "tool", "content": [{"type": "image"}]},
    ]
    text = processor.apply_chat_template(messages, tools=[tool], add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\n# Tools\n")
    assert '<tools>\n{"type": "function"' in text
    assert '<tool_call>\n{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [1, 2, 3, 4]}}\n</tool_call>' in text
    assert "<|im_start|>user\n<tool_response>\n<|vision_start|><|image_pad|><|vision_end|>\n</tool_response><|im_end|>" in text


def test_cli_make_model(tmp_path):
    out = tmp_path / "m"
    result = subprocess.run([sys.executable, "-m", "zwz.cli", "make-model", "--family", "qwen2_5_vl", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (out / "model.safetensors").is_file()
    bad = subprocess.run([sys.executable, "-m", "zwz.cli", "serve", "--model", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("zwz serve: error:")
