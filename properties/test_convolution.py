"""causal_conv against the exact convolution (oracle/convolution.py); bound: causal_conv_terms
(direct summation componentwise, FFT normwise)."""
from __future__ import annotations

import pytest
from hypothesis import given

from ssm_conformance.oracle import convolution as oracle_convolution
from ssm_conformance.properties import tolerance as tm
from ssm_conformance.properties.harness import Output, oracle
from ssm_conformance.properties.strategies.sequences import conv_cases


@pytest.mark.ssm_role("causal_conv")
@given(case=conv_cases())
def test_matches_oracle(sut, case):
    case = sut.round_case(case)  # --ssm-numpy-dtype float32: the inputs as the subject gets them
    (y,) = sut.outputs(sut.call(case), [Output("y", case.u.shape)])
    ref = oracle(oracle_convolution.causal_conv, case.u, case.K)
    sut.judge(case, [("y", y, ref, tm.causal_conv_terms(ref, case.u.shape[0]))])
