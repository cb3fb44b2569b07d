"""Plain-torch reference for image-span attention, and the input checks every implementation shares.

The reference is the obviously-correct math, written for reading rather than speed: it repeats the KV
heads (transformers' ``repeat_kv``), concatenates prefix and suffix keys, runs a full fp32 softmax and
slices the image span. It materialises ``(L, Hq, P + S)`` fp32 scores and a repeated fp32 copy of K,
so keep it for tests and small inputs; ``zwz.kernels.image_span_attention`` is the fast entry point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageSpanShapes:
    """Sizes of one image-span attention call, checked by :func:`check_image_span_inputs`."""

    num_layers: int  # L
    num_heads: int  # Hq
    num_kv_heads: int  # Hkv
    group: int  # G = Hq // Hkv: query head h reads kv head h // G
    head_dim: int  # D
    prefix_len: int  # P
    suffix_question_len: int  # Sq
    suffix_generic_len: int  # Sg
    image_start: int
    image_end: int

    @property
    def span_len(self) -> int:
        """T, the number of image tokens."""
        return self.image_end - self.image_start


def check_image_span_inputs(
    q: torch.Tensor,
    k_prefix: torch.Tensor,
    k_suffix_question: torch.Tensor,
    k_suffix_generic: torch.Tensor,
    image_start: int,
    image_end: int,
) -> ImageSpanShapes:
    """Validate shapes, devices and the image span; return the sizes.

    Raises ``ValueError`` with the offending shape so a caller wiring captured tensors sees what is off.
    """
    if q.dim() != 4 or q.shape[1] != 2:
        raise ValueError(f"q must be (L, 2, Hq, D) (question, generic); got {tuple(q.shape)}")
    num_layers, _, num_heads, head_dim = q.shape
    named = {"k_prefix": k_prefix, "k_suffix_question": k_suffix_question, "k_suffix_generic": k_suffix_generic}
    for name, k in named.items():
        if k.dim() != 4 or k.shape[0] != num_layers or k.shape[3] != head_dim:
            raise ValueError(f"{name} must be (L={num_layers}, Hkv, N, D={head_dim}); got {tuple(k.shape)}")
        if k.shape[1] != k_prefix.shape[1]:
            raise ValueError(f"{name} has {k.shape[1]} kv heads but k_prefix has {k_prefix.shape[1]}")
        if k.device != q.device:
            raise ValueError(f"{name} is on {k.device} but q is on {q.device}")
        if not k.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor; got {k.dtype}")
    num_kv_heads = k_prefix.shape[1]
    if num_heads % num_kv_heads:
        raise ValueError(f"Hq={num_heads} is not a multiple of Hkv={num_kv_heads}")
    prefix_len = k_prefix.shape[2]
    if k_suffix_question.shape[2] < 1 or k_suffix_generic.shape[2] < 1:
        raise ValueError("each suffix holds at least the last prompt position, so it needs >= 1 key")
    if not 0 <= image_start < image_end <= prefix_len:
        raise ValueError(
            f"image span [{image_start}, {image_end}) must be non-empty and inside the prefix [0, {prefix_len})"
        )
    return ImageSpanShapes(
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        group=num_heads // num_kv_heads,
        head_dim=head_dim,
        prefix_len=prefix_len,
        suffix_question_len=k_suffix_question.shape[2],
        suffix_generic_len=k_suffix_generic.shape[2],
        image_start=image_start,
        image_end=image_end,
    )


def image_span_attention_reference(
    q: torch.Tensor,
    k_prefix: torch.Tensor,
    k_suffix_question: torch.Tensor,
    k_suffix_generic: torch.Tensor,
    image_start: int,
    image_end: int,
    scale: float | None = None,
) -> torch.Tensor:
    """Head-averaged softmax attention of each last-position query to the image tokens.

    For query ``w`` (0 = question, 1 = generic) with suffix keys ``K_w``, at layer ``l`` and image token ``t``:

        out[l, w, t] = 1/Hq * sum_h softmax_n(q[l, w, h] . K[l, h // G, n] * scale)[image_start + t]

    with ``K = concat(k_prefix, K_w)`` along the key axis, i.e. the softmax runs over every key the
    query attends to (paper App. 12; eager attention's ``output_attentions`` row at the last position).

    Args:
        q: (L, 2, Hq, D) post-RoPE last-position queries.
        k_prefix: (L, Hkv, P, D) shared prefix keys (post-RoPE).
        k_suffix_question: (L, Hkv, Sq, D) the question's own keys, ending at its last position.
        k_suffix_generic: (L, Hkv, Sg, D) the generic instruction's own keys.
        image_start: first image token in the prefix.
        image_end: one past the last image token.
        scale: softmax scale; ``D ** -0.5`` when None.

    Returns:
        (L, 2, T) float32 probabilities, T = image_end - image_start.

    >>> q = torch.zeros(1, 2, 2, 4); k = torch.zeros(1, 1, 3, 4); s = torch.zeros(1, 1, 1, 4)
    >>> image_span_attention_reference(q, k, s, s, 1, 3)  # uniform over 3 + 1 keys
    tensor([[[0.2500, 0.2500],
             [0.2500, 0.2500]]])
    """
    shapes = check_image_span_inputs(q, k_prefix, k_suffix_question, k_suffix_generic, image_start, image_end)
    scale = shapes.head_dim**-0.5 if scale is None else scale
    maps = []
    for which, k_suffix in enumerate((k_suffix_question, k_suffix_generic)):
        keys = torch.cat([k_prefix, k_suffix], dim=2).float()  # (L, Hkv, P + S, D)
        keys = keys.repeat_interleave(shapes.group, dim=1)  # (L, Hq, P + S, D), as transformers' repeat_kv
        scores = torch.einsum("lhd,lhnd->lhn", q[:, which].float(), keys) * scale  # (L, Hq, P + S)
        probs = scores.softmax(dim=-1)
        maps.append(probs[..., image_start:image_end].mean(dim=1))  # (L, T)
    return torch.stack(maps, dim=1)  # (L, 2, T)
