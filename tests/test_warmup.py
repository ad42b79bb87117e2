"""The per-call limit and JIT compilation (properties/subjects.py): the first call on each new
argument signature is a warm-up with 5x the limit, its time is reported, and a hang's
reproduction is the input that hung."""
from __future__ import annotations

from tests.cli import run_suite

SUBJECTS = "tests.subjects.warmup_subjects"


def test_a_kernel_compiled_per_shape_is_not_a_hang(tmp_path):
    run = run_suite("--ssm-call-timeout", "0.4", "--hypothesis-seed", "0",
                    "--ssm-subject", f"causal_conv={SUBJECTS}:causal_conv_jit_per_shape",
                    report_dir=tmp_path, profile="dev")
    assert run.status == 0, run.output[-3000:]
    (row,) = run.report["results"]
    assert row["verdict"] == "pass"
    assert row["first_call_s"] >= 1.0 and row["max_warmup_s"] >= 1.0  # reported, not judged


def test_a_hang_reproduces_with_the_input_that_hung(tmp_path):
    run = run_suite("--ssm-call-timeout", "0.4",
                    "--ssm-subject", f"causal_conv={SUBJECTS}:causal_conv_hangs_on_odd_lengths",
                    report_dir=tmp_path, profile="ci")
    assert run.status == 1, run.output[-3000:]
    (row,) = run.report["results"]
    assert row["failure_kind"] == "hang", row["message"]
    message = row["message"]
    assert "no answer within 2 s" in message and "on this input" in message, message
    source = message.split("reproduction:\n", 1)[1].split("\nout = ", 1)[0]
    inputs = {}
    exec(source, inputs)   # the printed reproduction, up to the call: it defines u and K
    length = len(inputs["u"])
    assert length >= 3 and length % 2 == 1, source   # the input that hung, not a later one
