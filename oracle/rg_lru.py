"""RG-LRU (Griffin's Real-Gated Linear Recurrent Unit) oracle, its vector-Jacobian product, its
error bound, and its long-input tier.

Semantics: RecurrentGemma's ``RGLRU.forward`` (google-deepmind/recurrentgemma,
recurrentgemma/torch/layers.py) with the two gate projections already applied (CONTRACT.md,
role ``rg_lru``). Per batch b, step t, channel d, with s = sigmoid:

    L_t   = -8 s(gate_a_t) softplus(a_param)         log a_t (softplus without threshold)
    a_t   = exp(L_t)
    m_t   = sqrt(1 - a_t^2) = sqrt(-expm1(2 L_t)),   m_t = 1 where reset[b, t]
    h_t   = abar_t h_{t-1} + m_t s(gate_x_t) x_t,    abar_t = a_t, or 0 where reset[b, t]
    h_{-1} = h0 (b, d), or 0;   y_t = h_t;   h_last = h_{l-1}

Values: MPFR (gmpy2) at mpmath's working precision, certified by ``verified_many`` (precision
doubling), as the other oracles.

Error bound (a path-weighted bound; properties/test_rg_lru.py turns it into the tolerance).
  h_t = sum_{s <= t} (abar_t ... abar_{s+1}) b_s (+ abar_t ... abar_0 h0), b_s = m_s s(gx_s) x_s.
  The term of b_s is a product of leaves (b_s and the decays after it); evaluated with relative
  leaf errors eps (in units of u, the compute dtype's unit roundoff) and one multiply and one add
  per step, its error is <= u |term| (eps_b,s + sum_{k=s+1..t} (eps_a,k + C_STEP)) to first order
  (Higham ch. 3). Summed over s, the bound is u W_t with the second running recurrence

      A_t = |abar_t| A_{t-1} + |b_t|                                   (A_{-1} = |h0|)
      W_t = |abar_t| (W_{t-1} + (eps_a,t + C_STEP) A_{t-1}) + eps_b,t |b_t|   (W_{-1} = 0)

  ("weighted" and "abs" below). The leaf errors, from the standard accurate formulas:
    L = -8 s(ga) sp(c): eps_L = C_SIGMOID + C_SOFTPLUS + 1 (relative; x8 is exact);
    a = exp(L): eps_a = |L| eps_L + C_EXP (exp's condition number is |L|);
    m = sqrt(-expm1(2L)): 1 - a^2 has condition kappa = 2 a^2 |L| / (1 - a^2) <= 1 in L, so
      eps_m = (kappa eps_L + C_EXP) / 2 + C_SQRT -- a few u at every a, however near 1.
      The textbook m = sqrt(1 - exp(2L)) (RecurrentGemma's form) rounds exp(2L) first: an
      absolute error u a^2 that 1 - a^2 turns into a relative error u a^2 / (1 - a^2), beyond
      the bound wherever 1 - a^2 is small (feature ``near_one_decay``; 1 - a^2 is even exactly 0
      in float32 once |L| < 2^-25). The bound admits the accurate form and rejects that one.
    b = m s(gx) x: eps_b = eps_m + C_SIGMOID + 2; where reset, m = 1 exactly: eps_b = C_SIGMOID + 2.
  A tree (associative) or chunked scan forms the same products of decays (no more multiplies on
  a path) but adds along up to 2 ceil(log2 l) + 2 additions: the extra term "depth" x A.
  tolerance = SAFETY u (W + depth A) + output rounding (properties/tolerance.py).

Gradients (VJP of sum(v * y); the cotangent v is exact), the adjoint recurrence
      g_t = v_t + abar_{t+1} g_{t+1}    (g_{l-1} = v_{l-1})
      dx_t = g_t m_t s_t,   dgate_x_t = g_t m_t x_t s_t (1 - s_t)
      dL_t = [not reset] g_t (h_{t-1} a_t - s_t x_t a_t^2 / m_t)       (dm/dL = -a^2 / m)
      dgate_a_t = dL_t (-8 sp(c)) s(ga_t)(1 - s(ga_t)),  da_param = sum_{b,t} dL_t (-8 s(ga_t)) s(c)
      dh0 = abar_0 g_0
  bounded by the same algebra on (magnitude M, weighted error W) pairs: a leaf of relative error
  eps is (M, eps M); a product (M1 M2, W1 M2 + M1 W2 + M1 M2); a sum or difference
  (M1 + M2, W1 + W2 + M1 + M2); the adjoint g by the same two recurrences, backwards; the sum
  over b l terms of da_param by recursive summation's (N - 1) sum M (Higham eq. 4.4). The
  derivative s (1 - s) formed from a rounded s: (s(1-s), 6 s (1-s) + 4 s^2) (1 - fl(s) errs by
  C_SIGMOID u s absolutely, which is relative only while s is small). Tree adds: 4 ceil(log2 l) + 4.

Long tier (``*_tier``): the same formulas evaluated in the working format W of oracle/extended.py
(float64, or 80-bit long double for float64 subjects) with oracle/long_scan.py's blocked scan.
Its own error: every counted unit of the bound above is at most TIER_FACTOR / 2 u_W (real + and
*: u_W; libm exp, expm1, log1p <= 3 ulp = 6 u_W, counted as C_EXP = 2 units), and the blocked scan
adds 2 nb + 2 roundings on a path (long_scan.py): |tier - exact| <= TIER_FACTOR u_W (W +
(depth + 2 nb + 2) A) + TIER_FACTOR u_W depth tiny_W (doubled extra depth for gradients).
"""
from __future__ import annotations

import math

import gmpy2
import numpy as np

from ssm_conformance.oracle import long_scan
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.oracle.selective_scan import as_array, mp_of, reference, verified_many

# relative errors of the leaves, in units of u (module doc)
C_SIGMOID = 4.0    # 1 / (1 + exp(-x)): exp (2), the add, the division
C_SOFTPLUS = 5.0   # log1p(exp(c)): exp (2), log1p (2, condition <= 1), one more for the argument
C_LOG_A = C_SIGMOID + C_SOFTPLUS + 1.0
C_EXP = 2.0        # exp, expm1: a faithful libm result (<= 1 ulp = 2 u)
C_SQRT = 1.0
C_STEP = 2.0       # one multiply and one add per step of the recurrence


# ----------------------------------------------------------------------------------------------
# inputs


def check_inputs(x, gate_x, gate_a, a_param, reset=None, h0=None):
    """float64 arrays x, gate_x, gate_a (b, l, d), a_param (d,), reset bool (b, l), h0 (b, d) or
    None; clear errors for anything else."""
    x = as_array(x, "x", real=True)
    gate_x = as_array(gate_x, "gate_x", real=True)
    gate_a = as_array(gate_a, "gate_a", real=True)
    a_param = as_array(a_param, "a_param", real=True)
    if x.ndim != 3 or x.shape[1] < 1:
        raise ValueError(f"x must have shape (b, l, d) with l >= 1, got {x.shape}")
    b, l, d = x.shape
    for name, arr in (("gate_x", gate_x), ("gate_a", gate_a)):
        if arr.shape != x.shape:
            raise ValueError(f"{name} must have the shape of x {x.shape}, got {arr.shape}")
    if a_param.shape != (d,):
        raise ValueError(f"a_param must have shape (d,) = ({d},), got {a_param.shape}")
    if reset is None:
        reset = np.zeros((b, l), dtype=bool)
    else:
        reset = np.asarray(reset)
        if reset.shape != (b, l):
            raise ValueError(f"reset must have shape (b, l) = ({b}, {l}), got {reset.shape}")
        if reset.dtype != bool and not np.all((reset == 0) | (reset == 1)):
            raise TypeError(f"reset must be boolean, got dtype {reset.dtype}")
        reset = reset.astype(bool)
    if h0 is not None:
        h0 = as_array(h0, "h0", real=True)
        if h0.shape != (b, d):
            raise ValueError(f"h0 must have shape (b, d) = ({b}, {d}), got {h0.shape}")
    return x, gate_x, gate_a, a_param, reset, h0


def tree_depth(length: int) -> float:
    """Additions on a path of a tree or chunked scan beyond one per step (module doc)."""
    return 2.0 * math.ceil(math.log2(max(length, 1))) + 2.0


# ----------------------------------------------------------------------------------------------
# the formulas, on any arithmetic (MPFR object arrays, or NumPy floats of the tier's format)


class MPOps:
    exp = staticmethod(np.frompyfunc(gmpy2.exp, 1, 1))
    expm1 = staticmethod(np.frompyfunc(gmpy2.expm1, 1, 1))
    log1p = staticmethod(np.frompyfunc(gmpy2.log1p, 1, 1))
    sqrt = staticmethod(np.frompyfunc(gmpy2.sqrt, 1, 1))

    @staticmethod
    def cast(v):
        return None if v is None else mp_of(v)

    @staticmethod
    def scan(abar, bb, h0):
        """h_t = abar_t h_{t-1} + b_t along axis 1 of (b, l, d), sequentially, h_{-1} = h0."""
        h = np.empty(bb.shape, dtype=object)
        prev = h0
        for t in range(bb.shape[1]):
            prev = bb[:, t] if prev is None else abar[:, t] * prev + bb[:, t]
            h[:, t] = prev
        return h


def _w_ops(W):
    class WOps:
        exp, expm1, log1p, sqrt = np.exp, np.expm1, np.log1p, np.sqrt

        @staticmethod
        def cast(v):
            return None if v is None else np.asarray(v).astype(W)

        @staticmethod
        def scan(abar, bb, h0):
            return _block_scan_bld(abar, bb, h0)
    return WOps


def _block_scan_bld(abar, bb, h0):
    """long_scan.block_scan on (b, l, d) arrays (time-major inside), h0 (b, d) or None."""
    b, l, d = bb.shape
    tm = lambda z: np.ascontiguousarray(z.transpose(1, 0, 2).reshape(l, b * d))  # noqa: E731
    h = long_scan.block_scan(tm(abar), tm(bb), None if h0 is None else h0.reshape(b * d))
    return h.reshape(l, b, d).transpose(1, 0, 2)


def _leaves(ops, x, gx, ga, c, reset):
    """The leaves of the recurrence (module doc) in the arithmetic ``ops``."""
    sig = lambda z: 1 / (1 + ops.exp(-z))  # noqa: E731
    s, sa, sp = sig(gx), sig(ga), ops.log1p(ops.exp(c))
    L = -8 * sa * sp[None, None, :]
    a = ops.exp(L)
    m = ops.sqrt(-ops.expm1(2 * L))
    keep = ~reset[:, :, None]
    abar = np.where(keep, a, 0 * a)
    m = np.where(keep, m, 0 * m + 1)
    return dict(s=s, sa=sa, sp=sp, sc=sig(c), a=a, m=m, abar=abar, keep=keep, bb=m * s * x)


def _forward(ops, x, gx, ga, c, reset, h0):
    x, gx, ga, c, h0 = (ops.cast(v) for v in (x, gx, ga, c, h0))
    lv = _leaves(ops, x, gx, ga, c, reset)
    h = ops.scan(lv["abar"], lv["bb"], h0)
    return lv, h, (x, h0)


def _shift_next(z):
    """z_{t+1} along axis 1 (0 after the end)."""
    out = np.zeros_like(z)
    out[:, :-1] = z[:, 1:]
    return out


def _shift_prev(z, first):
    """z_{t-1} along axis 1, ``first`` (b, d) or 0 before the start."""
    out = np.zeros_like(z)
    out[:, 1:] = z[:, :-1]
    if first is not None:
        out[:, 0] = first
    return out


def _reverse_scan(ops, abar, v):
    """g_t = v_t + abar_{t+1} g_{t+1}: the forward scan on time-reversed arrays."""
    g = ops.scan(_shift_next(abar)[:, ::-1].copy(), v[:, ::-1].copy(), None)
    return g[:, ::-1]


def _backward(ops, lv, h, x, h0, v):
    g = _reverse_scan(ops, lv["abar"], ops.cast(v))
    s, sa, sp, a, m, keep = lv["s"], lv["sa"], lv["sp"], lv["a"], lv["m"], lv["keep"]
    h_prev = _shift_prev(h, h0)
    dL = np.where(keep, g * (h_prev * a - s * x * (a * a / m)), 0 * g)
    grads = {"x": g * (m * s),
             "gate_x": g * m * x * (s * (1 - s)),
             "gate_a": dL * (-8 * sp[None, None, :]) * (sa * (1 - sa)),
             "a_param": (dL * (-8 * sa)).sum(axis=(0, 1)) * lv["sc"]}
    if h0 is not None:
        grads["h0"] = lv["abar"][:, 0] * g[:, 0]
    return grads


# ----------------------------------------------------------------------------------------------
# the bound: magnitudes (M) and weighted errors (W, units of u), float64


def _f_sig(z):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def _mag_leaves(x, gx, ga, c, reset):
    s, sa, sc = _f_sig(gx), _f_sig(ga), _f_sig(c)
    sp = np.log1p(np.exp(c))
    Lm = 8.0 * sa * sp[None, None, :]                   # |L|
    a = np.exp(-Lm)
    one_minus = -np.expm1(-2.0 * Lm)                    # 1 - a^2, accurately
    m = np.sqrt(one_minus)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(one_minus > 0, np.minimum(2.0 * a * a * Lm / one_minus, 1.0), 1.0)
        a2m = np.where(m > 0, a * a / m, np.inf)
    keep = ~reset[:, :, None]
    eps_a = Lm * C_LOG_A + C_EXP
    eps_m = np.where(keep, (kappa * C_LOG_A + C_EXP) / 2.0 + C_SQRT, 0.0)
    abar = np.where(keep, a, 0.0)
    m = np.where(keep, m, 1.0)
    bb = m * s * np.abs(x)
    return dict(s=s, sa=sa, sc=sc, sp=sp, a=a, m=m, abar=abar, keep=keep, bb=bb,
                eps_a=eps_a, eps_m=eps_m, eps_b=eps_m + C_SIGMOID + 2.0,
                rho_a=np.where(keep, eps_a + C_STEP, 0.0), a2m=np.where(keep, a2m, 0.0))


def _mul(p, q):
    (m1, w1), (m2, w2) = p, q
    return m1 * m2, w1 * m2 + m1 * w2 + m1 * m2


def _add(p, q):
    (m1, w1), (m2, w2) = p, q
    return m1 + m2, w1 + w2 + m1 + m2


def _dsig(s):
    """(magnitude, weighted error) of s (1 - s) formed from a rounded s (module doc)."""
    return s * (1.0 - s), 6.0 * s * (1.0 - s) + 4.0 * s * s


def _mag_forward(ml, h0):
    """(A, W): the two running recurrences of the module doc, (b, l, d)."""
    abs_h0 = None if h0 is None else np.abs(h0)
    with np.errstate(over="ignore", invalid="ignore"):
        A = _block_scan_bld(ml["abar"], ml["bb"], abs_h0)
        src = ml["abar"] * ml["rho_a"] * _shift_prev(A, abs_h0) + ml["eps_b"] * ml["bb"]
        W = _block_scan_bld(ml["abar"], src, None)
    return A, W


def _mag_backward(ml, A, W, x, h0, v):
    """{name: (M, W)} of every gradient (module doc)."""
    with np.errstate(over="ignore", invalid="ignore"):
        an, rn = _shift_next(ml["abar"]), _shift_next(ml["rho_a"])
        G = _block_scan_bld(an[:, ::-1].copy(), np.abs(v)[:, ::-1].copy(), None)[:, ::-1]
        src = an * rn * _shift_next(G)
        WG = _block_scan_bld(an[:, ::-1].copy(), src[:, ::-1].copy(), None)[:, ::-1]
        g = (G, WG)
        s = (ml["s"], C_SIGMOID * ml["s"])
        m = (ml["m"], ml["eps_m"] * ml["m"])
        ax = (np.abs(x), 0.0 * x)
        a = (ml["a"], ml["eps_a"] * ml["a"])
        a2m = (ml["a2m"], (2.0 * ml["eps_a"] + ml["eps_m"] + 2.0) * ml["a2m"])
        abs_h0 = None if h0 is None else np.abs(h0)
        h_prev = (_shift_prev(A, abs_h0), _shift_prev(W, None))
        dL = _add(_mul(g, _mul(h_prev, a)), _mul(g, _mul(_mul(s, ax), a2m)))
        keep = ml["keep"]
        dL = (np.where(keep, dL[0], 0.0), np.where(keep, dL[1], 0.0))
        sp8 = (8.0 * ml["sp"][None, None, :], 8.0 * C_SOFTPLUS * ml["sp"][None, None, :])
        terms = _mul(dL, (8.0 * ml["sa"], 8.0 * (C_SIGMOID + 1.0) * ml["sa"]))
        n_terms = x.shape[0] * x.shape[1]
        summed = (terms[0].sum(axis=(0, 1)), terms[1].sum(axis=(0, 1))
                  + (n_terms - 1) * terms[0].sum(axis=(0, 1)))
        out = {"x": _mul(g, _mul(m, s)),
               "gate_x": _mul(_mul(_mul(g, m), ax), _dsig(ml["s"])),
               "gate_a": _mul(_mul(dL, sp8), _dsig(ml["sa"])),
               "a_param": _mul(summed, (ml["sc"], C_SIGMOID * ml["sc"]))}
        if h0 is not None:
            out["h0"] = _mul((ml["abar"][:, 0], ml["rho_a"][:, 0] * ml["abar"][:, 0]),
                             (G[:, 0], WG[:, 0]))
    return out


def _mags(M, Wt, depth):
    return {"abs": M, "weighted": Wt, "depth": depth}


def magnitudes(x, gate_x, gate_a, a_param, reset=None, h0=None):
    """The bound alone (float64, any length): Reference-shaped (y, h_last) whose value is the
    magnitude A (>= |exact value|, so the output-rounding term stays an upper bound), with the
    magnitudes "abs" (A), "weighted" (W) and "depth" (tree additions) of the module doc."""
    x, gx, ga, c, reset, h0 = check_inputs(x, gate_x, gate_a, a_param, reset, h0)
    ml = _mag_leaves(x, gx, ga, c, reset)
    A, W = _mag_forward(ml, h0)
    depth = tree_depth(x.shape[1])
    return (Reference(A, np.zeros_like(A), _mags(A, W, depth)),
            Reference(A[:, -1], np.zeros_like(A[:, -1]), _mags(A[:, -1], W[:, -1], depth)))


# ----------------------------------------------------------------------------------------------
# the oracles


def rg_lru(x, gate_x, gate_a, a_param, reset=None, h0=None, return_last_state=False):
    """y (b, l, d) as a Reference with magnitudes "abs", "weighted", "depth"; with
    ``return_last_state`` (y, h_last) with h_last (b, d). MPFR, certified."""
    x, gx, ga, c, reset, h0 = check_inputs(x, gate_x, gate_a, a_param, reset, h0)
    ml = _mag_leaves(x, gx, ga, c, reset)
    A, W = _mag_forward(ml, h0)

    def compute():
        _, h, _ = _forward(MPOps, x, gx, ga, c, reset, h0)
        return [h]

    (part,) = verified_many(compute, [A])
    depth = tree_depth(x.shape[1])
    y = reference(part, _mags(A, W, depth), False)
    if not return_last_state:
        return y
    last = Reference(y.value[:, -1], y.error[:, -1], _mags(A[:, -1], W[:, -1], depth))
    return y, last


def rg_lru_vjp(cotangent, x, gate_x, gate_a, a_param, reset=None, h0=None) -> dict:
    """Gradients of sum(cotangent * y) w.r.t. x, gate_x, gate_a, a_param (and h0 if given), as
    References with magnitudes "abs", "weighted", "depth" (4 ceil(log2 l) + 4). MPFR, certified."""
    x, gx, ga, c, reset, h0 = check_inputs(x, gate_x, gate_a, a_param, reset, h0)
    v = as_array(cotangent, "cotangent", real=True)
    if v.shape != x.shape:
        raise ValueError(f"cotangent must have the shape of x {x.shape}, got {v.shape}")
    ml = _mag_leaves(x, gx, ga, c, reset)
    A, W = _mag_forward(ml, h0)
    mags = _mag_backward(ml, A, W, x, h0, v)
    names = list(mags)

    def compute():
        lv, h, (xm, h0m) = _forward(MPOps, x, gx, ga, c, reset, h0)
        grads = _backward(MPOps, lv, h, xm, h0m, v)
        return [grads[k] for k in names]

    parts = verified_many(compute, [mags[k][0] for k in names])
    depth = 2.0 * tree_depth(x.shape[1])
    return {k: reference(part, _mags(mags[k][0], mags[k][1], depth), False)
            for k, part in zip(names, parts)}


# ----------------------------------------------------------------------------------------------
# the long tier


def _tier_error(u_w, W_dtype, M, Wt, depth_w):
    return long_scan._bound(u_w, W_dtype, depth_w, M, Wt)


def rg_lru_tier(x, gate_x, gate_a, a_param, reset=None, h0=None, return_last_state=False,
                subject_dtype="float32"):
    """Tier of ``rg_lru`` for long inputs (module doc): same Reference type and magnitudes,
    ``error`` the tier's own derived bound."""
    x, gx, ga, c, reset, h0 = check_inputs(x, gate_x, gate_a, a_param, reset, h0)
    W_dtype, u_w = long_scan._w_format(subject_dtype)
    ml = _mag_leaves(x, gx, ga, c, reset)
    A, W = _mag_forward(ml, h0)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        _, h, _ = _forward(_w_ops(W_dtype), x, gx, ga, c, reset, h0)
    depth = tree_depth(x.shape[1])
    depth_w = depth + long_scan._tier_depth_extra(x.shape[1])
    err = _tier_error(u_w, W_dtype, A, W, depth_w)
    y = Reference(h.astype(np.float64), err, _mags(A, W, depth))
    if not return_last_state:
        return y
    return y, Reference(y.value[:, -1], err[:, -1], _mags(A[:, -1], W[:, -1], depth))


def rg_lru_vjp_tier(cotangent, x, gate_x, gate_a, a_param, reset=None, h0=None,
                    subject_dtype="float32") -> dict:
    """Tier of ``rg_lru_vjp`` for long inputs (module doc)."""
    x, gx, ga, c, reset, h0 = check_inputs(x, gate_x, gate_a, a_param, reset, h0)
    v = as_array(cotangent, "cotangent", real=True)
    if v.shape != x.shape:
        raise ValueError(f"cotangent must have the shape of x {x.shape}, got {v.shape}")
    W_dtype, u_w = long_scan._w_format(subject_dtype)
    ml = _mag_leaves(x, gx, ga, c, reset)
    A, W = _mag_forward(ml, h0)
    mags = _mag_backward(ml, A, W, x, h0, v)
    ops = _w_ops(W_dtype)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        lv, h, (xw, h0w) = _forward(ops, x, gx, ga, c, reset, h0)
        grads = _backward(ops, lv, h, xw, h0w, v)
    depth = 2.0 * tree_depth(x.shape[1])
    depth_w = depth + 2.0 * long_scan._tier_depth_extra(x.shape[1])
    return {k: Reference(grads[k].astype(np.float64),
                         _tier_error(u_w, W_dtype, mags[k][0], mags[k][1], depth_w),
                         _mags(mags[k][0], mags[k][1], depth))
            for k in mags}
