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
    return np.broadcast_to(a.astype(dtype, copy=False), shape), np.broadcast_to(b.astype(dtype, copy=False), shape)


# Elements of one time-major block (T, M): small enough to stay in cache.
BLOCK_ELEMENTS = 1 << 17


def linear_scan(a, b, h0=None):
    """h (..., l) with h_t = a_t h_{t-1} + b_t, h_{-1} = h0 (zero by default), sequentially.

    Blocks of T time steps are transposed to time-major (T, M) tiles, so each step reads and
    writes one contiguous row, and the state is carried from tile to tile."""
    a, b = _as_scan_inputs(a, b)
    if h0 is not None and np.iscomplexobj(h0) and not np.iscomplexobj(b):
        a, b = a.astype(np.complex128), b.astype(np.complex128)
    shape = b.shape
    l = shape[-1]
    a2, b2 = a.reshape(-1, l), b.reshape(-1, l)                  # (M, l); copies only if broadcast
    M = b2.shape[0]
    h = np.zeros(M, dtype=b.dtype)
    if h0 is not None:
        h0 = np.asarray(h0)
        if h0.shape != shape[:-1]:
            raise ValueError(f"linear_scan: h0 must have shape {shape[:-1]} (the leading axes), got {h0.shape}")
        h = h + h0.reshape(-1)
    out = np.empty((M, l), dtype=b.dtype)
    T = max(1, min(l, BLOCK_ELEMENTS // max(1, M)))
    for t0 in range(0, l, T):
        at = np.ascontiguousarray(a2[:, t0:t0 + T].T)                # (T, M)
        ht = np.array(b2[:, t0:t0 + T].T, order="C")                # a fresh tile: the states
        ht[0] += at[0] * h
        for t in range(1, ht.shape[0]):
            ht[t] += at[t] * ht[t - 1]
        out[:, t0:t0 + T] = ht.T
        h = ht[-1]
    return out.reshape(shape)


def linear_scan_parallel(a, b):
    """Same as ``linear_scan`` by a Hillis-Steele (inclusive, log-depth) associative scan.

    After the step with offset k, position t holds the composition of the elements t-2k+1..t
    (fewer at the start). O(l log l) work, ceil(log2 l) dependent steps.
    """
    A, B = _as_scan_inputs(a, b)
    A = A.copy()                                   # own, writable copies (the inputs are views)
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
