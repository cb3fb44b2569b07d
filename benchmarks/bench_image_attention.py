"""Time image-span attention: the Triton kernel vs the torch path vs the reference, at Qwen-VL sizes.

    python benchmarks/bench_image_attention.py
    python benchmarks/bench_image_attention.py --model qwen3-vl-8b --image-tokens 5400 --peak-bw 3.35e12

On CUDA: every model in --model at every --image-tokens (default 256, 2304, 5400), all layers, bf16, with
the L2 cache flushed before each timed call (torch.cuda.Event timing, median of --iters after --warmup).
Bandwidth is the bytes of K read (prefix + both suffixes) over the latency; its fraction is of --peak-bw,
by default picked from the device name (H100 SXM 3.35e12 B/s, H200 4.8e12 B/s). On CPU: only the torch
paths, at small sizes and the first --layers layers (Triton needs a GPU; its interpreter is not timed).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from zwz.kernels import image_span_attention_reference, image_span_attention_torch


@dataclass(frozen=True)
class ModelShape:
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int


# From the models' config.json text configs (num_hidden_layers, num_attention_heads, num_key_value_heads).
MODELS = {
    "qwen2.5-vl-7b": ModelShape(num_layers=28, num_heads=28, num_kv_heads=4, head_dim=128),
    "qwen3-vl-8b": ModelShape(num_layers=36, num_heads=32, num_kv_heads=8, head_dim=128),
}
# Chat-template tokens around the image: system turn + "<|im_start|>user\n<|vision_start|>" before it,
# "<|vision_end|>" after it; the question's own tokens (question + "<|im_end|>\n<|im_start|>assistant\n")
# and the generic instruction's ("Write a general description of the image." + the same closing).
TEXT_BEFORE_IMAGE, TEXT_AFTER_IMAGE, QUESTION_LEN, GENERIC_LEN = 15, 1, 30, 14

# Peak HBM bandwidth in B/s by device-name fragment, most specific first (NVIDIA datasheets).
PEAK_BANDWIDTH = [("H200", 4.8e12), ("H100 PCIe", 2.0e12), ("H100 NVL", 3.9e12), ("H100", 3.35e12)]


def make_inputs(
    shape: ModelShape, image_tokens: int, dtype: torch.dtype, device: str, num_layers: int
) -> tuple[tuple, int]:
    """Arguments of one call, with k_prefix a strided view of a question cache (L, Hkv, P + Sq, D); K bytes."""
    prefix_len = TEXT_BEFORE_IMAGE + image_tokens + TEXT_AFTER_IMAGE
    L, Hkv, D = num_layers, shape.num_kv_heads, shape.head_dim
    cache = torch.randn(L, Hkv, prefix_len + QUESTION_LEN, D, device=device, dtype=dtype)
    q = torch.randn(L, 2, shape.num_heads, D, device=device, dtype=dtype)
    k_generic = torch.randn(L, Hkv, GENERIC_LEN, D, device=device, dtype=dtype)
    args = (q, cache[:, :, :prefix_len], cache[:, :, prefix_len:], k_generic, TEXT_BEFORE_IMAGE,
            TEXT_BEFORE_IMAGE + image_tokens)  # fmt: skip
    k_bytes = (cache.numel() + k_generic.numel()) * cache.element_size()
    return args, k_bytes


def time_cuda(fn: Callable[[], object], warmup: int, iters: int) -> float:
    """Median seconds per call, with L2 flushed before each so K comes from HBM as after a long prefill."""
    flush = torch.empty(256 << 20, dtype=torch.int8, device="cuda")  # > L2 of H100 (50 MB) and H200
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def time_cpu(fn: Callable[[], object], warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_bandwidth(arg: float | None) -> float | None:
    if arg is not None or not torch.cuda.is_available():
        return arg
    name = torch.cuda.get_device_name()
    return next((bw for fragment, bw in PEAK_BANDWIDTH if fragment in name), None)


def run_case(
    backends: dict[str, Callable], call_args: tuple, timer: Callable, warmup: int, iters: int
) -> tuple[dict[str, float], float]:
    """Seconds per call of each backend (NaN when out of memory) and the largest gap between their outputs."""
    seconds, outputs = {}, []
    for name, fn in backends.items():
        try:
            outputs.append(fn(*call_args))  # also compiles the Triton kernels before timing
            seconds[name] = timer(lambda fn=fn: fn(*call_args), warmup, iters)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            seconds[name] = float("nan")
    max_diff = max((float((out - outputs[0]).abs().max()) for out in outputs), default=float("nan"))
    return seconds, max_diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--image-tokens", nargs="+", type=int, default=None,
                        help="default: 256 2304 5400 on CUDA, 256 1024 on CPU")  # fmt: skip
    parser.add_argument("--layers", type=int, default=None, help="layers to use (default: all on CUDA, 4 on CPU)")
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    parser.add_argument("--peak-bw", type=float, default=None, help="peak memory bandwidth, B/s")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--skip-reference", action="store_true", help="skip the slow, memory-hungry reference")
    args = parser.parse_args()

    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    image_tokens = args.image_tokens or ([256, 2304, 5400] if on_gpu else [256, 1024])
    peak = peak_bandwidth(args.peak_bw)
    backends: dict[str, Callable] = {"torch": image_span_attention_torch}
    if on_gpu:
        from zwz.kernels.image_attention import image_span_attention_triton

        backends = {"triton": image_span_attention_triton, **backends}
        bandwidth_note = f"peak bandwidth {peak:.3g} B/s" if peak else "peak bandwidth unknown (pass --peak-bw)"
        print(f"device: {torch.cuda.get_device_name()}, {bandwidth_note}, {args.dtype}, L2 flushed before each call")
    else:
        print(f"device: CPU ({torch.get_num_threads()} threads), {args.dtype}. "
              "Triton needs a GPU: timing the torch paths only.")  # fmt: skip
    if not args.skip_reference:
        backends["reference"] = image_span_attention_reference
    first, *others = backends

    header = f"{'model':<14} {'layers':>6} {'img tok':>7} {'K MiB':>7}"
    header += "".join(f" | {name + ' ms':>12} {'GB/s':>7} {'%peak':>6}" for name in backends)
    header += " | " + "  ".join(f"{name}/{first}" for name in others) + " | max|diff|"
    print(header)
    print("-" * len(header))
    for model in args.model:
        shape = MODELS[model]
        num_layers = args.layers or (shape.num_layers if on_gpu else 4)
        for tokens in image_tokens:
            call_args, k_bytes = make_inputs(shape, tokens, dtype, device, num_layers)
            timer = time_cuda if on_gpu else time_cpu
            seconds, max_diff = run_case(backends, call_args, timer, args.warmup, args.iters)
            del call_args
            row = f"{model:<14} {num_layers:>6} {tokens:>7} {k_bytes / 2**20:>7.1f}"
            for name in backends:
                bandwidth = k_bytes / seconds[name]
                share = f"{100 * bandwidth / peak:>5.1f}%" if peak else f"{'-':>6}"
                row += f" | {seconds[name] * 1e3:>12.3f} {bandwidth / 1e9:>7.1f} {share}"
            ratios = (f"{seconds[name] / seconds[first]:>{len(name) + len(first) + 1}.2f}" for name in others)
            row += " | " + "  ".join(ratios)
            print(f"{row} | {max_diff:.1e}", flush=True)
    print(f"ratios: latency over {first}'s (the speed-up of {first}); GB/s: bytes of K read (prefix + both "
          "suffixes) per second; max|diff|: largest gap between the backends' probabilities")  # fmt: skip


if __name__ == "__main__":
    main()
