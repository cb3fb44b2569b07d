"""Attention maps on the vLLM engine: plain answer vs answer + map (captured in vLLM's workers) vs map alone.

    python benchmarks/bench_vllm_attention_maps.py                       # tiny Qwen3-VL, vLLM's CPU build
    python benchmarks/bench_vllm_attention_maps.py --family qwen2_5_vl --sizes 448 1344 2048 --rounds 5
    python benchmarks/bench_vllm_attention_maps.py --model DIR           # a real checkpoint (GPU vLLM)

One zwz ``VllmEngine`` in this process (fp32 on CPU, as the transformers engine). For each image size
(encoded at full resolution: max_pixels = size^2, as the paper does) it times, interleaved round by round,
each round on a new image (so no request answers from vLLM's prefix or encoder cache; the map's generic
prompt does hit the question's cached prefix, as it does in service):
- answer:      a greedy chat answer of --max-tokens tokens;
- answer+map:  the same request with ``zwz_attention`` (the answer's own prefill captured, plus the generic
               suffix prefill and the kernel in the worker);
- map:         ``/v1/zoom/attention``'s path alone (a one-token question + the generic suffix + the kernel).
Target (vLLM's CPU build, tiny model, 1344 px): answer + map <= 1.2x answer.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from _workload import scene
from zwz.server.engines.base import AttentionOptions, ChatMessage, GenerationRequest, SamplingParams
from zwz.tiny_models import build_tiny_model

QUESTION = "What is written on the small sign near the door?"
HEADER = f"{'px':>5} {'img tok':>7} | {'answer':>9} {'ans+map':>9} {'map':>9} | {'ans+map/ans':>11}"


def picture(size: int, seed: int) -> Image.Image:
    return Image.open(io.BytesIO(scene(size, seed))).convert("RGB")


async def run(args: argparse.Namespace) -> None:
    from zwz.server.engines.vllm_engine import VllmEngine
    from zwz.server.engines.vllm_setup import VllmSettings

    folder = Path(args.model) if args.model else build_tiny_model(args.family, Path(tempfile.mkdtemp()) / "model")
    # A step's token budget bounds vLLM's encoder cache: it must hold the largest image (2048 px: 4096 tokens).
    engine = VllmEngine(folder, VllmSettings(dtype=args.dtype, max_model_len=args.max_model_len,
                                             max_num_batched_tokens=args.max_num_batched_tokens))
    await engine.start()
    layers = None if args.layer is None else [args.layer]
    rows: list[int] = []
    try:
        for size in args.sizes:
            def request(seed: int, mapped: bool) -> GenerationRequest:
                req = GenerationRequest(
                    messages=[ChatMessage("user", [picture(size, seed), QUESTION])],
                    sampling=SamplingParams(max_tokens=args.max_tokens, temperature=0.0), stream=False,
                    attention=AttentionOptions(layers=layers) if mapped else None)
                req.max_pixels = size * size
                return req

            async def answer(seed: int, mapped: bool) -> int:
                chunks = [chunk async for chunk in await engine.submit(request(seed, mapped))]
                assert (chunks[-1].attention is not None) == mapped
                return chunks[-1].visual_tokens

            async def map_only(seed: int) -> int:
                result = await engine.attention_maps.analyze(picture(size, seed), QUESTION, layers=layers,
                                                             max_pixels=size * size)
                return result.grid_shape[0] * result.grid_shape[1]

            methods = {"answer": lambda s: answer(s, False), "answer+map": lambda s: answer(s, True),
                       "map": map_only}
            seed = 1000 * size
            for fn in methods.values():  # warm-up
                seed += 1
                visual = await fn(seed)
            times: dict[str, list[float]] = {name: [] for name in methods}
            for _ in range(args.rounds):
                for name, fn in methods.items():
                    seed += 1
                    t0 = time.perf_counter()
                    await fn(seed)
                    times[name].append((time.perf_counter() - t0) * 1e3)
            t = {name: statistics.median(v) for name, v in times.items()}
            if not rows:
                print(f"\nmodel: {folder}  engine=vllm ({engine.info.device}, {engine.info.dtype})  "
                      f"max_tokens={args.max_tokens}  rounds={args.rounds}  layer={args.layer or 'default'}")
                print(HEADER)
                print("-" * len(HEADER))
            rows.append(size)
            print(f"{size:>5} {visual:>7} | {t['answer']:>7.1f}ms {t['answer+map']:>7.1f}ms {t['map']:>7.1f}ms | "
                  f"{t['answer+map'] / t['answer']:>11.3f}", flush=True)
    finally:
        await engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: a freshly built tiny model)")
    parser.add_argument("--family", choices=["qwen2_5_vl", "qwen3_vl"], default="qwen3_vl")
    parser.add_argument("--sizes", type=int, nargs="+", default=[448, 1344, 2048])
    parser.add_argument("--layer", type=int, default=None, help="LLM layer (default: relative depth 24/36)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--max-num-batched-tokens", type=int, default=8192)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
