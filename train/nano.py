"""``zwz train nano``: a small Qwen3-VL made from scratch by zwz's own commands, through R2I, seeded and resumable.

    zwz train nano --out runs/nano                       # the recommended recipe (docs/nano-learning-curves.md)
    zwz train nano --out runs/nano-ci --scale ci         # tiny sizes, a few steps per stage: the CI check
    zwz train nano --out runs/nano --arms bbox_in_image bbox_in_question no_box direct   # Table 6's arms

The pools, the model and the teacher are shared; each arm (a ``zwz distill --variant``) gets its own distill,
student and eval under ``<out>/arms/<arm>/``, so the arms differ only in how R2I built their data. Arms can be
added to a finished run later (same ``--out``): the shared stages are skipped.

Stages, in order (each leaves ``<out>/stages/[<arm>/]<name>.json`` when done; a rerun skips finished stages and
resumes the one a crash or ``kill -9`` interrupted, through the inner commands' own resumption):

1. ``pools``: three nano ZoomWorld pools with disjoint seeds (``--dimensions``, default color structure): the
   teacher's (crops and labels), distill's (only its images and native boxes reach ``zwz distill``: the
   labels are stripped from the annotations it reads) and the held-out benchmark's.
2. ``model``: ``zwz make-model --preset nano`` (6.7M parameters, the tiny models' tokenizer and template).
3. ``teacher``: ``zwz train sft --view regional --mc-target text`` on the teacher pool's crops, then
   ``zwz train merge``: a teacher that is good on crops, as the paper's large teachers are.
4. ``distill``: ``zwz serve`` of the teacher and the scripted question generator (it sees the crop only), then
   ``zwz distill`` on the distill pool: k teacher samples with consensus, the arm's ``--variant``, and with
   ``--difficulty-filter`` the student (the teacher's weights, the student's start) as the filter.
5. ``student``: ``zwz train sft`` on the R2I data, initialised from the teacher's weights (the learning curves:
   a random-init student learns nothing past colour on the global view in budget, a warm start finds the
   panel within minutes; "from scratch" here means no outside weights), then ``zwz train grpo`` with zwz's
   reward, then ``zwz train merge``.
6. ``eval``: ``zwz eval --serve <student>`` on the held-out pool: single (global), regional and agent modes
   and ``--coverage``; ``<out>/results.json`` holds each arm's accuracies, ``<out>/arms/<arm>/eval/report.json``
   the full report.
7. ``card``: the student's model card (``zwz_card.json``, README.md). With several arms, ``compare`` then runs
   ``zwz eval-compare`` over them into ``<out>/compare/``.

``<out>/commands.sh`` lists every command run, ``<out>/timings.json`` the wall-clock seconds per stage.
Torch threads: ``--threads`` (default: the cores not busy now, at least 1): on a shared CPU, OpenMP threads
waiting on a busy core make a step many times slower (docs/nano-learning-curves.md, "Threads").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_ARM", "SCALES", "NanoRecipe", "add_arguments", "default_threads", "recipe_from_args", "run_nano"]

SCALE_NAMES = ("ci", "full")
DEFAULT_DIMENSIONS = ("color", "structure")  # the curves: counting and OCR stay at chance in this budget
DEFAULT_ARM = "bbox_in_image"  # the paper's recipe, and the student `zwz serve` serves by default


@dataclass(frozen=True)
class NanoRecipe:
    """Every setting that shapes the result (recorded in ``<out>/recipe.json``; a rerun must match it)."""

    seed: int = 0
    scale: str = "full"
    dimensions: tuple[str, ...] = DEFAULT_DIMENSIONS
    difficulty_filter: bool = False
    # pools
    teacher_items: int = 6000
    distill_items: int = 2500
    bench_items: int = 300
    # teacher: AdamW lr 1e-3, warm-up 50, cosine, batch 8, 1200 steps (~17 min at 1.2 TRL steps/s on one core)
    batch_size: int = 8
    teacher_steps: int = 1200
    teacher_lr: float = 1e-3
    teacher_warmup: int = 50
    # distill: k samples at this temperature, the share that must agree, answer length
    distill_samples: int = 4
    distill_temperature: float = 0.7
    distill_consensus: float = 0.75
    answer_tokens: int = 16
    # student: from the teacher's weights, lr 5e-4, warm-up 20, cosine, 500 steps
    student_steps: int = 500
    student_lr: float = 5e-4
    student_warmup: int = 20
    # GRPO (DAPO loss, zwz's reward): groups of grpo_generations rollouts, one prompt per step
    grpo_steps: int = 50
    grpo_generations: int = 8
    grpo_lr: float = 1e-5
    save_steps: int = 200

    def __post_init__(self) -> None:
        from zwz.distill.zoomworld import NANO_DIMENSIONS

        if self.scale not in SCALE_NAMES:
            raise ValueError(f"scale must be one of {SCALE_NAMES}, got {self.scale!r}")
        if not self.dimensions or set(self.dimensions) - set(NANO_DIMENSIONS):
            raise ValueError(f"dimensions must be a non-empty subset of {NANO_DIMENSIONS}, got {list(self.dimensions)}")
        counts = {"teacher_items": self.teacher_items, "distill_items": self.distill_items,
                  "bench_items": self.bench_items, "teacher_steps": self.teacher_steps,
                  "student_steps": self.student_steps, "batch_size": self.batch_size,
                  "distill_samples": self.distill_samples, "save_steps": self.save_steps}
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {value}")
        if self.grpo_steps < 0 or self.grpo_generations < 2:
            raise ValueError("grpo-steps must be >= 0 and grpo-generations >= 2")


# ci: seconds per stage on 2 loaded cores; the teacher gets enough steps to answer in words, and greedy teacher
# answers (temperature 0) agree, so distill keeps items from a barely trained teacher.
SCALES: dict[str, NanoRecipe] = {
    "full": NanoRecipe(),
    "ci": NanoRecipe(scale="ci", teacher_items=24, distill_items=6, bench_items=6, batch_size=4, teacher_steps=40,
                     teacher_warmup=2, distill_samples=2, distill_temperature=0.0, distill_consensus=0.5,
                     answer_tokens=8, student_steps=3, student_warmup=0, grpo_steps=2, grpo_generations=2,
                     grpo_lr=1e-4, save_steps=2),
}

# flag -> the NanoRecipe field it overrides (None: keep the scale's value)
_OVERRIDES = {
    "teacher_items": int, "distill_items": int, "bench_items": int, "batch_size": int, "teacher_steps": int,
    "teacher_lr": float, "student_steps": int, "student_lr": float, "grpo_steps": int, "grpo_generations": int,
    "grpo_lr": float, "distill_samples": int, "distill_consensus": float, "save_steps": int,
}


def default_threads() -> int:
    """Torch threads for this run: the cores this process may use minus those busy now (1-minute load), >= 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, int(cores - os.getloadavg()[0]))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run folder (pools, models, runs, eval, timings.json)")
    p.add_argument("--seed", type=int, default=0, help="seeds the pools (disjoint per seed), the model and training")
    p.add_argument("--scale", choices=SCALE_NAMES, default="full",
                   help="full: the recommended sizes and steps (~90 min on 2 cores); ci: tiny, seconds per stage")
    from zwz.distill.training_data import VARIANTS
    from zwz.distill.zoomworld import NANO_DIMENSIONS

    p.add_argument("--arms", nargs="+", choices=VARIANTS, default=[DEFAULT_ARM],
                   help="R2I grounding variants to train and evaluate, one student each (Table 6; default "
                        f"{DEFAULT_ARM}, the served default model's)")
    p.add_argument("--dimensions", nargs="+", choices=NANO_DIMENSIONS, default=list(DEFAULT_DIMENSIONS),
                   help="nano ZoomWorld dimensions (default color structure)")
    p.add_argument("--difficulty-filter", action="store_true",
                   help="drop the R2I items the student (the teacher's weights) already gets right")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process (default: free cores)")
    for name, kind in _OVERRIDES.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help="override the scale's value")
    p.add_argument("--log-level", default="warning")


def recipe_from_args(args: argparse.Namespace) -> NanoRecipe:
    over = {name: getattr(args, name) for name in _OVERRIDES if getattr(args, name) is not None}
    return replace(SCALES[args.scale], seed=args.seed, dimensions=tuple(args.dimensions),
                   difficulty_filter=args.difficulty_filter, **over)


def _check_recipe(out: Path, recipe: NanoRecipe) -> None:
    """Refuse to resume a folder made with other settings (its stages would mix two recipes)."""
    path = out / "recipe.json"
    now = json.loads(json.dumps(asdict(recipe)))  # tuples as lists, as read back
    if path.exists():
        before = json.loads(path.read_text())
        if before != now:
            diff = ", ".join(f"{k} {before.get(k)!r} -> {v!r}" for k, v in now.items() if before.get(k) != v)
            raise ValueError(f"{out} holds a nano run with other settings ({diff}); use another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    _write_json(path, now)


@dataclass
class _Timings:
    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    def record(self, stage: str, seconds: float, ran: bool) -> None:
        # merged into what is on disk: a run for other arms may share the folder and write meanwhile
        stages = (_read_json(self.path) or {}).get("stages", {}) | self.data.get("stages", {})
        stages[stage] = {"seconds": round(seconds, 2), "ran_this_time": ran}
        self.data.update(stages=stages, total_seconds=round(sum(s["seconds"] for s in stages.values()), 2))
        _write_json(self.path, self.data)


def run_nano(out: str | Path, recipe: NanoRecipe, *, arms: tuple[str, ...] = (DEFAULT_ARM,),
             threads: int | None = None, say: Callable[[str], None] = logger.info) -> dict[str, Any]:
    """Run (or resume) the recipe under ``out`` for each arm; returns ``timings.json``'s content with each arm's
    accuracies added (``results``)."""
    import torch

    from zwz.distill.training_data import VARIANTS
    from zwz.train.nano_stages import ARM_STAGES, SHARED_STAGES, StageEnv, stage_compare

    if not arms or set(arms) - set(VARIANTS) or len(set(arms)) != len(arms):
        raise ValueError(f"arms must be distinct variants among {VARIANTS}, got {list(arms)}")
    out = Path(out)
    _check_recipe(out, recipe)
    threads = threads or default_threads()
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the `zwz serve` subprocesses (teacher, eval) inherit it
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for folder in ("stages", "logs"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    timings = _Timings(out / "timings.json", _read_json(out / "timings.json") or {})
    timings.data.update(scale=recipe.scale, seed=recipe.seed, threads=threads)
    say(f"zwz train nano: {out} (scale {recipe.scale}, seed {recipe.seed}, arms {' '.join(arms)}, dimensions "
        f"{' '.join(recipe.dimensions)}, {threads} torch thread{'s' if threads > 1 else ''})")
    plan = [(name, stage, None) for name, stage in SHARED_STAGES.items()]
    plan += [(name, stage, arm) for arm in arms for name, stage in ARM_STAGES.items()]
    if len(arms) > 1:
        plan.append(("compare", stage_compare, None))
    results: dict[str, Any] = {}
    for index, (name, stage, arm) in enumerate(plan, 1):
        key = name if arm is None else f"{arm}/{name}"
        marker = out / "stages" / f"{key}.json"
        tag = f"[{index}/{len(plan)}] {key}"
        if marker.exists():
            done = json.loads(marker.read_text())
            say(f"{tag}: done before ({done['seconds']:.1f} s), skipped")
            timings.record(key, done["seconds"], ran=False)
        else:
            say(f"{tag}: {(stage.__doc__ or '').splitlines()[0]}")
            started = time.monotonic()
            outputs = stage(StageEnv(out, recipe, say, arm=arm, arms=arms))
            seconds = time.monotonic() - started
            marker.parent.mkdir(parents=True, exist_ok=True)
            _write_json(marker, {"seconds": round(seconds, 2), "outputs": outputs})
            timings.record(key, seconds, ran=True)
            say(f"{tag}: done in {seconds:.1f} s")
        if name == "eval":
            results[arm] = json.loads(marker.read_text())["outputs"]["accuracy"]
    results = (_read_json(out / "results.json") or {}) | results  # other arms' runs into the same folder kept
    _write_json(out / "results.json", results)
    fmt = lambda v: "–" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    for arm, acc in results.items():
        say(f"zwz train nano: {arm}: global {fmt(acc.get('single'))}, regional {fmt(acc.get('regional'))}; "
            f"model {out / 'arms' / arm / 'models' / 'student'}")
    per_stage = ", ".join(f"{k} {v['seconds']:.0f}s" for k, v in timings.data["stages"].items())
    say(f"zwz train nano: {timings.data['total_seconds']:.0f} s of stages ({per_stage})")
    return dict(timings.data, results=results)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _write_json(path: Path, data: Any) -> None:
    """Write through a temporary file: a marker, the timings or the results land whole or not at all."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def run_from_args(args: argparse.Namespace) -> int:
    from zwz.serve_process import ServeError
    from zwz.train.nano_stages import StageError

    try:
        recipe = recipe_from_args(args)
        run_nano(args.out, recipe, arms=tuple(args.arms), threads=args.threads,
                 say=lambda line: print(line, flush=True))
    except (StageError, ServeError, ValueError) as exc:  # a server that did not start: rerun to resume
        print(f"zwz train nano: error: {exc}", file=sys.stderr)
        return 1
    return 0
