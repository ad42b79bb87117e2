"""Softmax attention oracle: the semantics of ``torch.nn.functional.scaled_dot_product_attention``
without an explicit mask and without dropout, and the magnitudes of its forward error bound.

Semantics (the reference code in SDPA's docstring, and what torch 2.13 returns):

    S_ij = scale * q_i . k_j                     scale = 1/sqrt(e) unless given (any finite float)
    causal: key j is visible to query i iff j <= i   (torch.ones(L, S).tril(diagonal=0):
                                                      TOP-LEFT aligned, also when l != s)
    o_i  = sum_j softmax_j(S_ij) v_j  over the visible keys
q (..., l, e), k (..., s, e), v (..., s, ev) with equal leading dims (the contract's (b, h, l, e)).

Rows without a visible key.  With the top-left causal mask query i always sees key 0, so for s >= 1
no row is fully masked, whatever l and s are (rows i >= s see every key).  The only such rows come
with s = 0; torch then returns 0 (it does the same for a boolean mask that hides a whole row: its
math and CPU flash backends use a "safe softmax" that maps an all -inf row to zeros, in float32,
float64 and bfloat16 -- measured, docs/hybrid.md).  SDPA's docstring code would give NaN there
(softmax of an all -inf row); the oracle follows what torch returns: 0.

Value: the dot products q_i . k_j are EXACT (float64 numbers are dyadic rationals; the products
are summed in Python integers at a common power-of-two scale); then in multiple precision (MPFR
via gmpy2 at mpmath's working precision, certified by doubling): S = scale * dot, the log-sum-exp
form w_ij = exp(S_ij - M_i), M_i = max_j S_ij, o_i = sum_j w_ij v_j / sum_j w_ij.  Nothing
overflows, whatever the scores (+-1e4 and far beyond).

Forward error bound of an accurate algorithm (units of u, the compute dtype's unit roundoff).
Notation: p_ij the exact softmax weights, n_i the number of keys row i sees,
a_ij = |scale| sum_e |q_ie| |k_je| (so |S_ij| <= a_ij), A_i = max_j a_ij (so |M_i| <= A_i).

 1. A relative perturbation w_j -> w_j (1 + d_j) of the unnormalized weights moves the output by
    sum_j p_ij d_j (v_j - o_i) (first order; a perturbation common to all j cancels).  An
    absolute error x_ij in the exponent is such a perturbation, d_j = x_ij.  Exponent errors:
    - forming S_ij: a dot product of e terms (gamma_e) and up to four roundings of the scale
      (q and k each scaled by a rounded sqrt(scale), as torch's math backend does, or the score
      scaled once): (e + 4) a_ij;
    - subtracting the running max: S_ij - M_i rounded, |S_ij - M_i| <= a_ij + A_i; online
      (flash) softmax rescales by exp(m_old - m_new), and the roundings of those differences
      telescope to <= M_i - S_ij for the weights they hit; an exp2 with the scale folded into
      the exponent (FlashAttention's fma s*c - m*c) errs by u (|S_ij| + |M_i|): together
      <= 2 (a_ij + A_i).
    Sum: (e + 6)(a_ij + A_i) -> magnitude "score_spread" = sum_j p_ij |v_j - o_i| (a_ij + A_i),
    depth "depth_score" = e + 6.
 2. The other roundings, with n_b <= n_i online rescalings: per weight exp (1), storing the
    weight (1), the rescale factors (n_b) and a normalization by division (1), all of the form
    of (1) with |v_j - o_i| <= 2 sum_j p_ij |v_j|; the numerator sum_j w_j v_j (products 1,
    sum n_i, rescale products n_b), the denominator (sum n_i, rescale products n_b) and the
    final division (1), relative to sum_j p_ij |v_j|.  Total 2 n_i + 4 n_b + 8 <= 6 n_i + 8:
    magnitude "abs_pv" = sum_j p_ij |v_j| (the P.V sum's own magnitude), depth "depth_pv" =
    6 n_i + 8 (shape (l, 1): causal rows see fewer keys).
 Tolerance: SAFETY * u * ((e + 6) score_spread + (6 n_i + 8) abs_pv) + output rounding
 (``tolerance_terms``).  Half-precision inputs are exact in the dtype; the bound assumes float32
 arithmetic inside (scores, weights and accumulation), as torch's CPU math backend does.  A kernel
 that rounds P to the half input dtype before P.V -- FlashAttention on GPUs, and torch's CPU flash
 kernel, SDPA's default on CPU (measured: 8.8x this tolerance in bf16, 1.7x in fp16) -- errs by
 up to u_half sum_j p_ij |v_j| more: ``tolerance_terms(ref, p_dtype=...)`` adds that term.
"""
from __future__ import annotations

import math

import gmpy2
import numpy as np

from ssm_conformance.oracle.formats import TINY, UNIT_ROUNDOFF
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.oracle.selective_scan import as_array, verified_many

# ----------------------------------------------------------------------------------------------
# input checking


def _check(q, k, v, is_causal, scale):
    q, k, v = as_array(q, "q", real=True), as_array(k, "k", real=True), as_array(v, "v", real=True)
    if q.ndim < 2:
        raise ValueError(f"q must have shape (..., l, e), e.g. (b, h, l, e), got {q.shape}")
    lead, e = q.shape[:-2], q.shape[-1]
    if e < 1:
        raise ValueError(f"q must have head dim e >= 1, got shape {q.shape}")
    if k.shape[:-2] != lead or k.ndim != q.ndim or k.shape[-1] != e:
        raise ValueError(f"k must have shape (..., s, e) = {lead + ('s', e)}, got {k.shape}")
    s = k.shape[-2]
    if v.ndim != q.ndim or v.shape[:-1] != k.shape[:-1]:
        raise ValueError(f"v must have shape (..., s, ev) = {lead + (s, 'ev')}, got {v.shape}")
    if not isinstance(is_causal, (bool, np.bool_)):
        raise TypeError(f"is_causal must be a bool, got {type(is_causal).__name__}")
    if scale is None:
        scale_f = None                                  # 1/sqrt(e), exact in multiple precision
    else:
        scale_f = float(scale)
        if not math.isfinite(scale_f):
            raise ValueError(f"scale must be a finite number, got {scale!r}")
    return q, k, v, bool(is_causal), scale_f


def visible(l, s, is_causal):
    """(l, s) boolean mask of the keys each query sees: all, or j <= i (top-left aligned)."""
    if not is_causal:
        return np.ones((l, s), dtype=bool)
    return np.arange(s)[None, :] <= np.arange(l)[:, None]


# ----------------------------------------------------------------------------------------------
# exact dot products


def _dyadic(arr):
    """float64 array -> (object array of Python ints M, exponent x) with arr == M * 2^x exactly."""
    mant, ex = np.frexp(arr)                              # arr = mant 2^ex, 1/2 <= |mant| < 1
    nz = arr != 0
    x = int(np.min(ex[nz])) - 53 if np.any(nz) else 0
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        m = int(mant[idx] * 2.0**53)                      # exact 53-bit integer
        out[idx] = m << int(ex[idx] - 53 - x) if m else 0
    return out, x


def exact_dots(q, k):
    """q_i . k_j exactly: (object array of Python ints (..., l, s), exponent x), value = int * 2^x."""
    Q, xq = _dyadic(q)
    K, xk = _dyadic(k)
    return np.matmul(Q, np.swapaxes(K, -1, -2)), xq + xk   # object matmul: Python int arithmetic


# ----------------------------------------------------------------------------------------------
# the value pass (MPFR at mpmath's working precision; call inside hp_context)


_mp_exp = np.frompyfunc(gmpy2.exp, 1, 1)


def softmax_mp(S, mask):
    """softmax over the visible keys of MPFR scores S (..., l, s), max-subtracted (every exp <= 1:
    no overflow); masked entries and rows without a key are 0 (object array)."""
    P = np.zeros(S.shape, dtype=object)
    P[...] = gmpy2.mpfr(0)
    lead, l = S.shape[:-2], S.shape[-2]
    for idx in np.ndindex(lead) if lead else [()]:
        for i in range(l):
            cols = np.flatnonzero(mask[i])
            if cols.size:
                row = S[idx + (i,)][cols]
                w = _mp_exp(row - max(row))
                P[idx + (i,)][cols] = w / w.sum()
    return P


def lse_attention_mp(S, v, mask):
    """softmax(S) v over the visible keys, log-sum-exp form.  S (..., l, s) and v (..., s, ev)
    object arrays of MPFR numbers, mask (l, s) bool.  Rows with no visible key give 0."""
    return np.matmul(softmax_mp(S, mask), v)


def _scores_mp(D, x, scale, e):
    """MPFR scores scale * D * 2^x (D exact Python ints), scale None meaning 1/sqrt(e)."""
    sc = 1 / gmpy2.sqrt(gmpy2.mpfr(e)) if scale is None else gmpy2.mpfr(scale)
    return np.frompyfunc(lambda d: gmpy2.mul_2exp(gmpy2.mpfr(d), x) * sc, 1, 1)(D)


# ----------------------------------------------------------------------------------------------
# magnitudes (float64)


def softmax_rows(S, mask):
    """Max-subtracted softmax along the last axis over the visible keys (float64); all-masked
    rows give zeros."""
    S = np.where(mask, S, -np.inf)
    m = np.max(S, axis=-1, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0.0)
    w = np.where(mask, np.exp(S - m), 0.0)
    den = w.sum(axis=-1, keepdims=True)
    return w / np.where(den > 0, den, 1.0)


def magnitudes(q, k, v, mask, scale, p=None, o=None):
    """score_spread (..., l, ev), abs_pv (..., l, ev) of the module doc.  p, o: float64 softmax
    weights and output (computed here from float64 scores when not given; magnitudes only)."""
    e = q.shape[-1]
    sc = abs(scale)
    with np.errstate(over="ignore"):
        a = sc * np.matmul(np.abs(q), np.swapaxes(np.abs(k), -1, -2))          # (..., l, s)
        if p is None:
            p = softmax_rows(scale * np.matmul(q, np.swapaxes(k, -1, -2)), mask)
        if o is None:
            o = np.matmul(p, v)
        A = np.max(np.where(mask, a, 0.0), axis=-1, keepdims=True, initial=0.0)
        abs_pv = np.matmul(p, np.abs(v))
        spread = np.empty_like(abs_pv)
        l = q.shape[-2]
        per_row = max(1, int(np.prod(q.shape[:-2])) * k.shape[-2] * v.shape[-1])
        block = max(1, 2**22 // per_row)                  # (..., rows, s, ev) temporaries: <= 2^22 numbers
        for i0 in range(0, l, block):
            rows = slice(i0, min(i0 + block, l))
            dev = np.abs(v[..., None, :, :] - o[..., rows, None, :])            # |v_j - o_i|
            wgt = (p[..., rows, :] * (a[..., rows, :] + A[..., rows, :]))[..., None]
            spread[..., rows, :] = np.sum(wgt * dev, axis=-2)
    return {"score_spread": spread, "abs_pv": abs_pv, "depth_score": float(e + 6)}


def depth_pv(mask):
    """6 n_i + 8 per query row, shape (l, 1)."""
    return (6.0 * mask.sum(axis=1) + 8.0)[:, None]


def underflow_weight(dtype, compute_dtype):
    """The absolute error of one value that underflows ``dtype``, in units of u_compute (the unit
    of every depth here: properties.tolerance multiplies each by SAFETY u_compute).
    float32, bfloat16 and float64: up to tiny itself, because production kernels flush
    subnormals to zero there (CUDA's fast-math FTZ, vectorized exp on CPUs, torch's CPU flash
    kernel in bf16 -- measured); a flushed 1e-38 is invisible.  float16: u tiny (gradual
    underflow), because float16's tiny, 6.1e-5, is an ordinary softmax weight and conversions
    to float16 keep its subnormals: a kernel that flushes them loses accuracy the suite rejects."""
    err = UNIT_ROUNDOFF[dtype] * TINY[dtype] if dtype == "float16" else TINY[dtype]
    return err / UNIT_ROUNDOFF[compute_dtype]


def tolerance_terms(ref, p_dtype=None, compute_dtype="float32"):
    """(depth, magnitude) pairs for ``properties.tolerance.tolerance`` (module doc).

    Underflow: weights of saturated rows (p_ij < tiny) and the products p_ij v_j may underflow,
    each erring by ``underflow_weight``: "underflow" = sum_j |v_j| over the visible keys, + n_i.

    p_dtype -- the dtype P is rounded to before the P.V product when that is narrower than the
    compute dtype (FlashAttention, and torch's CPU flash kernel for bf16/fp16 inputs, round P to
    the input dtype): adds u_p sum_j p_ij |v_j|, written as depth u_p / u_compute on "abs_pv",
    and the underflow of that rounding."""
    m = ref.magnitudes
    terms = [(m["depth_score"], m["score_spread"]), (m["depth_pv"], m["abs_pv"]),
             (underflow_weight(compute_dtype, compute_dtype), m["underflow"])]
    if p_dtype is not None:
        terms += [(UNIT_ROUNDOFF[p_dtype] / UNIT_ROUNDOFF[compute_dtype], m["abs_pv"]),
                  (underflow_weight(p_dtype, compute_dtype), m["underflow"])]
    return terms


# ----------------------------------------------------------------------------------------------
# the oracle


def attention(q, k, v, is_causal=False, scale=None) -> Reference:
    """Oracle of ``scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=scale)``.

    q (..., l, e), k (..., s, e), v (..., s, ev), float64 arrays read exactly.  Returns Reference
    (..., l, ev) with magnitudes "score_spread", "abs_pv" (shape of the output), "depth_score"
    (e + 6), "depth_pv" ((l, 1): 6 n_i + 8) and "keys" ((l,): n_i); see the module doc and
    ``tolerance_terms``.
    """
    q, k, v, is_causal, scale = _check(q, k, v, is_causal, scale)
    l, e, s = q.shape[-2], q.shape[-1], k.shape[-2]
    mask = visible(l, s, is_causal)
    scale_f = 1.0 / math.sqrt(e) if scale is None else scale
    mags = magnitudes(q, k, v, mask, scale_f)
    mags["depth_pv"] = depth_pv(mask)
    mags["keys"] = mask.sum(axis=1)
    mags["underflow"] = np.matmul(mask.astype(float), np.abs(v)) + mags["keys"][:, None]
    if s == 0 or l == 0 or v.shape[-1] == 0:
        return Reference(np.zeros(q.shape[:-1] + (v.shape[-1],)), 0.0, mags)
    D, x = exact_dots(q, k)
    vh = np.frompyfunc(gmpy2.mpfr, 1, 1)(v)               # exact: 53 bits fit any precision used

    def compute():
        return [lse_attention_mp(_scores_mp(D, x, scale, e), vh, mask)]

    (hi, err), = verified_many(compute, [mags["abs_pv"]])
    return Reference(np.vectorize(float, otypes=[np.float64])(hi), err, mags)
