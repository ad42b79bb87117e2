"""Meta-tests of the role ``rg_lru``: the suite, run from its command line, rejects every wrong
subject of tests/subjects/rg_lru_wrong.py as ``inaccurate`` at matches_oracle, passes the control
(the same loop without the mistake), and prints a reproduction that runs and gives the failing
value.

One CLI run (``ci-noshrink``: the ``ci`` examples, the first failure reported as drawn),
``-k "matches_oracle and not vjp"``, lengths capped at 8193 (the explicit long cases cross the
chunk sizes up to 2^13; the long tier judges the ones past the oracle's size).
"""
from __future__ import annotations

import importlib
import re

import numpy as np
import pytest

from tests.cli import run_suite, subjects_of
from tests.subjects import rg_lru_wrong

MODULE = "tests.subjects.rg_lru_wrong"
WRONG = [name for name in subjects_of(rg_lru_wrong, "rg_") if name != "rg_correct"]
_DONE = {}


def _run(tmp_path_factory):
    if "run" not in _DONE:
        args = ["-k", "matches_oracle and not vjp", "--ssm-max-length", "8193"]
        for name in ["rg_correct", *WRONG]:
            args += ["--ssm-subject", f"rg_lru={MODULE}:{name}"]
        _DONE["run"] = run_suite(*args, profile="ci-noshrink",
                                 report_dir=tmp_path_factory.mktemp("rg_lru"), timeout=900)
    return _DONE["run"]


def test_there_are_at_least_six_wrong_subjects():
    assert len(WRONG) >= 6, WRONG


def test_control_passes(tmp_path_factory):
    run = _run(tmp_path_factory)
    rows = run.results(f"{MODULE}:rg_correct")
    assert rows and all(r["verdict"] == "pass" for r in rows), \
        [(r["verdict"], (r.get("message") or "")[:2000]) for r in rows] or run.output[-3000:]


@pytest.mark.parametrize("name", WRONG)
def test_wrong_subject_rejected_as_inaccurate(name, tmp_path_factory):
    run = _run(tmp_path_factory)
    rows = {r["property"]: r for r in run.results(f"{MODULE}:{name}")}
    assert "matches_oracle" in rows, run.output[-3000:]
    row = rows["matches_oracle"]
    message = row["message"]
    assert row["verdict"] == "fail" and row["failure_kind"] == "inaccurate", \
        (row["verdict"], message[:3000])
    _reproduction_runs_and_fails(name, message)


def _reproduction_runs_and_fails(name, message):
    """Run the printed reproduction with the subject bound to its name: the printed failing
    value comes out at the printed index."""
    head = re.search(r"error exceeds the tolerance: (y|h_last)\[([\d, ]+)\] = "
                     r"(?:np\.float64\()?([-+\d.eEinf]+)\)?, oracle", message)
    assert head, message[:2000]
    output, index, got = head.group(1), tuple(int(i) for i in head.group(2).split(",")), \
        float(head.group(3))
    code = message.split("reproduction:\n", 1)[1].split("\n\n", 1)[0]
    namespace = {name: getattr(importlib.import_module(MODULE), name)}
    exec(code, namespace)  # noqa: S102 - the suite's own printed reproduction
    out = namespace["out"]
    value = out[1] if output == "h_last" else (out[0] if isinstance(out, tuple) else out)
    assert np.float64(value[index].double().item()) == got
