"""Certification of the long tier of ssd, causal_conv1d and attention (oracle/long_*.py):

- against the MPFR oracles wherever both run: |tier - MPFR| <= tier bound + MPFR bound + the two
  roundings to float64, forward and VJP, for both working formats (the ratio is printed);
- the magnitudes are the MPFR oracle's (same names, same values up to float64 rounding);
- a precision-doubling-equivalent self-check on long inputs: the float64 tier against the 80-bit
  tier, within the float64 tier's bound;
- bad inputs: ValueError/TypeError naming the argument;
- a long case's printed reproduction (a generator call) runs and rebuilds the same inputs.
"""
from __future__ import annotations

import numpy as np
import pytest

from ssm_conformance.oracle import attention as o_att
from ssm_conformance.oracle import attention_vjp as o_attv
from ssm_conformance.oracle import causal_conv1d as o_conv
from ssm_conformance.oracle import long_attention as t_att
from ssm_conformance.oracle import long_conv1d as t_conv
from ssm_conformance.oracle import long_ssd as t_ssd
from ssm_conformance.oracle import ssd as o_ssd
from ssm_conformance.oracle.extended import LONGDOUBLE_IS_EXTENDED

U64 = 2.0**-53
SUBJECT_DTYPES = ("float32", "float64")   # W = float64, W = long double


def _ratio(tier, ref):
    err = np.abs(tier.value - ref.value)
    bound = tier.error + ref.error + U64 * (np.abs(tier.value) + np.abs(ref.value))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.max(np.where(err == 0, 0.0, err / bound)))


def _check(tier, ref, what):
    r = _ratio(tier, ref)
    print(f"{what}: |tier - MPFR| / bound = {r:.3g}")
    assert r <= 1.0, what
    for name, mag in ref.magnitudes.items():
        got = np.asarray(tier.magnitudes[name], dtype=float)
        want = np.asarray(mag, dtype=float)
        if name == "depth" and got.shape != want.shape or name == "depth" and np.ndim(got):
            continue   # the tier's weighted depth (oracle/long_ssd.py) is its own
        if name == "exp_cond":
            # MPFR: a difference quotient, 1 + 2^-20 above the derivative, and its cancellation
            # errs by ~2^-52 / eps ~ 1e-8 of the abs magnitude (the tier's complex step is exact)
            scale = np.max(ref.magnitudes.get("abs_out", ref.magnitudes.get("abs_state")))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale + 1e-300)
        elif name == "abs_off":   # a difference of two magnitudes: ~1e-16 of abs_out absolute
            scale = np.max(ref.magnitudes.get("abs_out", ref.magnitudes.get("abs_state")))
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13 * scale + 1e-300)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)


def _ssd_inputs(seed, b, l, h, p, g, n):
    rng = np.random.default_rng(seed)
    return dict(x=rng.standard_normal((b, l, h, p)), dt=rng.uniform(0, 1, (b, l, h)),
                A=-rng.uniform(0.05, 2, h), B=rng.standard_normal((b, l, g, n)),
                C=rng.standard_normal((b, l, g, n))), dict(
        D=rng.standard_normal(h), z=rng.standard_normal((b, l, h, p)),
        dt_bias=rng.standard_normal(h), initial_states=rng.standard_normal((b, h, p, n)),
        dt_softplus=True), rng


@pytest.mark.parametrize("subject_dtype", SUBJECT_DTYPES)
@pytest.mark.parametrize("l,chunk", [(37, 8), (70, 5), (130, 64)])
def test_ssd_tier_against_mpfr(subject_dtype, l, chunk):
    args, kw, rng = _ssd_inputs(l, 1, l, 2, 2, 1, 3)
    pos = (args["x"], args["dt"], args["A"], args["B"], args["C"], chunk)
    ref, ref_s = o_ssd.ssd(*pos, return_final_states=True, **kw)
    tier, tier_s = t_ssd.ssd_long(*pos, return_final_states=True, subject_dtype=subject_dtype, **kw)
    _check(tier, ref, f"ssd out l={l} {subject_dtype}")
    _check(tier_s, ref_s, f"ssd final_states l={l} {subject_dtype}")
    cot, gf = rng.standard_normal(args["x"].shape), rng.standard_normal((1, 2, 2, 3))
    refs = o_ssd.ssd_vjp(cot, *pos, grad_final_states=gf, **kw)
    tiers = t_ssd.ssd_vjp_long(cot, *pos, grad_final_states=gf, subject_dtype=subject_dtype, **kw)
    for name in refs:
        _check(tiers[name], refs[name], f"ssd grad_{name} l={l} {subject_dtype}")


@pytest.mark.parametrize("subject_dtype", SUBJECT_DTYPES)
@pytest.mark.parametrize("activation", [None, "silu"])
def test_conv1d_tier_against_mpfr(subject_dtype, activation):
    rng = np.random.default_rng(3)
    x, w, bias = rng.standard_normal((2, 3, 300)) * 4, rng.standard_normal((3, 4)), rng.standard_normal(3)
    _check(t_conv.causal_conv1d_long(x, w, bias, activation, subject_dtype=subject_dtype),
           o_conv.causal_conv1d(x, w, bias, activation), f"conv1d {activation} {subject_dtype}")
    g = rng.standard_normal(x.shape)
    refs = o_conv.causal_conv1d_vjp(g, x, w, bias, activation)
    tiers = t_conv.causal_conv1d_vjp_long(g, x, w, bias, activation, subject_dtype=subject_dtype)
    for name in refs:
        _check(tiers[name], refs[name], f"conv1d grad_{name} {activation} {subject_dtype}")


@pytest.mark.parametrize("subject_dtype", SUBJECT_DTYPES)
@pytest.mark.parametrize("is_causal,scale", [(False, None), (True, 0.7)])
def test_attention_tier_against_mpfr(subject_dtype, is_causal, scale):
    rng = np.random.default_rng(4)
    q = rng.standard_normal((1, 2, 5, 4)) * 3
    k, v = rng.standard_normal((1, 2, 200, 4)) * 3, rng.standard_normal((1, 2, 200, 4))
    _check(t_att.attention_long(q, k, v, is_causal, scale, subject_dtype=subject_dtype),
           o_att.attention(q, k, v, is_causal, scale), f"attention {subject_dtype}")
    g = rng.standard_normal((1, 2, 5, 4))
    refs = o_attv.attention_vjp(q, k, v, g, is_causal, scale)
    tiers = t_att.attention_vjp_long(q, k, v, g, is_causal, scale, subject_dtype=subject_dtype)
    for name in refs:
        _check(tiers[name], refs[name], f"attention grad_{name} {subject_dtype}")


def _self_check(lo, hi, what):
    """The float64 tier against the 80-bit one: within the float64 tier's bound (+ the 80-bit
    tier's and the rounding of both to float64)."""
    r = _ratio(lo, hi)
    print(f"{what}: |W64 - W80| / bound = {r:.3g}")
    assert r <= 1.0, what


@pytest.mark.skipif(not LONGDOUBLE_IS_EXTENDED, reason="long double is float64 here")
def test_long_self_check():
    l = 2**15 + 1
    args, kw, rng = _ssd_inputs(5, 1, l, 2, 1, 1, 2)
    pos = (args["x"], args["dt"], args["A"], args["B"], args["C"], 256)
    _self_check(t_ssd.ssd_long(*pos, subject_dtype="float32", **kw),
                t_ssd.ssd_long(*pos, subject_dtype="float64", **kw), "ssd out")
    cot = rng.standard_normal(args["x"].shape)
    lo = t_ssd.ssd_vjp_long(cot, *pos, subject_dtype="float32", **kw)
    hi = t_ssd.ssd_vjp_long(cot, *pos, subject_dtype="float64", **kw)
    for name in lo:
        _self_check(lo[name], hi[name], f"ssd grad_{name}")
    x, w = rng.standard_normal((1, 2, 2**17)), rng.standard_normal((2, 4))
    _self_check(t_conv.causal_conv1d_long(x, w, None, "silu", subject_dtype="float32"),
                t_conv.causal_conv1d_long(x, w, None, "silu", subject_dtype="float64"), "conv1d")
    q, k, v = (rng.standard_normal((1, 1, m, 8)) for m in (3, 2**14, 2**14))
    _self_check(t_att.attention_long(q, k, v, subject_dtype="float32"),
                t_att.attention_long(q, k, v, subject_dtype="float64"), "attention")


def test_bad_inputs_name_the_argument():
    x = np.zeros((1, 4, 1, 1))
    with pytest.raises(ValueError, match="dt"):
        t_ssd.ssd_long(x, np.zeros((1, 3, 1)), np.zeros(1), np.zeros((1, 4, 1, 1)),
                       np.zeros((1, 4, 1, 1)), 2)
    with pytest.raises(ValueError, match="chunk_size"):
        t_ssd.ssd_long(x, np.zeros((1, 4, 1)), np.zeros(1), np.zeros((1, 4, 1, 1)),
                       np.zeros((1, 4, 1, 1)), 0)
    with pytest.raises(ValueError, match="subject_dtype"):
        t_conv.causal_conv1d_long(np.zeros((1, 1, 4)), np.zeros((1, 2)), subject_dtype="int8")
    with pytest.raises(ValueError, match="weight"):
        t_conv.causal_conv1d_long(np.zeros((1, 2, 4)), np.zeros((1, 2)))
    with pytest.raises(TypeError, match="is_causal"):
        t_att.attention_long(np.zeros((1, 2, 4)), np.zeros((1, 3, 4)), np.zeros((1, 3, 4)), "yes")
    with pytest.raises(ValueError, match="grad_out"):
        t_att.attention_vjp_long(np.zeros((1, 2, 4)), np.zeros((1, 3, 4)), np.zeros((1, 3, 4)),
                                 np.zeros((1, 3, 4)))


def test_long_reproduction_runs():
    """The reproduction printed for a long case is a generator call that runs and rebuilds the
    same tensors the subject received."""
    from ssm_conformance.properties.harness import SubjectUnderTest
    from ssm_conformance.properties.roles import ROLES
    from ssm_conformance.properties.strategies.ssd import long_ssd_cases
    from ssm_conformance.properties.subjects import Subject
    from tests.subjects.long_wrong_mixers import ssd_blocked_correct

    case = long_ssd_cases()[0]
    target = "tests.subjects.long_wrong_mixers:ssd_blocked_correct"
    sut = SubjectUnderTest(Subject("ssd", target, ssd_blocked_correct), ROLES["ssd"], "float32")
    text = sut.describe(case)
    assert "ssd_case_from_seed(" in text and len(text) < 2000, text
    ns = {"ssd_blocked_correct": ssd_blocked_correct}
    exec(text, ns)  # noqa: S102 - the suite's own printed reproduction
    for name, value in sut.inputs(case).items():
        if hasattr(value, "equal"):
            assert value.equal(ns["args"][name]), name
    out = ns["out"][0] if isinstance(ns["out"], tuple) else ns["out"]
    assert out.shape == case.x.shape
