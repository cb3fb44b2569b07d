"""zwz make-model --preset: the nano model's sizes, and the default tiny models left byte-identical by presets."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from zwz.tiny_models import NANO_SPEC, PRESETS, build_tiny_model

# sha256 of the default builds' files, recorded before the presets existed (torch 2.13.0+cpu, transformers 5.19).
# The tests' cached models, the embedded default and every pinned figure rest on these bytes: a change here is a
# change of the default tiny models, not of a preset.
DEFAULT_DIGESTS = {
    "qwen2_5_vl": {
        "config.json": "0d28b1d3153fe6238737cab28dc133ddeaefd459aeb4742b208809641dd8200b",
        "model.safetensors": "12360596fb54aece193a3c8b373d11261c21fde3ef989325b06ef3751fcc6c46",
        "tokenizer.json": "78b279f8793db58d6f56af3081feb4989476c4bbd12a1d4b5e99fa7d5436df74",
        "zwz_tiny_model.json": "31822feea424e60680b4cd9d5911bf28146ba25e7be614477daa6f94012b4896",
    },
    "qwen3_vl": {
        "config.json": "5c40fcd91947b319a5053b83f2cac0b252a256dbe0ad0a1cd74c202435f90b2a",
        "model.safetensors": "ff833009c8d1a1394083a2f1ce59573491ad7fd769b2d9683538f50afd6e16fa",
        "tokenizer.json": "78b279f8793db58d6f56af3081feb4989476c4bbd12a1d4b5e99fa7d5436df74",
        "zwz_tiny_model.json": "386ec3e942a410dde62419b2e0c49f14aca4c503f22ae8cdd9a042537c15ad27",
    },
}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_default_build_is_unchanged(tiny_models, family):
    folder = tiny_models[family]
    assert {name: _sha(folder / name) for name in DEFAULT_DIGESTS[family]} == DEFAULT_DIGESTS[family]


def test_nano_preset_sizes(tmp_path, tiny_models):
    out = build_tiny_model("qwen3_vl", tmp_path / "nano", preset="nano")
    config = json.loads((out / "config.json").read_text())
    text, vision = config["text_config"], config["vision_config"]
    assert (text["hidden_size"], text["num_hidden_layers"], text["num_attention_heads"], text["head_dim"],
            text["num_key_value_heads"]) == (256, 4, 4, 64, 2)
    assert (vision["hidden_size"], vision["depth"], vision["num_heads"], vision["deepstack_visual_indexes"]) == (
        128, 4, 2, [1, 3])
    marker = json.loads((out / "zwz_tiny_model.json").read_text())
    assert marker["preset"] == "nano" and 6_000_000 < marker["parameters"] < 7_500_000
    # the same tokenizer and chat template as the tiny test models
    assert _sha(out / "tokenizer.json") == _sha(tiny_models["qwen3_vl"] / "tokenizer.json")
    assert _sha(out / "chat_template.jinja") == _sha(tiny_models["qwen3_vl"] / "chat_template.jinja")
    assert PRESETS["nano"] is NANO_SPEC


def test_preset_errors(tmp_path):
    with pytest.raises(ValueError, match="qwen3_vl model"):
        build_tiny_model("qwen2_5_vl", tmp_path / "x", preset="nano")
    with pytest.raises(ValueError, match="unknown preset"):
        build_tiny_model("qwen3_vl", tmp_path / "x", preset="huge")
    with pytest.raises(ValueError, match="not both"):
        build_tiny_model("qwen3_vl", tmp_path / "x", preset="nano", spec=NANO_SPEC)


def test_cli_make_model_preset(tmp_path):
    out = tmp_path / "nano"
    result = subprocess.run([sys.executable, "-m", "zwz.cli", "make-model", "--preset", "nano", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen3_vl"
    bad = subprocess.run([sys.executable, "-m", "zwz.cli", "make-model", "--preset", "nano", "--family", "qwen2_5_vl",
                          "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "qwen3_vl model" in bad.stderr
