"""Meta-tests of ``vjp_matches_oracle`` for linear_scan, causal_conv1d and ssd (attention's and
selective_scan's backwards have theirs in test_meta_attention.py and test_meta_selective.py):
from the command line with --ssm-grad, correct backwards pass and backwards with one mistake each
(tests/subjects/backward_subjects.py, forward right) are rejected by vjp_matches_oracle while
their forward passes matches_oracle. One CLI run, ``-k matches_oracle`` (both properties)."""
from __future__ import annotations

import pytest

from tests.cli import run_suite

SUBJECTS = "tests.subjects.backward_subjects"

CORRECT = {
    "linear_scan": [f"{SUBJECTS}:linear_scan_manual", "ssm_conformance.implementations.torch.scan:linear_scan"],
    "causal_conv1d": ["ssm_conformance.implementations.torch.mamba:causal_conv1d"],
    "ssd": ["ssm_conformance.implementations.torch.ssd:ssd"],
}
WRONG = {
    "linear_scan": ["scan_bwd_uses_h_t", "scan_bwd_coefficient_off_by_one", "scan_bwd_no_conj"],
    "causal_conv1d": ["conv1d_bwd_silu_as_sigmoid", "conv1d_bwd_weight_taps_reversed"],
    "ssd": ["ssd_bwd_softplus_dropped", "ssd_bwd_no_grad_initial_states",
            "ssd_bwd_state_passing_dropped"],
}
CASES = ([(role, "correct", target) for role, targets in CORRECT.items() for target in targets]
         + [(role, "wrong", f"{SUBJECTS}:{name}") for role, names in WRONG.items()
            for name in names])


@pytest.fixture(scope="module")
def grad_run(tmp_path_factory):
    # short-input defects: the explicit long cases capped (tests/test_meta_long_mixers.py)
    args = ["-k", "matches_oracle", "--ssm-grad", "--ssm-max-length=128"]
    for role, _, target in CASES:
        args += ["--ssm-subject", f"{role}={target}"]
    return run_suite(*args, profile="ci-noshrink", report_dir=tmp_path_factory.mktemp("backward"))


@pytest.mark.parametrize("role,expected,target", CASES, ids=[c[2].split(":")[1] for c in CASES])
def test_backward_verdict(grad_run, role, expected, target):
    assert grad_run.report is not None, grad_run.output[-3000:]
    rows = {r["property"]: r for r in grad_run.results(target) if r["role"] == role}
    assert set(rows) == {"matches_oracle", "vjp_matches_oracle"}, grad_run.output[-3000:]
    forward, backward = rows["matches_oracle"], rows["vjp_matches_oracle"]
    assert forward["verdict"] == "pass", forward["message"]
    if expected == "correct":
        assert backward["verdict"] == "pass", backward["message"]
    else:
        assert backward["verdict"] == "fail" and backward["failure_kind"] == "inaccurate", backward
        assert "error exceeds the tolerance" in backward["message"]


def test_run_exits_1_naming_only_the_wrong_backwards(grad_run):
    failed = {r["subject"] for r in grad_run.report["results"] if r["verdict"] == "fail"}
    assert grad_run.status == 1
    assert failed == {f"{SUBJECTS}:{name}" for names in WRONG.values() for name in names}
