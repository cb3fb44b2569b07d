"""A trained run merged by ``zwz train merge`` is a model folder ``zwz serve`` and ``zwz eval`` use as it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

QUESTION = "What color is the square? Answer with one word."


@pytest.fixture(scope="module")
def merged(tiny_models, train_data, tmp_path_factory) -> Path:
    from zwz.cli import main
    from zwz.train.options import TrainOptions
    from zwz.train.trl_runner import run_training

    root = tmp_path_factory.mktemp("merge")
    run_training(TrainOptions(method="sft", model=str(tiny_models["qwen2_5_vl"]), data=str(train_data["trl"]),
                              output_dir=str(root / "run"), max_steps=2, save_steps=2, max_pixels=64 * 64,
                              learning_rate=1e-3, progress=False))
    assert main(["train", "merge", str(root / "run"), "--out", str(root / "model")]) == 0
    return root / "model"


def test_merged_folder_has_weights_processor_template_and_generation_config(merged, tiny_models):
    from safetensors.torch import load_file

    names = {p.name for p in merged.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "processor_config.json",
            "tokenizer.json", "chat_template.jinja"} <= names
    assert not names & {"optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin"}
    trained = load_file(str(merged.parent / "run" / "final" / "model.safetensors"))
    assert load_file(str(merged / "model.safetensors")).keys() == trained.keys()
    generation = json.loads((merged / "generation_config.json").read_text())
    assert generation == json.loads((tiny_models["qwen2_5_vl"] / "generation_config.json").read_text())


def test_merge_errors_are_one_line(tmp_path, capsys):
    from zwz.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["train", "merge", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no model" in err and len(err.splitlines()) == 1
    shards = tmp_path / "verl" / "actor"
    shards.mkdir(parents=True)
    (shards / "model_world_size_8_rank_0.pt").write_bytes(b"")
    assert main(["train", "merge", str(tmp_path / "verl"), "--out", str(tmp_path / "m"),
                 "--verl-python", str(tmp_path / "no-such-python")]) == 2
    assert "no-such-python" in capsys.readouterr().err


def test_served_by_zwz_serve_equals_generate_and_zwz_eval_runs(merged, images, tmp_path):
    import openai
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from zwz import compat
    from zwz.cli import main
    from zwz.serve_process import serve_subprocess

    compat.install()
    picture = images.noise(96, 80, seed=5)
    processor = AutoProcessor.from_pretrained(merged)
    model = AutoModelForImageTextToText.from_pretrained(merged, dtype=torch.float32).eval()
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}],
        add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[picture], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    expected = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]

    with serve_subprocess(merged, log_path=tmp_path / "serve.log") as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        (served,) = client.models.list().data
        messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": images.data_url(picture)}},
                                                 {"type": "text", "text": QUESTION}]}]
        reply = client.chat.completions.create(model=served.id, messages=messages, max_tokens=12, temperature=0)
        assert reply.choices[0].message.content == expected
        assert reply.usage.prompt_tokens == inputs["input_ids"].shape[1]  # the training pixel budget, kept

        assert main(["eval", "--base-url", url, "--zoomworld", "2", "--modes", "single", "--out",
                     str(tmp_path / "eval"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["random_weights"] is True  # the tiny marker travelled through training and merge
    predictions = (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 2
