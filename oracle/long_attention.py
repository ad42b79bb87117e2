"""The long-input tier of the attention oracles (oracle/attention.py, oracle/attention_vjp.py):
the same outputs, gradients and magnitudes for long key axes (s up to 2^14 and beyond), in the
working format W of oracle/extended.py (float64 for float32/half subjects, 80-bit long double for
float64 subjects), vectorized over (b, h, keys) and blocked over query rows.

Algorithm (in W), per block of query rows: S = scale q k^T (scale = 1/sqrt(e) in W unless given),
masked; the log-sum-exp form w_ij = exp(S_ij - M_i), M_i = max_j S_ij, P = w / sum_j w, o = P v.
Backward: dP = dO v^T, D_i = sum_j P_ij dP_ij, dS = P (dP - D), dq = scale dS k,
dk = scale dS^T q, dv = P^T dO (FlashAttention-2's formulas, as oracle/attention_vjp.py).

The tier's own error (Reference.error): this is one of the accurate algorithms whose error the
magnitudes of oracle/attention.py (forward) and oracle/attention_vjp.py (backward) bound -- the
dot products (e), the scale, the max subtraction, exp, the sums over keys, the normalization --
with u_W in place of u, and no rounding to a half dtype.  Doubled for numpy's exp (within 1 ulp,
the derivation counts half an ulp) and the second-order terms:
    forward:  2 u_W (depth_score score_spread + depth_pv abs_pv) + tiny_W underflow
    backward: 2 u_W main + tiny_W underflow
(tiny_W: W's smallest normal; W's exp does not flush at ordinary scores).
Magnitudes: those of oracle/attention.py / attention_vjp.py (the same float64 functions), consumed
by their ``tolerance_terms``.
"""
from __future__ import annotations

import math

import numpy as np

from ssm_conformance.oracle import attention as fwd
from ssm_conformance.oracle import attention_vjp as bwd
from ssm_conformance.oracle.extended import tier_dtype, tier_unit_roundoff
from ssm_conformance.oracle.reference import Reference

ROW_ELEMENTS = 2**22  # scores per block of query rows


def _t(a):
    return np.swapaxes(a, -1, -2)


def _blocks(q, s):
    l = q.shape[-2]
    per_row = max(1, int(np.prod(q.shape[:-2])) * s)
    step = max(1, ROW_ELEMENTS // per_row)
    return [slice(i, min(i + step, l)) for i in range(0, l, step)]


def _softmax_w(q, k, mask, scale_w):
    """P (rows, s) in W over the visible keys; all-masked rows 0."""
    S = scale_w * np.matmul(q, _t(k))
    S = np.where(mask, S, -np.inf)
    M = np.max(S, axis=-1, keepdims=True, initial=-np.inf)
    M = np.where(np.isfinite(M), M, 0)
    w = np.where(mask, np.exp(S - M), 0)
    den = np.sum(w, axis=-1, keepdims=True)
    return w / np.where(den > 0, den, 1)


def _scale_w(scale, e, W):
    return 1 / np.sqrt(W(e)) if scale is None else W(scale)


def attention_long(q, k, v, is_causal=False, scale=None, subject_dtype="float32") -> Reference:
    """oracle/attention.py's ``attention`` by the long tier (module doc)."""
    q, k, v, is_causal, scale = fwd._check(q, k, v, is_causal, scale)
    W = tier_dtype(subject_dtype)
    u = tier_unit_roundoff(subject_dtype)
    l, e, s = q.shape[-2], q.shape[-1], k.shape[-2]
    mask = fwd.visible(l, s, is_causal)
    scale_f = 1.0 / math.sqrt(e) if scale is None else scale
    mags = fwd.magnitudes(q, k, v, mask, scale_f)
    mags["depth_pv"] = fwd.depth_pv(mask)
    mags["keys"] = mask.sum(axis=1)
    mags["underflow"] = np.matmul(mask.astype(float), np.abs(v)) + mags["keys"][:, None]
    out = np.zeros(q.shape[:-1] + (v.shape[-1],))
    if s and l and v.shape[-1]:
        qW, kW, vW, sc = q.astype(W), k.astype(W), v.astype(W), _scale_w(scale, e, W)
        for rows in _blocks(q, s):
            P = _softmax_w(qW[..., rows, :], kW, mask[rows], sc)
            out[..., rows, :] = np.matmul(P, vW).astype(np.float64)
    err = (2 * u * (mags["depth_score"] * mags["score_spread"] + mags["depth_pv"] * mags["abs_pv"])
           + float(np.finfo(W).tiny) * mags["underflow"])
    return Reference(out, err, mags)


def attention_vjp_long(q, k, v, grad_out, is_causal=False, scale=None,
                       subject_dtype="float32") -> dict:
    """oracle/attention_vjp.py's ``attention_vjp`` by the long tier: {"q", "k", "v": Reference}
    with magnitudes "main", "half", "underflow"."""
    q, k, v, grad_out, is_causal, scale = bwd.vjp_inputs(q, k, v, grad_out, is_causal, scale)
    W = tier_dtype(subject_dtype)
    u = tier_unit_roundoff(subject_dtype)
    l, e, s = q.shape[-2], q.shape[-1], k.shape[-2]
    mask = fwd.visible(l, s, is_causal)
    scale_f = 1.0 / math.sqrt(e) if scale is None else scale
    mags = bwd.magnitudes(q, k, v, grad_out, mask, scale_f)
    names, arrays = ("q", "k", "v"), (q, k, v)
    vals = {nm: np.zeros(x.shape, dtype=W) for nm, x in zip(names, arrays)}
    if s and l and v.shape[-1]:
        qW, kW, vW, gW = q.astype(W), k.astype(W), v.astype(W), grad_out.astype(W)
        sc = _scale_w(scale, e, W)
        for rows in _blocks(q, s):
            P = _softmax_w(qW[..., rows, :], kW, mask[rows], sc)
            g = gW[..., rows, :]
            dP = np.matmul(g, _t(vW))
            D = np.sum(P * dP, axis=-1, keepdims=True)
            dS = P * (dP - D)
            vals["q"][..., rows, :] = sc * np.matmul(dS, kW)
            vals["k"] += sc * np.matmul(_t(dS), qW[..., rows, :])
            vals["v"] += np.matmul(_t(P), g)
    tiny = float(np.finfo(W).tiny)
    return {nm: Reference(vals[nm].astype(np.float64),
                          2 * u * mags[nm]["main"] + tiny * mags[nm]["underflow"], mags[nm])
            for nm in names}
