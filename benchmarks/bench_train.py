"""Training throughput and peak memory: TRL SFT and GRPO/DAPO steps on a tiny Qwen-VL, at 448 and 1344 px.

    python benchmarks/bench_train.py                       # tiny qwen2_5_vl, CPU (or the GPU when there is one)
    python benchmarks/bench_train.py --family qwen3_vl --steps 4 --sizes 448 1344

Each (method, size) runs in a fresh subprocess through ``zwz.train.trl_runner.run_training`` (the code
``zwz train`` runs), so the peak resident memory it reports (``ru_maxrss``; on a GPU also the peak CUDA
allocation) belongs to that configuration alone. Step times come from the trainer's own per-step callback;
the first step (warm-up, lazy initialisation) is left out. GRPO samples are completions (group of
``--num-generations`` per prompt, ``--completion-tokens`` tokens each).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workload import scene  # noqa: E402


def _data(folder: Path, size: int, n: int) -> Path:
    from PIL import Image

    from zwz.distill.training_data import TrainingRecord, write_trl_parquet

    records = []
    for i in range(n):
        image = Image.open(io.BytesIO(scene(size, seed=i)))
        buf = io.BytesIO()
        image.save(buf, "PNG")
        records.append(TrainingRecord(f"b{i}", [buf.getvalue()], "What is written on the sign?", f"EXIT {i}"))
    path = folder / f"data_{size}.parquet"
    write_trl_parquet(records, path)
    return path


def _one(args: argparse.Namespace) -> None:
    """Child: one configuration; prints one JSON line."""
    import torch
    from transformers import TrainerCallback

    from zwz.train import trl_runner
    from zwz.train.options import TrainOptions

    folder = Path(args.workdir)
    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            times.append(time.perf_counter() - self.t0)

    reward = folder / "bench_reward.py"
    reward.write_text("def spread(prompts, completions, **kw):\n    return [float(i % 2) for i in range(len(completions))]\n")
    original = trl_runner._trainer

    def with_timer(*a, **kw):
        trainer = original(*a, **kw)
        trainer.add_callback(StepTimer())
        return trainer

    trl_runner._trainer = with_timer  # time the real trainer without changing what it runs
    size = args.one_size
    extra = (dict(num_generations=args.num_generations, batch_size=args.num_generations,
                  max_completion_length=args.completion_tokens, reward_fns=[f"{reward}:spread"])
             if args.one_method == "grpo" else dict(batch_size=1))
    opts = TrainOptions(method=args.one_method, model=args.model, data=str(_data(folder, size, args.steps + 1)),
                        output_dir=str(folder / f"run_{args.one_method}_{size}"), max_steps=args.steps + 1,
                        save_steps=10_000, max_pixels=size * size, learning_rate=1e-4, progress=False, **extra)
    trl_runner.run_training(opts)
    per_step = sorted(times[1:])
    median = per_step[len(per_step) // 2]
    samples = opts.batch_size
    row = {"method": args.one_method, "size": size, "step_s": median, "samples_per_s": samples / median,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        row["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="qwen2_5_vl", choices=["qwen2_5_vl", "qwen3_vl"])
    parser.add_argument("--model", default=None, help="model folder (default: a fresh tiny model of --family)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[448, 1344])
    parser.add_argument("--methods", nargs="+", default=["sft", "grpo"], choices=["sft", "grpo"])
    parser.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--completion-tokens", type=int, default=16)
    parser.add_argument("--one-method", help=argparse.SUPPRESS)
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_method:
        _one(args)
        return

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        if args.model is None:
            from zwz.tiny_models import build_tiny_model

            args.model = str(build_tiny_model(args.family, Path(tmp) / args.family))
        rows = []
        for method in args.methods:
            for size in args.sizes:
                cmd = [sys.executable, __file__, "--model", args.model, "--steps", str(args.steps),
                       "--num-generations", str(args.num_generations), "--completion-tokens",
                       str(args.completion_tokens), "--one-method", method, "--one-size", str(size),
                       "--workdir", tmp]
                done = subprocess.run(cmd, capture_output=True, text=True)
                lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
                if done.returncode != 0 or not lines:
                    raise SystemExit(f"{method} at {size} px failed:\n{done.stderr[-3000:]}")
                rows.append(json.loads(lines[-1][len("RESULT "):]))
    print(f"\nTRL training steps, {Path(args.model).name}; GRPO: {args.num_generations} completions x "
          f"{args.completion_tokens} tokens per step; SFT: batch 1")
    print(f"{'method':>6} {'image':>9} {'step (s)':>9} {'samples/s':>10} {'peak RSS (MB)':>14}"
          + (f" {'peak CUDA (MB)':>15}" if "peak_cuda_mb" in rows[0] else ""))
    for r in rows:
        print(f"{r['method']:>6} {str(r['size']) + ' px':>9} {r['step_s']:>9.3f} {r['samples_per_s']:>10.2f} "
              f"{r['peak_rss_mb']:>14.0f}" + (f" {r['peak_cuda_mb']:>15.0f}" if "peak_cuda_mb" in r else ""))


if __name__ == "__main__":
    main()
