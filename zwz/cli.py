"""The ``zwz`` command: one subcommand per job.

    zwz serve [--model DIR]          # OpenAI-compatible server (zwz-nano, the embedded default, without --model)
    zwz make-model --family qwen3_vl --out DIR      # --preset nano: the model `zwz train nano` trains
    zwz eval --base-url URL --zoomworld 120 --modes single regional agent attention_zoom --out DIR
    zwz bench --base-url URL --zoomworld 24 --modes single agent --users 1 2 4 --duration 30 --out DIR
    zwz distill --images DIR --annotations items.jsonl --teacher URL=MODEL --student URL=MODEL --out DIR
    zwz ui --with-server                  # the Gradio dual-view UI (and a demo server)
    zwz train grpo --model DIR --data train_rl.parquet --out runs/grpo   # also sft, verl, merge

Each subcommand's parser lives beside its job (server/cli.py, ui/cli.py, analytics/eval/cli.py, loadtest/cli.py,
train/cli.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def _register_make_model(subparsers) -> None:
    from zwz.tiny_models import PRESETS

    p = subparsers.add_parser("make-model", help="build a tiny random Qwen-VL checkpoint, offline")
    p.add_argument("--family", choices=["qwen2_5_vl", "qwen3_vl"], default=None,
                   help="default qwen3_vl, or the preset's family")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="sizes: nano (the 6.7M model `zwz train nano` trains) or a real model's shape with random "
                        "weights (default: the tiny test model)")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_make_model)


def _make_model(args: argparse.Namespace) -> int:
    from zwz.tiny_models import PRESET_FAMILIES, build_tiny_model

    family = args.family or (PRESET_FAMILIES[args.preset] if args.preset else "qwen3_vl")
    out = build_tiny_model(family, args.out, seed=args.seed, preset=args.preset)
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from zwz.analytics.eval import cli as eval_cli
    from zwz.distill import cli as distill_cli
    from zwz.loadtest import cli as bench_cli
    from zwz.server import cli as serve_cli
    from zwz.train import cli as train_cli
    from zwz.ui import cli as ui_cli

    parser = argparse.ArgumentParser(prog="zwz", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_cli.register(sub)
    ui_cli.register(sub)
    _register_make_model(sub)
    eval_cli.register(sub)
    bench_cli.register(sub)
    train_cli.register(sub)
    distill_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from zwz.serve_process import ServeError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(getattr(args, "log_level", "info")).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError, ImportError, OSError, ServeError) as exc:
        if os.environ.get("ZWZ_DEBUG"):
            raise
        print(f"zwz {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
