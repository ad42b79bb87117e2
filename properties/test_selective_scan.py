"""``selective_scan`` (Mamba-1, semantics of mamba-ssm's ``selective_scan_ref``) against the
multiple-precision oracle (oracle/selective_scan.py), forward and, with --ssm-grad, backward; and
the structural properties every correct kernel has. Bounds: properties/tolerance.py, "Mamba
selective scan" (SAFETY u (depth abs + exp_cond) + rounding); inputs:
properties/strategies/selective.py.

- matches_oracle: out, and the last state when asked for, within the tolerance.
- vjp_matches_oracle: gradients of sum(cotangent * out) w.r.t. u, delta, A, B, C, D, z,
  delta_bias, against the oracle's adjoint. Inputs keep exp(Dt A) >= e^-80 (normal in float32):
  below, gradual underflow errs beyond what the tolerance model counts (strategies/selective.py,
  _limit_decay).
- causal: out[..., :t] is the same whatever the inputs at steps >= t are.
- batch_independent: a batch element computed alone gives what it gives within the batch.
- state_carry: the last state after u[..., :t] is the state the scan continues from.
- non_contiguous: the same inputs in dense non-contiguous layouts give the same result.

The last four compare two results of the subject that are, exactly, the same number. Each is
within its own tolerance of that number (matches_oracle's bound), so they may differ by up to
the sum of the two tolerances (tolerance.pair_tol), and no more. Bitwise equality would be too
strict: an accurate kernel may choose its blocking, chunking or reduction order from the shapes
(ours blocks time by 2^18 / (b d n) steps; a GPU kernel picks chunks and launch sizes), or scale
by data-dependent factors, and then two calls round differently -- legitimately. Twice the
tolerance is still orders of magnitude below what a non-causal or batch-mixing kernel errs by.
These properties need only the tolerance's magnitudes, which the oracle's float64 magnitude pass
gives at any size (``scan_magnitudes``), so they run on inputs up to 2^20 elements: long
sequences and large b*d*n that cross kernels' block boundaries, beyond the multiple-precision
oracle's reach.

The last state may come back in the compute dtype (float32 for float32 and half dtypes, float64
for float64) or in A's dtype (mamba-ssm's ``selective_scan_ref`` returns it in A's dtype: float32,
as A is an fp32 weight); complex for complex A. It is judged with the rounding of the dtype it has.

Long sequences (issue 11): matches_oracle and vjp_matches_oracle judge explicit long cases in
every profile (lengths up to 2^17 + 1, strategies/long_sequences.py, shared between the two) and
draw a few long ones; beyond the multiple-precision oracle's budget the reference is the long
tier (oracle/long_scan.py: float64, or 80-bit long double for float64 subjects, with its own
derived error bound in Reference.error, which the tolerance adds).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssm_conformance.oracle import long_scan
from ssm_conformance.oracle import selective_scan as oracle_ss
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.properties import tolerance as tm
from ssm_conformance.properties.harness import (Output, oracle, skip_if_forced,
                                                skip_unless_grad, skip_unless_non_contiguous)
from ssm_conformance.properties.options import enabled
from ssm_conformance.properties.strategies.common import seeds
from ssm_conformance.properties.strategies.long_sequences import (BACKWARD_LENGTHS,
                                                                 FORWARD_LENGTHS, with_explicit)
from ssm_conformance.properties.strategies.selective import (LAYOUTS, METAMORPHIC_ELEMENTS,
                                                            ORACLE_ELEMENTS, batch_element,
                                                            explicit_selective,
                                                            long_selective_cases,
                                                            redraw_after, selective_case_from_seed,
                                                            selective_cases, split_cases, strided,
                                                            time_slice)

OPTIONAL = ("D", "z", "delta_bias")
ORACLE_ARGS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "delta_softplus")


# --- helpers -------------------------------------------------------------------------------------

def _compute_dtype(sut):
    return "float64" if sut.dtype == "float64" else "float32"


def _last_dtype(sut, raw):
    """The dtype the last state is judged in: the compute dtype, or A's (float32) as mamba-ssm's
    reference returns it; anything else is judged as the compute dtype (and so rejected)."""
    allowed = {_compute_dtype(sut), "float32"}
    if isinstance(raw, (tuple, list)) and len(raw) == 2 and hasattr(raw[1], "dtype"):
        import torch
        real = {torch.complex64: "float32", torch.complex128: "float64"}.get(
            raw[1].dtype, str(raw[1].dtype).split(".")[-1])
        if real in allowed:
            return real
    return _compute_dtype(sut)


def _outputs(sut, case, raw):
    """(out (b, d, l), last state (b, d, n) or None, its dtype) as float64/complex128 arrays."""
    b, d, l, n = case.shape
    if not case.return_last_state:
        (out,) = sut.outputs(raw, [Output("out", (b, d, l))])
        return out, None, None
    ld = _last_dtype(sut, raw)
    out, last = sut.outputs(raw, [Output("out", (b, d, l)),
                                  Output("last_state", (b, d, n),
                                         "complex" if case.complex else "real", ld)])
    return out, last, ld


def _oracle_kwargs(sut, case):
    exact = sut.exact(case)
    return {k: exact[k] for k in ORACLE_ARGS}


def scan_magnitudes(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The oracle's float64 magnitude pass alone (no multiple-precision values): Reference-shaped
    (out, last state) whose "value" is the magnitude abs_out / abs_state (>= |exact value|, so
    the tolerance's output-rounding term stays an upper bound), with the magnitudes
    "abs_out"/"abs_state", "exp_cond", "path", "local_depth", "depth" exactly as
    oracle_ss.selective_scan computes them
    (same functions of oracle/selective_scan.py)."""
    u, delta, A, Bi, Ci, D, z, delta_bias, cplx = oracle_ss._check_inputs(u, delta, A, B, C, D, z,
                                                                          delta_bias)
    length, n = u.shape[-1], A.shape[1]

    def run_abs(lv):
        out, _, last, _ = oracle_ss.forward_core(lv["dA"], lv["bu"], lv["Cx"], lv["Du"],
                                                 lv["gate"], cplx, oracle_ss.ABS)
        return [out, last]

    leaves, weights, path = oracle_ss._leaves_abs(u, delta, A, Bi, Ci, D, z, delta_bias,
                                                  delta_softplus)
    (abs_out, abs_last), (cond_out, cond_last) = oracle_ss.exp_cond_of(run_abs, leaves, weights,
                                                                       path)
    paths = oracle_ss.forward_paths(leaves, cplx)
    out_mag, last_mag = oracle_ss.sequence_magnitudes(abs_out, cond_out, abs_last, cond_last,
                                                      paths, length, n)
    return (Reference(abs_out, np.zeros_like(abs_out), out_mag),
            Reference(abs_last, np.zeros_like(abs_last), last_mag))


def _sliced(ref, index):
    """A magnitude Reference restricted to ``index`` (of the output's shape)."""
    shape = np.shape(ref.value)
    mags = {k: (np.broadcast_to(v, shape)[index] if np.ndim(v) else v)
            for k, v in ref.magnitudes.items()}
    return Reference(np.asarray(ref.value)[index], np.asarray(ref.error)[index], mags)


def _pair(name, got, other, mag_ref, out_dtype=None):
    """A judge check of ``got`` against ``other``, two results of the subject that are exactly the
    same number: |got - other| <= 2 tol (tolerance.pair_tol; tol from the magnitudes)."""
    terms = tm.selective_scan_terms(mag_ref)
    check = (name, got, Reference(other, np.zeros(np.shape(other)), {}),
             lambda dt: tm.pair_tol(mag_ref, terms, mag_ref, terms, dt))
    return check + ((out_dtype,) if out_dtype else ())


def _long(case) -> bool:
    """Beyond the multiple-precision oracle's budget: judged against the long tier."""
    b, d, l, n = case.shape
    return l > 1100 or b * d * l * n * (2 if case.complex else 1) > ORACLE_ELEMENTS


def _cases(max_decay=None):
    """Mostly the oracle-sized cases, a few long ones (each costs the subject l steps, twice)."""
    return st.integers(0, 7).flatmap(
        lambda i: long_selective_cases(max_decay=max_decay) if i == 7
        else selective_cases(max_decay=max_decay))


# --- properties ----------------------------------------------------------------------------------

@pytest.mark.ssm_role("selective_scan", property="matches_oracle")
@with_explicit(selective_case_from_seed, explicit_selective(FORWARD_LENGTHS))
@given(case=_cases())
def test_selective_scan_matches_oracle(sut, case):
    out, last, ld = _outputs(sut, case, sut.call(case))
    kwargs = _oracle_kwargs(sut, case)
    if _long(case):
        ref, ref_last = long_scan.selective_scan(return_last_state=True, **kwargs,
                                                 subject_dtype=sut.dtype)
    elif last is None:
        ref = oracle(oracle_ss.selective_scan, **kwargs)
    else:
        ref, ref_last = oracle(oracle_ss.selective_scan, return_last_state=True, **kwargs)
    if last is None:
        sut.judge(case, [("out", out, ref, tm.selective_scan_terms(ref))])
        return
    sut.judge(case, [
        ("out", out, ref, tm.selective_scan_terms(ref)),
        ("last_state", last, ref_last, tm.selective_scan_terms(ref_last), ld)])


@pytest.mark.ssm_role("selective_scan", property="vjp_matches_oracle")
@with_explicit(selective_case_from_seed, explicit_selective(BACKWARD_LENGTHS, max_decay=80.0))
@given(case=_cases(max_decay=80.0))
def test_selective_scan_vjp_matches_oracle(sut, case):
    wrt = ("u", "delta", "A", "B", "C") + tuple(k for k in OPTIONAL if getattr(case, k) is not None)
    skip_unless_grad(sut, case, wrt=wrt, cotangent=case.cotangent)
    cot = sut.rounded(case.cotangent)   # as the subject's backward receives it
    _, grads = sut.call_vjp(case, wrt, cot)
    if _long(case):
        refs = long_scan.selective_scan_vjp(cot, **_oracle_kwargs(sut, case),
                                            subject_dtype=sut.dtype)
    else:
        refs = oracle(oracle_ss.selective_scan_vjp, cot, **_oracle_kwargs(sut, case))
    checks = []
    for name in wrt:
        value = getattr(case, name)
        dtype = "float32" if name in case.fp32 else None
        kind = "complex" if np.iscomplexobj(value) else "real"
        (g,) = sut.outputs(grads[name], [Output(f"grad_{name}", value.shape, kind, dtype)])
        ref = refs[name]
        checks.append((f"grad_{name}", g, ref, tm.selective_scan_terms(ref))
                      + ((dtype,) if dtype else ()))
    sut.judge(case, checks)


@pytest.mark.ssm_role("selective_scan", property="causal")
@given(split=split_cases(selective_cases(max_elements=METAMORPHIC_ELEMENTS, min_length=2)),
       seed=seeds())
def test_selective_scan_causal(sut, split, seed):
    """out[..., :t] from the case and from the case with every time-varying input redrawn at
    steps >= t agree within twice the prefix's tolerance (its magnitudes, like the exact prefix,
    depend on the steps before t only)."""
    case, t = split
    changed = redraw_after(case, t, seed)
    out_a, _, _ = _outputs(sut, case, sut.call(case))
    out_b, _, _ = _outputs(sut, changed, sut.call(changed))
    mag, _ = oracle(scan_magnitudes, **_oracle_kwargs(sut, case))
    index = (Ellipsis, slice(0, t))
    sut.judge(case, [_pair(f"out[..., :{t}] (inputs at steps >= {t} changed)", out_a[index],
                           out_b[index], _sliced(mag, index))])


@pytest.mark.ssm_role("selective_scan", property="batch_independent")
@given(case=selective_cases(max_elements=METAMORPHIC_ELEMENTS, min_batch=2))
def test_selective_scan_batch_independent(sut, case):
    """The last batch element alone (b = 1) against the same element within the batch: out and
    the last state within twice their tolerance. The last element: a wrong batch offset or
    stride, or state leaking from the element before, shows there (one extra call per example
    instead of b)."""
    i = case.shape[0] - 1
    out, last, _ = _outputs(sut, case, sut.call(case))
    alone = batch_element(case, i)
    out_i, last_i, ld_i = _outputs(sut, alone, sut.call(alone))
    mag, mag_last = oracle(scan_magnitudes, **_oracle_kwargs(sut, alone))
    index = slice(i, i + 1)
    checks = [_pair(f"out[{i}] (alone vs. in the batch)", out_i, out[index], mag)]
    if last is not None:
        checks.append(_pair(f"last_state[{i}] (alone vs. in the batch)", last_i, last[index],
                            mag_last, ld_i))
    sut.judge(case, checks)


@pytest.mark.ssm_role("selective_scan", property="non_contiguous")
@given(case=selective_cases(max_elements=METAMORPHIC_ELEMENTS),
       layout=st.sampled_from(LAYOUTS))
def test_selective_scan_non_contiguous(sut, case, layout):
    """The same values in a dense non-contiguous layout (every tensor of >= 2 axes) against the
    contiguous call: within twice the tolerance."""
    skip_unless_non_contiguous()
    out, last, ld = _outputs(sut, case, sut.call(case))
    strided_case = sut.relaid(case, layout, lambda t: strided(t, layout))
    out_s, last_s, ld_s = _outputs(sut, strided_case, sut.call(strided_case))
    mag, mag_last = oracle(scan_magnitudes, **_oracle_kwargs(sut, case))
    checks = [_pair(f"out ({layout} layout vs. contiguous)", out_s, out, mag)]
    if last is not None:
        checks.append(_pair(f"last_state ({layout} layout vs. contiguous)", last_s, last, mag_last,
                            ld_s))
    sut.judge(strided_case, checks)


def _heads(X, b, d, n, t):
    """B or C of the scan at step t in the state update's heads form (b, g = d, n): constant
    (d, n) and variable (b, n, l) broadcast, grouped (b, g, n, l) repeated to one group per
    channel (channel c reads group c // (d/g), as the scan and the update both do)."""
    if X.ndim == 2:
        return np.broadcast_to(X, (b, d, n)).copy()
    if X.ndim == 3:
        return np.broadcast_to(X[:, None, :, t], (b, d, n)).copy()
    return np.repeat(X[..., t], d // X.shape[1], axis=1)


def continue_from(state, exact, start, stop):
    """The oracle's continuation of the scan from ``state`` (b, d, n) over steps start..stop-1:
    oracle_ss.selective_state_update (its heads form, h = d channels of p = 1, one group per
    channel) step after step, each from the float64 state the previous step returned.
    Returns (out (b, d, stop - start), state after the last step, error bounds of both)."""
    b, d, n = state.shape
    A = exact["A"][:, None, :]
    per_channel = (lambda v: None if v is None else v[:, None])
    outs, errs = [], []
    h = state[:, :, None, :]
    err_h = np.zeros_like(h)
    for t in range(start, stop):
        ref_out, ref_h = oracle(
            oracle_ss.selective_state_update, h, exact["u"][:, :, t, None],
            exact["delta"][:, :, t, None], A, _heads(exact["B"], b, d, n, t),
            _heads(exact["C"], b, d, n, t), per_channel(exact["D"]),
            None if exact["z"] is None else exact["z"][:, :, t, None],
            per_channel(exact["delta_bias"]), exact["delta_softplus"])
        outs.append(ref_out.value[..., 0])
        errs.append(ref_out.error[..., 0])
        h, err_h = ref_h.value, ref_h.error
    return (np.stack(outs, axis=-1), h[:, :, 0, :], np.stack(errs, axis=-1), err_h[:, :, 0, :])


@pytest.mark.ssm_role("selective_scan", property="state_carry")
@given(split=split_cases(selective_cases(max_elements=METAMORPHIC_ELEMENTS, min_length=2,
                                         real_only=True, last_state=True),
                         max_suffix=4, suffix_elements=4096))
def test_selective_scan_state_carry(sut, split):
    """Scanning u[..., :t] || u[..., t:] = scanning u[..., t:] from the state after u[..., :t].

    The role has no initial-state argument, so the continuation is the oracle's: the subject's
    last state h_t after the prefix call (u[..., :t], return_last_state) is fed, as the subject
    returned it, to the oracle's one-step update (oracle.selective_state_update) for each step
    >= t; its outputs and final state must match the subject's out[..., t:] and last state of
    the full call. Tolerance: 2 tol of the full sequence. The full call is within tol of the
    exact continuation of the exact state; the continuation of the subject's h_t differs from
    that by G (h_t - exact h_t), G = SiLU(z) C exp(sum Dt A) >= 0 termwise, and |G| tol(h_t) is
    at most the full sequence's tol at those steps (its abs pass and exp_cond carry |G| abs(h_t);
    depth 3t + 5 <= 3(s+1) + n + 8 for s >= t). Real A only (the state update oracle is real);
    complex A's last state is judged by matches_oracle. At most 4 steps after the split (one
    oracle call each, (l - t) b d n <= 4096), up to 2^20 elements before it."""
    if not enabled("last_state"):
        pytest.skip("state_carry needs the feature last_state")
    skip_if_forced("complex_A", reason="state_carry's continuation oracle is real only")
    case, t = split
    l = case.size
    prefix = case.replace(**time_slice(case, 0, t))
    out, last, ld = _outputs(sut, case, sut.call(case))
    _, h_t, _ = _outputs(sut, prefix, sut.call(prefix))
    exact = sut.exact(case)
    cont_out, cont_last, err_out, err_last = continue_from(h_t, exact, t, l)
    mag, mag_last = oracle(scan_magnitudes, **_oracle_kwargs(sut, case))
    index = (Ellipsis, slice(t, l))
    tol_ref = _sliced(mag, index)
    terms, terms_last = tm.selective_scan_terms(tol_ref), tm.selective_scan_terms(mag_last)
    sut.judge(case, [
        (f"out[..., {t}:] (vs. the continuation from the state after {t} steps)", out[index],
         Reference(cont_out, err_out, {}),
         lambda dt: tm.pair_tol(tol_ref, terms, tol_ref, terms, dt)),
        (f"last_state (vs. the continuation from the state after {t} steps)", last,
         Reference(cont_last, err_last, {}),
         lambda dt: tm.pair_tol(mag_last, terms_last, mag_last, terms_last, dt), ld)])
