"""Image-span attention: the Triton kernel and the torch path against the plain-torch reference.

On CPU the kernel runs under ``TRITON_INTERPRET=1`` (set by tests/conftest.py before anything imports Triton),
so shapes stay small; the interpreter costs about 0.05 s per launch at these sizes.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zwz.kernels import image_span_attention, image_span_attention_reference, image_span_attention_torch

from zwz.kernels.image_attention import image_span_attention_triton  # importable without Triton

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton")
BACKENDS = [pytest.param("triton", marks=needs_triton), "torch", "reference"]

# Inputs are rounded to the dtype once, and every path computes in fp32 from the same values, so tolerances
# only cover summation order (and tf32-free fp32 dots on GPU).
DTYPES = [
    pytest.param(torch.float32, 1e-6, 1e-4, id="fp32"),
    pytest.param(torch.bfloat16, 1e-6, 1e-4, id="bf16"),
]
GROUPS = [pytest.param(2, 2, id="G1"), pytest.param(4, 2, id="G2"), pytest.param(14, 2, id="G7")]


def make_inputs(
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    head_dim: int = 32,
    prefix_len: int = 300,
    suffix_lens: tuple[int, int] = (9, 4),
    dtype: torch.dtype = torch.float32,
    sharpness: float = 2.0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random (q, k_prefix, k_suffix_question, k_suffix_generic); ``sharpness`` scales q to peak the softmax."""
    gen = torch.Generator().manual_seed(seed)
    L, Hkv, D = num_layers, num_kv_heads, head_dim

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device=DEVICE, dtype=dtype)

    q = randn(L, 2, num_heads, D) * sharpness
    return q, randn(L, Hkv, prefix_len, D), randn(L, Hkv, suffix_lens[0], D), randn(L, Hkv, suffix_lens[1], D)


def span_at(where: str, prefix_len: int, span_len: int = 120) -> tuple[int, int]:
    start = {"start": 0, "middle": (prefix_len - span_len) // 2, "end": prefix_len - span_len}[where]
    return start, start + span_len


@needs_triton
@pytest.mark.parametrize(("dtype", "atol", "rtol"), DTYPES)
@pytest.mark.parametrize(("num_heads", "num_kv_heads"), GROUPS)
@pytest.mark.parametrize("where", ["start", "middle", "end"])
@pytest.mark.parametrize("suffix_lens", [(1, 1), (9, 4)], ids=["suffix1", "suffix9-4"])
def test_triton_matches_reference(
    dtype: torch.dtype, atol: float, rtol: float, num_heads: int, num_kv_heads: int, where: str,
    suffix_lens: tuple[int, int],
) -> None:  # fmt: skip
    q, kp, ksq, ksg = make_inputs(
        num_heads=num_heads, num_kv_heads=num_kv_heads, prefix_len=300, suffix_lens=suffix_lens, dtype=dtype
    )
    start, end = span_at(where, 300)
    out = image_span_attention_triton(q, kp, ksq, ksg, start, end)
    torch.testing.assert_close(out, image_span_attention_reference(q, kp, ksq, ksg, start, end), atol=atol, rtol=rtol)


@needs_triton
@pytest.mark.parametrize(("dtype", "atol", "rtol"), [*DTYPES, pytest.param(torch.float16, 1e-6, 1e-4, id="fp16")])
@pytest.mark.parametrize(("block_n", "chunk_blocks"), [(64, 1), (64, 2), (16, 7)])
def test_triton_split_prefix(dtype: torch.dtype, atol: float, rtol: float, block_n: int, chunk_blocks: int) -> None:
    """Several chunks per (layer, kv head), ragged last tiles, a span crossing chunk borders, odd D, and
    (at BLOCK_N=16) suffixes of several tiles that end in different tiles for the two queries."""
    q, kp, ksq, ksg = make_inputs(
        num_heads=6, num_kv_heads=2, head_dim=24, prefix_len=333, suffix_lens=(40, 19), dtype=dtype
    )
    out = image_span_attention_triton(q, kp, ksq, ksg, 37, 301, block_n=block_n, chunk_blocks=chunk_blocks)
    torch.testing.assert_close(out, image_span_attention_reference(q, kp, ksq, ksg, 37, 301), atol=atol, rtol=rtol)


@needs_triton
def test_triton_mixed_dtypes_and_scale() -> None:
    """fp32 queries against bf16 keys take the fp32 dot; an explicit scale is honoured."""
    q, kp, ksq, ksg = make_inputs(dtype=torch.bfloat16)
    q = q.float() + 0.01 * torch.randn_like(q, dtype=torch.float32)  # not representable in bf16
    out = image_span_attention_triton(q, kp, ksq, ksg, 50, 250, scale=0.3)
    torch.testing.assert_close(out, image_span_attention_reference(q, kp, ksq, ksg, 50, 250, scale=0.3))


@needs_triton
def test_triton_large_scores_are_stable() -> None:
    """Scores near 100 overflow a naive exp in fp32; the running max keeps them finite."""
    q, kp, ksq, ksg = make_inputs(sharpness=25.0)
    out = image_span_attention_triton(q, kp, ksq, ksg, 10, 290, block_n=64, chunk_blocks=1)
    ref = image_span_attention_reference(q, kp, ksq, ksg, 10, 290)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-4)


@needs_triton
@pytest.mark.parametrize("layout", ["hf_cache", "vllm_cache"])
def test_strided_views_are_read_in_place(layout: str) -> None:
    """k_prefix as a view into a KV cache that also holds the question's suffix, q as a transposed view."""
    L, Hkv, P, Sq, D = 2, 2, 250, 6, 32
    if layout == "hf_cache":  # (L, Hkv, N, D): prefix and suffix are slices along N
        cache = torch.randn(L, Hkv, P + Sq, D, device=DEVICE)
    else:  # (L, N, Hkv, D) viewed as (L, Hkv, N, D): head stride smaller than token stride
        cache = torch.randn(L, P + Sq, Hkv, D, device=DEVICE).transpose(1, 2)
    kp, ksq = cache[:, :, :P], cache[:, :, P:]
    ksg = torch.randn(L, Hkv, 3, D, device=DEVICE)
    q = torch.randn(2, L, 6, D, device=DEVICE).transpose(0, 1)  # (L, 2, Hq, D), not contiguous
    assert not kp.is_contiguous() and not q.is_contiguous()
    ref = image_span_attention_reference(q, kp, ksq, ksg, 20, 230)
    torch.testing.assert_close(image_span_attention_triton(q, kp, ksq, ksg, 20, 230), ref, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(image_span_attention_torch(q, kp, ksq, ksg, 20, 230), ref, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize(("dtype", "atol", "rtol"), DTYPES)
@pytest.mark.parametrize(("num_heads", "num_kv_heads"), GROUPS)
@pytest.mark.parametrize("chunk_size", [None, 64, 37])
def test_torch_path_matches_reference(
    dtype: torch.dtype, atol: float, rtol: float, num_heads: int, num_kv_heads: int, chunk_size: int | None
) -> None:
    q, kp, ksq, ksg = make_inputs(num_heads=num_heads, num_kv_heads=num_kv_heads, dtype=dtype, suffix_lens=(1, 5))
    out = image_span_attention_torch(q, kp, ksq, ksg, 90, 210, chunk_size=chunk_size)
    torch.testing.assert_close(out, image_span_attention_reference(q, kp, ksq, ksg, 90, 210), atol=atol, rtol=rtol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_sum_to_at_most_one(backend: str) -> None:
    """Head-averaged image mass is a probability: < 1, because the suffix keys hold the rest."""
    q, kp, ksq, ksg = make_inputs()
    part = image_span_attention(q, kp, ksq, ksg, 40, 200, backend=backend)
    whole = image_span_attention(q, kp, ksq, ksg, 0, 300, backend=backend)  # the whole prefix as the "span"
    assert (part >= 0).all()
    assert (part.sum(-1) < whole.sum(-1)).all()
    assert (whole.sum(-1) < 1).all()


@needs_triton
def test_kernel_normaliser_covers_all_keys() -> None:
    """The debug lse makes the full distribution over prefix + own suffix sum to 1, for every head."""
    q, kp, ksq, ksg = make_inputs(num_heads=6, num_kv_heads=2)
    _, lse = image_span_attention_triton(q, kp, ksq, ksg, 40, 200, block_n=64, chunk_blocks=2, return_lse=True)
    G = 3
    for which, k_suffix in enumerate((ksq, ksg)):
        keys = torch.cat([kp, k_suffix], dim=2).float().repeat_interleave(G, dim=1)  # (L, Hq, P + S, D)
        scores = torch.einsum("lhd,lhnd->lhn", q[:, which].float(), keys) * 32**-0.5
        mass = torch.exp(scores - lse[:, which, :, None]).sum(-1)  # (L, Hq)
        torch.testing.assert_close(mass, torch.ones_like(mass), atol=1e-5, rtol=0)


@needs_triton
def test_dispatcher_backends_agree() -> None:
    q, kp, ksq, ksg = make_inputs(num_heads=14, num_kv_heads=2)
    ref = image_span_attention(q, kp, ksq, ksg, 5, 295, backend="reference")
    for backend in ("auto", "torch", "triton"):
        torch.testing.assert_close(image_span_attention(q, kp, ksq, ksg, 5, 295, backend=backend), ref)
    with pytest.raises(ValueError, match="backend"):
        image_span_attention(q, kp, ksq, ksg, 5, 295, backend="cuda")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda q, kp, ksq, ksg: (q[:, :, :3], kp, ksq, ksg, 0, 10), "multiple"),
        (lambda q, kp, ksq, ksg: (q, kp, ksq, ksg, 10, 10), "non-empty"),
        (lambda q, kp, ksq, ksg: (q, kp, ksq, ksg, 0, 301), "inside the prefix"),
        (lambda q, kp, ksq, ksg: (q, kp, ksq[:, :, :0], ksg, 0, 10), ">= 1 key"),
        (lambda q, kp, ksq, ksg: (q[:, :1], kp, ksq, ksg, 0, 10), r"\(L, 2, Hq, D\)"),
        (lambda q, kp, ksq, ksg: (q, kp[..., :16], ksq, ksg, 0, 10), "k_prefix must be"),
    ],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs_are_rejected(change, message: str, backend: str) -> None:  # noqa: ANN001
    args = change(*make_inputs(prefix_len=300))
    with pytest.raises(ValueError, match=message):
        image_span_attention(*args, backend=backend)


@needs_triton
def test_triton_launcher_refuses_what_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    q, kp, ksq, ksg = make_inputs()
    with pytest.raises(ValueError, match="share a dtype"):
        image_span_attention_triton(q, kp, ksq.half(), ksg, 0, 10)
    if not HAS_CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(RuntimeError, match="CUDA tensors"):
            image_span_attention_triton(q, kp, ksq, ksg, 0, 10)


def test_without_triton_the_package_imports_and_the_kernel_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh copy of the kernel module, loaded with Triton hidden, imports; calling it asks for Triton."""
    monkeypatch.setitem(sys.modules, "triton", None)  # makes `import triton` raise ImportError
    monkeypatch.setitem(sys.modules, "triton.language", None)
    import zwz.kernels

    path = Path(zwz.kernels.__file__).with_name("image_attention.py")
    spec = importlib.util.spec_from_file_location("zwz.kernels._image_attention_without_triton", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(ImportError, match="pip install triton"):
        module.image_span_attention_triton(*make_inputs(), 0, 10)


_COMPILE_FOR_SM90 = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from zwz.kernels.image_attention import _image_span_finalize_kernel, _image_span_scores_kernel


def compile_sm90(kernel, consts, dtypes, num_warps):
    names = [p.name for p in kernel.params]
    sig = {n: "constexpr" if n in consts else dtypes.get(n, "*fp32" if n.endswith("_ptr") else "i32") for n in names}
    # What the JIT infers at launch for aligned pointers and strides that are multiples of 16.
    hints = [n for n in names if n not in consts and (n.endswith("_ptr") or n.startswith("stride"))]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in hints}
    src = ASTSource(kernel, sig, consts, attrs)
    triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps, "num_stages": 3})


unit = {"stride_qd": 1, "stride_kpd": 1, "stride_ksqd": 1, "stride_ksgd": 1}
for kdt, block_n, num_warps in (("bf16", 128, 4), ("fp32", 64, 8)):
    dtypes = {n: "*" + kdt for n in ("q_ptr", "kp_ptr", "ksq_ptr", "ksg_ptr")} | {"qk_scale": "fp32"}
    consts = dict(NUM_HEADS=28, NUM_KV_HEADS=4, GROUP=7, HEAD_DIM=128, BLOCK_M=16, BLOCK_N=block_n,
                  BLOCK_S=block_n // 2, BLOCK_D=128, FP32_DOT=kdt == "fp32", **unit)
    compile_sm90(_image_span_scores_kernel, consts, dtypes, num_warps)
compile_sm90(_image_span_finalize_kernel, dict(NUM_HEADS=28, BLOCK_T=1024, BLOCK_C=64), {}, 4)
print("compiled")
"""


@needs_triton
@pytest.mark.slow
@pytest.mark.skipif(HAS_CUDA, reason="the GPU tests compile the kernels for real")
def test_kernels_compile_for_sm90_without_a_gpu() -> None:
    """The interpreter does not enforce compiled Triton's rules (tl.dot shapes, dtypes); compiling for an H100
    target ahead of time does, with the ptxas that ships in Triton's wheel. Runs in a subprocess without
    TRITON_INTERPRET so the kernels are decorated for the compiler."""
    try:  # the one known reason to skip: a Triton without the ahead-of-time API; any other failure fails
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"this Triton has no ahead-of-time compile API: {exc}")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"TRITON_DEFAULT_FP_FUSION": "1"}
    result = subprocess.run([sys.executable, "-c", _COMPILE_FOR_SM90], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "compiled" in result.stdout


@needs_triton
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize(("dtype", "atol", "rtol"), [*DTYPES, pytest.param(torch.float16, 1e-6, 1e-4, id="fp16")])
@pytest.mark.parametrize(("num_heads", "num_kv_heads"), [(28, 4), (32, 8), (16, 16)])
def test_triton_matches_reference_gpu_realistic(
    dtype: torch.dtype, atol: float, rtol: float, num_heads: int, num_kv_heads: int
) -> None:
    """Default tiling (many chunks, BLOCK_N=128, native bf16/fp16 tl.dot) at a Qwen-VL-like shape."""
    q, kp, ksq, ksg = make_inputs(
        num_layers=4, num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=128, prefix_len=2320,
        suffix_lens=(31, 14), dtype=dtype, sharpness=1.0,
    )  # fmt: skip
    out = image_span_attention_triton(q, kp, ksq, ksg, 15, 2319)
    torch.testing.assert_close(out, image_span_attention_reference(q, kp, ksq, ksg, 15, 2319), atol=atol, rtol=rtol)
