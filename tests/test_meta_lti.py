"""Meta-tests: the suite, run from its command line, rejects deliberately wrong discretizers and
convolutions (realistic mistakes, many from MATH.md) and passes correct ones built on different
algorithms (scipy's cont2discrete, series, torch, explicit inverses, QR, direct sums, FFT, ...).

One run of the CLI per role judges all of that role's subjects together; the verdicts are read
from report.json. The ``ci-noshrink`` profile draws exactly the ``ci`` examples and skips only
shrinking, which the verdict does not depend on.
"""
from __future__ import annotations

import pytest

from tests.cli import run_suite, subjects_of
from tests.subjects import lti_correct, lti_wrong

ROLE_PREFIX = {
    "discretize_zoh": "zoh_",
    "discretize_bilinear": "bilinear_",
    "discretize_euler": "euler_",
    "discretize_backward_euler": "backward_euler_",
    "causal_conv": "causal_conv_",
}
# Wrong subjects that exercise the harness's failure classes rather than numerics
# (tests/test_cli.py judges those, each with its expected class).
HARNESS_CLASS_SUBJECTS = {
    "causal_conv_mutates_input", "causal_conv_nondeterministic", "causal_conv_wrong_shape",
    "causal_conv_float32_output", "causal_conv_returns_nan", "causal_conv_raises_on_L1",
    "causal_conv_hangs_on_L1",
}


def _role_subjects(role):
    prefix = ROLE_PREFIX[role]

    def mine(name):  # "euler_" must not claim "backward_euler_" subjects
        return not any(p != prefix and name.startswith(p) and p.endswith(prefix)
                       for p in ROLE_PREFIX.values())

    correct = [n for n in subjects_of(lti_correct, prefix) if mine(n)]
    wrong = [n for n in subjects_of(lti_wrong, prefix)
             if mine(n) and n not in HARNESS_CLASS_SUBJECTS]
    return correct, wrong


XDIST_RUN_KEY = "role"   # one CLI run per role (root conftest.py: xdist groups)
_RUNS = {}


def _run(role, tmp_path_factory):
    if role not in _RUNS:
        correct, wrong = _role_subjects(role)
        args = []
        for name in correct:
            args += ["--ssm-subject", f"{role}=tests.subjects.lti_correct:{name}"]
        for name in wrong:
            args += ["--ssm-subject", f"{role}=tests.subjects.lti_wrong:{name}"]
        _RUNS[role] = run_suite(*args, profile="ci-noshrink",
                                report_dir=tmp_path_factory.mktemp(role))
    return _RUNS[role]


CASES = [(role, "correct", name) for role in ROLE_PREFIX for name in _role_subjects(role)[0]] + \
        [(role, "wrong", name) for role in ROLE_PREFIX for name in _role_subjects(role)[1]]


def test_each_role_has_three_correct_and_three_wrong_subjects():
    for role in ROLE_PREFIX:
        correct, wrong = _role_subjects(role)
        assert len(correct) >= 3 and len(wrong) >= 3, (role, correct, wrong)


@pytest.mark.parametrize("role,expected,name", CASES, ids=[c[2] for c in CASES])
def test_verdict(role, expected, name, tmp_path_factory):
    run = _run(role, tmp_path_factory)
    assert run.report is not None, run.output[-3000:]
    verdict, kind = run.verdict(":" + name)
    if expected == "correct":
        assert verdict == "pass", f"{name} is correct but was rejected:\n" + \
            "\n".join(r["message"] for r in run.results(":" + name))
    else:
        assert verdict == "fail", f"{name} is wrong but passed (max ratio " \
            f"{[r['max_ratio'] for r in run.results(':' + name)]})"
    # any wrong subject makes the run fail; a run of only correct ones would exit 0
    assert run.status == 1
