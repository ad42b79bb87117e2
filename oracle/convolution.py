"""Causal convolution, SSM kernel and recurrence oracles.

causal_conv:  y_t = sum_{k=0..t} K_k u_{t-k}, computed exactly in integers (a float64 is an integer
              times a power of two) and rounded once to float64.
kernel:       K_k = C Ad^k Bd, k = 0..L-1, by repeated matrix-vector products in mpmath.
recurrence:   h_k = Ad h_{k-1} + Bd u_k, y_k = C h_k + D u_k, h_{-1} = 0, in mpmath.
The identity recurrence(Ad, Bd, C, D, u) = causal_conv(u, kernel(Ad, Bd, C, L)) + D u holds
because h_t = sum_{k=0..t} Ad^k Bd u_{t-k}.
"""
from __future__ import annotations

import math
import numbers
import operator

import mpmath
import numpy as np

from ssm_conformance.oracle.precision import to_float, to_mp, verified
from ssm_conformance.oracle.reference import Reference


def _numeric(x, name, ndim, shape_text):
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array of shape {shape_text}, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_text}, got shape {arr.shape}")
    arr = arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries (NaN or Inf)")
    return arr


def _real_1d(x, name):
    arr = np.asarray(x)
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    return _numeric(arr, name, 1, "(L,)")


# ----------------------------------------------------------------------------------------------
# exact causal convolution


def _scaled_ints(x):
    """float64 (L,) -> (ints, e): x_i = ints[i] / 2**e exactly, one shared e >= 0."""
    ratios = [v.as_integer_ratio() for v in x.tolist()]  # (p, 2**k) exactly
    e = max(q.bit_length() - 1 for _, q in ratios)
    return [p << (e - (q.bit_length() - 1)) for p, q in ratios], e


def _int_conv(K, u):
    """Exact causal convolution of Python-int sequences: Y_t = sum_{k<=t} K_k u_{t-k}."""
    L = len(u)
    u_rev = u[::-1]  # u_rev[L-1-t+k] = u[t-k]
    return [sum(map(operator.mul, K[: t + 1], u_rev[L - 1 - t :])) for t in range(L)]


def _round(Y, e):
    """Python ints Y_t / 2**e -> float64, each correctly rounded (CPython int/int true division)."""
    den = 1 << e
    out = np.empty(len(Y))
    for t, y in enumerate(Y):
        try:
            out[t] = y / den
        except OverflowError:  # the exact value rounds beyond the largest float64
            out[t] = math.inf if y > 0 else -math.inf
    return out


def _norm1(x):
    with np.errstate(over="ignore"):
        return float(np.abs(x).sum())


def _norm2(x):
    """||x||_2 scaled by max|x| (no overflow or underflow of the squares)."""
    m = float(np.abs(x).max())
    return m * float(np.linalg.norm(x / m)) if m > 0 else 0.0


def causal_conv(u, K):
    """Exact y_t = sum_{k=0..t} K_k u_{t-k} for real 1-D u, K of equal length L >= 1, rounded once.

    magnitudes:
      "abs_conv" (L,): sum_k |K_k| |u_{t-k}| (exact, rounded once).  Direct summation satisfies
          |fl(y_t) - y_t| <= gamma_{t+1} * abs_conv_t (Higham, Accuracy and Stability, (3.5)).
      "norm_K1_u2_plus_K2_u1": ||K||_2 ||u||_1 + ||K||_1 ||u||_2.  A computed FFT has normwise
          relative error <= log2(n) eta (Higham, sec. 24.1); propagated through fft(K)*fft(u) and the
          scaled inverse FFT (|fft(x)|_inf <= ||x||_1, ||fft(x)||_2 = sqrt(n)||x||_2), every output
          element's error is <= c u log2(nfft) times this.
    """
    u = _real_1d(u, "u")
    K = _real_1d(K, "K")
    if u.size == 0:
        raise ValueError("u must have shape (L,) with L >= 1, got shape (0,)")
    if K.shape != u.shape:
        raise ValueError(f"K must have the shape of u, ({u.size},), got shape {K.shape}")
    ui, eu = _scaled_ints(u)
    Ki, eK = _scaled_ints(K)
    y = _round(_int_conv(Ki, ui), eu + eK)
    abs_conv = _round(_int_conv([abs(v) for v in Ki], [abs(v) for v in ui]), eu + eK)
    nrm = _norm2(K) * _norm1(u) + _norm1(K) * _norm2(u) if K.any() and u.any() else 0.0
    return Reference(y, 0.0, {"abs_conv": abs_conv, "norm_K1_u2_plus_K2_u1": nrm})


# ----------------------------------------------------------------------------------------------
# SSM kernel and recurrence in mpmath


def _check_system(Ad, Bd, C):
    Ad = _numeric(Ad, "Ad", 2, "(n, n)")
    n = Ad.shape[0]
    if Ad.shape != (n, n) or n == 0:
        raise ValueError(f"Ad must have shape (n, n) with n >= 1, got shape {Ad.shape}")
    Bd = _numeric(Bd, "Bd", 1, f"({n},)")
    if Bd.shape != (n,):
        raise ValueError(f"Bd must have shape ({n},) to match Ad, got shape {Bd.shape}")
    C = _numeric(C, "C", 1, f"({n},)")
    if C.shape != (n,):
        raise ValueError(f"C must have shape ({n},) to match Ad, got shape {C.shape}")
    return Ad, Bd, C


def _kernel_mp(Ad, Bd, C, L):
    """K_k = C Ad^k Bd at the working precision (object arrays of mp numbers in, (L,) out)."""
    rows = [list(r) for r in Ad]
    C, v = list(C), list(Bd)
    out = np.empty(L, dtype=object)
    for k in range(L):
        out[k] = mpmath.fdot(C, v)
        v = [mpmath.fdot(r, v) for r in rows]
    return out


def _recurrence_mp(Ad, Bd, C, D, u):
    """h_k = Ad h_{k-1} + Bd u_k, y_k = C h_k + D u_k, h_{-1} = 0, at the working precision."""
    rows = [list(r) for r in Ad]
    C, Bd = list(C), list(Bd)
    h = [mpmath.mpf(0)] * len(Bd)
    out = np.empty(len(u), dtype=object)
    for k, uk in enumerate(u):
        h = [mpmath.fdot(r, h) + b * uk for r, b in zip(rows, Bd)]
        out[k] = mpmath.fdot(C, h) + D * uk
    return out


def kernel(Ad, Bd, C, L):
    """K_k = C Ad^k Bd for k = 0..L-1; Ad (n,n), Bd (n,), C (n,), real or complex.

    magnitudes:
      "abs_power" (L,): |C| |Ad|^k |Bd|, the componentwise magnitude of the chain of products
          (each matrix-vector product adds an error <= gamma_n |Ad| |v|).
    """
    Ad, Bd, C = _check_system(Ad, Bd, C)
    if isinstance(L, (bool, np.bool_)) or not isinstance(L, numbers.Integral) or L < 1:
        raise ValueError(f"L must be an integer >= 1, got {L!r}")
    L = int(L)
    cplx = any(np.iscomplexobj(x) for x in (Ad, Bd, C))

    absAd, absC = np.abs(Ad), np.abs(C)
    abs_power, w = np.empty(L), np.abs(Bd)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(L):
            abs_power[k] = absC @ w
            w = absAd @ w
    # judge the doubling against the magnitude (floor: 2^-64 * 2^-1010 is below every subnormal)
    scale = np.maximum(abs_power, 2.0**-1010) if np.all(np.isfinite(abs_power)) else None

    A_, B_, C_ = to_mp(Ad), to_mp(Bd), to_mp(C)
    val, err = verified(lambda: _kernel_mp(A_, B_, C_, L), scale=scale)
    return Reference(to_float(val, complex_out=cplx), err, {"abs_power": abs_power})


def recurrence(Ad, Bd, C, D, u):
    """y_k = C h_k + D u_k with h_k = Ad h_{k-1} + Bd u_k, h_{-1} = 0; u (L,), D a scalar.

    magnitudes:
      "abs_recurrence" (L,): |C| g_k + |D| |u_k| with g_k = |Ad| g_{k-1} + |Bd| |u_k|, the
          componentwise magnitude of the recurrence (= sum_j |C||Ad|^{k-j}|Bd||u_j| + |D||u_k|).
    """
    Ad, Bd, C = _check_system(Ad, Bd, C)
    if isinstance(D, (bool, np.bool_)) or not isinstance(D, numbers.Number):
        raise TypeError(f"D must be a scalar number, got {type(D).__name__}")
    if not np.isfinite(D):
        raise ValueError(f"D must be finite, got {D}")
    u = _numeric(u, "u", 1, "(L,)")
    if u.size == 0:
        raise ValueError("u must have shape (L,) with L >= 1, got shape (0,)")
    cplx = any(np.iscomplexobj(x) for x in (Ad, Bd, C, u)) or isinstance(D, complex)

    absAd, absBd, absC = np.abs(Ad), np.abs(Bd), np.abs(C)
    mag, g = np.empty(u.size), np.zeros(Bd.size)
    with np.errstate(over="ignore", invalid="ignore"):
        for k, uk in enumerate(np.abs(u)):
            g = absAd @ g + absBd * uk
            mag[k] = absC @ g + abs(D) * uk
    # judge the doubling against the magnitude (floor: 2^-64 * 2^-1010 is below every subnormal)
    scale = np.maximum(mag, 2.0**-1010) if np.all(np.isfinite(mag)) else None

    A_, B_, C_, u_ = to_mp(Ad), to_mp(Bd), to_mp(C), to_mp(u)
    D_ = to_mp(np.asarray(D))[()]
    val, err = verified(lambda: _recurrence_mp(A_, B_, C_, D_, u_), scale=scale)
    return Reference(to_float(val, complex_out=cplx), err, {"abs_recurrence": mag})
