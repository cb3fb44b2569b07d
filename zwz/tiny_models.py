"""Tiny random Qwen2.5-VL / Qwen3-VL checkpoints, built fully offline.

    zwz make-model --family qwen3_vl --out ./tiny-qwen3-vl
    zwz make-model --preset nano --out ./nano-qwen3-vl      # the size `zwz train nano` trains from scratch

No weights can be downloaded here, yet the tests and ``zwz train nano`` (which trains the served default from
a random nano model) need real model folders that both transformers and vLLM load. This builds them from
configs: a byte-level BPE tokenizer trained locally on a seeded corpus (carrying Qwen's special tokens), the
chat template, the image processor settings and seeded random weights. Building twice gives byte-identical files.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

Family = Literal["qwen2_5_vl", "qwen3_vl"]
FAMILIES: tuple[Family, ...] = ("qwen2_5_vl", "qwen3_vl")

# Marker file written into every folder this module builds; the server reads it to warn about random weights.
TINY_MARKER = "zwz_tiny_model.json"
# Bumped when the builder's output changes (recorded in each build's marker).
# 2: head size 32 (the smallest vLLM's CPU attention takes) and the video processor's real settings saved.
TINY_FORMAT = 2

# Qwen's special tokens, in Qwen's order (ids follow the trained vocabulary here, not Qwen's 151643+).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Added but not "special" in Qwen's tokenizer: they must survive decoding with skip_special_tokens=True.
PLAIN_ADDED_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"]

_WORDS = (
    "the a an of to in is it that on for with as was at by this from be or are what which how many much "
    "color colour red green blue yellow orange purple pink brown black white gray grey dark light "
    "text sign word letter number count object objects person people car cars dog cat bird tree house "
    "window door shirt hat flag symbol star cross circle square triangle hexagon shape structure "
    "material wood metal glass fabric brick stone plastic paper tile left right top bottom middle center "
    "small tiny large big near far inside outside above below between image picture photo region box red "
    "bounding focus only answer question option choose letter given choices description general write "
    "describe zoom crop tool call response function name arguments label bbox img idx yes no true false "
    "one two three four five six seven eight nine ten eleven twelve twenty thirty hundred "
    "I you he she we they there here is are be not can see look read find show tell"
).split()


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny models: small enough for 2 CPU cores, shaped like the real ones (GQA, M-RoPE)."""

    vocab_size: int = 2048
    # head_dim 32: the smallest vLLM's CPU attention kernels take (32, 64, 80, ...).
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vision_depth: int = 2
    vision_hidden_size: int = 32
    vision_intermediate_size: int = 64
    vision_heads: int = 2
    max_position_embeddings: int = 32768
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    vision_full_attention_blocks: tuple[int, ...] | None = None  # Qwen2.5-VL; None: the last block
    vision_deepstack_layers: tuple[int, ...] = (0,)  # Qwen3-VL


# The nano model `zwz train nano` trains from scratch (docs/nano-learning-curves.md): vision 128 wide x 4 blocks
# (2 heads of 64, deepstack at blocks 1 and 3), text 256 wide x 4 layers (4 heads of 64, 2 KV heads), 6.67M
# parameters; head dims >= 32, so vLLM's CPU attention takes it.
NANO_SPEC = TinySpec(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=2, vision_depth=4, vision_hidden_size=128, vision_intermediate_size=512,
                     vision_heads=2, vision_deepstack_layers=(1, 3))
# preset -> the family it is built as (the real-size presets say theirs in their names).
PRESET_FAMILIES: dict[str, Family] = {"nano": "qwen3_vl", "qwen2_5_vl_7b": "qwen2_5_vl", "qwen3_vl_8b": "qwen3_vl"}

# `nano`, then real models' shapes, for timing and memory runs with random weights (the weights do not change
# speed).
PRESETS: dict[str, TinySpec] = {
    "nano": NANO_SPEC,
    "qwen2_5_vl_7b": TinySpec(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vision_depth=32, vision_hidden_size=1280, vision_intermediate_size=3420,
        vision_heads=16, max_position_embeddings=128000, vision_full_attention_blocks=(7, 15, 23, 31)),
    "qwen3_vl_8b": TinySpec(
        vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
        num_key_value_heads=8, vision_depth=27, vision_hidden_size=1152, vision_intermediate_size=4304,
        vision_heads=16, max_position_embeddings=262144, head_dim=128, vision_deepstack_layers=(8, 16, 24)),
}


def _corpus(seed: int, n_lines: int = 4000) -> list[str]:
    """A seeded text corpus: words, numbers, punctuation, JSON and chat markup the models will see."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 16))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 2000)))
        line = " ".join(words)
        line = line[0].upper() + line[1:] + rng.choice([".", "?", "!", ":", ","])
        if rng.random() < 0.1:
            line = json.dumps({"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [rng.randint(0, 1000) for _ in range(4)]}})
        lines.append(line)
    lines += ["A. B. C. D.", "(A) (B) (C) (D)", "\\boxed{Yes} \\boxed{No}", "0123456789 +-*/=<>[]{}()'\"\n\t"]
    return lines


def _train_tokenizer(seed: int, vocab_size: int):
    """Byte-level BPE trained on the seeded corpus, with Qwen's special tokens appended."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    n_added = len(SPECIAL_TOKENS) + len(PLAIN_ADDED_TOKENS)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_added,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    tok.add_tokens(PLAIN_ADDED_TOKENS)
    return tok


def _chat_template(family: Family) -> str:
    return resources.files("zwz").joinpath(f"templates/{family}.jinja").read_text()


def _token_ids(tokenizer) -> dict[str, int]:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert all(isinstance(i, int) and i >= 0 for i in ids.values()), ids
    return ids


def model_config(family: Family, spec: TinySpec, tokenizer):
    """The transformers config of a model of ``family`` shaped by ``spec``, with ``tokenizer``'s token ids."""
    return _model_config(family, spec, _token_ids(tokenizer))


def _mrope_section(head_dim: int) -> list[int]:
    """M-RoPE's (t, h, w) split of the rotary half-dimension, in Qwen2.5-VL's 2:3:3 proportions ([16, 24, 24] at 128)."""
    unit = head_dim // 16
    return [2 * unit, 3 * unit, 3 * unit]


def _model_config(family: Family, spec: TinySpec, ids: dict[str, int]):
    text = dict(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    common = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    vision = dict(
        depth=spec.vision_depth,
        hidden_size=spec.vision_hidden_size,
        intermediate_size=spec.vision_intermediate_size,
        num_heads=spec.vision_heads,
        out_hidden_size=spec.hidden_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0,
                                   "mrope_section": _mrope_section(spec.hidden_size // spec.num_attention_heads)}
        full = spec.vision_full_attention_blocks or (spec.vision_depth - 1,)
        vision.update(patch_size=14, window_size=112, fullatt_block_indexes=list(full))
        cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)
        cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    else:
        from transformers import Qwen3VLConfig

        text["head_dim"] = spec.head_dim or spec.hidden_size // spec.num_attention_heads
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": _mrope_section(text["head_dim"]),
            "mrope_interleaved": True,
        }
        vision.update(patch_size=16, num_position_embeddings=2304,
                      deepstack_visual_indexes=list(spec.vision_deepstack_layers))
        cfg = Qwen3VLConfig(text_config=text, vision_config=vision, **common)
        cfg.architectures = ["Qwen3VLForConditionalGeneration"]
    return cfg


def _image_processor(family: Family):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    patch = 14 if family == "qwen2_5_vl" else 16
    # Real checkpoints' budgets: Qwen2.5-VL 56*56 .. 28*28*1280; Qwen3-VL 4096*... (32*32 granularity).
    factor = patch * 2
    return Qwen2VLImageProcessorPil(
        patch_size=patch,
        temporal_patch_size=2,
        merge_size=2,
        min_pixels=4 * factor * factor,
        max_pixels=1280 * factor * factor if family == "qwen2_5_vl" else 16384 * factor * factor // 16,
        image_mean=[0.48145466, 0.4578275, 0.40821073] if family == "qwen2_5_vl" else [0.5, 0.5, 0.5],
        image_std=[0.26862954, 0.26130258, 0.27577711] if family == "qwen2_5_vl" else [0.5, 0.5, 0.5],
    )


def build_tiny_model(family: Family, out_dir: str | Path, *, seed: int = 0, spec: TinySpec | None = None,
                     preset: str | None = None) -> Path:
    """Build a tiny random checkpoint folder for ``family`` at ``out_dir`` and return its path.

    ``preset`` (a key of :data:`PRESETS`, e.g. ``"nano"``) gives the sizes instead of ``spec`` and is recorded
    in the marker file; without either, the default tiny test model is built (unchanged by the presets).
    The folder is written to a temporary sibling and renamed into place, so a crash never leaves a
    half-written model that a later run would load.
    """
    import torch
    from transformers import AutoModelForImageTextToText, PreTrainedTokenizerFast

    from zwz import compat

    compat.install()
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    if preset is not None:
        if spec is not None:
            raise ValueError("give a preset or a spec, not both")
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
        if PRESET_FAMILIES[preset] != family:
            raise ValueError(f"preset {preset!r} is a {PRESET_FAMILIES[preset]} model, not {family}")
        spec = PRESETS[preset]
    spec = spec or TinySpec()
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        raw = _train_tokenizer(seed, spec.vocab_size)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=raw,
            bos_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            unk_token=None,
            model_max_length=spec.max_position_embeddings,
            clean_up_tokenization_spaces=False,
            padding_side="left",
        )
        tokenizer.chat_template = _chat_template(family)
        ids = _token_ids(tokenizer)
        cfg = _model_config(family, spec, ids)

        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(cfg, dtype=torch.float32)
        model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
        model.generation_config.pad_token_id = ids["<|endoftext|>"]
        model.generation_config.do_sample = False
        model.save_pretrained(tmp)

        processor = compat.make_processor(family, _image_processor(family), tokenizer, _chat_template(family))
        processor.save_pretrained(tmp)
        _normalise_saved_files(tmp)
        n_params = sum(p.numel() for p in model.parameters())
        marker = {"family": family, "seed": seed, "random_weights": True, "parameters": n_params,
                  "format": TINY_FORMAT}
        if preset is not None:  # only then: the default build's marker stays byte-identical
            marker["preset"] = preset
        (tmp / TINY_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("built tiny %s (%d parameters, random weights) at %s", family, n_params, out)
    return out


def _normalise_saved_files(folder: Path) -> None:
    """Drop fields that differ from run to run (none expected; kept as a guard for determinism)."""
    for path in folder.glob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "_name_or_path" in data:
            data.pop("_name_or_path")
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def is_tiny_model(folder: str | Path) -> bool:
    return (Path(folder) / TINY_MARKER).is_file()

