"""Relative attention (paper App. 12): where the model looks to answer *this* question.

For the answer-start position (the last prompt position), each LLM layer's softmax attention to the
image tokens, averaged over heads (Eq. 5-6; Qwen-VL's MLP merger makes the connector map the identity,
Eq. 9), is divided element-wise by the same map for the generic instruction q' (Eq. 11):

    A_rel = A(x, q) / (A(x, q') + eps),   eps = 1e-6

and one layer is kept (Eq. 12; the paper's 24th of 36 layers, chosen here by relative depth).

Two methods:
- ``fast``: one normal sdpa prefill of the question prompt (the same prefill that answers it), with the
  last-position queries and the keys captured (``capture.py``); the generic prompt shares the image
  prefix, so its KV is reused and only the generic suffix is prefilled; one kernel pass
  (``zwz.kernels.image_span_attention``) reads each selected layer's keys once for both queries.
- ``reference``: two eager forward passes over the full prompts with ``output_attentions=True``, as the
  public reference code does; it materialises every layer's S x S matrix. Kept to validate ``fast``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from zwz.analytics.attention import capture

logger = logging.getLogger(__name__)

GENERIC_INSTRUCTION = "Write a general description of the image."
EPS = 1e-6
# The paper reads the 24th of Qwen3-VL-8B's 36 LLM layers (App. 12, Eq. 12).
PAPER_LAYER, PAPER_DEPTH = 24, 36

Method = Literal["fast", "reference"]
LayerSpec = int | Sequence[int] | Literal["all"] | None


def default_layer(num_layers: int) -> int:
    """0-based index of the layer at the paper's relative depth (24 of 36 -> index 23).

    >>> default_layer(36), default_layer(28), default_layer(6)
    (23, 18, 3)
    """
    return max(0, min(num_layers - 1, round(num_layers * PAPER_LAYER / PAPER_DEPTH) - 1))


def resolve_layers(spec: LayerSpec, num_layers: int) -> list[int]:
    """``None`` -> the default layer; an int (negative counts from the end); a list; or ``"all"``.

    >>> resolve_layers(None, 36), resolve_layers(-1, 36), resolve_layers([0, 5], 6)
    ([23], [35], [0, 5])
    """
    if spec is None:
        return [default_layer(num_layers)]
    if spec == "all":
        return list(range(num_layers))
    wanted = [spec] if isinstance(spec, int) else list(spec)
    if not wanted:
        raise ValueError("no layer selected")
    out = []
    for layer in wanted:
        if not isinstance(layer, int) or not -num_layers <= layer < num_layers:
            raise ValueError(f"layer {layer!r} is out of range: this model has {num_layers} LLM layers "
                             f"(0..{num_layers - 1}, or negative from the end)")
        out.append(layer % num_layers)
    return sorted(set(out))


@dataclass
class PromptPair:
    """The question prompt and the generic prompt, which share everything up to the image's end."""

    inputs: dict[str, torch.Tensor]  # processor output for the question prompt (batch of 1)
    generic_ids: torch.Tensor  # (1, Sg)
    generic_mm_token_type_ids: torch.Tensor | None
    prefix_len: int  # tokens shared by both prompts (up to and including the last <|vision_end|>)
    image_span: tuple[int, int]  # [start, end) of the last image's tokens
    grid_shape: tuple[int, int]  # merged token grid (rows, cols) of that image
    image_grid_thw: tuple[int, int, int]  # in patches, before merging

    @property
    def question_len(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


def pair_from_inputs(inputs: dict[str, torch.Tensor], processor, generic: str = GENERIC_INSTRUCTION) -> PromptPair:
    """Derive the generic prompt from a processed question prompt (its last image is the one mapped).

    The generic prompt is the question prompt with the user's text after the last image replaced by
    ``generic``: prefix tokens (image included) + tokens of ``generic`` + the prompt's closing tokens
    from the user turn's ``<|im_end|>`` on (so any chat template's ending is kept exactly).
    """
    tokenizer = processor.tokenizer
    ids = inputs["input_ids"][0]
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    vision_end = tokenizer.convert_tokens_to_ids("<|vision_end|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ends = (ids == vision_end).nonzero().flatten()
    if len(ends) == 0 or "image_grid_thw" not in inputs:
        raise ValueError("the prompt has no image to map")
    prefix_len = int(ends[-1]) + 1
    end = prefix_len - 1
    start = end
    while start > 0 and int(ids[start - 1]) == image_id:
        start -= 1
    closing = (ids[prefix_len:] == im_end).nonzero().flatten()
    if len(closing) == 0:
        raise ValueError("the image is not followed by the end of its user turn")
    tail = ids[prefix_len + int(closing[0]):]
    generic_ids = tokenizer(generic, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    full = torch.cat([ids[:prefix_len], generic_ids.to(ids.device), tail])[None]
    mm = inputs.get("mm_token_type_ids")
    generic_mm = None
    if mm is not None:
        generic_mm = torch.cat([mm[0, :prefix_len], torch.zeros(full.shape[1] - prefix_len, dtype=mm.dtype,
                                                                device=mm.device)])[None]
    t, h, w = (int(x) for x in inputs["image_grid_thw"][-1])
    merge = processor.image_processor.merge_size
    grid_shape = (h // merge, w // merge)
    if end - start != t * grid_shape[0] * grid_shape[1]:
        raise ValueError(f"image span of {end - start} tokens does not match grid {t}x{grid_shape}")
    return PromptPair(inputs=inputs, generic_ids=full, generic_mm_token_type_ids=generic_mm, prefix_len=prefix_len,
                      image_span=(start, end), grid_shape=grid_shape, image_grid_thw=(t, h, w))


def build_pair(processor, image: Image.Image, question: str, *, generic: str = GENERIC_INSTRUCTION,
               min_pixels: int | None = None, max_pixels: int | None = None) -> PromptPair:
    """Process ``[image, question]`` as a one-turn chat and derive the generic prompt from it."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    kwargs: dict[str, Any] = {}
    if min_pixels is not None or max_pixels is not None:
        size = processor.image_processor.size
        kwargs["size"] = {"shortest_edge": min_pixels or size["shortest_edge"],
                          "longest_edge": max_pixels or size["longest_edge"]}
    inputs = dict(processor(text=[text], images=[image], return_tensors="pt", **kwargs))
    return pair_from_inputs(inputs, processor, generic)


@dataclass
class RelativeAttention:
    layer: int  # the layer of ``grid`` (0-based)
    grid: np.ndarray  # (rows, cols) relative attention of ``layer``
    layers: dict[int, np.ndarray]  # every computed layer's relative attention
    question: dict[int, np.ndarray]  # head-averaged attention of the question, per layer
    generic: dict[int, np.ndarray]  # head-averaged attention of the generic instruction, per layer
    grid_shape: tuple[int, int]
    image_grid_thw: tuple[int, int, int]
    method: Method
    timings_ms: dict[str, float] = field(default_factory=dict)


def _to_device(inputs: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in inputs.items():
        value = value.to(model.device)
        out[key] = value.to(model.dtype) if key == "pixel_values" else value
    return out


def _finish(pair: PromptPair, layers: list[int], question: torch.Tensor, generic: torch.Tensor, method: Method,
            timings: dict[str, float], eps: float) -> RelativeAttention:
    """question/generic: (L, T) head-averaged image-span attention -> per-layer grids and ratios."""
    rows, cols = pair.grid_shape
    t = pair.image_grid_thw[0]
    q = question.float().reshape(len(layers), t, rows, cols).mean(1).cpu().numpy()  # frames averaged (images: t=1)
    g = generic.float().reshape(len(layers), t, rows, cols).mean(1).cpu().numpy()
    rel = q / (g + eps)
    by_layer = {layer: rel[i] for i, layer in enumerate(layers)}
    main = layers[0] if len(layers) == 1 else max(layers, key=lambda x: -abs(x - layers[len(layers) // 2]))
    return RelativeAttention(
        layer=main, grid=by_layer[main], layers=by_layer,
        question={layer: q[i] for i, layer in enumerate(layers)},
        generic={layer: g[i] for i, layer in enumerate(layers)},
        grid_shape=pair.grid_shape, image_grid_thw=pair.image_grid_thw, method=method, timings_ms=timings,
    )


def from_span_attention(pair: PromptPair, layers: list[int], question: torch.Tensor, generic: torch.Tensor, *,
                        timings: dict[str, float] | None = None, eps: float = EPS) -> RelativeAttention:
    """Finish the fast method from (L, T) head-averaged image-span attention computed elsewhere (vLLM's workers)."""
    return _finish(pair, layers, question, generic, "fast", dict(timings or {}), eps)


@torch.inference_mode()
def relative_attention(model, processor, pair: PromptPair, *, layers: LayerSpec = None, method: Method = "fast",
                       eps: float = EPS) -> RelativeAttention:
    """Relative attention of ``pair``'s question over its last image, for the selected layers."""
    num_layers = model.config.get_text_config().num_hidden_layers
    selected = resolve_layers(layers, num_layers)
    if method == "reference":
        return _reference(model, pair, selected, eps)
    if method != "fast":
        raise ValueError(f"unknown method {method!r}: use 'fast' or 'reference'")
    if not capture.uses_capture(model):
        raise ValueError("the fast method needs the model loaded with attn_implementation=capture.attn_implementation()")
    t0 = time.perf_counter()
    with capture.capture(set(selected)) as store:
        model(**_to_device(pair.inputs, model), use_cache=True)
    timings = {"prefill": (time.perf_counter() - t0) * 1e3}
    return from_question_capture(model, pair, store, selected, eps=eps, timings=timings)


@torch.inference_mode()
def from_question_capture(model, pair: PromptPair, store: capture.CaptureStore, layers: list[int], *,
                          eps: float = EPS, timings: dict[str, float] | None = None) -> RelativeAttention:
    """Finish the fast method from a capture of the question's prefill (e.g. the one ``generate`` ran)."""
    from transformers import DynamicCache

    from zwz.kernels import image_span_attention

    timings = dict(timings or {})
    P, Sq = pair.prefix_len, pair.question_len
    num_layers = model.config.get_text_config().num_hidden_layers
    missing = [layer for layer in layers if layer not in store.last_query]
    if missing or len(store.keys) != num_layers:
        raise RuntimeError(f"the capture is incomplete (layers {missing} have no query)")

    # Generic instruction: reuse the image prefix's KV, prefill only its own suffix.
    t0 = time.perf_counter()
    cache = DynamicCache()
    for layer in range(num_layers):
        cache.update(store.keys[layer][:, :, :P], store.values[layer][:, :, :P], layer)
    generic_ids = pair.generic_ids.to(model.device)
    attention_mask = torch.ones_like(generic_ids)
    rope_kwargs = {"attention_mask": attention_mask, "image_grid_thw": pair.inputs["image_grid_thw"].to(model.device)}
    if pair.generic_mm_token_type_ids is not None:
        rope_kwargs["mm_token_type_ids"] = pair.generic_mm_token_type_ids.to(model.device)
    position_ids, _ = model.model.get_rope_index(generic_ids, **rope_kwargs)
    with capture.capture(set(layers)) as generic_store:
        model(input_ids=generic_ids[:, P:], attention_mask=attention_mask, past_key_values=cache,
              position_ids=position_ids[..., P:], use_cache=True)
    timings["generic_suffix"] = (time.perf_counter() - t0) * 1e3

    # One pass over each selected layer's keys for both queries.
    t0 = time.perf_counter()
    start, end = pair.image_span
    question_maps, generic_maps = [], []
    for layer in layers:
        q = torch.stack([store.last_query[layer][0], generic_store.last_query[layer][0]])[None]  # (1, 2, Hq, D)
        k_question = store.keys[layer][0]  # (Hkv, Sq, D)
        k_generic = generic_store.keys[layer][0]  # (Hkv, P + Sg_suffix, D)
        probs = image_span_attention(q, k_question[None, :, :P], k_question[None, :, P:Sq], k_generic[None, :, P:],
                                     start, end)  # (1, 2, T)
        question_maps.append(probs[0, 0])
        generic_maps.append(probs[0, 1])
    timings["kernel"] = (time.perf_counter() - t0) * 1e3
    return _finish(pair, layers, torch.stack(question_maps), torch.stack(generic_maps), "fast", timings, eps)


def _reference(model, pair: PromptPair, layers: list[int], eps: float) -> RelativeAttention:
    """Two eager passes with output_attentions=True (every layer's S x S matrix), as the reference code does."""
    start, end = pair.image_span
    inputs_q = _to_device(pair.inputs, model)
    inputs_g = dict(inputs_q)
    inputs_g["input_ids"] = pair.generic_ids.to(model.device)
    inputs_g["attention_mask"] = torch.ones_like(inputs_g["input_ids"])
    if pair.generic_mm_token_type_ids is not None:
        inputs_g["mm_token_type_ids"] = pair.generic_mm_token_type_ids.to(model.device)
    maps = []
    timings = {}
    for name, inputs in (("question", inputs_q), ("generic", inputs_g)):
        t0 = time.perf_counter()
        with capture.reference_attention():
            out = model(**inputs, output_attentions=True, use_cache=False)
        if out.attentions is None or len(out.attentions) == 0:
            raise RuntimeError("the model returned no attention weights")
        # (H, S, S) per layer -> last row, image span, mean over heads.
        maps.append(torch.stack([out.attentions[layer][0, :, -1, start:end].float().mean(0) for layer in layers]))
        timings[name] = (time.perf_counter() - t0) * 1e3
        del out
    return _finish(pair, layers, maps[0], maps[1], "reference", timings, eps)
