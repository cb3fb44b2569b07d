"""One-machine SFT and GRPO/DAPO with TRL's own trainers, resumable after ``kill -9``.

    zwz train grpo --model Qwen/Qwen3-VL-8B-Instruct-folder --data out/train_rl.parquet --out runs/grpo
    zwz train sft  --model ./tiny-qwen3-vl --data out/train_trl.parquet --out runs/sft --max-steps 20

Everything a run needs is TRL's (``SFTTrainer``, ``GRPOTrainer`` with ``loss_type="dapo"`` and
``epsilon_high``) or transformers' (checkpoints every ``save_steps``, ``resume_from_checkpoint`` restoring
step, optimiser, scheduler, RNG and data position, the tqdm progress bar). zwz adds the data reader, the
reward, the pixel budget, the JSONL log with its curve, and finding the checkpoint to resume from: the same
command, run again, continues where the last complete checkpoint left off.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

from zwz.train.checkpoints import latest_checkpoint
from zwz.train.options import TrainOptions, default_learning_rate

logger = logging.getLogger(__name__)

__all__ = ["FINAL_DIR", "apply_pixel_budget", "load_reward_fn", "run_training"]

FINAL_DIR = "final"  # <out>/final: the trained weights and processor at the end of a run


def _require_trl():
    try:
        import trl
    except ImportError as exc:
        raise ImportError("training needs TRL: pip install 'zwz[train]'") from exc
    return trl


def apply_pixel_budget(processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
    """Bound every training image to [min_pixels, max_pixels] pixels through the processor's own resize."""
    if min_pixels is None and max_pixels is None:
        return
    image_processor = processor.image_processor
    size = dict(image_processor.size)
    lo = min_pixels if min_pixels is not None else size["shortest_edge"]
    hi = max_pixels if max_pixels is not None else size["longest_edge"]
    factor = (image_processor.patch_size * image_processor.merge_size) ** 2  # one merged visual token
    lo = min(lo, hi)  # a budget below the processor's minimum lowers the minimum too
    if lo < factor:
        raise ValueError(f"pixel budget below one visual token ({factor} pixels): min {lo}, max {hi}")
    image_processor.size = {"shortest_edge": lo, "longest_edge": hi}
    for name, value in (("min_pixels", lo), ("max_pixels", hi)):
        if hasattr(image_processor, name):  # older processors read these attributes instead of ``size``
            setattr(image_processor, name, value)
    logger.info("per-image pixel budget: %d..%d pixels", lo, hi)


def load_reward_fn(spec: str) -> Callable:
    """A reward function from ``FILE.py:NAME`` (the form verl's ``custom_reward_function`` takes too)."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise ValueError(f"reward function must be FILE.py:NAME, got {spec!r}")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"reward file {file} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"zwz_user_reward_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"{file} has no function {name!r}")
    return fn


def _reward_functions(opts: TrainOptions, output_dir: Path) -> list[Callable]:
    from zwz.train.rewards import make_trl_reward

    judge = None
    if opts.judge_url:
        from zwz.scoring.judge import Judge

        judge = Judge(opts.judge_url, opts.judge_model, opts.judge_api_key, cache_path=output_dir / "judge_cache.jsonl")
    return [make_trl_reward(judge=judge, length_cap=opts.length_cap), *map(load_reward_fn, opts.reward_fns)]


def _common_args(opts: TrainOptions, *, tiny: bool, device: str) -> dict[str, Any]:
    import torch

    on_gpu = device.startswith("cuda")
    checkpointing = (not tiny) if opts.gradient_checkpointing is None else opts.gradient_checkpointing
    return dict(
        output_dir=opts.output_dir,
        max_steps=opts.max_steps,
        num_train_epochs=opts.epochs,
        gradient_accumulation_steps=opts.grad_accum,
        learning_rate=opts.learning_rate or default_learning_rate(opts.method, tiny),
        weight_decay=opts.weight_decay,
        max_grad_norm=opts.max_grad_norm,
        lr_scheduler_type=opts.lr_scheduler,
        warmup_steps=opts.warmup_steps,
        save_strategy="steps",
        save_steps=opts.save_steps,
        save_total_limit=opts.save_total_limit,
        logging_steps=opts.logging_steps,
        seed=opts.seed,
        use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        gradient_checkpointing=checkpointing,
        disable_tqdm=not opts.progress,
        report_to=[],
        dataloader_num_workers=0,
    )


def _trainer(opts: TrainOptions, model: Any, processor: Any, dataset: Any, common: dict[str, Any]):
    trl = _require_trl()
    if opts.method == "sft":
        args = trl.SFTConfig(per_device_train_batch_size=opts.batch_size or 1, max_length=opts.max_length, **common)
        return trl.SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    batch = opts.batch_size or opts.num_generations
    if batch % opts.num_generations:
        raise ValueError(f"batch size {batch} must be a multiple of num_generations {opts.num_generations}")
    args = trl.GRPOConfig(
        per_device_train_batch_size=batch,
        num_generations=opts.num_generations,
        temperature=opts.temperature,
        max_completion_length=opts.max_completion_length,
        loss_type=opts.loss_type,
        epsilon=opts.epsilon,
        epsilon_high=opts.epsilon_high,
        beta=opts.beta,
        use_vllm=opts.use_vllm,
        vllm_mode="colocate",
        **common,
    )
    rewards = _reward_functions(opts, Path(opts.output_dir))
    return trl.GRPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                           reward_funcs=rewards)


# Resume state inside a checkpoint folder, not part of the model a later step (merge, serve) reads.
_TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", "scaler.pt")


def _finished(checkpoint: Path, max_steps: int) -> bool:
    """Whether ``checkpoint`` is the run's last step (``max_steps`` -1: the step count the run planned)."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    last = max_steps if max_steps > 0 else int(state.get("max_steps") or 0)
    return last > 0 and int(state["global_step"]) >= last


def _export_checkpoint(checkpoint: Path, final: Path) -> None:
    """Copy a checkpoint's model and processor files (what ``save_model`` writes) to ``final``."""
    if final.exists():
        shutil.rmtree(final)
    final.mkdir(parents=True)
    for path in checkpoint.iterdir():
        if path.is_file() and path.name not in _TRAINING_STATE and not path.name.startswith("rng_state"):
            shutil.copy2(path, final / path.name)


def run_training(opts: TrainOptions) -> Path:
    """Train (or resume training) and return ``<out>/final``, the trained model and processor."""
    _require_trl()
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from zwz import compat
    from zwz.server.engines.model_loading import detect_family, pick_device, pick_dtype
    from zwz.tiny_models import TINY_MARKER, is_tiny_model
    from zwz.train.callbacks import CurveCallback
    from zwz.train.data import load_trl_dataset

    compat.install()
    family = detect_family(opts.model)
    tiny = is_tiny_model(opts.model)
    device = pick_device(opts.device)
    out = Path(opts.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    resume = latest_checkpoint(out)
    final = out / FINAL_DIR
    if resume is not None and _finished(resume, opts.max_steps):
        # transformers would take one more step from a checkpoint at max_steps; the run is already done
        logger.info("%s already reached the last step: writing %s from it", resume, final)
        _export_checkpoint(resume, final)
        if tiny:
            shutil.copy2(Path(opts.model) / TINY_MARKER, final / TINY_MARKER)
        return final

    dataset = load_trl_dataset(opts.data, limit=opts.limit, view=opts.view, mc_target=opts.mc_target)
    processor = AutoProcessor.from_pretrained(opts.model, local_files_only=True)
    apply_pixel_budget(processor, opts.min_pixels, opts.max_pixels)
    model = AutoModelForImageTextToText.from_pretrained(opts.model, dtype=pick_dtype("auto", device),
                                                        local_files_only=True)
    common = _common_args(opts, tiny=tiny, device=device)
    trainer = _trainer(opts, model, processor, dataset, common)
    trainer.add_callback(CurveCallback(out, title=f"zwz train {opts.method}: {Path(opts.model).name} ({family})"))

    if resume is not None:
        logger.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    trainer.save_model(str(final))  # weights + the processor (processing_class), for `zwz train merge`
    if tiny:  # still a toy: keep the marker the server warns about
        shutil.copy2(Path(opts.model) / TINY_MARKER, final / TINY_MARKER)
    logger.info("trained model written to %s", final)
    return final
