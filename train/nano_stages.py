"""The stages of ``zwz train nano`` (see :mod:`zwz.train.nano`), each through zwz's own commands.

Shared: pools, model, teacher. Per arm (an R2I variant), under ``<out>/arms/<arm>/``: distill, student, eval, card.
With several arms, compare (``zwz eval-compare``) puts them side by side under ``<out>/compare``.

Every stage runs ``zwz ...`` command lines in this process (:func:`zwz.cli.main`, the same parser and code as
the shell command, without a Python start-up and a transformers import per command) and appends each one to
``<out>/commands.sh``, so the recipe can be replayed by hand. Each command is idempotent or resumes by itself
(``zwz train sft/grpo`` from their last checkpoint, ``zwz distill`` from its journals, ``zwz eval`` from its
predictions), which is what lets the recipe resume inside a stage after ``kill -9``.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["ARM_STAGES", "SHARED_STAGES", "StageEnv", "StageError", "pool_seeds", "stage_compare"]

TEACHER_NAME = "nano-teacher"  # the served teacher's model name (also the difficulty filter's student)
QUESTIONER_MODEL = "oracle"  # the scripted generator's behaviour: the panel's own question first
# The scripted app's strict judge: nano answers are one word of a closed vocabulary, so an answer the rules do not
# match is wrong; with it every eval item, GRPO reward and difficulty check is decided (none "unjudged").
JUDGE_MODEL = "judge"


class StageError(RuntimeError):
    """A stage could not finish (a command failed, or produced nothing to go on with); rerun to resume."""


@dataclass
class StageEnv:
    """What the stages share: the run folder, the recipe's settings (``zwz.train.nano.NanoRecipe``), a printer,
    the arm a per-arm stage works for (None for the shared ones) and every arm of this run."""

    out: Path
    recipe: Any
    say: Callable[[str], None]
    arm: str | None = None
    arms: tuple[str, ...] = ()

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def arm_path(self, *parts: str) -> Path:
        """A path in this arm's folder, ``<out>/arms/<arm>/...``."""
        assert self.arm is not None, "a shared stage has no arm folder"
        return self.out.joinpath("arms", self.arm, *parts)

    def zwz(self, *argv: str | Path) -> None:
        """Run one ``zwz`` command line here; a non-zero status stops the recipe (rerun to resume)."""
        from zwz.cli import main

        args = [str(a) for a in argv]
        line = "zwz " + shlex.join(args)
        self.say(f"  $ {line}")
        with self.path("commands.sh").open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        started = time.monotonic()
        status = main(args)
        if status != 0:
            raise StageError(f"`{line}` exited with status {status} (rerun `zwz train nano` to resume)")
        logger.info("%s: %.1f s", args[0] if args[0] != "train" else " ".join(args[:2]), time.monotonic() - started)


def pool_seeds(seed: int) -> dict[str, int]:
    """The ZoomWorld seeds of the three pools: disjoint for every recipe seed.

    >>> pool_seeds(0)
    {'teacher': 1, 'distill': 2, 'bench': 3}
    """
    return {"teacher": 1000 * seed + 1, "distill": 1000 * seed + 2, "bench": 1000 * seed + 3}


# ------------------------------------------------------------------------------------------------- 1. pools
def _write_pool(folder: Path, n: int, seed: int, dims: list[str], mc_ratio: float) -> None:
    from zwz.distill.zoomworld import write_zoomworld

    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_zoomworld(tmp, n, seed, level="nano", dimensions=dims, multiple_choice_ratio=mc_ratio)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def _boxes_only(items_jsonl: Path, out: Path) -> None:
    """The pool's native boxes without its labels: image name, box, referent and dimension of each panel."""
    rows = []
    for line in items_jsonl.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            panels = [{k: p[k] for k in ("box", "label", "dimension")} for p in row["meta"]["panels"]]
            rows.append({"image": row["image"], "meta": {"panels": panels}})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def stage_pools(env: StageEnv) -> dict[str, Any]:
    """Three nano ZoomWorld pools with disjoint seeds: the teacher's (labels used), distill's (images and boxes
    only) and the held-out benchmark."""
    r, seeds = env.recipe, pool_seeds(env.recipe.seed)
    sizes = {"teacher": r.teacher_items, "distill": r.distill_items, "bench": r.bench_items}
    # MC items: half in the teacher's and the benchmark's pools (as the curves); none in distill's (never read).
    mc = {"teacher": 0.5, "distill": 0.0, "bench": 0.5}
    for name in ("teacher", "distill", "bench"):
        env.say(f"  {name} pool: {sizes[name]} nano items, seed {seeds[name]}, dimensions {' '.join(r.dimensions)}")
        _write_pool(env.path("pools", name), sizes[name], seeds[name], r.dimensions, mc[name])
    _boxes_only(env.path("pools", "distill", "items.jsonl"), env.path("pools", "distill", "boxes.jsonl"))
    return {"seeds": seeds, "sizes": sizes}


# ------------------------------------------------------------------------------------------------- 2. model
def stage_model(env: StageEnv) -> dict[str, Any]:
    """The nano Qwen3-VL from config, with the tiny models' tokenizer and chat template: random weights."""
    env.zwz("make-model", "--preset", "nano", "--seed", env.recipe.seed, "--out", env.path("models", "init"))
    return {"model": str(env.path("models", "init"))}


# ----------------------------------------------------------------------------------------------- 3. teacher
def _sft(env: StageEnv, *, model: Path, data: Path, run: Path, steps: int, lr: float, warmup: int,
         extra: tuple[str, ...] = ()) -> None:
    r = env.recipe
    env.zwz("train", "sft", "--model", model, "--data", data, "--out", run, *extra,
            "--max-steps", steps, "--batch-size", r.batch_size, "--lr", lr, "--lr-scheduler", "cosine",
            "--warmup-steps", warmup, "--save-steps", r.save_steps, "--save-total-limit", 2, "--seed", r.seed,
            "--logging-steps", max(1, steps // 20), "--no-progress", "--log-level", "warning")


def stage_teacher(env: StageEnv) -> dict[str, Any]:
    """SFT on the teacher pool's regional view (crops, ground-truth answers, MC answers as option text), merged."""
    r = env.recipe
    _sft(env, model=env.path("models", "init"), data=env.path("pools", "teacher"), run=env.path("runs", "teacher"),
         steps=r.teacher_steps, lr=r.teacher_lr, warmup=r.teacher_warmup,
         extra=("--view", "regional", "--mc-target", "text"))
    env.zwz("train", "merge", env.path("runs", "teacher"), "--out", env.path("models", "teacher"),
            "--log-level", "warning")
    return {"model": str(env.path("models", "teacher"))}


# ----------------------------------------------------------------------------------------------- 4. distill
@contextmanager
def _scripted(items_jsonl: Path) -> Iterator[str]:
    """The scripted app (``zwz.distill.scripted_teacher``) over the distill pool's scenes on a free loopback port:
    the question generator (model ``oracle``: it recognises the crop and asks about it) and the judge."""
    from zwz.distill.scripted_teacher import scripted_teacher_app
    from zwz.serve_process import serve_in_thread

    with serve_in_thread(scripted_teacher_app(items_jsonl), name="the scripted question generator",
                         startup_timeout=60) as url:
        yield url


def _kept(report: Path) -> int:
    return int(json.loads(report.read_text())["kept"]) if report.exists() else 0


def stage_distill(env: StageEnv) -> dict[str, Any]:
    """R2I on the distill pool with the arm's variant: the served teacher answers on crops (k samples, consensus;
    on the full image for ``direct``), the scripted generator asks (it sees the crop only), native boxes;
    optionally the difficulty filter."""
    from zwz.serve_process import serve_subprocess

    r = env.recipe
    pool = env.path("pools", "distill")
    run = env.arm_path("distill")
    serve_args = ["--engine", "transformers", "--served-model-name", TEACHER_NAME]
    with serve_subprocess(env.path("models", "teacher"), log_path=env.path("logs", f"serve-teacher-{env.arm}.log"),
                          extra_args=serve_args) as teacher, _scripted(pool / "items.jsonl") as scripted:
        argv: list[Any] = [
            "distill", "--images", pool / "images", "--annotations", pool / "boxes.jsonl",
            "--teacher", f"{teacher}={TEACHER_NAME}", "--question-teacher", f"{scripted}={QUESTIONER_MODEL}",
            "--questions", 1, "--samples", r.distill_samples, "--answer-temperature", r.distill_temperature,
            "--consensus", r.distill_consensus, "--min-side", 224, "--zoom", 1, "--variant", env.arm,
            "--seed", r.seed, "--max-tokens", r.answer_tokens, "--concurrency", 8, "--out", run, "--no-progress",
            # the servers' ports change from run to run, and with them the endpoints in distill's config; the
            # recipe itself refuses changed settings (recipe.json), so resuming across ports is safe
            "--force",
        ]
        if r.difficulty_filter:  # the student starts from the teacher's weights: the same server answers
            argv += ["--student", f"{teacher}={TEACHER_NAME}", "--student-samples", 4,
                     "--judge", f"{scripted}={JUDGE_MODEL}"]
        env.zwz(*argv)
    kept = _kept(run / "report.json")
    if kept == 0:
        raise StageError(f"zwz distill kept no items (see {run / 'report.json'}): the teacher never reached "
                         "consensus; train it longer (--teacher-steps) or lower --consensus")
    env.say(f"  distill kept {kept} items")
    return {"kept": kept, "trl_parquet": str(run / "train_trl.parquet"), "rl_parquet": str(run / "train_rl.parquet")}


# ----------------------------------------------------------------------------------------------- 5. student
def stage_student(env: StageEnv) -> dict[str, Any]:
    """SFT on the arm's R2I data from the teacher's weights (a random-init student does not learn in budget),
    then a few GRPO (DAPO) steps with zwz's reward; merged to the arm's student."""
    r = env.recipe
    data = env.arm_path("distill")
    _sft(env, model=env.path("models", "teacher"), data=data / "train_trl.parquet", run=env.arm_path("runs", "sft"),
         steps=r.student_steps, lr=r.student_lr, warmup=r.student_warmup)
    env.zwz("train", "merge", env.arm_path("runs", "sft"), "--out", env.arm_path("models", "student-sft"),
            "--log-level", "warning")
    source = env.arm_path("models", "student-sft")
    if r.grpo_steps > 0:
        with _scripted(env.path("pools", "distill", "items.jsonl")) as scripted:
            _grpo(env, data / "train_rl.parquet", scripted)
        source = env.arm_path("runs", "grpo")
    # bfloat16 on disk (13 MB, the committed default's size); a CPU server computes in float32 from it, so the
    # eval below measures exactly what is shipped
    env.zwz("train", "merge", source, "--out", env.arm_path("models", "student"), "--dtype", "bfloat16",
            "--log-level", "warning")
    return {"model": str(env.arm_path("models", "student"))}


def _grpo(env: StageEnv, data: Path, judge_url: str) -> None:
    r = env.recipe
    env.zwz("train", "grpo", "--model", env.arm_path("models", "student-sft"), "--data", data,
            "--out", env.arm_path("runs", "grpo"), "--max-steps", r.grpo_steps,
            "--num-generations", r.grpo_generations, "--batch-size", r.grpo_generations,
            "--max-completion-length", r.answer_tokens, "--lr", r.grpo_lr,
            "--judge-url", judge_url, "--judge-model", JUDGE_MODEL, "--save-steps", r.save_steps,
            "--save-total-limit", 2, "--seed", r.seed, "--logging-steps", 1, "--no-progress", "--log-level", "warning")


# -------------------------------------------------------------------------------------------------- 6. eval
EVAL_MODES = ("single", "regional", "agent")  # global and regional views (Table 7), the tool-use agent (Fig. 5)


def _accuracy(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {mode: s.get("accuracy") for mode, s in report.get("modes", {}).items()}
    out["zooming_gap"] = ((report.get("zooming_gap") or {}).get("gap") or {}).get("avg")
    cov = (report.get("coverage") or {}).get("all") or {}
    out["coverage"] = (cov.get("coverage") or {}).get("estimate")
    out["box_area_share"] = (cov.get("area_share") or {}).get("estimate")
    return out


def stage_eval(env: StageEnv) -> dict[str, Any]:
    """``zwz eval`` of the arm's served student on the held-out pool: global (single), regional and agent modes,
    and the relative-attention coverage of the evidence boxes."""
    r = env.recipe
    out = env.arm_path("eval")
    with _scripted(env.path("pools", "distill", "items.jsonl")) as scripted:
        env.zwz("eval", "--serve", env.arm_path("models", "student"), "--benchmark", env.path("pools", "bench"),
                "--modes", *EVAL_MODES, "--coverage", "--max-tokens", r.answer_tokens, "--out", out,
                "--judge-url", scripted, "--judge-model", JUDGE_MODEL, "--no-progress")
    acc = _accuracy(json.loads((out / "report.json").read_text()))
    env.say(f"  {env.arm}: " + ", ".join(f"{k} {'–' if v is None else f'{100 * v:.1f}%'}" for k, v in acc.items()))
    return {"report": str(out / "report.json"), "accuracy": acc}


# -------------------------------------------------------------------------------------------------- 7. card
def stage_card(env: StageEnv) -> dict[str, Any]:
    """The student's model card (``zwz_card.json``, README.md): its data, recipe and measured accuracies."""
    from dataclasses import asdict

    from zwz.model_card import write_card

    r = env.recipe
    report = json.loads(env.arm_path("eval", "report.json").read_text())
    kept = json.loads(env.arm_path("distill", "report.json").read_text())["kept"]
    modes = report["modes"]
    card = {
        "name": "zwz-nano",
        "trained_on": (f"{kept} R2I items distilled by `zwz train nano` (variant {env.arm}, seed {r.seed}) from "
                       f"{r.distill_items} nano ZoomWorld images ({', '.join(r.dimensions)}) by a teacher "
                       f"trained on {r.teacher_items}-image ZoomWorld crops; a 6.7M-parameter Qwen3-VL from "
                       "random initialisation, no outside weights"),
        "arm": env.arm,
        "recipe": asdict(r),
        "results": {f"{mode} accuracy": s["accuracy"] for mode, s in modes.items()}
                   | {"items": next(iter(modes.values()))["n_items"]},
        "eval": {mode: {"accuracy": s["accuracy"], "ci95": s.get("ci95"), "n": s["n_items"]}
                 for mode, s in modes.items()},
        "reproduce": f"zwz train nano --out runs/nano --seed {r.seed} --arms {env.arm}"
                     + ("" if r.scale == "full" else f" --scale {r.scale}"),
    }
    write_card(env.arm_path("models", "student"), card)
    return {"card": str(env.arm_path("models", "student", "zwz_card.json"))}


# ----------------------------------------------------------------------------------------------- 8. compare
def stage_compare(env: StageEnv) -> dict[str, Any]:
    """``zwz eval-compare`` of every arm's eval, beside the paper's Table 6 figures for the same arms."""
    runs = [env.path("arms", arm, "eval") for arm in env.arms]
    env.zwz("eval-compare", *runs, "--labels", *env.arms, "--paper-arms", *env.arms, "--out", env.path("compare"))
    return {"compare": str(env.path("compare"))}


# name -> the stage, in order
SHARED_STAGES: dict[str, Callable[[StageEnv], dict[str, Any]]] = {
    "pools": stage_pools,
    "model": stage_model,
    "teacher": stage_teacher,
}
ARM_STAGES: dict[str, Callable[[StageEnv], dict[str, Any]]] = {
    "distill": stage_distill,
    "student": stage_student,
    "eval": stage_eval,
    "card": stage_card,
}
