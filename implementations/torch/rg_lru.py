"""RG-LRU (Griffin's Real-Gated Linear Recurrent Unit; role ``rg_lru``, CONTRACT.md) in torch,
with autograd: the gates of RecurrentGemma's ``RGLRU.forward`` already applied,

    log a_t = -8 sigmoid(gate_a_t) softplus(a_param),   a_t = exp(log a_t)
    m_t     = sqrt(1 - a_t^2) computed as sqrt(-expm1(2 log a_t))   (1 where reset)
    h_t     = a_t h_{t-1} [0 where reset] + m_t sigmoid(gate_x_t) x_t,   h_{-1} = h0 or 0.

sqrt(-expm1(2 log a)) is accurate for every a; 1 - exp(2 log a) (RecurrentGemma's form) loses
the value where a is near 1 (oracle/rg_lru.py).

* ``rg_lru``          -- sequential over time (implementations/torch/scan.py's time-major scan,
  with its hand-written adjoint recurrence).
* ``rg_lru_parallel`` -- Hillis-Steele (log depth) associative scan of (abar, b), h0 folded into
  b_0; autograd differentiates it directly.

Half-precision activations are computed in float32 (float64 stays float64); y comes back in x's
dtype, h_last in float32 (float64 for float64 inputs).
"""
from __future__ import annotations

import torch

from ssm_conformance.implementations.torch.scan import scan_time_major


def _check(x, gate_x, gate_a, a_param, reset, h0):
    for name, t in (("x", x), ("gate_x", gate_x), ("gate_a", gate_a), ("a_param", a_param)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"rg_lru: {name} must be a floating torch.Tensor, got "
                            f"{getattr(t, 'dtype', type(t).__name__)}")
    if x.dim() != 3 or x.shape[1] < 1:
        raise ValueError(f"rg_lru: x must have shape (b, l, d) with l >= 1, got {tuple(x.shape)}")
    b, l, d = x.shape
    if gate_x.shape != x.shape or gate_a.shape != x.shape:
        raise ValueError(f"rg_lru: gate_x and gate_a must have the shape of x {tuple(x.shape)}, "
                         f"got {tuple(gate_x.shape)} and {tuple(gate_a.shape)}")
    if a_param.shape != (d,):
        raise ValueError(f"rg_lru: a_param must have shape ({d},), got {tuple(a_param.shape)}")
    if reset is not None and (not isinstance(reset, torch.Tensor) or reset.dtype != torch.bool
                              or reset.shape != (b, l)):
        raise TypeError(f"rg_lru: reset must be a bool tensor of shape ({b}, {l}) or None")
    if h0 is not None and (not isinstance(h0, torch.Tensor) or h0.shape != (b, d)):
        raise ValueError(f"rg_lru: h0 must be a tensor of shape ({b}, {d}) or None")
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class SqrtOneMinusExp2(torch.autograd.Function):
    """m = sqrt(1 - e^{2L}) = sqrt(-expm1(2L)) for L < 0, and dm/dL = -e^{2L} / m.

    Autograd of the composition would form d expm1(z)/dz as expm1(z) + 1, which cancels where
    e^{2L} is small (an absolute error u against e^{2L}): the derivative is written out instead."""

    @staticmethod
    def forward(ctx, L):
        m = torch.sqrt(-torch.expm1(2.0 * L))
        ctx.save_for_backward(L, m)
        return m

    @staticmethod
    def backward(ctx, grad):
        L, m = ctx.saved_tensors
        return -grad * torch.exp(2.0 * L) / m


def leaves(x, gate_x, gate_a, a_param, reset, cd):
    """(abar, b) in the compute dtype ``cd``, (b, l, d)."""
    # softplus: torch's threshold moved to 40, where log1p(e^c) - c = e^-40 is below float64's
    # rounding of c (the contract's softplus has no threshold)
    softplus = torch.nn.functional.softplus(a_param.to(cd), beta=1.0, threshold=40.0)
    log_a = -8.0 * torch.sigmoid(gate_a.to(cd)) * softplus
    a = torch.exp(log_a)
    m = SqrtOneMinusExp2.apply(log_a)
    if reset is not None:
        r = reset[..., None]
        a = torch.where(r, torch.zeros_like(a), a)
        m = torch.where(r, torch.ones_like(m), m)
    return a, m * torch.sigmoid(gate_x.to(cd)) * x.to(cd)


def _finish(x, h, h_last, return_last_state):
    y = h.to(x.dtype)
    return (y, h_last) if return_last_state else y


def rg_lru(x, gate_x, gate_a, a_param, reset=None, h0=None, return_last_state=False):
    """y (b, l, d) [, h_last (b, d)]: the recurrence sequentially in time; differentiable."""
    cd = _check(x, gate_x, gate_a, a_param, reset, h0)
    abar, bb = leaves(x, gate_x, gate_a, a_param, reset, cd)
    h, h_last = scan_time_major(abar.transpose(0, 1), bb.transpose(0, 1),
                                None if h0 is None else h0.to(cd))
    return _finish(x, h.transpose(0, 1), h_last, return_last_state)


def rg_lru_parallel(x, gate_x, gate_a, a_param, reset=None, h0=None, return_last_state=False):
    """Same as ``rg_lru`` by a Hillis-Steele scan over time: after the step with offset k,
    position t holds the composition (a2, b2) o (a1, b1) = (a2 a1, a2 b1 + b2) of elements
    t-2k+1..t; h0 enters as b_0 + abar_0 h0."""
    cd = _check(x, gate_x, gate_a, a_param, reset, h0)
    A, B = leaves(x, gate_x, gate_a, a_param, reset, cd)
    if h0 is not None:
        B = torch.cat([B[:, :1] + A[:, :1] * h0.to(cd)[:, None], B[:, 1:]], dim=1)
    l = B.shape[1]
    k = 1
    while k < l:
        B = torch.cat([B[:, :k], A[:, k:] * B[:, :-k] + B[:, k:]], dim=1)
        if 2 * k < l:
            A = torch.cat([A[:, :k], A[:, k:] * A[:, :-k]], dim=1)
        k *= 2
    return _finish(x, B, B[:, -1], return_last_state)
