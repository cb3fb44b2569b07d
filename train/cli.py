"""``zwz train``: train a checkpoint on one machine (TRL), prepare a cluster run (verl), merge the result.

    zwz train sft   --model DIR --data out/train_trl.parquet --out runs/sft
    zwz train grpo  --model DIR --data out/train_rl.parquet  --out runs/grpo [--judge-url URL --judge-model M]
    zwz train verl  --model DIR --data out/train_rl.parquet  --out runs/verl --nodes 2 --gpus-per-node 8
    zwz train merge runs/grpo --out models/zwz-grpo           # or a verl .../global_step_N/actor folder
    zwz train nano  --out runs/nano [--scale ci]              # the whole nano recipe: pools -> ... -> eval

Run ``sft``/``grpo`` again with the same arguments after a crash or ``kill -9``: it resumes from the last
complete checkpoint under ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import sys

logger = logging.getLogger(__name__)


def _add_data_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="Qwen2.5-VL / Qwen3-VL model folder (or a tiny one: zwz make-model)")
    p.add_argument("--data", required=True,
                   help="distill's RL or TRL parquet, or any ZoomBench-format parquet / JSONL / JSON / folder")
    p.add_argument("--out", required=True, help="run folder (checkpoints, train_log.jsonl, training_curve.png)")
    p.add_argument("--limit", type=int, default=None, help="only the first N records")
    p.add_argument("--max-pixels", type=int, default=None, help="per-image pixel budget (default: the processor's)")
    p.add_argument("--min-pixels", type=int, default=None)
    p.add_argument("--log-level", default="info")


def _add_trl_common(p: argparse.ArgumentParser) -> None:
    _add_data_model(p)
    p.add_argument("--view", choices=["global", "regional"], default="global",
                   help="a benchmark's full images, or regional: its evidence crops (a teacher trained on crops)")
    p.add_argument("--mc-target", choices=["letter", "text"], default="letter",
                   help="a benchmark's multiple-choice answers as the letter, or text: the option's text")
    p.add_argument("--max-steps", type=int, default=-1, help="optimizer steps (default: --epochs over the data)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=None,
                   help="per device; GRPO: completions per step (default --num-generations); SFT: default 1")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: GRPO 1e-6 as in App. 9.1, SFT 1e-5; larger on tiny models)")
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--lr-scheduler", default="constant", help="transformers scheduler name (default constant)")
    p.add_argument("--warmup-steps", type=float, default=0,
                   help="linear warm-up: steps, or a share of all steps when below 1")
    p.add_argument("--save-steps", type=int, default=50, help="checkpoint every N steps (resume point)")
    p.add_argument("--save-total-limit", type=int, default=3, help="checkpoints kept")
    p.add_argument("--logging-steps", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (bf16 on GPU, fp32 on CPU)")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on for real models, off for tiny ones")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train a checkpoint (TRL SFT/GRPO, verl launcher, merge)",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = train.add_subparsers(dest="train_command", required=True, metavar="STEP")

    sft = sub.add_parser("sft", help="supervised fine-tuning on the answers (TRL SFTTrainer)")
    _add_trl_common(sft)
    sft.add_argument("--max-length", type=int, default=None, help="truncate longer samples (default: never)")
    sft.set_defaults(func=_run_trl, method="sft")

    grpo = sub.add_parser("grpo", help="GRPO with DAPO's loss and clip-higher (TRL GRPOTrainer)")
    _add_trl_common(grpo)
    grpo.add_argument("--num-generations", type=int, default=8, help="rollout group size (App. 9.1: 8)")
    grpo.add_argument("--temperature", type=float, default=1.0, help="rollout temperature (App. 9.1: 1.0)")
    grpo.add_argument("--max-completion-length", type=int, default=512)
    grpo.add_argument("--loss-type", default="dapo", help="TRL loss_type (default dapo: token-level)")
    grpo.add_argument("--epsilon", type=float, default=0.2, help="lower clip range")
    grpo.add_argument("--epsilon-high", type=float, default=0.28, help="upper clip range (DAPO's clip-higher)")
    grpo.add_argument("--beta", type=float, default=0.0, help="KL coefficient (default 0: no KL, as DAPO)")
    grpo.add_argument("--vllm", action="store_true", help="generate with TRL's colocated vLLM (GPU)")
    grpo.add_argument("--length-cap", type=int, default=None,
                      help="reward 0 for answers this many characters or longer (the official code: 300)")
    grpo.add_argument("--judge-url", help="OpenAI-compatible endpoint of the LLM judge (App. 10 prompt)")
    grpo.add_argument("--judge-model")
    grpo.add_argument("--judge-api-key")
    grpo.add_argument("--reward-fn", action="append", default=[], metavar="FILE.py:NAME",
                      help="an extra TRL reward function, summed with zwz's (repeatable)")
    grpo.set_defaults(func=_run_trl, method="grpo")

    verl = sub.add_parser("verl", help="write the verl run (RL parquet, reward hook, launch script + config)")
    _add_data_model(verl)
    from zwz.train.verl_launcher import add_arguments as add_verl_arguments

    add_verl_arguments(verl)
    verl.set_defaults(func=_run_verl)

    merge = sub.add_parser("merge", help="a TRL run/checkpoint or a verl FSDP checkpoint -> a servable model folder")
    merge.add_argument("source", help="TRL run folder or checkpoint-N folder, or verl .../global_step_N[/actor]")
    merge.add_argument("--out", required=True, help="model folder to write")
    merge.add_argument("--base-model", default=None,
                       help="folder to take the processor / chat template from when the source has none")
    merge.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                       help="weights' dtype in the merged folder (auto: as trained)")
    merge.add_argument("--verl-python", default=None,
                       help="python of verl's environment, for verl FSDP checkpoints (default: this one)")
    merge.add_argument("--log-level", default="info")
    merge.set_defaults(func=_run_merge)

    from zwz.train import nano

    recipe = sub.add_parser("nano", help="the nano recipe from scratch: pools, model, teacher, R2I distill, "
                                         "student, eval (resumable)",
                            description=nano.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    nano.add_arguments(recipe)
    recipe.set_defaults(func=nano.run_from_args)


def _run_trl(args: argparse.Namespace) -> int:
    from zwz.train.options import TrainOptions
    from zwz.train.trl_runner import run_training

    common = dict(
        method=args.method, model=args.model, data=args.data, output_dir=args.out, max_steps=args.max_steps,
        epochs=args.epochs, batch_size=args.batch_size, grad_accum=args.grad_accum, learning_rate=args.lr,
        weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm, lr_scheduler=args.lr_scheduler,
        warmup_steps=int(args.warmup_steps) if args.warmup_steps >= 1 else args.warmup_steps, save_steps=args.save_steps, save_total_limit=args.save_total_limit,
        logging_steps=args.logging_steps, max_pixels=args.max_pixels, min_pixels=args.min_pixels,
        seed=args.seed, limit=args.limit, view=args.view, mc_target=args.mc_target, device=args.device, gradient_checkpointing=args.gradient_checkpointing,
        progress=not args.no_progress,
    )
    if args.method == "sft":
        opts = TrainOptions(**common, max_length=args.max_length)
    else:
        opts = TrainOptions(
            **common, num_generations=args.num_generations, temperature=args.temperature,
            max_completion_length=args.max_completion_length, loss_type=args.loss_type, epsilon=args.epsilon,
            epsilon_high=args.epsilon_high, beta=args.beta, use_vllm=args.vllm, length_cap=args.length_cap,
            judge_url=args.judge_url, judge_model=args.judge_model, judge_api_key=args.judge_api_key,
            reward_fns=args.reward_fn,
        )
    final = run_training(opts)
    print(final)
    return 0


def _run_verl(args: argparse.Namespace) -> int:
    from zwz.train.verl_launcher import write_verl_run_from_args

    script = write_verl_run_from_args(args)
    print(script)
    return 0


def _run_merge(args: argparse.Namespace) -> int:
    from zwz.train.merge import merge_checkpoint

    out = merge_checkpoint(args.source, args.out, base_model=args.base_model, dtype=args.dtype,
                           verl_python=args.verl_python)
    print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover - `zwz train ...` is the entry point
    from zwz.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
