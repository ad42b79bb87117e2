"""The long-input tier of the SSD (Mamba-2) oracle: oracle/ssd.py's outputs and gradients for
sequences far beyond the MPFR oracle's reach (l up to 2^20), vectorized over (b, h, p, n) and
computed in the working format W of oracle/extended.py (float64 for float32/half subjects,
80-bit long double for float64 subjects).

Algorithm (in W): chunks of ``TIER_CHUNK`` = 32 steps, all chunks of a block (~2^20 elements
of temporaries) at once.  Within a chunk the quadratic form with L_ij = exp(seg_ij),
seg_ij = sum_{k=j+1..i} Dt_k A summed DIRECTLY (a cumulative sum down the columns of the masked
matrix, never a difference of cumulative sums); between chunks the state recurrence
S_out = exp(sum_chunk Dt A) S_in + sum_j exp(seg_{last,j}) Dt_j x_j B_j^T, one small Python
iteration per chunk (only this pass is sequential).  The VJP takes the states entering the
chunks from the forward pass, materializes the states S_t and adjoint states G_S_t of a block
of chunks and applies oracle/ssd.py's adjoint formulas (backward_core) to them, then its chain
rule.

The tier's own error (Reference.error), first order in u_W (the constants cover O(u_W^2)):
every output is a sum of monomials  term_ij = C_i.B_j exp(seg_ij) Dt_j x_j (gate, D x, S_0 alike).
 - products and sums: a path from source j to output i crosses at most 2 n (the C.B and C.S dots)
   + 2 Q_T (the sums over a chunk) + 3 nc_T (multiply-add per chunk crossed, nc_T = ceil(l/Q_T))
   + 16 (leaves: Dt x, Dt A, softplus, SiLU, D x, gate) roundings:  D_T abs_out;
 - exponents: seg_ij sums at most Q_T rounded terms Dt_k A (each with relative error
   u_W (2 + kappa_k)), and a chunk total passes exp(.) once per chunk: an exponent error
   <= u_W (Q_T + 4) sum_{k=j+1..i} |Dt_k A| (1 + kappa_k), plus 2 u_W per exp evaluated (numpy's
   exp/log1p are within 1 ulp): the first part is <= u_W (Q_T + 4) / 3 exp_cond (the MPFR model's
   exp_cond weighs every step by >= 3 w_k: oracle/ssd.py's exponent_weights), the second is in D_T.
   error = 2 u_W (D_T abs_out + (Q_T + 4) / 3 exp_cond)            (factor 2: second order terms)
Gradients: the adjoint has the same paths twice, plus the sums of _chain (b l terms): D_T doubled
plus the summed count, likewise 2 u_W (...).

Magnitudes handed to the tolerance model (properties/tolerance.py, ssd_terms: the SAME names and
definitions as oracle/ssd.py, docs/bounds_ssd.md):
 - "abs_out"/"abs_state" and "exp_cond": the recurrence on absolute values of the leaves and the
   first-order exponent errors (oracle/ssd.py's exponent_weights), evaluated by the same chunked
   algorithm in complex128 with a complex step: leaves scaled by e^{i h weight},
   exp_cond = Im / h (the derivative exactly, no difference quotient).
 - "abs_off": abs_out minus the same pass with every chunk of the subject a sequence of its own
   (oracle/ssd.py's by_chunk_batches): the paths from an earlier chunk.
 - "run_out"/"run_state": the running error of the steps, V_t = e^{Dt_t A} V_{t-1} + |S_t| with
   the states of every step from the chunks' entering states (running_core); gradients: the
   forward's and the reverse-time adjoint's (full_recurrence on the reversed sequence),
   carried into each gradient by oracle/ssd.py's vjp_run.
 - "depth", "off_depth", "run_depth": oracle/ssd.py's scalars.
"""
from __future__ import annotations

import math

import numpy as np

from ssm_conformance.oracle.extended import tier_dtype, tier_unit_roundoff
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.oracle.selective_scan import (
    SOFTPLUS_THRESHOLD, dsoftplus_kappa, f_softplus, softplus_kappa,
)
from ssm_conformance.oracle.ssd import (DEFAULT_DT_LIMIT, RUN_DEPTH, _chain, _Inputs,
                                        _leaves_abs, _signed_gate, _signed_leaves, abs_depth,
                                        abs_depths, by_chunk_batches, vjp_depths, vjp_inputs,
                                        vjp_run)

TIER_CHUNK = 32   # the quadratic form costs q per step, the state passing 1/q: 32 is ~10x faster
                  # than 128 at l = 2^17 (D_T below grows as 3 l / q: still ~1e-12 relative in W)
STEP = 1e-30  # complex step h: Im f(x + i h w) / h = f'(x) w exactly up to O(h^2)


# ----------------------------------------------------------------------------------------------
# the chunked core (any real or complex NumPy dtype)


def _segsum(dA):
    """dA (..., q) -> seg (..., q, q), seg[i, j] = sum_{k=j+1..i} dA_k for i > j, 0 elsewhere:
    direct sums (cumulative sums down the columns of the strictly lower triangle)."""
    q = dA.shape[-1]
    strict = np.tril(np.ones((q, q), dtype=bool), -1)
    X = np.where(strict, dA[..., :, None], 0)
    return np.cumsum(X, axis=-2)


def _by_chunks(t, q):
    """(b, l, h, ...) -> (b, h, nc, q, ...), nc = ceil(l / q), zero padded past l.  Zero padding
    is exact for the recurrence: dA = 0 (decay 1) and dtx = 0 leave the state unchanged, and the
    padded outputs are dropped."""
    b, l = t.shape[:2]
    nc = -(-l // q)
    t = np.moveaxis(t, 1, 2)
    t = np.pad(t, [(0, 0), (0, 0), (0, nc * q - l)] + [(0, 0)] * (t.ndim - 3))
    return t.reshape(t.shape[:2] + (nc, q) + t.shape[3:])


def _unchunk(t, l):
    """(b, h, nc, q, ...) -> (b, l, h, ...): the inverse of _by_chunks."""
    t = t.reshape(t.shape[:2] + (-1,) + t.shape[4:])[:, :, :l]
    return np.moveaxis(t, 2, 1)


def _blocks(nc, per_chunk):
    """Ranges of chunks processed together: about 2^20 elements of the (.., q, q) temporaries."""
    step = max(1, (1 << 20) // max(1, per_chunk))
    return [(k0, min(k0 + step, nc)) for k0 in range(0, nc, step)]


def _pass_states(S, decay, local, S_in):
    """The state entering each chunk k of a block into S_in[:, :, k], and the state leaving the
    block: S <- decay_k S + local_k (one multiply-add per chunk crossed, in chunk order).
    decay (b,h,K), local and S_in (b,h,K,p,n)."""
    for k in range(local.shape[2]):
        S_in[:, :, k] = S
        S = decay[:, :, k, None, None] * S + local[:, :, k]
    return S


def forward_core(dA, dtx, B, C, S0, q=TIER_CHUNK):
    """y (b, l, h, p) = C_t . S_t, S_final (b, h, p, n) of S_t = e^{dA_t} S_{t-1} + dtx_t B_t^T,
    and the state entering each chunk (b, h, nc, p, n) (the adjoint's).  dA (b, l, h), dtx
    (b, l, h, p), B, C (b, l, h, n) (per head), S0 (b, h, p, n) or None.  Vectorized over chunks
    (and over b, h); only the state passing between chunks is sequential."""
    b, l, h, p = dtx.shape
    n = B.shape[-1]
    dt_ = np.result_type(dA, dtx, B, C, *(() if S0 is None else (S0,)))
    S = np.zeros((b, h, p, n), dtype=dt_) if S0 is None else S0.astype(dt_)
    a_all = _by_chunks(dA[..., None], q)[..., 0]                             # (b,h,nc,q)
    X_all, B_all, C_all = _by_chunks(dtx, q), _by_chunks(B, q), _by_chunks(C, q)
    y = np.empty(X_all.shape, dtype=dt_)                                     # (b,h,nc,q,p)
    S_in = np.empty(a_all.shape[:3] + (p, n), dtype=dt_)                     # entering each chunk
    for k0, k1 in _blocks(a_all.shape[2], b * h * q * q):
        a, x, Bc, Cc = a_all[:, :, k0:k1], X_all[:, :, k0:k1], B_all[:, :, k0:k1], C_all[:, :, k0:k1]
        L = np.tril(np.exp(_segsum(a)))                                      # (b,h,K,q,q)
        cs = np.cumsum(a, axis=-1)                                           # chunk-local, direct
        yc = (np.matmul(Cc, np.swapaxes(Bc, -1, -2)) * L) @ x                # intra-chunk
        local = np.swapaxes(x * L[..., -1, :, None], -1, -2) @ Bc            # (b,h,K,p,n)
        S = _pass_states(S, np.exp(cs[..., -1]), local, S_in[:, :, k0:k1])
        y[:, :, k0:k1] = yc + np.exp(cs)[..., None] * np.matmul(
            Cc, np.swapaxes(S_in[:, :, k0:k1], -1, -2))
    return _unchunk(y, l), S, S_in


def _chunk_states(L, cs, Sc, x, Bc):
    """S_t of every step of the chunks of a block (b,h,K,q,p,n): e^{cs_t} S_in + sum_{j<=t}
    L_tj dtx_j B_j^T."""
    return (np.exp(cs)[..., None, None] * Sc[:, :, :, None]
            + np.einsum("bhktj,bhkjp,bhkjn->bhktpn", L, x, Bc, optimize=True))


def running_core(dA, dtx, B, C, S_in, q=TIER_CHUNK):
    """oracle/ssd.py's running_magnitudes without the gate, chunked: run (b, l, h, p) =
    sum_n |C_t| V_t and V_{l-1} (b, h, p, n), V_t = e^{dA_t} V_{t-1} + |S_t| (dA real), S_t
    from the states entering the chunks (forward_core's S_in) -- the same linear recurrence as
    S with the full injection |S_t|: within a chunk V_t = e^{cs_t} V_in + sum_{j<=t} L_tj |S_j|,
    between chunks V passed as S is."""
    b, l, h, p = dtx.shape
    n = B.shape[-1]
    a_all = _by_chunks(dA[..., None], q)[..., 0]
    X_all, B_all, C_all = _by_chunks(dtx, q), _by_chunks(B, q), _by_chunks(C, q)
    valid = _by_chunks(np.ones((b, l, h, 1)), q)[..., 0]    # 0 on the padding: V must not grow there
    run = np.empty(X_all.shape)
    V = np.zeros((b, h, p, n))
    for k0, k1 in _blocks(a_all.shape[2], b * h * q * max(q, p * n)):
        a, x, Bc, Cc, Sc = (a_all[:, :, k0:k1], X_all[:, :, k0:k1], B_all[:, :, k0:k1],
                            C_all[:, :, k0:k1], S_in[:, :, k0:k1])
        L = np.tril(np.exp(_segsum(a)))
        cs = np.cumsum(a, axis=-1)
        absS = (np.abs(_chunk_states(L, cs, Sc, x, Bc))                      # (b,h,K,q,p,n)
                * valid[:, :, k0:k1, :, None, None])
        K = k1 - k0
        Vloc = np.matmul(L, absS.reshape(b, h, K, q, p * n)).reshape(absS.shape)  # from V_in = 0
        V_in = np.empty((b, h, K, p, n))
        V = _pass_states(V, np.exp(cs[..., -1]), Vloc[:, :, :, -1], V_in)
        Vt = np.exp(cs)[..., None, None] * V_in[:, :, :, None] + Vloc
        run[:, :, k0:k1] = np.einsum("bhktpn,bhktn->bhktp", Vt, np.abs(Cc), optimize=True)
    return _unchunk(run, l), V


def full_recurrence(dA, inj, q=TIER_CHUNK):
    """V (b, l, h, p, n) of V_t = e^{dA_t} V_{t-1} + inj_t, V_{-1} = 0 (inj (b, l, h, p, n), dA
    (b, l, h) real): within a chunk V_t = e^{cs_t} V_in + sum_{j<=t} L_tj inj_j, V passed between
    chunks.  The padding (dA = 0, inj = 0) keeps V and is dropped."""
    b, l, h, p, n = inj.shape
    a_all = _by_chunks(dA[..., None], q)[..., 0]
    I_all = _by_chunks(inj, q)                                               # (b,h,nc,q,p,n)
    out = np.empty(I_all.shape)
    V = np.zeros((b, h, p, n))
    for k0, k1 in _blocks(a_all.shape[2], b * h * q * max(q, p * n)):
        a, inj_c = a_all[:, :, k0:k1], I_all[:, :, k0:k1]
        K = k1 - k0
        L = np.tril(np.exp(_segsum(a)))
        cs = np.cumsum(a, axis=-1)
        Vloc = np.matmul(L, inj_c.reshape(b, h, K, q, p * n)).reshape(inj_c.shape)
        V_in = np.empty((b, h, K, p, n))
        V = _pass_states(V, np.exp(cs[..., -1]), Vloc[:, :, :, -1], V_in)
        out[:, :, k0:k1] = np.exp(cs)[..., None, None] * V_in[:, :, :, None] + Vloc
    return _unchunk(out, l)


def adjoint_core(dA, dtx, B, C, S_in, G_pre, gfinal=None, q=TIER_CHUNK, keep=False):
    """oracle/ssd.py's backward_core, vectorized over chunks: leaf gradients G_a (b,l,h) (of
    a = e^{dA}), G_dtx (b,l,h,p), G_B, G_C (b,l,h,n), G_S0 (b,h,p,n).  S_in: the states
    entering the chunks, as forward_core returns them."""
    b, l, h, p = dtx.shape
    n = B.shape[-1]
    dt_ = np.result_type(dA, dtx, B, C, G_pre, S_in)
    a_all = _by_chunks(dA[..., None], q)[..., 0]
    X_all, B_all, C_all, G_all = (_by_chunks(t, q) for t in (dtx, B, C, G_pre))
    G_a = np.empty(a_all.shape, dtype=dt_)
    G_x = np.empty(X_all.shape, dtype=dt_)
    G_B = np.empty(B_all.shape, dtype=dt_)
    G_C = np.empty(C_all.shape, dtype=dt_)
    R = np.zeros((b, h, p, n), dtype=dt_) if gfinal is None else gfinal.astype(dt_)  # a_{c1} G_S_{c1}
    if keep:   # the states S_t and adjoint states G_S_t of every step (vjp magnitudes)
        S_keep = np.empty(X_all.shape[:4] + (p, n), dtype=dt_)
        GS_keep = np.empty_like(S_keep)
    for k0, k1 in reversed(_blocks(a_all.shape[2], b * h * q * max(q, p * n))):
        a, x, Bc, Cc, G, Sc = (a_all[:, :, k0:k1], X_all[:, :, k0:k1], B_all[:, :, k0:k1],
                               C_all[:, :, k0:k1], G_all[:, :, k0:k1], S_in[:, :, k0:k1])
        a0 = np.exp(a[..., 0])
        seg = _segsum(a)
        L = np.tril(np.exp(seg))                                             # L[i, j], i >= j
        cs = np.cumsum(a, axis=-1)
        # G_S_t = sum_{i>=t} L_it G_i C_i^T + e^{seg_{last, t}} R_out of the chunk, where R_out is
        # a_{c0} G_S_{c0} of the next chunk: passed backwards, one multiply-add per chunk
        within = np.einsum("bhkit,bhkip,bhkin->bhktpn", L, G, Cc, optimize=True)
        tail = np.exp(seg[..., -1, :])                                       # (b,h,K,q)
        R_out = np.empty(Sc.shape, dtype=dt_)
        for k in reversed(range(k1 - k0)):
            R_out[:, :, k] = R
            R = a0[:, :, k, None, None] * (tail[:, :, k, 0, None, None] * R + within[:, :, k, 0])
        GS = tail[..., None, None] * R_out[:, :, :, None] + within
        St = _chunk_states(L, cs, Sc, x, Bc)
        Sprev = np.concatenate([Sc[:, :, :, None], St[:, :, :, :-1]], axis=3)
        G_a[:, :, k0:k1] = np.sum(GS * Sprev, axis=(-2, -1))
        G_x[:, :, k0:k1] = np.sum(GS * Bc[..., None, :], axis=-1)
        G_B[:, :, k0:k1] = np.sum(GS * x[..., None], axis=-2)
        G_C[:, :, k0:k1] = np.sum(G[..., None] * St, axis=-2)
        if keep:
            S_keep[:, :, k0:k1], GS_keep[:, :, k0:k1] = St, GS
    if keep:
        return _unchunk(S_keep, l), _unchunk(GS_keep, l)
    return (_unchunk(G_a[..., None], l)[..., 0], _unchunk(G_x, l), _unchunk(G_B, l),
            _unchunk(G_C, l), R)


# ----------------------------------------------------------------------------------------------
# leaves in W


def _softplus_w(v):
    return np.where(v > SOFTPLUS_THRESHOLD, v, np.log1p(np.exp(np.minimum(v, SOFTPLUS_THRESHOLD))))


def _sigmoid_w(v):
    return 1 / (1 + np.exp(-v))


def _leaves_w(inp, softplus, W):
    """The leaves of oracle/ssd.py (_leaves_mp) in the real format W, plus dA = Dt A."""
    c = lambda a: None if a is None else a.astype(W)                        # noqa: E731
    x, A = c(inp.x), c(inp.A)
    v = c(inp.dt) if inp.dt_bias is None else c(inp.dt) + c(inp.dt_bias)[None, None, :]
    with np.errstate(over="ignore"):
        pre = _softplus_w(v) if softplus else v
    Dt = np.minimum(np.maximum(pre, W(inp.lo)), W(inp.hi))
    inside = ((pre >= inp.lo) & (pre <= inp.hi)).astype(W)
    gidx = inp.head_group
    D = c(inp.D)
    z = c(inp.z)
    with np.errstate(over="ignore"):
        sg = None if z is None else _sigmoid_w(z)
        dsp = _sigmoid_w(v) if softplus else np.ones_like(v)
    D4 = None if D is None else (D[None, None, :, None] if D.ndim == 1 else D[None, None])
    dA = Dt * A[None, None, :]
    return dict(x=x, A=A, Dt=Dt, dA=dA, a=np.exp(dA), dtx=Dt[..., None] * x,
                B=c(inp.B)[:, :, gidx], C=c(inp.C)[:, :, gidx], D=D,
                Dx=None if D is None else D4 * x,
                gate=None if z is None else z * sg,
                dgate=None if z is None else sg * (1 + z * (1 - sg)),
                dDt=dsp * inside, S0=c(inp.S0))


def _finish(lv, y):
    pre = y if lv["Dx"] is None else y + lv["Dx"]
    return (pre if lv["gate"] is None else pre * lv["gate"]), pre


# ----------------------------------------------------------------------------------------------
# magnitudes (complex steps through the same core, in complex128)


def _dA_real(inp):
    """Dt A in float64, the logarithm of the magnitude pass's decay leaf a = e^{Dt A} > 0."""
    v = inp.dt if inp.dt_bias is None else inp.dt + inp.dt_bias[None, None, :]
    pre = f_softplus(v) if inp.softplus else v
    return np.minimum(np.maximum(pre, inp.lo), inp.hi) * inp.A[None, None, :]


def _abs_and_step(inp, lv, weights, dA_step, out_step):
    """Run the core on the absolute leaves ``lv`` (oracle/ssd.py's _leaves_abs) with dA_k ->
    |Dt_k A| ... + i h dA_step_k, dtx_j -> dtx_j e^{i h w_j}, gate_i -> gate_i e^{i h w_i}:
    returns (abs_out, abs_state, d abs_out, d abs_state) with d = Im / h."""
    dA = _dA_real(inp) + 1j * STEP * dA_step                                # log a, a = |a|
    dtx = lv["dtx"] * np.exp(1j * STEP * weights.get("dtx", 0.0))
    gate = lv["gate"] * np.exp(1j * STEP * out_step)
    y, S, _ = forward_core(dA, dtx, lv["B"], lv["C"], None if lv["S0"] is None else lv["S0"] + 0j)
    pre = y if lv["Dx"] is None else y + lv["Dx"]
    out = pre * gate
    return out.real, S.real, out.imag / STEP, S.imag / STEP


def _tier_error(inp, subject_dtype, abs_mag, exp_cond, extra_depth=0.0):
    u = tier_unit_roundoff(subject_dtype)
    nc = math.ceil(inp.l / TIER_CHUNK)
    D_T = 2 * inp.n + 2 * TIER_CHUNK + 3 * nc + 16 + extra_depth
    # the tier's exponent error u_W (Q_T + 4) sum_k |Dt_k A| (1 + kappa_k) per term is
    # <= u_W (Q_T + 4) / 3 times the term's exp_cond weight (every step weighs >= 3 w_k there)
    return 2 * u * (D_T * abs_mag + (TIER_CHUNK + 4) / 3.0 * exp_cond)


# ----------------------------------------------------------------------------------------------
# the tier


def ssd_long(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
             dt_softplus=False, return_final_states=False, dt_limit=DEFAULT_DT_LIMIT,
             subject_dtype="float32"):
    """oracle/ssd.py's ``ssd`` by the long tier (module doc), in the working format of
    ``subject_dtype`` (oracle/extended.py).  Returns Reference out (b, l, h, p) [, Reference
    final_states (b, h, p, n)] with oracle/ssd.py's magnitudes "abs_out" ("abs_state"),
    "exp_cond", "depth", "run_out" ("run_state"), "run_depth"."""
    inp = _Inputs(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_limit)
    inp.softplus = bool(dt_softplus)
    W = tier_dtype(subject_dtype)
    lv = _leaves_w(inp, dt_softplus, W)
    y, S, S_in = forward_core(lv["dA"], lv["dtx"], lv["B"], lv["C"], lv["S0"])
    out, _ = _finish(lv, y)

    la, weights, _ = _leaves_abs(inp, dt_softplus)
    abs_out, abs_S, cond_out, cond_S = _abs_and_step(inp, la, weights, weights["a"], weights["gate"])
    f64 = lambda t: t.astype(np.float64)                                  # noqa: E731
    run, run_S = running_core(_dA_real(inp), f64(lv["dtx"]), f64(lv["B"]), f64(lv["C"]), f64(S_in))
    depth, off_depth = abs_depths(inp.l, inp.Q, inp.n)
    abs_in, abs_S_in = _intra_chunk_abs(inp, la)
    common = {"depth": depth, "off_depth": off_depth, "run_depth": RUN_DEPTH}
    out_ref = Reference(out.astype(np.float64), _tier_error(inp, subject_dtype, abs_out, cond_out),
                        {"abs_out": abs_out, "abs_off": np.maximum(abs_out - abs_in, 0.0),
                         "exp_cond": cond_out, "run_out": run * la["gate"], **common})
    if not return_final_states:
        return out_ref
    return out_ref, Reference(S.astype(np.float64), _tier_error(inp, subject_dtype, abs_S, cond_S),
                              {"abs_state": abs_S, "abs_off": np.maximum(abs_S - abs_S_in, 0.0),
                               "exp_cond": cond_S, "run_state": run_S, **common})


def _intra_chunk_abs(inp, la):
    """oracle/ssd.py's intra_chunk_abs by the chunked core: every chunk of the subject a batch
    element of its own (zero initial state)."""
    b, l = inp.b, inp.l
    Q = inp.Q
    cut = lambda t: by_chunk_batches(t, Q)                                  # noqa: E731
    y, S, _ = forward_core(cut(_dA_real(inp)), cut(la["dtx"]), cut(la["B"]), cut(la["C"]), None,
                           q=min(Q, TIER_CHUNK))
    pre = y if la["Dx"] is None else y + cut(la["Dx"])
    out = pre * cut(la["gate"])
    return (out.reshape((b, -1) + out.shape[2:])[:, :l], S.reshape((b, -1) + S.shape[1:])[:, -1])


def _grads(lv, inp, has, gout, gfinal, names):
    y, _, S_in = forward_core(lv["dA"], lv["dtx"], lv["B"], lv["C"], lv["S0"])
    pre = y if lv["Dx"] is None else y + lv["Dx"]
    G_pre = gout if lv["gate"] is None else gout * lv["gate"]
    G_a, G_dtx, G_B, G_C, G_S0 = adjoint_core(lv["dA"], lv["dtx"], lv["B"], lv["C"], S_in,
                                              G_pre, gfinal)
    gl = dict(a=G_a, dtx=G_dtx, B=G_B, C=G_C, Dx=G_pre,
              gate=None if lv["gate"] is None else gout * pre)
    if lv["S0"] is not None:
        gl["S0"] = G_S0
    g = _chain(gl, lv, inp, has)
    return [g[k] for k in names]


def ssd_vjp_long(grad_out, x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                 initial_states=None, dt_softplus=False, dt_limit=DEFAULT_DT_LIMIT,
                 grad_final_states=None, subject_dtype="float32"):
    """oracle/ssd.py's ``ssd_vjp`` by the long tier: {name: Reference} with oracle/ssd.py's
    magnitudes "abs_out", "exp_cond", "depth", "run_out", "run_depth"."""
    inp, grad_out, grad_final_states, has, names = vjp_inputs(
        grad_out, x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_limit,
        grad_final_states)
    inp.softplus = bool(dt_softplus)
    W = tier_dtype(subject_dtype)
    lv = _leaves_w(inp, dt_softplus, W)
    gf = None if grad_final_states is None else grad_final_states.astype(W)
    values = _grads(lv, inp, has, grad_out.astype(W), gf, names)

    # magnitudes: the adjoint on absolute leaves, leaves scaled by e^{i h weight} (complex step)
    la, weights, _ = _leaves_abs(inp, dt_softplus)
    gabs = np.abs(grad_out).astype(np.complex128)
    gf = None if grad_final_states is None else np.abs(grad_final_states).astype(np.complex128)

    def magnitudes(step_dA, leaf_weights):   # (called once; a second direction costs one more)
        """The adjoint on the absolute leaves with log a -> log a + i h step_dA and each leaf k
        of leaf_weights scaled by e^{i h weight}: [complex gradient] (Re: value, Im / h: the
        derivative)."""
        c = {k: (None if v is None else v.astype(np.complex128)) for k, v in la.items()}
        e = lambda k: np.exp(1j * STEP * leaf_weights[k]) if k in leaf_weights else 1.0  # noqa: E731
        c["dA"] = _dA_real(inp) + 1j * STEP * step_dA
        c["a"] = np.exp(c["dA"])
        for k in ("dtx", "Dt", "dDt"):
            c[k] = c[k] * e(k)
        gout = gabs
        if inp.z is None:          # the all-ones gate of the magnitude pass is not an input
            gout = gout * e("gate")
            c["gate"], c["dgate"] = None, None
        else:
            c["gate"], c["dgate"] = c["gate"] * e("gate"), c["dgate"] * e("dgate")
        return _grads(c, inp, has, gout, gf, names)

    mags = magnitudes(weights["a"], weights)
    runs = _vjp_running(inp, la, grad_out, grad_final_states, has, names)

    depths = vjp_depths(inp, has)
    counts = {k: depths[k] - 2 * abs_depth(inp.l, inp.Q, inp.n) for k in names}
    nc = math.ceil(inp.l / TIER_CHUNK)
    out = {}
    for k, val, mag, r in zip(names, values, mags, runs):
        abs_mag, cond = mag.real, np.maximum(mag.imag / STEP, 0.0)
        err = _tier_error(inp, subject_dtype, 2 * abs_mag, 2 * cond,
                          extra_depth=2 * inp.n + 2 * TIER_CHUNK + 3 * nc + 16 + counts[k])
        out[k] = Reference(val.astype(np.float64), err,
                           {"abs_out": abs_mag, "exp_cond": cond, "depth": depths[k],
                            "run_out": r, "run_depth": RUN_DEPTH})
    return out


def _vjp_running(inp, la, grad_out, grad_final, has, names):
    """oracle/ssd.py's vjp_running by the chunked cores (float64): S_t and G_S_t of every step
    from adjoint_core, V and V^G by full_recurrence (V^G in reversed time: V^G_t = a_{t+1}
    V^G_{t+1} + |G_S_t| is the forward recurrence of the reversed sequence with the decays
    shifted by one step)."""
    a, dtx, B, C, S0 = _signed_leaves(inp, inp.softplus)
    dA = _dA_real(inp)
    Gpre = grad_out * _signed_gate(inp)
    _, _, S_in = forward_core(dA, dtx, B, C, S0)
    S_all, GS_all = adjoint_core(dA, dtx, B, C, S_in, Gpre, grad_final, keep=True)
    V_all = full_recurrence(dA, np.abs(S_all))
    dA_rev = np.concatenate([np.zeros_like(dA[:, :1]), dA[:, ::-1][:, :-1]], axis=1)
    VG_all = full_recurrence(dA_rev, np.abs(GS_all)[:, ::-1])[:, ::-1]
    return vjp_run(inp, has, names, la, a, dtx, B, C, Gpre, grad_out, S0,
                   S_all, V_all, GS_all, VG_all)


__all__ = ["ssd_long", "ssd_vjp_long", "forward_core", "adjoint_core", "running_core", "TIER_CHUNK",
           "softplus_kappa", "dsoftplus_kappa"]
