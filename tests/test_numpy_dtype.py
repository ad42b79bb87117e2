"""``--ssm-numpy-dtype float32`` (CONTRACT.md): NumPy roles judged with inputs rounded to float32,
float32 outputs and float32's unit roundoff; accurate float32 kernels conform, half-precision
accumulation, a 1e-4 relative error and a float16 result are rejected; a bad dtype is a usage
error."""
from __future__ import annotations

import pytest

from tests.cli import run_suite

SUBJECTS = "tests.subjects.float32_subjects"


def test_float32_kernels_conform_and_wrong_ones_are_rejected(tmp_path):
    run = run_suite("--ssm-numpy-dtype", "float32",
                    "--ssm-subject", f"causal_conv={SUBJECTS}:causal_conv_f32",
                    "--ssm-subject", f"causal_conv={SUBJECTS}:causal_conv_f16_accumulation",
                    "--ssm-subject", f"causal_conv={SUBJECTS}:causal_conv_float16_out",
                    "--ssm-subject", f"discretize_euler={SUBJECTS}:euler_f32",
                    "--ssm-subject", f"discretize_euler={SUBJECTS}:euler_off_by_1e4",
                    report_dir=tmp_path, profile="ci-noshrink")
    assert run.status == 1, run.output
    assert {r["dtype"] for r in run.report["results"]} == {"float32"}
    assert run.report["options"]["numpy_dtypes"] == ["float32"]
    assert run.verdict(":causal_conv_f32") == ("pass", None)
    assert run.verdict(":euler_f32") == ("pass", None)
    assert run.verdict(":causal_conv_f16_accumulation") == ("fail", "inaccurate")
    assert run.verdict(":euler_off_by_1e4") == ("fail", "inaccurate")
    assert run.verdict(":causal_conv_float16_out") == ("fail", "wrong_dtype")
    # the float32 kernels are judged against float32's roundoff, not float64's: their ratios
    # would be ~1e8 against a float64 tolerance
    ratio = run.results(":causal_conv_f32")[0]["max_ratio"]
    assert 0 < ratio <= 1


def test_float64_is_the_default(tmp_path):
    run = run_suite("--ssm-subject", f"causal_conv={SUBJECTS}:causal_conv_f16_accumulation",
                    report_dir=tmp_path, profile="ci-noshrink")
    assert run.status == 1, run.output
    assert {r["dtype"] for r in run.report["results"]} == {"float64"}
    # a float32 result where float64 is judged is the wrong dtype
    assert run.verdict(":causal_conv_f16_accumulation") == ("fail", "wrong_dtype")


@pytest.mark.parametrize("value", ["float16", "bfloat16", ""])
def test_unknown_numpy_dtype_is_a_usage_error(value):
    run = run_suite("--ssm-numpy-dtype", value,
                    "--ssm-subject", f"causal_conv={SUBJECTS}:causal_conv_f32")
    assert run.status == 4, run.output
    lines = [line for line in run.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--ssm-numpy-dtype" in lines[0], run.output
