"""The long-input oracle tier of ``linear_scan``, ``selective_scan`` and ``selective_state_update``
over long decode sequences: the definitions of oracle/scan.py and oracle/selective_scan.py
evaluated in the working format W of oracle/extended.py (float64 for float32 and half subjects,
80-bit long double for float64 subjects), vectorized over every non-sequential axis.

Same ``Reference`` type and the same magnitudes ("abs_scan"/"abs_out"/"abs_state", "exp_cond",
"path", "local_depth", "depth": the SUBJECT's bounds, which properties/tolerance.py reads; the
path-weighted "path" of oracle/scan.py and docs/bounds.md) as the multiple-precision oracles;
``Reference.error`` is the tier's own derived bound (below), which the tolerance adds.

Algorithm: a blocked scan (``block_scan``). Time is cut into nb blocks of T ~ sqrt(l) steps; the
recurrence runs sequentially within the blocks, all blocks (and rows) at once, alongside the
within-block products P_t = a_t ... a_{block start}; the block totals are then carried
sequentially across blocks (c_k = P_k c_{k-1} + h_k), and each block adds P_t c_{k-1}. Python
loops: T + nb ~ 2 sqrt(l) iterations on arrays of l/T x rows elements.

Error bound of the tier (written beside the constants that realize it):
  Every output is a multilinear sum of terms, each a product of leaves (exp(Dt A), Dt B u, C, D u,
  SiLU(z), or a, b for the linear scan). Evaluated in W with at most ``depth_W`` roundings on any
  leaf-to-output path, its error is <= gamma_{depth_W}(u_W) times the same computation on the
  absolute values of the leaves (Higham ch. 3) -- the magnitudes "abs_*" -- plus the leaves' own
  errors. The blocked scan's path for the term of b_j in h_t: one multiply and one add per step
  inside b_j's block, one multiply per step (forming P) in every later block, one multiply and one
  add per block to carry, one multiply and one add to apply the carry-in: at most the sequential
  scan's 2 per step plus 2 nb + 2. So every path's depth is the subject's path depth (which the
  path-weighted "path" already charges it, oracle/scan.py) plus 2 nb + 2 for a forward output,
  and + 4 nb + 4 for a gradient (the forward and the adjoint scan): depth_W = 2 nb + 2 (+ the
  output side's local_depth) times abs, beside the path.
  exp(Dt A) is evaluated in W at the argument rounded in W: its relative error is
  u_W |Dt A| (1 + kappa) <= the "exp_cond" magnitude (weight 3 + kappa) with u_W for u.
  Each counted operation errs by at most TIER_FACTOR / 2 u_W (real + and *: u_W; complex multiply
  sqrt(5) u_W, Brent, Percival, Zimmermann 2007; libm exp, log1p, expm1 in double and x87 long
  double: <= 3 ulp = 6 u_W, glibc's documented maxima), and 1 / (1 - depth 6 u_W) < 1.01 for
  depth < 2^40; hence
      |tier - exact| <= TIER_FACTOR u_W (path + depth_W abs + exp_cond)
                        + TIER_FACTOR u_W depth_W tiny_W
  (the last term: gradual underflow in W). tests/test_oracle_long_scan.py measures the tier's
  true error against the MPFR oracle (before rounding to float64) and against itself in a wider W.
  The value is then rounded once to float64 (not in the error: the tolerance model adds u_64 |y|).
"""
from __future__ import annotations

import math

import numpy as np

from ssm_conformance.oracle import scan as oracle_scan
from ssm_conformance.oracle import selective_scan as oracle_ss
from ssm_conformance.oracle.extended import tier_dtype, tier_complex_dtype, tier_unit_roundoff
from ssm_conformance.oracle.reference import Reference

TIER_FACTOR = 8.0
TINY_W = {np.dtype(np.float64): float(np.finfo(np.float64).tiny),
          np.dtype(np.longdouble): float(np.finfo(np.longdouble).tiny) or 0.0}


# ----------------------------------------------------------------------------------------------
# The blocked scan


def block_length(length: int) -> int:
    """T: steps per block, ~sqrt(l) (balances the two sequential loops)."""
    return max(1, math.isqrt(max(length - 1, 0)) + 1)


def num_blocks(length: int) -> int:
    return -(-length // block_length(length))


def block_scan(a, b, h0=None):
    """h_t = a_t h_{t-1} + b_t along axis 0 of (l, M) arrays of one dtype (any real or complex
    NumPy format, or nonnegative float64 magnitudes), h_{-1} = h0 (M,) or 0. Returns h (l, M)."""
    length, width = b.shape
    T = block_length(length)
    nb = -(-length // T)
    pad = nb * T - length
    dtype = np.result_type(a, b) if h0 is None else np.result_type(a, b, h0)
    if pad:  # identity elements (a = 1, b = 0) after the end: they change nothing before it
        a = np.concatenate([a, np.ones((pad, width), dtype=a.dtype)])
        b = np.concatenate([b, np.zeros((pad, width), dtype=b.dtype)])
    # time-within-block outermost: step t of every block is one contiguous (nb, M) slab
    a3 = np.ascontiguousarray(a.reshape(nb, T, width).transpose(1, 0, 2), dtype=dtype)
    H = np.ascontiguousarray(b.reshape(nb, T, width).transpose(1, 0, 2), dtype=dtype)
    P = np.empty_like(a3)
    P[0] = a3[0]
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        for t in range(1, T):
            H[t] += a3[t] * H[t - 1]
            np.multiply(a3[t], P[t - 1], out=P[t])
        del a3
        carry = np.zeros((nb, width), dtype=dtype)  # the state before each block
        c = None if h0 is None else np.asarray(h0, dtype=dtype)
        for k in range(nb):
            if c is not None:
                carry[k] = c
                c = P[T - 1, k] * c + H[T - 1, k]
            else:
                c = H[T - 1, k].copy()
        first = 0 if h0 is not None else 1  # block 0 has no carry-in without h0 (P may be inf)
        H[:, first:] += P[:, first:] * carry[None, first:]
    return H.transpose(1, 0, 2).reshape(nb * T, width)[:length]


def _tier_depth_extra(length: int) -> float:
    """Roundings the blocked scan adds to the sequential path (module doc): 2 nb + 2."""
    return 2.0 * num_blocks(length) + 2.0


def _w_format(subject_dtype):
    return np.dtype(tier_dtype(subject_dtype)), tier_unit_roundoff(subject_dtype)


def _bound(u_w, real_w, depth_w, magnitude, exp_cond=0.0, path=0.0):
    """TIER_FACTOR u_W (path + depth_W magnitude + exp_cond) + TIER_FACTOR u_W depth_W tiny_W.
    ``path``: the subject's path-weighted bound (oracle/scan.py, path_bound), whose per-path
    depth covers the tier's sequential part; depth_W then counts only what the blocked scan adds
    to every path (2 nb + 2, module doc) and the output side. (Without ``path``: depth_W is a
    whole path's depth, the uniform bound.)"""
    depth_w = np.asarray(depth_w, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return TIER_FACTOR * u_w * (path + depth_w * magnitude + exp_cond
                                    + np.maximum(depth_w, 1.0) * TINY_W[np.dtype(real_w)])


def _to_float(x, cplx):
    return np.asarray(x).astype(np.complex128 if cplx else np.float64)


# ----------------------------------------------------------------------------------------------
# linear_scan


def _check_scan(a, b, subject_dtype):
    a = oracle_ss.as_array(a, "a")
    b = oracle_ss.as_array(b, "b")
    if a.shape != b.shape or a.ndim < 1 or a.shape[-1] < 1:
        raise ValueError(f"a and b must have the same shape (..., l) with l >= 1, got a "
                         f"{a.shape}, b {b.shape}")
    return a, b, _w_format(subject_dtype)


def _time_major(x, W):
    """(..., l) -> (l, rows) in W."""
    length = x.shape[-1]
    return np.ascontiguousarray(np.moveaxis(x, -1, 0).reshape(length, -1)).astype(W)


def _from_time_major(h, shape):
    return np.moveaxis(h.reshape((shape[-1],) + shape[:-1]), 0, -1)


def linear_scan_w(a, b, subject_dtype="float32"):
    """(h in W, its error bound, abs_scan) of ``linear_scan``: the unrounded tier result (tests)."""
    return _linear_scan_w(a, b, subject_dtype)[:3]


def _linear_scan_w(a, b, subject_dtype):
    """linear_scan_w and the path-weighted magnitude "path"."""
    a, b, (W, u_w) = _check_scan(a, b, subject_dtype)
    cplx = np.iscomplexobj(a) or np.iscomplexobj(b)
    Wv = np.dtype(tier_complex_dtype(subject_dtype)) if cplx else W
    shape, length = a.shape, a.shape[-1]
    h = _from_time_major(block_scan(_time_major(a, Wv), _time_major(b, Wv)), shape)
    abs_scan, path = oracle_scan.scan_magnitudes(a, b)
    return h, _bound(u_w, W, _tier_depth_extra(length), abs_scan, path=path), abs_scan, path


def linear_scan(a, b, subject_dtype="float32") -> Reference:
    """Tier of ``oracle.scan.linear_scan``: h_t = a_t h_{t-1} + b_t along the last axis, in W for
    a subject judged in ``subject_dtype``. Magnitudes "abs_scan", "path", "depth" as there."""
    h, err, abs_scan, path = _linear_scan_w(a, b, subject_dtype)
    cplx = np.iscomplexobj(h)
    depth = 2.0 * np.arange(1, h.shape[-1] + 1)
    return Reference(_to_float(h, cplx), err, {"abs_scan": abs_scan, "path": path, "depth": depth})


def linear_scan_vjp(a, b, cotangent, subject_dtype="float32") -> dict:
    """Tier of ``oracle.scan.linear_scan_vjp`` (same formulas, magnitudes "abs_grad", "depth"):
    the adjoint scan g_t = v_t + conj(a_{t+1}) g_{t+1}; dL/db = g, dL/da = g conj(h_{t-1}), the
    product formed in W: its error err_g |h| + err_h |g| + err_g err_h + 4 u_W |g h|."""
    a, b, (W, u_w) = _check_scan(a, b, subject_dtype)
    v = oracle_ss.as_array(cotangent, "cotangent")
    if v.shape != a.shape:
        raise ValueError(f"cotangent must have the shape of a and b {a.shape}, got {v.shape}")
    length = a.shape[-1]
    a_next = np.zeros_like(a)
    a_next[..., :-1] = a[..., 1:]
    a_adj = np.conj(a_next)[..., ::-1]
    g, err_g, abs_g, path_g = _linear_scan_w(a_adj, v[..., ::-1], subject_dtype)
    g, err_g, abs_g, path_g = g[..., ::-1], err_g[..., ::-1], abs_g[..., ::-1], path_g[..., ::-1]
    h, err_h, abs_h, path_h = _linear_scan_w(a, b, subject_dtype)
    path_g, path_a = oracle_scan.vjp_paths(path_g, abs_g, path_h, abs_h)
    h_prev = np.zeros_like(h)
    h_prev[..., 1:] = h[..., :-1]
    e_prev = np.zeros_like(err_h)
    e_prev[..., 1:] = err_h[..., :-1]
    abs_prev = np.zeros_like(abs_h)
    abs_prev[..., 1:] = abs_h[..., :-1]
    grad_a = g * np.conj(h_prev)
    cplx = np.iscomplexobj(g) or np.iscomplexobj(h)
    mag_g, mag_h = np.abs(g).astype(np.float64), np.abs(h_prev).astype(np.float64)
    err_a = err_g * mag_h + e_prev * mag_g + err_g * e_prev + 4 * u_w * mag_g * mag_h
    depth = np.full(length, 2.0 * length + 2)
    return {"b": Reference(_to_float(g, np.iscomplexobj(g)), err_g,
                           {"abs_grad": abs_g, "path": path_g, "depth": depth}),
            "a": Reference(_to_float(grad_a, cplx), err_a,
                           {"abs_grad": abs_g * abs_prev, "path": path_a, "depth": depth})}


# ----------------------------------------------------------------------------------------------
# selective_scan: the leaves in W, the blocked forward and adjoint


class _WOps:
    """Re and conj of the value pass in W (oracle_ss._chain's ``ops``)."""
    re = staticmethod(np.real)
    conj = staticmethod(np.conj)


def _leaves_w(u, delta, A, Bi, Ci, D, z, delta_bias, softplus, W, Wc):
    """oracle_ss._leaves_mp in W: the float64 inputs read exactly into W, every leaf formed there
    (softplus thresholded at 20, as the oracle's)."""
    V = Wc if np.iscomplexobj(A) else W
    x = delta.astype(W) if delta_bias is None else delta.astype(W) + delta_bias.astype(W)[None, :, None]
    with np.errstate(over="ignore"):
        if softplus:
            Dt = np.where(x > oracle_ss.SOFTPLUS_THRESHOLD, x,
                          np.log1p(np.exp(np.minimum(x, oracle_ss.SOFTPLUS_THRESHOLD))))
        else:
            Dt = x
        uw, Aw = u.astype(W), A.astype(V)
        Bx = Bi.expand(Bi.arr.astype(Wc if Bi.is_complex else W))
        Cx = Ci.expand(Ci.arr.astype(Wc if Ci.is_complex else W))
        Dw = None if D is None else D.astype(W)
        zw = None if z is None else z.astype(W)
        sig = None if zw is None else 1 / (1 + np.exp(-zw))
        return dict(
            Dt=Dt, A=Aw, u=uw, Bx=Bx, Cx=Cx, D=Dw,
            dA=np.exp(Dt[..., None] * Aw[None, :, None, :]),
            bu=(Dt * uw)[..., None] * Bx,
            Du=None if Dw is None else Dw[None, :, None] * uw,
            gate=None if zw is None else zw * sig,
            dgate=None if zw is None else sig * (1 + zw * (1 - sig)),
            dsp=(np.where(x > oracle_ss.SOFTPLUS_THRESHOLD, 1, 1 / (1 + np.exp(-x)))
                 if softplus else None),
        )


def _tm(X):
    """(b, d, l, n) -> (l, b d n), contiguous."""
    b, d, l, n = X.shape
    return np.ascontiguousarray(np.moveaxis(X, 2, 0)).reshape(l, b * d * n)


def _bm(X, b, d, n):
    """(l, b d n) -> (b, d, l, n) view."""
    return np.moveaxis(X.reshape(X.shape[0], b, d, n), 0, 2)


def _forward(lv, cplx, ops, h0=None):
    """oracle_ss.forward_core by the blocked scan: (out, pre, last state, states (b, d, l, n))."""
    dA, bu, Cx = lv["dA"], lv["bu"], lv["Cx"]
    b, d, length, n = bu.shape
    dtype = np.result_type(dA, bu)
    h = block_scan(_tm(dA), _tm(bu.astype(dtype, copy=False)),
                   None if h0 is None else np.asarray(h0).reshape(-1))
    states = _bm(h, b, d, n)
    y = (states * Cx).sum(axis=-1)
    if cplx:
        y = 2 * ops.re(y)
    pre = y if lv["Du"] is None else y + lv["Du"]
    out = pre if lv["gate"] is None else pre * lv["gate"]
    return out, pre, states[:, :, -1], states


def _backward(gout, lv, pre, states, cplx, ops, h0=None, glast=None):
    """oracle_ss.backward_core by the blocked scan, backwards in time:
    Gh_t = coef g_pre_t conj(C_t) + conj(dA_{t+1}) Gh_{t+1} (+ glast at t = l - 1)."""
    dA, Cx, gate = lv["dA"], lv["Cx"], lv["gate"]
    b, d, length, n = states.shape
    g_pre = gout if gate is None else gout * gate
    coef = 2 if cplx else 1
    gy = coef * g_pre[..., None]
    from_y = gy * ops.conj(Cx)
    if glast is not None:
        from_y = from_y.astype(np.result_type(from_y, glast))
        from_y[:, :, -1] = from_y[:, :, -1] + glast
    a_adj = np.zeros_like(_tm(dA))
    a_adj[:-1] = _tm(ops.conj(dA))[1:]   # step t multiplies by conj(dA_{t+1})
    dtype = np.result_type(a_adj, from_y)
    Gh = block_scan(a_adj[::-1].astype(dtype), _tm(from_y).astype(dtype)[::-1])[::-1]
    G_bu = _bm(np.ascontiguousarray(Gh), b, d, n)
    prev = np.zeros_like(states)
    prev[:, :, 1:] = states[:, :, :-1]
    if h0 is not None:
        prev[:, :, 0] = h0
    grads = {"dA": G_bu * ops.conj(prev), "bu": G_bu, "Cx": gy * ops.conj(states), "Du": g_pre,
             "gate": None if gate is None else gout * pre}
    if h0 is not None:
        grads["h0"] = ops.conj(dA[:, :, 0]) * G_bu[:, :, 0]
    return grads


def _magnitudes(run, leaves_abs, weights, path):
    return oracle_ss.exp_cond_of(run, leaves_abs, weights, path)


def _selective(u, delta, A, B, C, D, z, delta_bias, softplus, subject_dtype, h0=None):
    """(out Reference, last-state Reference) of the scan from h0 (b, d, n) or 0."""
    u, delta, A, Bi, Ci, D, z, delta_bias, cplx = oracle_ss._check_inputs(u, delta, A, B, C, D,
                                                                          z, delta_bias)
    W, u_w = _w_format(subject_dtype)
    Wc = np.dtype(tier_complex_dtype(subject_dtype))
    b, d, length = u.shape
    n = A.shape[1]
    if h0 is not None:
        h0 = oracle_ss.as_array(h0, "state", real=True)
        oracle_ss.check_shape(h0, "state", (b, d, n))

    def run_abs(lv):
        out, _, last, _ = _forward(lv, cplx, oracle_ss.ABS,
                                   None if h0 is None else np.abs(h0))
        return [out, last]

    lv_abs, weights, path = oracle_ss._leaves_abs(u, delta, A, Bi, Ci, D, z, delta_bias, softplus)
    (abs_out, abs_last), (cond_out, cond_last) = _magnitudes(run_abs, lv_abs, weights, path)
    paths = oracle_ss.forward_paths(lv_abs, cplx, h0=h0)
    out_mag, last_mag = oracle_ss.sequence_magnitudes(abs_out, cond_out, abs_last, cond_last,
                                                      paths, length, n)
    lv = _leaves_w(u, delta, A, Bi, Ci, D, z, delta_bias, softplus, W, Wc)
    out, _, last, _ = _forward(lv, cplx, _WOps, None if h0 is None else h0.astype(W))
    extra = _tier_depth_extra(length)
    out_ref = Reference(_to_float(out, False),
                        _bound(u_w, W, out_mag["local_depth"] + extra, abs_out, cond_out,
                               paths["out"]), out_mag)
    last_ref = Reference(_to_float(last, cplx),
                         _bound(u_w, W, extra, abs_last, cond_last, paths["last"]), last_mag)
    return out_ref, last_ref, (out, last)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, subject_dtype="float32"):
    """Tier of ``oracle.selective_scan.selective_scan`` (same arguments, shapes, results and
    magnitudes), in W for a subject judged in ``subject_dtype``."""
    out_ref, last_ref, _ = _selective(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                      subject_dtype)
    return (out_ref, last_ref) if return_last_state else out_ref


def selective_scan_w(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                     *, subject_dtype="float32", state=None):
    """(out Reference, last Reference, (out, last) unrounded in W): for tests."""
    return _selective(u, delta, A, B, C, D, z, delta_bias, delta_softplus, subject_dtype, state)


def selective_state_update_sequence(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                                    dt_softplus=False, *, subject_dtype="float32"):
    """l decode steps of ``oracle.selective_scan.selective_state_update`` from ``state``, exactly
    (no rounding between steps): the selective scan from the initial state.

    state (b, d, n); x, dt, z (b, d, l); A (d, n) real; B, C (b, n, l); D, dt_bias (d,).
    Returns (out Reference (b, d, l), final state Reference (b, d, n)), magnitudes as the scan's
    ("depth" 3 (t+1) + n + 8 and 3 l + 5: the chain of l steps forms the scan's products)."""
    A = oracle_ss.as_array(A, "A", real=True)
    for name, v in (("B", B), ("C", C)):
        if np.ndim(v) != 3:
            raise ValueError(f"{name} must have shape (b, n, l) (one column per step), got "
                             f"{np.shape(v)}")
    out_ref, last_ref, _ = _selective(x, dt, A, B, C, D, z, dt_bias, dt_softplus, subject_dtype,
                                      h0=state)
    return out_ref, last_ref


def selective_scan_vjp(grad_out, u, delta, A, B, C, D=None, z=None, delta_bias=None,
                       delta_softplus=False, grad_last_state=None, *, subject_dtype="float32"):
    """Tier of ``oracle.selective_scan.selective_scan_vjp``: same gradients (PyTorch's complex
    convention, interleaved B/C gradients interleaved) and magnitudes ("abs_out", "exp_cond",
    "depth" = 2 (3 l + n + 8) + the terms summed); error depth_W = depth + 4 nb + 4."""
    u, delta, A, Bi, Ci, D, z, delta_bias, cplx = oracle_ss._check_inputs(u, delta, A, B, C, D,
                                                                          z, delta_bias)
    W, u_w = _w_format(subject_dtype)
    Wc = np.dtype(tier_complex_dtype(subject_dtype))
    b, d, length = u.shape
    n = A.shape[1]
    grad_out = oracle_ss.as_array(grad_out, "grad_out", real=True)
    oracle_ss.check_shape(grad_out, "grad_out", u.shape)
    if grad_last_state is not None:
        grad_last_state = oracle_ss.as_array(grad_last_state, "grad_last_state")
        oracle_ss.check_shape(grad_last_state, "grad_last_state", (b, d, n))
    has = {"D": D is not None, "z": z is not None, "delta_bias": delta_bias is not None}
    names = ["u", "delta", "A", "B", "C"] + [k for k in ("D", "z", "delta_bias") if has[k]]

    def run(lv, ops, gout, glast):
        _, pre, _, states = _forward(lv, cplx, ops)
        gl = _backward(gout, lv, pre, states, cplx, ops, glast=glast)
        g = oracle_ss._chain(gl, lv, Bi, Ci, cplx, ops, has)
        return [g[k] for k in names]

    lv_abs, weights, path = oracle_ss._leaves_abs(u, delta, A, Bi, Ci, D, z, delta_bias,
                                                  delta_softplus)
    glabs = None if grad_last_state is None else np.abs(grad_last_state)
    base, cond = _magnitudes(lambda lv: run(lv, oracle_ss.ABS, np.abs(grad_out), glabs),
                             lv_abs, weights, path)
    lv = _leaves_w(u, delta, A, Bi, Ci, D, z, delta_bias, delta_softplus, W, Wc)
    values = run(lv, _WOps, grad_out.astype(W),
                 None if grad_last_state is None else
                 grad_last_state.astype(Wc if cplx else W))
    paths = oracle_ss.vjp_paths(lv_abs, np.abs(grad_out), glabs, cplx, Bi, Ci, has, names)
    depths = oracle_ss.vjp_depths(names, Bi, Ci, b, length, n)
    extra = 2 * _tier_depth_extra(length)
    is_cplx = {"A": cplx, "B": Bi.is_complex, "C": Ci.is_complex}
    result = {}
    for k, val, mag, ec, path in zip(names, values, base, cond, paths):
        err = _bound(u_w, W, depths[k]["local_depth"] + extra, mag, ec, path)
        info = {"B": Bi, "C": Ci}.get(k)
        if info is not None and info.interleaved:
            val = _interleave(val)
            err, mag, ec, path = (np.repeat(x, 2, axis=-1) for x in (err, mag, ec, path))
            out_cplx = False
        else:
            out_cplx = is_cplx.get(k, False)
            if not out_cplx:
                val = np.real(val)
        result[k] = Reference(_to_float(val, out_cplx), err,
                              {"abs_out": mag, "exp_cond": ec, "path": path, **depths[k]})
    return result


def _interleave(G):
    """Complex gradient (..., l) -> real (..., 2l) with (Re, Im) interleaved."""
    out = np.empty(G.shape[:-1] + (2 * G.shape[-1],), dtype=np.real(G).dtype)
    out[..., 0::2] = np.real(G)
    out[..., 1::2] = np.imag(G)
    return out
