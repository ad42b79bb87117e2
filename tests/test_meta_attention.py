"""Meta-tests of the attention role: torch's own scaled_dot_product_attention (MATH backend) and
two other correct attentions pass; an off-by-one causal mask (either way), scale 1/e instead of 1/sqrt(e),
an unstabilized softmax (overflows on large logits), a bottom-right aligned mask and a softmax
over the wrong axis are each rejected -- run from the command line, verdicts from report.json,
with the property that caught each."""
from __future__ import annotations

import pytest

from tests.cli import run_suite
from tests.subjects import attention_subjects

_RUNS = {}


def _run(tmp_path_factory):
    if "run" not in _RUNS:
        args = []
        for name in [*attention_subjects.CORRECT, *attention_subjects.WRONG, "sdpa"]:
            args += ["--ssm-subject", f"attention=tests.subjects.attention_subjects:{name}"]
        _RUNS["run"] = run_suite(*args, profile="ci-noshrink",
                                 report_dir=tmp_path_factory.mktemp("attention"))
    return _RUNS["run"]


@pytest.mark.parametrize("name", sorted(attention_subjects.CORRECT))
def test_correct_attention_passes(name, tmp_path_factory):
    run = _run(tmp_path_factory)
    rows = run.results(":" + name)
    assert rows and all(r["verdict"] == "pass" for r in rows), \
        "\n".join(r["message"] for r in rows)


# the property expected to catch each mistake first: every one of them is wrong numerically
CAUGHT_BY = {
    "causal_diag_minus1": "matches_oracle", "causal_diag_plus1": "matches_oracle",
    "scale_1_over_e": "matches_oracle", "unstabilized": "matches_oracle",
    "bottom_right": "matches_oracle", "softmax_wrong_axis": "matches_oracle",
}


@pytest.mark.parametrize("name", sorted(attention_subjects.WRONG))
def test_wrong_attention_is_rejected(name, tmp_path_factory):
    run = _run(tmp_path_factory)
    failed = {r["property"]: r["failure_kind"] for r in run.results(":" + name)
              if r["verdict"] == "fail"}
    assert CAUGHT_BY[name] in failed, (name, failed)
    assert run.status == 1


def test_default_cpu_sdpa_fails_only_on_causal_negative_scale(tmp_path_factory):
    """A finding, kept as a test so it is noticed when torch changes: torch's default CPU SDPA
    kernel returns NaN for causal attention with a negative scale (the MATH backend does not)."""
    run = _run(tmp_path_factory)
    rows = {r["property"]: r for r in run.results(":sdpa")}
    failure = rows["matches_oracle"]
    assert failure["verdict"] == "fail" and failure["failure_kind"] == "non_finite", failure
    assert "is_causal = True" in failure["message"]
    scale_line = next(line for line in failure["message"].splitlines()
                      if line.startswith("scale = "))
    assert float(scale_line.split("=")[1]) < 0, scale_line
