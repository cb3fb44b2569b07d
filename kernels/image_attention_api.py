"""Entry point for image-span attention: pick the Triton kernel, a memory-lean torch path or the reference.

All three share one contract (see :func:`zwz.kernels.image_attention_ref.image_span_attention_reference`):
q (L, 2, Hq, D), k_prefix (L, Hkv, P, D), k_suffix_question (L, Hkv, Sq, D), k_suffix_generic (L, Hkv, Sg, D)
-> (L, 2, T) float32 head-averaged probabilities of the image span [image_start, image_end).
"""

from __future__ import annotations

import functools
import logging
from typing import Literal

import torch

from .image_attention_ref import check_image_span_inputs, image_span_attention_reference

logger = logging.getLogger(__name__)

Backend = Literal["auto", "triton", "torch", "reference"]

# Upper bound on the fp32 copy of one chunk of keys in the torch path: large enough for few, large matmuls,
# small next to a KV cache.
_TORCH_CHUNK_BYTES = 64 << 20


def image_span_attention_torch(
    q: torch.Tensor,
    k_prefix: torch.Tensor,
    k_suffix_question: torch.Tensor,
    k_suffix_generic: torch.Tensor,
    image_start: int,
    image_end: int,
    scale: float | None = None,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Image-span attention in plain torch, reading K once in fp32 chunks, without repeating KV heads.

    Query heads are grouped by kv head (rows ``[0, G)`` question, ``[G, 2G)`` generic), so one batched matmul
    per chunk of prefix keys scores both queries; the softmax normaliser is accumulated as a running
    log-sum-exp and only the image-span scores are kept. Peak extra memory: one fp32 chunk of keys
    (about 64 MiB unless ``chunk_size`` says otherwise) plus ``(L, 2, Hq, T)`` fp32 scores.

    >>> q = torch.zeros(1, 2, 2, 4); k = torch.zeros(1, 1, 3, 4); s = torch.zeros(1, 1, 1, 4)
    >>> image_span_attention_torch(q, k, s, s, 1, 3)  # uniform over 3 + 1 keys
    tensor([[[0.2500, 0.2500],
             [0.2500, 0.2500]]])
    """
    shapes = check_image_span_inputs(q, k_prefix, k_suffix_question, k_suffix_generic, image_start, image_end)
    scale = shapes.head_dim**-0.5 if scale is None else scale
    L, Hkv, G, D, P = shapes.num_layers, shapes.num_kv_heads, shapes.group, shapes.head_dim, shapes.prefix_len
    if chunk_size is None:
        chunk_size = max(128, _TORCH_CHUNK_BYTES // (L * Hkv * D * 4))

    # (L, 2, Hkv, G, D) -> (L, Hkv, 2G, D): head h = kv * G + g, as transformers' repeat_kv.
    qg = (q.float() * scale).reshape(L, 2, Hkv, G, D).transpose(1, 2).reshape(L, Hkv, 2 * G, D)
    lse = torch.full((L, Hkv, 2 * G), float("-inf"), dtype=torch.float32, device=q.device)
    span = torch.empty((L, Hkv, 2 * G, shapes.span_len), dtype=torch.float32, device=q.device)
    for p0 in range(0, P, chunk_size):
        p1 = min(p0 + chunk_size, P)
        s = qg @ k_prefix[:, :, p0:p1].float().transpose(-1, -2)  # (L, Hkv, 2G, p1 - p0)
        lse = torch.logaddexp(lse, s.logsumexp(dim=-1))
        lo, hi = max(p0, image_start), min(p1, image_end)
        if lo < hi:
            span[..., lo - image_start : hi - image_start] = s[..., lo - p0 : hi - p0]
    for rows, k_suffix in ((slice(0, G), k_suffix_question), (slice(G, 2 * G), k_suffix_generic)):
        s = qg[:, :, rows] @ k_suffix.float().transpose(-1, -2)  # (L, Hkv, G, S)
        lse[:, :, rows] = torch.logaddexp(lse[:, :, rows], s.logsumexp(dim=-1))
    probs = torch.exp(span - lse[..., None])  # (L, Hkv, 2G, T)
    return probs.view(L, Hkv, 2, G, -1).mean(dim=(1, 3))  # (L, 2, T)


def image_span_attention(
    q: torch.Tensor,
    k_prefix: torch.Tensor,
    k_suffix_question: torch.Tensor,
    k_suffix_generic: torch.Tensor,
    image_start: int,
    image_end: int,
    scale: float | None = None,
    *,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Head-averaged softmax attention of the question and the generic query to the image tokens.

    Args:
        q: (L, 2, Hq, D) post-RoPE last-position queries; index 0 = question, 1 = generic instruction.
        k_prefix: (L, Hkv, P, D) shared prefix keys (system + image tokens); a strided KV-cache view is fine.
        k_suffix_question: (L, Hkv, Sq, D) the question's own keys, its last position included.
        k_suffix_generic: (L, Hkv, Sg, D) the generic instruction's own keys, its last position included.
        image_start: first image token in the prefix.
        image_end: one past the last image token.
        scale: softmax scale; ``D ** -0.5`` when None.
        backend: ``"auto"`` uses Triton for CUDA tensors when it is installed, else the torch path;
            ``"triton"`` forces the kernel (CUDA, or CPU under ``TRITON_INTERPRET=1`` for tests);
            ``"torch"`` the memory-lean torch path; ``"reference"`` the materialise-everything reference.

    Returns:
        (L, 2, T) float32, T = image_end - image_start; softmax over prefix + that query's own suffix.

    >>> q = torch.zeros(1, 2, 2, 4); k = torch.zeros(1, 1, 3, 4); s = torch.zeros(1, 1, 1, 4)
    >>> image_span_attention(q, k, s, s, 1, 3, backend="torch")
    tensor([[[0.2500, 0.2500],
             [0.2500, 0.2500]]])
    """
    if backend == "auto":
        backend = "triton" if q.is_cuda and _triton_installed() else "torch"
    args = (q, k_prefix, k_suffix_question, k_suffix_generic, image_start, image_end, scale)
    if backend == "triton":
        from .image_attention import image_span_attention_triton  # imports Triton only when it is wanted

        return image_span_attention_triton(*args)
    if backend == "torch":
        return image_span_attention_torch(*args)
    if backend == "reference":
        return image_span_attention_reference(*args)
    raise ValueError(f"backend must be one of 'auto', 'triton', 'torch', 'reference'; got {backend!r}")


@functools.cache
def _triton_installed() -> bool:
    try:
        import triton  # noqa: F401 - only asked on CUDA, where the kernel will import it anyway
    except ImportError:
        logger.warning("Triton is not installed: image-span attention on CUDA uses the torch path (pip install triton)")
        return False
    return True
