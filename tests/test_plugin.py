"""The plugin's entry points beside the command line: the Python API ``ssm_conformance.check``,
the console script's arguments, runs spread over pytest-xdist workers (one merged report), and
what the report and the failure messages show (Hypothesis's test-case dump left out, a failed
property's worst example, capped runs, lengths)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ssm_conformance import check
from ssm_conformance.cli import pytest_args
from ssm_conformance.properties.options import RUN
from ssm_conformance.properties.plugin import hypothesis_notes
from ssm_conformance.properties.report import RECORDER
from tests.cli import run_suite

CONV_NP = "causal_conv=ssm_conformance.implementations.numpy.convolution:causal_conv"
CONV_TORCH = "causal_conv=ssm_conformance.implementations.torch.convolution:causal_conv"
CONV_WRONG = "causal_conv=tests.subjects.lti_wrong:causal_conv_fft_circular"


# --- failure messages ----------------------------------------------------------------------------

# The notes Hypothesis attaches to a failure, as its versions write them (hypothesis/core.py):
# before 6.170 "Falsifying example: ..." / "Falsifying explicit example: ...", from 6.170 on
# "Failing test case: ..." / "Failing explicit example: ...".
DUMPS = [
    "Falsifying example: test_matches_oracle(\n    sut=SubjectUnderTest(subject=Subject(...)),\n"
    "    case=ConvCase(u=array([0.1]), K=array([0.2])),\n)",
    "Falsifying explicit example: test_matches_oracle(\n    sut=SubjectUnderTest(...),\n)",
    "Failing test case: test_matches_oracle(\n    sut=SubjectUnderTest(subject=Subject(...)),\n"
    "    case=ConvCase(u=array([0.1]), K=array([0.2])),\n)",
    "Failing explicit example: test_matches_oracle(\n    sut=SubjectUnderTest(...),\n)",
]
KEPT = ["You can reproduce this example by temporarily adding @reproduce_failure('6.170.17', "
        "b'AXic') as a decorator on your test case",
        "Explanation:\n    These lines were always and only run by failing examples:"]


def test_hypothesis_test_case_dumps_are_left_out_in_every_version():
    assert hypothesis_notes(DUMPS + KEPT) == KEPT


# --- the Python API ------------------------------------------------------------------------------

def conv_np(u, K):
    return np.convolve(u, K)[: len(u)]


def conv_scaled(u, K):  # wrong: 1 + 2^-20 times the convolution
    return np.convolve(u, K)[: len(u)] * (1 + 2.0 ** -20)


@pytest.mark.parametrize("kwargs,error,needle", [
    (dict(role="no_such_role"), ValueError, "role: unknown role 'no_such_role'"),
    (dict(role=3), TypeError, "role:"),
    (dict(fn="not callable"), TypeError, "fn: expected a callable"),
    (dict(role="linear_scan", dtypes=("float8",)), ValueError, "dtypes: unknown dtype 'float8'"),
    (dict(role="linear_scan", dtypes=3), TypeError, "dtypes:"),
    (dict(dtypes=("bfloat16",)), ValueError, "dtypes: unknown dtype 'bfloat16' for NumPy role"),
    (dict(without=("singular_A",)), ValueError, "without: unknown feature 'singular_A'"),
    (dict(max_examples=0), ValueError, "max_examples"),
    (dict(max_examples=2.5), TypeError, "max_examples"),
    (dict(grad="yes"), TypeError, "grad:"),
    (dict(with_=("singular_A",)), ValueError, "with_: unknown feature 'singular_A'"),
    (dict(with_=3), TypeError, "with_:"),
    (dict(role="discretize_zoh", with_=("singular_A",), without=("singular_A",)), ValueError,
     "with_: 'singular_A' also in without"),
    (dict(role="discretize_zoh", with_=("stiff_A", "oscillatory_A")), ValueError,
     "cannot all be forced"),
])
def test_check_rejects_bad_arguments_naming_them(kwargs, error, needle):
    args = dict(role="causal_conv", fn=conv_np)
    args.update(kwargs)
    with pytest.raises(error, match=needle.replace("(", r"\(")):
        check(args.pop("role"), args.pop("fn"), **args)


def test_check_passes_a_correct_kernel_and_leaves_the_session_as_it_was():
    before = (dict(RUN.__dict__), RECORDER.entries)
    rows = check("causal_conv", conv_np, max_examples=10)
    (row,) = rows
    assert row["property"] == "matches_oracle" and row["verdict"] == "pass"
    assert row["examples"] >= 10 and 0 < row["ratio"] == row["max_ratio"] <= 1
    assert row["subject"] == f"{__name__}:conv_np" and row["features"] == []
    assert (dict(RUN.__dict__), RECORDER.entries) == before


def test_check_with_forces_features():
    from ssm_conformance.implementations.numpy.discretize import zoh
    (row,) = check("discretize_zoh", zoh, with_=("singular_A", "defective_A"), max_examples=8)
    assert row["verdict"] == "pass" and row["features_forced"] == ["defective_A", "singular_A"]
    assert row["feature_examples"]["singular_A"] == row["feature_examples"]["defective_A"] == \
        row["examples"] > 0


def test_check_raises_on_a_wrong_kernel_with_the_reproduction():
    with pytest.raises(AssertionError) as info:
        check("causal_conv", conv_scaled, max_examples=10)
    message = str(info.value)
    assert message.startswith(f"causal_conv / {__name__}:conv_scaled / matches_oracle / "
                              f"float64: inaccurate")
    assert "reproduction:" in message and "out = conv_scaled(u, K)" in message


def test_check_judges_numpy_roles_in_float32():
    from tests.subjects.float32_subjects import causal_conv_f16_accumulation, causal_conv_f32
    (row,) = check("causal_conv", causal_conv_f32, dtypes=("float32",), max_examples=10)
    assert row["dtype"] == "float32" and row["verdict"] == "pass"
    with pytest.raises(AssertionError, match="float32: inaccurate"):
        check("causal_conv", causal_conv_f16_accumulation, dtypes=("float32",), max_examples=10)


# --- the console script --------------------------------------------------------------------------

def test_console_script_turns_role_target_into_ssm_subject():
    args = pytest_args([CONV_NP, "-o", "addopts=x=1", "--ssm-dtype", "float64", "-k", "a=b"])
    assert args[:2] == ["-p", "ssm_conformance.properties.plugin"]
    assert args[4:-1] == ["--ssm-subject", CONV_NP, "-o", "addopts=x=1", "--ssm-dtype",
                          "float64", "-k", "a=b"]
    assert args[-1].endswith("properties")  # the installed suite (here: the checkout's)


# --- the report ----------------------------------------------------------------------------------

def test_failed_property_reports_the_example_its_message_shows(tmp_path):
    # ssm_transposed's largest ratio is seen on a bigger example than the one Hypothesis shrinks
    # to (the ratio is not what shrinking minimizes): the report shows the shrunk one
    run = run_suite("--ssm-subject", "ssm_kernel=tests.subjects.s4_wrong_more:ssm_transposed",
                    report_dir=tmp_path)
    (row,) = run.report["results"]
    assert row["verdict"] == "fail"
    assert row["worst_example"]["reproduction"] in row["message"]
    assert row["worst_example"]["ratio"] <= row["max_ratio"]
    md = (tmp_path / "report.md").read_text()
    assert f"err/tol {row['worst_example']['ratio']:.3g}" in md
    assert run.report["length_capped_at"] is None and "Capped" not in md  # not capped
    assert "SubjectUnderTest(" not in run.output and "Falsifying" not in run.output
    assert "Failing test case" not in run.output


def test_reproductions_are_rendered_only_when_shown():
    """Rendering every judged example's inputs as source cost more than judging them: the
    recorder keeps the example and renders its reproduction when a report or a failure shows
    it (the worst example; the dump a pytest-xdist worker sends holds the text)."""
    from types import SimpleNamespace

    from ssm_conformance.properties.report import Recorder
    rendered = []

    def describe(case):
        rendered.append(case)
        return f"reproduction of example {case}"

    sut = SimpleNamespace(role=SimpleNamespace(name="r", features=()),
                          subject=SimpleNamespace(name="s"), dtype="float32", device="cpu")
    recorder = Recorder()
    for example, ratio in enumerate([0.1, 0.5, 0.2]):
        recorder.observe(sut, "p", example, ratio=ratio, abs_err=0.0, rel_err=0.0,
                         describe=describe)
    assert rendered == []
    entry = recorder.entry(sut, "p")
    assert entry.as_json(())["worst_example"]["reproduction"] == "reproduction of example 1"
    assert rendered == [1]
    dumped = recorder.dump()
    assert json.loads(json.dumps(dumped))[0]["last"]["reproduction"] == \
        "reproduction of example 2"
    entry.failed_on_last("... reproduction of example 2 ...")
    assert entry.as_json(())["worst_example"]["ratio"] == 0.2


def test_capped_run_says_so_and_lengths_are_reported(tmp_path):
    run = run_suite("--ssm-subject", CONV_NP, "--ssm-max-length", "64", report_dir=tmp_path,
                    profile="dev")
    assert run.status == 0, run.output
    doc = run.report
    assert doc["length_capped_at"] == 64 and doc["options"]["max_length"] == 64
    assert "capped at 64" in (tmp_path / "report.md").read_text()
    (row,) = doc["results"]
    assert doc["longest_length"] == {"causal_conv": row["longest_length"]}
    assert row["longest_length"] >= row["worst_example"]["length"] >= 1


@pytest.mark.slow
def test_serial_and_xdist_runs_give_the_same_report(tmp_path):
    """``-n 2``: the workers' records reach the controller, which writes one report with the
    rows of a serial run (the ci profile is derandomized: the same examples in both)."""
    args = ["--ssm-subject", CONV_NP, "--ssm-subject", CONV_TORCH, "--ssm-subject", CONV_WRONG]
    serial = run_suite(*args, report_dir=tmp_path / "serial")
    spread = run_suite(*args, "-n", "2", report_dir=tmp_path / "xdist")
    assert serial.status == spread.status == 1, spread.output

    timings = {"duration_s", "first_call_s", "max_warmup_s"}  # wall-clock times differ run to run

    def rows(run):
        return [{k: v for k, v in r.items() if k not in timings} for r in run.report["results"]]

    assert len(rows(serial)) == 3 and rows(serial) == rows(spread)
    assert serial.report["longest_length"] == spread.report["longest_length"]
    for name in ("report.md", "causal_conv-float64.png"):
        assert (tmp_path / "xdist" / name).stat().st_size > 0
    md = [(tmp_path / d / "report.md").read_text() for d in ("serial", "xdist")]
    assert md[0] == md[1]
    assert not list((tmp_path / "xdist").glob(".*.tmp"))  # written atomically, nothing left
    json.loads((tmp_path / "xdist" / "report.json").read_text())


def test_the_suite_profiles_are_loaded_only_for_the_suite(tmp_path):
    """Installed, the plugin is in every pytest run: a user's own run keeps its Hypothesis
    profile; the suite's runs (its properties collected, or this checkout) get dev/ci."""
    from pathlib import Path
    from types import SimpleNamespace

    from ssm_conformance.properties.plugin import PROPERTIES_DIR, _runs_the_suite
    from tests.cli import ROOT

    def runs(rootpath, *args):
        return _runs_the_suite(SimpleNamespace(rootpath=Path(rootpath), args=list(args)))

    assert runs(ROOT, "tests") and runs(tmp_path, PROPERTIES_DIR + "/test_scan.py::test_x")
    assert runs(tmp_path, str(Path(PROPERTIES_DIR).parent))
    assert not runs(tmp_path, str(tmp_path)) and not runs(tmp_path, PROPERTIES_DIR + "_x")


def test_installed_checkout_runs_from_another_directory(tmp_path):
    """`pip install -e .` of this checkout (as .ci/run does), then `python -m pytest --ssm-subject
    ...` from an unrelated directory: the installed properties/ are this checkout's, so the root
    conftest.py is reached as a non-root conftest, where `pytest_plugins` is refused; it defers to
    the entry point instead (tests/test_install.py covers the non-editable install)."""
    import subprocess
    import sys

    from ssm_conformance.properties.plugin import PROPERTIES_DIR
    from tests.cli import ROOT
    if not PROPERTIES_DIR.startswith(str(ROOT)):
        pytest.skip("the installed suite is not this checkout (not an editable install)")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "--ssm-subject", CONV_NP], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 passed" in proc.stdout


def test_backward_reproduction_gives_the_cotangent_and_the_backward_call():
    """A VJP failure's reproduction (issue 19): the leaves, the call, the cotangent exactly as
    the subject's backward receives it and torch.autograd.grad; run, it gives the gradients the
    harness judged."""
    import torch

    from ssm_conformance.properties.harness import SubjectUnderTest
    from ssm_conformance.properties.roles import ROLES
    from ssm_conformance.properties.strategies.scans import ScanCase
    from ssm_conformance.properties.subjects import Subject
    from tests.subjects.backward_subjects import scan_bwd_no_conj

    rng = np.random.default_rng(0)
    case = ScanCase(a=rng.uniform(-1, 1, 5), b=rng.standard_normal(5), a_kind="uniform")
    subject = Subject("linear_scan", "tests.subjects.backward_subjects:scan_bwd_no_conj",
                      scan_bwd_no_conj)
    sut = SubjectUnderTest(subject, ROLES["linear_scan"], "float32")
    cot = sut.rounded(rng.standard_normal(5))
    _, grads = sut.call_vjp(case, ("a", "b"), cot)
    text = sut.describe(case)
    assert "cot = torch.from_numpy(np.array([" in text
    assert "grads = torch.autograd.grad(first, (a, b,), cot" in text
    namespace = {"scan_bwd_no_conj": scan_bwd_no_conj}
    exec(text, namespace)   # noqa: S102 - the printed reproduction, run as a user would
    assert torch.equal(namespace["grads"][0], grads["a"])
    assert torch.equal(namespace["grads"][1], grads["b"])
    sut.call(case)   # a forward call on the case: its reproduction is the forward call again
    assert "autograd" not in sut.describe(case)


def test_passing_long_role_report_is_small_and_the_run_has_no_jit_warnings(tmp_path):
    """report.json of a passing SSD run (the worst examples' inputs were inlined: 204 KB for one
    run) stays under 50 KB; the worst examples are summarized. The run, with deprecation
    warnings shown, emits none from torch.jit (issue 19)."""
    run = run_suite("--ssm-subject", "ssd=ssm_conformance.implementations.torch.ssd:ssd",
                    "-k", "(matches_oracle and not vjp) or non_contiguous", "--ssm-max-length",
                    "128", "-W", "default::DeprecationWarning", profile="dev",
                    report_dir=tmp_path)
    assert run.status == 0, run.output[-3000:]
    assert (tmp_path / "report.json").stat().st_size < 50_000
    for row in run.report["results"]:
        worst = row["worst_example"]
        assert worst["case"].startswith("SSDCase(") or "ssd_case_from_seed(" in worst["case"]
        assert len(worst["reproduction"]) <= 4200
    assert "torch.jit" not in run.output and "TorchScript" not in run.output
