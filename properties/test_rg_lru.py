"""``rg_lru`` (Griffin's RG-LRU as RecurrentGemma's ``RGLRU.forward``, gates applied) against the
multiple-precision oracle (oracle/rg_lru.py), forward and, with --ssm-grad, backward; and the
structural properties every correct kernel has. Inputs: properties/strategies/rg_lru.py.

Bound (oracle/rg_lru.py, module doc): tol = SAFETY u (W + depth A) + output rounding, where A is
the recurrence on magnitudes and W the path-weighted sum of leaf rounding errors (a second running
recurrence: each step's leaf error times the product of |a| between it and the output); depth =
the extra additions of a tree or chunked scan. It admits sqrt(1 - a^2) computed as
sqrt(-expm1(2 log a)) and rejects 1 - exp(2 log a) where near_one_decay is drawn.

- matches_oracle: y, and h_last when asked for, within the tolerance; explicit long cases
  (strategies/long_sequences.py FORWARD_LENGTHS, up to 2^17 + 1) in every profile, and one drawn
  example in 16 long, judged against the long tier (oracle/rg_lru.py ``rg_lru_tier``).
- vjp_matches_oracle: gradients of sum(cotangent * y) w.r.t. x, gate_x, gate_a, a_param (and h0);
  explicit long cases of BACKWARD_LENGTHS (2^16 +- 1 among them).
- causal: y[:, :t] does not change when the inputs at steps >= t do.
- chunk_carry: the last state after steps < t, passed back as h0 for the steps >= t, continues
  the sequence: the prefix's h_last and the suffix's y each match the oracle, and the suffix's y
  matches the full call's y[:, t:] within their two tolerances plus the carried state's error
  propagated (prod |abar| |h_t - exact h_t|, the magnitude pass on x = 0 from that h0).
- non_contiguous: the same inputs in dense strided layouts give the same result.
Non-mutation of the inputs and determinism are checked on every call (properties/subjects.py).

h_last may come back in float32 (CONTRACT.md) or in the compute dtype (float64 for float64);
it is judged with the rounding of the dtype it has.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssm_conformance.oracle import rg_lru as oracle_rg
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.properties import tolerance as tm
from ssm_conformance.properties.harness import (Output, oracle, skip_unless_grad,
                                                skip_unless_non_contiguous)
from ssm_conformance.properties.options import enabled
from ssm_conformance.properties.strategies.common import seeds
from ssm_conformance.properties.strategies.long_sequences import (BACKWARD_LENGTHS,
                                                                 FORWARD_LENGTHS, with_explicit)
from ssm_conformance.properties.strategies.rg_lru import (LAYOUTS, METAMORPHIC_ELEMENTS,
                                                         ORACLE_ELEMENTS, ORACLE_LENGTH,
                                                         explicit_rg_lru, oracle_or_long_cases,
                                                         redraw_after, rg_lru_case_from_seed,
                                                         rg_lru_cases, split_cases, strided,
                                                         time_slice)

ORACLE_ARGS = ("x", "gate_x", "gate_a", "a_param", "reset", "h0")


def terms(ref):
    """(depth, magnitude) terms of the bound: W (depth 1: it carries its own counts) and the
    tree scan's extra additions times A."""
    return [(1.0, ref.magnitudes["weighted"]), (ref.magnitudes["depth"], ref.magnitudes["abs"])]


def _compute_dtype(sut):
    return "float64" if sut.dtype == "float64" else "float32"


def _last_dtype(sut, raw):
    allowed = {_compute_dtype(sut), "float32"}
    if isinstance(raw, (tuple, list)) and len(raw) == 2 and hasattr(raw[1], "dtype"):
        name = str(raw[1].dtype).split(".")[-1]
        if name in allowed:
            return name
    return "float32"


def _outputs(sut, case, raw):
    """(y (b, l, d), h_last (b, d) or None, its dtype) as float64 arrays."""
    b, l, d = case.shape
    if not case.return_last_state:
        (y,) = sut.outputs(raw, [Output("y", (b, l, d))])
        return y, None, None
    ld = _last_dtype(sut, raw)
    y, last = sut.outputs(raw, [Output("y", (b, l, d)), Output("h_last", (b, d), "real", ld)])
    return y, last, ld


def _kwargs(sut, case):
    exact = sut.exact(case)
    kw = {k: exact[k] for k in ORACLE_ARGS}
    if kw["reset"] is not None:
        kw["reset"] = kw["reset"] != 0
    return kw


def _long(case) -> bool:
    b, l, d = case.shape
    return l > ORACLE_LENGTH or b * l * d > ORACLE_ELEMENTS


def _reference(sut, case, last_state):
    kw = _kwargs(sut, case)
    if _long(case):
        return oracle_rg.rg_lru_tier(**kw, return_last_state=last_state, subject_dtype=sut.dtype)
    return oracle(oracle_rg.rg_lru, **kw, return_last_state=last_state)


def _sliced(ref, index):
    shape = np.shape(ref.value)
    mags = {k: (np.broadcast_to(v, shape)[index] if np.ndim(v) else v)
            for k, v in ref.magnitudes.items()}
    return Reference(np.asarray(ref.value)[index], np.asarray(ref.error)[index], mags)


def _pair(name, got, other, mag, out_dtype=None, extra=0.0):
    """|got - other| <= tol_a + tol_b (+ ``extra``) for two results of the subject that are,
    exactly, the same number (tolerance.pair_tol)."""
    check = (name, got, Reference(other, np.zeros(np.shape(other)), {}),
             lambda dt: tm.pair_tol(mag, terms(mag), mag, terms(mag), dt) + extra)
    return check + ((out_dtype,) if out_dtype else ())


# --- properties ----------------------------------------------------------------------------------

@pytest.mark.ssm_role("rg_lru", property="matches_oracle")
@with_explicit(rg_lru_case_from_seed, explicit_rg_lru(FORWARD_LENGTHS))
@given(case=oracle_or_long_cases())
def test_rg_lru_matches_oracle(sut, case):
    y, last, ld = _outputs(sut, case, sut.call(case))
    if last is None:
        ref = _reference(sut, case, False)
        sut.judge(case, [("y", y, ref, terms(ref))])
        return
    ref, ref_last = _reference(sut, case, True)
    sut.judge(case, [("y", y, ref, terms(ref)),
                     ("h_last", last, ref_last, terms(ref_last), ld)])


@pytest.mark.ssm_role("rg_lru", property="vjp_matches_oracle")
@with_explicit(rg_lru_case_from_seed, explicit_rg_lru(BACKWARD_LENGTHS))
@given(case=oracle_or_long_cases())
def test_rg_lru_vjp_matches_oracle(sut, case):
    wrt = ("x", "gate_x", "gate_a", "a_param") + (("h0",) if case.h0 is not None else ())
    skip_unless_grad(sut, case, wrt=wrt, cotangent=case.cotangent)
    cot = sut.rounded(case.cotangent)   # as the subject's backward receives it
    _, grads = sut.call_vjp(case, wrt, cot)
    kw = _kwargs(sut, case)
    if _long(case):
        refs = oracle_rg.rg_lru_vjp_tier(cot, **kw, subject_dtype=sut.dtype)
    else:
        refs = oracle(oracle_rg.rg_lru_vjp, cot, **kw)
    checks = []
    for name in wrt:
        dtype = "float32" if name in case.fp32 else None
        (g,) = sut.outputs(grads[name], [Output(f"grad_{name}", getattr(case, name).shape,
                                                "real", dtype)])
        ref = refs[name]
        checks.append((f"grad_{name}", g, ref, terms(ref)) + ((dtype,) if dtype else ()))
    sut.judge(case, checks)


@pytest.mark.ssm_role("rg_lru", property="causal")
@given(split=split_cases(rg_lru_cases(max_elements=METAMORPHIC_ELEMENTS, min_length=2)),
       seed=seeds())
def test_rg_lru_causal(sut, split, seed):
    """y[:, :t] from the case and from the case with x, gate_x, gate_a, reset redrawn at steps
    >= t: within twice the prefix's tolerance (its magnitudes depend on steps < t only)."""
    case, t = split
    changed = redraw_after(case, t, seed)
    y_a, _, _ = _outputs(sut, case, sut.call(case))
    y_b, _, _ = _outputs(sut, changed, sut.call(changed))
    mag, _ = oracle(oracle_rg.magnitudes, **_kwargs(sut, case))
    index = (slice(None), slice(0, t))
    sut.judge(case, [_pair(f"y[:, :{t}] (inputs at steps >= {t} changed)", y_a[index],
                           y_b[index], _sliced(mag, index))])


@pytest.mark.ssm_role("rg_lru", property="chunk_carry")
@given(split=split_cases(rg_lru_cases(min_length=2, last_state=True)))
def test_rg_lru_chunk_carry(sut, split):
    """Steps < t with return_last_state, then steps >= t from h0 = that last state (as the
    subject returned it, rounded to fp32 as h0 is): the prefix's h_last and the suffix's y match
    the oracle; the suffix's y matches the full call's y[:, t:] (module doc)."""
    if not (enabled("h0") and enabled("last_state")):
        pytest.skip("chunk_carry needs the features h0 and last_state")
    case, t = split
    l = case.size
    prefix = time_slice(case, 0, t).replace(return_last_state=True)
    y_full, _, _ = _outputs(sut, case, sut.call(case))
    _, h_t, ld = _outputs(sut, prefix, sut.call(prefix))
    h_carried = h_t.astype(np.float32).astype(np.float64)   # h0 is an fp32 argument
    suffix = time_slice(case, t, l, h0=h_carried).replace(return_last_state=False)
    y_suf, _, _ = _outputs(sut, suffix, sut.call(suffix))
    ref_pre, ref_pre_last = oracle(oracle_rg.rg_lru, **_kwargs(sut, prefix),
                                   return_last_state=True)
    ref_suf = oracle(oracle_rg.rg_lru, **_kwargs(sut, suffix))
    mag_full, _ = oracle(oracle_rg.magnitudes, **_kwargs(sut, case))
    # the carried state's error, propagated: the magnitude pass from h0 = delta with x = 0
    delta = np.abs(h_carried - ref_pre_last.value) + ref_pre_last.error
    kw = _kwargs(sut, suffix)
    prop, _ = oracle_rg.magnitudes(np.zeros_like(kw["x"]), kw["gate_x"], kw["gate_a"],
                                   kw["a_param"], kw["reset"], delta)
    index = (slice(None), slice(t, l))
    mag_slice = _sliced(mag_full, index)
    sut.judge(case, [
        (f"h_last after {t} steps", h_t, ref_pre_last, terms(ref_pre_last), ld),
        (f"y[:, {t}:] from h0 = that state", y_suf, ref_suf, terms(ref_suf)),
        (f"y[:, {t}:] of the full call vs. the continuation", y_full[index],
         Reference(y_suf, np.zeros_like(y_suf), {}),
         lambda dt: (tm.tolerance(mag_slice, terms(mag_slice), dt)
                     + tm.tolerance(ref_suf, terms(ref_suf), dt) + 1.001 * prop.value))])


@pytest.mark.ssm_role("rg_lru", property="non_contiguous")
@given(case=rg_lru_cases(max_elements=METAMORPHIC_ELEMENTS), layout=st.sampled_from(LAYOUTS))
def test_rg_lru_non_contiguous(sut, case, layout):
    """The same values in a dense non-contiguous layout (every tensor of >= 2 axes) against the
    contiguous call: within twice the tolerance."""
    skip_unless_non_contiguous()
    y, last, _ = _outputs(sut, case, sut.call(case))
    strided_case = sut.relaid(case, layout, lambda t: strided(t, layout))
    y_s, last_s, ld_s = _outputs(sut, strided_case, sut.call(strided_case))
    mag, mag_last = oracle(oracle_rg.magnitudes, **_kwargs(sut, case))
    checks = [_pair(f"y ({layout} layout vs. contiguous)", y_s, y, mag)]
    if last is not None:
        checks.append(_pair(f"h_last ({layout} layout vs. contiguous)", last_s, last, mag_last,
                            ld_s))
    sut.judge(strided_case, checks)
