"""``attention`` (scaled dot-product attention without mask or dropout, as torch's SDPA) against
the high-precision log-sum-exp oracle (oracle/attention.py, whose module docstring derives the
bound): errors of the scores are amplified through the softmax by sum_j p_ij |v_j - o_i| times
the score magnitudes (depth e + 6), the rest by the P.V sum's magnitude sum_j p_ij |v_j| (depth
6 n_i + 8). In half dtypes P may be rounded to the activation dtype before P.V, as FlashAttention
and torch's CPU flash kernel do: that one rounding is admitted (it is how production kernels
work), one u_half sum_j p_ij |v_j| more.

With --ssm-grad, ``vjp_matches_oracle`` judges dq, dk, dv against oracle/attention_vjp.py, whose
module docstring derives the backward's bound (the softmax backward dS = P (dP - D) cancels; both
ways of forming D, and FlashAttention's roundings of P and dS to a half dtype, are admitted)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given

from ssm_conformance.oracle import attention as oracle_attention
from ssm_conformance.oracle import attention_vjp as oracle_attention_vjp
from ssm_conformance.properties.harness import Output, oracle, skip_unless_grad
from ssm_conformance.properties.options import enabled
from ssm_conformance.oracle import long_attention
from ssm_conformance.properties.strategies.attention import (
    LONG_THRESHOLD, attention_cases, drawn_long_attention_cases, with_explicit_cases,
    with_long_cases,
)
from ssm_conformance.properties.strategies.long_sequences import sometimes_long
from ssm_conformance.properties.subjects import SubjectFailure
from ssm_conformance.properties.tolerance import attention_tol, compute_dtype


def _terms(sut, ref):
    """The forward bound's terms in the subject's dtype; in half dtypes with P rounded to it."""
    half = sut.dtype in ("bfloat16", "float16")
    return oracle_attention.tolerance_terms(ref, p_dtype=sut.dtype if half else None,
                                            compute_dtype=compute_dtype(sut.dtype))


def _tol(ref, terms):
    """The tolerance of ``ref`` as a function of the dtype, for judge (tolerance.attention_tol)."""
    return lambda dtype: attention_tol(ref, terms, dtype)


@pytest.mark.ssm_role("attention", property="matches_oracle")
@given(case=sometimes_long(attention_cases(), drawn_long_attention_cases()))
@with_explicit_cases
@with_long_cases
def test_attention_matches_oracle(sut, case):
    (o,) = sut.outputs(sut.call(case), [Output("out", case.q.shape)])
    x = sut.exact(case)
    if case.length > LONG_THRESHOLD:  # long key axes: the long tier (oracle/long_attention.py)
        ref = oracle(long_attention.attention_long, x["q"], x["k"], x["v"], case.is_causal,
                     case.scale, subject_dtype=sut.dtype)
    else:
        ref = oracle(oracle_attention.attention, x["q"], x["k"], x["v"], case.is_causal, case.scale)
    sut.judge(case, [("out", o, ref, _tol(ref, _terms(sut, ref)))])


@pytest.mark.ssm_role("attention", property="vjp_matches_oracle")
@given(case=sometimes_long(attention_cases(budget=2**15), drawn_long_attention_cases()))
@with_explicit_cases
@with_long_cases
def test_attention_vjp_matches_oracle(sut, case):
    skip_unless_grad(sut, case, wrt=("q", "k", "v"), cotangent=case.cotangent)
    cot = sut.rounded(case.cotangent)   # as the subject's backward receives it
    _, grads = sut.call_vjp(case, ("q", "k", "v"), cot)
    x = sut.exact(case)
    if case.length > LONG_THRESHOLD:  # long key axes: the long tier
        refs = oracle(long_attention.attention_vjp_long, x["q"], x["k"], x["v"], cot,
                      case.is_causal, case.scale, subject_dtype=sut.dtype)
    else:
        refs = oracle(oracle_attention_vjp.attention_vjp, x["q"], x["k"], x["v"], cot,
                      case.is_causal, case.scale)
    checks = []
    for name in ("q", "k", "v"):
        (g,) = sut.outputs(grads[name], [Output(f"grad_{name}", x[name].shape)])
        checks.append((f"grad_{name}", g, refs[name],
                       _tol(refs[name], oracle_attention_vjp.tolerance_terms(refs[name],
                                                                             sut.dtype))))
    sut.judge(case, checks)


@pytest.mark.ssm_role("attention", property="causal")
@given(case=attention_cases(causal_only=True))
@with_explicit_cases
def test_attention_causal(sut, case):
    """With is_causal, changing the last key and value changes no output row i < s - 1 (the
    top-left mask hides key s-1 from them): the exact values of those rows are the same for both
    inputs, so two accurate evaluations differ by at most twice the tolerance. (Not bitwise: an
    accurate kernel may take the row maximum over masked scores too, which changes rounding.)"""
    if not enabled("causal"):
        pytest.skip("the causal feature is left out (--ssm-without causal)")
    assume(case.is_causal and case.k.shape[-2] >= 2)   # the explicit cases include others
    j = case.k.shape[-2] - 1
    changed = dataclasses.replace(case, k=case.k.copy(), v=case.v.copy())
    changed.k[..., j, :] += 1.0
    changed.v[..., j, :] -= 1.0
    spec = [Output("out", case.q.shape)]
    (first,) = sut.outputs(sut.call(case), spec)
    (second,) = sut.outputs(sut.call(changed), spec)
    rows = min(j, case.q.shape[-2])
    x = sut.exact(case)
    ref = oracle(oracle_attention.attention, x["q"], x["k"], x["v"], True, case.scale)
    tol = _tol(ref, _terms(sut, ref))(sut.dtype)
    for label, out in (("first call", first), ("second call", second)):
        sut.judge_finite(case, f"out[..., :{rows}, :] ({label})", out[..., :rows, :],
                         ref.value[..., :rows, :])
    diff = np.abs(first - second)[..., :rows, :]
    excess = diff / (2 * tol[..., :rows, :])
    sut.record(case, float(excess.max(initial=0.0)), float(diff.max(initial=0.0)))
    if excess.size and excess.max() > 1:
        row = int(np.unravel_index(np.argmax(excess), excess.shape)[-2])
        sut.fail(SubjectFailure("acausal", f"changing key/value {j} moved output row {row} < "
                                 f"{j} by {excess.max():.3g} times twice its tolerance: the "
                                 f"causal mask leaks the future"))
