"""Diagnosis hints (issue 13, item 5; properties/diagnosis.py): an ``inaccurate`` verdict whose
output is a simple transform of the oracle's says so -- a constant factor, complex conjugation, a
one-step shift, reversed order -- and only when the transformed oracle matches within the same
tolerance. Unit tests of ``diagnosis.hint``, then CLI runs (``ci-noshrink``, ``-k
matches_oracle``): a factor-2 slip in ``s4d_kernel``, a kernel one step off in ``ssm_kernel``, a
conjugated and a reversed ``dplr_kernel`` each get their hint; a generically wrong kernel gets
none. A shift is decided only on L >= 3 (two overlapping steps at least): ``causal_conv``'s first
failing example has L = 1, so a delayed convolution gets no hint there (the unit test below
shows the hint on a longer input).
"""
from __future__ import annotations

import numpy as np
import pytest

from ssm_conformance.properties.diagnosis import hint
from tests.cli import run_suite
from tests.subjects import s4_correct

HERE = "tests.test_meta_diagnosis"


# --- subjects (each a correct kernel with one transform applied) ---------------------------------

def conv_one_step_late(u, K):
    """y_t = sum_k K_k u_{t-1-k}: the output one step late (a delay line off by one)."""
    y = np.convolve(np.asarray(u, np.float64), np.asarray(K, np.float64))[:len(u)]
    return np.concatenate([[0.0], y[:-1]])


def dplr_conjugated(Lambda, P, Q, B, C, dt, L):
    """The right kernel, conjugated (e.g. the DFT sign convention flipped)."""
    return np.conj(s4_correct.dplr_dense_power(Lambda, P, Q, B, C, dt, L))


def dplr_reversed(Lambda, P, Q, B, C, dt, L):
    """The right kernel in reversed order (a convolution kernel stored flipped)."""
    return s4_correct.dplr_dense_power(Lambda, P, Q, B, C, dt, L)[::-1].copy()


# --- diagnosis.hint ---------------------------------------------------------------------------------

RNG = np.random.default_rng(0)
K = RNG.standard_normal(16) * np.exp(-0.1 * np.arange(16))
TOL = np.full(16, 1e-12)


def test_no_hint_for_a_correct_or_a_generically_wrong_output():
    assert hint(K + 1e-13, K, TOL) is None
    assert hint(K * (1 + 0.01 * np.arange(16)), K, TOL) is None      # drifts: no transform fits
    assert hint(RNG.standard_normal(16), K, TOL) is None


@pytest.mark.parametrize("out,words", [
    (2 * K, "2x the expected value everywhere: a conjugate-pair convention"),
    (K / 2, "1/2x the expected value everywhere: a missing factor 2"),
    (-K, "-1x the expected value everywhere"),
    (np.concatenate([[0.0], K[:-1]]), "shifted one step later along the sequence"),
    (np.concatenate([K[1:], [0.0]]), "shifted one step earlier along the sequence"),
    (K[::-1], "reversed order along the sequence"),
])
def test_hint_names_the_transform(out, words):
    assert words in (hint(out, K, TOL) or ""), hint(out, K, TOL)


def test_conjugation_and_axes():
    Kc = K * np.exp(1j * np.arange(16))
    assert "complex conjugate" in hint(np.conj(Kc), Kc, TOL)
    X = np.stack([K, 2 * K])                                          # (2, 16): time on axis 1
    assert "shifted one step later along axis 1" in hint(np.roll(X, 1, axis=1) * [[0] + [1] * 15],
                                                         X, np.full(X.shape, 1e-12))


def test_delayed_convolution():
    u, Kc = RNG.standard_normal(9), RNG.standard_normal(9)
    y = np.convolve(u, Kc)[:9]
    assert "shifted one step later" in hint(conv_one_step_late(u, Kc), y, np.full(9, 1e-14))


def test_a_shift_needs_three_steps_and_a_match_within_tolerance():
    assert hint(np.array([0.0, K[0]]), K[:2], TOL[:2]) is None       # L = 2: undecided
    assert hint(2 * K + 1e-9, K, TOL) is None                         # off by more than tol


# --- from the command line ----------------------------------------------------------------------

SUBJECTS = {
    ("s4d_kernel", "tests.subjects.s4_wrong:s4d_no_factor_two"):
        "1/2x the expected value everywhere: a missing factor 2",
    ("s4d_kernel", "tests.subjects.s4_wrong:s4d_euler_B"): None,
    ("ssm_kernel", "tests.subjects.s4_wrong_more:ssm_off_by_one"):
        # the first failing example has Ad = -1, where the shift is also -1x (all are named)
        "shifted one step earlier along the sequence",
    ("dplr_kernel", f"{HERE}:dplr_conjugated"):
        "the complex conjugate of the expected value everywhere",
    ("dplr_kernel", f"{HERE}:dplr_reversed"):
        "reversed order along the sequence",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    args = ["-k", "matches_oracle"]
    for role, target in SUBJECTS:
        args += ["--ssm-subject", f"{role}={target}"]
    return run_suite(*args, profile="ci-noshrink", report_dir=tmp_path_factory.mktemp("hints"))


@pytest.mark.parametrize("role,target", list(SUBJECTS), ids=[t.split(":")[1] for _, t in SUBJECTS])
def test_failure_message_carries_the_hint(run, role, target):
    assert run.report is not None, run.output[-3000:]
    (row,) = [r for r in run.results(target) if r["property"] == "matches_oracle"]
    assert row["verdict"] == "fail" and row["failure_kind"] == "inaccurate", row
    words = SUBJECTS[(role, target)]
    if words is None:
        assert "hint:" not in row["message"], row["message"]
    else:
        hints = [line for line in row["message"].splitlines() if line.startswith("hint: ")]
        assert len(hints) == 1 and words in hints[0], row["message"]
