"""The linear recurrence h_t = a_t h_{t-1} + b_t as a scan, exactly and in high precision.

Scan operator (MATH.md "Scans"): an element is a pair e = (a, b), read as the affine map
h -> a h + b, and

    (a2, b2) o (a1, b1) = (a2 a1, a2 b1 + b2)        (apply e1 first, then e2).

It is associative (composition of affine maps) but not commutative, so the prefix
P_t = e_t o e_{t-1} o ... o e_0 may be bracketed in any way -- sequential, Blelloch, Hillis-Steele,
blockwise with arbitrary split points -- and its b-component is h_t (with h_{-1} = 0).  In exact
rational arithmetic (``fractions.Fraction``) every bracketing gives the identical result; in
floating point they differ only by rounding.  The first half of this module evaluates scans in
those ways exactly (for the tests); the second half is the oracle ``linear_scan``.

Error bound for the tolerance model (``linear_scan``'s magnitudes):
  h_t = sum_{j<=t} (a_t ... a_{j+1}) b_j.  Evaluated sequentially, the term of b_j suffers t-j
  multiplications and t-j+1 additions, so |fl(h_t) - h_t| <= gamma_{2t+1} * abs_scan_t with
  abs_scan_t = |a_t| abs_scan_{t-1} + |b_t| (the same recurrence on absolute values; Higham
  ch. 3).  A tree scan (Blelloch, Hillis-Steele, chunked) forms the same products a_t...a_{j+1}
  (same number of multiplications) and adds along a path of length <= 2 log2(l), so the same
  magnitude with depth 2(t+1) bounds it too.  Complex a, b: the same with complex operations
  (each within a small constant of u), the constant left to the tolerance model's SAFETY.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import mpmath
import numpy as np

from ssm_conformance.oracle.precision import verified
from ssm_conformance.oracle.reference import Reference

IDENTITY = (Fraction(1), Fraction(0))  # h -> 1*h + 0


# ----------------------------------------------------------------------------------------------
# The operator and exact scans (pairs of Fractions, or of any exact number type)


def combine(later, earlier):
    """(a2, b2) o (a1, b1) = (a2 a1, a2 b1 + b2): first ``earlier``, then ``later``."""
    a2, b2 = later
    a1, b1 = earlier
    return (a2 * a1, a2 * b1 + b2)


def exact_pairs(a, b):
    """Float arrays a, b (1-D, equal length) -> list of (Fraction, Fraction), exactly."""
    return [(Fraction(float(x)), Fraction(float(y))) for x, y in zip(np.ravel(a), np.ravel(b))]


def scan_sequential(elems):
    """Inclusive scan, left to right: P_t = e_t o P_{t-1}."""
    out, acc = [], None
    for e in elems:
        acc = e if acc is None else combine(e, acc)
        out.append(acc)
    return out


def all_bracketings(elems):
    """Every bracketing of e_{n-1} o ... o e_0 (Catalan(n-1) of them), each evaluated exactly.

    Returns the list of results; associativity says they are all equal.  Small n only.
    """
    elems = tuple(elems)

    @lru_cache(maxsize=None)
    def results(i, j):  # all values of the product of elems[i:j] (j > i), as a tuple
        if j - i == 1:
            return (elems[i],)
        out = []
        for k in range(i + 1, j):  # split: (elems[k:j]) o (elems[i:k])
            for left in results(i, k):
                for right in results(k, j):
                    out.append(combine(right, left))
        return tuple(out)

    return list(results(0, len(elems)))


def scan_every_bracketing(elems):
    """For each prefix t, the set of values of P_t under all its bracketings (one if associative)."""
    return [set(all_bracketings(elems[: t + 1])) for t in range(len(elems))]


def scan_hillis_steele(elems):
    """Hillis & Steele (1986): log2(n) rounds, in round r element i takes x_i o x_{i - 2^r}."""
    x = list(elems)
    step = 1
    while step < len(x):
        x = [combine(x[i], x[i - step]) if i >= step else x[i] for i in range(len(x))]
        step *= 2
    return x


def scan_blelloch(elems, identity=IDENTITY):
    """Blelloch (1990) work-efficient scan: up-sweep (reduce) then down-sweep, padded with the
    identity to a power of two.  The down-sweep gives the exclusive scan E_i = P_{i-1}; the
    inclusive one is e_i o E_i.  Order matters at every combine: the left operand of o is always
    the later block."""
    n = len(elems)
    size = 1
    while size < n:
        size *= 2
    x = list(elems) + [identity] * (size - n)
    d = 1
    while d < size:  # up-sweep: x[i] becomes the product of its block of 2d
        for i in range(2 * d - 1, size, 2 * d):
            x[i] = combine(x[i], x[i - d])
        d *= 2
    x[size - 1] = identity
    d = size // 2
    while d >= 1:  # down-sweep
        for i in range(2 * d - 1, size, 2 * d):
            left = x[i - d]
            x[i - d] = x[i]  # prefix before the left half
            x[i] = combine(left, x[i])  # prefix before the right half: left half after it
        d //= 2
    return [combine(elems[i], x[i]) for i in range(n)]


def scan_blocks(elems, splits):
    """Chunked scan with arbitrary split points (as a GPU kernel's blocks): scan each block
    locally, scan the block totals, then apply each block's carry-in to its local prefixes."""
    n = len(elems)
    bounds = [0] + sorted(s for s in set(splits) if 0 < s < n) + [n]
    blocks = [scan_sequential(elems[s:e]) for s, e in zip(bounds[:-1], bounds[1:])]
    out, carry = [], None
    for local in blocks:
        out.extend(local if carry is None else [combine(p, carry) for p in local])
        carry = out[-1]
    return out


def states(prefixes):
    """b-components of the prefixes: h_t (the scan applied to h_{-1} = 0)."""
    return [p[1] for p in prefixes]


# ----------------------------------------------------------------------------------------------
# The oracle


def _as_array(x, name):
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a real or complex numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries (NaN or Inf)")
    return arr


def _to_mp_flat(arr):
    """float64/complex128 array -> 1-D object array of exact mpf/mpc."""
    flat = arr.ravel()
    if np.iscomplexobj(arr):
        return np.array([mpmath.mpc(float(v.real), float(v.imag)) for v in flat], dtype=object)
    return np.array([mpmath.mpf(float(v)) for v in flat], dtype=object)


def _scan_rows(a_rows, b_rows):
    """Sequential recurrence along axis 1 of (rows, l) object (or float) arrays, all rows at once."""
    h = np.empty(b_rows.shape, dtype=b_rows.dtype)
    prev = None
    for t in range(b_rows.shape[1]):
        prev = b_rows[:, t] if prev is None else a_rows[:, t] * prev + b_rows[:, t]
        h[:, t] = prev
    return h


def linear_scan(a, b) -> Reference:
    """h_t = a_t h_{t-1} + b_t along the last axis, h_{-1} = 0; a, b real or complex, same shape
    (..., l) with l >= 1.

    value: h (complex128 if a or b is complex), computed in mpmath at a precision certified by
    ``oracle.precision.verified``.
    magnitudes:
      "abs_scan" -- abs_scan_t = |a_t| abs_scan_{t-1} + |b_t|: componentwise magnitude of
                    sequential (and tree) evaluation;
      "depth"    -- 2 (t+1), shape (l,): rounding errors on the longest path (one multiply and
                    one add per step).  tol = SAFETY * u * depth * abs_scan + output rounding.
    """
    a = _as_array(a, "a")
    b = _as_array(b, "b")
    if a.shape != b.shape or a.ndim < 1 or a.shape[-1] < 1:
        raise ValueError(f"a and b must have the same shape (..., l) with l >= 1, got a {a.shape}, b {b.shape}")
    shape, length = a.shape, a.shape[-1]
    cplx = np.iscomplexobj(a) or np.iscomplexobj(b)
    rows = max(1, a.size // length)

    with np.errstate(over="ignore", invalid="ignore"):
        abs_scan = _scan_rows(np.abs(a).reshape(rows, length), np.abs(b).reshape(rows, length))
    abs_scan = abs_scan.reshape(shape)

    a_mp = _to_mp_flat(a).reshape(rows, length)
    b_mp = _to_mp_flat(b).reshape(rows, length)
    scale = np.where(np.isfinite(abs_scan), abs_scan, 0.0)
    hi, err = verified(lambda: _scan_rows(a_mp, b_mp).reshape(shape), scale=scale)
    value = np.empty(shape, dtype=np.complex128 if cplx else np.float64)
    for idx in np.ndindex(shape):
        value[idx] = complex(hi[idx]) if cplx else float(hi[idx])
    depth = 2.0 * np.arange(1, length + 1)
    return Reference(value, err, {"abs_scan": abs_scan, "depth": depth})


def linear_scan_vjp(a, b, cotangent) -> dict:
    """Vector-Jacobian product of ``linear_scan`` for the cotangent v of h, in PyTorch's
    convention for complex inputs (grad = v^H J, i.e. conjugated partials):
        g_t = v_t + conj(a_{t+1}) g_{t+1}   (the adjoint scan, backwards in time, g_{l-1} = v_{l-1})
        dL/db_t = g_t,   dL/da_t = g_t conj(h_{t-1})   (h_{-1} = 0).
    The adjoint scan is ``linear_scan`` on reversed arrays; dL/da multiplies two certified
    references, so its error adds one float64 rounding of each factor: (2 u_64 + error terms).
    Returns {"a": Reference, "b": Reference} with magnitudes "abs_grad" and "depth" (2l + 2:
    the forward and adjoint scans plus one product), for tol = SAFETY u depth abs_grad.
    """
    a = _as_array(a, "a")
    b = _as_array(b, "b")
    v = _as_array(cotangent, "cotangent")
    if not (a.shape == b.shape == v.shape):
        raise ValueError(f"a, b and cotangent must have one shape (..., l), got {a.shape}, "
                         f"{b.shape}, {v.shape}")
    length = a.shape[-1]
    a_next = np.zeros_like(a)
    a_next[..., :-1] = a[..., 1:]  # the adjoint step multiplies by conj(a_{t+1})
    a_adj = np.conj(a_next)[..., ::-1].copy()
    g = linear_scan(a_adj, v[..., ::-1].copy())
    grad_b = g.value[..., ::-1].copy()
    abs_g = g.magnitudes["abs_scan"][..., ::-1].copy()
    h = linear_scan(a, b)
    h_prev = np.zeros_like(h.value)
    h_prev[..., 1:] = h.value[..., :-1]
    abs_h_prev = np.zeros_like(h.magnitudes["abs_scan"])
    abs_h_prev[..., 1:] = h.magnitudes["abs_scan"][..., :-1]
    grad_a = grad_b * np.conj(h_prev)
    err_g = g.error[..., ::-1]
    err_h = np.zeros_like(h.error)
    err_h[..., 1:] = h.error[..., :-1]
    u64 = 2.0**-53
    depth = np.full(length, 2.0 * length + 2)
    return {
        "b": Reference(grad_b, err_g, {"abs_grad": abs_g, "depth": depth}),
        "a": Reference(grad_a,
                       err_g * np.abs(h_prev) + err_h * np.abs(grad_b)
                       + 2 * u64 * np.abs(grad_a),
                       {"abs_grad": abs_g * abs_h_prev, "depth": depth}),
    }
