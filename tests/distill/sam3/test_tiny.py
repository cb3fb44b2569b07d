"""The tiny random SAM3 builder: seeded (byte-identical rebuilds), loadable, with the settings it claims."""

from __future__ import annotations

import json

from zwz.distill.sam3.preprocess import Sam3ImageSettings
from zwz.distill.sam3.tiny import TINY_SAM3_IMAGE_SIZE, build_tiny_sam3


def test_builds_are_byte_identical_and_loadable(tmp_path):
    from transformers import AutoTokenizer, Sam3Model

    a, b = build_tiny_sam3(tmp_path / "a"), build_tiny_sam3(tmp_path / "b")
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"} <= set(files)
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert build_tiny_sam3(tmp_path / "c", seed=1).joinpath("model.safetensors").read_bytes() != (
        a / "model.safetensors").read_bytes()

    model = Sam3Model.from_pretrained(a)
    assert model.config.vision_config.image_size == TINY_SAM3_IMAGE_SIZE
    assert sum(p.numel() for p in model.parameters()) == json.loads((a / "zwz_tiny_sam3.json").read_text())[
        "parameters"] < 1_000_000
    settings = Sam3ImageSettings.from_pretrained(a)
    assert (settings.height, settings.width) == (TINY_SAM3_IMAGE_SIZE, TINY_SAM3_IMAGE_SIZE)
    tokenizer = AutoTokenizer.from_pretrained(a)
    ids = tokenizer(["red car"], padding="max_length", max_length=32)["input_ids"][0]
    assert len(ids) == 32 and ids[0] == tokenizer.bos_token_id and tokenizer.eos_token_id in ids
    assert max(ids) < model.config.text_config.vocab_size
