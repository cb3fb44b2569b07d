"""SFT and GRPO/DAPO run a few real TRL steps on both tiny families on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


pytestmark = pytest.mark.slow


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("method", ["sft", "grpo"])
def test_few_steps_log_checkpoint_and_change_weights(method, family, tiny_models, train_data, spread_reward_file,
                                                     tmp_path):
    import torch

    from zwz.train.checkpoints import is_complete_checkpoint, latest_checkpoint
    from zwz.train.curves import CURVE_NAME, LOG_NAME, read_log
    from zwz.train.options import TrainOptions
    from zwz.train.trl_runner import run_training

    extra = dict(num_generations=2, batch_size=2, max_completion_length=4,
                 reward_fns=[f"{spread_reward_file}:alternating"]) if method == "grpo" else {}
    opts = TrainOptions(method=method, model=str(tiny_models[family]), data=str(train_data["trl" if method == "sft" else "rl"]),
                        output_dir=str(tmp_path / "run"), max_steps=2, save_steps=2, max_pixels=64 * 64,
                        learning_rate=1e-3, progress=False, **extra)
    final = run_training(opts)

    log = read_log(tmp_path / "run" / LOG_NAME)
    assert [e["step"] for e in log] == [1, 2]
    assert all(isinstance(e["loss"], float) for e in log)
    if method == "grpo":
        assert all("reward" in e and "rewards/zwz_reward/mean" in e for e in log)  # our reward ran each step
        assert all(e["reward_std"] > 0 for e in log)
    assert (tmp_path / "run" / CURVE_NAME).stat().st_size > 1000

    checkpoint = latest_checkpoint(tmp_path / "run")
    assert checkpoint is not None and checkpoint.name == "checkpoint-2" and is_complete_checkpoint(checkpoint)
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 2

    before, after = _weights(tiny_models[family]), _weights(final)
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2, f"only {len(changed)} of {len(before)} tensors changed"
    # the pixel budget went into the saved processor, so serving sees images as training did
    processor = json.loads((final / "processor_config.json").read_text())
    assert processor["image_processor"]["size"]["longest_edge"] == 64 * 64
