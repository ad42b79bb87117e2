"""Discretization roles against the mpmath oracle (oracle/discretize.py).

Each role returns (Ad, Bd) for (A, B, dt); Bd has B's shape. Bounds: properties/tolerance.py
(zoh_terms: scaling-and-squaring expm; solve_terms: LU solve of M X = R).
"""
from __future__ import annotations

import pytest
from hypothesis import given

from ssm_conformance.oracle import discretize as oracle_discretize
from ssm_conformance.properties import tolerance as tm
from ssm_conformance.properties.harness import Output, oracle
from ssm_conformance.properties.strategies.lti import lti_cases


def _pair_outputs(case):
    n = case.A.shape[0]
    return [Output("Ad", (n, n)), Output("Bd", case.B.shape)]


@pytest.mark.ssm_role("discretize_zoh", property="matches_oracle")
@given(case=lti_cases(singular_feature="singular_A"))
def test_matches_oracle_zoh(sut, case):
    case = sut.round_case(case)  # --ssm-numpy-dtype float32: the inputs as the subject gets them
    Ad, Bd = sut.outputs(sut.call(case), _pair_outputs(case))
    ref_Ad, ref_Bd = oracle(oracle_discretize.zoh, case.A, case.B, case.dt)
    terms_Ad, terms_Bd = tm.zoh_terms(ref_Ad, ref_Bd, case.A, case.B, case.dt)
    sut.judge(case, [("Ad", Ad, ref_Ad, terms_Ad), ("Bd", Bd, ref_Bd, terms_Bd)])


_SOLVED = {
    "discretize_bilinear": oracle_discretize.bilinear,
    "discretize_euler": oracle_discretize.euler,
    "discretize_backward_euler": oracle_discretize.backward_euler,
}


def _solved_role_test(role):
    reference = _SOLVED[role]

    @pytest.mark.ssm_role(role, property="matches_oracle")
    @given(case=lti_cases())
    def test(sut, case):
        case = sut.round_case(case)  # --ssm-numpy-dtype float32: the inputs as the subject gets them
        Ad, Bd = sut.outputs(sut.call(case), _pair_outputs(case))
        ref_Ad, ref_Bd = oracle(reference, case.A, case.B, case.dt)
        n = case.A.shape[0]
        sut.judge(case, [("Ad", Ad, ref_Ad, tm.solve_terms(ref_Ad, n)),
                         ("Bd", Bd, ref_Bd, tm.solve_terms(ref_Bd, n))])

    return test


test_matches_oracle_bilinear = _solved_role_test("discretize_bilinear")
test_matches_oracle_euler = _solved_role_test("discretize_euler")
test_matches_oracle_backward_euler = _solved_role_test("discretize_backward_euler")
