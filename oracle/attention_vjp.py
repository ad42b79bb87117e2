"""Backward of softmax attention: the vector-Jacobian product of oracle/attention.py's
``attention`` (torch SDPA without mask or dropout), in multiple precision, and the magnitudes of
the forward error bound of an accurate backward.

Gradients of L = sum(dO * O), O = P V, P = softmax(S) over the visible keys, S = scale Q K^T
(FlashAttention-2, Algorithm 2; the same formulas autograd derives through torch's math backend):

    dV = P^T dO                        dP_ij = dO_i . v_j
    D_i = sum_j P_ij dP_ij  (= dO_i . o_i)
    dS_ij = P_ij (dP_ij - D_i)         (softmax backward; masked entries have P_ij = 0)
    dQ = scale dS K                    dK = scale dS^T Q

Value: dO V^T and Q K^T are exact (Python integers at a common power of two, as in the forward);
P, D, dS and the three products in MPFR at mpmath's working precision, certified by doubling.

Error bound of an accurate backward (units of u, the compute dtype's; notation of
oracle/attention.py: a_ij = |scale| |q_i|.|k_j|, A_i = max_j a_ij, n_i keys seen by row i, m_j
queries that see key j):
 1. Computed P, directly or recomputed from the forward's log-sum-exp as exp(S_ij - LSE_i)
    (FlashAttention's backward): an exponent error x_ij <= (e + 6)(a_ij + A_i) (forward item 1)
    moves P_ij by P_ij (x_ij - sum_k P_ik x_ik), and the row sum, its log or the online rescales
    add <= 2 n_i + 8:   rho_ij = (e + 6)(a_ij + A_i + sum_k P_ik (a_ik + A_i)) + 2 n_i + 8.
 2. dV_j = sum_i P_ij dO_i:  sum_i P_ij (rho_ij + m_j + 2) |dO_i|.
 3. dP_ij = dO_i . v_j:  (ev + 1) c_ij, c_ij = |dO_i| . |v_j|.
 4. D_i, either as sum_j P_ij dP_ij:  sum_j P_ij ((rho_ij + n_i + 1) |dP_ij| + (ev + 1) c_ij),
    or as dO_i . o_i with the forward's computed o_i (FlashAttention):
    sum |dO_i| (tau_i + (ev + 1) |o_i|), tau the forward bound of oracle/attention.py.  An
    algorithm uses one of them: d_i = the larger.
 5. dS_ij = P_ij (dP_ij - D_i) cancels where dP_ij ~ D_i; its error
    sigma_ij = P_ij ((rho_ij + 2) |dP_ij - D_i| + (ev + 1) c_ij + d_i).
 6. dQ_i = scale sum_j dS_ij k_j:  |scale| sum_j (sigma_ij + (n_i + 6) |dS_ij|) |k_j| (the sum,
    and up to four roundings of the scale: torch's math backend scales q and k by a rounded
    sqrt(scale)); dK_j likewise over the queries i with m_j + 6, times |q_i|.
 Half dtypes: FlashAttention rounds P (for dV) and dS (for dQ, dK) to the input dtype before the
 products, and reads the output o_i, rounded to it, for D_i; the forward that made o_i may have
 rounded P too.  Those roundings add u_half times: dV: sum_i P_ij |dO_i|;
 dQ: |scale| sum_j (|dS_ij| + P_ij h_i) |k_j|, h_i = sum |dO_i| (|o_i| + sum_j P_ij |v_j|);
 dK likewise -- magnitude "half", weighed by u_half / u_float32 in ``tolerance_terms``.
 Underflow: softmax weights of saturated rows (P_ij < tiny, e.g. exp(-100) in float32) underflow
 and err absolutely, as may dS_ij, D_i's terms, o_i and the products (by tiny where kernels flush
 subnormals to zero, u tiny in float16: oracle.attention.underflow_weight).  A unit absolute
 error in every visible P_ij, dS_ij, o_i and product moves dS_ij by
 |dP_ij - D_i| + 1 + P_ij (sum_k |dP_ik| + sum |dO_i| + n_i); magnitude "underflow":
 dQ: |scale| sum_j that |k_j| + n_i + 4; dK likewise + m_j + 4; dV: sum_i |dO_i| + m_j + 2,
 weighed for the compute dtype and, in half dtypes, for the roundings of P, dS and o to it.
"""
from __future__ import annotations

import math

import gmpy2
import numpy as np

from ssm_conformance.oracle import attention as fwd
from ssm_conformance.oracle.formats import UNIT_ROUNDOFF
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.oracle.selective_scan import as_array, verified_many

def _t(x):
    return np.swapaxes(x, -1, -2)


def magnitudes(q, k, v, grad_out, mask, scale):
    """{"q", "k", "v"}: {"main", "half"} arrays of the gradients' shapes (module doc, items 1-6),
    from float64 P, o and D (magnitudes only)."""
    e, ev = q.shape[-1], v.shape[-1]
    sc = abs(scale)
    n = mask.sum(axis=1)[:, None].astype(float)           # (l, 1): keys row i sees
    m = mask.sum(axis=0)[None, :].astype(float)           # (1, s): queries that see key j
    with np.errstate(over="ignore", invalid="ignore"):
        P = fwd.softmax_rows(scale * np.matmul(q, _t(k)), mask)
        o = np.matmul(P, v)
        a = sc * np.matmul(np.abs(q), _t(np.abs(k)))
        A = np.max(np.where(mask, a, 0.0), axis=-1, keepdims=True, initial=0.0)
        rho = (e + 6) * (a + A + np.sum(P * (a + A), axis=-1, keepdims=True)) + 2 * n + 8
        dP = np.matmul(grad_out, _t(v))
        c = np.matmul(np.abs(grad_out), _t(np.abs(v)))
        D = np.sum(P * dP, axis=-1, keepdims=True)
        fm = fwd.magnitudes(q, k, v, mask, scale, p=P, o=o)
        tau = fm["depth_score"] * fm["score_spread"] + fwd.depth_pv(mask) * fm["abs_pv"]
        ag = np.abs(grad_out)
        d = np.maximum(np.sum(P * ((rho + n + 1) * np.abs(dP) + (ev + 1) * c), axis=-1, keepdims=True),
                       np.sum(ag * (tau + (ev + 1) * np.abs(o)), axis=-1, keepdims=True))
        dS_abs = P * np.abs(dP - D)
        sigma = P * ((rho + 2) * np.abs(dP - D) + (ev + 1) * c + d)
        h = np.sum(ag * (np.abs(o) + fm["abs_pv"]), axis=-1, keepdims=True)
        half_s = dS_abs + P * h
        vis = mask.astype(float)
        flush = vis * (np.abs(dP - D) + 1) + P * (np.sum(np.abs(dP), axis=-1, keepdims=True)
                                                   + np.sum(ag, axis=-1, keepdims=True) + n)
        return {
            "q": {"main": sc * np.matmul(sigma + (n + 6) * dS_abs, np.abs(k)),
                  "half": sc * np.matmul(half_s, np.abs(k)),
                  "underflow": sc * np.matmul(flush, np.abs(k)) + n + 4},
            "k": {"main": sc * np.matmul(_t(sigma + (m + 6) * dS_abs), np.abs(q)),
                  "half": sc * np.matmul(_t(half_s), np.abs(q)),
                  "underflow": sc * np.matmul(_t(flush), np.abs(q)) + _t(m) + 4},
            "v": {"main": np.matmul(_t(P * (rho + m + 2)), ag),
                  "half": np.matmul(_t(P), ag),
                  "underflow": np.matmul(_t(vis), ag) + _t(m) + 2},
        }


def tolerance_terms(ref, dtype):
    """(depth, magnitude) pairs of one gradient judged in ``dtype``, for
    ``properties.tolerance.tolerance`` (which multiplies them by SAFETY u): "main" (depths folded
    in), "underflow" weighed for the compute dtype, and in bf16/fp16 "half" weighed by
    u_half / u_float32 and "underflow" weighed for the half dtype too (module doc)."""
    compute = "float64" if dtype == "float64" else "float32"
    mags = ref.magnitudes
    terms = [(1.0, mags["main"]), (fwd.underflow_weight(compute, compute), mags["underflow"])]
    if dtype in ("bfloat16", "float16"):
        terms += [(UNIT_ROUNDOFF[dtype] / UNIT_ROUNDOFF[compute], mags["half"]),
                  (fwd.underflow_weight(dtype, compute), mags["underflow"])]
    return terms


def vjp_inputs(q, k, v, grad_out, is_causal, scale):
    """The checked inputs of an attention VJP (this oracle's and the long tier's)."""
    q, k, v, is_causal, scale = fwd._check(q, k, v, is_causal, scale)
    grad_out = as_array(grad_out, "grad_out", real=True)
    want = q.shape[:-1] + (v.shape[-1],)
    if grad_out.shape != want:
        raise ValueError(f"grad_out must have the output's shape (..., l, ev) = {want}, "
                         f"got {grad_out.shape}")
    return q, k, v, grad_out, is_causal, scale


def attention_vjp(q, k, v, grad_out, is_causal=False, scale=None) -> dict:
    """Gradients of sum(grad_out * attention(q, k, v, is_causal, scale)) w.r.t. q, k and v.

    q (..., l, e), k (..., s, e), v (..., s, ev), grad_out (..., l, ev): float64 arrays read
    exactly.  Returns {"q": Reference, "k": ..., "v": ...}, each of its input's shape with
    magnitudes "main", "half" and "underflow" (module doc; ``tolerance_terms``)."""
    q, k, v, grad_out, is_causal, scale = vjp_inputs(q, k, v, grad_out, is_causal, scale)
    l, e, s = q.shape[-2], q.shape[-1], k.shape[-2]
    mask = fwd.visible(l, s, is_causal)
    scale_f = 1.0 / math.sqrt(e) if scale is None else scale
    mags = magnitudes(q, k, v, grad_out, mask, scale_f)
    names, arrays = ("q", "k", "v"), (q, k, v)
    if s == 0 or l == 0 or v.shape[-1] == 0:
        return {nm: Reference(np.zeros(x.shape), 0.0, mags[nm]) for nm, x in zip(names, arrays)}
    QK, x_qk = fwd.exact_dots(q, k)
    GV, x_gv = fwd.exact_dots(grad_out, v)                # dP exactly
    to_mp = np.frompyfunc(gmpy2.mpfr, 1, 1)               # exact: 53 bits fit any precision used

    def compute():
        sc = 1 / gmpy2.sqrt(gmpy2.mpfr(e)) if scale is None else gmpy2.mpfr(scale)
        P = fwd.softmax_mp(fwd._scores_mp(QK, x_qk, scale, e), mask)
        dP = np.frompyfunc(lambda z: gmpy2.mul_2exp(gmpy2.mpfr(z), x_gv), 1, 1)(GV)
        D = np.sum(P * dP, axis=-1, keepdims=True)
        dS = P * (dP - D)
        qm, km, gm = to_mp(q), to_mp(k), to_mp(grad_out)
        return [np.matmul(dS, km) * sc, np.matmul(_t(dS), qm) * sc, np.matmul(_t(P), gm)]

    parts = verified_many(compute, [mags[nm]["main"] for nm in names])
    return {nm: Reference(np.vectorize(float, otypes=[np.float64])(hi), err, mags[nm])
            for nm, (hi, err) in zip(names, parts)}
