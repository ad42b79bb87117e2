"""Meta-tests of the long sequences (issue 11): the suite, run from its command line, rejects
chunked scans whose mistake only shows past a chunk boundary (tests/subjects/long_wrong_scan.py),
names the property that caught it, and prints a reproduction that is a generator call (a seed and
sizes) rather than the long input's numbers -- a reproduction that runs and gives the failing
value; the same chunked scans without the mistake pass.

Four CLI runs (``ci-noshrink``: the ``ci`` examples, the first failure reported as drawn):
``-k matches_oracle`` for selective_scan with its control and two wrong subjects and linear_scan
with its control and one; ``-k matches_oracle --ssm-max-length 8193`` for selective_scan with
what the path-weighted bound (docs/bounds.md) rejects and the uniform one admitted -- a bfloat16
carry every 2048 steps, a 1e-3 relative error past l/2, decays from one global cumulative sum --
and an exp2-idiom scan it admits; ``-k decode_equals_scan`` for selective_state_update with its control, a
kernel whose int16 position counter wraps past 2^15 decode steps, and one that hangs mid-sequence
(found within the 2 s per-call limit, at its step).
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from tests.cli import run_suite

MODULE = "tests.subjects.long_wrong_scan"
RUNS = {
    "selective_scan": {"selective_scan_chunked_correct": None,
                       "ss_drops_state_past_2048": "matches_oracle",
                       "ss_bf16_carry": "matches_oracle"},
    # the path-weighted bound (docs/bounds.md), at lengths <= 8193 (--ssm-max-length): what the
    # uniform bound admitted and this one rejects, and two admitted algorithms
    "selective_scan_bounds": {"selective_scan_exp2_chunked": None,
                              "ss_bf16_carry_2048": "matches_oracle",
                              "ss_late_error": "matches_oracle",
                              "ss_global_cumsum": "matches_oracle"},
    "linear_scan": {"linear_scan_blocked_correct": None,
                    "ls_resets_between_blocks": "matches_oracle"},
    # decode sequences of up to 2^16 + 1 steps on one cache (properties/test_state_update.py)
    "selective_state_update": {"state_update_correct": None,
                               "ssu_int16_position": "decode_equals_scan",
                               "ssu_hangs_at_step_3000": "decode_equals_scan"},
}
SELECTED = {"selective_state_update": ["-k", "decode_equals_scan", "--ssm-call-timeout", "2"],
            "selective_scan_bounds": ["-k", "matches_oracle and not vjp", "--ssm-max-length",
                                      "8193"]}
ROLE = {"selective_scan_bounds": "selective_scan"}   # a run's role, where its key is not one
XDIST_RUN_KEY = "role"   # one CLI run per role (root conftest.py: xdist groups)
_DONE = {}


def _run(role, tmp_path_factory):
    if role not in _DONE:
        args = SELECTED.get(role, ["-k", "matches_oracle and not vjp"])
        for name in RUNS[role]:
            args += ["--ssm-subject", f"{ROLE.get(role, role)}={MODULE}:{name}"]
        _DONE[role] = run_suite(*args, profile="ci-noshrink",
                                report_dir=tmp_path_factory.mktemp(role), timeout=900)
    return _DONE[role]


CASES = [(role, name, caught) for role, subjects in RUNS.items()
         for name, caught in subjects.items()]


@pytest.mark.parametrize("role,name,caught", CASES, ids=[c[1] for c in CASES])
def test_long_defects_rejected_with_a_generator_reproduction(role, name, caught,
                                                             tmp_path_factory):
    run = _run(role, tmp_path_factory)
    rows = {r["property"]: r for r in run.results(f"{MODULE}:{name}")}
    assert rows, f"no report row for {name}:\n{run.output[-3000:]}"
    if caught is None:   # the control
        assert all(r["verdict"] == "pass" for r in rows.values()), \
            {p: (r["verdict"], r["message"][:2000]) for p, r in rows.items()}
        return
    row = rows[caught]
    message = row["message"]
    if name == "ssu_hangs_at_step_3000":   # the hang is found within the limit, at its step
        assert row["verdict"] == "fail" and row["failure_kind"] == "hang", message[:3000]
        assert re.search(r"no answer within 2 s .*at decode step \d+", message), message[:3000]
        assert "decode_case_from_seed(seed=" in message and "for t in range(" in message
        return
    assert row["verdict"] == "fail" and row["failure_kind"] == "inaccurate", (row["verdict"],
                                                                            message[:3000])
    if role == "selective_state_update":   # caught only past 2^15 steps
        assert row["longest_length"] == 2**16 + 1 and "for t in range(65537)" in message
    # a generator call, not a million numbers
    assert "_case_from_seed(seed=" in message, message[:3000]
    assert len(message) < 5000, len(message)
    _reproduction_runs_and_fails(role, name, message)


def _reproduction_runs_and_fails(role, name, message):
    """Run the printed reproduction with the subject bound to its name; the value it prints as
    failing comes out at the printed index."""
    head = re.search(r"error exceeds the tolerance: (.+?)\[([\d, ]+)\] = "
                     r"(?:np\.float64\()?([-+\d.eE]+)\)?, oracle", message)
    assert head, message[:2000]
    output, index, got = head.group(1), tuple(int(i) for i in head.group(2).split(",")), \
        float(head.group(3))
    code = message.split("reproduction:\n", 1)[1]
    code = code.split("\n\n", 1)[0]
    import importlib
    fn = getattr(importlib.import_module(MODULE), name)
    namespace = {name: fn}   # the reproduction's last line calls the subject by its name
    exec(code, namespace)  # noqa: S102 - the suite's own printed reproduction
    if output.startswith("out of steps"):       # a decode loop: its outputs, step-major last
        value = torch.stack(namespace["outs"], dim=-1)
    elif output.startswith("state after"):
        value = namespace["state"]
    else:
        out = namespace["out"]
        value = (out[0] if output == "out" and isinstance(out, tuple) else
                 out[1] if isinstance(out, tuple) else out)
    assert np.float64(value[index].double().item()) == got
