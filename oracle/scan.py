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

Error bound for the tolerance model (``linear_scan``'s magnitudes; docs/bounds.md):
  h_t = sum_{j<=t} P_{j,t} b_j with P_{j,t} = a_t ... a_{j+1}.  The term of b_j reaches h_t through
  the t-j multiplications that form P_{j,t} b_j -- in ANY bracketing (a product's roundings are all
  relative errors of the product) -- and through the additions on its path: t-j+1 in a loop or a
  chunked scan with state passing (any chunk size), <= 2 ceil(log2 l) + 1 in a Hillis-Steele or
  Blelloch tree.  So every such algorithm's term has at most
      depth(j, t) = 2 (t - j) + c0,    c0 = 2 ceil(log2 l) + 2
  roundings, and (first order; Higham ch. 3)
      |fl(h_t) - h_t| <= u sum_j |P_{j,t}| |b_j| depth(j, t) =: u path_t.
  path_t is the PATH-WEIGHTED bound: a rounding made at step s reaches step t only through the
  decays between them, so a channel that forgets in ~1/(1-|a|) steps accumulates ~2/(1-|a|)
  roundings, not 2t.  It is a running error bound (Higham sec. 3.3), a second recurrence beside
  abs_t = |a_t| abs_{t-1} + |b_t| (``path_bound``):
      D_t = |a_t| (D_{t-1} + abs_{t-1})      (= sum_j |P_{j,t}||b_j| (t-j))
      path_t = 2 D_t + c0 abs_t,
  linear in l.  The old bound charged every term with 2(t+1) roundings (the "depth" magnitude,
  still returned).  Complex a, b: the same with complex operations (each within a small constant
  of u), the constant left to the tolerance model's SAFETY.
"""
from __future__ import annotations

import math
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
# The path-weighted error bound (module doc; docs/bounds.md), shared by the selective scan and
# the long tier (oracle/long_scan.py passes its blocked scan as ``scan``)


def tree_slack(length: int) -> float:
    """c0's share for the additions of a tree scan: a path through Blelloch's up- and down-sweep
    adds <= 2 ceil(log2 l) + 1 times where a loop adds once per step (module doc)."""
    return 2.0 * math.ceil(math.log2(max(length, 1))) + 2.0


def path_bound_sequential(abs_a, abs_b, step_depth, c0, w=None, h0=None, axis=0, reverse=False):
    """Magnitudes of the recurrence h_t = a_t h_{t-1} + b_t along ``axis`` (backwards in time
    with ``reverse``), from |a|, |b| and |h_{-1}| = h0 (the shape without the axis, or None):
    (abs, path), both of the broadcast shape of abs_a and abs_b, with
        abs_t  = sum_j |P_{j,t}| |b_j|,
        path_t = sum_j |P_{j,t}| |b_j| (step_depth (t - j) + c0 + (t - j + 1) S_{j,t}),
    P_{j,t} = a_t ... a_{j+1}, S_{j,t} = w_{j+1} + ... + w_t (h0: the term j = -1).  The last
    part (only when w, the exponent magnitudes |log a_k|, is given) is the rounding of a decay
    formed as exp of a cumulative sum of its exponents (oracle/selective_scan.py, "Error
    model").  Running recurrences, all on the same a (induction on t: each path gains the factor
    a_t, one more step, and w_t in its exponent sum; the new term j = t enters with c0):
        abs_t  = a_t abs_{t-1} + b_t
        D_t    = a_t (D_{t-1} + abs_{t-1})                       [= sum |P||b| (t-j)]
        S_t    = a_t (S_{t-1} + w_t abs_{t-1})                   [= sum |P||b| S_{j,t}]
        path_t = a_t (path_{t-1} + step_depth abs_{t-1} + S_{t-1} + w_t (D_{t-1} + 2 abs_{t-1}))
                 + c0 b_t
    ((t-j+1) S_{j,t} grows by S_{j,t-1} + (t-j+1) w_t from t-1 to t).  One sequential pass
    over time, vectorized over the other axes (~16 array operations a step: the definition;
    ``path_bound`` computes the same blockwise).  NaN (0 * inf in an overflowing magnitude)
    reads inf."""
    shape = np.broadcast_shapes(np.shape(abs_a), np.shape(abs_b))
    axis = axis % len(shape)
    abs_a, abs_b = np.broadcast_to(abs_a, shape), np.broadcast_to(abs_b, shape)
    w = None if w is None else np.broadcast_to(w, shape)
    H, E = np.empty(shape), np.empty(shape)
    row = shape[:axis] + shape[axis + 1:]
    hp = np.zeros(row) if h0 is None else np.broadcast_to(np.asarray(h0, dtype=np.float64), row)
    ep, dp, sp = c0 * hp, np.zeros(row), np.zeros(row)
    head = (slice(None),) * axis
    steps = range(shape[axis] - 1, -1, -1) if reverse else range(shape[axis])
    with np.errstate(over="ignore", invalid="ignore"):
        for t in steps:
            at, bt = abs_a[head + (t,)], abs_b[head + (t,)]
            inner = ep + step_depth * hp
            if w is not None:
                wt = w[head + (t,)]
                dh = dp + hp
                inner += sp + wt * (dh + hp)
                sp = at * (sp + wt * hp)
                dp = at * dh
            ep = at * inner + c0 * bt
            hp = at * hp + bt
            H[head + (t,)], E[head + (t,)] = hp, ep
    return H, np.where(np.isnan(E), np.inf, E)


def path_bound(abs_a, abs_b, step_depth, c0, w=None, h0=None, axis=0, reverse=False):
    """``path_bound_sequential`` (same arguments and results), with time cut into nb blocks of
    T ~ sqrt(l) steps: the recurrences run within all blocks at once from a zero state, beside
    each block's running product P_m = a_{s+m-1} ... a_s and exponent sum sigma_m (s the block
    start, m = 1..T the steps taken); the state entering each block is then carried across the
    blocks, and added. What an entering state (H, D, S, E) -- the values at step s-1 -- gives at
    step t = s+m-1 follows from the definitions, each of its paths lengthened by m steps:
        H: P H     D: P (D + m H)     S: P (S + sigma H)
        E: P (E + step_depth m H + sigma (D + H) + m S + m sigma H)
    ((t-j+1) S_{j,t} = (s-j+m)(S_{j,s-1} + sigma), and sum |P||b| (s-j) = D + H). Python loops:
    T + nb ~ 2 sqrt(l) steps on arrays of l/T x (the other axes) elements."""
    shape = np.broadcast_shapes(np.shape(abs_a), np.shape(abs_b))
    axis = axis % len(shape)
    length = shape[axis]
    T = math.isqrt(max(length - 1, 0)) + 1
    nb = -(-length // T)
    cum = w is not None

    rest = shape[:axis] + shape[axis + 1:]
    width = math.prod(rest)
    full, rem = divmod(length, T)

    def blocks(x, pad_value):
        """(T, nb, width) contiguous copy (step m of every block one contiguous slab), padded
        after the end with the identity a = 1, b = w = 0 (it changes nothing before it)."""
        x = np.moveaxis(np.broadcast_to(x, shape), axis, 0).reshape(length, width)
        if reverse:
            x = x[::-1]
        out = np.full((T, nb, width), pad_value, dtype=np.float64)
        view = out.transpose(1, 0, 2)             # (nb, T, width)
        view[:full] = x[:full * T].reshape(full, T, width)
        if rem:
            view[full, :rem] = x[full * T:]
        return out

    P, B = blocks(abs_a, 1.0), blocks(abs_b, 0.0)
    sig = blocks(w, 0.0) if cum else None
    H, E = np.empty_like(B), np.empty_like(B)
    hp, ep, dp, sp = (np.zeros((nb, width)) for _ in range(4))
    with np.errstate(over="ignore", invalid="ignore"):
        for m in range(T):      # within every block at once, from zero; P, sig in place
            at, bt = P[m], B[m]
            inner = ep + step_depth * hp
            if cum:
                wt = sig[m]
                dh = dp + hp
                inner += sp + wt * (dh + hp)
                sp = at * (sp + wt * hp)
                dp = at * dh
                if m:
                    wt += sig[m - 1]
            ep = at * inner + c0 * bt
            hp = at * hp + bt
            H[m], E[m] = hp, ep
            if m:
                at *= P[m - 1]
        # the state entering each block, carried across the blocks
        row = (np.zeros(width) if h0 is None else
               np.broadcast_to(np.asarray(h0, dtype=np.float64), rest).reshape(width))
        inc = np.empty((4, nb, width))
        Hc, Dc, Sc, Ec = row, np.zeros(width), np.zeros(width), c0 * row
        for k in range(nb):
            inc[:, k] = Hc, Dc, Sc, Ec
            Pk = P[T - 1, k]
            En = E[T - 1, k] + Pk * (Ec + step_depth * T * Hc)
            Dn = dp[k] + Pk * (Dc + T * Hc)
            if cum:
                sk = sig[T - 1, k]
                En = En + Pk * (sk * (Dc + Hc) + T * Sc + T * sk * Hc)
                Sc = sp[k] + Pk * (Sc + sk * Hc)
            Hc, Dc, Ec = H[T - 1, k] + Pk * Hc, Dn, En
        for m in range(T):      # add what the entering state gives after m + 1 steps
            Hi, Di, Si, Ei = inc
            add = Ei + (step_depth * (m + 1)) * Hi
            if cum:
                sm = sig[m]
                add += sm * (Di + Hi) + (m + 1) * Si + ((m + 1) * sm) * Hi
            E[m] += P[m] * add
            H[m] += P[m] * Hi

    def back(x):
        x = x.transpose(1, 0, 2).reshape(nb * T, width)[:length]
        x = (x[::-1] if reverse else x).reshape((length,) + rest)
        return np.moveaxis(x, 0, axis)

    E = np.where(np.isnan(E), np.inf, E)
    return back(H), back(E)


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
      "path"     -- the path-weighted bound (module doc): sum_j |P_{j,t}||b_j| depth(j, t);
                    tol = SAFETY * u * path + output rounding (properties/tolerance.py,
                    linear_scan_terms);
      "depth"    -- 2 (t+1), shape (l,): the roundings on the longest path (the older, uniform
                    bound depth * abs_scan >= path up to c0; kept for callers that use it).
    """
    a = _as_array(a, "a")
    b = _as_array(b, "b")
    if a.shape != b.shape or a.ndim < 1 or a.shape[-1] < 1:
        raise ValueError(f"a and b must have the same shape (..., l) with l >= 1, got a {a.shape}, b {b.shape}")
    shape, length = a.shape, a.shape[-1]
    cplx = np.iscomplexobj(a) or np.iscomplexobj(b)
    rows = max(1, a.size // length)

    abs_scan, path = scan_magnitudes(a, b)

    a_mp = _to_mp_flat(a).reshape(rows, length)
    b_mp = _to_mp_flat(b).reshape(rows, length)
    scale = np.where(np.isfinite(abs_scan), abs_scan, 0.0)
    hi, err = verified(lambda: _scan_rows(a_mp, b_mp).reshape(shape), scale=scale)
    value = np.empty(shape, dtype=np.complex128 if cplx else np.float64)
    for idx in np.ndindex(shape):
        value[idx] = complex(hi[idx]) if cplx else float(hi[idx])
    depth = 2.0 * np.arange(1, length + 1)
    return Reference(value, err, {"abs_scan": abs_scan, "path": path, "depth": depth})


def scan_magnitudes(a, b):
    """(abs_scan, path) of h_t = a_t h_{t-1} + b_t along the last axis (module doc): path_bound
    with 2 roundings a step and c0 = tree_slack(l) (the first add of b_j is in it)."""
    return path_bound(np.abs(a), np.abs(b), 2.0, tree_slack(np.shape(b)[-1]), axis=-1)


def linear_scan_vjp(a, b, cotangent) -> dict:
    """Vector-Jacobian product of ``linear_scan`` for the cotangent v of h, in PyTorch's
    convention for complex inputs (grad = v^H J, i.e. conjugated partials):
        g_t = v_t + conj(a_{t+1}) g_{t+1}   (the adjoint scan, backwards in time, g_{l-1} = v_{l-1})
        dL/db_t = g_t,   dL/da_t = g_t conj(h_{t-1})   (h_{-1} = 0).
    The adjoint scan is ``linear_scan`` on reversed arrays; dL/da multiplies two certified
    references, so its error adds one float64 rounding of each factor: (2 u_64 + error terms).
    Returns {"a": Reference, "b": Reference} with magnitudes "abs_grad", "path" (the
    path-weighted bound, ``vjp_paths``: tol = SAFETY u path) and "depth" (2l + 2: the forward and
    adjoint scans plus one product; the older uniform bound depth * abs_grad).
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
    path_g, path_a = vjp_paths(g.magnitudes["path"][..., ::-1], abs_g, h.magnitudes["path"],
                               h.magnitudes["abs_scan"])
    err_g = g.error[..., ::-1]
    err_h = np.zeros_like(h.error)
    err_h[..., 1:] = h.error[..., :-1]
    u64 = 2.0**-53
    depth = np.full(length, 2.0 * length + 2)
    return {
        "b": Reference(grad_b, err_g, {"abs_grad": abs_g, "path": path_g, "depth": depth}),
        "a": Reference(grad_a,
                       err_g * np.abs(h_prev) + err_h * np.abs(grad_b)
                       + 2 * u64 * np.abs(grad_a),
                       {"abs_grad": abs_g * abs_h_prev, "path": path_a, "depth": depth}),
    }


def vjp_paths(path_g, abs_g, path_h, abs_h):
    """Path-weighted bounds (units of u) of dL/db = g and dL/da_t = g_t conj(h_{t-1}), from those
    of the adjoint scan g (a scan like the forward one: ``scan_magnitudes`` on reversed arrays)
    and of h: the product's error is err_g |h_{t-1}| + |g_t| err_h + one rounding |g_t h_{t-1}|."""
    prev = np.zeros_like(abs_h)
    prev[..., 1:] = abs_h[..., :-1]
    path_prev = np.zeros_like(path_h)
    path_prev[..., 1:] = path_h[..., :-1]
    with np.errstate(invalid="ignore", over="ignore"):
        path_a = path_g * prev + abs_g * path_prev + abs_g * prev
    return path_g, np.where(np.isnan(path_a), np.inf, path_a)
