"""Opt-outs for input classes a classic algorithm legitimately does not support (issue 13, item 2;
CONTRACT.md's features ``non_contiguous`` and ``marginal_Lambda``). Each such algorithm fails by
default -- a true finding -- and conforms with ``--ssm-without FEATURE``; the report lists the
feature as left out, and counts the examples that exercised it when it is in.

* mamba-ssm's ``selective_scan_ref`` raises on strided complex B/C (``view_as_complex`` of a view
  whose last stride is not 1). Its sources are not installed here: tests/subjects/mamba_like.py
  takes the same step (see its docstring); the real reference is judged too where its sources
  load (tests/subjects/mamba_refs.py).
* S4's generating-function DPLR kernel (tests/subjects/s4_textbook.py) is singular where
  Re lambda_i = 0 (g(z_j) meets lambda_i; lambda = 0 at z_0 = 1).

CLI runs, only the properties concerned: the failing runs in ``ci-noshrink`` (they stop at the
first failure), the conforming ones in ``dev`` with a fixed seed (25 examples, as
test_meta_s4's rank2 test) to keep the suite's CI time down.
"""
from __future__ import annotations

import pytest

from tests.cli import run_suite
from tests.subjects import mamba_refs

LIKE = "tests.subjects.mamba_like:selective_scan_view_as_complex"
LOOP = "tests.subjects.selective_correct:selective_scan_loop"
REF = "tests.subjects.selective_correct:selective_scan_mamba_ref"
REF_OK, REF_WHY = mamba_refs.available("mamba_ssm")
SCANS = [LIKE] + ([REF] if REF_OK else [])
TEXTBOOK = "tests/subjects/s4_textbook.py:dplr_generating_function"


def _rows(run, target):
    assert run.report is not None, run.output[-3000:]
    rows = {r["property"]: r for r in run.results(target)}
    assert rows, run.output[-3000:]
    return rows


@pytest.fixture(scope="module")
def scan_runs(tmp_path_factory):
    """Default: the non_contiguous property of the references and of a correct loop. Without
    non_contiguous: the references' matches_oracle too (the property that sees strided
    layouts is then skipped; the others do not use them)."""
    def subjects(targets):
        return [a for t in targets for a in ("--ssm-subject", f"selective_scan={t}")]
    return {
        False: run_suite("-k", "non_contiguous", *subjects(SCANS + [LOOP]),
                         profile="ci-noshrink", report_dir=tmp_path_factory.mktemp("nc0")),
        # lengths capped: the opt-out is under test here, not long inputs (the reference-like
        # subject is a time loop; test_meta_long_scan.py judges long cases)
        True: run_suite("-k", "non_contiguous or (matches_oracle and not vjp)",
                        *subjects(SCANS), "--ssm-without", "non_contiguous",
                        "--hypothesis-seed", "0", "--ssm-max-length", "256",
                        profile="dev", report_dir=tmp_path_factory.mktemp("nc1")),
    }


@pytest.mark.parametrize("target", SCANS)
def test_selective_scan_ref_raises_on_strided_complex_BC_by_default(scan_runs, target):
    run = scan_runs[False]
    rows = _rows(run, target)
    assert rows["non_contiguous"]["verdict"] == "fail", rows["non_contiguous"]
    assert rows["non_contiguous"]["failure_kind"] == "raised"
    assert "stride" in rows["non_contiguous"]["message"]
    assert run.status == 1


def test_non_contiguous_examples_are_counted(scan_runs):
    row = _rows(scan_runs[False], LOOP)["non_contiguous"]
    assert row["verdict"] == "pass", row["message"]
    assert "non_contiguous" in row["features_exercised"]
    assert row["feature_examples"]["non_contiguous"] == row["examples"] > 0


@pytest.mark.parametrize("target", SCANS)
def test_selective_scan_ref_conforms_without_non_contiguous(scan_runs, target):
    run = scan_runs[True]
    rows = _rows(run, target)
    assert rows["matches_oracle"]["verdict"] == "pass", rows["matches_oracle"]["message"]
    assert rows["non_contiguous"]["verdict"] == "skip"
    assert all(r["features_left_out"] == ["non_contiguous"] for r in rows.values())
    assert "non_contiguous" not in rows["matches_oracle"]["features_exercised"]
    assert "complex_A" in rows["matches_oracle"]["features_exercised"]   # contiguous complex B/C
    assert run.status == 0, run.output[-3000:]


@pytest.fixture(scope="module")
def dplr_runs(tmp_path_factory):
    args = ["-k", "matches_oracle", "--ssm-subject", f"dplr_kernel={TEXTBOOK}"]
    return {
        False: run_suite(*args, profile="ci-noshrink", report_dir=tmp_path_factory.mktemp("ml0")),
        True: run_suite(*args, "--ssm-without", "marginal_Lambda", "--hypothesis-seed", "0",
                        profile="dev", report_dir=tmp_path_factory.mktemp("ml1")),
    }


def test_generating_function_dplr_fails_on_marginal_Lambda(dplr_runs):
    run = dplr_runs[False]
    row = _rows(run, TEXTBOOK)["matches_oracle"]
    assert row["verdict"] == "fail", row
    assert "marginal_Lambda" in row["features_exercised"]
    assert run.status == 1


def test_generating_function_dplr_conforms_without_marginal_Lambda(dplr_runs):
    run = dplr_runs[True]
    row = _rows(run, TEXTBOOK)["matches_oracle"]
    assert row["verdict"] == "pass", row["message"]
    assert row["features_left_out"] == ["marginal_Lambda"]
    assert row["feature_examples"]["marginal_Lambda"] == 0 and row["examples"] >= 20
    assert run.status == 0, run.output[-3000:]
