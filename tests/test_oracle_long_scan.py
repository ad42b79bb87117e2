"""The long tier of linear_scan, selective_scan and selective_state_update (oracle/long_scan.py).

Certified three ways:
- against the multiple-precision oracle where both run: the tier's value BEFORE its final
  rounding to float64 (in W: float64, or 80-bit long double) differs from the exact result by less
  than its derived bound (Reference.error); the ratio true error / bound is printed (-s);
- on long inputs (l = 2^16, 2^17), the float64 tier (for float32 subjects) against the long-double
  tier (for float64 subjects): the same definition in two formats, 11 bits apart, must agree
  within the sum of their bounds (the long-double result stands in for the exact one: its own
  bound is 2^-11 of the float64 tier's);
- the tolerance built from its magnitudes (depth growing with l) admits accurate algorithms at
  l = 2^17: our kernels, a chunked scan, a Hillis-Steele tree, mamba-ssm's pure-torch references
  (skipped, with the reason, where their sources do not load).
Bad inputs raise ValueError/TypeError naming the argument.
"""
from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest
import torch

from ssm_conformance.oracle import long_scan
from ssm_conformance.oracle import selective_scan as oracle_ss
from ssm_conformance.oracle.extended import LONGDOUBLE_IS_EXTENDED
from ssm_conformance.oracle.scan import _scan_rows, _to_mp_flat
from ssm_conformance.properties import tolerance as tm
from ssm_conformance.properties.harness import subject_inputs
from ssm_conformance.properties.strategies.scans import scan_case_from_seed
from ssm_conformance.properties.strategies.selective import selective_case_from_seed
from tests.subjects import mamba_refs, selective_correct

SUBJECTS = ("float32", "float64")   # W = float64, W = long double
U64 = 2.0**-53


def _mp(x):
    """A float64 or long double (real or complex) number -> mpmath, exactly."""
    if np.iscomplexobj(x):
        return mpmath.mpc(_mp(np.real(x)), _mp(np.imag(x)))
    m, e = np.frexp(x)
    return mpmath.ldexp(mpmath.mpf(int(np.ldexp(m, 64))), int(e) - 64)


def _true_error(w_values, exact):
    """|w - exact| elementwise (float64), w in W, exact an object array of mpmath numbers."""
    w = np.asarray(w_values)
    out = np.empty(w.shape)
    with mpmath.workdps(60):
        for idx in np.ndindex(w.shape):
            out[idx] = float(abs(_mp(w[idx]) - exact[idx]))
    return out


def _ratio(err, bound):
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.max(np.where(err == 0, 0.0, err / bound)))


# ----------------------------------------------------------------------------------------------
# against the multiple-precision oracle


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("kind,cplx", [("near_one", False), ("uniform", True),
                                       ("selective", False), ("zeros_and_ones", True)])
def test_linear_scan_tier_within_its_bound(subject, kind, cplx):
    case = scan_case_from_seed(seed=11, shape=(2, 600), a_kind=kind, complex=cplx)
    h, bound, _ = long_scan.linear_scan_w(case.a, case.b, subject)
    with mpmath.workdps(60):
        exact = _scan_rows(_to_mp_flat(case.a).reshape(2, 600),
                           _to_mp_flat(case.b).reshape(2, 600))
        err = _true_error(h, exact)
    ratio = _ratio(err, bound)
    print(f"linear_scan tier ({subject} subjects, {kind}, complex={cplx}): "
          f"true error / bound = {ratio:.3g}")
    assert ratio <= 1.0


SELECTIVE_CONFIGS = [
    dict(b=2, d=2, l=150, n=3, A="lognormal", delta="typical", softplus=True, D=True, z=True,
         delta_bias=True),
    dict(b=1, d=2, l=130, n=2, A="mixed", delta="mixed", softplus=True, B="grouped", C="constant",
         g=2, complex_A=True),
    dict(b=1, d=1, l=200, n=4, A="near_zero", delta="large", softplus=False, delta_bias=True),
]


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("config", range(len(SELECTIVE_CONFIGS)))
def test_selective_scan_tier_within_its_bound(subject, config):
    case = selective_case_from_seed(seed=21 + config, **SELECTIVE_CONFIGS[config])
    args = {k: v for k, v in case.args().items() if k != "return_last_state"}
    out_ref, last_ref, (out_w, last_w) = long_scan.selective_scan_w(**args,
                                                                    subject_dtype=subject)
    with mpmath.workdps(60):
        exact_out, exact_last = oracle_ss.selective_scan_mp(**args)
        err_out, err_last = _true_error(out_w, exact_out), _true_error(last_w, exact_last)
    ratios = (_ratio(err_out, out_ref.error), _ratio(err_last, last_ref.error))
    print(f"selective_scan tier ({subject} subjects, config {config}): true error / bound = "
          f"{ratios[0]:.3g} (out), {ratios[1]:.3g} (last state)")
    assert max(ratios) <= 1.0
    # the same magnitudes as the multiple-precision oracle's (names and values)
    ref = oracle_ss.selective_scan(**args)
    assert set(ref.magnitudes) == set(out_ref.magnitudes)
    np.testing.assert_allclose(out_ref.magnitudes["abs_out"], ref.magnitudes["abs_out"],
                               rtol=1e-12)
    np.testing.assert_array_equal(out_ref.magnitudes["depth"], ref.magnitudes["depth"])
    # exp_cond is a difference quotient of two float64 magnitude passes (oracle_ss.exp_cond_of),
    # its noise ~2^-33 path abs_out; it must agree far below the depth term it is added to
    m = ref.magnitudes
    assert np.all(np.abs(out_ref.magnitudes["exp_cond"] - m["exp_cond"])
                  <= 1e-6 * (m["depth"] * m["abs_out"] + m["exp_cond"]))


@pytest.mark.parametrize("subject", SUBJECTS)
def test_decode_sequence_tier_within_its_bound(subject):
    """l decode steps from a nonzero state: the scan from that state, exactly (MPFR)."""
    case = selective_case_from_seed(seed=5, b=2, d=2, l=120, n=3, A="lognormal", D=True, z=True,
                                    delta_bias=True)
    state = np.random.default_rng(5).standard_normal((2, 2, 3)) * 4
    args = dict(u=case.u, delta=case.delta, A=case.A, B=case.B, C=case.C, D=case.D, z=case.z,
                delta_bias=case.delta_bias)
    out_ref, last_ref, (out_w, last_w) = long_scan.selective_scan_w(
        **args, delta_softplus=True, subject_dtype=subject, state=state)
    u, delta, A, Bi, Ci, D, z, bias, _ = oracle_ss._check_inputs(*args.values())
    with mpmath.workdps(60), oracle_ss.hp_context():
        lv = oracle_ss._leaves_mp(oracle_ss._raw(u, delta, A, Bi, Ci, D, z, bias), Bi, Ci, True)
        out, _, last, _ = oracle_ss.forward_core(lv["dA"], lv["bu"], lv["Cx"], lv["Du"],
                                                 lv["gate"], False, oracle_ss.MP,
                                                 h0=oracle_ss.mp_of(state))
        exact_out, exact_last = oracle_ss.to_mpmath(out), oracle_ss.to_mpmath(last)
    with mpmath.workdps(60):
        ratios = (_ratio(_true_error(out_w, exact_out), out_ref.error),
                  _ratio(_true_error(last_w, exact_last), last_ref.error))
    print(f"decode sequence tier ({subject} subjects): true error / bound = {ratios}")
    assert max(ratios) <= 1.0
    # the public decode-form entry point gives the same references
    seq_out, seq_last = long_scan.selective_state_update_sequence(
        state, case.u, case.delta, case.A, case.B, case.C, case.D, case.z, case.delta_bias, True,
        subject_dtype=subject)
    np.testing.assert_array_equal(seq_out.value, out_ref.value)
    np.testing.assert_array_equal(seq_last.value, last_ref.value)


def _vjp_within(tier, mp_ref):
    """|tier - oracle| <= both bounds + the two roundings to float64; returns the ratio."""
    diff = np.abs(tier.value - mp_ref.value)
    bound = tier.error + mp_ref.error + U64 * (np.abs(tier.value) + np.abs(mp_ref.value))
    return _ratio(diff, bound)


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("config", range(len(SELECTIVE_CONFIGS)))
def test_selective_scan_vjp_tier_matches_oracle(subject, config):
    case = selective_case_from_seed(seed=31 + config, **SELECTIVE_CONFIGS[config])
    args = {k: v for k, v in case.args().items() if k != "return_last_state"}
    tier = long_scan.selective_scan_vjp(case.cotangent, **args, subject_dtype=subject)
    ref = oracle_ss.selective_scan_vjp(case.cotangent, **args)
    assert set(tier) == set(ref)
    ratios = {k: _vjp_within(tier[k], ref[k]) for k in ref}
    print(f"selective_scan_vjp tier ({subject} subjects, config {config}): {ratios}")
    assert max(ratios.values()) <= 1.0
    for k in ref:
        assert tier[k].value.shape == ref[k].value.shape
        assert tier[k].magnitudes["depth"] == ref[k].magnitudes["depth"]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_linear_scan_vjp_tier_matches_oracle(subject):
    from ssm_conformance.oracle import scan as oracle_scan
    case = scan_case_from_seed(seed=3, shape=(2, 300), a_kind="near_one", complex=True)
    tier = long_scan.linear_scan_vjp(case.a, case.b, case.cotangent, subject)
    ref = oracle_scan.linear_scan_vjp(case.a, case.b, case.cotangent)
    ratios = {k: _vjp_within(tier[k], ref[k]) for k in "ab"}
    print(f"linear_scan_vjp tier ({subject} subjects): {ratios}")
    assert max(ratios.values()) <= 1.0


# ----------------------------------------------------------------------------------------------
# self-check on long inputs: the float64 tier against the long-double tier


def test_long_self_check_linear_scan():
    case = scan_case_from_seed(seed=7, shape=(2, 2**17), a_kind="near_one", complex=True)
    h32, b32, _ = long_scan.linear_scan_w(case.a, case.b, "float32")
    h64, b64, _ = long_scan.linear_scan_w(case.a, case.b, "float64")
    diff = np.abs(h32.astype(h64.dtype) - h64).astype(np.float64)
    ratio = _ratio(diff, b32 + b64)
    print(f"linear_scan l = 2^17: |float64 tier - long double tier| / bounds = {ratio:.3g}; "
          f"long double is {'80-bit' if LONGDOUBLE_IS_EXTENDED else 'float64'}")
    assert ratio <= 1.0


@pytest.mark.parametrize("complex_A", [False, True])
def test_long_self_check_selective_scan(complex_A):
    case = selective_case_from_seed(seed=8, b=1, d=2, l=2**16, n=2, A="mixed", delta="mixed",
                                    D=True, z=True, delta_bias=True, complex_A=complex_A)
    args = {k: v for k, v in case.args().items() if k != "return_last_state"}
    o32, l32, (v32, w32) = long_scan.selective_scan_w(**args, subject_dtype="float32")
    o64, l64, (v64, w64) = long_scan.selective_scan_w(**args, subject_dtype="float64")
    r_out = _ratio(np.abs(v32.astype(v64.dtype) - v64).astype(np.float64), o32.error + o64.error)
    r_last = _ratio(np.abs(w32.astype(w64.dtype) - w64).astype(np.float64), l32.error + l64.error)
    print(f"selective_scan l = 2^16, complex A {complex_A}: |float64 tier - long double tier| / "
          f"bounds = {r_out:.3g} (out), {r_last:.3g} (last state)")
    assert max(r_out, r_last) <= 1.0
    # and the gradients (rounded to float64: both roundings added)
    g32 = long_scan.selective_scan_vjp(case.cotangent, **args, subject_dtype="float32")
    g64 = long_scan.selective_scan_vjp(case.cotangent, **args, subject_dtype="float64")
    ratios = {k: _vjp_within(g32[k], g64[k]) for k in g32}
    print(f"  gradients: {ratios}")
    assert max(ratios.values()) <= 1.0


# ----------------------------------------------------------------------------------------------
# the tolerance admits accurate algorithms at l = 2^17


def _inputs(case, role, dtype):
    """harness.subject_inputs outside a property (its finiteness ``assume`` warns there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return subject_inputs(case, role, dtype)


def _selective_ratio(fn, case, dtype):
    args = _inputs(case, "selective_scan", dtype)
    exact = {k: (v.detach().double().numpy() if v.dtype.is_floating_point else
                 v.detach().to(torch.complex128).numpy()) if isinstance(v, torch.Tensor) else v
             for k, v in args.items()}
    out, last = fn(*args.values())
    ref, ref_last = long_scan.selective_scan(**exact, subject_dtype=dtype)
    ratios = []
    for got, r, out_dtype in ((out, ref, dtype), (last, ref_last, "float32"
                                                  if dtype != "float64" else "float64")):
        got = got.detach().to(torch.complex128 if got.is_complex() else torch.float64).numpy()
        tol = tm.tolerance(r, tm.selective_scan_terms(r), out_dtype)
        ratios.append(_ratio(np.abs(got - r.value), tol))
    return max(ratios)


LONG = 2**17


def _long_selective_case(complex_A=False):
    return selective_case_from_seed(seed=17, b=1, d=1, l=LONG, n=2, A="lognormal",
                                    delta="typical", D=True, z=True, delta_bias=True,
                                    last_state=True, complex_A=complex_A)


@pytest.mark.parametrize("name,dtypes", [
    ("ours", ("float32", "float64", "bfloat16")),
    ("chunked", ("float32",)), ("tree", ("float32",)), ("mamba_ssm", ("float32",))])
def test_tolerance_admits_accurate_selective_scans_at_2_17(name, dtypes):
    from ssm_conformance.implementations.torch import mamba
    if name == "mamba_ssm":
        ok, why = mamba_refs.available("mamba_ssm")
        if not ok:
            pytest.skip(why)
    fn = {"ours": mamba.selective_scan, "chunked": selective_correct.selective_scan_chunked,
          "tree": selective_correct.selective_scan_tree,
          "mamba_ssm": mamba_refs.selective_scan}[name]
    case = _long_selective_case(complex_A=(name == "chunked"))
    for dtype in dtypes:
        ratio = _selective_ratio(fn, case, dtype)
        print(f"selective_scan {name} [{dtype}] l = 2^17: max error / tolerance = {ratio:.3g}")
        assert ratio <= 1.0


def _chunked_linear_scan(a, b, chunk=2048):
    """A two-level scan over chunks of ``chunk`` steps, in torch (float32 in, float32 out)."""
    l = a.shape[-1]
    nc = -(-l // chunk)
    pad = nc * chunk - l
    a = torch.cat([a, torch.ones(*a.shape[:-1], pad, dtype=a.dtype)], -1)
    b = torch.cat([b, torch.zeros(*b.shape[:-1], pad, dtype=b.dtype)], -1)
    a = a.reshape(*a.shape[:-1], nc, chunk)
    b = b.reshape(*b.shape[:-1], nc, chunk)
    P = torch.cumprod(a, -1)
    h = b.clone()
    for t in range(1, chunk):
        h[..., t] = a[..., t] * h[..., t - 1] + b[..., t]
    carry = torch.zeros_like(h[..., 0, 0])
    out = []
    for c in range(nc):
        out.append(h[..., c, :] + P[..., c, :] * carry[..., None])
        carry = out[-1][..., -1]
    return torch.cat(out, -1)[..., :l]


@pytest.mark.parametrize("name,dtypes", [
    ("ours", ("float32", "float64", "bfloat16")), ("parallel", ("float32", "float64", "bfloat16")),
    ("chunked", ("float32",)), ("mambapy", ("float32",))])
def test_tolerance_admits_accurate_linear_scans_at_2_17(name, dtypes):
    from ssm_conformance.implementations.torch import scan
    if name == "mambapy":
        ok, why = mamba_refs.available("mambapy")
        if not ok:
            pytest.skip(why)
    fn = {"ours": scan.linear_scan, "parallel": scan.linear_scan_parallel,
          "chunked": _chunked_linear_scan, "mambapy": mamba_refs.linear_scan}[name]
    case = scan_case_from_seed(seed=19, shape=(2, LONG), a_kind="near_one")
    for dtype in dtypes:
        args = _inputs(case, "linear_scan", dtype)
        exact = {k: v.double().numpy() for k, v in args.items()}
        h = fn(*args.values()).double().numpy()
        ref = long_scan.linear_scan(exact["a"], exact["b"], subject_dtype=dtype)
        tol = tm.tolerance(ref, [(ref.magnitudes["depth"], ref.magnitudes["abs_scan"])], dtype)
        ratio = _ratio(np.abs(h - ref.value), tol)
        print(f"linear_scan {name} [{dtype}] l = 2^17: max error / tolerance = {ratio:.3g}")
        assert ratio <= 1.0


# ----------------------------------------------------------------------------------------------
# bad inputs


def test_bad_inputs_name_the_argument():
    a = np.ones((2, 5))
    with pytest.raises(ValueError, match="a and b"):
        long_scan.linear_scan(a, np.ones((2, 4)))
    with pytest.raises(TypeError, match="a must be"):
        long_scan.linear_scan(np.array([["x"]]), a)
    with pytest.raises(ValueError, match="subject_dtype"):
        long_scan.linear_scan(a, a, subject_dtype="int8")
    with pytest.raises(ValueError, match="cotangent"):
        long_scan.linear_scan_vjp(a, a, np.ones(3))
    case = selective_case_from_seed(seed=1, l=8)
    args = {k: v for k, v in case.args().items() if k != "return_last_state"}
    with pytest.raises(ValueError, match="delta"):
        long_scan.selective_scan(**{**args, "delta": np.ones((1, 1, 7))})
    with pytest.raises(ValueError, match="state"):
        long_scan.selective_state_update_sequence(np.ones((1, 1, 3)), case.u, case.delta,
                                                  case.A, case.B, case.C)
    with pytest.raises(ValueError, match="B must have shape"):
        long_scan.selective_state_update_sequence(np.zeros((1, 1, 2)), case.u, case.delta,
                                                  case.A, case.A, case.C)
    with pytest.raises(ValueError, match="grad_out"):
        long_scan.selective_scan_vjp(np.ones(3), **args)
    with pytest.raises(ValueError, match="non-finite"):
        long_scan.selective_scan(**{**args, "u": np.full((1, 1, 8), np.nan)})
