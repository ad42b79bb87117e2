"""The SSD (Mamba-2) oracle: three forms, conventions, VJP; and the causal_conv1d oracle."""
from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from ssm_conformance.oracle.causal_conv1d import causal_conv1d, causal_conv1d_vjp
from ssm_conformance.oracle.precision import to_mp
from ssm_conformance.oracle.selective_scan import selective_scan
from ssm_conformance.oracle.ssd import ssd, ssd_forms_mp, ssd_vjp
from ssm_conformance.properties.tolerance import ssd_terms

U64 = 2.0**-53
U32 = 2.0**-24
SAFETY = 4.0  # as properties/tolerance.py


def _tol(ref, u=U64):
    """properties/tolerance.py's model (ssd_terms) at unit roundoff u."""
    forward = sum(np.asarray(d) * np.asarray(m) for d, m in ssd_terms(ref))
    return SAFETY * u * forward + (u + U64) * np.abs(ref.value) + ref.error


def _inputs(rng, b=2, length=7, h=4, p=3, g=2, n=2, extras=True):
    kw = dict(x=rng.standard_normal((b, length, h, p)), dt=rng.standard_normal((b, length, h)),
              A=-rng.uniform(0.3, 3.0, h), B=rng.standard_normal((b, length, g, n)),
              C=rng.standard_normal((b, length, g, n)))
    if extras:
        kw.update(D=rng.standard_normal((h, p)), z=rng.standard_normal((b, length, h, p)),
                  dt_bias=rng.standard_normal(h) * 0.5, initial_states=rng.standard_normal((b, h, p, n)))
    return kw


# ----------------------------------------------------------------------------------------------
# the three forms


@pytest.mark.parametrize("length,chunk", [(7, 3), (6, 3), (5, 8), (4, 1), (1, 2)])
def test_recurrent_quadratic_and_chunked_forms_agree(length, chunk):
    """In mpmath at 40 digits each form errs by <= ~10^-40 * (operation count <= 10^3) * its
    magnitude, so two forms differ by < 10^-36 * magnitude; we allow 10^-33 (still 14 orders
    below float64's 10^-16, so a form with a wrong decay, index or chunk boundary fails)."""
    rng = np.random.default_rng(length * 10 + chunk)
    kw = _inputs(rng, length=length)
    ref, fin = ssd(**kw, chunk_size=chunk, dt_softplus=True, return_final_states=True)
    with mpmath.workdps(40):
        forms = ssd_forms_mp(**kw, chunk_size=chunk, dt_softplus=True)
        out_r, S_r = forms["recurrent"]
        for name in ("quadratic", "chunked"):
            out, S = forms[name]
            assert max(abs(v) for v in (out - out_r).ravel()) <= 1e-33 * ref.magnitudes["abs_out"].max(), name
            assert max(abs(v) for v in (S - S_r).ravel()) <= 1e-33 * fin.magnitudes["abs_state"].max(), name
    # and the recurrent form is the oracle's value
    np.testing.assert_array_equal(np.vectorize(float)(out_r), ref.value)


def numpy_ssd(x, dt, A, B, C, D=None, z=None, dt_bias=None, initial_states=None, dt_softplus=False,
              dt_limit=(0.0, math.inf)):
    """Float64 transcription of mamba_chunk_scan_combined's math, recurrent."""
    b, length, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    v = dt + (0.0 if dt_bias is None else dt_bias)
    if dt_softplus:
        v = np.where(v > 20, v, np.log1p(np.exp(np.minimum(v, 20))))
    v = np.minimum(np.maximum(v, dt_limit[0]), dt_limit[1])
    out = np.zeros_like(x)
    S = np.zeros((b, h, p, n)) if initial_states is None else initial_states.copy()
    for t in range(length):
        for hh in range(h):
            grp = hh // (h // g)
            S[:, hh] = (np.exp(v[:, t, hh] * A[hh])[:, None, None] * S[:, hh]
                        + (v[:, t, hh, None] * x[:, t, hh])[:, :, None] * B[:, t, grp, None, :])
            y = np.einsum("bpn,bn->bp", S[:, hh], C[:, t, grp])
            if D is not None:
                y = y + (D[hh] if D.ndim == 1 else D[hh]) * x[:, t, hh]
            if z is not None:
                y = y * z[:, t, hh] / (1 + np.exp(-z[:, t, hh]))
            out[:, t, hh] = y
    return out, S


def numpy_chunked_ssd(x, dt, A, B, C, chunk, initial_states):
    """Float32 chunked algorithm as ssd_minimal_discrete (chunk-local cumulative sums), any length;
    no D, z, bias, softplus."""
    f = np.float32
    x, dt, A, B, C, S = (np.asarray(v, f) for v in (x, dt, A, B, C, initial_states))
    b, length, h, p = x.shape
    g = B.shape[2]
    Bh, Ch = B[:, :, np.arange(h) // (h // g)], C[:, :, np.arange(h) // (h // g)]
    dA = dt * A
    ys = []
    for c0 in range(0, length, chunk):
        sl = slice(c0, min(c0 + chunk, length))
        cs = np.cumsum(dA[:, sl], axis=1)                                  # (b, q, h)
        seg = cs[:, :, None, :] - cs[:, None, :, :]                        # (b, i, j, h)
        q = cs.shape[1]
        L = np.where(np.tril(np.ones((q, q), bool))[None, :, :, None], np.exp(np.minimum(seg, 0)), 0)
        cb = np.einsum("bihn,bjhn->bijh", Ch[:, sl], Bh[:, sl])
        y = np.einsum("bijh,bjh,bjhp->bihp", cb * L, dt[:, sl], x[:, sl])
        y = y + np.exp(cs)[..., None] * np.einsum("bihn,bhpn->bihp", Ch[:, sl], S)
        decay = np.exp(cs[:, -1:, :] - cs)
        S = (np.exp(cs[:, -1])[..., None, None] * S
             + np.einsum("bjh,bjhp,bjhn->bhpn", decay * dt[:, sl], x[:, sl], Bh[:, sl]))
        ys.append(y)
    return np.concatenate(ys, axis=1).astype(np.float64), S.astype(np.float64)


def test_matches_float64_recurrence_with_every_feature():
    rng = np.random.default_rng(1)
    kw = _inputs(rng, length=9)
    out, fin = ssd(**kw, chunk_size=4, dt_softplus=True, return_final_states=True)
    y, S = numpy_ssd(**kw, dt_softplus=True)
    assert out.value.shape == (2, 9, 4, 3) and fin.value.shape == (2, 4, 3, 2)
    assert np.all(np.abs(y - out.value) <= _tol(out))
    assert np.all(np.abs(S - fin.value) <= _tol(fin))


def _terms_by_path(kw, chunk):
    """Brute force over the monomials of a case without S0, D, z (b = 1, g = 1): for every
    (i, j), |term_ij| per (i, h, p), its exponent-error weight by exponent_weights' definition
    (steps j+1..i, source j, output i), and whether j lies in an earlier chunk than i."""
    x, dt, A, B, C = (kw[k] for k in ("x", "dt", "A", "B", "C"))
    l = x.shape[1]
    dA = dt[0] * A[None, :]                                           # (l, h)
    w = np.abs(dA)
    nc = -(-l // chunk)
    d = 2 * math.ceil(math.log2(min(chunk, l))) + 2 if min(chunk, l) > 1 else 2
    F = np.concatenate([np.cumsum(w[c0:c0 + chunk], axis=0) for c0 in range(0, l, chunk)])
    step = (nc + 2) * w + F
    for c0 in range(chunk, l, chunk):
        step[c0] += d * F[c0 - 1]
    for i in range(l):
        for j in range(i + 1):
            mag = (np.abs(C[0, i, 0] * B[0, j, 0]).sum() * np.exp(dA[j + 1:i + 1].sum(axis=0)))[:, None] \
                * np.abs(dt[0, j][:, None] * x[0, j])                      # (h, p): sum_n |C||B|
            weight = step[j + 1:i + 1].sum(axis=0) + d * F[j] + d * F[i]
            yield i, j, mag, weight[:, None], j // chunk < i // chunk


@pytest.mark.parametrize("length,chunk", [(11, 4), (9, 9), (7, 1)])
def test_magnitudes_are_the_sums_over_paths(length, chunk):
    """abs_out, abs_off, exp_cond and run_out, computed by recurrences, equal their definitions
    as sums over the monomials (module doc): run_out_t = sum_{s<=t} sum_n |C_t| |S_s| e^{cs_t - cs_s}
    with S_s the exact state."""
    rng = np.random.default_rng(length + chunk)
    kw = _inputs(rng, b=1, length=length, h=2, p=2, g=1, n=3, extras=False)
    kw["dt"] = np.abs(kw["dt"])
    ref = ssd(**kw, chunk_size=chunk)
    abs_out, abs_off, cond = (np.zeros((length, 2, 2)) for _ in range(3))
    for i, j, mag, weight, off in _terms_by_path(kw, chunk):
        abs_out[i] += mag
        abs_off[i] += mag * off
        cond[i] += mag * weight
    m = ref.magnitudes
    np.testing.assert_allclose(m["abs_out"][0], abs_out, rtol=1e-12)
    np.testing.assert_allclose(m["abs_off"][0], abs_off, rtol=1e-9, atol=1e-12 * abs_out.max())
    np.testing.assert_allclose(m["exp_cond"][0], cond, rtol=1e-5)   # a difference quotient
    # run_out from the exact states of the float64 recurrence
    x, dt, A, B, C = (kw[k] for k in ("x", "dt", "A", "B", "C"))
    dA = dt[0] * A[None, :]
    S, states = np.zeros((2, 2, 3)), []
    for t in range(length):
        S = np.exp(dA[t])[:, None, None] * S + (dt[0, t][:, None] * x[0, t])[..., None] * B[0, t, 0][None, None, :]
        states.append(S)
    run = np.zeros((length, 2, 2))
    for t in range(length):
        for s_ in range(t + 1):
            carry = np.exp(dA[s_ + 1:t + 1].sum(axis=0))[:, None, None]
            run[t] += (carry * np.abs(states[s_]) * np.abs(C[0, t, 0])[None, None, :]).sum(axis=-1)
    np.testing.assert_allclose(m["run_out"][0], run, rtol=1e-12)


def test_float32_chunked_algorithm_is_within_the_tolerance():
    """The chunked algorithm in float32 (the kernel's arithmetic): inside the documented bound,
    with large exponents (A up to -8, long chunks) so that exp_cond matters."""
    rng = np.random.default_rng(2)
    kw = _inputs(rng, b=1, length=40, h=2, p=2, g=1, n=3, extras=False)
    kw = {k: v.astype(np.float32).astype(np.float64) for k, v in kw.items()}
    kw["dt"] = np.abs(kw["dt"])
    kw["A"] = np.array([-8.0, -0.5])
    S0 = rng.standard_normal((1, 2, 2, 3)).astype(np.float32).astype(np.float64)
    for chunk in (16, 40):
        out, fin = ssd(**kw, chunk_size=chunk, initial_states=S0, return_final_states=True)
        y, S = numpy_chunked_ssd(**kw, chunk=chunk, initial_states=S0)
        assert np.all(np.abs(y - out.value) <= _tol(out, U32))
        assert np.all(np.abs(S - fin.value) <= _tol(fin, U32))


def _float32_tree_scan_ssd(x, dt, A, B, C):
    """Hillis-Steele scan over the pairs (e^{Dt A}, Dt x B^T) in float32 (one of the admitted
    algorithms: every path crosses <= log2 l combines (a2 a1, a2 b1 + b2)); y_t = S_t C_t."""
    f = np.float32
    a = np.exp(f(dt) * f(A)[None, None, :])[0]                        # (l, h)
    inj = (f(dt)[0][..., None] * f(x)[0])[..., None] * f(B)[0, :, 0][:, None, None, :]  # (l,h,p,n)
    k = 1
    while k < a.shape[0]:
        inj = np.concatenate([inj[:k], a[k:, :, None, None] * inj[:-k] + inj[k:]])
        a = np.concatenate([a[:k], a[k:] * a[:-k]])
        k *= 2
    return (inj * f(C)[0, :, 0][:, None, None, :]).sum(axis=-1, dtype=f)[None].astype(np.float64)


def test_float32_tree_scan_and_recurrence_are_within_the_tolerance():
    """The bound is path-weighted, no longer depth 3 (t + 1) for every output: a tree scan and a
    sequential float32 loop over 1000 steps (a head without decay and one with) stay inside."""
    rng = np.random.default_rng(4)
    kw = _inputs(rng, b=1, length=1000, h=2, p=1, g=1, n=2, extras=False)
    kw = {k: v.astype(np.float32).astype(np.float64) for k, v in kw.items()}
    kw["dt"] = np.abs(kw["dt"]).astype(np.float32).astype(np.float64)
    kw["A"] = np.array([0.0, -0.25])
    out = ssd(**kw, chunk_size=64)
    tol = _tol(out, U32)
    assert np.all(np.abs(_float32_tree_scan_ssd(**kw) - out.value) <= tol)
    f = np.float32
    S, ys = np.zeros((2, 1, 2), f), []
    for t in range(1000):
        S = (np.exp(f(kw["dt"][0, t]) * f(kw["A"]))[:, None, None] * S
             + (f(kw["dt"][0, t])[:, None] * f(kw["x"][0, t]))[..., None] * f(kw["B"][0, t, 0])[None, None, :])
        ys.append((S * f(kw["C"][0, t, 0])).sum(axis=-1, dtype=f))
    assert np.all(np.abs(np.stack(ys)[None].astype(np.float64) - out.value) <= tol)
    # and the late outputs of the decaying head are judged far tighter than the old uniform
    # depth 3 (t + 1) would: a 1e-4 relative error there is caught
    late = out.value.copy()
    late[:, 500:, 1] *= 1 + 1e-4
    assert np.any(np.abs(late - out.value) > tol)


# ----------------------------------------------------------------------------------------------
# conventions


def test_dt_limit_clamps_after_softplus_and_by_default_at_zero():
    rng = np.random.default_rng(3)
    kw = _inputs(rng, length=5, extras=False)
    kw["dt"][0, 1] = -0.7  # negative dt, no softplus: mamba_chunk_scan_combined clamps it to 0
    clamped = ssd(**kw, chunk_size=2)
    y0, _ = numpy_ssd(**dict(kw, dt=np.maximum(kw["dt"], 0)))
    assert np.all(np.abs(y0 - clamped.value) <= _tol(clamped))
    unclamped = ssd(**kw, chunk_size=2, dt_limit=(-math.inf, math.inf))
    y1, _ = numpy_ssd(**kw, dt_limit=(-math.inf, math.inf))
    assert np.all(np.abs(y1 - unclamped.value) <= _tol(unclamped))
    assert np.any(np.abs(unclamped.value - clamped.value) > 1e6 * _tol(clamped))  # the clamp matters
    lim = (0.2, 0.6)  # clamp after softplus
    limited = ssd(**kw, chunk_size=2, dt_softplus=True, dt_limit=lim)
    y2, _ = numpy_ssd(**kw, dt_softplus=True, dt_limit=lim)
    assert np.all(np.abs(y2 - limited.value) <= _tol(limited))
    y3, _ = numpy_ssd(**kw, dt_softplus=True)
    assert np.any(np.abs(y3 - limited.value) > 1e6 * _tol(limited))


def test_D_per_head_equals_D_per_head_dim_repeated_and_gate_follows_D():
    rng = np.random.default_rng(4)
    kw = _inputs(rng, length=4, extras=False)
    D = rng.standard_normal(4)
    a = ssd(**kw, chunk_size=3, D=D).value
    b = ssd(**kw, chunk_size=3, D=np.repeat(D[:, None], 3, axis=1)).value
    np.testing.assert_array_equal(a, b)
    z = rng.standard_normal(kw["x"].shape)
    zero_C = dict(kw, C=np.zeros_like(kw["C"]))
    out = ssd(**zero_C, chunk_size=3, D=D, z=z).value  # y = 0, so out = D x SiLU(z)
    want = D[None, None, :, None] * kw["x"] * z / (1 + np.exp(-z))
    # oracle: exact value rounded once; want: 4 float64 roundings (x D, exp, /, *) -> < 5 u
    np.testing.assert_allclose(out, want, rtol=1e-15, atol=0)


def test_ssd_equals_the_selective_scan_with_heads_flattened():
    """mamba-ssm's ssd_selective_scan mapping: x -> (b, h p, l), A (h) -> (h p, n), B/C groups
    (b, g, n, l), D and dt_bias repeated over p.  Both oracles must agree (dt >= 0 here)."""
    rng = np.random.default_rng(5)
    b, length, h, p, g, n = 1, 6, 4, 2, 2, 3
    kw = _inputs(rng, b=b, length=length, h=h, p=p, g=g, n=n, extras=False)
    D, z, bias = rng.standard_normal(h), rng.standard_normal((b, length, h, p)), rng.standard_normal(h)
    out = ssd(**kw, chunk_size=4, D=D, z=z, dt_bias=bias, dt_softplus=True)
    flat = lambda v: v.reshape(b, length, h * p).transpose(0, 2, 1)  # noqa: E731
    ss = selective_scan(flat(kw["x"]), flat(np.repeat(kw["dt"][..., None], p, axis=-1)),
                        np.repeat(kw["A"], p)[:, None].repeat(n, axis=1),
                        kw["B"].transpose(0, 2, 3, 1), kw["C"].transpose(0, 2, 3, 1),
                        D=np.repeat(D, p), z=flat(z), delta_bias=np.repeat(bias, p), delta_softplus=True)
    got = ss.value.transpose(0, 2, 1).reshape(b, length, h, p)
    assert np.all(np.abs(got - out.value) <= 2 * (0.5 * np.spacing(np.abs(out.value)) + out.error))


def test_heads_read_their_group():
    rng = np.random.default_rng(6)
    kw = _inputs(rng, b=1, length=5, h=4, g=2, extras=False)
    out = ssd(**kw, chunk_size=2).value
    for hh in range(4):
        grp = hh // 2
        one = ssd(kw["x"][:, :, hh:hh + 1], kw["dt"][:, :, hh:hh + 1], kw["A"][hh:hh + 1],
                  kw["B"][:, :, grp:grp + 1], kw["C"][:, :, grp:grp + 1], chunk_size=2).value
        np.testing.assert_array_equal(out[:, :, hh:hh + 1], one)


# ----------------------------------------------------------------------------------------------
# VJP against central finite differences in mpmath


def test_ssd_vjp_matches_central_differences():
    rng = np.random.default_rng(7)
    kw = _inputs(rng, b=1, length=4, h=2, p=2, g=1, n=2)
    kw["D"] = rng.standard_normal(2)  # the (h,) form of D
    g = rng.standard_normal(kw["x"].shape)
    gf = rng.standard_normal(kw["initial_states"].shape)
    res = ssd_vjp(g, **kw, chunk_size=3, dt_softplus=True, grad_final_states=gf)
    assert set(res) == set(kw)
    step = mpmath.mpf("1e-20")
    with mpmath.workdps(50):
        gm, gfm = to_mp(g), to_mp(gf)
        base = {k: to_mp(v) for k, v in kw.items()}

        def loss(vals):
            out, S = ssd_forms_mp(**vals, chunk_size=3, dt_softplus=True)["recurrent"]
            return (out * gm).sum() + (S * gfm).sum()

        for name, arr in base.items():
            ref = res[name]
            assert ref.value.shape == kw[name].shape
            for idx in np.ndindex(arr.shape):
                vals = []
                for sgn in (1, -1):
                    pert = arr.copy()
                    pert[idx] = arr[idx] + sgn * step
                    vals.append(loss(dict(base, **{name: pert})))
                fd = float((vals[0] - vals[1]) / (2 * step))  # relative error ~1e-30
                bound = 0.5 * np.spacing(abs(ref.value[idx])) + ref.error[idx] + 1e-25 * ref.magnitudes["abs_out"][idx]
                assert abs(fd - ref.value[idx]) <= bound, (name, idx, fd, ref.value[idx])


def test_ssd_vjp_is_zero_where_dt_is_clamped():
    rng = np.random.default_rng(8)
    kw = _inputs(rng, b=1, length=3, h=2, p=1, g=1, n=1, extras=False)
    kw["dt"][0, 1, 0] = -0.5  # clamped to 0 by the default dt_limit
    res = ssd_vjp(np.ones(kw["x"].shape), **kw, chunk_size=2)
    assert res["dt"].value[0, 1, 0] == 0.0
    assert res["dt"].value[0, 2, 0] != 0.0


def test_ssd_bad_inputs():
    rng = np.random.default_rng(9)
    kw = _inputs(rng, extras=False)
    with pytest.raises(ValueError, match="x must have shape"):
        ssd(**dict(kw, x=np.ones((2, 7, 4))), chunk_size=2)
    with pytest.raises(ValueError, match="dt must have shape"):
        ssd(**dict(kw, dt=np.ones((2, 7, 3))), chunk_size=2)
    with pytest.raises(ValueError, match="must divide"):
        ssd(**dict(kw, B=np.ones((2, 7, 3, 2)), C=np.ones((2, 7, 3, 2))), chunk_size=2)
    with pytest.raises(ValueError, match="chunk_size"):
        ssd(**kw, chunk_size=0)
    with pytest.raises(ValueError, match="D must have shape"):
        ssd(**kw, chunk_size=2, D=np.ones(3))
    with pytest.raises(TypeError, match="real"):
        ssd(**dict(kw, A=kw["A"] + 1j), chunk_size=2)


# ----------------------------------------------------------------------------------------------
# causal_conv1d


def _exact_conv(x, w, bias):
    b, d, length = x.shape
    k = w.shape[1]
    out = np.empty((b, d, length))
    for i, j, t in np.ndindex(b, d, length):
        s = Fraction(bias[j]) if bias is not None else Fraction(0)
        for kk in range(k):  # weight[:, -1] multiplies x_t
            if t - (k - 1) + kk >= 0:
                s += Fraction(w[j, kk]) * Fraction(x[i, j, t - (k - 1) + kk])
        out[i, j, t] = float(s)  # Fraction -> float is correctly rounded
    return out


def test_causal_conv1d_is_the_exact_sum_rounded_once():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 6)) * np.array([1e-200, 1.0, 1e150])[None, :, None]
    w = rng.standard_normal((3, 4)) * np.array([1e100, 1.0, 1e-120])[:, None]
    bias = rng.standard_normal(3)
    ref = causal_conv1d(x, w, bias)
    np.testing.assert_array_equal(ref.value, _exact_conv(x, w, bias))
    assert np.all(ref.error == 0)
    assert ref.magnitudes["depth"] == 5
    np.testing.assert_array_equal(causal_conv1d(x, w).value, _exact_conv(x, w, None))
    # the newest tap weight[:, -1] multiplies x_t: a one-hot last tap is the identity
    one = np.zeros((3, 4))
    one[:, -1] = 1.0
    np.testing.assert_array_equal(causal_conv1d(x, one).value, x)


def test_causal_conv1d_silu_and_swish():
    rng = np.random.default_rng(11)
    x, w, bias = rng.standard_normal((1, 2, 5)), rng.standard_normal((2, 3)), rng.standard_normal(2)
    pre = _exact_conv(x, w, bias)
    for act in ("silu", "swish"):
        ref = causal_conv1d(x, w, bias, act)
        for idx in np.ndindex(pre.shape):
            with mpmath.workdps(40):
                s = mpmath.mpf(pre[idx])  # the exact sum rounded once to float64
                want = float(s / (1 + mpmath.exp(-s)))
            # |SiLU(s) - SiLU(fl(s))| <= max|SiLU'| (1.1) * half an ulp of s; plus the two roundings
            # of the results to float64 (half an ulp each)
            assert abs(ref.value[idx] - want) <= np.spacing(abs(want)) + 1.1 * 0.5 * np.spacing(abs(pre[idx]))
        y64 = pre / (1 + np.exp(-pre))  # float64 evaluation: within SAFETY u depth abs_out
        assert np.all(np.abs(y64 - ref.value) <= SAFETY * U64 * ref.magnitudes["depth"] * ref.magnitudes["abs_out"])
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(x, w, activation="relu")


def test_causal_conv1d_vjp_matches_central_differences():
    rng = np.random.default_rng(12)
    x, w, bias = rng.standard_normal((2, 2, 5)), rng.standard_normal((2, 3)), rng.standard_normal(2)
    g = rng.standard_normal(x.shape)
    step = mpmath.mpf("1e-20")
    for act in (None, "silu"):
        res = causal_conv1d_vjp(g, x, w, bias, act)
        with mpmath.workdps(50):
            args = [to_mp(x), to_mp(w), to_mp(bias)]
            gm = to_mp(g)

            def loss(xx, ww, bb):
                s = np.zeros(x.shape, dtype=object)
                for kk in range(3):
                    s[:, :, 2 - kk:] = s[:, :, 2 - kk:] + ww[None, :, kk, None] * xx[:, :, : 5 - (2 - kk)]
                s = s + bb[None, :, None]
                if act:
                    s = np.frompyfunc(lambda v: v / (1 + mpmath.exp(-v)), 1, 1)(s)
                return (s * gm).sum()

            for pos, name in enumerate(("x", "weight", "bias")):
                for idx in np.ndindex(args[pos].shape):
                    vals = []
                    for sgn in (1, -1):
                        pert = list(args)
                        pert[pos] = args[pos].copy()
                        pert[pos][idx] = args[pos][idx] + sgn * step
                        vals.append(loss(*pert))
                    fd = float((vals[0] - vals[1]) / (2 * step))
                    ref = res[name]
                    # oracle rounded once + its error; FD at 50 digits, step 1e-20: ~1e-30 relative
                    bound = (0.5 * np.spacing(abs(ref.value[idx])) + ref.error[idx]
                             + 1e-25 * ref.magnitudes["abs_out"][idx])
                    assert abs(fd - ref.value[idx]) <= bound, (act, name, idx)


def test_causal_conv1d_bad_inputs():
    with pytest.raises(ValueError, match="x must have shape"):
        causal_conv1d(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="weight must have shape"):
        causal_conv1d(np.ones((1, 3, 4)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="bias must have shape"):
        causal_conv1d(np.ones((1, 3, 4)), np.ones((3, 2)), np.ones(2))
