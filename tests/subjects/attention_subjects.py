"""Subjects for the ``attention`` role: f(q, k, v, is_causal=False, scale=None), torch tensors
q (b, h, l, e), k, v (b, h, s, e) in, a tensor (b, h, l, e) out in the input dtype.

Correct ones (must pass): ``sdpa`` (torch's own scaled_dot_product_attention), ``naive`` (a plain
max-subtracted softmax computed in the input dtype: float32 for float32, float64 for float64 --
in bf16/fp16 it computes in half precision, which the contract's float32-accumulation model
rightly rejects), ``ours`` (implementations/torch/attention.py), ``flash_manual`` (a hand-written
backward in the manner of FlashAttention-2: P recomputed from the saved log-sum-exp, D from the
saved output, P and dS rounded to a half input dtype before the products).

Wrong ones (must fail), each a mistake seen in attention code, written as ``_attend`` with the
mistake switched in at the one line where it happens (``bug == ...``); the docstrings say what
input exposes it:
    causal_diag_minus1  mask tril(diagonal=-1): a query does not see itself (row 0 sees nothing:
                        NaN); any causal input
    causal_diag_plus1   tril(diagonal=+1): a query sees the next key; causal with s >= 2
    scale_1_over_e      scale 1/e instead of 1/sqrt(e) when scale is None; e >= 2 and scores not
                        all equal
    unstabilized        exp(S) / sum exp(S) without subtracting the max: inf / inf = NaN once a
                        score exceeds ~88.7 (float32) or ~709 (float64); needs large logits
    bottom_right        causal mask aligned to the bottom-right corner (tril(diagonal=s-l)) when
                        l != s; causal with l != s
    softmax_wrong_axis  softmax over the queries (dim=-2) instead of the keys; l >= 2
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ssm_conformance.implementations.torch.attention import attention as ours  # noqa: F401  (a correct subject)


def _cdt(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _attend(q, k, v, is_causal=False, scale=None, *, bug=None, compute_dtype=None):
    """softmax(scale q k^T + causal mask) v in ``compute_dtype`` (float32 / float64 by default),
    with one optional mistake."""
    dtype_in = q.dtype
    cdt = compute_dtype or _cdt(dtype_in)
    q, k, v = q.to(cdt), k.to(cdt), v.to(cdt)
    l, s, e = q.shape[-2], k.shape[-2], q.shape[-1]
    if scale is None:
        scale = 1.0 / e if bug == "scale_1_over_e" else 1.0 / math.sqrt(e)
    S = (q @ k.transpose(-1, -2)) * scale
    if is_causal:
        diagonal = {"causal_diag_minus1": -1, "causal_diag_plus1": 1, "bottom_right": s - l}.get(bug, 0)
        keep = torch.ones(l, s, dtype=torch.bool, device=q.device).tril(diagonal=diagonal)
        S = S.masked_fill(~keep, float("-inf"))
    if bug == "unstabilized":
        w = torch.exp(S)                                         # no max subtracted: overflows
        P = w / w.sum(dim=-1, keepdim=True)
    elif bug == "softmax_wrong_axis":
        P = torch.softmax(S, dim=-2)
    else:
        m = S.amax(dim=-1, keepdim=True)
        w = torch.exp(S - m)
        P = w / w.sum(dim=-1, keepdim=True)
    return (P @ v).to(dtype_in)


# ---- correct -------------------------------------------------------------------------------

def sdpa(q, k, v, is_causal=False, scale=None):
    """torch.nn.functional.scaled_dot_product_attention itself, default backend. On a CPU,
    torch 2.13's default (flash) kernel returns NaN rows for is_causal=True with a negative
    scale (it seems to scale the -inf of the mask), so the suite rejects it there: see
    tests/test_meta_attention.py."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=scale)


def sdpa_math(q, k, v, is_causal=False, scale=None):
    """torch.nn.functional.scaled_dot_product_attention with the MATH backend."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=scale)


def naive(q, k, v, is_causal=False, scale=None):
    """Max-subtracted softmax computed in the input dtype."""
    return _attend(q, k, v, is_causal, scale, compute_dtype=q.dtype)


# ---- wrong ---------------------------------------------------------------------------------

def causal_diag_minus1(q, k, v, is_causal=False, scale=None):
    """Causal mask tril(diagonal=-1): the diagonal is masked too."""
    return _attend(q, k, v, is_causal, scale, bug="causal_diag_minus1")


def causal_diag_plus1(q, k, v, is_causal=False, scale=None):
    """Causal mask tril(diagonal=+1): each query also sees the next key."""
    return _attend(q, k, v, is_causal, scale, bug="causal_diag_plus1")


def scale_1_over_e(q, k, v, is_causal=False, scale=None):
    """Default scale 1/e instead of 1/sqrt(e)."""
    return _attend(q, k, v, is_causal, scale, bug="scale_1_over_e")


def unstabilized(q, k, v, is_causal=False, scale=None):
    """Softmax as exp(S) / sum exp(S): overflows (NaN) on large logits."""
    return _attend(q, k, v, is_causal, scale, bug="unstabilized")


def bottom_right(q, k, v, is_causal=False, scale=None):
    """Causal mask aligned bottom-right (query i sees j <= i + s - l) instead of top-left."""
    return _attend(q, k, v, is_causal, scale, bug="bottom_right")


def softmax_wrong_axis(q, k, v, is_causal=False, scale=None):
    """Softmax normalized over the queries (dim=-2)."""
    return _attend(q, k, v, is_causal, scale, bug="softmax_wrong_axis")


# ---- a hand-written backward (FlashAttention-2, Algorithm 2, written densely) -------------------

class _ManualAttention(torch.autograd.Function):
    """Forward: max-subtracted softmax attention in float32 (float64 for float64), saving the
    output rounded to the input dtype and each row's log-sum-exp, as FlashAttention does.
    Backward, for L = sum(dO * O):  P = exp(S - LSE) under the mask;  dV = P^T dO;
    dP = dO V^T;  D = rowsum(dO * O);  dS = P (dP - D);  dQ = scale dS K;  dK = scale dS^T Q --
    with P and dS rounded to the input dtype before the products, and one optional mistake."""

    @staticmethod
    def forward(ctx, q, k, v, is_causal, scale, bug):
        cdt = _cdt(q.dtype)
        l, s, e = q.shape[-2], k.shape[-2], q.shape[-1]
        scale = 1.0 / math.sqrt(e) if scale is None else scale
        keep = torch.ones(l, s, dtype=torch.bool, device=q.device).tril() if is_causal else None
        S = (q.to(cdt) @ k.to(cdt).transpose(-1, -2)) * scale
        if keep is not None:
            S = S.masked_fill(~keep, float("-inf"))
        m = S.amax(dim=-1, keepdim=True)
        w = torch.exp(S - m)
        den = w.sum(dim=-1, keepdim=True)
        if bug == "bwd_lse_unstabilized":                  # log(sum exp(S)): inf on large scores
            lse = torch.log(torch.exp(S).sum(dim=-1, keepdim=True))
        else:
            lse = m + torch.log(den)
        out = ((w / den) @ v.to(cdt)).to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.keep, ctx.scale, ctx.bug = keep, scale, bug
        return out

    @staticmethod
    def backward(ctx, dO):
        q, k, v, out, lse = ctx.saved_tensors
        dtype_in, cdt, bug, scale = q.dtype, _cdt(q.dtype), ctx.bug, ctx.scale
        qc, kc, vc, oc, gc = (t.to(cdt) for t in (q, k, v, out, dO))
        S = (qc @ kc.transpose(-1, -2)) * scale
        if ctx.keep is not None and bug != "bwd_unmasked":
            S = S.masked_fill(~ctx.keep, float("-inf"))
        P = torch.exp(S - lse)
        dV = P.to(dtype_in).to(cdt).transpose(-1, -2) @ gc
        dP = gc @ vc.transpose(-1, -2)
        D = (gc * oc).sum(dim=-1, keepdim=True)
        dS = P * dP if bug == "bwd_no_rowsum" else P * (dP - D)
        dS = dS.to(dtype_in).to(cdt)
        g = {"bwd_unscaled": 1.0, "bwd_scale_squared": scale * scale}.get(bug, scale)
        dQ, dK = g * (dS @ kc), g * (dS.transpose(-1, -2) @ qc)
        return dQ.to(dtype_in), dK.to(dtype_in), dV.to(dtype_in), None, None, None


def flash_manual(q, k, v, is_causal=False, scale=None):
    """Correct: the hand-written FlashAttention-2 style backward."""
    return _ManualAttention.apply(q, k, v, is_causal, scale, None)


def bwd_no_rowsum(q, k, v, is_causal=False, scale=None):
    """Softmax backward as dS = P dP, without subtracting D = rowsum(P dP)."""
    return _ManualAttention.apply(q, k, v, is_causal, scale, "bwd_no_rowsum")


def bwd_unmasked(q, k, v, is_causal=False, scale=None):
    """P recomputed in the backward without the causal mask: future keys get gradients."""
    return _ManualAttention.apply(q, k, v, is_causal, scale, "bwd_unmasked")


def bwd_unscaled(q, k, v, is_causal=False, scale=None):
    """dQ = dS K and dK = dS^T Q without the softmax scale."""
    return _ManualAttention.apply(q, k, v, is_causal, scale, "bwd_unscaled")


def bwd_scale_squared(q, k, v, is_causal=False, scale=None):
    """The scale applied twice in dQ and dK (as when q was pre-scaled and the scale reapplied)."""
    return _ManualAttention.apply(q, k, v, is_causal, scale, "bwd_scale_squared")


def bwd_lse_unstabilized(q, k, v, is_causal=False, scale=None):
    """The saved log-sum-exp computed as log(sum(exp(S))): inf once a score exceeds ~88.7 in
    float32, so the recomputed P is 0 and the gradients vanish; the forward is right."""
    return _ManualAttention.apply(q, k, v, is_causal, scale, "bwd_lse_unstabilized")


CORRECT = {"sdpa_math": sdpa_math, "naive": naive, "ours": ours, "flash_manual": flash_manual}
# correct forward, wrong backward: only vjp_matches_oracle (with --ssm-grad) can catch them
WRONG_BACKWARD = {f.__name__: f for f in (bwd_no_rowsum, bwd_unmasked, bwd_unscaled,
                                          bwd_scale_squared, bwd_lse_unstabilized)}
WRONG = {f.__name__: f for f in (causal_diag_minus1, causal_diag_plus1, scale_1_over_e, unstabilized,
                                 bottom_right, softmax_wrong_axis)}
