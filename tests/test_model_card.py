"""Model cards: written and read back, refused when malformed, and what decides a served model's
``random_weights``: a tiny model's marker without a card."""

from __future__ import annotations

import json

import pytest

from zwz.model_card import CARD_FILE, read_card, write_card


def test_a_card_is_written_with_its_markdown_and_read_back(tmp_path):
    card = {"name": "zwz-nano", "trained_on": "R2I items", "results": {"single accuracy": 0.5625, "items": 300},
            "reproduce": "zwz train nano --out runs/nano"}
    write_card(tmp_path, card)
    assert read_card(tmp_path) == card
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# zwz-nano\n\nR2I items\n")
    assert "| single accuracy | 56.2% |" in text and "| items | 300 |" in text
    assert "    zwz train nano --out runs/nano" in text


def test_no_card_is_none_and_a_malformed_one_is_an_error(tmp_path):
    assert read_card(tmp_path) is None
    assert read_card(tmp_path / "missing") is None
    for bad in ([1, 2], {"name": "x"}, {"trained_on": 3}):
        (tmp_path / CARD_FILE).write_text(json.dumps(bad))
        with pytest.raises(ValueError, match="is not a model card"):
            read_card(tmp_path)
    with pytest.raises(ValueError, match="needs a 'trained_on' sentence"):
        write_card(tmp_path, {"trained_on": ""})


@pytest.mark.slow
def test_a_tiny_model_counts_as_random_until_a_card_says_what_it_was_trained_on(tiny_models, tmp_path):
    import shutil

    from zwz.server.launch import build_engine
    from zwz.server.settings import ServerSettings

    folder = tmp_path / "model"
    shutil.copytree(tiny_models["qwen3_vl"], folder)
    settings = ServerSettings(model=str(folder), engine="transformers")
    assert build_engine(settings).info.random_weights is True
    write_card(folder, {"name": "t", "trained_on": "four colour squares"})
    assert build_engine(settings).info.random_weights is False
