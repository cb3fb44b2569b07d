"""``zwz train verl``: every override key exists in verl 0.9.1's own config, and the parquet is verl's layout.

verl's config files are read from its wheel (``pip download --no-deps``, cached under pytest's cache or
``$ZWZ_VERL_WHEEL_DIR``), never installed here: verl pins transformers < 5.11.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from zwz.train.verl_launcher import CONFIG_NAME, SCRIPT_NAME, VERL_VERSION

_GENERATED = "verl/trainer/config/_generated_ppo_trainer.yaml"  # verl's flattened ppo_trainer config


@pytest.fixture(scope="module")
def verl_wheel(request, tmp_path_factory) -> Path:
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    folder = Path(os.environ.get("ZWZ_VERL_WHEEL_DIR")
                  or (cache.mkdir("verl-wheel") if cache is not None else tmp_path_factory.mktemp("verl-wheel")))
    folder.mkdir(parents=True, exist_ok=True)
    wheels = sorted(folder.glob(f"verl-{VERL_VERSION}-*.whl"))
    if not wheels:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                               f"verl=={VERL_VERSION}", "-d", str(folder)], capture_output=True, text=True)
        assert done.returncode == 0, f"pip download verl=={VERL_VERSION} failed: {done.stderr[-2000:]}"
        wheels = sorted(folder.glob(f"verl-{VERL_VERSION}-*.whl"))
    return wheels[0]


@pytest.fixture(scope="module")
def verl_config(verl_wheel) -> dict:
    import yaml

    with zipfile.ZipFile(verl_wheel) as wheel:
        return yaml.safe_load(io.TextIOWrapper(wheel.open(_GENERATED), encoding="utf-8"))


@pytest.fixture(scope="module")
def verl_config_dir(verl_wheel, tmp_path_factory) -> Path:
    """verl's Hydra config folder (verl/trainer/config/*.yaml and sub-folders), unpacked from the wheel."""
    root = tmp_path_factory.mktemp("verl-config")
    with zipfile.ZipFile(verl_wheel) as wheel:
        wheel.extractall(root, [n for n in wheel.namelist() if n.startswith("verl/trainer/config/")
                                and n.endswith(".yaml")])
    return root / "verl" / "trainer" / "config"


def _has(config: dict, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.fixture(scope="module")
def verl_run(tiny_models, train_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verl-run")
    done = subprocess.run([sys.executable, "-m", "zwz.cli", "train", "verl", "--model", str(tiny_models["qwen3_vl"]),
                           "--data", str(train_data["rl"]), "--out", str(out), "--nodes", "2", "--gpus-per-node", "8",
                           "--judge-url", "http://judge:8000/v1", "--judge-model", "Qwen3-8B", "--length-cap", "300"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_every_override_key_exists_in_verl_config(verl_run, verl_config):
    overrides = json.loads((verl_run / CONFIG_NAME).read_text())["overrides"]
    assert len(overrides) > 40
    for override in overrides:
        key = override.split("=", 1)[0]
        if key.startswith("+"):  # Hydra adds it: the parent must exist and the key itself must not
            parent, _, leaf = key[1:].rpartition(".")
            assert _has(verl_config, parent), f"{key}: no {parent} in verl {VERL_VERSION}'s config"
            assert not _has(verl_config, key[1:]), f"{key}: exists already; drop the +"
        else:
            assert _has(verl_config, key), f"{key} is not a key of verl {VERL_VERSION}'s config"


def test_hydra_composes_verl_config_with_the_overrides(verl_run, verl_config_dir):
    """What ``python -m verl.trainer.main_ppo`` does first: compose ppo_trainer.yaml with the overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    overrides = json.loads((verl_run / CONFIG_NAME).read_text())["overrides"]
    with initialize_config_dir(config_dir=str(verl_config_dir), version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=overrides)
        assert cfg.actor_rollout_ref.rollout.n == 8 and cfg.actor_rollout_ref.actor.clip_ratio_high == 0.28
        assert cfg.reward.custom_reward_function.reward_kwargs.judge_base_url == "http://judge:8000/v1"
        assert cfg.data.mm_processor_kwargs.max_pixels == 1280 * 28 * 28
        # The check has teeth: a misspelt key fails.
        misspelt = r"Could not override 'actor_rollout_ref\.actor\.clip_ratio_hi'"
        with pytest.raises(ConfigCompositionException, match=misspelt):
            compose(config_name="ppo_trainer", overrides=[*overrides, "actor_rollout_ref.actor.clip_ratio_hi=0.3"])


def test_script_passes_exactly_the_overrides(verl_run):
    import shlex

    overrides = json.loads((verl_run / CONFIG_NAME).read_text())["overrides"]
    text = (verl_run / SCRIPT_NAME).read_text().replace("\\\n", " ")  # bash joins continued lines
    words = shlex.split(text, comments=True)
    start = words.index("verl.trainer.main_ppo") + 1
    assert words[start:] == [*overrides, "$@"]


def test_paper_settings_and_the_reward_hook(verl_run):
    from zwz.train import rewards

    settings = dict(o.split("=", 1) for o in json.loads((verl_run / CONFIG_NAME).read_text())["overrides"])
    assert settings["algorithm.adv_estimator"] == "grpo"
    assert settings["actor_rollout_ref.actor.loss_agg_mode"] == "token-mean"
    assert float(settings["actor_rollout_ref.actor.clip_ratio_high"]) > float(settings["actor_rollout_ref.actor.clip_ratio_low"])
    assert settings["actor_rollout_ref.rollout.n"] == "8" and settings["actor_rollout_ref.rollout.name"] == "vllm"
    assert float(settings["actor_rollout_ref.rollout.temperature"]) == 1.0
    assert float(settings["actor_rollout_ref.actor.optim.lr"]) == 1e-6
    assert settings["actor_rollout_ref.actor.use_kl_loss"] == "false" == settings["algorithm.use_kl_in_reward"]
    assert settings["trainer.nnodes"] == "2" and settings["trainer.n_gpus_per_node"] == "8"
    assert settings["data.image_patch_size"] == "16"  # Qwen3-VL
    assert Path(settings["reward.custom_reward_function.path"]) == rewards.REWARD_MODULE_PATH
    assert callable(getattr(rewards, settings["reward.custom_reward_function.name"]))
    assert settings["+reward.custom_reward_function.reward_kwargs"] == (
        "{judge_base_url:'http://judge:8000/v1',judge_model:'Qwen3-8B',length_cap:300}")
    script = (verl_run / SCRIPT_NAME).read_text()
    assert "python3 -m verl.trainer.main_ppo" in script and "ray start --head" in script
    assert subprocess.run(["bash", "-n", str(verl_run / SCRIPT_NAME)]).returncode == 0


def test_parquet_has_verl_rl_columns_and_types(verl_run, train_data):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from zwz.train.rewards import compute_score

    table = pq.read_table(verl_run / "data" / "train.parquet")
    schema = table.schema
    assert {"data_source", "prompt", "images", "ability", "reward_model", "extra_info"} <= set(schema.names)
    assert schema.field("data_source").type == pa.string()
    assert schema.field("images").type.value_type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for row in table.to_pylist():
        (message,) = row["prompt"]
        assert message["role"] == "user"
        assert message["content"].count("<image>") == len(row["images"]) == 1  # one tag per image
        assert row["reward_model"]["style"] == "rule" and isinstance(row["reward_model"]["ground_truth"], str)
        assert isinstance(row["extra_info"]["index"], int) and row["extra_info"]["question"] in message["content"]
        assert row["ability"].startswith("perception")
        from PIL import Image

        Image.open(io.BytesIO(row["images"][0]["bytes"])).verify()  # verl decodes these bytes with PIL
        # what verl's reward loop calls with this row: the right answer scores 1, another colour 0
        gt, info = row["reward_model"]["ground_truth"], row["extra_info"]
        assert float(_score(compute_score(row["data_source"], f"<answer>{gt}</answer>", gt, info))) == 1.0
        assert float(_score(compute_score(row["data_source"], "<answer>purple</answer>", gt, info))) == 0.0


def _score(result):
    return result["score"] if isinstance(result, dict) else result
