"""``zwz train merge``: a training output -> a model folder that ``zwz serve``, ``zwz eval`` and vLLM load.

    zwz train merge runs/grpo --out models/zwz-grpo                  # TRL run: its final/ or last checkpoint
    zwz train merge runs/grpo/checkpoint-200 --out models/zwz-200    # one TRL checkpoint
    zwz train merge runs/verl/checkpoints/global_step_500/actor --out models/zwz-verl \\
        [--verl-python /opt/verl/bin/python]                         # verl FSDP shards, through verl.model_merger

The folder gets the weights (safetensors, no optimizer state), the processor with its chat template, and the
generation config; files missing from the source (verl's merger writes weights only) come from
``--base-model``. It is written next to ``--out`` and renamed into place, so a crash never leaves a
half-written model.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from zwz.train.checkpoints import latest_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["is_verl_checkpoint", "merge_checkpoint", "resolve_trl_source"]

_FINAL = "final"
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
                    "chat_template.jinja", "chat_template.json", "video_preprocessor_config.json")


def is_verl_checkpoint(folder: str | Path) -> bool:
    """A verl FSDP actor folder: ``model_world_size_<W>_rank_<R>.pt`` shards."""
    return any(Path(folder).glob("model_world_size_*_rank_*.pt"))


def resolve_trl_source(source: str | Path) -> Path:
    """The folder holding weights: ``source`` itself, its ``final/``, or its latest complete checkpoint."""
    source = Path(source)
    if (source / "config.json").is_file():
        return source
    if (source / _FINAL / "config.json").is_file():
        return source / _FINAL
    found = latest_checkpoint(source)
    if found is None:
        raise FileNotFoundError(f"{source} holds no model: no config.json, {_FINAL}/ or checkpoint-N/")
    return found


def _verl_merge(actor: Path, target: Path, verl_python: str | None) -> None:
    python = verl_python or sys.executable
    if verl_python is None and importlib.util.find_spec("verl") is None:
        raise ImportError(f"{actor} is a verl FSDP checkpoint and verl is not installed here: pass --verl-python "
                          "with verl's environment's python, or run `python -m verl.model_merger merge --backend "
                          f"fsdp --local_dir {actor} --target_dir DIR` there and merge DIR")
    cmd = [python, "-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir", str(actor),
           "--target_dir", str(target)]
    logger.info("running %s", " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise OSError(f"verl.model_merger failed (exit {done.returncode}): {tail[0]}")


def _first_with(candidates: list[Path | None], name: str) -> Path | None:
    for folder in candidates:
        if folder is not None and (folder / name).is_file():
            return folder
    return None


def merge_checkpoint(source: str | Path, out: str | Path, *, base_model: str | Path | None = None,
                     dtype: str = "auto", verl_python: str | None = None) -> Path:
    """Write the servable model folder ``out`` from a TRL run/checkpoint or a verl FSDP actor checkpoint."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

    from zwz import compat
    from zwz.tiny_models import TINY_MARKER

    compat.install()
    source, out = Path(source), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"no checkpoint at {source}")
    base = Path(base_model) if base_model else None
    if base is not None and not (base / "config.json").is_file():
        raise FileNotFoundError(f"--base-model {base} is not a model folder (no config.json)")
    actor = source / "actor" if is_verl_checkpoint(source / "actor") else source
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if is_verl_checkpoint(actor):
            weights = staging / "verl_hf"
            _verl_merge(actor, weights, verl_python)
            extras = [actor / "huggingface", base]  # verl keeps the processor files beside the shards
        else:
            weights = resolve_trl_source(source)
            extras = [base]
        candidates = [weights, *extras]
        processor_dir = _first_with(candidates, "tokenizer_config.json")
        if processor_dir is None:
            raise FileNotFoundError(f"{source} has no processor/tokenizer files: pass --base-model")
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        model = AutoModelForImageTextToText.from_pretrained(weights, dtype=torch_dtype, local_files_only=True)
        target = staging / "model"
        model.save_pretrained(target)  # safetensors; no optimizer, scheduler or RNG state
        processor = AutoProcessor.from_pretrained(processor_dir, local_files_only=True)
        processor.save_pretrained(target)  # tokenizer, image processor and the chat template
        generation_dir = _first_with(candidates, "generation_config.json")
        if generation_dir is not None:
            GenerationConfig.from_pretrained(generation_dir).save_pretrained(target)
        marker = _first_with(candidates, TINY_MARKER)
        if marker is not None:  # keep the "random weights" marker the server warns about
            shutil.copy2(marker / TINY_MARKER, target / TINY_MARKER)
        if out.exists():
            shutil.rmtree(out)
        target.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("merged %s into %s", source, out)
    return out
