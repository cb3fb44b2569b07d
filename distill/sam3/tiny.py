"""A tiny random SAM3 checkpoint folder, built offline, for tests and for timing the box proposer's plumbing.

    python -c "from zwz.distill.sam3.tiny import build_tiny_sam3; build_tiny_sam3('./tiny-sam3')"

The real weights (``facebook/sam3``, ~848M parameters) are gated and never downloaded here. This builds a
folder with the same layout from a shrunken ``Sam3Config`` (~0.3M parameters, 224 px input): seeded random
weights, a small byte-level BPE tokenizer trained on object names with CLIP's special tokens, and the
image processor settings (``preprocessor_config.json``, the keys ``Sam3ImageProcessor`` saves). Building
twice gives byte-identical files. Random weights detect nothing meaningful: use it for shapes, dtypes,
devices and speed of everything around the model, never for quality.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["TINY_SAM3_IMAGE_SIZE", "build_tiny_sam3", "tiny_sam3_config"]

TINY_SAM3_IMAGE_SIZE = 224  # 16 x 16 patches of 14 px
TINY_SAM3_MARKER = "zwz_tiny_sam3.json"
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"  # CLIP's special tokens; the real SAM3 tokenizer is CLIP's
_NAMES = (
    "person man woman child dog cat bird horse car bus truck bicycle boat plane train bench chair table sofa "
    "bed lamp clock vase bottle cup glass bowl plate fork knife spoon laptop phone keyboard mouse book sign "
    "flag tree plant flower window door roof wall fence street road traffic light red blue green yellow white "
    "black small large wooden metal glass stone brick coffee cup school bus stop sign fire hydrant umbrella"
).split()


def _train_tokenizer(seed: int, vocab_size: int):
    """A byte-level BPE over seeded object phrases; wraps every prompt as ``<|startoftext|> ... <|endoftext|>``
    like CLIP's tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    rng = random.Random(seed)
    corpus = [" ".join(rng.choice(_NAMES) for _ in range(rng.randint(1, 4))) for _ in range(2000)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 2, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens([_BOS, _EOS])
    bos, eos = tok.token_to_id(_BOS), tok.token_to_id(_EOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{_BOS} $A {_EOS}", special_tokens=[(_BOS, bos),
                                                                                                 (_EOS, eos)])
    return tok


def tiny_sam3_config(vocab_size: int, bos_token_id: int, eos_token_id: int, image_size: int = TINY_SAM3_IMAGE_SIZE):
    """A ``Sam3Config`` with every part shrunk (widths 32, one or two layers, 16 queries); the real one's
    structure (ViT with windowed + global attention, FPN at 4x/2x/1x/0.5x, DETR encoder/decoder, presence
    head, mask decoder)."""
    from transformers import Sam3Config

    patch = 14
    if image_size % patch:
        raise ValueError(f"image_size must be a multiple of {patch}, got {image_size}")
    grid = image_size // patch  # tokens per side; the FPN upsamples it 4x and 2x
    vit = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=2, image_size=image_size, patch_size=patch, window_size=grid // 2,
               global_attn_indexes=[1], pretrain_image_size=image_size)
    return Sam3Config(
        vision_config=dict(backbone_config=vit, fpn_hidden_size=32,
                           backbone_feature_sizes=[[grid * 4] * 2, [grid * 2] * 2, [grid] * 2]),
        text_config=dict(model_type="clip_text_model", vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                         projection_dim=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=32,
                         bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=eos_token_id),
        geometry_encoder_config=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_encoder_config=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_decoder_config=dict(hidden_size=32, num_layers=2, num_queries=16, num_attention_heads=2,
                                 intermediate_size=64),
        mask_decoder_config=dict(hidden_size=32, num_attention_heads=2),
    )


def build_tiny_sam3(out_dir: str | Path, *, seed: int = 0, image_size: int = TINY_SAM3_IMAGE_SIZE) -> Path:
    """Build the tiny random SAM3 folder at ``out_dir`` (written to a temporary sibling, then renamed)."""
    import torch
    from transformers import PreTrainedTokenizerFast, Sam3Model

    from zwz.distill.sam3.preprocess import Sam3ImageSettings

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=_train_tokenizer(seed, 512), bos_token=_BOS,
                                            eos_token=_EOS, pad_token=_EOS, unk_token=None, model_max_length=32,
                                            clean_up_tokenization_spaces=False)
        cfg = tiny_sam3_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, image_size)
        torch.manual_seed(seed)
        model = Sam3Model(cfg).eval()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        defaults = Sam3ImageSettings()
        (tmp / "preprocessor_config.json").write_text(json.dumps({
            "image_processor_type": "Sam3ImageProcessor", "processor_class": "Sam3Processor",
            "size": {"height": image_size, "width": image_size}, "mask_size": {"height": 288, "width": 288},
            "image_mean": list(defaults.image_mean), "image_std": list(defaults.image_std),
            "rescale_factor": defaults.rescale_factor, "resample": defaults.resample, "do_resize": True,
            "do_rescale": True, "do_normalize": True, "do_convert_rgb": True}, indent=2, sort_keys=True) + "\n")
        n_params = sum(p.numel() for p in model.parameters())
        (tmp / TINY_SAM3_MARKER).write_text(json.dumps(
            {"seed": seed, "image_size": image_size, "parameters": n_params, "random_weights": True}, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("built tiny SAM3 (%d parameters, random weights) at %s", n_params, out)
    return out
