"""``linear_scan`` against the high-precision scan (oracle/scan.py), forward and, with
--ssm-grad, backward. Bound: sequential evaluation of h_t = a_t h_{t-1} + b_t errs by at most
gamma_{2(t+1)} times the same recurrence run on |a|, |b| (two roundings a step; a tree or chunked
scan reorders the same products and sums and has no greater depth)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from ssm_conformance.oracle import scan as oracle_scan
from ssm_conformance.properties.harness import Output, oracle, skip_unless_grad
from ssm_conformance.properties.strategies.scans import scan_cases


def _kind(case):
    return "complex" if np.iscomplexobj(case.a) else "real"


@pytest.mark.ssm_role("linear_scan", property="matches_oracle")
@given(case=scan_cases())
def test_linear_scan_matches_oracle(sut, case):
    (h,) = sut.outputs(sut.call(case), [Output("h", case.a.shape, _kind(case))])
    exact = sut.exact(case)
    ref = oracle(oracle_scan.linear_scan, exact["a"], exact["b"])
    sut.judge(case, [("h", h, ref, [(ref.magnitudes["depth"], ref.magnitudes["abs_scan"])])])


@pytest.mark.ssm_role("linear_scan", property="vjp_matches_oracle")
@given(case=scan_cases())
def test_linear_scan_vjp_matches_oracle(sut, case):
    skip_unless_grad(sut, case, wrt=("a", "b"), cotangent=case.cotangent)
    exact = sut.exact(case)
    cot = sut.rounded(case.cotangent)   # as the subject's backward receives it
    _, grads = sut.call_vjp(case, ("a", "b"), cot)
    refs = oracle(oracle_scan.linear_scan_vjp, exact["a"], exact["b"], cot)
    checks = []
    for name in ("a", "b"):
        (g,) = sut.outputs(grads[name], [Output(f"grad_{name}", case.a.shape, _kind(case))])
        ref = refs[name]
        checks.append((f"grad_{name}", g, ref,
                       [(ref.magnitudes["depth"], ref.magnitudes["abs_grad"])]))
    sut.judge(case, checks)
