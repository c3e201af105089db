"""Polyline-path masked attention (PPMA) kernels: reference, memory-efficient PyTorch and Triton paths.

Public entry point::

    out = polyline_attention(q, k, v, log_a, log_b, mode="full", scale=None, impl="auto",
                             mask_placement="logits")

* ``q, k`` (B, n, H, W, d), ``v`` (B, n, H, W, dv), ``log_a`` / ``log_b`` (B, n, H, W) the log horizontal /
  vertical decays (see ``naive.py`` for the exact semantics). Returns (B, n, H, W, dv).
* ``mode``: ``"full"`` (two softmaxes with M and M^T, averaged) or ``"criss_cross"`` (row and column
  attention in both orders, averaged).
* ``scale``: logit scale (default d^-0.5; the PPMA model pre-scales k and passes 1.0 like the official code).
* ``impl``:

  - ``"reference"``: the dense official-style computation (``naive.py``), plain autograd;
  - ``"torch"``: full mode: tiled flash-style exact path that never materialises N x N tensors, with its own
    recomputing backward (``tiled.py``); criss-cross mode: axial path with a hand-written recomputing
    backward (``criss_cross.py``);
  - ``"cpp"``: both modes compiled for the CPU, forward and backward (``full_cpu.cpp``: flash-style blocks of a
    grid row of queries against every key; ``criss_cross_cpu.cpp``: one task per grid line; see ``cpp_impl.py``),
    built by ``python -m kernels.build_cpu``;
  - ``"triton"``: Triton forward + backward for the full mode (``triton_impl.py``; criss-cross mode uses
    the torch path, which is matmul-bound already);
  - ``"auto"``: ``"triton"`` for full mode on CUDA tensors when Triton is importable; ``"cpp"`` on CPU tensors
    when it is built; ``"torch"`` otherwise.

  ``"torch"``, ``"cpp"`` and ``"triton"`` are registered as ``torch.library.custom_op`` s (``ppma::polyline_full``,
  ``ppma::polyline_criss_cross`` with their backward ops) with fake kernels and autograd, so
  ``torch.compile`` sees one op.
* ``mask_placement``: where the mask acts (ablation): ``"logits"`` (official: log-mask added before the
  softmax, i.e. exp(M) multiplies exp(S) and rows are renormalised) or ``"post_softmax"`` (paper notation:
  softmax(S) * exp(M), rows not renormalised). ``"post_softmax"`` always runs the reference path.

FLOPs: :data:`FVCORE_OP_HANDLES` maps the custom ops' qualified names to fvcore handles counting the matmuls
the official code performs (full: N^2 (d + dv) per head; criss-cross: (H W^2 + W H^2) (d + 2 dv) per head), so
``FlopCountAnalysis(model, x).set_op_handle(**FVCORE_OP_HANDLES)`` reproduces the official counter.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..dtypes import compute_dtype
from .criss_cross import cc_backward, cc_forward
from .cpp_impl import cpp_available, cpp_unavailable_reason, polyline_cpp_backward, polyline_cpp_forward
from .naive import (
    MASK_PLACEMENTS,
    MODES,
    polyline_attention_reference,
    polyline_mask,
    polyline_mask_bruteforce,
    structured_mask_1d,
)
from .tiled import full_backward, full_forward

__all__ = [
    "FVCORE_OP_HANDLES",
    "polyline_attention",
    "polyline_attention_reference",
    "polyline_criss_cross_flop_jit",
    "polyline_full_flop_jit",
    "polyline_mask",
    "polyline_mask_bruteforce",
    "structured_mask_1d",
    "triton_available",
]

IMPLS = ("reference", "torch", "cpp", "triton", "auto")


def triton_available() -> bool:
    try:
        import triton
        import triton.language  # noqa: F401
    except Exception:
        return False
    return True


def _no_saved_stats(q):
    """The compiled CPU path recomputes everything in its backward: empty stand-ins for (o1, o2, lse1, lse2)."""
    return tuple(q.new_empty(0, dtype=compute_dtype(q)) for _ in range(4))


def _run_full_fwd(q, k, v, log_a, log_b, scale, impl, block_q, block_k):
    if impl == "cpp":
        return (polyline_cpp_forward("full", q, k, v, log_a, log_b, scale), *_no_saved_stats(q))
    if impl == "triton":
        from .triton_impl import triton_full_forward
        return triton_full_forward(q, k, v, log_a, log_b, scale)
    return full_forward(q, k, v, log_a, log_b, scale, block_q or None, block_k or None)


# ---------------------------------------------------------------------------------------- full mode op
@torch.library.custom_op("ppma::polyline_full", mutates_args=())
def _polyline_full(q: Tensor, k: Tensor, v: Tensor, log_a: Tensor, log_b: Tensor, scale: float, impl: str,
                   block_q: int, block_k: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return _run_full_fwd(q, k, v, log_a, log_b, scale, impl, block_q, block_k)


@_polyline_full.register_fake
def _(q, k, v, log_a, log_b, scale, impl, block_q, block_k):
    b, n, h, w, d = q.shape
    ct = compute_dtype(q)
    out = q.new_empty(b, n, h, w, v.shape[-1])
    if impl == "cpp":
        return (out, *_no_saved_stats(q))
    o = q.new_empty(b, n, h * w, v.shape[-1], dtype=ct)
    lse = q.new_empty(b, n, h * w, dtype=ct)
    return out, o, torch.empty_like(o), lse, torch.empty_like(lse)


@torch.library.custom_op("ppma::polyline_full_bwd", mutates_args=())
def _polyline_full_bwd(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, log_a: Tensor, log_b: Tensor, o1: Tensor,
                       o2: Tensor, lse1: Tensor, lse2: Tensor, scale: float, impl: str, block_q: int,
                       block_k: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    if impl == "cpp":
        return polyline_cpp_backward("full", grad_out, q, k, v, log_a, log_b, scale)
    if impl == "triton":
        from .triton_impl import triton_full_backward
        return triton_full_backward(grad_out, q, k, v, log_a, log_b, o1, o2, lse1, lse2, scale)
    return full_backward(grad_out, q, k, v, log_a, log_b, o1, o2, lse1, lse2, scale, block_q or None, block_k or None)


@_polyline_full_bwd.register_fake
def _(grad_out, q, k, v, log_a, log_b, o1, o2, lse1, lse2, scale, impl, block_q, block_k):
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(log_a),
            torch.empty_like(log_b))


def _full_setup(ctx, inputs, output):
    q, k, v, log_a, log_b, scale, impl, block_q, block_k = inputs
    _, o1, o2, lse1, lse2 = output
    ctx.save_for_backward(q, k, v, log_a, log_b, o1, o2, lse1, lse2)
    ctx.cfg = (scale, impl, block_q, block_k)


def _full_backward(ctx, grad_out, *unused):
    q, k, v, log_a, log_b, o1, o2, lse1, lse2 = ctx.saved_tensors
    grads = _polyline_full_bwd(grad_out.contiguous(), q, k, v, log_a, log_b, o1, o2, lse1, lse2, *ctx.cfg)
    return (*grads, None, None, None, None)


_polyline_full.register_autograd(_full_backward, setup_context=_full_setup)


# ---------------------------------------------------------------------------------------- criss-cross op
@torch.library.custom_op("ppma::polyline_criss_cross", mutates_args=())
def _polyline_cc(q: Tensor, k: Tensor, v: Tensor, log_a: Tensor, log_b: Tensor, scale: float, impl: str) -> Tensor:
    if impl == "cpp":
        return polyline_cpp_forward("criss_cross", q, k, v, log_a, log_b, scale)
    return cc_forward(q, k, v, log_a, log_b, scale)


@_polyline_cc.register_fake
def _(q, k, v, log_a, log_b, scale, impl):
    return q.new_empty(*q.shape[:4], v.shape[-1])


@torch.library.custom_op("ppma::polyline_criss_cross_bwd", mutates_args=())
def _polyline_cc_bwd(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, log_a: Tensor, log_b: Tensor,
                     scale: float, impl: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    if impl == "cpp":
        return polyline_cpp_backward("criss_cross", grad_out, q, k, v, log_a, log_b, scale)
    return cc_backward(grad_out, q, k, v, log_a, log_b, scale)


@_polyline_cc_bwd.register_fake
def _(grad_out, q, k, v, log_a, log_b, scale, impl):
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(log_a),
            torch.empty_like(log_b))


def _cc_setup(ctx, inputs, output):
    q, k, v, log_a, log_b, scale, impl = inputs
    ctx.save_for_backward(q, k, v, log_a, log_b)
    ctx.cfg = (scale, impl)


def _cc_backward(ctx, grad_out):
    q, k, v, log_a, log_b = ctx.saved_tensors
    grads = _polyline_cc_bwd(grad_out.contiguous(), q, k, v, log_a, log_b, *ctx.cfg)
    return (*grads, None, None)


_polyline_cc.register_autograd(_cc_backward, setup_context=_cc_setup)


# ---------------------------------------------------------------------------------------- entry point
def _resolve_impl(impl: str, mode: str, q: Tensor) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        if q.device.type == "cpu":
            return "cpp" if cpp_available() else "torch"
        return "triton" if mode == "full" and q.is_cuda and triton_available() else "torch"
    if impl == "triton" and mode != "full":
        return "torch"
    if impl == "triton" and not triton_available():
        raise RuntimeError("impl='triton' was requested but triton is not importable")
    if impl == "cpp" and q.device.type != "cpu":
        raise ValueError(f"impl='cpp' runs on CPU tensors, got {q.device.type} tensors")
    if impl == "cpp" and not cpp_available():
        raise RuntimeError("impl='cpp' was requested but the compiled CPU polyline attention is not built "
                           f"(run `python -m kernels.build_cpu`): {cpp_unavailable_reason()}")
    return impl


def polyline_attention(q: Tensor, k: Tensor, v: Tensor, log_a: Tensor, log_b: Tensor, *, mode: str = "full",
                       scale: float | None = None, impl: str = "auto", mask_placement: str = "logits",
                       block_q: int | None = None, block_k: int | None = None) -> Tensor:
    """Polyline-path masked attention; see the module docstring. ``block_q`` / ``block_k`` are the
    approximate query / key tile sizes in tokens of the tiled torch path (rounded to whole grid rows)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mask_placement not in MASK_PLACEMENTS:
        raise ValueError(f"mask_placement must be one of {MASK_PLACEMENTS}, got {mask_placement!r}")
    if q.dim() != 5 or k.shape != q.shape or v.shape[:4] != q.shape[:4] or log_a.shape != q.shape[:4] \
            or log_b.shape != q.shape[:4]:
        raise ValueError(f"expected q, k (B, n, H, W, d), v (B, n, H, W, dv), log_a, log_b (B, n, H, W); got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}, {tuple(log_a.shape)}, "
                         f"{tuple(log_b.shape)}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    impl = _resolve_impl(impl, mode, q)
    if impl == "reference" or mask_placement != "logits":
        return polyline_attention_reference(q, k, v, log_a, log_b, mode, scale, mask_placement)
    q, k, v, log_a, log_b = (t.contiguous() for t in (q, k, v, log_a, log_b))
    if mode == "full":
        return _polyline_full(q, k, v, log_a, log_b, scale, impl, int(block_q or 0), int(block_k or 0))[0]
    return _polyline_cc(q, k, v, log_a, log_b, scale, impl)


# ---------------------------------------------------------------------------------------- fvcore
def _shape(val):
    try:
        from fvcore.nn.jit_handles import get_shape
        return get_shape(val)
    except Exception:  # pragma: no cover
        return val.type().sizes()


def polyline_full_flop_jit(inputs, outputs):
    """fvcore handle for ``ppma::polyline_full``: the two matmuls S = q k^T and P v of the official code."""
    b, n, h, w, d = _shape(inputs[0])
    dv = _shape(inputs[2])[-1]
    tokens = h * w
    return b * n * tokens * tokens * (d + dv)


def polyline_criss_cross_flop_jit(inputs, outputs):
    """fvcore handle for ``ppma::polyline_criss_cross``: two axial score matmuls and four matmuls with v."""
    b, n, h, w, d = _shape(inputs[0])
    dv = _shape(inputs[2])[-1]
    axial = b * n * (h * w * w + w * h * h)
    return axial * (d + 2 * dv)


FVCORE_OP_HANDLES = {
    "ppma::polyline_full": polyline_full_flop_jit,
    "ppma::polyline_criss_cross": polyline_criss_cross_flop_jit,
}
