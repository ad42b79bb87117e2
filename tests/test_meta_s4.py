"""Meta-tests: the suite, run from its command line, rejects the deliberately wrong S4-family
subjects (tests/subjects/s4_wrong.py, s4_wrong_more.py: mistakes of MATH.md and of popular code)
and passes correct ones built on different algorithms (tests/subjects/s4_correct.py, plus our
torch DPLR kernel): for each HiPPO measure a loop, a vectorized/similarity construction and the
normal-plus-low-rank reconstruction; for the kernels sequential recurrences, repeated squaring,
SciPy, Vandermonde products, torch, dense powering and the dense generating function.

One run of the CLI per role judges all of that role's subjects together; the verdicts are read
from report.json. The ``ci-noshrink`` profile draws exactly the ``ci`` examples and skips only
shrinking, which the verdict does not depend on.
"""
from __future__ import annotations

import pytest
import sympy as sp

from ssm_conformance.oracle import hippo as oracle_hippo
from tests.cli import run_suite, subjects_of
from tests.subjects import s4_correct, s4_wrong, s4_wrong_more

ROLE_PREFIX = {
    "hippo_legs": "legs_",
    "hippo_legt": "legt_",
    "hippo_lagt": "lagt_",
    "hippo_fout": "fout_",
    "ssm_kernel": "ssm_",
    "s4d_kernel": "s4d_",
    "dplr_kernel": "dplr_",
}
# correct subjects that are not in s4_correct.py (our own torch kernel, as a third-party target)
EXTRA_CORRECT = {"dplr_kernel": ["ssm_conformance.implementations.torch.s4:dplr_kernel"]}
WRONG_MODULES = {"tests.subjects.s4_wrong": s4_wrong,
                 "tests.subjects.s4_wrong_more": s4_wrong_more}


def _role_subjects(role):
    """(correct targets, wrong targets) of ``role``."""
    prefix = ROLE_PREFIX[role]
    correct = [f"tests.subjects.s4_correct:{n}" for n in subjects_of(s4_correct, prefix)]
    correct += EXTRA_CORRECT.get(role, [])
    wrong = [f"{path}:{n}" for path, module in WRONG_MODULES.items()
             for n in subjects_of(module, prefix)]
    return correct, wrong


@pytest.mark.parametrize("measure", oracle_hippo.MEASURES)
def test_hippo_reference_blocks_are_the_exact_transitions(measure):
    """properties/test_s4.py slices the size-N HiPPO reference out of a larger one: s4's entries
    (and the rank corrections') depend on their indices only. Exact SymPy equality."""
    big_A, big_B = oracle_hippo.transition(measure, 12)
    big_P, big_shift = oracle_hippo.rank_correction(measure, 12)
    for N in (2, 4, 6, 10) if measure == "fout" else (1, 2, 5, 8):
        A, B = oracle_hippo.transition(measure, N)
        P, shift = oracle_hippo.rank_correction(measure, N)
        assert sp.simplify(A - big_A[:N, :N]) == sp.zeros(N, N)
        assert sp.simplify(B - big_B[:N, :]) == sp.zeros(N, 1)
        assert sp.simplify(P - big_P[:, :N]) == sp.zeros(P.rows, N) and shift == big_shift


XDIST_RUN_KEY = "role"   # one CLI run per role (root conftest.py: xdist groups)
_RUNS = {}


def _run(role, tmp_path_factory):
    if role not in _RUNS:
        correct, wrong = _role_subjects(role)
        args = []
        for target in correct + wrong:
            args += ["--ssm-subject", f"{role}={target}"]
        _RUNS[role] = run_suite(*args, profile="ci-noshrink",
                                report_dir=tmp_path_factory.mktemp(role))
    return _RUNS[role]


CASES = [(role, "correct", t) for role in ROLE_PREFIX for t in _role_subjects(role)[0]] + \
        [(role, "wrong", t) for role in ROLE_PREFIX for t in _role_subjects(role)[1]]


def test_each_role_has_three_correct_subjects_and_a_wrong_one():
    for role in ROLE_PREFIX:
        correct, wrong = _role_subjects(role)
        assert len(correct) >= 3 and len(wrong) >= 1, (role, correct, wrong)


@pytest.mark.parametrize("role,expected,target", CASES,
                         ids=[c[2].rpartition(":")[2] for c in CASES])
def test_verdict(role, expected, target, tmp_path_factory):
    run = _run(role, tmp_path_factory)
    assert run.report is not None, run.output[-3000:]
    rows = [r for r in run.report["results"] if r["subject"] == target]
    assert rows, f"no report row for {target}:\n{run.output[-3000:]}"
    failed = [r for r in rows if r["verdict"] == "fail"]
    if expected == "correct":
        assert not failed and all(r["verdict"] == "pass" for r in rows), \
            f"{target} is correct but was rejected:\n" + "\n".join(r["message"] for r in rows)
        assert all(r["examples"] >= 50 for r in rows), rows  # judged on many inputs, not a few
    else:
        assert failed, f"{target} is wrong but passed (max ratio " \
            f"{[r['max_ratio'] for r in rows]})"
    # any wrong subject makes the run fail; a run of only correct ones would exit 0
    assert run.status == 1


@pytest.mark.parametrize("without", [False, True], ids=["with_rank2", "without_rank2"])
def test_rank2_feature_is_drawn_and_can_be_left_out(without, tmp_path):
    """dplr_kernel's feature rank2 (CONTRACT.md): drawn by default, and never drawn (reported as
    left out) under --ssm-without rank2. A fixed seed in the dev profile keeps this quick."""
    args = ["--ssm-subject", "dplr_kernel=tests.subjects.s4_correct:dplr_dense_power",
            "--hypothesis-seed", "0"] + (["--ssm-without", "rank2"] if without else [])
    run = run_suite(*args, profile="dev", report_dir=tmp_path)
    assert run.status == 0, run.output[-3000:]
    (row,) = run.report["results"]
    if without:
        assert row["features_left_out"] == ["rank2"] and "rank2" not in row["features_exercised"]
    else:
        assert "rank2" in row["features_exercised"] and row["features_left_out"] == []
