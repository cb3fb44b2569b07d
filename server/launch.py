"""From settings to a running engine: malloc tuning, the embedded default model, engine choice, logging."""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

from zwz.model_card import read_card
from zwz.server.engines.base import Engine
from zwz.server.engines.vllm_setup import VllmSettings, resolve_engine
from zwz.server.settings import ServerSettings
from zwz.tiny_models import is_tiny_model

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "zwz-nano"  # the folder under zwz/models/ served without --model

# glibc malloc, tuned for a server that runs for weeks (issue 11, defect 9). Under steady load RSS kept growing
# while Python's objects did not: malloc_info showed the growth held as *free* memory in the per-thread arenas
# of the threads that preprocess and decode. Two glibc defaults cause it. The mmap threshold is dynamic: once a
# large tensor is freed glibc raises it (up to 32 MiB), so later image and activation tensors come from the
# arenas, whose freed holes are rarely given back to the OS; and every thread that allocates gets its own arena
# (up to 8 per core), each with its own holes. A fixed threshold sends every allocation of 256 KiB or more to
# mmap (returned to the OS when freed; fixing it also stops the dynamic raise), and two arenas bound the rest.
MALLOC_TUNING = {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 256 * 1024}
_MALLOPT_PARAM = {"MALLOC_ARENA_MAX": -8, "MALLOC_MMAP_THRESHOLD_": -3}  # M_ARENA_MAX, M_MMAP_THRESHOLD (malloc.h)


def tune_malloc() -> dict[str, int]:
    """Apply :data:`MALLOC_TUNING` to this process (``mallopt``) and, through the environment (glibc reads it at
    start), to the processes it starts (vLLM's engine core). A variable already set is the user's and is kept;
    glibc applied it at this process's start. Returns what this call set; nothing off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        logger.debug("not glibc: malloc left as it is")
        return {}
    applied: dict[str, int] = {}
    for name, value in MALLOC_TUNING.items():
        if name in os.environ:
            continue
        if mallopt(_MALLOPT_PARAM[name], value) != 1:
            raise OSError(f"mallopt refused {name}={value}")
        os.environ[name] = str(value)
        applied[name] = value
    if applied:
        logger.info("malloc tuned for a long-running server: %s", applied)
    return applied


def embedded_default_model() -> Path:
    """zwz-nano, the model served when no --model is given: trained here by ``zwz train nano`` and shipped in the
    package (``zwz/models/zwz-nano``, 13 MB; its card says on what)."""
    from importlib.resources import files

    folder = Path(str(files("zwz").joinpath("models", DEFAULT_MODEL_NAME)))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"the embedded default model is missing from this install ({folder}); "
                                "pass --model DIR, or reinstall zwz")
    return folder


def build_engine(settings: ServerSettings) -> Engine:
    tune_malloc()  # before the engine starts the threads that allocate (each would get its own arena)
    model_dir = Path(settings.model) if settings.model else embedded_default_model()
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a model folder (no config.json)")
    # a tiny model's marker travels through training; only a card (what it was trained on, what it scored)
    # says the weights are no longer random
    random_weights = is_tiny_model(model_dir) and read_card(model_dir) is None
    if random_weights:
        logger.warning("serving %s: a tiny model with RANDOM weights; its answers are gibberish. "
                       "Pass --model DIR to serve a trained ZwZ / Qwen-VL checkpoint.", model_dir)
    name = resolve_engine(settings.engine)
    engine = (_vllm_engine if name == "vllm" else _transformers_engine)(model_dir, settings, random_weights)
    info = engine.info
    logger.info("engine %s: %s (%s) on %s, %s, context %d", info.engine, model_dir, info.family, info.device,
                info.dtype, info.max_model_len)
    return engine


def _transformers_engine(model_dir: Path, settings: ServerSettings, random_weights: bool) -> Engine:
    from zwz.server.engines.transformers_engine import EngineSettings, TransformersEngine

    engine_settings = EngineSettings(
        max_batch_size=settings.max_batch_size or EngineSettings.max_batch_size,
        max_queue=settings.max_queue,
        batch_wait_ms=settings.batch_wait_ms,
        max_model_len=settings.max_model_len,
        default_max_tokens=settings.default_max_tokens,
        device=settings.device,
        dtype=settings.dtype,
    )
    return TransformersEngine(model_dir, engine_settings, random_weights=random_weights)


def vllm_settings(settings: ServerSettings) -> VllmSettings:
    """The server settings the vLLM engine takes (vLLM's names where it has them)."""
    return VllmSettings(
        max_model_len=settings.max_model_len,
        max_num_seqs=settings.max_batch_size,
        max_queue=settings.max_queue,
        default_max_tokens=settings.default_max_tokens,
        dtype=settings.dtype,
        device=settings.device,
        tensor_parallel_size=settings.tensor_parallel_size,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        limit_images=settings.limit_images or settings.max_images_per_request,
        enforce_eager=settings.enforce_eager,
    )


def _vllm_engine(model_dir: Path, settings: ServerSettings, random_weights: bool) -> Engine:
    from zwz.server.engines.vllm_engine import VllmEngine

    return VllmEngine(model_dir, vllm_settings(settings), random_weights=random_weights)
