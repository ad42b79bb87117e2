"""First-order linear recurrence h_t = a_t h_{t-1} + b_t along the last axis, in torch, with autograd.

* ``linear_scan``          -- sequential over time (one fused multiply-add per step on a contiguous
  time-major slab), with a hand-written backward: the adjoint recurrence runs backwards in time,
      g_t = dL/dh_t + conj(a_{t+1}) g_{t+1},   dL/db_t = g_t,   dL/da_t = g_t conj(h_{t-1}).
  On a CPU this is the fastest form: the per-step work is small and memory-bound.
* ``linear_scan_parallel`` -- Hillis-Steele (log depth) associative scan built from out-of-place
  tensor ops, so autograd differentiates it directly.

Half-precision inputs are computed in float32 and returned in their own dtype; float64 and complex
stay as they are.
"""
from __future__ import annotations

import torch


def compute_dtype(*dtypes):
    """float64 if any input is float64 (complex128 if complex), else float32 (complex64)."""
    wide = any(dt in (torch.float64, torch.complex128) for dt in dtypes)
    cplx = any(dt.is_complex for dt in dtypes)
    if cplx:
        return torch.complex128 if wide else torch.complex64
    return torch.float64 if wide else torch.float32


class TimeMajorScan(torch.autograd.Function):
    """h[t] = a[t] * h[t-1] + b[t] over the FIRST axis; a, b (l, ...) of one shape and dtype;
    h0 (...) or None is h[-1]. Returns (h, h[l-1]) -- the last state as its own output, so that a
    caller carrying it into the next block does not pay for a gradient of a full-size select."""

    @staticmethod
    def forward(ctx, a, b, h0):
        a = a.contiguous()
        h = b.contiguous().clone()
        hs = h.unbind(0)                    # per-step views, made once
        as_ = a.unbind(0)
        if h0 is not None:
            hs[0].addcmul_(as_[0], h0)
        for t in range(1, len(hs)):
            hs[t].addcmul_(as_[t], hs[t - 1])  # h_t = b_t + a_t h_{t-1}
        ctx.save_for_backward(a, h, h0)
        return h, hs[-1].clone()

    @staticmethod
    def backward(ctx, gh, glast):
        a, h, h0 = ctx.saved_tensors
        ac = a.conj().resolve_conj() if a.is_complex() else a
        if gh is None:
            g = torch.zeros_like(h)
        else:
            g = gh.contiguous().clone()
        if glast is not None:
            g[-1] += glast
        gs = g.unbind(0)
        acs = ac.unbind(0)
        for t in range(len(gs) - 2, -1, -1):
            gs[t].addcmul_(acs[t + 1], gs[t + 1])  # g_t = dh_t + conj(a_{t+1}) g_{t+1}
        grad_a = grad_h0 = None
        if ctx.needs_input_grad[0]:
            h_prev = torch.empty_like(h)
            h_prev[1:] = h[:-1]
            if h0 is None:
                h_prev[0] = 0
            else:
                h_prev[0] = h0
            grad_a = g * (h_prev.conj() if h_prev.is_complex() else h_prev)
        if h0 is not None and ctx.needs_input_grad[2]:
            grad_h0 = g[0] * ac[0]
        return grad_a, g, grad_h0


def scan_time_major(a, b, h0=None):
    """The recurrence over the first axis of same-shape, same-dtype a, b (l, ...); returns
    (h, h_last)."""
    return TimeMajorScan.apply(a, b, h0)


def _check(a, b):
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"linear_scan: {name} must be a torch.Tensor, got {type(x).__name__}")
        if not (x.is_floating_point() or x.is_complex()):
            raise TypeError(f"linear_scan: {name} must be a floating or complex tensor, got {x.dtype}")
        if x.dim() == 0:
            raise ValueError(f"linear_scan: {name} must have shape (..., l) with l >= 1, got a scalar")
    try:
        shape = torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(f"linear_scan: a and b must have the same shape (..., l) (or broadcast to it), "
                         f"got a {tuple(a.shape)} and b {tuple(b.shape)}") from None
    if shape[-1] < 1:
        raise ValueError(f"linear_scan: the last axis (l) must have length >= 1, got shape {tuple(shape)}")
    if a.device != b.device:
        raise ValueError(f"linear_scan: a and b must be on one device, got {a.device} and {b.device}")
    cdt = compute_dtype(a.dtype, b.dtype)
    out_dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(cdt).expand(shape), b.to(cdt).expand(shape), out_dtype


def linear_scan(a, b):
    """h (..., l): h_t = a_t h_{t-1} + b_t, h_{-1} = 0, sequentially in time; differentiable."""
    a, b, out_dtype = _check(a, b)
    h, _ = scan_time_major(a.movedim(-1, 0), b.movedim(-1, 0))
    return h.movedim(0, -1).to(out_dtype)


def linear_scan_parallel(a, b):
    """Same as ``linear_scan`` by a Hillis-Steele scan: after the step with offset k, position t
    holds the composition (a2, b2) o (a1, b1) = (a2 a1, a2 b1 + b2) of elements t-2k+1..t."""
    A, B, out_dtype = _check(a, b)
    l = B.shape[-1]
    k = 1
    while k < l:
        B = torch.cat([B[..., :k], A[..., k:] * B[..., :-k] + B[..., k:]], dim=-1)
        if 2 * k < l:
            A = torch.cat([A[..., :k], A[..., k:] * A[..., :-k]], dim=-1)
        k *= 2
    return B.to(out_dtype)
