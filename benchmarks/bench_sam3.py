"""Time the SAM3 box proposer: preprocessing, the image encoder, and the prompts batched over shared image
features versus one prompt per forward pass.

    python benchmarks/bench_sam3.py                                  # tiny random SAM3 (plumbing only)
    python benchmarks/bench_sam3.py --model /models/sam3 --device cuda
    python benchmarks/bench_sam3.py --real-size --device cuda        # the real architecture, random bf16 weights

``--real-size`` builds ``Sam3Config()`` (the facebook/sam3 shapes, ~840M parameters) with random weights:
timings equal the trained model's, detections are meaningless. Each figure is the median of --iters runs
after one warm-up; on CUDA the clock is read after ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from PIL import Image

from zwz.distill.sam3.boxes import Sam3BoxProposer, _broadcast
from zwz.distill.sam3.preprocess import preprocess_images

NAMES = ["red car", "street sign", "dog", "coffee cup", "laptop", "potted plant", "clock", "bicycle", "bench",
         "umbrella", "traffic light", "fire hydrant", "person", "bird", "kite", "backpack"]


def photo(width: int, height: int) -> Image.Image:
    """A photo-sized gradient image (content does not change SAM3's cost)."""
    return Image.linear_gradient("L").resize((width, height)).convert("RGB")


def timed(fn: Callable[[], object], device: torch.device, iters: int) -> float:
    """Median milliseconds of ``fn`` over ``iters`` runs after one warm-up."""
    fn()
    samples = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def load(args: argparse.Namespace) -> Sam3BoxProposer:
    if args.model:
        return Sam3BoxProposer(args.model, device=args.device, prompt_batch_size=args.batch)
    if args.real_size:
        from transformers import AutoTokenizer, Sam3Config, Sam3Model

        from zwz.distill.sam3.tiny import build_tiny_sam3

        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        with tempfile.TemporaryDirectory() as tmp:  # only for a CLIP-style tokenizer; its vocab fits 49408
            tokenizer = AutoTokenizer.from_pretrained(build_tiny_sam3(f"{tmp}/tok"))
        torch.manual_seed(0)
        model = Sam3Model(Sam3Config()).to(device, dtype)
        return Sam3BoxProposer.from_model(model, tokenizer, prompt_batch_size=args.batch)
    from zwz.distill.sam3.tiny import build_tiny_sam3

    tmp = tempfile.mkdtemp(prefix="bench-sam3-")
    return Sam3BoxProposer(build_tiny_sam3(f"{tmp}/sam3"), device=args.device, prompt_batch_size=args.batch)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="a local SAM3 folder (default: the tiny random one)")
    p.add_argument("--real-size", action="store_true", help="facebook/sam3's architecture with random weights")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--prompts", type=int, default=16, help="object names per image (at most 16)")
    p.add_argument("--batch", type=int, default=16, help="prompts per forward pass")
    p.add_argument("--image", default="4032x3024", help="WIDTHxHEIGHT of the input photo")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--skip-propose", action="store_true", help="time the parts only (slow machines)")
    args = p.parse_args()
    if not 1 <= args.prompts <= len(NAMES):
        p.error(f"--prompts must be in 1..{len(NAMES)}")
    width, height = (int(v) for v in args.image.lower().split("x"))
    proposer = load(args)
    image, names = photo(width, height), NAMES[: args.prompts]
    n_params = sum(t.numel() for t in proposer.model.parameters())
    print(f"SAM3 {n_params / 1e6:.1f}M parameters on {proposer.device} ({proposer.dtype}), "
          f"input {proposer.settings.height}x{proposer.settings.width}, photo {width}x{height}, {len(names)} prompts")

    def report(label: str, fn: Callable[[], object]) -> None:
        print(f"  {label:<36} {timed(fn, proposer.device, args.iters):10.1f} ms", flush=True)

    pixels, _ = proposer._pixels(image)
    text = proposer._text(names[:1])
    batch = proposer._text(names[: args.batch])
    n = batch["input_ids"].shape[0]
    report("preprocess (CPU)", lambda: preprocess_images([image], proposer.settings))
    with torch.inference_mode():
        report("image encoder", lambda: proposer.model.get_vision_features(pixel_values=pixels))
        vision = proposer.model.get_vision_features(pixel_values=pixels)
        report("1 prompt on shared features", lambda: proposer.model(vision_embeds=vision, **text))
        report(f"{n} prompts, one pass", lambda: proposer.model(vision_embeds=_broadcast(vision, n), **batch))
    if args.skip_propose:
        return
    report(f"propose(): {len(names)} names, batch {args.batch}", lambda: proposer.propose(image, names))
    one_by_one = Sam3BoxProposer.from_model(proposer.model, proposer.tokenizer, proposer.settings, prompt_batch_size=1)
    report(f"propose(): {len(names)} names, batch 1", lambda: one_by_one.propose(image, names))

if __name__ == "__main__":
    main()
