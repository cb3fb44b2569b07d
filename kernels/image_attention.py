"""Triton kernels: image-span attention of two last-position queries that share a prefix, reading K once.

Math. For layer ``l``, query ``w`` (0 = question, 1 = generic), query head ``h`` (kv head ``h // G``) and key
``n`` of ``K_w = concat(k_prefix, k_suffix_w)``:

    s[l, w, h, n] = q[l, w, h] . K_w[l, h // G, n] * scale
    out[l, w, t]  = 1/Hq * sum_h exp(s[l, w, h, image_start + t] - lse[l, w, h]),
    lse[l, w, h]  = log sum_n exp(s[l, w, h, n])      (softmax over ALL keys: prefix and own suffix)

How. ``lse`` is only known once every key has been seen, so one pass stores the image-span scores and a
partial (max, sum-exp) per chunk of keys, and a small second kernel merges the partials (the split-K
softmax of Milakov & Gimelshein 2018, "Online normalizer calculation for softmax", Alg. 3, as in
flash-decoding) and averages over heads:

1. ``_image_span_scores_kernel``, grid ``(L * Hkv, C + 1)``. Program ``(l, g, c < C)`` reads a chunk of
   prefix keys of kv head ``g`` ONCE and scores it against all ``2 * G`` query rows of that group (question
   and generic heads together, padded to 16 rows for ``tl.dot``); program ``(l, g, C)`` scores the two short
   suffixes, each against its own query's rows. Each writes raw image-span scores to an fp32 scratch
   ``(L, 2, Hq, T)`` and its running (max, sum-exp) to ``(L, 2, Hq, C + 1)``.
2. ``_image_span_finalize_kernel``, grid ``(L * 2, cdiv(T, BLOCK_T))``: per head, merge the partials into
   ``lse``, turn scores into probabilities and average over heads.

Scores are kept in base 2 (``s * log2(e)``) so the kernels use ``exp2``; all arithmetic is fp32 whatever the
input dtype (bf16/fp16 operands are multiplied exactly and accumulated in fp32 by ``tl.dot``).

Traffic: K once, plus the fp32 scratch (``8 * Hq * T`` bytes per layer) written once and read once. Against
bf16 K at D = 128 (``256 * Hkv`` bytes per key) that adds about ``G / 16`` of the bytes of K: 44% for
Qwen2.5-VL-7B (G = 7), 25% for Qwen3-VL-8B (G = 4).
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch

from .image_attention_ref import check_image_span_inputs

try:
    import triton
    import triton.language as tl

    _TRITON_IMPORT_ERROR: ImportError | None = None
except ImportError as exc:  # keep zwz.kernels importable; the launcher says what to install
    triton = None
    tl = None
    _TRITON_IMPORT_ERROR = exc

logger = logging.getLogger(__name__)

_LOG2E = 1.4426950408889634  # log2(e): exp(x) = exp2(x * log2(e))
_LN2 = 0.6931471805599453


def _jit(fn):
    """``triton.jit`` when Triton is installed; otherwise leave the function as plain Python (never launched)."""
    return fn if triton is None else triton.jit(fn)


@_jit
def _online_softmax_update(m_i, l_i, s):
    """One step of the running (max, sum-exp) per row, base 2 (Milakov & Gimelshein 2018, Alg. 3)."""
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    l_new = l_i * tl.exp2(m_i - m_new) + tl.sum(tl.exp2(s - m_new[:, None]), axis=1)
    return m_new, l_new


@_jit
def _scores(q, k, qk_scale, FP32_DOT: tl.constexpr):
    """(BLOCK_M, BLOCK_D) x (BLOCK_D, BLOCK_N) scores in base 2, accumulated in fp32."""
    if FP32_DOT:
        # fp32 operands (or q and K of different dtypes): "ieee" keeps full fp32, where TF32 would keep 10 bits.
        s = tl.dot(q, k.to(tl.float32), input_precision="ieee")
    else:
        s = tl.dot(q, k)  # bf16/fp16 x same: exact products, fp32 accumulator
    return s * qk_scale


@_jit
def _image_span_scores_kernel(
    q_ptr, kp_ptr, ksq_ptr, ksg_ptr, scores_ptr, m_ptr, l_ptr,
    stride_ql, stride_qw, stride_qh, stride_qd,
    stride_kpl, stride_kph, stride_kpn, stride_kpd,
    stride_ksql, stride_ksqh, stride_ksqn, stride_ksqd,
    stride_ksgl, stride_ksgh, stride_ksgn, stride_ksgd,
    prefix_len, suffix_q_len, suffix_g_len, image_start, image_end, num_chunks, chunk_blocks, qk_scale,
    NUM_HEADS: tl.constexpr, NUM_KV_HEADS: tl.constexpr, GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
    FP32_DOT: tl.constexpr,
):  # fmt: skip
    """s = q . k * scale * log2(e) for the 2G query rows of one (layer, kv head) against one chunk of keys
    (program c < C: prefix tiles [c * chunk_blocks, ...); program C: both suffixes). Stores s on the image
    span and, per row, the chunk's m = max_n s and l = sum_n 2^(s - m)."""
    pid_lh = tl.program_id(0)
    chunk = tl.program_id(1)
    layer = (pid_lh // NUM_KV_HEADS).to(tl.int64)  # int64: layer * stride overflows int32 on long caches
    kv_head = pid_lh % NUM_KV_HEADS

    # Query rows of this kv group: [0, G) question heads, [G, 2G) generic heads, the rest padding.
    rows = tl.arange(0, BLOCK_M)
    which = rows // GROUP
    head = kv_head * GROUP + rows % GROUP
    row_ok = rows < 2 * GROUP
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    q_ptrs = q_ptr + layer * stride_ql + which[:, None] * stride_qw + head[:, None] * stride_qh
    q = tl.load(q_ptrs + offs_d[None, :] * stride_qd, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    if FP32_DOT:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    head_row = (layer * 2 + which) * NUM_HEADS + head  # row of (L, 2, Hq)
    if chunk < num_chunks:
        # A chunk of prefix keys, read once for both queries' heads.
        span_ptrs = scores_ptr + head_row[:, None] * (image_end - image_start) - image_start
        k_base = kp_ptr + layer * stride_kpl + kv_head * stride_kph + offs_d[:, None] * stride_kpd
        first = chunk * chunk_blocks
        last = tl.minimum(first + chunk_blocks, tl.cdiv(prefix_len, BLOCK_N))
        for blk in range(first, last):
            offs_n = blk * BLOCK_N + tl.arange(0, BLOCK_N)
            n_ok = offs_n < prefix_len
            k = tl.load(k_base + offs_n[None, :] * stride_kpn, mask=d_ok[:, None] & n_ok[None, :], other=0.0)
            s = _scores(q, k, qk_scale, FP32_DOT)  # (BLOCK_M, BLOCK_N)
            s = tl.where(n_ok[None, :], s, float("-inf"))
            in_span = (offs_n >= image_start) & (offs_n < image_end)
            tl.store(span_ptrs + offs_n[None, :], s, mask=row_ok[:, None] & in_span[None, :])
            m_i, l_i = _online_softmax_update(m_i, l_i, s)
    else:
        # The two suffixes: question rows see only the question's keys, generic rows only the generic's.
        is_question = (rows < GROUP)[:, None]
        ksq_base = ksq_ptr + layer * stride_ksql + kv_head * stride_ksqh + offs_d[:, None] * stride_ksqd
        ksg_base = ksg_ptr + layer * stride_ksgl + kv_head * stride_ksgh + offs_d[:, None] * stride_ksgd
        for blk in range(0, tl.cdiv(tl.maximum(suffix_q_len, suffix_g_len), BLOCK_S)):
            offs_n = blk * BLOCK_S + tl.arange(0, BLOCK_S)
            nq_ok = offs_n < suffix_q_len
            ng_ok = offs_n < suffix_g_len
            kq = tl.load(ksq_base + offs_n[None, :] * stride_ksqn, mask=d_ok[:, None] & nq_ok[None, :], other=0.0)
            kg = tl.load(ksg_base + offs_n[None, :] * stride_ksgn, mask=d_ok[:, None] & ng_ok[None, :], other=0.0)
            s = tl.where(is_question, _scores(q, kq, qk_scale, FP32_DOT), _scores(q, kg, qk_scale, FP32_DOT))
            s = tl.where(tl.where(is_question, nq_ok[None, :], ng_ok[None, :]), s, float("-inf"))
            m_i, l_i = _online_softmax_update(m_i, l_i, s)
    stat_ptrs = head_row * (num_chunks + 1) + chunk
    tl.store(m_ptr + stat_ptrs, m_i, mask=row_ok)
    tl.store(l_ptr + stat_ptrs, l_i, mask=row_ok)


@_jit
def _image_span_finalize_kernel(
    scores_ptr, m_ptr, l_ptr, out_ptr, span_len, num_stats,
    NUM_HEADS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """out[l, w, t] = 1/Hq * sum_h 2^(s[l, w, h, t] - lse2[l, w, h]), with the base-2 normaliser merged from
    the per-chunk partials: lse2 = M + log2 sum_c l_c 2^(m_c - M), M = max_c m_c."""
    pid_lw = tl.program_id(0).to(tl.int64)  # row of (L, 2)
    offs_t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    t_ok = offs_t < span_len
    offs_c = tl.arange(0, BLOCK_C)
    c_ok = offs_c < num_stats
    acc = tl.zeros([BLOCK_T], tl.float32)
    for h in range(NUM_HEADS):
        head_row = pid_lw * NUM_HEADS + h
        m = tl.load(m_ptr + head_row * num_stats + offs_c, mask=c_ok, other=float("-inf"))
        l = tl.load(l_ptr + head_row * num_stats + offs_c, mask=c_ok, other=0.0)
        m_max = tl.max(m, axis=0)
        lse = m_max + tl.log2(tl.sum(l * tl.exp2(m - m_max), axis=0))  # base-2 log-sum-exp over all keys
        s = tl.load(scores_ptr + head_row * span_len + offs_t, mask=t_ok, other=float("-inf"))
        acc += tl.exp2(s - lse)
    tl.store(out_ptr + pid_lw * span_len + offs_t, acc / NUM_HEADS, mask=t_ok)


def triton_interpreting() -> bool:
    """Whether ``TRITON_INTERPRET`` is on (Triton reads it when the kernels above are decorated)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _tiling(
    num_programs: int,
    prefix_len: int,
    head_dim: int,
    fp32_dot: bool,
    device: torch.device,
    block_n: int | None,
    chunk_blocks: int | None,
) -> tuple[int, int, int]:
    """(BLOCK_N, tiles per chunk, warps), each from a small heuristic unless given.

    The interpreter runs programs one after another at a fixed cost per tile, so it gets the biggest tiles
    and one chunk per (layer, kv head). On a GPU the sizes were checked offline for sm_90 with ptxas
    (D=128, 3 stages, no spills): bf16/fp16 (16, 128) x (128, 128) on 4 warps uses ~100 registers; the fp32
    FMA dot spills at BLOCK_N=128 and fits at 64 on 8 warps. The chunk count aims at ~4 programs per SM so
    that short prefixes still fill the device.
    """
    on_gpu = device.type == "cuda"
    if block_n is None:
        if on_gpu:
            block_n = 64 if fp32_dot or head_dim > 128 else 128
        else:
            block_n = min(1024, max(16, _next_pow2(prefix_len)))
    num_blocks = triton.cdiv(prefix_len, block_n)
    if chunk_blocks is None:
        chunk_blocks = num_blocks
        if on_gpu:
            sm_count = torch.cuda.get_device_properties(device).multi_processor_count
            chunk_blocks = triton.cdiv(num_blocks, max(1, min(num_blocks, triton.cdiv(4 * sm_count, num_programs))))
    return block_n, min(chunk_blocks, num_blocks), 8 if fp32_dot else 4


def image_span_attention_triton(
    q: torch.Tensor,
    k_prefix: torch.Tensor,
    k_suffix_question: torch.Tensor,
    k_suffix_generic: torch.Tensor,
    image_start: int,
    image_end: int,
    scale: float | None = None,
    *,
    block_n: int | None = None,
    chunk_blocks: int | None = None,
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Head-averaged image-span attention of the question and the generic query, K read once (Triton).

    Same contract as :func:`zwz.kernels.image_span_attention_reference`: q (L, 2, Hq, D), k_prefix
    (L, Hkv, P, D), k_suffix_question (L, Hkv, Sq, D), k_suffix_generic (L, Hkv, Sg, D) -> (L, 2, T) fp32.
    Any strides are accepted, so a view into a KV cache is read in place; a contiguous last dim gives
    coalesced loads. The three key tensors must share a dtype (fp32, bf16 or fp16); q may differ, in which
    case the dot runs in fp32.

    Args:
        block_n: keys per tile (power of two >= 16); None picks from a heuristic. For tests and tuning.
        chunk_blocks: tiles per program along the prefix; None picks from a heuristic.
        return_lse: also return the natural-log normaliser ``lse`` (L, 2, Hq) over all keys (for debugging:
            ``exp(s - lse)`` summed over prefix and suffix is 1).
    """
    if triton is None:
        raise ImportError(
            "image_span_attention_triton needs Triton: pip install triton (or pip install 'zwz[kernels]')"
        ) from _TRITON_IMPORT_ERROR
    shapes = check_image_span_inputs(q, k_prefix, k_suffix_question, k_suffix_generic, image_start, image_end)
    if not q.is_cuda and not triton_interpreting():
        raise RuntimeError(
            "the Triton kernel needs CUDA tensors, or TRITON_INTERPRET=1 set before zwz.kernels.image_attention "
            "is imported (the slow CPU interpreter, for tests)"
        )
    if not k_prefix.dtype == k_suffix_question.dtype == k_suffix_generic.dtype:
        raise ValueError(
            f"key tensors must share a dtype; got {k_prefix.dtype}, {k_suffix_question.dtype}, "
            f"{k_suffix_generic.dtype}"
        )
    scale = shapes.head_dim**-0.5 if scale is None else scale
    L, Hq, Hkv, G, D = shapes.num_layers, shapes.num_heads, shapes.num_kv_heads, shapes.group, shapes.head_dim
    T = shapes.span_len

    # Half-precision operands of one dtype go to tl.dot as they are. Anything else is upcast to fp32, and so
    # is bf16 in the interpreter, whose tl.dot multiplies bf16 bit patterns (triton-lang/triton#11584).
    fp32_dot = not (q.dtype == k_prefix.dtype and q.dtype in (torch.bfloat16, torch.float16))
    fp32_dot = fp32_dot or (not q.is_cuda and k_prefix.dtype == torch.bfloat16)
    block_n, chunk_blocks, num_warps = _tiling(L * Hkv, shapes.prefix_len, D, fp32_dot, q.device, block_n, chunk_blocks)
    num_chunks = triton.cdiv(triton.cdiv(shapes.prefix_len, block_n), chunk_blocks)
    # Compiled tl.dot needs >= 16 rows and columns. Suffix tiles fit the (short) suffixes; on a GPU they stay at
    # half a prefix tile, because the suffix branch loads two tiles and shared memory is sized for the larger
    # branch (BLOCK_S = BLOCK_N would double it, to ~135 KB, and halve the CTAs per SM).
    block_m = max(16, _next_pow2(2 * G))
    max_suffix = max(shapes.suffix_question_len, shapes.suffix_generic_len)
    block_s = max(16, min(_next_pow2(max_suffix), block_n // 2 if q.is_cuda else block_n))
    logger.debug(
        "image span attention: grid (%d, %d), BLOCK_N=%d, %d tiles per chunk, BLOCK_M=%d, fp32 dot=%s",
        L * Hkv, num_chunks + 1, block_n, chunk_blocks, block_m, fp32_dot,
    )  # fmt: skip

    scores = torch.empty((L, 2, Hq, T), dtype=torch.float32, device=q.device)
    row_max = torch.empty((L, 2, Hq, num_chunks + 1), dtype=torch.float32, device=q.device)
    row_sum = torch.empty_like(row_max)
    out = torch.empty((L, 2, T), dtype=torch.float32, device=q.device)
    block_t = min(1024, max(16, _next_pow2(T)))
    with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():  # launch on q's GPU
        _image_span_scores_kernel[(L * Hkv, num_chunks + 1)](
            q, k_prefix, k_suffix_question, k_suffix_generic, scores, row_max, row_sum,
            *q.stride(), *k_prefix.stride(), *k_suffix_question.stride(), *k_suffix_generic.stride(),
            shapes.prefix_len, shapes.suffix_question_len, shapes.suffix_generic_len, image_start, image_end,
            num_chunks, chunk_blocks, scale * _LOG2E,
            NUM_HEADS=Hq, NUM_KV_HEADS=Hkv, GROUP=G, HEAD_DIM=D,
            BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_S=block_s, BLOCK_D=max(16, _next_pow2(D)),
            FP32_DOT=fp32_dot, num_warps=num_warps, num_stages=3,
        )  # fmt: skip
        _image_span_finalize_kernel[(L * 2, triton.cdiv(T, block_t))](
            scores, row_max, row_sum, out, T, num_chunks + 1,
            NUM_HEADS=Hq, BLOCK_T=block_t, BLOCK_C=max(2, _next_pow2(num_chunks + 1)), num_warps=4,
        )  # fmt: skip
    if not return_lse:
        return out
    lse = torch.logsumexp(row_max * _LN2 + row_sum.log(), dim=-1)  # (L, 2, Hq), natural log
    return out, lse

