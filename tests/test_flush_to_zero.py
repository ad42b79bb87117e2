"""Flush to zero (CONTRACT.md): results below the dtype's smallest normal number may be flushed,
an absolute error up to that number is always admitted (properties/tolerance.py), and no more."""
from __future__ import annotations

import numpy as np

from ssm_conformance.oracle.formats import TINY
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.properties.tolerance import tolerance
from tests.cli import run_suite

SUBJECTS = "tests.subjects.ftz_subjects"


def test_flushing_a_subnormal_result_is_admitted_and_twice_tiny_is_not():
    for dtype in ("float64", "float32", "bfloat16", "float16"):
        tiny = TINY[dtype]
        ref = Reference(np.array([0.75 * tiny, 3.0 * tiny]), 0.0, {})
        tol = tolerance(ref, [(1, np.abs(ref.value))], dtype)
        assert tol[0] >= 0.75 * tiny                      # the subnormal result flushed to 0
        assert tol[1] < 2 * tiny                          # 3 tiny returned as 1 tiny: rejected
        strict = tolerance(ref, [(1, np.abs(ref.value))], dtype, flush_to_zero=False)
        assert strict[0] < 0.75 * tiny                    # float16 attention keeps gradual underflow


def test_ftz_kernels_conform_and_an_error_beyond_tiny_does_not(tmp_path):
    run = run_suite("--ssm-subject", f"ssm_kernel={SUBJECTS}:ssm_kernel_ftz",
                    "--ssm-subject", f"ssm_kernel={SUBJECTS}:ssm_kernel_beyond_tiny",
                    "--ssm-subject", f"linear_scan={SUBJECTS}:linear_scan_ftz",
                    "--ssm-max-length", "1100", "-k", "matches_oracle and not vjp",
                    report_dir=tmp_path, profile="ci-noshrink")
    assert run.verdict(":ssm_kernel_ftz") == ("pass", None), run.output[-3000:]
    assert run.verdict(":linear_scan_ftz") == ("pass", None), run.output[-3000:]
    assert run.verdict(":ssm_kernel_beyond_tiny") == ("fail", "inaccurate")
    assert run.status == 1
