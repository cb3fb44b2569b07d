"""From settings to a running engine: the embedded default model, engine choice, logging of what is served."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from zwz.server.engines.base import Engine
from zwz.server.engines.vllm_setup import VllmSettings, resolve_engine
from zwz.server.settings import ServerSettings
from zwz.tiny_models import build_tiny_model, is_current_tiny_model, is_tiny_model

logger = logging.getLogger(__name__)

DEFAULT_FAMILY = "qwen3_vl"  # ZwZ-2B/4B/8B are Qwen3-VL


def zwz_home() -> Path:
    """Where zwz keeps what it builds (the embedded default model): $ZWZ_HOME or ~/.cache/zwz."""
    return Path(os.environ.get("ZWZ_HOME") or Path.home() / ".cache" / "zwz")


def embedded_default_model() -> Path:
    """The tiny Qwen3-VL checkpoint served when no --model is given; built offline on first use."""
    folder = zwz_home() / "models" / "tiny-qwen3-vl"
    if not is_current_tiny_model(folder):  # missing, or built by an older zwz
        logger.info("building the embedded default checkpoint at %s (offline, a few seconds)", folder)
        build_tiny_model(DEFAULT_FAMILY, folder)
    return folder


def build_engine(settings: ServerSettings) -> Engine:
    model_dir = Path(settings.model) if settings.model else embedded_default_model()
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a model folder (no config.json)")
    random_weights = is_tiny_model(model_dir)
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
