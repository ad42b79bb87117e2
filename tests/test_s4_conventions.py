"""The S4-convention adapters of docs/s4_integration.md (issue 13, item 7) conform, and the same
kernels called without them do not: tests/subjects/s4_conventions.py. One CLI run
(``ci-noshrink``, ``-k matches_oracle``; dplr_kernel without rank2 and marginal_Lambda: the
S4-convention kernel is rank 1 and a generating-function algorithm)."""
from __future__ import annotations

import numpy as np

from ssm_conformance.implementations.numpy import s4 as np_s4
from tests.cli import run_suite
from tests.subjects import s4_conventions as conv

M = "tests.subjects.s4_conventions"


def test_adapter_matches_our_dplr_kernel():
    rng = np.random.default_rng(1)
    n, L, dt = 6, 12, 0.3
    Lam = -rng.uniform(0.1, 1, n) + 1j * rng.uniform(-5, 5, n)
    P = 0.3 * (rng.standard_normal((1, n)) + 1j * rng.standard_normal((1, n)))
    B, C = (rng.standard_normal(n) + 1j * rng.standard_normal(n) for _ in range(2))
    K = conv.dplr_kernel_from_s4_convention(Lam, P, P, B, C, dt, L)
    assert np.allclose(K, np_s4.dplr_kernel(Lam, P, P, B, C, dt, L), rtol=1e-12, atol=1e-12)
    assert np.abs(K.imag).max() > 1e-3                          # complex K: Im recovered


def test_adapted_kernels_conform_and_unadapted_ones_fail(tmp_path):
    run = run_suite("-k", "matches_oracle", "--ssm-without", "rank2,marginal_Lambda",
                    "--ssm-subject", f"dplr_kernel={M}:dplr_kernel_from_s4_convention",
                    "--ssm-subject", f"dplr_kernel={M}:dplr_kernel_s4_convention_unadapted",
                    "--ssm-subject", f"s4d_kernel={M}:s4d_kernel_from_one_of_pair",
                    "--ssm-subject", f"s4d_kernel={M}:s4d_kernel_one_of_pair",
                    profile="ci-noshrink", report_dir=tmp_path)
    assert run.report is not None, run.output[-3000:]
    for name, verdict in [("dplr_kernel_from_s4_convention", ("pass", None)),
                          ("s4d_kernel_from_one_of_pair", ("pass", None)),
                          ("dplr_kernel_s4_convention_unadapted", ("fail", "inaccurate")),
                          ("s4d_kernel_one_of_pair", ("fail", "inaccurate"))]:
        assert run.verdict(f":{name}") == verdict, (name, run.output[-3000:])
    (row,) = run.results(":s4d_kernel_one_of_pair")
    assert "hint: K looks like 1/2x the expected value everywhere" in row["message"]
