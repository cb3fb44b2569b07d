"""How fast a nano Qwen3-VL learns ZoomWorld's nano level from scratch on this CPU (issue 15's critical risk).

    python benchmarks/nano_learning_curve.py --view regional --minutes 10 --out runs/nano_lc/regional.jsonl
    python benchmarks/nano_learning_curve.py --view global --minutes 15 --out runs/nano_lc/global.jsonl
    python benchmarks/nano_learning_curve.py --view global --init runs/nano_lc/regional.pt ...   # warm start
    python benchmarks/nano_learning_curve.py --trl-steps 40 --out runs/nano_lc/trl.jsonl          # TRL's speed

A Qwen3-VL is built from config (``zwz.tiny_models``: the locally trained tokenizer, Qwen's chat template)
and trained with ground-truth answers, a plain PyTorch loop (AdamW, answer-token loss, warm-up then cosine),
on a fresh stream of nano items (seed 1). Every ``--eval-every`` minutes it scores held-out items (seed 2)
on both views, multiple choice and open: greedy exact match, computed in one teacher-forced pass (greedy
decoding gives the answer exactly when every answer token and the closing ``<|im_end|>`` are the argmax).
One JSON line per evaluation goes to ``--out``; the final weights to ``--save``. ``--trl-steps N`` instead
times ``zwz train sft``'s path (TRL's SFTTrainer via ``zwz.train``) on the same data for N steps.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("nano_learning_curve")


def build_model(args: argparse.Namespace, folder: Path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from zwz import compat
    from zwz.tiny_models import TinySpec, build_tiny_model

    spec = TinySpec(
        hidden_size=args.text_width, intermediate_size=args.text_width * 3, num_hidden_layers=args.text_layers,
        num_attention_heads=args.text_width // 64, num_key_value_heads=max(1, args.text_width // 128),
        vision_depth=args.vision_depth, vision_hidden_size=args.vision_width,
        vision_intermediate_size=args.vision_width * 4, vision_heads=max(1, args.vision_width // 64),
        vision_deepstack_layers=tuple(range(1, args.vision_depth, 2)) or (0,),
    )  # fmt: skip
    build_tiny_model("qwen3_vl", folder, seed=args.seed, spec=spec)
    compat.install()
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    return model, processor, spec


def encode(processor, item, view: str, mc_target: str = "letter") -> dict:
    """Prompt + answer + <|im_end|> token ids, the answer span's positions and the image's patches.

    ``mc_target="text"`` makes a multiple-choice item's target the option's text ("red") instead of its letter:
    zwz's scorer (``rule_match`` with the options) takes either, and the text needs no option-to-letter binding.
    """
    image = item.load_image() if view == "global" else item.load_crop()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": item.prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = processor(text=[text], images=[image], return_tensors="pt")
    tok = processor.tokenizer
    target = item.answer_text if mc_target == "text" else item.answer
    answer_ids = tok(target, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    return {"prompt_ids": enc["input_ids"][0].tolist(), "answer_ids": answer_ids,
            "mm_types": enc["mm_token_type_ids"][0].tolist(),
            "pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"],
            "dimension": item.dimension, "mc": item.multiple_choice}  # fmt: skip


def collate(rows: list[dict], pad_id: int) -> dict:
    import torch

    seqs = [r["prompt_ids"] + r["answer_ids"] for r in rows]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    for b, (r, s) in enumerate(zip(rows, seqs)):  # right padding: M-RoPE positions follow the mask
        ids[b, : len(s)] = torch.tensor(s)
        types[b, : len(r["mm_types"])] = torch.tensor(r["mm_types"])
        mask[b, : len(s)] = 1
        labels[b, len(r["prompt_ids"]) : len(s)] = torch.tensor(r["answer_ids"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "mm_token_type_ids": types,
            "pixel_values": torch.cat([r["pixel_values"] for r in rows]),
            "image_grid_thw": torch.cat([r["image_grid_thw"] for r in rows])}  # fmt: skip


def loss_and_hits(model, batch: dict):
    """Mean answer-token loss and, per row, whether greedy decoding would give the answer exactly."""
    import torch

    labels = batch["labels"]
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1]  # (B, S-1, V)
    target = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
    keep = target != -100
    hits = ((logits.argmax(-1) == target) | ~keep).all(dim=1)
    return loss, hits


def evaluate(model, sets: dict[str, list[dict]], pad_id: int, batch_size: int) -> dict:
    import torch

    model.eval()
    out: dict = {}
    with torch.no_grad():
        for view, rows in sets.items():
            hits: list[bool] = []
            for i in range(0, len(rows), batch_size):
                hits += loss_and_hits(model, collate(rows[i : i + batch_size], pad_id))[1].tolist()
            for kind, sel in (("mc", True), ("open", False)):
                picked = [h for h, r in zip(hits, rows) if r["mc"] == sel]
                out[f"{view}_{kind}"] = round(sum(picked) / max(1, len(picked)), 4)
                for dim in sorted({r["dimension"] for r in rows}):
                    d = [h for h, r in zip(hits, rows) if r["mc"] == sel and r["dimension"] == dim]
                    out[f"{view}_{kind}_{dim}"] = round(sum(d) / max(1, len(d)), 3)
    model.train()
    return out


def train_loop(args: argparse.Namespace) -> None:
    import torch

    from zwz.distill.zoomworld import iter_zoomworld

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        model, processor, spec = build_model(args, Path(tmp) / "model")
    if args.init:
        model.load_state_dict(torch.load(args.init, weights_only=True))
    n_params = sum(p.numel() for p in model.parameters())
    pad_id = processor.tokenizer.pad_token_id
    dims = tuple(args.dims.split(","))
    held = list(iter_zoomworld(args.eval_items, seed=2, level="nano", dimensions=dims, multiple_choice_ratio=0.5))
    views = ("global", "regional") if args.eval_views == "both" else (args.eval_views,)
    sets = {v: [encode(processor, it, v, args.mc_target) for it in held] for v in views}
    stream = iter_zoomworld(10**7, seed=1, level="nano", dimensions=dims, multiple_choice_ratio=args.mc_ratio)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    est_steps = args.est_steps

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        if args.schedule == "constant":
            return args.lr
        progress = min(1.0, (step - args.warmup) / max(1, est_steps - args.warmup))
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"setting": args.name or args.view, "args": vars(args), "parameters": n_params, "spec": str(spec)}
    with out.open("w") as fh:
        fh.write(json.dumps({"meta": meta}) + "\n")
    logger.info("model: %.2fM parameters; %s", n_params / 1e6, meta["setting"])
    start, train_s, step, seen, next_eval = time.time(), 0.0, 0, 0, 0.0
    losses: list[float] = []
    while True:
        minutes = train_s / 60
        if minutes >= next_eval or minutes >= args.minutes:
            t0 = time.time()
            acc = evaluate(model, sets, pad_id, args.eval_batch)
            row = {"minutes": round(minutes, 2), "step": step, "items_seen": seen,
                   "loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4), "eval_s": round(time.time() - t0, 1),
                   **acc}  # fmt: skip
            logger.info("%s", row)
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            next_eval += args.eval_every
            if minutes >= args.minutes:
                break
        t0 = time.time()
        view = args.view
        if args.view == "mixed":  # regional share falls linearly from 1 to 0 over --mix-minutes
            share = max(0.0, 1 - minutes / args.mix_minutes)
            view = "regional" if torch.rand(()).item() < share else "global"
        rows = [encode(processor, next(stream), view, args.mc_target) for _ in range(args.batch)]
        batch = collate(rows, pad_id)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss, _ = loss_and_hits(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step, seen = step + 1, seen + args.batch
        train_s += time.time() - t0
        if step % 50 == 0:
            logger.info("step %d  %.1f min  loss %.3f  %.2f steps/s", step, train_s / 60,
                        sum(losses[-50:]) / 50, step / train_s)  # fmt: skip
    with out.open("a") as fh:
        fh.write(json.dumps({"done": True, "steps": step, "train_s": round(train_s, 1),
                             "steps_per_s": round(step / train_s, 3), "wall_s": round(time.time() - start, 1)}) + "\n")
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.save)


def trl_speed(args: argparse.Namespace) -> None:
    """Steps/s of ``zwz train sft`` (TRL's SFTTrainer) on nano items, same model and batch as the loop."""
    import torch

    from zwz.distill.zoomworld import write_zoomworld

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_model(args, root / "model")
        write_zoomworld(root / "data", args.trl_steps * args.batch, seed=1, level="nano",
                        dimensions=tuple(args.dims.split(",")), multiple_choice_ratio=args.mc_ratio)  # fmt: skip
        cmd = [sys.executable, "-m", "zwz.cli", "train", "sft", "--model", str(root / "model"), "--data",
               str(root / "data"), "--out", str(root / "run"), "--max-steps", str(args.trl_steps), "--batch-size",
               str(args.batch), "--lr", str(args.lr), "--save-steps", str(10**6), "--no-progress"]  # fmt: skip
        import os
        import subprocess

        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        t0 = time.time()
        subprocess.run(cmd, check=True, env=env)
        wall = time.time() - t0
        log = root / "run" / "train_log.jsonl"
        rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"trl_steps": args.trl_steps, "batch": args.batch, "wall_s": round(wall, 1),
              "steps_per_s_incl_startup": round(args.trl_steps / wall, 3), "log_tail": rows[-3:]}  # fmt: skip
    out.write_text(json.dumps(result) + "\n")
    logger.info("%s", result)


def table(paths: list[str]) -> str:
    """A markdown table of the runs' evaluations: accuracy (global / regional, MC / open) against minutes."""
    head = "| setting | min | steps | items | global MC | global open | regional MC | regional open |"
    lines = [head + " per dimension (open, the trained view) |", "|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
        meta = rows[0]["meta"]
        view = "regional" if meta["args"]["view"] == "regional" else "global"
        for r in (r for r in rows if "minutes" in r and (r["step"] > 0 or meta["args"].get("init"))):
            dims = ", ".join(f"{k.split('_')[-1]} {v:.0%}" for k, v in r.items() if k.startswith(f"{view}_open_"))
            keys = ("global_mc", "global_open", "regional_mc", "regional_open")
            cells = [f"{r[k]:.0%}" if k in r else "-" for k in keys]
            lines.append(f"| {meta['setting']} | {r['minutes']:.1f} | {r['step']} | {r['items_seen']} | "
                         + " | ".join(cells) + f" | {dims} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--view", choices=("global", "regional", "mixed"), default="global", help="training view")
    p.add_argument("--mix-minutes", type=float, default=5.0, help="mixed: minutes over which crops phase out")
    p.add_argument("--name", default=None)
    p.add_argument("--minutes", type=float, default=10.0, help="training minutes (evaluation excluded)")
    p.add_argument("--eval-every", type=float, default=2.5)
    p.add_argument("--eval-items", type=int, default=240)
    p.add_argument("--eval-views", choices=("both", "global", "regional"), default="both")
    p.add_argument("--eval-batch", type=int, default=24)
    p.add_argument("--dims", default="color,structure,counting,ocr")
    p.add_argument("--mc-ratio", type=float, default=0.5)
    p.add_argument("--mc-target", choices=("letter", "text"), default="letter",
                   help="what a multiple-choice item's answer is trained (and scored) as")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--est-steps", type=int, default=1500, help="cosine horizon in steps")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--text-width", type=int, default=256)
    p.add_argument("--text-layers", type=int, default=4)
    p.add_argument("--vision-width", type=int, default=128)
    p.add_argument("--vision-depth", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default=None, help="a --save file to start from (e.g. the regional run's)")
    p.add_argument("--save", default=None)
    p.add_argument("--trl-steps", type=int, default=0, help="time zwz train sft for N steps instead")
    p.add_argument("--table", nargs="+", metavar="JSONL", help="print the markdown table of these runs and exit")
    p.add_argument("--out")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.table:
        print(table(args.table))  # noqa: T201 - a benchmark's output
        return
    if not args.out:
        p.error("--out is required")
    if args.trl_steps:
        trl_speed(args)
    else:
        train_loop(args)


if __name__ == "__main__":
    main()
