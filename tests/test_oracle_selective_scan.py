"""The selective-scan (Mamba-1) oracle, its decode step and its VJP."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from ssm_conformance.oracle.precision import to_mp
from ssm_conformance.oracle.selective_scan import (
    EXP_ARG_ROUNDINGS, selective_scan, selective_scan_mp, selective_scan_vjp,
    selective_state_update,
)

U64 = 2.0**-53
SAFETY = 4.0  # as properties/tolerance.py


def _tol(ref, u=U64):
    """The documented tolerance: SAFETY u (depth abs_out + exp_cond) + rounding + oracle error."""
    m = ref.magnitudes
    mag = m.get("abs_out", m.get("abs_state"))
    return SAFETY * u * (m["depth"] * mag + m["exp_cond"]) + (u + U64) * np.abs(ref.value) + ref.error


# ----------------------------------------------------------------------------------------------
# an independent float64 NumPy transcription of selective_scan_ref's semantics


def numpy_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    b, d, length = u.shape
    n = A.shape[1]
    dt = delta + (0.0 if delta_bias is None else delta_bias[:, None])
    if delta_softplus:
        dt = np.where(dt > 20, dt, np.log1p(np.exp(np.minimum(dt, 20))))
    cplx = np.iscomplexobj(A)

    def coeff(M, bi, di, t):  # B or C for batch bi, channel di, step t -> (n,)
        if M.ndim == 2:
            return M[di]
        if M.ndim == 4:
            M = M[:, di // (d // M.shape[1])]
        else:
            M = M[:, :]
        row = M[bi]
        if cplx and not np.iscomplexobj(row):
            return row[:, 2 * t] + 1j * row[:, 2 * t + 1]
        return row[:, t]

    out = np.zeros((b, d, length))
    last = np.zeros((b, d, n), dtype=np.complex128 if cplx else np.float64)
    for bi in range(b):
        for di in range(d):
            h = np.zeros(n, dtype=last.dtype)
            for t in range(length):
                h = np.exp(dt[bi, di, t] * A[di]) * h + dt[bi, di, t] * coeff(B, bi, di, t) * u[bi, di, t]
                y = np.sum(h * coeff(C, bi, di, t))
                y = 2 * y.real if cplx else y
                if D is not None:
                    y = y + D[di] * u[bi, di, t]
                if z is not None:
                    y = y * z[bi, di, t] / (1 + np.exp(-z[bi, di, t]))
                out[bi, di, t] = y
            last[bi, di] = h
    return out, last


def _inputs(rng, b=2, d=4, n=3, length=9, cplx=False, kind="var", extras=True):
    L2 = 2 * length if cplx else length
    shapes = {"const": (d, n), "var": (b, n, L2), "group": (b, 2, n, L2)}
    A = -rng.uniform(0.2, 2.0, (d, n))
    if cplx:
        A = A + 1j * rng.uniform(-3, 3, (d, n))
    kw = dict(u=rng.standard_normal((b, d, length)), delta=rng.standard_normal((b, d, length)), A=A,
              B=rng.standard_normal(shapes[kind]), C=rng.standard_normal(shapes[kind]))
    if cplx and kind == "const":
        kw["B"] = kw["B"] + 1j * rng.standard_normal((d, n))
    if extras:
        kw.update(D=rng.standard_normal(d), z=rng.standard_normal((b, d, length)),
                  delta_bias=rng.standard_normal(d) * 0.5)
    return kw


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("kind", ["const", "var", "group"])
def test_matches_a_float64_transcription_of_the_ref(cplx, kind):
    rng = np.random.default_rng(10 + 3 * cplx + len(kind))
    kw = _inputs(rng, cplx=cplx, kind=kind)
    out, last = selective_scan(**kw, delta_softplus=True, return_last_state=True)
    y, h = numpy_selective_scan(**kw, delta_softplus=True)
    assert out.value.shape == (2, 4, 9) and last.value.shape == (2, 4, 3)
    assert last.value.dtype == (np.complex128 if cplx else np.float64)
    # float64 evaluation is within the documented bound; the ratio is far below 1
    assert np.all(np.abs(y - out.value) <= _tol(out))
    assert np.all(np.abs(h - last.value) <= _tol(last))
    assert np.all(out.error <= 2.0**-64 * out.magnitudes["abs_out"])


def test_wrong_conventions_are_caught():
    """Mistakes a kernel could make land far outside the tolerance (float32 even)."""
    rng = np.random.default_rng(11)
    kw = _inputs(rng, cplx=True, kind="var")
    out = selective_scan(**kw, delta_softplus=True)
    tol = _tol(out, u=2.0**-24)
    y_no2, _ = numpy_selective_scan(**kw, delta_softplus=True)
    assert np.max(np.abs(y_no2 / 2 - out.value) / tol) > 1e3  # without the factor 2 of 2 Re
    after = dict(kw, delta=np.log1p(np.exp(kw["delta"])) + kw["delta_bias"][:, None], delta_bias=None)
    y_after, _ = numpy_selective_scan(**after)  # bias added AFTER softplus
    assert np.max(np.abs(y_after - out.value) / tol) > 1e3


def test_complex_factor_two_by_hand():
    """l = 1, n = 1: y = 2 Re(C dt B u) + D u with B, C interleaved (Re, Im)."""
    u, delta = np.array([[[1.5]]]), np.array([[[0.25]]])
    A = np.array([[-1.0 + 2.0j]])
    B = np.array([[[3.0, -1.0]]])      # B = 3 - i
    C = np.array([[[0.5, 2.0]]])       # C = 0.5 + 2i
    out = selective_scan(u, delta, A, B, C, D=np.array([0.75]))
    h = 0.25 * (3 - 1j) * 1.5
    assert out.value[0, 0, 0] == pytest.approx(2 * ((0.5 + 2j) * h).real + 0.75 * 1.5, rel=1e-15)
    assert out.value[0, 0, 0] == 2 * (0.5 * 1.125 + 2 * 0.375) + 1.125  # = 3.75, exact


def _identity_scan(x):
    """A = 0, B = C = u = 1, l = 1: out = Dt, i.e. the softplus of delta (+ bias)."""
    d = len(x)
    return dict(u=np.ones((1, d, 1)), delta=np.asarray(x, float).reshape(1, d, 1), A=np.zeros((d, 1)),
                B=np.ones((d, 1)), C=np.ones((d, 1)))


def test_softplus_threshold_20_as_torch():
    above = np.nextafter(20.0, 21.0)
    out = selective_scan(**_identity_scan([20.0, above, 30.0, -3.0]), delta_softplus=True).value[0, :, 0]
    assert out[0] == float(mpmath.log1p(mpmath.exp(20)))  # x <= 20: log1p(e^x)
    assert out[0] != 20.0
    assert out[1] == above and out[2] == 30.0              # x > 20: x itself
    assert out[3] == float(mpmath.log1p(mpmath.exp(-3)))


def test_delta_bias_is_added_before_softplus():
    out = selective_scan(**_identity_scan([-1.0]), delta_bias=np.array([2.0]), delta_softplus=True)
    assert out.value[0, 0, 0] == float(mpmath.log1p(mpmath.e))  # softplus(-1 + 2)
    assert out.value[0, 0, 0] != float(mpmath.log1p(mpmath.exp(-1)) + 2)
    out = selective_scan(**_identity_scan([19.5]), delta_bias=np.array([1.0]), delta_softplus=True)
    assert out.value[0, 0, 0] == 20.5  # the threshold applies to delta + bias


def test_grouped_channels_read_group_d_over_d_per_group():
    """Grouped B equals the variable B of each channel's group d // (d/g)."""
    rng = np.random.default_rng(12)
    kw = _inputs(rng, d=4, kind="group", extras=False)
    out = selective_scan(**kw).value
    for di in range(4):
        g = di // 2
        one = selective_scan(kw["u"][:, di:di + 1], kw["delta"][:, di:di + 1], kw["A"][di:di + 1],
                             kw["B"][:, g], kw["C"][:, g]).value
        np.testing.assert_array_equal(out[:, di:di + 1], one)


def test_exp_cond_equals_the_exponent_weighted_recurrence():
    """exp_cond = |gate| sum_n |C| T, T_t = |dA_t| (T_{t-1} + w_t R_{t-1}) + kappa_t |bu_t|,
    R the abs state, w_t = |Dt_t A| (3 + kappa_t) (exp2's three roundings of its argument): the
    closed form of the sum over terms of |term| * exponent weights."""
    rng = np.random.default_rng(13)
    kw = _inputs(rng, b=1, d=2, n=2, length=12, kind="var")
    out = selective_scan(**kw, delta_softplus=True)
    x = kw["delta"] + kw["delta_bias"][:, None]
    Dt = np.log1p(np.exp(x))
    kappa = np.abs(x) / (1 + np.exp(-x)) / Dt
    want = np.zeros_like(out.value)
    for di in range(2):
        R = T = np.zeros(2)
        for t in range(12):
            w = Dt[0, di, t] * np.abs(kw["A"][di]) * (EXP_ARG_ROUNDINGS + kappa[0, di, t])
            a = np.exp(Dt[0, di, t] * kw["A"][di])
            bu = np.abs(Dt[0, di, t] * kw["B"][0, :, t] * kw["u"][0, di, t])
            T = a * (T + w * R) + kappa[0, di, t] * bu
            R = a * R + bu
            zz = kw["z"][0, di, t]
            want[0, di, t] = abs(zz / (1 + np.exp(-zz))) * np.sum(np.abs(kw["C"][0, :, t]) * T)
    np.testing.assert_allclose(out.magnitudes["exp_cond"], want, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# decode step


def test_state_update_from_zero_is_the_first_scan_step():
    rng = np.random.default_rng(14)
    kw = _inputs(rng, b=2, d=3, n=4, length=1, kind="var")
    out = selective_scan(**kw, delta_softplus=True)
    st_out, st = selective_state_update(np.zeros((2, 3, 4)), kw["u"][..., 0], kw["delta"][..., 0], kw["A"],
                                        kw["B"][..., 0], kw["C"][..., 0], kw["D"], kw["z"][..., 0],
                                        kw["delta_bias"], dt_softplus=True)
    np.testing.assert_array_equal(st_out.value, out.value[..., 0])


def test_state_update_continues_the_scan():
    """update(fl(h_{T-1}), step T) == scan over T+1 steps at T, up to the rounding of the state:
    |C| |e^{Dt A}| |h - fl(h)| with |h - fl(h)| <= half an ulp + the oracle's error."""
    rng = np.random.default_rng(15)
    T = 6
    kw = _inputs(rng, b=1, d=3, n=4, length=T + 1, kind="var")
    full = selective_scan(**kw, delta_softplus=True).value[..., T]
    head = {k: (v[..., :T] if k in ("u", "delta", "z", "B", "C") else v) for k, v in kw.items()}
    _, last = selective_scan(**head, delta_softplus=True, return_last_state=True)
    step = {k: (v[..., T] if k in ("u", "delta", "z", "B", "C") else v) for k, v in kw.items()}
    out, new_state = selective_state_update(last.value, step["u"], step["delta"], kw["A"], step["B"], step["C"],
                                            kw["D"], step["z"], kw["delta_bias"], dt_softplus=True)
    dt = np.log1p(np.exp(step["delta"] + kw["delta_bias"]))[..., None]
    gate = np.abs(step["z"] / (1 + np.exp(-step["z"])))
    state_err = 0.5 * np.spacing(np.abs(last.value)) + last.error
    bound = gate * np.sum(np.abs(step["C"])[:, None, :] * np.exp(dt * kw["A"]) * state_err, axis=-1)
    bound += out.error + 0.5 * np.spacing(np.abs(full)) + 0.5 * np.spacing(np.abs(out.value))
    assert np.all(np.abs(out.value - full) <= bound)


def test_state_update_with_heads_and_groups():
    rng = np.random.default_rng(16)
    b, h, p, n, g = 2, 4, 2, 3, 2
    args = dict(state=rng.standard_normal((b, h, p, n)), x=rng.standard_normal((b, h, p)),
                dt=rng.standard_normal((b, h, p)), A=-rng.uniform(0.1, 1, (h, p, n)),
                B=rng.standard_normal((b, g, n)), C=rng.standard_normal((b, g, n)),
                D=rng.standard_normal((h, p)), z=rng.standard_normal((b, h, p)), dt_bias=rng.standard_normal((h, p)))
    out, st = selective_state_update(**args, dt_softplus=True)
    assert out.value.shape == (b, h, p) and st.value.shape == (b, h, p, n)
    for hh in range(h):  # head hh reads group hh // (h/g), through the contract's (b, d, n) shapes
        grp = hh // (h // g)
        o1, s1 = selective_state_update(args["state"][:, hh], args["x"][:, hh], args["dt"][:, hh], args["A"][hh],
                                        args["B"][:, grp], args["C"][:, grp], args["D"][hh], args["z"][:, hh],
                                        args["dt_bias"][hh], dt_softplus=True)
        np.testing.assert_array_equal(out.value[:, hh], o1.value)
        np.testing.assert_array_equal(st.value[:, hh], s1.value)


# ----------------------------------------------------------------------------------------------
# VJP against central finite differences in mpmath


_conj = np.frompyfunc(mpmath.conj, 1, 1)


@pytest.mark.parametrize("case", ["real_var", "complex_group", "complex_const"])
def test_vjp_matches_central_differences(case):
    rng = np.random.default_rng(17 + len(case))
    cplx = case != "real_var"
    kind = {"real_var": "var", "complex_group": "group", "complex_const": "const"}[case]
    kw = _inputs(rng, b=1, d=2, n=2, length=3, cplx=cplx, kind=kind)
    g = rng.standard_normal(kw["u"].shape)
    gl = rng.standard_normal((1, 2, 2)) + (1j * rng.standard_normal((1, 2, 2)) if cplx else 0)
    res = selective_scan_vjp(g, **kw, delta_softplus=True, grad_last_state=gl)
    assert set(res) == set(kw)
    step = mpmath.mpf("1e-20")
    with mpmath.workdps(50):
        gm, glm = to_mp(g), _conj(to_mp(gl))
        base = {k: to_mp(v) for k, v in kw.items()}

        def loss(vals):  # L = sum(g out) + Re sum(conj(gl) last)
            out, last = selective_scan_mp(**vals, delta_softplus=True)
            return (out * gm).sum() + mpmath.re((glm * last).sum())

        for name, arr in base.items():
            ref = res[name]
            assert ref.value.shape == kw[name].shape
            for idx in np.ndindex(arr.shape):
                for unit in ((1, 1j) if np.iscomplexobj(kw[name]) else (1,)):
                    diffs = []
                    for sgn in (1, -1):
                        pert = arr.copy()
                        pert[idx] = arr[idx] + sgn * step * unit
                        diffs.append(loss(dict(base, **{name: pert})))
                    fd = (diffs[0] - diffs[1]) / (2 * step)  # error ~ step^2 + 10^-50/step ~ 1e-30
                    got = ref.value[idx].real if unit == 1 else ref.value[idx].imag
                    # oracle: rounded once (half an ulp) + certified error; FD: ~1e-30 relative
                    bound = 0.5 * np.spacing(abs(got)) + ref.error[idx] + 1e-25 * ref.magnitudes["abs_out"][idx]
                    assert abs(float(fd) - got) <= bound, (name, idx, float(fd), got)


def test_vjp_without_optional_inputs_and_softplus():
    rng = np.random.default_rng(20)
    kw = _inputs(rng, b=1, d=2, n=2, length=4, extras=False)
    res = selective_scan_vjp(np.ones((1, 2, 4)), **kw)
    assert set(res) == {"u", "delta", "A", "B", "C"}
    # dL/dC for L = sum(out) with variable C: sum over channels of h_t
    _, last = selective_scan(**kw, return_last_state=True)
    np.testing.assert_allclose(res["C"].value[0, :, -1], last.value[0].sum(axis=0), rtol=1e-14)


# ----------------------------------------------------------------------------------------------
# input checking


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(21)
    kw = _inputs(rng, extras=False)
    with pytest.raises(ValueError, match="u must have shape"):
        selective_scan(**dict(kw, u=np.ones((2, 4))))
    with pytest.raises(ValueError, match="delta must have shape"):
        selective_scan(**dict(kw, delta=np.ones((2, 4, 8))))
    with pytest.raises(ValueError, match="A must have shape"):
        selective_scan(**dict(kw, A=np.ones((5, 3))))
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan(**dict(kw, B=np.ones((2, 3, 8))))
    with pytest.raises(ValueError, match="groups"):
        selective_scan(**dict(kw, B=np.ones((2, 3, 3, 9))))
    with pytest.raises(TypeError, match="complex B/C needs complex A"):
        selective_scan(**dict(kw, C=kw["C"] + 0j))
    with pytest.raises(ValueError, match="interleaved"):
        selective_scan(**dict(kw, A=kw["A"] + 1j))  # complex A needs (b, n, 2l) real B
    with pytest.raises(ValueError, match="D must have shape"):
        selective_scan(**kw, D=np.ones(3))
    with pytest.raises(ValueError, match="non-finite"):
        selective_scan(**dict(kw, u=np.full((2, 4, 9), math.inf)))
    with pytest.raises(ValueError, match="state must have shape"):
        selective_state_update(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3)), np.ones((3, 1)),
                               np.ones((2, 1)), np.ones((2, 1)))


# ----------------------------------------------------------------------------------------------
# the path-weighted bound admits the accurate float32 algorithms (docs/bounds.md)


def _f32_selective(case, decays, chunk=32):
    """out of a float32 selective scan (real A, variable B, C, D, z, delta_bias, softplus), its
    decays formed: "exp" exp(fl(Dt A)) in a loop; "exp2" Triton's exp2(fl(Dt fl(A log2 e))) in
    a loop; "segsum" exp of the float32 sum of the path's exponents within chunks of ``chunk``
    steps (a stable segment sum), the state passed between chunks by exp of the chunk's sum."""
    f = np.float32
    b_, d, l = case.u.shape
    x = case.delta.astype(f) + case.delta_bias.astype(f)[None, :, None]
    Dt = np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))).astype(f)
    A = case.A.astype(f)
    X = (Dt[..., None] * A[None, :, None, :]).astype(f)                    # (b, d, l, n)
    bu = ((Dt * case.u.astype(f))[..., None] * np.swapaxes(case.B, 1, 2)[:, None].astype(f))
    Cx = np.swapaxes(case.C, 1, 2)[:, None].astype(f)
    H = np.zeros(bu.shape, dtype=f)
    if decays in ("exp", "exp2"):
        a = (np.exp(X) if decays == "exp" else
             np.exp2(Dt[..., None] * (A * f(1.4426950408889634))[None, :, None, :])).astype(f)
        h = np.zeros(bu.shape[:2] + bu.shape[3:], dtype=f)
        for t in range(l):
            h = a[:, :, t] * h + bu[:, :, t]
            H[:, :, t] = h
    else:
        carry = np.zeros(bu.shape[:2] + bu.shape[3:], dtype=f)
        for s in range(0, l, chunk):
            e = min(l, s + chunk)
            for t in range(s, e):
                acc = np.exp(np.sum(X[:, :, s:t + 1], axis=2, dtype=f)) * carry
                for j in range(s, t + 1):   # exp(sum_{k=j+1..t} X_k), summed in float32
                    seg = np.zeros_like(carry)
                    for k in range(j + 1, t + 1):
                        seg = (seg + X[:, :, k]).astype(f)
                    acc = (acc + np.exp(seg) * bu[:, :, j]).astype(f)
                H[:, :, t] = acc
            carry = H[:, :, e - 1]
    y = (H * Cx).sum(axis=-1, dtype=f)
    zf = case.z.astype(f)
    out = (y + case.D.astype(f)[None, :, None] * case.u.astype(f)) * (zf / (f(1) + np.exp(-zf)))
    return out.astype(np.float64), H[:, :, -1].astype(np.float64)


@pytest.mark.parametrize("decays", ["exp", "exp2", "segsum"])
def test_path_weighted_tolerance_admits_float32_loops_exp2_and_segment_sums(decays):
    from ssm_conformance.properties import tolerance as tm
    from ssm_conformance.properties.strategies.selective import selective_case_from_seed

    case = selective_case_from_seed(seed=4, b=1, d=2, l=96 if decays == "segsum" else 400, n=4,
                                    D=True, z=True, delta_bias=True)
    exact = {k: v if k in ("delta_softplus", "return_last_state") or v is None else
             np.asarray(v, dtype=np.float32).astype(np.float64)   # the subject's inputs
             for k, v in case.args().items()}
    out_ref, last_ref = selective_scan(**{**exact, "return_last_state": True})
    rounded = type("C", (), {k: exact[k] for k in ("u", "delta", "A", "B", "C", "D", "z",
                                                   "delta_bias")})
    out, last = _f32_selective(rounded, decays)
    for got, ref in ((out, out_ref), (last, last_ref)):
        tol = tm.tolerance(ref, tm.selective_scan_terms(ref), "float32")
        assert np.all(np.abs(got - ref.value) <= tol), np.max(np.abs(got - ref.value) / tol)
        assert np.max(np.abs(got - ref.value) / tol) > 1e-4   # the check can see errors
