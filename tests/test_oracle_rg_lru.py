"""The rg_lru oracle (oracle/rg_lru.py): its value against an independent scalar mpmath loop of the
contract's formulas; its VJP against finite differences of that loop at 50 digits; the long tier
against the MPFR oracle within the tier's own bound; the bound itself: it admits the accurate
m = sqrt(-expm1(2 log a)) (our NumPy kernels, float32 and float64) and rejects the cancelling
sqrt(1 - exp(2 log a)) exactly where near_one_decay is drawn; bad inputs."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest

from ssm_conformance.implementations.numpy import rg_lru as np_rg
from ssm_conformance.oracle import rg_lru as o
from ssm_conformance.properties.strategies.rg_lru import rg_lru_case_from_seed
from ssm_conformance.properties.test_rg_lru import terms
from ssm_conformance.properties.tolerance import tolerance


def _case(seed, b=2, l=9, d=3, **kw):
    kw.setdefault("reset", True)
    kw.setdefault("h0", True)
    return rg_lru_case_from_seed(seed, b, l, d, **kw)


def _loop(case, dps=50, **override):
    """y by the contract's formulas, element by element, in mpmath."""
    args = dict(x=case.x, gx=case.gate_x, ga=case.gate_a, c=case.a_param, h0=case.h0)
    args.update(override)
    b, l, d = case.shape
    with mpmath.workdps(dps):
        sig = lambda z: 1 / (1 + mpmath.exp(-z))  # noqa: E731
        y = np.empty((b, l, d), dtype=object)
        for i in range(b):
            for k in range(d):
                sp = mpmath.log(1 + mpmath.exp(mpmath.mpf(args["c"][k])))
                h = mpmath.mpf(0) if args["h0"] is None else mpmath.mpf(args["h0"][i, k])
                for t in range(l):
                    a = mpmath.exp(-8 * sig(mpmath.mpf(args["ga"][i, t, k])) * sp)
                    inp = sig(mpmath.mpf(args["gx"][i, t, k])) * mpmath.mpf(args["x"][i, t, k])
                    if case.reset is not None and case.reset[i, t]:
                        h = inp
                    else:
                        h = a * h + mpmath.sqrt(1 - a * a) * inp
                    y[i, t, k] = h
    return y


def _args(case):
    return dict(x=case.x, gate_x=case.gate_x, gate_a=case.gate_a, a_param=case.a_param,
                reset=case.reset, h0=case.h0)


@pytest.mark.parametrize("seed,near_one", [(1, False), (2, True), (3, False)])
def test_value_matches_an_independent_loop(seed, near_one):
    case = _case(seed, near_one=near_one)
    y, last = o.rg_lru(**_args(case), return_last_state=True)
    exact = np.vectorize(float)(_loop(case))
    assert np.all(np.abs(y.value - exact) <= 2**-52 * np.abs(exact) + y.error + 1e-300)
    assert np.array_equal(last.value, y.value[:, -1])
    assert np.all(y.magnitudes["abs"] >= np.abs(y.value) * (1 - 1e-15))


@pytest.mark.parametrize("seed", [4, 5])
def test_vjp_matches_finite_differences(seed):
    case = _case(seed, b=1, l=6, d=2)
    v = case.cotangent
    grads = o.rg_lru_vjp(v, **_args(case))
    assert set(grads) == {"x", "gate_x", "gate_a", "a_param", "h0"}
    step = mpmath.mpf(10) ** -20
    for name, key in (("x", "x"), ("gate_x", "gx"), ("gate_a", "ga"), ("a_param", "c"),
                      ("h0", "h0")):
        base = getattr(case, name)
        for idx in list(np.ndindex(base.shape))[:5]:
            def loss(sign):
                shifted = base.astype(object).copy()
                shifted[idx] = mpmath.mpf(base[idx]) + sign * step
                return sum(float(v[j]) * y for j, y in np.ndenumerate(
                    _loop(case, dps=60, **{key: shifted})))
            with mpmath.workdps(60):
                fd = float((loss(1) - loss(-1)) / (2 * step))
            assert abs(grads[name].value[idx] - fd) <= 1e-13 * (1 + abs(fd)), (name, idx)


@pytest.mark.parametrize("subject_dtype", ["float32", "float64"])
def test_long_tier_within_its_bound_of_the_oracle(subject_dtype):
    case = _case(7, b=2, l=300, d=2, near_one=True)
    ref, ref_last = o.rg_lru(**_args(case), return_last_state=True)
    tier, tier_last = o.rg_lru_tier(**_args(case), return_last_state=True,
                                    subject_dtype=subject_dtype)
    u64 = 2.0**-53
    for r, t in ((ref, tier), (ref_last, tier_last)):
        assert np.all(np.abs(r.value - t.value) <= t.error + r.error + 2 * u64 * np.abs(r.value))
    gref = o.rg_lru_vjp(case.cotangent, **_args(case))
    gtier = o.rg_lru_vjp_tier(case.cotangent, **_args(case), subject_dtype=subject_dtype)
    for name in gref:
        r, t = gref[name], gtier[name]
        assert np.all(np.abs(r.value - t.value) <= t.error + r.error + 2 * u64 * np.abs(r.value)
                      + 1e-300), name
        np.testing.assert_allclose(r.magnitudes["weighted"], t.magnitudes["weighted"])


def _cancelling(x, gate_x, gate_a, a_param, reset=None, h0=None):
    """The sequential kernel with m = sqrt(1 - exp(2 log a)), in x's dtype."""
    dt = x.dtype.type
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    log_a = dt(-8) * sig(gate_a) * np.logaddexp(a_param, dt(0))
    a = np.exp(log_a)
    m = np.sqrt(dt(1) - np.exp(2 * log_a))
    if reset is not None:
        a = np.where(reset[..., None], dt(0), a)
        m = np.where(reset[..., None], dt(1), m)
    bb = m * sig(gate_x) * x
    h = np.zeros_like(bb[:, 0]) if h0 is None else h0
    out = np.empty_like(bb)
    for t in range(bb.shape[1]):
        h = a[:, t] * h + bb[:, t]
        out[:, t] = h
    return out


def _ratio(fn, case, dtype):
    args = {k: (None if v is None else (v.astype(dtype) if k != "reset" else v))
            for k, v in _args(case).items()}
    got = np.asarray(fn(**args), dtype=np.float64)
    exact = {k: (None if v is None else (v.astype(np.float64) if k != "reset" else v))
             for k, v in args.items()}
    ref = o.rg_lru(**exact)
    name = "float32" if dtype == np.float32 else "float64"
    return float(np.max(np.abs(got - ref.value) / tolerance(ref, terms(ref), name)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn", [np_rg.rg_lru, np_rg.rg_lru_parallel])
def test_bound_admits_the_accurate_kernels(fn, dtype):
    worst = max(_ratio(fn, _case(s, l=64, d=4, near_one=s % 2 == 0), dtype) for s in range(8))
    assert worst <= 0.5, worst


def test_bound_rejects_the_cancelling_form_near_one_only():
    near = [_ratio(_cancelling, _case(s, l=64, d=4, near_one=True), np.float32)
            for s in range(4)]
    away = [_ratio(_cancelling, _case(s, l=64, d=4, near_one=False), np.float32)
            for s in range(4)]
    assert min(near) > 10.0, near
    assert max(away) <= 1.0, away


def test_bad_inputs():
    case = _case(9)
    args = _args(case)
    with pytest.raises(ValueError, match="a_param"):
        o.rg_lru(**{**args, "a_param": case.a_param[:-1]})
    with pytest.raises(ValueError, match="reset"):
        o.rg_lru(**{**args, "reset": case.reset[:, :-1]})
    with pytest.raises(ValueError, match="h0"):
        o.rg_lru(**{**args, "h0": case.h0[:, :-1]})
    with pytest.raises(ValueError, match="x must have shape"):
        o.rg_lru(**{**args, "x": case.x[0]})
    with pytest.raises(TypeError, match="reset"):
        o.rg_lru(**{**args, "reset": case.reset * 2.5})
    with pytest.raises(ValueError, match="non-finite"):
        o.rg_lru(**{**args, "gate_a": case.gate_a * np.nan})


def test_torch_kernels_reject_bad_inputs_and_agree_with_numpy():
    import torch

    from ssm_conformance.implementations.torch import rg_lru as torch_rg
    case = _case(10, l=33)
    t = {k: torch.tensor(v) for k, v in _args(case).items()}
    for fn in (torch_rg.rg_lru, torch_rg.rg_lru_parallel):
        y, last = fn(**t, return_last_state=True)
        want = np_rg.rg_lru(**_args(case))
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-12, atol=1e-14)
        assert torch.equal(last, y[:, -1])
        with pytest.raises(TypeError, match="reset"):
            fn(**{**t, "reset": t["reset"].double()})
        with pytest.raises(ValueError, match="a_param"):
            fn(**{**t, "a_param": t["a_param"][:-1]})
        with pytest.raises(ValueError, match="h0"):
            fn(**{**t, "h0": t["h0"][:, :-1]})
        with pytest.raises(TypeError, match="x"):
            fn(**{**t, "x": case.x})
