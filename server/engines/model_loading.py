"""Loading a Qwen2.5-VL / Qwen3-VL folder with transformers: family, device, dtype, processor."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FAMILY_BY_MODEL_TYPE = {"qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl", "qwen2_vl": "qwen2_5_vl"}


def detect_family(model_dir: str | Path) -> str:
    """Read ``config.json`` and return ``qwen2_5_vl`` or ``qwen3_vl``; a clear error for anything else."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{model_dir} is not a model folder: no config.json")
    model_type = json.loads(config_path.read_text()).get("model_type", "")
    if model_type not in _FAMILY_BY_MODEL_TYPE:
        raise ValueError(f"{model_dir}: model_type {model_type!r} is not a Qwen-VL model (qwen2_5_vl, qwen3_vl)")
    return _FAMILY_BY_MODEL_TYPE[model_type]


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: str, device: str):
    """bf16 on GPU, fp32 on CPU (CPU bf16 matmuls are slow and lossy), unless asked otherwise."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16") from None


@dataclass
class LoadedModel:
    model: Any
    processor: Any
    family: str
    device: str
    dtype: Any
    max_position_embeddings: int


def load_model(
    model_dir: str | Path, *, device: str = "auto", dtype: str = "auto", attn_implementation: Any = "sdpa"
) -> LoadedModel:
    """Load model and processor from a local folder (never from a hub)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from zwz import compat

    compat.install()
    family = detect_family(model_dir)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(
        model_dir, dtype=torch_dtype, attn_implementation=attn_implementation, local_files_only=True
    )
    model.to(device).eval()
    text_config = model.config.get_text_config()
    return LoadedModel(
        model=model,
        processor=processor,
        family=family,
        device=device,
        dtype=torch_dtype,
        max_position_embeddings=int(text_config.max_position_embeddings),
    )
