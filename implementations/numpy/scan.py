"""First-order linear recurrence h_t = a_t h_{t-1} + b_t (h_{-1} = 0) along the last axis, NumPy.

Two algorithms for the same role (MATH.md "Scans"):

* ``linear_scan``          -- sequential: l steps, each vectorized over all leading axes.
* ``linear_scan_parallel`` -- Hillis-Steele: log2(l) steps, each over the whole array, composing
  (a2, b2) o (a1, b1) = (a2 a1, a2 b1 + b2). Associative, so the result is the same in exact
  arithmetic; in floating point it is a different rounding of the same sums.

Both work in float64 (complex128 when a or b is complex).
"""
from __future__ import annotations

import numpy as np


def _as_scan_inputs(a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    for name, x in (("a", a), ("b", b)):
        if x.dtype.kind not in "biufc":
            raise TypeError(f"linear_scan: {name} must be a real or complex numeric array, got dtype {x.dtype}")
        if x.ndim == 0:
            raise ValueError(f"linear_scan: {name} must have shape (..., l) with l >= 1, got a scalar")
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"linear_scan: a and b must have the same shape (..., l) (or broadcast to it), "
            f"got a {a.shape} and b {b.shape}"
        ) from None
    if shape[-1] < 1:
        raise ValueError(f"linear_scan: the last axis (l) must have length >= 1, got shape {shape}")
    dtype = np.complex128 if (a.dtype.kind == "c" or b.dtype.kind == "c") else np.float64
    return np.broadcast_to(a, shape).astype(dtype), np.broadcast_to(b, shape).astype(dtype)


def linear_scan(a, b, h0=None):
    """h (..., l) with h_t = a_t h_{t-1} + b_t, h_{-1} = h0 (zero by default), sequentially."""
    a, b = _as_scan_inputs(a, b)
    # Time-major copies: every step then reads and writes one contiguous slab.
    at = np.ascontiguousarray(np.moveaxis(a, -1, 0))
    h = np.ascontiguousarray(np.moveaxis(b, -1, 0))  # overwritten in place with the states
    if h0 is not None:
        h0 = np.asarray(h0)
        if h0.shape != h.shape[1:]:
            raise ValueError(f"linear_scan: h0 must have shape {h.shape[1:]} (the leading axes), got {h0.shape}")
        h[0] += at[0] * h0
    tmp = np.empty_like(h[0])
    for t in range(1, h.shape[0]):
        np.multiply(at[t], h[t - 1], out=tmp)
        h[t] += tmp
    return np.moveaxis(h, 0, -1)


def linear_scan_parallel(a, b):
    """Same as ``linear_scan`` by a Hillis-Steele (inclusive, log-depth) associative scan.

    After the step with offset k, position t holds the composition of the elements t-2k+1..t
    (fewer at the start). O(l log l) work, ceil(log2 l) dependent steps.
    """
    A, B = _as_scan_inputs(a, b)
    A = A.copy()
    B = B.copy()
    l = B.shape[-1]
    k = 1
    while k < l:
        # (A_t, B_t) <- (A_t, B_t) o (A_{t-k}, B_{t-k}) for t >= k; the right-hand sides are
        # evaluated before the assignment, so every t reads the values of the previous step.
        B[..., k:] = A[..., k:] * B[..., :-k] + B[..., k:]
        if 2 * k < l:  # the products are not needed after the last step
            A[..., k:] = A[..., k:] * A[..., :-k]
        k *= 2
    return B
