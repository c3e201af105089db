"""State-returning selective scan (Spatial-Mamba): h_t for every t, fp32 accumulation, any d_state >= 1.

One public entry point::

    h = selective_scan(u, delta, A, B, delta_bias=None, delta_softplus=True, impl="auto")

u, delta: (b, D, L) fp32/fp16/bf16; A: (D, N) fp32; B: (b, N, L) (or (b, 1, N, L)); delta_bias: (D,) or None.
Returns h: (b, D, N, L) fp32 (fp64 for fp64 inputs) with

    delta = softplus(delta + delta_bias);  h_t = exp(delta_t A) * h_{t-1} + delta_t * B_t * u_t.

``impl``:
  * ``"reference"`` - the sequential loops of :mod:`.naive` (forward and adjoint backward);
  * ``"torch"``     - the chunked log-space scan of :mod:`.chunked` with its adjoint-scan backward;
  * ``"cpp"``       - the recurrence and its adjoint as compiled C++ loops on ATen's thread pool
    (:mod:`.cpp_impl`, CPU tensors; built by ``python -m kernels.build_cpu``, which install_requirements.sh runs);
  * ``"triton"``    - Triton forward + backward kernels of :mod:`.triton_impl` (CUDA tensors, or CPU tensors
    under ``TRITON_INTERPRET=1``);
  * ``"auto"``      - ``"triton"`` on CUDA tensors when Triton imports; on the CPU ``"cpp"`` when it is built,
    ``"torch"`` otherwise.

The op is registered as ``spatial_mamba::selective_scan`` (``torch.library.custom_op`` with a fake kernel and
an autograd formula), so ``torch.compile`` sees one opaque op; :func:`selective_scan_flop_jit` is its fvcore
handle (7 * b * L * D * N, the official counter's formula).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .cpp_impl import cpp_available, selective_scan_cpp_bwd, selective_scan_cpp_fwd
from .chunked import linear_scan, linear_scan_adjoint, selective_scan_chunked, selective_scan_chunked_bwd_dt
from .naive import compute_dtype, selective_scan_ref, selective_scan_ref_bwd

__all__ = [
    "selective_scan", "selective_scan_ref", "selective_scan_ref_bwd", "selective_scan_chunked", "linear_scan",
    "linear_scan_adjoint", "selective_scan_flop_jit",
    "selective_scan_flops", "triton_available", "cpp_available", "IMPLS", "OP_NAME",
]

IMPLS = ("reference", "torch", "cpp", "triton", "auto")
OP_NAME = "spatial_mamba::selective_scan"


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def _resolve(impl: str, u: Tensor) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        if u.is_cuda:
            return "triton" if triton_available() else "torch"
        return "cpp" if (u.device.type == "cpu" and cpp_available()) else "torch"
    if impl == "cpp" and u.device.type != "cpu":
        raise ValueError(f"impl='cpp' runs on CPU tensors, got {u.device.type} tensors")
    return impl


def _saves_dt(impl: str) -> bool:
    """The torch and cpp paths return delta' with the states; their backward takes it in place of delta."""
    return impl in ("torch", "cpp")


def _check(u, delta, A, B, delta_bias):
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must both be (batch, D, L), got {tuple(u.shape)} and {tuple(delta.shape)}")
    b, D, L = u.shape
    if A.dim() != 2 or A.shape[0] != D:
        raise ValueError(f"A must be (D={D}, N), got {tuple(A.shape)}")
    N = A.shape[1]
    if N < 1:
        raise ValueError("d_state N must be >= 1")
    Bs = B.squeeze(1) if B.dim() == 4 else B
    if tuple(Bs.shape) != (b, N, L):
        raise ValueError(f"B must be (batch, N, L) = {(b, N, L)} (or (batch, 1, N, L)), got {tuple(B.shape)}")
    if delta_bias is not None and tuple(delta_bias.shape) != (D,):
        raise ValueError(f"delta_bias must be (D,) = ({D},), got {tuple(delta_bias.shape)}")


# ------------------------------------------------------------------------------------------- the op
@torch.library.custom_op(OP_NAME, mutates_args=())
def _selective_scan_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, delta_bias: Optional[Tensor],
                       delta_softplus: bool, impl: str) -> Tuple[Tensor, Tensor]:
    """Returns (h, saved): ``saved`` is delta' = softplus(delta + delta_bias) for the torch and cpp paths,
    which their backward uses instead of delta (no softplus to recompute), and an empty tensor for the others."""
    impl = _resolve(impl, u)
    empty = u.new_empty((0,), dtype=compute_dtype(u))
    if impl == "reference":
        with torch.no_grad():
            return selective_scan_ref(u, delta, A, B, delta_bias, delta_softplus), empty
    if impl == "triton":
        from .triton_impl import selective_scan_triton_fwd
        return selective_scan_triton_fwd(u, delta, A, B, delta_bias, delta_softplus), empty
    if impl == "cpp":
        return selective_scan_cpp_fwd(u, delta, A, B, delta_bias, delta_softplus)
    return selective_scan_chunked(u, delta, A, B, delta_bias, delta_softplus, return_dt=True)


@_selective_scan_op.register_fake
def _(u, delta, A, B, delta_bias, delta_softplus, impl):
    h = u.new_empty((u.shape[0], u.shape[1], A.shape[1], u.shape[2]), dtype=compute_dtype(u))
    saved = u.new_empty(tuple(u.shape) if _saves_dt(_resolve(impl, u)) else (0,), dtype=compute_dtype(u))
    return h, saved


@torch.library.custom_op("spatial_mamba::selective_scan_bwd", mutates_args=())
def _selective_scan_bwd_op(g: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, delta_bias: Optional[Tensor],
                           h: Tensor, delta_softplus: bool, impl: str) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """For the torch and cpp paths ``delta`` is the saved delta' (see the forward op) and ``delta_bias`` is
    unused."""
    impl = _resolve(impl, u)
    bias_dtype = delta_bias.dtype if delta_bias is not None else torch.float32
    if impl == "reference":  # the readable backward recomputes its own states
        return selective_scan_ref_bwd(g, u, delta, A, B, delta_bias, delta_softplus)
    if impl == "triton":
        from .triton_impl import selective_scan_triton_bwd
        return selective_scan_triton_bwd(g, u, delta, A, B, delta_bias, delta_softplus, h=h)
    if impl == "cpp":
        du, ddelta, dA, dB, dbias = selective_scan_cpp_bwd(g, u, delta, A, B, h, delta_softplus)
    else:
        du, ddelta, dA, dB, dbias = selective_scan_chunked_bwd_dt(g, u, delta, A, B, delta_softplus, h=h)
    return du.to(u.dtype), ddelta, dA.to(A.dtype), dB.to(B.dtype), dbias.to(bias_dtype)


@_selective_scan_bwd_op.register_fake
def _(g, u, delta, A, B, delta_bias, h, delta_softplus, impl):
    bias_dtype = delta_bias.dtype if delta_bias is not None else torch.float32
    return (torch.empty_like(u), torch.empty_like(delta), torch.empty_like(A), torch.empty_like(B),
            u.new_empty((u.shape[1],), dtype=bias_dtype))


def _setup_context(ctx, inputs, output):
    u, delta, A, B, delta_bias, delta_softplus, impl = inputs
    h, dt = output
    ctx.mark_non_differentiable(dt)
    ctx.set_materialize_grads(False)  # (no zero gradient is built for delta')
    # the backward needs the states h: saving the output costs no memory in Spatial-Mamba (d_state 1: its next
    # op, the state fusion, keeps h alive for its own backward anyway); the torch and cpp paths save delta'
    # (fp32) in place of delta (the same size for fp32 inputs), so their backward recomputes no softplus
    ctx.save_for_backward(u, dt if _saves_dt(_resolve(impl, u)) else delta, A, B, delta_bias, h)
    ctx.delta_dtype = delta.dtype
    ctx.delta_softplus = delta_softplus
    ctx.impl = impl
    ctx.has_bias = delta_bias is not None


def _backward(ctx, g, _g_dt):
    if g is None:
        return None, None, None, None, None, None, None
    u, delta, A, B, delta_bias, h = ctx.saved_tensors
    g = g.to(compute_dtype(u))  # under autocast the incoming gradient can arrive in a lower precision
    du, ddelta, dA, dB, dbias = _selective_scan_bwd_op(g.contiguous(), u, delta, A, B, delta_bias, h,
                                                       ctx.delta_softplus, ctx.impl)
    return du, ddelta.to(ctx.delta_dtype), dA, dB, (dbias if ctx.has_bias else None), None, None


_selective_scan_op.register_autograd(_backward, setup_context=_setup_context)


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, delta_bias: Optional[Tensor] = None,
                   delta_softplus: bool = True, impl: str = "auto") -> Tensor:
    """All hidden states h (b, D, N, L) of the selective scan; see the module docstring."""
    _check(u, delta, A, B, delta_bias)
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return _selective_scan_op(u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(),
                              delta_bias, delta_softplus, impl)[0]


# ------------------------------------------------------------------------------------------- FLOPs
def selective_scan_flops(batch: int, dim: int, length: int, d_state: int) -> int:
    """FLOPs as the official counter: 7 * b * L * D * N (VMamba's 9 b L D N without the C product)."""
    return 7 * batch * length * dim * d_state


def selective_scan_flop_jit(inputs, outputs) -> int:
    """fvcore handle: ``FlopCountAnalysis(...).set_op_handle(OP_NAME, selective_scan_flop_jit)``."""
    b, D, L = inputs[0].type().sizes()
    N = inputs[2].type().sizes()[1]
    return selective_scan_flops(b, D, L, N)
