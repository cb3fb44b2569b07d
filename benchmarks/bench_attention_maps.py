"""Attention maps: plain answer vs answer + map (fast path) vs the reference method.

    python benchmarks/bench_attention_maps.py                           # tiny Qwen3-VL on CPU
    python benchmarks/bench_attention_maps.py --family qwen2_5_vl --sizes 448 1344 2048
    python benchmarks/bench_attention_maps.py --preset qwen2_5_vl_7b     # random weights, real size (GPU)

For each image size (encoded at full resolution: max_pixels = size^2, as the paper does) it times, in
one process and interleaved round by round:
- answer:        a greedy answer of --max-tokens tokens (one generate call);
- answer + map:  the same generate with the prefill captured, then the generic suffix and the kernel;
- map (fast):    the relative-attention map alone, fast path (one prefill + generic suffix + kernel);
- map (ref):     the reference method: two eager passes with output_attentions=True.
Peak memory is the extra over what the process held before the call: CUDA max_memory_allocated on GPU,
the peak RSS on CPU (Linux lets a process reset its own peak via /proc/self/clear_refs).
Targets (CPU, tiny model, 1344 px): answer + map <= 1.3x answer; fast map >= 5x faster than the reference
and >= 10x less extra peak memory.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from zwz.analytics.attention import capture
from zwz.analytics.attention.relative_attention import build_pair, from_question_capture, relative_attention, resolve_layers
from zwz.tiny_models import PRESETS, build_tiny_model, model_config

QUESTION = "What is written on the small sign near the door?"


def scene(size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), (90, 120, 160))
    draw = ImageDraw.Draw(img)
    for i in range(60):
        x, y, r = (i * 131) % size, (i * 71) % size, 6 + i % 40
        draw.rectangle([x, y, x + r, y + r], fill=((i * 50) % 255, (i * 80) % 255, (i * 30) % 255))
    draw.text((size // 3, size // 2), "EXIT 42", fill=(255, 255, 255))
    return img


class PeakMemory:
    """Extra peak memory of a call, in MiB, over what was held just before it."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    @staticmethod
    def _status(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"{field} not in /proc/self/status")

    def measure(self, fn: Callable[[], object]) -> float:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            fn()
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - before) / 2**20
        before = self._status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset this process's peak RSS to its current RSS
        fn()
        return (self._status("VmHWM") - before) / 2**20


def load(args: argparse.Namespace):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from zwz import compat
    from zwz.server.engines.model_loading import pick_device, pick_dtype

    compat.install()
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    family = args.preset.rsplit("_", 1)[0] if args.preset else args.family
    folder = Path(args.model) if args.model else build_tiny_model(family, Path(tempfile.mkdtemp()) / "model")
    processor = AutoProcessor.from_pretrained(folder)
    if args.preset:  # a real-size model with random weights, made in memory on the device (no 15+ GB file)
        config = model_config(family, PRESETS[args.preset], processor.tokenizer)
        config.get_text_config()._attn_implementation = capture.register()
        with torch.device(device):
            model = AutoModelForImageTextToText.from_config(config, dtype=dtype,
                                                            attn_implementation=capture.attn_implementation())
        return model.eval(), processor, device, f"{args.preset} (random weights)"
    model = AutoModelForImageTextToText.from_pretrained(
        folder, dtype=dtype, attn_implementation=capture.attn_implementation()).to(device).eval()
    return model, processor, device, folder


def run(args: argparse.Namespace) -> None:
    model, processor, device, folder = load(args)
    num_layers = model.config.get_text_config().num_hidden_layers
    layers = resolve_layers(args.layer, num_layers)
    memory = PeakMemory(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows = []
    for size in args.sizes:
        pair = build_pair(processor, scene(size), QUESTION, max_pixels=size * size)
        inputs = {k: (v.to(device).to(model.dtype) if k == "pixel_values" else v.to(device))
                  for k, v in pair.inputs.items()}
        gen = dict(max_new_tokens=args.max_tokens, min_new_tokens=args.max_tokens, do_sample=False)

        @torch.inference_mode()
        def answer():
            model.generate(**inputs, **gen)

        @torch.inference_mode()
        def answer_and_map():
            with capture.capture(set(layers)) as store:
                model.generate(**inputs, **gen)
            return from_question_capture(model, pair, store, layers)

        def fast_map():
            return relative_attention(model, processor, pair, layers=layers)

        def reference_map():
            return relative_attention(model, processor, pair, layers=layers, method="reference")

        methods = {"answer": answer, "answer+map": answer_and_map, "map fast": fast_map, "map ref": reference_map}
        for fn in methods.values():  # warm-up
            fn()
        times = {name: [] for name in methods}
        for _ in range(args.rounds):
            for name, fn in methods.items():
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                times[name].append(time.perf_counter() - t0)
        peaks = {name: max(memory.measure(fn) for _ in range(2)) for name, fn in methods.items()}
        rows.append((size, pair.image_span[1] - pair.image_span[0], pair.question_len,
                     {k: statistics.median(v) * 1e3 for k, v in times.items()}, peaks))

    print(f"\nmodel: {folder}  device={device}  dtype={model.dtype}  layers={layers} of {num_layers}  "
          f"max_tokens={args.max_tokens}  rounds={args.rounds}")
    header = (f"{'px':>5} {'img tok':>7} | {'answer':>9} {'ans+map':>9} {'map fast':>9} {'map ref':>9} | "
              f"{'extra peak MiB: ans':>19} {'ans+map':>8} {'fast':>8} {'ref':>9} | "
              f"{'ans+map/ans':>11} {'ref/fast t':>10} {'ref/fast mem':>12}")
    print(header)
    print("-" * len(header))
    for size, n_img, n_prompt, t, m in rows:
        fast_mem = max(m["map fast"], 1.0)  # below 1 MiB the RSS granularity is noise
        print(f"{size:>5} {n_img:>7} | {t['answer']:>7.1f}ms {t['answer+map']:>7.1f}ms {t['map fast']:>7.1f}ms "
              f"{t['map ref']:>7.1f}ms | {m['answer']:>19.1f} {m['answer+map']:>8.1f} {m['map fast']:>8.1f} "
              f"{m['map ref']:>9.1f} | {t['answer+map'] / t['answer']:>11.3f} {t['map ref'] / t['map fast']:>10.1f} "
              f"{m['map ref'] / fast_mem:>12.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: a freshly built tiny or preset model)")
    parser.add_argument("--family", choices=["qwen2_5_vl", "qwen3_vl"], default="qwen3_vl")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="random weights at a real model's size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[448, 1344, 2048])
    parser.add_argument("--layer", type=int, default=None, help="LLM layer (default: relative depth 24/36)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
