"""Subjects whose forward is right and whose backward has one mistake, for the roles
``linear_scan``, ``causal_conv1d`` and ``ssd`` (attention's and selective_scan's are in
attention_subjects.py and test_meta_selective.py). Each is caught by ``vjp_matches_oracle`` alone.

Two ways to put a mistake into a backward only:
- a hand-written ``torch.autograd.Function`` (``linear_scan_manual`` and its wrong variants), as a
  kernel author writes a fused backward;
- the straight-through form  out = y.detach() + (s - s.detach()),  whose value is y exactly
  (s - s.detach() is exactly zero) and whose gradient is that of the surrogate s: the mistake is
  written into s, the forward stays our correct implementation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ssm_conformance.implementations.torch import mamba as t_mamba
from ssm_conformance.implementations.torch import ssd as t_ssd
from ssm_conformance.implementations.torch.scan import compute_dtype


def _straight_through(value, surrogate):
    """``value`` in the forward, the gradient of ``surrogate`` in the backward."""
    return value.detach() + (surrogate - surrogate.detach())


# ----------------------------------------------------------------------------------------------
# linear_scan: h_t = a_t h_{t-1} + b_t. Backward (torch's convention for complex inputs, the
# conjugate of the holomorphic derivative):  gh_t = g_t + conj(a_{t+1}) gh_{t+1}  (reverse scan),
# grad_b_t = gh_t,  grad_a_t = gh_t conj(h_{t-1})  with h_{-1} = 0.


class _ManualScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, bug):
        cdt = compute_dtype(a.dtype, b.dtype)
        a_c, b_c = torch.broadcast_tensors(a.to(cdt), b.to(cdt))
        h = torch.empty_like(b_c)
        prev = torch.zeros_like(b_c[..., 0])
        for t in range(b_c.shape[-1]):
            prev = a_c[..., t] * prev + b_c[..., t]
            h[..., t] = prev
        ctx.save_for_backward(a_c, h)
        ctx.bug, ctx.inputs = bug, ((a.dtype, a.shape), (b.dtype, b.shape))
        return h.to(torch.promote_types(a.dtype, b.dtype))

    @staticmethod
    def backward(ctx, grad_h):
        a_c, h = ctx.saved_tensors
        bug, l = ctx.bug, h.shape[-1]
        conj = (lambda z: z) if bug == "no_conj" else torch.conj
        g = grad_h.to(h.dtype)
        gh = torch.empty_like(h)
        nxt = torch.zeros_like(h[..., 0])
        for t in reversed(range(l)):
            # the coefficient that carries gh_{t+1} back is a_{t+1}; "coefficient_off_by_one": a_t
            coef = a_c[..., t] if bug == "coefficient_off_by_one" else (
                a_c[..., t + 1] if t + 1 < l else torch.zeros_like(nxt))
            nxt = g[..., t] + conj(coef) * nxt
            gh[..., t] = nxt
        # grad_a_t = gh_t conj(h_{t-1}); "uses_h_t": conj(h_t) (the state after the step)
        h_prev = h if bug == "uses_h_t" else torch.cat([torch.zeros_like(h[..., :1]), h[..., :-1]], -1)
        grads = []
        for grad, (dtype, shape) in zip((gh * conj(h_prev), gh), ctx.inputs):
            grad = grad if dtype.is_complex else grad.real   # a real input: the real part
            grads.append(grad.sum_to_size(shape).to(dtype))  # undo the broadcast
        return (*grads, None)


def linear_scan_manual(a, b):
    """Correct: a time loop and its hand-written reverse-scan backward (the control)."""
    return _ManualScan.apply(a, b, None)


def scan_bwd_uses_h_t(a, b):
    """grad_a_t = gh_t conj(h_t): the state after step t saved instead of the one before it."""
    return _ManualScan.apply(a, b, "uses_h_t")


def scan_bwd_coefficient_off_by_one(a, b):
    """The reverse scan carries gh_{t+1} back with a_t instead of a_{t+1}."""
    return _ManualScan.apply(a, b, "coefficient_off_by_one")


def scan_bwd_no_conj(a, b):
    """The holomorphic derivative returned without conjugation: right for real inputs, wrong for
    complex ones (torch's autograd expects the conjugate); needs the ``complex`` feature."""
    return _ManualScan.apply(a, b, "no_conj")


# ----------------------------------------------------------------------------------------------
# causal_conv1d: out = act(pre), pre[c, t] = bias_c + sum_k weight[c, k] x[c, t - (w-1) + k].


def _conv_pre(x, weight, bias):
    """The pre-activation in the compute dtype: our causal_conv1d without activation, on inputs
    already in the compute dtype (so nothing is rounded to a half dtype)."""
    cdt = compute_dtype(x.dtype, weight.dtype)
    return t_mamba.causal_conv1d(x.to(cdt), weight.to(cdt), bias, None)


def conv1d_bwd_silu_as_sigmoid(x, weight, bias=None, activation=None):
    """SiLU's derivative taken as sigmoid(p), without the p sigmoid(p)(1 - sigmoid(p)) term (the
    derivative of p sigmoid(p) with sigmoid(p) held constant); needs ``silu``."""
    y = t_mamba.causal_conv1d(x, weight, bias, activation)
    if activation not in ("silu", "swish"):
        return y
    pre = _conv_pre(x, weight, bias)
    surrogate = pre * torch.sigmoid(pre).detach()
    return _straight_through(y, surrogate.to(y.dtype))


def conv1d_bwd_weight_taps_reversed(x, weight, bias=None, activation=None):
    """grad_weight written to the taps in reverse order (grad_weight[:, k] holds the gradient of
    weight[:, w-1-k]: a backward kernel indexing its taps from the other end); needs w >= 2."""
    y = t_mamba.causal_conv1d(x, weight, bias, activation)
    pre = _conv_pre(x, weight, bias)
    # gradient of pre with respect to weight taken through the flipped weight, values unchanged
    pre_flipped = _conv_pre(x.detach(), weight.flip(-1), None) + _conv_pre(x, weight.detach(), bias)
    pre = _straight_through(pre, pre_flipped)
    surrogate = F.silu(pre) if activation in ("silu", "swish") else pre
    return _straight_through(y, surrogate.to(y.dtype))


# ----------------------------------------------------------------------------------------------
# ssd (Mamba-2): our chunked implementation in the forward.


def ssd_bwd_softplus_dropped(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                             initial_states=None, dt_softplus=False, return_final_states=False):
    """The backward treats softplus as the identity (the sigmoid factor of d softplus(t)/dt
    missing); needs ``dt_softplus``."""
    cdt = compute_dtype(x.dtype)
    pre = dt.to(cdt) + (dt_bias.to(cdt) if dt_bias is not None else 0)
    dt_eff = _straight_through(F.softplus(pre), pre) if dt_softplus else pre
    return t_ssd.ssd(x, dt_eff, A, B, C, chunk_size, D=D, z=z, initial_states=initial_states,
                     return_final_states=return_final_states)


def ssd_bwd_no_grad_initial_states(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                                   initial_states=None, dt_softplus=False,
                                   return_final_states=False):
    """initial_states enters detached: its gradient comes back zero (a kernel that supports
    initial states in the forward only); needs ``initial_states``."""
    if initial_states is not None:
        initial_states = initial_states.detach()
    return t_ssd.ssd(x, dt, A, B, C, chunk_size, D=D, z=z, dt_bias=dt_bias,
                     initial_states=initial_states, dt_softplus=dt_softplus,
                     return_final_states=return_final_states)


def ssd_bwd_state_passing_dropped(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                                  initial_states=None, dt_softplus=False,
                                  return_final_states=False):
    """The backward of the inter-chunk state passing is missing: gradients do not cross chunk
    boundaries (each chunk's backward as if its initial state were a constant); needs
    l > chunk_size."""
    kw = dict(D=D, dt_bias=dt_bias, dt_softplus=dt_softplus)
    y, final = t_ssd.ssd(x, dt, A, B, C, chunk_size, z=z, initial_states=initial_states,
                         return_final_states=True, **kw)
    pieces, state = [], initial_states
    for start in range(0, x.shape[1], chunk_size):
        piece = slice(start, start + chunk_size)
        y_c, state = t_ssd.ssd(x[:, piece], dt[:, piece], A, B[:, piece], C[:, piece], chunk_size,
                               z=None if z is None else z[:, piece], initial_states=state,
                               return_final_states=True, **kw)
        pieces.append(y_c)
        state = state.detach()   # the mistake: no gradient through the state into the next chunk
    y = _straight_through(y, torch.cat(pieces, dim=1))
    return (y, final) if return_final_states else y
