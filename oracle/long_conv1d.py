"""The long-input tier of the causal-conv1d oracle: oracle/causal_conv1d.py's outputs, gradients
and magnitudes for any length, vectorized over (b, d, l), in the working format W of
oracle/extended.py (float64 for float32/half subjects, 80-bit long double for float64 subjects).

Algorithm (in W): the direct sum over the w taps, s_t = bias + sum_k weight_k x_{t-(w-1)+k}, one
vectorized multiply-add per tap over the whole (b, d, l) array; SiLU(s) = s / (1 + e^{-s}).
Gradients: G_s = grad_out SiLU'(s) (or grad_out); dx by the same w taps on G_s; dweight and
dbias as sums over (b, l) (np.sum).

The tier's own error (Reference.error), first order in u_W, doubled for the second-order terms
and numpy's exp (within 1 ulp):
 - s: recursive summation of w products and the bias: (w + 1) u_W abs_pre (Higham eq. 3.5);
 - SiLU(s) = s sigma(s): the error of s moved by |SiLU'(s)| <= sigma(s) (1 + |s|), plus 4 u_W
   |SiLU(s)| for exp, 1 +, the division and the product;
   error = 2 u_W ((w + 1) abs_out + 4 |SiLU(s)|) with abs_out of the oracle (which is
   |SiLU'(s)| abs_pre + |SiLU(s)|: an upper bound of both parts);
 - gradients: G_s errs by <= u_W (|G| (w + 1) |SiLU''| abs_pre + 8 sigma (1 + |s|)) relative to the
   magnitudes the oracle's "abs_out" already sums, then a sum of N terms (w for dx, b l for
   dweight/dbias) adds gamma_N:  error = 2 u_W (N + w + 9) abs_out.
Magnitudes: "abs_out", "abs_pre", "depth" exactly as oracle/causal_conv1d.py (float64, the same
functions), consumed by properties/tolerance.py (causal_conv1d_tol, causal_conv1d_vjp_tol).
"""
from __future__ import annotations

import numpy as np

from ssm_conformance.oracle.causal_conv1d import _abs_pre, _check, _d2silu_f, _dsilu_f, _silu_f
from ssm_conformance.oracle.extended import tier_dtype, tier_unit_roundoff
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.oracle.selective_scan import as_array, check_shape, dsilu_magnitude


def _taps(weight, x, w, l):
    """sum_k weight[:, k] x[..., t - (w-1) + k] (x = 0 before t = 0), in x's dtype."""
    xpad = np.concatenate([np.zeros(x.shape[:-1] + (w - 1,), dtype=x.dtype), x], axis=-1)
    acc = np.zeros_like(x)
    for k in range(w):
        acc = acc + weight[None, :, k, None] * xpad[..., k:k + l]
    return acc


def _silu_w(s):
    with np.errstate(over="ignore"):
        return s / (1 + np.exp(-s))


def _dsilu_w(s):
    with np.errstate(over="ignore"):
        sg = 1 / (1 + np.exp(-s))
    return sg * (1 + s * (1 - sg))


def causal_conv1d_long(x, weight, bias=None, activation=None, subject_dtype="float32") -> Reference:
    """oracle/causal_conv1d.py's ``causal_conv1d`` by the long tier (module doc)."""
    x, weight, bias, act = _check(x, weight, bias, activation)
    W = tier_dtype(subject_dtype)
    u = tier_unit_roundoff(subject_dtype)
    w, l = weight.shape[1], x.shape[-1]
    s = _taps(weight.astype(W), x.astype(W), w, l)
    if bias is not None:
        s = s + bias.astype(W)[None, :, None]
    abs_pre = _abs_pre(x, weight, bias)
    depth = float(w + 1)
    if not act:
        return Reference(s.astype(np.float64), 2 * u * (w + 1) * abs_pre,
                         {"abs_out": abs_pre, "abs_pre": abs_pre, "depth": depth})
    pre = s.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        abs_out = np.abs(_dsilu_f(pre)) * abs_pre + np.abs(_silu_f(pre))
        err = 2 * u * ((w + 1) * dsilu_magnitude(pre) * abs_pre + 4 * np.abs(_silu_f(pre)))
    return Reference(_silu_w(s).astype(np.float64), err,
                     {"abs_out": abs_out, "abs_pre": abs_pre, "depth": depth})


def causal_conv1d_vjp_long(grad_out, x, weight, bias=None, activation=None,
                           subject_dtype="float32") -> dict:
    """oracle/causal_conv1d.py's ``causal_conv1d_vjp`` by the long tier: {"x", "weight"[, "bias"]:
    Reference} with the oracle's magnitudes "abs_out" and "depth"."""
    x, weight, bias, act = _check(x, weight, bias, activation)
    grad_out = as_array(grad_out, "grad_out", real=True)
    check_shape(grad_out, "grad_out", x.shape)
    W = tier_dtype(subject_dtype)
    u = tier_unit_roundoff(subject_dtype)
    b, d, l = x.shape
    w = weight.shape[1]
    xW, wW = x.astype(W), weight.astype(W)
    G = grad_out.astype(W)
    s = _taps(wW, xW, w, l) + (0 if bias is None else bias.astype(W)[None, :, None])
    pre = s.astype(np.float64)
    if act:
        G = G * _dsilu_w(s)
    with np.errstate(over="ignore", invalid="ignore"):
        gabs = np.abs(grad_out) * ((dsilu_magnitude(pre) + np.abs(_d2silu_f(pre)) * _abs_pre(x, weight, bias))
                                   if act else 1.0)

    def grads(Gs, X, Wt):
        Gpad = np.concatenate([Gs, np.zeros((b, d, w - 1), dtype=Gs.dtype)], axis=-1)
        Xpad = np.concatenate([np.zeros((b, d, w - 1), dtype=X.dtype), X], axis=-1)
        dx = np.zeros_like(Gs)
        for k in range(w):
            dx = dx + Wt[None, :, k, None] * Gpad[:, :, (w - 1 - k):(w - 1 - k) + l]
        dw = np.stack([(Gs * Xpad[:, :, k:k + l]).sum(axis=(0, 2)) for k in range(w)], axis=1)
        out = [dx, dw]
        if bias is not None:
            out.append(Gs.sum(axis=(0, 2)))
        return out

    values = grads(G, xW, wW)
    base = grads(gabs, np.abs(x), np.abs(weight))
    names = ["x", "weight"] + (["bias"] if bias is not None else [])
    depths = {"x": 2 * w + 1, "weight": b * l + w + 1, "bias": b * l + w + 1}
    summed = {"x": w, "weight": b * l, "bias": b * l}
    return {k: Reference(v.astype(np.float64), 2 * u * (summed[k] + w + 9) * mag,
                         {"abs_out": mag, "depth": float(depths[k])})
            for k, v, mag in zip(names, values, base)}
