"""SSD (Mamba-2) oracle: recurrent, quadratic (semiseparable matrix) and chunked forms, and its VJP.

Semantics: mamba-ssm ``mamba_chunk_scan_combined`` (mamba_ssm/ops/triton/ssd_combined.py, with
``_chunk_cumsum_fwd_kernel`` of ssd_chunk_state.py and ``_chunk_scan_fwd_kernel`` of
ssd_chunk_scan.py), read at commit e9594ce of state-spaces/mamba; docs/mamba_oracles.md.
x (b, l, h, p), dt (b, l, h), A (h,), B, C (b, l, g, n); head hh reads group hh // (h/g).

    Dt_t = clamp(softplus(dt_t + dt_bias), dt_limit)      softplus(v) = v if v > 20 else log1p(e^v);
                                                          clamp = min(max(., lo), hi), default
                                                          dt_limit = (0, inf): Dt >= 0 ALWAYS
    S_t  = exp(Dt_t A) S_{t-1} + Dt_t x_t B_t^T           S_{-1} = initial_states (or 0), (p, n)
    y_t  = S_t C_t + D x_t,   out_t = y_t * SiLU(z_t)     (D (h,) or (h, p); gate after D, no norm)
    final_states = S_{l-1}

The same map as a semiseparable matrix (Dao & Gu 2024):  y_i = sum_{j<=i} M_ij Dt_j x_j +
exp(sum_{k<=i} Dt_k A) S_{-1} C_i + D x_i,   M_ij = C_i^T B_j exp(sum_{k=j+1..i} Dt_k A);
and chunked (chunk length Q): within a chunk the quadratic form with exp(cs_i - cs_j) (cs the
chunk-local inclusive cumulative sum of Dt A), between chunks the recurrence of the states at
chunk ends.  All three are evaluated here in multiple precision (MPFR via gmpy2 at mpmath's
working precision, as oracle/selective_scan.py); ``ssd`` returns the recurrent one.

Error model: a path-weighted running error bound (docs/bounds_ssd.md has the derivation).
Every output is a sum of monomials term_ij = gate_i C_i.B_j exp(sum_{k=j+1..i} Dt_k A) Dt_j x_j
(D x and S_{-1} alike); a rounding committed at step s reaches output t only through the decays
between s and t, so the bound of out_t sums, over s <= t, the rounding at s times the product of
|decays| from s to t -- a second recurrence, evaluated alongside the first (Higham, ch. 3):
  abs_out  -- the recurrence on absolute values of the leaves exp(Dt A), Dt x, B, C, D x,
              SiLU(z), |S_{-1}|: sum_j |term_ij|.
  depth    -- max(min(l, max(Q, 64)), 6 ceil(log2 l)) + 2 n + 12 (Q = chunk_size), a SCALAR:
              the roundings the deepest admitted algorithm commits on one path in sums taken in
              any order -- within a chunk (<= max(Q, 64) terms: the subject's chunk, BLAS/Triton
              blocks of 64) or in a tree scan (combines 2 log2 l deep, each a product and a
              multiply-add: 6 log2 l) -- plus the C.B and C.S dots (2 n), the leaves, D x and the
              gate (12).
  abs_off  -- the part of abs_out on the paths from an earlier chunk of the subject (and from
              S_{-1}), with off_depth = 2 ceil(l / Q) + 4: a sum over all chunk states in any
              order (ssd_minimal's einsum over chunks), or the state passing's |local state|
              added once per chunk crossed, a tree over chunks (6 log2 nc <= 2 nc + 4).
  run_out  -- |gate_t| sum_n |C_t| V_t, V_t = |e^{Dt_t A}| V_{t-1} + |S_t| (V_{-1} = 0), with S_t
              the exact state: the running error of the sequential steps (a multiply, an add, an
              exp per step, each rounding u |S_t| up to first order since |e^{Dt A} S_{t-1}| <=
              |S_t| + |Dt x B^T|), of the state passing between chunks (at chunk ends only), and
              of sums in ascending order across blocks (their partial sums are decayed states);
              run_depth = RUN_DEPTH = 4.  Values, not magnitudes: a state that sums random signs
              without decay grows like sqrt(t), its magnitude like t.
  exp_cond -- first-order error through the exponents (exponent_weights' doc): ONE
              float32 cumulative sum of Dt A per chunk of the subject (sequential or a tree, as
              mamba-ssm's _chunk_cumsum_fwd_kernel), direct segment sums within a chunk, a segment
              sum over chunk totals, exp(Dt_k A) per step; never a cumulative sum over the whole
              sequence (its exponent error u |cs_global| ~ u t |Dt A| is outside: MATH.md).
  tolerance: SAFETY * u * (depth * abs_out + off_depth * abs_off + run_depth * run_out
             + exp_cond) + output rounding (properties/tolerance.py, ssd_terms).
  VJP: the adjoint on absolute values, depth = 2 (depth + off_depth) + the terms a gradient
  sums, and run_out: the running errors of the forward and the adjoint (reverse-time)
  recurrences carried into each gradient (vjp_running).
"""
from __future__ import annotations

import math
import numbers

import gmpy2
import numpy as np

from ssm_conformance.oracle.selective_scan import (
    SOFTPLUS_THRESHOLD, as_array, check_shape, dsilu_magnitude, dsoftplus_kappa, exp_cond_of,
    f_sigmoid, f_softplus, hp_context, mp_dsilu, mp_dsoftplus, mp_exp, mp_of, mp_silu, mp_softplus, reference,
    softplus_kappa, to_mpmath, verified_many,
)

DEFAULT_DT_LIMIT = (0.0, math.inf)


# ----------------------------------------------------------------------------------------------
# input checking


class _Inputs:
    """Validated float64 inputs and derived sizes."""

    def __init__(self, x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_limit):
        x = as_array(x, "x", real=True)
        if x.ndim != 4 or 0 in x.shape:
            raise ValueError(f"x must have shape (b, l, h, p) with every size >= 1, got {x.shape}")
        b, l, h, p = x.shape
        dt = as_array(dt, "dt", real=True)
        check_shape(dt, "dt", (b, l, h), f"(b, l, h) = {(b, l, h)}")
        A = as_array(A, "A", real=True)
        check_shape(A, "A", (h,), f"(h,) = ({h},)")
        B = as_array(B, "B", real=True)
        if B.ndim != 4 or B.shape[:2] != (b, l) or B.shape[2] < 1 or B.shape[3] < 1:
            raise ValueError(f"B must have shape (b, l, g, n) = ({b}, {l}, g, n), got {B.shape}")
        g, n = B.shape[2], B.shape[3]
        if h % g != 0:
            raise ValueError(f"B has g = {g} groups, which must divide the number of heads h = {h}")
        C = as_array(C, "C", real=True)
        check_shape(C, "C", B.shape, f"{B.shape} (that of B)")
        if isinstance(chunk_size, (bool, np.bool_)) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        if D is not None:
            D = as_array(D, "D", real=True)
            if D.shape not in ((h,), (h, p)):
                raise ValueError(f"D must have shape (h,) = ({h},) or (h, p) = ({h}, {p}), got {D.shape}")
        if z is not None:
            z = as_array(z, "z", real=True)
            check_shape(z, "z", x.shape, f"(b, l, h, p) = {x.shape}")
        if dt_bias is not None:
            dt_bias = as_array(dt_bias, "dt_bias", real=True)
            check_shape(dt_bias, "dt_bias", (h,))
        if initial_states is not None:
            initial_states = as_array(initial_states, "initial_states", real=True)
            check_shape(initial_states, "initial_states", (b, h, p, n), f"(b, h, p, n) = {(b, h, p, n)}")
        lo, hi = (float(v) for v in dt_limit)
        if not lo <= hi or math.isnan(lo) or math.isnan(hi):
            raise ValueError(f"dt_limit must be (lo, hi) with lo <= hi, got {dt_limit!r}")
        self.__dict__.update(x=x, dt=dt, A=A, B=B, C=C, Q=int(chunk_size), D=D, z=z, dt_bias=dt_bias,
                             S0=initial_states, lo=lo, hi=hi, b=b, l=l, h=h, p=p, g=g, n=n)
        self.head_group = np.arange(h) // (h // g)

    def raw(self):
        return dict(x=self.x, dt=self.dt, A=self.A, B=self.B, C=self.C, D=self.D, z=self.z,
                    dt_bias=self.dt_bias, S0=self.S0)


def _clamp(v, lo, hi):
    """Triton's tl.minimum(tl.maximum(dt, dt_min), dt_max)."""
    v = v if v >= lo else gmpy2.mpfr(lo)
    return v if v <= hi else gmpy2.mpfr(hi)


_mp_clamp = np.frompyfunc(_clamp, 3, 1)
_mp_inside = np.frompyfunc(lambda v, lo, hi: gmpy2.mpfr(1 if lo <= v <= hi else 0), 3, 1)


# ----------------------------------------------------------------------------------------------
# leaves


def _leaves_mp(inp, raw, softplus, derivatives=False):
    """raw: dict of float64 arrays (read exactly) or object arrays of mp numbers.  The
    derivative leaves dgate, dDt (the adjoint's) only with ``derivatives``: a forward pass
    spent a third of its time on them."""
    x, A = mp_of(raw["x"]), mp_of(raw["A"])
    v = mp_of(raw["dt"])
    if raw["dt_bias"] is not None:
        v = v + mp_of(raw["dt_bias"])[None, None, :]
    Dt_pre = mp_softplus(v) if softplus else v
    Dt = _mp_clamp(Dt_pre, inp.lo, inp.hi)
    gidx = inp.head_group
    D = None if raw["D"] is None else mp_of(raw["D"])
    zm = None if raw["z"] is None else mp_of(raw["z"])
    dDt = dgate = None
    if derivatives:
        dsp = mp_dsoftplus(v) if softplus else np.full(v.shape, gmpy2.mpfr(1), dtype=object)
        dDt = dsp * _mp_inside(Dt_pre, inp.lo, inp.hi)                  # d Dt / d(dt + bias)
        dgate = None if zm is None else mp_dsilu(zm)
    return dict(
        x=x, A=A, Dt=Dt,
        a=mp_exp(Dt * A[None, None, :]),                       # (b, l, h)
        dtx=Dt[..., None] * x,                                 # (b, l, h, p)
        B=mp_of(raw["B"])[:, :, gidx], C=mp_of(raw["C"])[:, :, gidx],  # (b, l, h, n)
        D=D, Dx=None if D is None else _D4(D) * x,
        gate=None if zm is None else mp_silu(zm), dgate=dgate, dDt=dDt,
        S0=None if raw["S0"] is None else mp_of(raw["S0"]),
    )


def _D4(D):
    """D (h,) or (h, p) -> broadcastable to (b, l, h, p)."""
    return D[None, None, :, None] if D.ndim == 1 else D[None, None, :, :]


def _leaves_abs(inp, softplus):
    """float64 magnitudes of the leaves, their exp_cond weights, and a path-weight bound."""
    v = inp.dt if inp.dt_bias is None else inp.dt + inp.dt_bias[None, None, :]
    Dt_pre = f_softplus(v) if softplus else v
    Dt = np.minimum(np.maximum(Dt_pre, inp.lo), inp.hi)
    inside = ((Dt_pre >= inp.lo) & (Dt_pre <= inp.hi)).astype(np.float64)
    kappa = softplus_kappa(v, inp.dt_bias is not None, softplus)
    gidx = inp.head_group
    absx = np.abs(inp.x)
    with np.errstate(over="ignore", invalid="ignore"):
        lv = dict(
            x=absx, A=np.abs(inp.A), Dt=np.abs(Dt),
            a=np.exp(Dt * inp.A[None, None, :]),
            dtx=np.abs(Dt)[..., None] * absx,
            B=np.abs(inp.B)[:, :, gidx], C=np.abs(inp.C)[:, :, gidx],
            D=None if inp.D is None else np.abs(inp.D),
            Dx=None if inp.D is None else _D4(np.abs(inp.D)) * absx,
            # the gate leaf is always present in the magnitude pass (ones without z): it carries
            # the output-side weight Q F_i
            gate=np.ones_like(absx) if inp.z is None else np.abs(inp.z * f_sigmoid(inp.z)),
            dgate=None if inp.z is None else dsilu_magnitude(inp.z),
            dDt=inside * (np.where(v > SOFTPLUS_THRESHOLD, 1.0, f_sigmoid(v)) if softplus else 1.0),
            S0=None if inp.S0 is None else np.abs(inp.S0),
        )
    w = np.abs(Dt * inp.A[None, None, :]) * (1 + kappa)       # (b, l, h)
    dkappa = dsoftplus_kappa(v, inp.dt_bias is not None, softplus)
    weights, path = exponent_weights(w, kappa, dkappa, inp.Q)
    return lv, weights, path


def abs_depths(length, chunk_size, n):
    """(depth, off_depth) of the module doc (scalars): the roundings on one path in sums of any
    order, for every admitted algorithm; off_depth only on the paths from an earlier chunk."""
    log_l = math.ceil(math.log2(length)) if length > 1 else 0
    return (float(max(min(length, max(chunk_size, 64)), 6 * log_l) + 2 * n + 12),
            float(2 * math.ceil(length / chunk_size) + 4))


def abs_depth(length, chunk_size, n):
    """depth + off_depth: every path (the VJP's)."""
    return sum(abs_depths(length, chunk_size, n))


def by_chunk_batches(t, Q, fill=0.0):
    """(b, l, ...) -> (b nc, Q, ...): every chunk of the subject a sequence of its own, the last
    one padded with ``fill`` (1 for a decay factor, 0 otherwise: the state is kept)."""
    b, l = t.shape[:2]
    nc = -(-l // Q)
    t = np.pad(t, [(0, 0), (0, nc * Q - l)] + [(0, 0)] * (t.ndim - 2), constant_values=fill)
    return t.reshape((b * nc, Q) + t.shape[2:])


def intra_chunk_abs(lv_abs, Q):
    """The magnitude pass restricted to the paths within one chunk of the subject (states reset
    to 0 at every chunk start, no S_{-1}): (abs_in (b, l, h, p), abs_state_in (b, h, p, n), the
    last chunk's own state)."""
    b, l = lv_abs["dtx"].shape[:2]
    lv = dict.fromkeys(lv_abs)
    for k in ("a", "dtx", "B", "C", "Dx", "gate"):
        if lv_abs[k] is not None:
            lv[k] = by_chunk_batches(lv_abs[k], Q, 1.0 if k == "a" else 0.0)
    out, _, S, _ = recurrent_core(lv)
    return (out.reshape((b, -1) + out.shape[2:])[:, :l],
            S.reshape((b, -1) + S.shape[1:])[:, -1])


RUN_DEPTH = 4.0


def exponent_weights(w, kappa, dkappa, Q):
    """exp_cond's leaf weights (b, l, h): term_ij's exponent error is u times the sum of the
    weights of its leaves (steps j+1..i, source j, output i); exp_cond = sum |term| (its weights).
    w_k = |Dt_k A| (1 + kappa_k): the rounding of Dt_k A and of Dt_k itself.  Chunks of the
    subject (Q steps; the last may be shorter), F_k = sum_{m = chunk start..k} w_m
    (|cs_k| <= F_k: every Dt A <= 0 has one sign), Flast = F at the chunk's end, d = 2 ceil(log2 Q) + 2.
    - step k: (nc + 2) w_k + F_k (+ d Flast of the previous chunk at a chunk's first step),
      nc = ceil(l / Q):
      * a SEQUENTIAL cumulative sum cs per chunk: fl(cs_k) = (fl(cs_{k-1}) + dA_k)(1 + e_k), so
        cs_i - cs_j computed from one such sum errs by sum_{k=j+1..i} u |cs_k| <= u sum F_k (the
        errors before j are shared and cancel); exp(cs_i) (state entering the chunk), the chunk
        total (state passing) and cs_last - cs_j (chunk state) are differences of the same kind;
      * direct segment sums within a chunk (segsum: cumulative sums down a column) have partial
        sums seg_mj <= F_m: the same bound;
      * a TREE cumulative sum (Triton's tl.cumsum; Blelloch's sweeps are 2 log2 Q deep): each
        cs_k errs by <= u d F_k on its own (partial sums of one sign are <= |cs_k|).  A term
        within one chunk has d (F_i + F_j) (output and source weights below); one that leaves
        the chunk c_j also has d Flast for every chunk c_j .. c_i - 1 whose total (or
        cs_last - cs_j) it uses: the weight of the first step of the next chunk, which exactly
        the paths leaving chunk c cross;
      * a segment sum over the nc chunk totals (ssd_minimal's decay_chunk): its partial sums are
        <= the term's exponent, at most nc of them: nc w_k per step;
      * 2 w_k: the subtraction cs_i - cs_j and the rounding of Dt_k A.
    - source j (Dt_j x_j, Dt_j, dDt_j): d F_j (the tree's cs_j) + kappa_j (Dt_j's own
      sensitivity; dDt: dkappa);
    - output i (the gate and its derivative): d F_i (the tree's cs_i).
    A cumulative sum over the whole sequence errs by ~u |cs_global| ~ u t max|Dt A| even between
    neighbours, far above these weights at long t: it is outside (MATH.md).
    Returns (weights, path) with path >= the total weight of any monomial (for exp_cond_of)."""
    b, l, h = w.shape
    nc = -(-l // Q)
    pad = nc * Q - l
    wc = np.pad(w, ((0, 0), (0, pad), (0, 0))).reshape(b, nc, Q, h)
    F = np.cumsum(wc, axis=2)
    boundary = np.zeros_like(F)                   # d Flast(c - 1) at the first step of chunk c
    boundary[:, 1:, 0] = F[:, :-1, -1]
    F, boundary = (t.reshape(b, nc * Q, h)[:, :l] for t in (F, boundary))
    d = 2 * math.ceil(math.log2(min(Q, l))) + 2 if min(Q, l) > 1 else 2
    step = (nc + 2) * w + F + d * boundary
    src = d * F
    weights = dict(a=step, dtx=(src + kappa)[..., None], Dt=src + kappa, dDt=src + dkappa,
                   gate=(d * F)[..., None], dgate=(d * F)[..., None])
    path = (np.max(np.sum(step, axis=1), initial=0.0) + 3 * np.max(src, initial=0.0)
            + 3 * np.max(kappa, initial=0.0) + np.max(dkappa, initial=0.0)
            + 2 * d * np.max(F, initial=0.0))
    return weights, path


def _signed_leaves(inp, softplus):
    """float64 values of the leaves (signed): a = e^{Dt A}, Dt x, B, C per head, S_{-1}."""
    v = inp.dt if inp.dt_bias is None else inp.dt + inp.dt_bias[None, None, :]
    Dt = np.minimum(np.maximum(f_softplus(v) if softplus else v, inp.lo), inp.hi)
    gidx = inp.head_group
    with np.errstate(over="ignore"):
        a = np.exp(Dt * inp.A[None, None, :])
    return a, Dt[..., None] * inp.x, inp.B[:, :, gidx], inp.C[:, :, gidx], inp.S0


def running_magnitudes(inp, softplus, gate_abs):
    """run_out (b, l, h, p) = |gate_t| sum_n |C_t| V_t and run_state (b, h, p, n) = V_{l-1}, with
    V_t = a_t V_{t-1} + |S_t| and S_t = a_t S_{t-1} + Dt_t x_t B_t^T (module doc), in float64.
    The float64 S_t differs from the exact one by ~l u_64 |S|_abs, a change of the weight that
    the depth * abs_out term dominates by 13 orders (u_64 l << depth)."""
    a, dtx, B, C, S0 = _signed_leaves(inp, softplus)
    b, l, h, p = dtx.shape
    S = np.zeros((b, h, p, inp.n)) if S0 is None else S0.copy()
    V = np.zeros_like(S)
    run = np.empty((b, l, h, p))
    absC = np.abs(C)
    for t in range(l):
        at = a[:, t, :, None, None]
        S = at * S + dtx[:, t, :, :, None] * B[:, t, :, None, :]
        V = at * V + np.abs(S)
        run[:, t] = (V * absC[:, t, :, None, :]).sum(axis=-1)
    return run * gate_abs, V


# ----------------------------------------------------------------------------------------------
# the three forms (value pass: object arrays; the recurrent one also runs on magnitudes)


def recurrent_core(lv, keep_states=False):
    """S_t = a_t S_{t-1} + Dt_t x_t B_t^T;  y_t = S_t C_t;  pre = y + D x;  out = pre * gate."""
    a, dtx, B, C = lv["a"], lv["dtx"], lv["B"], lv["C"]
    S, ys, states = lv["S0"], [], []
    for t in range(dtx.shape[1]):
        inject = dtx[:, t, :, :, None] * B[:, t, :, None, :]              # (b, h, p, n)
        S = inject if S is None else a[:, t, :, None, None] * S + inject
        if keep_states:
            states.append(S)
        ys.append((S * C[:, t, :, None, :]).sum(axis=-1))                 # (b, h, p)
    y = np.stack(ys, axis=1)
    pre = y if lv["Dx"] is None else y + lv["Dx"]
    out = pre if lv["gate"] is None else pre * lv["gate"]
    return out, pre, S, states


def quadratic_form(lv):
    """y = M (Dt x) + (initial-state term) + D x, M_ij = C_i^T B_j exp(sum_{k=j+1..i} Dt_k A),
    the segment sums summed directly (no differences of cumulative sums).  Returns (out, S_final)
    with S_final = sum_j exp(sum_{k=j+1..l-1} Dt_k A) Dt_j x_j B_j^T (+ decayed S0)."""
    dtx, B, C, S0 = lv["dtx"], lv["B"], lv["C"], lv["S0"]
    dA = lv["Dt"] * lv["A"][None, None, :]                                # (b, l, h)
    length = dtx.shape[1]

    def segsum(j, i):  # sum_{k=j+1..i} dA_k, (b, h); zero when j == i
        acc = 0 * dA[:, 0]
        for k in range(j + 1, i + 1):
            acc = acc + dA[:, k]
        return acc

    ys = []
    for i in range(length):
        y = 0 * dtx[:, i]
        for j in range(i + 1):
            cb = (C[:, i] * B[:, j]).sum(axis=-1)                          # (b, h)
            y = y + (cb * mp_exp(segsum(j, i)))[..., None] * dtx[:, j]
        if S0 is not None:
            y = y + mp_exp(segsum(-1, i))[..., None] * (S0 * C[:, i, :, None, :]).sum(axis=-1)
        ys.append(y)
    y = np.stack(ys, axis=1)
    S = 0 * (dtx[:, 0, :, :, None] * B[:, 0, :, None, :])
    for j in range(length):
        S = S + mp_exp(segsum(j, length - 1))[..., None, None] * dtx[:, j, :, :, None] * B[:, j, :, None, :]
    if S0 is not None:
        S = S + mp_exp(segsum(-1, length - 1))[..., None, None] * S0
    return _finish(lv, y), S


def chunked_form(lv, chunk_size):
    """Mamba-2's chunked algorithm (ssd_minimal_discrete, any length): per chunk, cs = local
    inclusive cumulative sum of Dt A;  intra-chunk  y_i = sum_{j in chunk, j<=i} C_i.B_j
    exp(cs_i - cs_j) Dt_j x_j;  off-chunk  y_i += exp(cs_i) S_in C_i;  chunk state
    st = sum_j exp(cs_last - cs_j) Dt_j x_j B_j^T;  S_out = exp(cs_last) S_in + st."""
    dtx, B, C = lv["dtx"], lv["B"], lv["C"]
    dA = lv["Dt"] * lv["A"][None, None, :]
    length = dtx.shape[1]
    S_in = lv["S0"]
    ys = []
    for c0 in range(0, length, chunk_size):
        idx = range(c0, min(c0 + chunk_size, length))
        cs, acc = {}, 0 * dA[:, c0]
        for k in idx:
            acc = acc + dA[:, k]
            cs[k] = acc
        for i in idx:
            y = 0 * dtx[:, i]
            for j in range(c0, i + 1):
                cb = (C[:, i] * B[:, j]).sum(axis=-1)
                y = y + (cb * mp_exp(cs[i] - cs[j]))[..., None] * dtx[:, j]
            if S_in is not None:
                y = y + mp_exp(cs[i])[..., None] * (S_in * C[:, i, :, None, :]).sum(axis=-1)
            ys.append(y)
        last = idx[-1]
        st = 0 * (dtx[:, c0, :, :, None] * B[:, c0, :, None, :])
        for j in idx:
            st = st + mp_exp(cs[last] - cs[j])[..., None, None] * dtx[:, j, :, :, None] * B[:, j, :, None, :]
        S_in = st if S_in is None else mp_exp(cs[last])[..., None, None] * S_in + st
    return _finish(lv, np.stack(ys, axis=1)), S_in


def _finish(lv, y):
    pre = y if lv["Dx"] is None else y + lv["Dx"]
    return pre if lv["gate"] is None else pre * lv["gate"]


def ssd_forms_mp(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                 dt_softplus=False, dt_limit=DEFAULT_DT_LIMIT):
    """The three forms at the current mpmath precision: {"recurrent"|"quadratic"|"chunked":
    (out, final_states)} as object arrays of mpmath numbers.  Inputs: float64 arrays or object
    arrays of mpmath numbers (for finite differences)."""
    raw = dict(x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias, S0=initial_states)
    inp = _Inputs(*[_floatish(raw[k]) for k in ("x", "dt", "A", "B", "C")], chunk_size,
                  *[_floatish(raw[k]) for k in ("D", "z", "dt_bias", "S0")], dt_limit)
    with hp_context():
        lv = _leaves_mp(inp, raw, dt_softplus)
        out, _, S, _ = recurrent_core(lv)
        forms = {"recurrent": (out, S), "quadratic": quadratic_form(lv), "chunked": chunked_form(lv, inp.Q)}
    return {k: (to_mpmath(o), to_mpmath(s)) for k, (o, s) in forms.items()}


def _floatish(v):
    if v is None:
        return None
    arr = np.asarray(v)
    return np.vectorize(float, otypes=[np.float64])(arr) if arr.dtype == object else arr


# ----------------------------------------------------------------------------------------------
# the oracle


def ssd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
        dt_softplus=False, return_final_states=False, dt_limit=DEFAULT_DT_LIMIT):
    """Oracle of mamba-ssm ``mamba_chunk_scan_combined`` (argument order as there; seq_idx,
    cu_seqlens and varlen states are not modelled).  Returns Reference out (b, l, h, p)
    [, Reference final_states (b, h, p, n)].  Magnitudes (module doc): "abs_out" ("abs_state"),
    "depth", "abs_off", "off_depth", "run_out" ("run_state"), "run_depth", "exp_cond"."""
    inp = _Inputs(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_limit)

    def run_abs(lv):
        out, _, S, _ = recurrent_core(lv)
        return [out, S]

    lv_abs, weights, path = _leaves_abs(inp, dt_softplus)
    (abs_out, abs_S), (cond_out, cond_S) = exp_cond_of(run_abs, lv_abs, weights, path)
    run_out, run_S = running_magnitudes(inp, dt_softplus, lv_abs["gate"])

    def compute():
        out, _, S, _ = recurrent_core(_leaves_mp(inp, inp.raw(), dt_softplus))
        return [out, S] if return_final_states else [out]

    parts = verified_many(compute, [abs_out, abs_S] if return_final_states else [abs_out])
    depth, off_depth = abs_depths(inp.l, inp.Q, inp.n)
    abs_in, abs_S_in = intra_chunk_abs(lv_abs, inp.Q)
    common = {"depth": depth, "off_depth": off_depth, "run_depth": RUN_DEPTH}
    out_ref = reference(parts[0], {"abs_out": abs_out, "abs_off": np.maximum(abs_out - abs_in, 0.0),
                                   "exp_cond": cond_out, "run_out": run_out, **common}, False)
    if not return_final_states:
        return out_ref
    return out_ref, reference(parts[1], {"abs_state": abs_S, "abs_off": np.maximum(abs_S - abs_S_in, 0.0),
                                         "exp_cond": cond_S, "run_state": run_S, **common}, False)


# ----------------------------------------------------------------------------------------------
# vector-Jacobian product


def backward_core(lv, gout, pre, states, gfinal=None):
    """Adjoint of recurrent_core w.r.t. its leaves (real arithmetic):
    G_pre = gout gate;  G_S_t = G_pre_t C_t^T + a_{t+1} G_S_{t+1} (+ gfinal at t = l-1);
    G_C_t = sum_p G_pre_t S_t;  G_dtx_t = G_S_t B_t;  G_B_t = sum_p G_S_t dtx_t;
    G_a_t = <G_S_t, S_{t-1}>;  G_S0 = a_0 G_S_0."""
    a, dtx, B, C, gate = lv["a"], lv["dtx"], lv["B"], lv["C"], lv["gate"]
    length = dtx.shape[1]
    G_pre = gout if gate is None else gout * gate
    obj = dtx.dtype == object
    G_a = np.empty(a.shape, dtype=object if obj else np.float64)
    G_dtx = np.empty(dtx.shape, dtype=G_a.dtype)
    G_B = np.empty(B.shape, dtype=G_a.dtype)
    G_C = np.empty(C.shape, dtype=G_a.dtype)
    GS = None
    for t in reversed(range(length)):
        from_y = G_pre[:, t, :, :, None] * C[:, t, :, None, :]            # (b, h, p, n)
        GS = from_y if GS is None else from_y + a[:, t + 1, :, None, None] * GS
        if t == length - 1 and gfinal is not None:
            GS = GS + gfinal
        G_C[:, t] = (G_pre[:, t, :, :, None] * states[t]).sum(axis=2)
        G_dtx[:, t] = (GS * B[:, t, :, None, :]).sum(axis=-1)
        G_B[:, t] = (GS * dtx[:, t, :, :, None]).sum(axis=2)
        prev = states[t - 1] if t > 0 else lv["S0"]
        G_a[:, t] = 0 * GS.sum(axis=(-2, -1)) if prev is None else (GS * prev).sum(axis=(-2, -1))
    grads = dict(a=G_a, dtx=G_dtx, B=G_B, C=G_C, Dx=G_pre,
                 gate=None if gate is None else gout * pre)
    if lv["S0"] is not None:
        grads["S0"] = a[:, 0, :, None, None] * GS
    return grads


def _chain(gl, lv, inp, has):
    """Leaf gradients -> input gradients.  a = exp(w), w = Dt A:  G_w = G_a a;
    G_A = sum_{b,l} G_w Dt;  G_Dt = G_w A + sum_p G_dtx x;  G_x = G_dtx Dt + G_Dx D;
    G_B, G_C: sum over the heads of each group;  Dt = clamp(softplus(dt + dt_bias)):
    G_dt = G_Dt dDt (0 where clamped);  G_dt_bias = sum_{b,l} G_dt;  G_D = sum G_Dx x."""
    Dt, x, A = lv["Dt"], lv["x"], lv["A"]
    G_w = gl["a"] * lv["a"]
    g = {"A": (G_w * Dt).sum(axis=(0, 1))}
    G_Dt = G_w * A[None, None, :] + (gl["dtx"] * x).sum(axis=-1)
    G_x = gl["dtx"] * Dt[..., None]
    if has["D"]:
        G_x = G_x + gl["Dx"] * _D4(lv["D"])
        GDx = gl["Dx"] * x
        g["D"] = GDx.sum(axis=(0, 1, 3)) if lv["D"].ndim == 1 else GDx.sum(axis=(0, 1))
    g["x"] = G_x
    b, length, h, n = lv["B"].shape
    for k in ("B", "C"):
        g[k] = gl[k].reshape(b, length, inp.g, h // inp.g, n).sum(axis=3)
    G_dt = G_Dt * lv["dDt"]
    g["dt"] = G_dt
    if has["z"]:
        g["z"] = gl["gate"] * lv["dgate"]
    if has["dt_bias"]:
        g["dt_bias"] = G_dt.sum(axis=(0, 1))
    if has["initial_states"]:
        g["initial_states"] = gl["S0"]
    return g


def vjp_inputs(grad_out, x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_limit,
               grad_final_states):
    """The checked inputs of a VJP of ``ssd`` (this oracle's and the long tier's):
    (inputs, grad_out, grad_final_states or None, {optional input: given}, gradient names)."""
    inp = _Inputs(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_limit)
    grad_out = as_array(grad_out, "grad_out", real=True)
    check_shape(grad_out, "grad_out", inp.x.shape)
    if grad_final_states is not None:
        grad_final_states = as_array(grad_final_states, "grad_final_states", real=True)
        check_shape(grad_final_states, "grad_final_states", (inp.b, inp.h, inp.p, inp.n))
    has = {"D": inp.D is not None, "z": inp.z is not None, "dt_bias": inp.dt_bias is not None,
           "initial_states": inp.S0 is not None}
    names = ["x", "dt", "A", "B", "C"] + [k for k in ("D", "z", "dt_bias", "initial_states") if has[k]]
    return inp, grad_out, grad_final_states, has, names


def ssd_vjp(grad_out, x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
            initial_states=None, dt_softplus=False, dt_limit=DEFAULT_DT_LIMIT, grad_final_states=None):
    """Vector-Jacobian product of ``ssd``: gradient of L = sum(grad_out * out)
    [+ sum(grad_final_states * final_states)] w.r.t. x, dt, A, B, C and, when given, D, z,
    dt_bias, initial_states, by the adjoint (reverse) recurrence in multiple precision.  Returns
    {name: Reference} shaped like the inputs; where dt is clamped by dt_limit its gradient is 0
    (as mamba-ssm's backward).  Magnitudes "abs_out" (the adjoint on absolute values),
    "exp_cond", "depth" (vjp_depths, a scalar), "run_out" and "run_depth" (vjp_running)."""
    inp, grad_out, grad_final_states, has, names = vjp_inputs(
        grad_out, x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_limit,
        grad_final_states)

    def run(lv, gout, gfinal, magnitude):
        if magnitude and inp.z is None:  # the all-ones gate of the magnitude pass is not an input
            lv = dict(lv)
            gout = gout * lv["gate"]
            lv["gate"] = None
        _, pre, _, states = recurrent_core(lv, keep_states=True)
        g = _chain(backward_core(lv, gout, pre, states, gfinal), lv, inp, has)
        return [g[k] for k in names]

    lv_abs, weights, path = _leaves_abs(inp, dt_softplus)
    gabs = np.abs(grad_out)
    gfabs = None if grad_final_states is None else np.abs(grad_final_states)
    base, cond = exp_cond_of(lambda lv: run(lv, gabs, gfabs, True), lv_abs, weights, path)
    runs = vjp_running(inp, dt_softplus, grad_out, grad_final_states, has, names, lv_abs)
    gmp = mp_of(grad_out)
    gfmp = None if grad_final_states is None else mp_of(grad_final_states)
    parts = verified_many(
        lambda: run(_leaves_mp(inp, inp.raw(), dt_softplus, derivatives=True), gmp, gfmp, False),
        base)
    depths = vjp_depths(inp, has)
    return {k: reference(part, {"abs_out": mag, "exp_cond": ec, "depth": depths[k],
                                "run_out": r, "run_depth": RUN_DEPTH}, False)
            for k, part, mag, ec, r in zip(names, parts, base, cond, runs)}


def _signed_gate(inp):
    return 1.0 if inp.z is None else inp.z * f_sigmoid(inp.z)


def vjp_running(inp, softplus, grad_out, grad_final, has, names, lv_abs):
    """The running errors of the two recurrences a gradient reads, carried into it (float64):
    forward V_t = a_t V_{t-1} + |S_t| (running_magnitudes) and adjoint
    V^G_t = a_{t+1} V^G_{t+1} + |G_S_t|, G_S_t = a_{t+1} G_S_{t+1} + G_pre_t C_t^T (+ the final
    states' cotangent at l - 1), with the exact S and G_S.  Each adjoint step rounds a multiply,
    an add and an exp: <= 3 u |G_S_t| + u |G_pre C| (the latter in depth), as the forward's."""
    a, dtx, B, C, S0 = _signed_leaves(inp, softplus)
    Gpre = grad_out * _signed_gate(inp)
    b, l, h, p = dtx.shape
    n = inp.n
    S_all, V_all, GS_all, VG_all = (np.empty((b, l, h, p, n)) for _ in range(4))
    S = np.zeros((b, h, p, n)) if S0 is None else S0.copy()
    V = np.zeros_like(S)
    for t in range(l):
        at = a[:, t, :, None, None]
        S = at * S + dtx[:, t, :, :, None] * B[:, t, :, None, :]
        V = at * V + np.abs(S)
        S_all[:, t], V_all[:, t] = S, V
    G = np.zeros((b, h, p, n)) if grad_final is None else grad_final.copy()
    VG = np.zeros_like(G)
    for t in reversed(range(l)):
        if t + 1 < l:
            G, VG = a[:, t + 1, :, None, None] * G, a[:, t + 1, :, None, None] * VG
        G = G + Gpre[:, t, :, :, None] * C[:, t, :, None, :]
        VG = VG + np.abs(G)
        GS_all[:, t], VG_all[:, t] = G, VG
    return vjp_run(inp, has, names, lv_abs, a, dtx, B, C, Gpre, grad_out, S0,
                   S_all, V_all, GS_all, VG_all)


def vjp_run(inp, has, names, lv_abs, a, dtx, B, C, Gpre, gout, S0, S_all, V_all, GS_all, VG_all):
    """Leaf-level running errors -> input gradients (the abs chain rule, _chain on magnitudes):
    G_a_t = <G_S_t, S_{t-1}> errs by <V^G_t, |S_{t-1}|> + <|G_S_t|, V_{t-1}>; G_dtx_t = G_S_t B_t
    by V^G_t |B_t|; G_B_t by sum_p |dtx_t| V^G_t; G_C_t = sum_p G_pre_t S_t by sum_p |G_pre_t| V_t;
    the gate's cotangent grad_out pre by |grad_out| |C_t| V_t; G_S0 = a_0 G_S_0 by a_0 V^G_0.
    All arrays (b, l, h, p, n) / leaves as oracle/ssd.py's; returns [run of each gradient]."""
    b, l, h, p, n = S_all.shape
    first = np.zeros((b, 1, h, p, n)) if S0 is None else np.abs(S0)[:, None]
    Sprev = np.concatenate([first, np.abs(S_all[:, :-1])], axis=1)
    Vprev = np.concatenate([np.zeros((b, 1, h, p, n)), V_all[:, :-1]], axis=1)
    absB, absC = np.abs(B), np.abs(C)
    gl = dict(a=(VG_all * Sprev + np.abs(GS_all) * Vprev).sum(axis=(-2, -1)),
              dtx=(VG_all * absB[:, :, :, None, :]).sum(axis=-1),
              B=(VG_all * np.abs(dtx)[..., None]).sum(axis=-2),
              C=(V_all * np.abs(Gpre)[..., None]).sum(axis=-2),
              Dx=np.zeros((b, l, h, p)),
              gate=np.abs(gout) * (V_all * absC[:, :, :, None, :]).sum(axis=-1))
    if S0 is not None:
        gl["S0"] = a[:, 0, :, None, None] * VG_all[:, 0]
    g = _chain(gl, lv_abs, inp, has)
    return [g[k] for k in names]


def vjp_depths(inp, has):
    """The scalar depth of each gradient: the forward's and the adjoint's depth + off_depth
    (sums of any order on a path, module doc) plus the number of terms the gradient element sums
    (over n, p, the heads of a group, or b l for A, D, dt_bias); the steps are in run_out."""
    b, length, h, p, n, g = inp.b, inp.l, inp.h, inp.p, inp.n, inp.g
    counts = {"x": n, "dt": p * n, "A": b * length * p * n, "B": (h // g) * p, "C": (h // g) * p,
              "D": b * length * (p if has["D"] and inp.D.ndim == 1 else 1), "z": 1,
              "dt_bias": b * length * p * n, "initial_states": 1}
    beta = abs_depth(length, inp.Q, n)
    return {k: float(2 * beta + c) for k, c in counts.items()}
