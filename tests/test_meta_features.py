"""Named input classes (issue 19; beyond CONTRACT.md) against kernels that are wrong only there
(tests/subjects/feature_subjects.py): each fails by default, and conforms with
``--ssm-without NAME``; a kernel that requires an optional argument fails by default and conforms
with ``--ssm-with NAME``. Three CLI runs, matches_oracle only, lengths capped at 64 (the class is
under test here, not long inputs): cheap. The failing runs in ``ci-noshrink``
(first failure), the conforming ones in ``dev`` with a fixed seed."""
from __future__ import annotations

import pytest

from tests.cli import run_suite

S = "tests.subjects.feature_subjects"
CASES = {   # subject -> (role, feature, option that makes it conform)
    "linear_scan_clamps_negative_decay": ("linear_scan", "negative_decay", "--ssm-without"),
    "linear_scan_zero_means_no_decay": ("linear_scan", "zero_decay", "--ssm-without"),
    "ssd_pow2_chunks_only": ("ssd", "non_pow2_chunk", "--ssm-without"),
    "state_update_requires_D": ("selective_state_update", "D", "--ssm-with"),
}
KIND = {"linear_scan_clamps_negative_decay": "inaccurate",
        "linear_scan_zero_means_no_decay": "inaccurate", "ssd_pow2_chunks_only": "raised",
        "state_update_requires_D": "raised"}
COMMON = ("-k", "matches_oracle and not vjp", "--ssm-max-length", "64")


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    args = [a for name, (role, _, _) in CASES.items()
            for a in ("--ssm-subject", f"{role}={S}:{name}")]
    return run_suite(*COMMON, *args, profile="ci-noshrink",
                     report_dir=tmp_path_factory.mktemp("features0"))


# The conforming runs: two, each with subjects of different roles, so that every role sees
# exactly one option (a feature name belongs to one of these roles only).
OPTION_RUNS = (("linear_scan_clamps_negative_decay", "ssd_pow2_chunks_only"),
               ("linear_scan_zero_means_no_decay", "state_update_requires_D"))


@pytest.fixture(scope="module")
def option_runs(tmp_path_factory):
    runs = {}
    for names in OPTION_RUNS:
        args, options = [], {}
        for name in names:
            role, feature, option = CASES[name]
            args += ["--ssm-subject", f"{role}={S}:{name}"]
            options.setdefault(option, []).append(feature)
        for option, features in options.items():
            args += [option, ",".join(features)]
        run = run_suite(*COMMON, *args, "--hypothesis-seed", "0", profile="dev",
                        report_dir=tmp_path_factory.mktemp("features1"))
        runs.update({name: run for name in names})
    return runs


@pytest.mark.parametrize("name", CASES)
def test_fails_by_default_on_the_class(default_run, name):
    role, feature, _ = CASES[name]
    assert default_run.report is not None, default_run.output[-3000:]
    verdict, kind = default_run.verdict(":" + name)
    assert (verdict, kind) == ("fail", KIND[name]), default_run.output[-3000:]


@pytest.mark.parametrize("name", CASES)
def test_conforms_with_the_option(option_runs, name):
    role, feature, option = CASES[name]
    run = option_runs[name]
    assert run.status == 0, run.output[-3000:]
    rows = run.results(":" + name)
    assert rows and all(r["verdict"] == "pass" for r in rows), rows
    for row in rows:
        if option == "--ssm-without":
            assert row["features_left_out"] == [feature] and row["feature_examples"][feature] == 0
        else:
            assert row["features_forced"] == [feature]
            assert row["feature_examples"][feature] == row["examples"] > 0
    if option == "--ssm-with":
        assert f"forced features (--ssm-with, in every example): {feature}" in run.output
