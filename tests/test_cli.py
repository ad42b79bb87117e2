"""The command line of CONTRACT.md, run as a user runs it: usage errors (one line, exit 4), the
failure classes of a subject (each named in its message, no traceback of the suite's code),
target forms, --ssm-without, exit statuses and the report files."""
from __future__ import annotations

import json

import pytest

from tests.cli import ROOT, run_suite

CONV = "causal_conv=tests.subjects.lti_correct:causal_conv_np_convolve"
ZOH = "discretize_zoh=implementations.numpy.discretize:zoh"


@pytest.mark.parametrize("args,needle", [
    (["--ssm-subject", "no_such_role=tests.subjects.lti_correct:causal_conv_np_convolve"],
     "unknown role 'no_such_role'"),
    (["--ssm-subject", "causal_conv=tests.subjects.nope:f"], "cannot import"),
    (["--ssm-subject", "causal_conv=tests.subjects.lti_correct:nope"], "has no attribute"),
    (["--ssm-subject", "causal_conv=tests/subjects/missing.py:f"], "no such file"),
    (["--ssm-subject", "causal_conv=tests/subjects/user_file_subject.py:not_callable"],
     "not callable"),
    (["--ssm-subject", "causal_conv"], "expected ROLE=TARGET"),
    (["--ssm-subject", "causal_conv=no_colon"], "not of the form"),
    ([CONV.join(["--ssm-subject=", ""]), "--ssm-dtype", "float8"], "unknown dtype"),
    (["--ssm-device", "tpu"], "unknown device"),
    (["--ssm-subject", CONV, "--ssm-without", "singular_A"], "unknown feature"),
    (["--ssm-subject", CONV, "--ssm-with", "singular_A"], "--ssm-with: unknown feature"),
    (["--ssm-subject", ZOH, "--ssm-with", "singular_A", "--ssm-without", "singular_A,extreme_B"],
     "cannot be forced and left out"),
    (["--ssm-subject", ZOH, "--ssm-with", "stiff_A,oscillatory_A"], "cannot all be forced"),
])
def test_usage_error_is_one_line_and_exit_4(args, needle):
    run = run_suite(*args)
    assert run.status == 4, run.output
    lines = [line for line in run.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], run.output
    assert "Traceback" not in run.output


def test_correct_subject_exits_0_and_writes_the_report(tmp_path):
    run = run_suite("--ssm-subject", CONV, report_dir=tmp_path)
    assert run.status == 0, run.output
    doc = run.report
    assert doc["schema"] == "ssm-conformance-report/1" and doc["conformant"] is True
    (row,) = doc["results"]
    assert row["role"] == "causal_conv" and row["verdict"] == "pass"
    assert row["examples"] >= 100 and 0 < row["max_ratio"] <= 1
    assert row["worst_example"]["reproduction"].startswith("import numpy as np")
    assert (tmp_path / "report.md").read_text().count("| causal_conv |") == 1
    assert (tmp_path / "causal_conv-float64.png").stat().st_size > 1000
    assert "SSM conformance" in run.output  # the short table after pytest's summary
    # only the named role ran: the discretization properties were deselected, not skipped
    assert "deselected" in run.output and "skipped" not in run.output


def test_file_path_target_with_dotted_attribute():
    run = run_suite("--ssm-subject",
                    "causal_conv=tests/subjects/user_file_subject.py:Wrapper.causal_conv")
    assert run.status == 0, run.output


FAILURE_CLASSES = {
    "causal_conv_mutates_input": ("mutated_input", "changed its input 'u' in place"),
    "causal_conv_nondeterministic": ("nondeterministic", "not deterministic"),
    "causal_conv_wrong_shape": ("wrong_shape", "expected (1,)"),
    "causal_conv_float32_output": ("wrong_dtype", "of dtype float32, expected float64"),
    "causal_conv_returns_nan": ("non_finite", "where the oracle is finite"),
    "causal_conv_raises_on_L1": ("raised", "raised on a valid input: ValueError"),
    "causal_conv_hangs_on_L1": ("hang", "no answer within 10 s (the first call on inputs of this"),
    "causal_conv_fft_circular": ("inaccurate", "error exceeds the tolerance"),
}


@pytest.fixture(scope="module")
def failure_run(tmp_path_factory):
    args = ["--ssm-call-timeout", "2"]
    for name in FAILURE_CLASSES:
        args += ["--ssm-subject", f"causal_conv=tests.subjects.lti_wrong:{name}"]
    return run_suite(*args, report_dir=tmp_path_factory.mktemp("failures"))


@pytest.mark.parametrize("name", FAILURE_CLASSES)
def test_failure_class_is_named_with_a_minimal_reproduction(failure_run, name):
    kind, phrase = FAILURE_CLASSES[name]
    assert failure_run.status == 1
    (row,) = failure_run.results(":" + name)
    assert row["verdict"] == "fail" and row["failure_kind"] == kind, row
    message = row["message"]
    assert phrase in message, message
    assert f"causal_conv / tests.subjects.lti_wrong:{name} / matches_oracle / float64" in message
    assert "reproduction:" in message and f"out = {name}(u, K)" in message
    assert "@reproduce_failure" in message  # the Hypothesis blob (ci profile prints it)
    assert "Traceback" not in message and "properties/" not in message
    if kind in ("wrong_shape", "raised", "hang", "inaccurate"):
        # shrunk to the smallest failing length: L = 1 (L = 2 for a circular convolution)
        assert "u = np.array([" in message
        u_line = next(line for line in message.splitlines() if line.startswith("u = "))
        assert u_line.count(",") <= 2, u_line


def test_failure_messages_reach_the_terminal_without_suite_tracebacks(failure_run):
    out = failure_run.output
    assert "FAILED" in out and "error exceeds the tolerance" in out
    assert "properties/harness.py" not in out and "properties/subjects.py" not in out


def test_without_feature_is_reported_left_out(tmp_path):
    run = run_suite("--ssm-subject", "discretize_zoh=implementations.numpy.discretize:zoh",
                    "--ssm-without", "singular_A", report_dir=tmp_path, profile="dev")
    assert run.status == 0, run.output
    (row,) = run.report["results"]
    assert row["features_left_out"] == ["singular_A"] and "singular_A" not in \
        row["features_exercised"]
    assert row["feature_examples"]["singular_A"] == 0
    assert "singular_A" in (tmp_path / "report.md").read_text()


def test_with_feature_is_in_every_example_and_reported_forced(tmp_path):
    run = run_suite("--ssm-subject", ZOH, "--ssm-with", "singular_A,extreme_B",
                    report_dir=tmp_path, profile="dev")
    assert run.status == 0, run.output
    (row,) = run.report["results"]
    assert row["features_forced"] == ["extreme_B", "singular_A"]
    assert row["feature_examples"]["singular_A"] == row["feature_examples"]["extreme_B"] == \
        row["examples"] > 0
    assert run.report["options"]["with"] == ["extreme_B", "singular_A"]
    md = (tmp_path / "report.md").read_text()
    assert "forced (--ssm-with) extreme_B, singular_A" in md and "singular_A (" in md
    assert "forced features (--ssm-with, in every example): extreme_B, singular_A" in run.output


def test_help_lists_the_features_of_every_role():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    text = " ".join(proc.stdout.split())
    assert "--ssm-with=FEATURE[,FEATURE...]" in text
    for feature in ("zero_decay", "negative_decay", "jordan_block", "defective_A", "slow_modes",
                    "near_marginal_Lambda", "zero_A", "non_pow2_chunk", "integer_x"):
        assert feature in text, feature


def test_singular_feature_is_exercised_by_default(tmp_path):
    run = run_suite("--ssm-subject", "discretize_zoh=implementations.numpy.discretize:zoh",
                    report_dir=tmp_path, profile="dev")
    (row,) = run.report["results"]
    assert "singular_A" in row["features_exercised"]
    assert "singular_A" not in row["features_not_drawn"] and row["features_forced"] == []
    assert 0 < row["feature_examples"]["singular_A"] <= row["examples"]


def test_report_json_is_plain_json(tmp_path):
    run = run_suite("--ssm-subject", CONV, report_dir=tmp_path, profile="dev")
    json.loads((tmp_path / "report.json").read_text())  # no NaN/Infinity literals
    assert "Infinity" not in (tmp_path / "report.json").read_text()
    assert run.report["options"]["call_timeout_s"] == 60


def test_repo_root_is_importable_from_elsewhere(tmp_path):
    """A user runs from their own directory with a path to their file."""
    target = f"causal_conv={ROOT}/tests/subjects/user_file_subject.py:Wrapper.causal_conv"
    run = run_suite("--ssm-subject", target, "--rootdir", str(ROOT), "-c",
                    str(ROOT / "pyproject.toml"), cwd=tmp_path, profile="dev")
    assert run.status == 0, run.output
