"""Meta-tests of the long cases of ``ssd``, ``causal_conv1d`` and ``attention`` (issue 11): kernels
correct on short inputs but wrong past thousands of steps (tests/subjects/long_wrong_mixers.py)
are rejected by ``matches_oracle`` on its explicit long cases -- the report row of that property
says "fail" -- and the failure prints a generator call as its reproduction, not the numbers; the
correct blocked control of each role passes.  One CLI run per role (ci-noshrink, -k to the one
property, float32), all of its subjects together."""
from __future__ import annotations

import pytest

from tests.cli import run_suite
from tests.subjects import mamba_refs

MOD = "tests.subjects.long_wrong_mixers"
ROLES = {
    "ssd": ("ssd_blocked_correct", ["ssd_global_cumsum", "ssd_drops_state_late", "ssd_late_error"],
            "ssd_case_from_seed("),
    "causal_conv1d": ("conv1d_tiled_correct", ["conv1d_tiled_no_halo"], "conv1d_case_from_seed("),
    "attention": ("attention_blocked_correct", ["attention_no_rescale"], "make_case("),
}


# further correct kernels judged on the long cases: decays from one float32 cumulative sum per
# chunk (as mamba-ssm's Triton kernels) must pass the path-weighted bound (docs/bounds_ssd.md)
MORE_CORRECT = {"ssd": ["tests.subjects.ssd_conv1d_correct:ssd_chunk_cumsum"]}

# mamba-ssm's pure-torch references, judged on the long cases too when they load (einops and the
# sources: tests/subjects/mamba_refs.py)
UPSTREAM = {"ssd": ("mamba_ssm", "tests.subjects.mamba_refs:ssd_minimal"),
            "causal_conv1d": ("causal_conv1d", "tests.subjects.mamba_refs:causal_conv1d")}


XDIST_RUN_KEY = "role"   # one CLI run per role (root conftest.py: xdist groups)


@pytest.mark.parametrize("role", list(ROLES))
def test_long_defects_rejected(role, tmp_path):
    correct, wrong, generator = ROLES[role]
    args = [f"--ssm-subject={role}={MOD}:{name}" for name in [correct, *wrong]]
    args += [f"--ssm-subject={role}={target}" for target in MORE_CORRECT.get(role, [])]
    upstream = None
    if role in UPSTREAM and mamba_refs.available(UPSTREAM[role][0])[0]:
        upstream = UPSTREAM[role][1]
        args.append(f"--ssm-subject={role}={upstream}")
    run = run_suite(*args, "-k", f"test_{role}_matches_oracle", report_dir=tmp_path,
                    profile="ci-noshrink")
    assert run.report is not None, run.output[-3000:]
    assert run.verdict(f":{correct}") == ("pass", None), run.output[-3000:]
    for target in MORE_CORRECT.get(role, []):
        assert run.verdict(":" + target.rpartition(":")[2]) == ("pass", None), (target, run.output[-3000:])
    if upstream:
        assert run.verdict(upstream.partition(":")[1] + upstream.partition(":")[2]) == ("pass", None)
    for name in wrong:
        rows = [r for r in run.results(f":{name}") if r["property"] == "matches_oracle"]
        assert rows and rows[0]["verdict"] == "fail", (name, run.output[-3000:])
        message = rows[0]["message"]
        assert generator in message and "subject_inputs(case" in message, message
        # rejected for its numbers: beyond the bound, non-finite, or (a small late error within
        # the bound on the first failing example) imprecise against the panel
        assert ("error exceeds the tolerance" in message
                or rows[0]["failure_kind"] in ("non_finite", "imprecise")), message
