"""``linear_scan`` against the high-precision scan (oracle/scan.py), forward and, with
--ssm-grad, backward. Bound: tolerance.linear_scan_terms, the path-weighted bound of
oracle/scan.py: the term of b_j is charged the 2 (t-j) + 2 ceil(log2 l) + 2 roundings on its
path to h_t (a loop, a chunked scan with state passing, a tree scan), carried by the decays
between j and t (docs/bounds.md)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssm_conformance.oracle import long_scan
from ssm_conformance.oracle import scan as oracle_scan
from ssm_conformance.properties import tolerance as tm
from ssm_conformance.properties.harness import Output, oracle, skip_unless_grad
from ssm_conformance.properties.strategies.long_sequences import (BACKWARD_LENGTHS,
                                                                 FORWARD_LENGTHS)
from ssm_conformance.properties.strategies.scans import (ORACLE_LENGTH, long_scan_cases,
                                                        scan_cases, with_long_cases)

# a few drawn examples are long (2 of the 100 ci examples: each costs the subject l steps, twice)
CASES = st.integers(0, 7).flatmap(lambda i: long_scan_cases() if i == 7 else scan_cases())


def _kind(case):
    return "complex" if np.iscomplexobj(case.a) else "real"


@pytest.mark.ssm_role("linear_scan", property="matches_oracle")
@with_long_cases(FORWARD_LENGTHS)
@given(case=CASES)
def test_linear_scan_matches_oracle(sut, case):
    (h,) = sut.outputs(sut.call(case), [Output("h", case.a.shape, _kind(case))])
    exact = sut.exact(case)
    if case.length <= ORACLE_LENGTH:
        ref = oracle(oracle_scan.linear_scan, exact["a"], exact["b"])
    else:
        ref = long_scan.linear_scan(exact["a"], exact["b"], subject_dtype=sut.dtype)
    sut.judge(case, [("h", h, ref, tm.linear_scan_terms(ref))])


@pytest.mark.ssm_role("linear_scan", property="vjp_matches_oracle")
@with_long_cases(BACKWARD_LENGTHS)
@given(case=CASES)
def test_linear_scan_vjp_matches_oracle(sut, case):
    skip_unless_grad(sut, case, wrt=("a", "b"), cotangent=case.cotangent)
    exact = sut.exact(case)
    cot = sut.rounded(case.cotangent)   # as the subject's backward receives it
    _, grads = sut.call_vjp(case, ("a", "b"), cot)
    if case.length <= ORACLE_LENGTH:
        refs = oracle(oracle_scan.linear_scan_vjp, exact["a"], exact["b"], cot)
    else:
        refs = long_scan.linear_scan_vjp(exact["a"], exact["b"], cot, subject_dtype=sut.dtype)
    checks = []
    for name in ("a", "b"):
        (g,) = sut.outputs(grads[name], [Output(f"grad_{name}", case.a.shape, _kind(case))])
        ref = refs[name]
        checks.append((f"grad_{name}", g, ref, tm.linear_scan_terms(ref)))
    sut.judge(case, checks)
