"""``zwz train verl``: everything a verl 0.9.1 environment needs to run the paper's GRPO/DAPO recipe on a cluster.

    zwz train verl --model /models/Qwen3-VL-8B-Instruct --data out/train_rl.parquet --out runs/verl \\
        --nodes 1 --gpus-per-node 8
    bash runs/verl/run_verl.sh          # inside verl's own environment (verl pins transformers < 5.11)

verl cannot live in zwz's environment (its transformers pin conflicts with vLLM's), so zwz only writes files:

- ``data/train.parquet``: the records in verl's RL layout (``zwz.distill.training_data.write_rl_parquet``);
- ``run_verl.sh``: ``python3 -m verl.trainer.main_ppo`` with the overrides below (extra arguments pass through);
- ``zwz_verl.json``: the same overrides and the settings they came from (what the tests check against verl's
  own config files).

The reward is ``zwz/train/rewards.py``, loaded by path through ``reward.custom_reward_function`` (it imports
from a checkout without the rest of zwz's dependencies). Settings: GRPO advantages, DAPO's token-level loss
(``loss_agg_mode=token-mean``) and clip-higher (0.2 / 0.28), rollout n = 8 with vLLM at temperature 1.0,
AdamW lr 1e-6, weight decay 1e-2, grad clip 1.0 (App. 9.1), no KL, one epoch, FSDP, ``nodes x gpus`` on Ray.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["VerlRun", "add_arguments", "verl_overrides", "write_verl_run", "write_verl_run_from_args"]

VERL_VERSION = "0.9.1"  # the release whose config keys the overrides are checked against
SCRIPT_NAME = "run_verl.sh"
CONFIG_NAME = "zwz_verl.json"
_PATCH_SIZE = {"qwen2_5_vl": 14, "qwen3_vl": 16}


@dataclass
class VerlRun:
    """One verl run; defaults are the paper's (App. 9.1) where it gives them."""

    model: str
    train_files: str
    output_dir: str
    family: str
    nodes: int = 1
    gpus_per_node: int = 8
    train_batch_size: int = 128  # prompts per step (x rollout_n responses)
    ppo_mini_batch_size: int = 64  # prompts per optimizer update
    micro_batch_per_gpu: int = 2
    rollout_n: int = 8  # App. 9.1: rollout group of 8
    temperature: float = 1.0  # App. 9.1
    lr: float = 1e-6  # App. 9.1
    weight_decay: float = 1e-2  # App. 9.1
    grad_clip: float = 1.0  # App. 9.1
    clip_ratio_low: float = 0.2
    clip_ratio_high: float = 0.28  # DAPO's clip-higher
    epochs: int = 1  # App. 9.1
    max_prompt_length: int = 4096  # image tokens count here: the pixel budget must fit
    max_response_length: int = 2048
    # 1280 visual tokens of 28x28 px (Qwen2.5-VL; ~980 tokens of 32x32 px on Qwen3-VL): inside max_prompt_length.
    max_pixels: int = 1280 * 28 * 28
    min_pixels: int | None = None
    tensor_parallel: int = 1  # vLLM rollout TP (1 fits 8B on an 80 GB GPU)
    gpu_memory_utilization: float = 0.6
    param_offload: bool = False
    save_freq: int = 50
    project: str = "zwz"
    experiment: str = "zwz-grpo"
    judge_url: str | None = None
    judge_model: str | None = None
    length_cap: int | None = None

    def __post_init__(self) -> None:
        if self.family not in _PATCH_SIZE:
            raise ValueError(f"family must be one of {', '.join(_PATCH_SIZE)}, got {self.family!r}")
        if self.nodes < 1 or self.gpus_per_node < 1:
            raise ValueError("--nodes and --gpus-per-node must be >= 1")
        if self.ppo_mini_batch_size > self.train_batch_size:
            raise ValueError("ppo_mini_batch_size must not exceed train_batch_size")
        if self.train_batch_size % self.ppo_mini_batch_size:
            raise ValueError("train_batch_size must be a multiple of ppo_mini_batch_size")
        if bool(self.judge_url) != bool(self.judge_model):
            raise ValueError("--judge-url and --judge-model go together")


def verl_overrides(run: VerlRun) -> list[str]:
    """The Hydra overrides for ``verl.trainer.main_ppo`` (``+`` adds a key verl's config does not declare)."""
    from zwz.train import rewards

    checkpoints = Path(run.output_dir).resolve() / "checkpoints"
    pairs: list[tuple[str, Any]] = [
        ("algorithm.adv_estimator", "grpo"),
        ("algorithm.use_kl_in_reward", False),
        ("data.train_files", run.train_files),
        ("data.val_files", run.train_files),  # validation is off (test_freq -1); verl still opens the file
        ("data.train_batch_size", run.train_batch_size),
        ("data.max_prompt_length", run.max_prompt_length),
        ("data.max_response_length", run.max_response_length),
        ("data.filter_overlong_prompts", True),
        ("data.truncation", "error"),
        ("data.image_key", "images"),
        ("data.image_patch_size", _PATCH_SIZE[run.family]),  # verl's default 14 is wrong for Qwen3-VL
        ("+data.mm_processor_kwargs.max_pixels", run.max_pixels),
        ("actor_rollout_ref.model.path", run.model),
        ("actor_rollout_ref.model.use_remove_padding", True),
        ("actor_rollout_ref.model.enable_gradient_checkpointing", True),
        ("actor_rollout_ref.actor.strategy", "fsdp"),
        ("actor_rollout_ref.actor.optim.lr", run.lr),
        ("actor_rollout_ref.actor.optim.weight_decay", run.weight_decay),
        ("actor_rollout_ref.actor.grad_clip", run.grad_clip),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", run.ppo_mini_batch_size),
        ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", run.micro_batch_per_gpu),
        ("actor_rollout_ref.actor.loss_agg_mode", "token-mean"),  # DAPO's token-level loss
        ("actor_rollout_ref.actor.clip_ratio_low", run.clip_ratio_low),
        ("actor_rollout_ref.actor.clip_ratio_high", run.clip_ratio_high),
        ("actor_rollout_ref.actor.use_kl_loss", False),
        ("actor_rollout_ref.actor.entropy_coeff", 0),
        ("actor_rollout_ref.actor.fsdp_config.param_offload", run.param_offload),
        ("actor_rollout_ref.actor.fsdp_config.optimizer_offload", run.param_offload),
        ("actor_rollout_ref.rollout.name", "vllm"),
        ("actor_rollout_ref.rollout.n", run.rollout_n),
        ("actor_rollout_ref.rollout.temperature", run.temperature),
        ("actor_rollout_ref.rollout.tensor_model_parallel_size", run.tensor_parallel),
        ("actor_rollout_ref.rollout.gpu_memory_utilization", run.gpu_memory_utilization),
        ("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu", run.micro_batch_per_gpu * 2),
        ("reward.custom_reward_function.path", str(rewards.REWARD_MODULE_PATH)),
        ("reward.custom_reward_function.name", rewards.VERL_FUNCTION),
        ("trainer.nnodes", run.nodes),
        ("trainer.n_gpus_per_node", run.gpus_per_node),
        ("trainer.total_epochs", run.epochs),
        ("trainer.save_freq", run.save_freq),
        ("trainer.test_freq", -1),
        ("trainer.val_before_train", False),
        ("trainer.resume_mode", "auto"),  # rerunning the script continues from the last global_step_N
        ("trainer.default_local_dir", str(checkpoints)),
        ("trainer.project_name", run.project),
        ("trainer.experiment_name", run.experiment),
        ("trainer.logger", ["console"]),
    ]
    if run.min_pixels is not None:
        pairs.append(("+data.mm_processor_kwargs.min_pixels", run.min_pixels))
    reward_kwargs: dict[str, Any] = {}
    if run.judge_url:
        reward_kwargs.update(judge_base_url=run.judge_url, judge_model=run.judge_model)
    if run.length_cap is not None:
        reward_kwargs["length_cap"] = run.length_cap
    if reward_kwargs:  # verl reads reward_kwargs without declaring it: one `+` key whose parent exists
        pairs.append(("+reward.custom_reward_function.reward_kwargs", reward_kwargs))
    return [f"{key}={_hydra_value(value)}" for key, value in pairs]


def _hydra_value(value: Any) -> str:
    """A value in Hydra's override grammar.

    >>> _hydra_value(True), _hydra_value(1e-06), _hydra_value(["console"]), _hydra_value("a b")
    ('true', '1e-06', "['console']", "'a b'")
    >>> _hydra_value({"judge_base_url": "http://j:8000/v1", "length_cap": 300})
    "{judge_base_url:'http://j:8000/v1',length_cap:300}"
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):  # strings always quoted: URLs carry ':' and '/'
        return "{" + ",".join(f"{k}:{_quoted(v) if isinstance(v, str) else _hydra_value(v)}"
                              for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(f"'{v}'" for v in value) + "]"
    text = str(value)
    return _quoted(text) if any(c in text for c in " ,=:[]{}()'\"") else text


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _script(run: VerlRun, overrides: list[str]) -> str:
    lines = " \\\n    ".join(shlex.quote(o) for o in overrides)
    multi = (f"# {run.nodes} nodes: start Ray first (head: `ray start --head --port=6379`; each other node:\n"
             "# `ray start --address=HEAD_IP:6379`), then run this script on the head node.\n"
             if run.nodes > 1 else "")
    return (
        "#!/usr/bin/env bash\n"
        f"# Written by `zwz train verl`: GRPO/DAPO on {run.nodes} x {run.gpus_per_node} GPUs with verl {VERL_VERSION}.\n"
        "# Run it in verl's own environment (pip install 'verl[vllm]==" + VERL_VERSION + "'); extra arguments are\n"
        "# passed to verl as further overrides. Rerun after a crash: trainer.resume_mode=auto continues.\n"
        f"{multi}"
        "set -euo pipefail\n"
        "python3 -m verl.trainer.main_ppo \\\n"
        f"    {lines} \\\n"
        '    "$@"\n'
    )


def write_verl_run(run: VerlRun, records: list | None = None) -> Path:
    """Write ``data/train.parquet`` (when ``records`` is given), ``run_verl.sh`` and ``zwz_verl.json``."""
    from zwz.distill.training_data import write_rl_parquet

    out = Path(run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if records is not None:
        write_rl_parquet(records, run.train_files)
    overrides = verl_overrides(run)
    script = out / SCRIPT_NAME
    script.write_text(_script(run, overrides))
    script.chmod(0o755)
    (out / CONFIG_NAME).write_text(json.dumps(
        {"verl_version": VERL_VERSION, "settings": asdict(run), "overrides": overrides}, indent=2) + "\n")
    logger.info("verl run written to %s (data %s)", script, run.train_files)
    return script


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``zwz train verl`` options (after --model/--data/--out/--limit/--max-pixels/--min-pixels)."""
    p.add_argument("--family", choices=sorted(_PATCH_SIZE), default=None,
                   help="model family (default: read from --model's config.json)")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--train-batch-size", type=int, default=128, help="prompts per step")
    p.add_argument("--ppo-mini-batch-size", type=int, default=64, help="prompts per optimizer update")
    p.add_argument("--micro-batch-per-gpu", type=int, default=2)
    p.add_argument("--rollout-n", type=int, default=8, help="responses per prompt (App. 9.1: 8)")
    p.add_argument("--max-prompt-length", type=int, default=4096)
    p.add_argument("--max-response-length", type=int, default=2048)
    p.add_argument("--tensor-parallel", type=int, default=1, help="vLLM rollout tensor parallel size")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.6)
    p.add_argument("--param-offload", action="store_true", help="FSDP parameter + optimizer offload")
    p.add_argument("--save-freq", type=int, default=50)
    p.add_argument("--experiment", default="zwz-grpo")
    p.add_argument("--judge-url")
    p.add_argument("--judge-model")
    p.add_argument("--length-cap", type=int, default=None)


def write_verl_run_from_args(args: argparse.Namespace) -> Path:
    from zwz.distill.training_data import read_records

    family = args.family
    if family is None:
        from zwz.server.engines.model_loading import detect_family

        if not (Path(args.model) / "config.json").is_file():
            raise ValueError(f"{args.model} is not readable here: pass --family qwen2_5_vl|qwen3_vl")
        family = detect_family(args.model)
    records = read_records(args.data)
    if args.limit is not None:
        records = records[: args.limit]
    if not records:
        raise ValueError(f"{args.data} has no records")
    out = Path(args.out)
    run = VerlRun(
        model=str(Path(args.model).resolve()) if Path(args.model).exists() else args.model,
        train_files=str((out / "data" / "train.parquet").resolve()), output_dir=str(out), family=family,
        nodes=args.nodes, gpus_per_node=args.gpus_per_node, train_batch_size=args.train_batch_size,
        ppo_mini_batch_size=args.ppo_mini_batch_size, micro_batch_per_gpu=args.micro_batch_per_gpu,
        rollout_n=args.rollout_n, max_prompt_length=args.max_prompt_length,
        max_response_length=args.max_response_length, tensor_parallel=args.tensor_parallel,
        gpu_memory_utilization=args.gpu_memory_utilization, param_offload=args.param_offload,
        save_freq=args.save_freq, experiment=args.experiment, judge_url=args.judge_url,
        judge_model=args.judge_model, length_cap=args.length_cap,
        **({"max_pixels": args.max_pixels} if args.max_pixels else {}), min_pixels=args.min_pixels,
    )
    return write_verl_run(run, records)
