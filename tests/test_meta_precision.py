"""Meta-tests of the precision verdict (properties/precision.py, oracle/panel.py): the suite, run
from its command line, accepts every member of each role's precision panel as a subject and
other standard algorithms (an exp2 loop, an independently written chunk-cumsum SSD), rejects as
``imprecise`` a kernel that stays within the error bound but loses precision (16x the loop's own
error past l/2, K = 2), rejects a relative 1e-4 in one late output element at l = 2^17, 1e-3 in one
late gradient element at l = 2^16 and a bf16 state every 2048 steps (the precision verdict
rejected them under the uniform bound; the path-weighted bound now says ``inaccurate`` first),
never says ``imprecise`` with
``--ssm-precision-factor off``, and refuses K < 1 or garbage as a usage error (exit 4).

Cheap: the ``meta-small`` profile (tests/small_profile.py: 8 drawn examples after the explicit
ones) and ``--ssm-max-length`` caps, except the one uncapped run of the late errors (its
subjects err only past 2^16 steps; each property stops at its first failing explicit example).
"""
from __future__ import annotations

import pytest

from tests.cli import deselect_all_but, run_suite
from tests.subjects import precision_subjects as subjects

MODULE = "tests.subjects.precision_subjects"
SMALL = ("-p", "tests.small_profile")
ACCEPTED_EXTRA = {"selective_scan": ["ss_exp2_loop"], "ssd": ["ssd_chunk_cumsum"]}
XDIST_RUN_KEY = "run"   # one CLI run per key (root conftest.py: xdist groups)
_DONE = {}


def _subject_args(role, names):
    return [a for name in names for a in ("--ssm-subject", f"{role}={MODULE}:{name}")]


def _runs():
    # one CLI run judges every role's members (one start-up of the suite instead of six)
    members = ["-k", "matches_oracle", "--ssm-max-length", "64", "--ssm-grad"]
    for role, names in subjects.MEMBERS.items():
        members += _subject_args(role, names + ACCEPTED_EXTRA.get(role, []))
    # ssd's chunked algorithms: their gradients by autograd through cumsum differences are not
    # within the VJP's bound (oracle/panel.py, PANELS): the forward only
    members += deselect_all_but("ssd", {f"{MODULE}:{name}": {"matches_oracle"}
                                        for name in ("ssd_chunked", "ssd_chunk_cumsum")})
    runs = {"members": members}
    # 16x the loop's error on >= 2048 steps (K = 2), a bf16 state every 2048 steps: the forward
    runs["bf16-state"] = (_subject_args("selective_scan", ["ss_bf16_every_2048"])
                          + _subject_args("linear_scan", ["ls_16x_loop_error_late"])
                          + ["-k", "matches_oracle and not vjp", "--ssm-max-length", "4096",
                             "--ssm-precision-factor", "2"])
    runs["off"] = (_subject_args("linear_scan", ["ls_16x_loop_error_late"])
                   + _subject_args("selective_scan", ["ss_bf16_every_2048"])
                   + ["-k", "matches_oracle and not vjp", "--ssm-max-length", "4096",
                      "--ssm-precision-factor", "off"])
    runs["late"] = (_subject_args("linear_scan", ["ls_late_rel_1e4", "ls_late_grad_rel_1e3"])
                    + ["-k", "matches_oracle", "--ssm-grad"]
                    + deselect_all_but("linear_scan", {
                        f"{MODULE}:ls_late_rel_1e4": {"matches_oracle"},
                        f"{MODULE}:ls_late_grad_rel_1e3": {"vjp_matches_oracle"}}))
    return runs


RUNS = _runs()


def _run(run, tmp_path_factory):
    if run not in _DONE:
        _DONE[run] = run_suite(*SMALL, *RUNS[run], profile="meta-small",
                               report_dir=tmp_path_factory.mktemp(run), timeout=900)
    return _DONE[run]


def _rows(run, name):
    rows = {r["property"]: r for r in run.results(f"{MODULE}:{name}")}
    assert rows, f"no report row for {name}:\n{run.output[-3000:]}"
    return rows


MEMBER_CASES = [("members", name) for role, members in subjects.MEMBERS.items()
                for name in members + ACCEPTED_EXTRA.get(role, [])]


@pytest.mark.parametrize("run,name", MEMBER_CASES, ids=[c[1] for c in MEMBER_CASES])
def test_standard_algorithms_are_accepted(run, name, tmp_path_factory):
    """Each panel member, and the other standard algorithms, pass both verdicts; the precision
    verdict judged them (report rows carry its figures)."""
    rows = _rows(_run(run, tmp_path_factory), name)
    for prop, row in rows.items():
        assert row["verdict"] == "pass", (prop, row["verdict"], row["message"][:3000])
        assert row["precision"] is not None and row["precision"]["examples"] > 0, (prop, row)
        assert row["precision"]["max_precision_ratio"] <= 1.0


def test_16x_the_loops_error_passes_the_bound_but_is_imprecise_at_k_2(tmp_path_factory):
    """Within the bound, 16 times the loop's own error past l/2 (l >= 2048), K = 2. (64x with
    K = 16 is beyond the path-weighted bound: inaccurate.)"""
    row = _rows(_run("bf16-state", tmp_path_factory), "ls_16x_loop_error_late")["matches_oracle"]
    message = row["message"]
    assert row["verdict"] == "fail" and row["failure_kind"] == "imprecise", \
        (row["verdict"], row["failure_kind"], message[:3000])
    assert "within the error bound, but it loses" in message and "bits" in message, message[:2000]
    assert "reproduction:" in message
    assert row["precision"]["max_precision_ratio"] > 1.0
    assert row["worst_example"]["length"] >= 2048


@pytest.mark.parametrize("name,prop", [("ls_late_rel_1e4", "matches_oracle"),
                                       ("ls_late_grad_rel_1e3", "vjp_matches_oracle")],
                         ids=["late_1e-4_at_2^17", "late_grad_1e-3_at_2^16"])
def test_small_late_errors_are_rejected_at_long_lengths(name, prop, tmp_path_factory):
    """Rejected on the explicit long lengths, where they start to err: the precision verdict
    would (the uniform bound admitted them); the path-weighted bound now says inaccurate
    first (tolerance.py: ~1.7e-5 relative there)."""
    row = _rows(_run("late", tmp_path_factory), name)[prop]
    assert row["verdict"] == "fail" and row["failure_kind"] in ("imprecise", "inaccurate"), \
        (row["verdict"], row["failure_kind"], row["message"][:3000])
    assert "reproduction:" in row["message"]
    # the late errors show only past 2^16 (forward) / 2^15 (gradient) steps
    assert row["worst_example"]["length"] > (2**16 if prop == "matches_oracle" else 2**15), \
        row["worst_example"]["length"]


def test_bf16_state_every_2048_steps_is_rejected(tmp_path_factory):
    """A bfloat16 state every 2048 steps: the uniform bound admitted it and the precision
    verdict rejected it; the path-weighted bound (tolerance.py, docs/bounds.md) now rejects it
    too, on the first example that crosses 2048 steps: either verdict is a rejection."""
    row = _rows(_run("bf16-state", tmp_path_factory), "ss_bf16_every_2048")["matches_oracle"]
    assert row["verdict"] == "fail" and row["failure_kind"] in ("imprecise", "inaccurate"), \
        (row["verdict"], row["failure_kind"], row["message"][:3000])
    assert row["worst_example"]["length"] > 2048


@pytest.mark.parametrize("name", ["ls_16x_loop_error_late", "ss_bf16_every_2048"])
def test_precision_factor_off_judges_by_the_bound_alone(name, tmp_path_factory):
    """With ``off`` the 16x kernel (imprecise at K = 2) passes: its error is within the bound;
    the bf16 state exceeds the path-weighted bound: it fails as inaccurate, never as
    imprecise."""
    run = _run("off", tmp_path_factory)
    for prop, row in _rows(run, name).items():
        if name == "ls_16x_loop_error_late":
            assert row["verdict"] == "pass", (prop, row["failure_kind"], row["message"][:2000])
        assert row["failure_kind"] != "imprecise", row["message"][:2000]
        assert row["precision"] is None
    assert run.report["options"]["precision_factor"] is None
    assert "imprecise" not in run.output


def test_precision_factor_below_one_or_garbage_is_a_usage_error():
    run = run_suite("--ssm-subject", f"linear_scan={MODULE}:linear_scan_loop",
                    "--ssm-precision-factor", "0.5", timeout=120)
    assert run.status == 4, (run.status, run.output[-2000:])
    assert "--ssm-precision-factor" in run.output


@pytest.mark.parametrize("value", ["0.5", "0", "-3", "abc", "nan", "inf", "", "16x"])
def test_parse_factor_refuses_below_one_and_garbage(value):
    from ssm_conformance.properties.precision import parse_factor
    with pytest.raises(ValueError, match="number >= 1 or 'off'"):
        parse_factor(value)


def test_parse_factor_accepts_numbers_from_one_and_off():
    from ssm_conformance.properties.precision import parse_factor
    assert parse_factor("16") == 16.0 and parse_factor("1") == 1.0
    assert parse_factor("2.5") == 2.5 and parse_factor("off") is None
    assert parse_factor("OFF") is None


def test_check_validates_precision_factor():
    from ssm_conformance import check
    with pytest.raises(ValueError, match="precision_factor"):
        check("linear_scan", subjects.linear_scan_loop, precision_factor=0.5)
    with pytest.raises(TypeError, match="precision_factor"):
        check("linear_scan", subjects.linear_scan_loop, precision_factor=[16])
