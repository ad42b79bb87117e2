"""causal-conv1d oracle: depthwise causal convolution (+ bias, optional SiLU) and its VJP.

Semantics: ``causal_conv1d_ref`` of Dao-AILab/causal-conv1d (causal_conv1d/causal_conv1d_interface.py,
read at commit 0d2252d): F.conv1d(x, weight.unsqueeze(1), bias, padding=w-1, groups=d)[..., :l],
then SiLU if activation in ("silu", "swish").  F.conv1d is a cross-correlation, so

    s[b, d, t] = bias[d] + sum_{k=0..w-1} weight[d, k] x[b, d, t - (w-1) + k]     (x = 0 before t = 0)

weight[:, -1] multiplies x_t, weight[:, 0] multiplies x_{t-w+1}.

Before the activation the value is exact: every product of two float64 numbers is a dyadic
rational, and the sum is formed in Python integers at a common power-of-two scale, then rounded
once (int / 2^k is correctly rounded in CPython).  SiLU(s) = s sigmoid(s) is evaluated in multiple
precision (MPFR via gmpy2 at mpmath's working precision, as oracle/selective_scan.py) from the
exact s, at a precision certified by ``oracle.precision.verified``.

Error model: recursive summation of w products and the bias errs by at most
gamma_{w+1} * abs_pre, abs_pre = sum_k |weight||x| + |bias| (Higham eq. 3.5): "depth" = w + 1.
With SiLU, the rounded s moves the output by |SiLU'(s)| times that, and SiLU itself adds a few
ulps of |SiLU(s)|: "abs_out" = |SiLU'(s)| abs_pre + |SiLU(s)|.  Without activation abs_out = abs_pre.
Tolerance: SAFETY * u * depth * abs_out + output rounding.
"""
from __future__ import annotations

import math

import gmpy2
import numpy as np

from ssm_conformance.oracle.reference import Reference
from ssm_conformance.oracle.selective_scan import (
    as_array, check_shape, dsilu_magnitude, f_sigmoid, mp_dsilu, mp_of, mp_silu, reference,
    verified_many,
)

ACTIVATIONS = (None, "silu", "swish")


def _check(x, weight, bias, activation):
    x = as_array(x, "x", real=True)
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"x must have shape (b, d, l) with every size >= 1, got {x.shape}")
    weight = as_array(weight, "weight", real=True)
    if weight.ndim != 2 or weight.shape[0] != x.shape[1] or weight.shape[1] < 1:
        raise ValueError(f"weight must have shape (d, w) = ({x.shape[1]}, w) with w >= 1, got {weight.shape}")
    if bias is not None:
        bias = as_array(bias, "bias", real=True)
        check_shape(bias, "bias", (x.shape[1],))
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be None, 'silu' or 'swish', got {activation!r}")
    return x, weight, bias, activation is not None


# ----------------------------------------------------------------------------------------------
# exact dyadic arithmetic


def _pad_last(A, before, after):
    """Zero-pad the last axis; object arrays get Python int zeros (exact with ints and mpf)."""
    out = np.zeros(A.shape[:-1] + (before + A.shape[-1] + after,), dtype=A.dtype)
    out[..., before:before + A.shape[-1]] = A
    return out


def _dyadic(arr):
    """float64 array -> (object array of Python ints M, exponent e) with arr == M * 2^e exactly."""
    arr = np.asarray(arr, dtype=np.float64)
    mant, ex = np.frexp(arr)                       # arr = mant * 2^ex, 0.5 <= |mant| < 1
    nz = arr != 0
    e = int(np.min(ex[nz])) - 53 if np.any(nz) else 0
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        m = int(mant[idx] * 2.0**53)               # exact: 53-bit integer
        out[idx] = m << int(ex[idx] - 53 - e) if m else 0
    return out, e


def _exact_pre(x, weight, bias):
    """s (object array of Python ints) and exponent e0 with s * 2^e0 the exact pre-activation."""
    b, d, l = x.shape
    w = weight.shape[1]
    X, ex = _dyadic(x)
    W, ew = _dyadic(weight)
    Xpad = _pad_last(X, w - 1, 0)                   # x[t] = 0 for t < 0
    S = np.zeros((b, d, l), dtype=object)
    for k in range(w):                              # cross-correlation: tap k meets x[t - (w-1) + k]
        S = S + W[None, :, k, None] * Xpad[:, :, k:k + l]
    e0 = ex + ew
    if bias is not None:
        Bi, eb = _dyadic(bias)
        if eb >= e0:
            S = S + (Bi * (1 << (eb - e0)))[None, :, None]
        else:
            S = S * (1 << (e0 - eb)) + Bi[None, :, None]
            e0 = eb
    return S, e0


def _to_float(S, e0):
    """Correctly rounded float64 of S * 2^e0 (S Python ints)."""
    out = np.empty(S.shape, dtype=np.float64)
    for idx in np.ndindex(S.shape):
        s = S[idx]
        try:
            out[idx] = s / (1 << -e0) if e0 < 0 else float(s << e0)
        except OverflowError:
            out[idx] = math.copysign(math.inf, s)
    return out


def _exact_to_hp(S, e0):
    """S * 2^e0 (S Python ints) as MPFR numbers at the working precision (one rounding each)."""
    return np.frompyfunc(lambda v: gmpy2.mul_2exp(gmpy2.mpfr(v), e0), 1, 1)(S)


def _abs_pre(x, weight, bias):
    b, d, l = x.shape
    w = weight.shape[1]
    xpad = _pad_last(np.abs(x), w - 1, 0)
    with np.errstate(over="ignore"):
        acc = sum(np.abs(weight)[None, :, k, None] * xpad[:, :, k:k + l] for k in range(w))
        return acc if bias is None else acc + np.abs(bias)[None, :, None]


def _silu_f(s):
    return s * f_sigmoid(s)


def _dsilu_f(s):
    sg = f_sigmoid(s)
    return sg * (1 + s * (1 - sg))


def _d2silu_f(s):  # SiLU'' = sigma (1 - sigma) (2 + s (1 - 2 sigma))
    sg = f_sigmoid(s)
    return sg * (1 - sg) * (2 + s * (1 - 2 * sg))


# ----------------------------------------------------------------------------------------------
# the oracles


def causal_conv1d(x, weight, bias=None, activation=None) -> Reference:
    """Oracle of ``causal_conv1d_fn`` / ``causal_conv1d_ref``: x (b, d, l), weight (d, w),
    bias (d,), activation None | "silu" | "swish".  Returns Reference (b, d, l) with magnitudes
    "abs_out", "abs_pre" (sum |w||x| + |bias|) and "depth" = w + 1."""
    x, weight, bias, act = _check(x, weight, bias, activation)
    S, e0 = _exact_pre(x, weight, bias)
    pre = _to_float(S, e0)
    abs_pre = _abs_pre(x, weight, bias)
    depth = float(weight.shape[1] + 1)
    if not act:
        return Reference(pre, 0.0, {"abs_out": abs_pre, "abs_pre": abs_pre, "depth": depth})
    with np.errstate(over="ignore", invalid="ignore"):
        abs_out = np.abs(_dsilu_f(pre)) * abs_pre + np.abs(_silu_f(pre))

    def compute():
        s = _exact_to_hp(S, e0)
        return [mp_silu(s)]

    (part,) = verified_many(compute, [abs_out])
    return reference(part, {"abs_out": abs_out, "abs_pre": abs_pre, "depth": depth}, False)


def causal_conv1d_vjp(grad_out, x, weight, bias=None, activation=None):
    """VJP of ``causal_conv1d``: gradients of L = sum(grad_out * out) w.r.t. x, weight and bias
    (if given), in multiple precision:  G_s = grad_out * SiLU'(s) (or grad_out);
    dx[j] = sum_k weight[k] G_s[j + (w-1) - k];  dweight[k] = sum_{b,t} G_s[t] x[t - (w-1) + k];
    dbias = sum_{b,t} G_s.  Magnitudes: "abs_out" = the same sums on |.|, with
    |G_s| = |grad_out| (sigma(s) (1 + |s|) + |SiLU''(s)| abs_pre) under SiLU (s is itself rounded);
    "depth" = w + 1 + (w for dx; b l for dweight and dbias).  SiLU'(s) = sigma (1 + s (1 - sigma))
    cancels near s = -1.28, so its magnitude is sigma (1 + |s|), not |SiLU'(s)|."""
    x, weight, bias, act = _check(x, weight, bias, activation)
    grad_out = as_array(grad_out, "grad_out", real=True)
    check_shape(grad_out, "grad_out", x.shape)
    b, d, l = x.shape
    w = weight.shape[1]
    S, e0 = _exact_pre(x, weight, bias)
    pre = _to_float(S, e0)
    with np.errstate(over="ignore", invalid="ignore"):
        gabs = np.abs(grad_out) * ((dsilu_magnitude(pre) + np.abs(_d2silu_f(pre)) * _abs_pre(x, weight, bias))
                                   if act else 1.0)

    def grads(G, X, Wt):
        """dx, dweight, dbias from G (= dL/ds), for values (object) or magnitudes (float)."""
        Gpad = _pad_last(G, 0, w - 1)                                 # G[t] = 0 for t >= l
        Xpad = _pad_last(X, w - 1, 0)                                 # x[t] = 0 for t < 0
        dx = sum(Wt[None, :, k, None] * Gpad[:, :, (w - 1 - k):(w - 1 - k) + l] for k in range(w))
        dw = np.stack([(G * Xpad[:, :, k:k + l]).sum(axis=(0, 2)) for k in range(w)], axis=1)
        out = [dx, dw]
        if bias is not None:
            out.append(G.sum(axis=(0, 2)))
        return out

    base = grads(gabs, np.abs(x), np.abs(weight))
    gm, xm, wm = mp_of(grad_out), mp_of(x), mp_of(weight)

    def compute():
        G = gm
        if act:
            s = _exact_to_hp(S, e0)
            G = gm * mp_dsilu(s)
        return grads(G, xm, wm)

    parts = verified_many(compute, base)
    names = ["x", "weight"] + (["bias"] if bias is not None else [])
    depths = {"x": 2 * w + 1, "weight": b * l + w + 1, "bias": b * l + w + 1}
    return {k: reference(part, {"abs_out": mag, "depth": float(depths[k])}, False)
            for k, part, mag in zip(names, parts, base)}
