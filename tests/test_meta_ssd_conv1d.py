"""Meta-tests of the ``ssd`` and ``causal_conv1d`` properties (properties/test_ssd.py,
properties/test_causal_conv1d.py): the suite, run from its command line, rejects every wrong SSD
and causal conv1d of tests/subjects/mamba_wrong.py -- and the report row of the property expected
to catch each mistake says "fail" -- and passes the correct subjects, built on other algorithms
(tests/subjects/ssd_conv1d_correct.py: quadratic form, plain recurrence, our chunked kernel with
another chunk size, decays from one cumulative sum per chunk; F.conv1d with symmetric padding, unfold, a loop over taps; mamba_wrong's own
base implementations; and upstream's pure-PyTorch references when tests/subjects/mamba_refs.py
can load them).

One CLI run per role judges all of its subjects together (profile ci-noshrink: the ci examples,
no shrinking), forward only: the correct subjects with every property, each wrong one with the
properties expected to catch it; the verdicts are read from report.json.
"""
from __future__ import annotations

import pytest

from tests.cli import deselect_all_but, run_suite
from tests.subjects import mamba_refs

CORRECT = {
    "ssd": ["tests.subjects.ssd_conv1d_correct:ssd_quadratic",
            "tests.subjects.ssd_conv1d_correct:ssd_recurrent",
            "tests.subjects.ssd_conv1d_correct:ssd_chunked_divisor",
            "tests.subjects.ssd_conv1d_correct:ssd_chunk_cumsum",
            "tests.subjects.mamba_wrong:ssd_correct"],
    "causal_conv1d": ["tests.subjects.ssd_conv1d_correct:conv1d_padded_conv",
                      "tests.subjects.ssd_conv1d_correct:conv1d_unfold",
                      "tests.subjects.ssd_conv1d_correct:conv1d_loop",
                      "tests.subjects.mamba_wrong:causal_conv1d_correct"],
}
# Upstream references, judged when their sources load (MAMBA_SSM_SRC / CAUSAL_CONV1D_SRC and
# einops): ssd_minimal_discrete (through its adapter) has every SSD feature; causal_conv1d_ref.
UPSTREAM = {"ssd": ("mamba_ssm", "tests.subjects.mamba_refs:ssd_minimal"),
            "causal_conv1d": ("causal_conv1d", "tests.subjects.mamba_refs:causal_conv1d")}

# wrong subject -> the properties that must report it (it may fail others too; every property
# judges it independently). From the mistake each docstring names:
WRONG = {
    "ssd": {
        "ssd_state_not_carried": {"matches_oracle", "chunk_size_invariant", "state_carry"},
        "ssd_segsum_off_by_one": {"matches_oracle"},
        "ssd_D_hp_transposed": {"matches_oracle"},
        "ssd_initial_states_ignored": {"matches_oracle", "state_carry"},
        "ssd_dt_bias_ignored": {"matches_oracle"},
        "ssd_pad_before_dt_transform": {"matches_oracle", "state_carry"},   # final states
    },
    "causal_conv1d": {
        "conv_weight_reversed": {"matches_oracle"},
        "conv_acausal_same_padding": {"matches_oracle", "causal"},
        "conv_bias_after_silu": {"matches_oracle"},
    },
}


def _correct(role):
    names = list(CORRECT[role])
    source, target = UPSTREAM[role]
    if mamba_refs.available(source)[0]:
        names.append(target)
    return names


XDIST_RUN_KEY = "role"   # one CLI run per role (root conftest.py: xdist groups)
_RUNS = {}


def _run(role, tmp_path_factory):
    if role not in _RUNS:
        # short-input defects (the quadratic SSD is O(l^2)): the explicit long cases capped;
        # tests/test_meta_long_mixers.py judges long ones
        # (correct subjects: every property; wrong ones: the properties expected to catch them)
        wrong = {f"tests.subjects.mamba_wrong:{n}": props for n, props in WRONG[role].items()}
        args = ["--ssm-max-length=128", *deselect_all_but(role, wrong)]
        for target in _correct(role) + list(wrong):
            args += ["--ssm-subject", f"{role}={target}"]
        _RUNS[role] = run_suite(*args, profile="ci-noshrink",
                                report_dir=tmp_path_factory.mktemp(role))
    return _RUNS[role]


def test_every_wrong_subject_of_mamba_wrong_is_listed():
    from tests.cli import subjects_of
    from tests.subjects import mamba_wrong
    listed = set(WRONG["ssd"]) | set(WRONG["causal_conv1d"])
    present = {n for n in subjects_of(mamba_wrong, "ssd_") + subjects_of(mamba_wrong, "conv_")
               if n != "ssd_correct"}
    assert present == listed


CASES = ([(role, "correct", t) for role in CORRECT for t in CORRECT[role]]
         + [(role, "upstream", UPSTREAM[role][1]) for role in UPSTREAM]
         + [(role, "wrong", n) for role in WRONG for n in WRONG[role]])


@pytest.mark.parametrize("role,expected,name", CASES, ids=[c[2].rpartition(":")[2] for c in CASES])
def test_verdict(role, expected, name, tmp_path_factory):
    if expected == "upstream" and not mamba_refs.available(UPSTREAM[role][0])[0]:
        pytest.skip(f"upstream sources not loadable: {mamba_refs.available(UPSTREAM[role][0])[1]}")
    run = _run(role, tmp_path_factory)
    assert run.report is not None, run.output[-3000:]
    rows = run.results(":" + name.rpartition(":")[2])
    assert rows, run.output[-3000:]
    if expected in ("correct", "upstream"):
        bad = [r for r in rows if r["verdict"] == "fail"]
        assert not bad, f"{name} is correct but was rejected:\n" + "\n".join(r["message"] for r in bad)
        assert {r["property"] for r in rows if r["verdict"] == "pass"} >= \
            {"matches_oracle", "causal", "batch_independent", "non_contiguous"}
    else:
        assert {r["property"] for r in rows} == WRONG[role][name]   # the others were deselected
        failed = {r["property"]: r for r in rows if r["verdict"] == "fail"}
        missing = WRONG[role][name] - set(failed)
        assert not missing, (f"{name}: expected to be caught by {sorted(missing)}, caught by "
                             f"{sorted(failed)} (max ratios "
                             f"{ {r['property']: r['max_ratio'] for r in rows} })")
        # caught on the numbers, not through a crash of the suite's own code
        assert {failed[p]["failure_kind"] for p in WRONG[role][name]} == {"inaccurate"}
    assert run.status == 1  # every run holds wrong subjects
