"""Issue 4's implementation-level properties of OUR S4-family kernels, drawn by Hypothesis from the
property suite's strategies (properties/strategies/s4.py, at small sizes):

* the S4 layer's convolutional mode equals its recurrent mode;
* the DPLR kernel (Cauchy + Woodbury + FFT) equals the dense kernel (ssm_kernel of the discretized
  dense A) of the same system;
* the S4D kernel equals 2 Re of ssm_kernel of the equivalent diagonal system;
* the NumPy and torch kernels agree.

They live here, not in properties/, because they judge our implementations against each other,
not a user's subject: properties/ runs against ``--ssm-subject`` targets, and a test there without
the ``sut`` parameter would run in every user's run.

Tolerances are the role bounds of properties/tolerance.py (S4 family), built from the oracles'
magnitudes: if each side is within its bound tol of the exact value, the two differ by at most
the sum of the bounds (the triangle inequality), so every assertion below is
|a - b| <= tol_a + tol_b. The oracles run at small sizes (N <= 8, L <= 64) to keep this file fast.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ssm_conformance.implementations.numpy import s4 as ns
from ssm_conformance.implementations.torch import s4 as ts
from ssm_conformance.oracle import s4_kernels as sk
from ssm_conformance.properties import tolerance as tm
from ssm_conformance.properties.strategies.s4 import dplr_cases, s4d_cases, ssm_cases

IMPLS = {"numpy": ns, "torch": ts}
U = tm.UNIT_ROUNDOFF["float64"]
SMALL = dict(max_n=8, max_l=64, budget=512)


def _dplr_ref(case):
    ref = sk.dplr_kernel(case.Lambda, case.P, case.Q, case.B, case.C, case.dt, case.L)
    return ref, tm.dplr_kernel_tol(ref, case.Lambda.shape[0], case.rank, case.L)


# --- the S4 layer: convolutional mode == recurrent mode ------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@given(case=dplr_cases(**SMALL), u_seed=st.integers(0, 2**32 - 1), D=st.floats(-2, 2))
def test_layer_conv_mode_equals_recurrent_mode(impl, case, u_seed, D):
    """One channel, batch 2. Each mode's error against the exact y = Re(K) * u + D u:
    conv: the kernel's error (within tol_K) convolved with |u|, plus the FFT convolution's
    normwise bound (tolerance.causal_conv_terms: 21 log2(4L) + 1 times ||K||_2||u||_1 +
    ||K||_1||u||_2); recurrent: the dense route's per-step errors carried to y_k, bounded by the
    same tol_K convolved with |u| (tol_K is the max over the Cauchy and dense families); both add
    the D skip and the final sum, 2 u (|D u| + |y|). Every term times SAFETY u as in the model."""
    ref, tolK = _dplr_ref(case)
    u = np.random.default_rng(u_seed).standard_normal((2, 1, case.L))
    args = [x[None] for x in (case.Lambda, case.P, case.Q, case.B, case.C)]
    y = {mode: np.asarray(IMPLS[impl].s4_layer(u, *args, np.array([D]), np.array([case.dt]),
                                               mode=mode)) for mode in ("conv", "recurrent")}
    K = ref.value.real
    L = case.L
    for b in range(2):
        ub = u[b, 0]
        kernel_part = np.convolve(tolK + U * np.abs(K), np.abs(ub))[:L]
        fft = (21 * math.ceil(math.log2(4 * L)) + 1) * (np.linalg.norm(K) * np.abs(ub).sum()
                                                 + np.abs(K).sum() * np.linalg.norm(ub))
        y_abs = np.convolve(np.abs(K), np.abs(ub))[:L] + np.abs(D * ub)
        tol_rec = kernel_part + tm.SAFETY * U * 2 * (np.abs(D * ub) + y_abs)
        tol_conv = tol_rec + tm.SAFETY * U * fft
        diff = np.abs(y["conv"][b, 0] - y["recurrent"][b, 0])
        tol = tol_conv + tol_rec
        assert np.all(diff <= tol), (case, float(np.max(diff / tol)))


# --- DPLR kernel == dense kernel of the same A ---------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@given(case=dplr_cases(**SMALL))
def test_dplr_kernel_equals_dense_kernel(impl, case):
    """The Cauchy route and the dense route (discretize_dplr, then ssm_kernel's doubling) are both
    admitted by dplr_kernel_tol (the max over the two families): |K_cauchy - K_dense| <= 2 tol."""
    mod = IMPLS[impl]
    ref, tol = _dplr_ref(case)
    K = np.asarray(mod.dplr_kernel(*case.args().values()))
    Abar, Bbar = mod.discretize_dplr(case.Lambda, case.P, case.Q, case.B, case.dt)
    K_dense = np.asarray(mod.ssm_kernel(Abar, Bbar, case.C, case.L))
    assert np.all(np.abs(K - K_dense) <= 2 * tol), (case, float(np.max(np.abs(K - K_dense) / tol)))


# --- S4D kernel == ssm_kernel of the equivalent diagonal system ----------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@given(case=s4d_cases(**SMALL))
def test_s4d_kernel_equals_diagonal_ssm_kernel(impl, case):
    """Ad = diag(e^{lambda dt}), Bd = (e^{lambda dt} - 1)/lambda B rounded to complex128, then
    ssm_kernel: 2 Re of it is the S4D kernel. s4d_kernel_terms bound the rounding of Abar, Bbar
    (their "abs_power", "abs_bbar" terms) and the sum, so 2 Re ssm_kernel(Ad, Bd, C) is within
    tol_s4d + 2 tol_ssm (tol_ssm: ssm_kernel_tol on the rounded Ad, Bd) of the exact S4D kernel,
    and the S4D kernel within tol_s4d: |difference| <= 2 tol_s4d + 2 tol_ssm."""
    mod = IMPLS[impl]
    n = case.Lambda.shape[0]
    x = case.Lambda * case.dt
    Ad, Bd = np.diag(np.exp(x)), np.expm1(x) / case.Lambda * case.B
    ref_s4d = sk.s4d_kernel(case.Lambda, case.B, case.C, case.dt, case.L)
    ref_ssm = sk.ssm_kernel(Ad, Bd, case.C, case.L)
    tol = (2 * tm.tolerance(ref_s4d, tm.s4d_kernel_terms(ref_s4d, n))
           + 2 * tm.ssm_kernel_tol(ref_ssm, n))
    K = np.asarray(mod.s4d_kernel(*case.args().values()))
    K_ssm = 2 * np.asarray(mod.ssm_kernel(Ad, Bd, case.C, case.L)).real
    assert np.all(np.abs(K - K_ssm) <= tol), (case, float(np.max(np.abs(K - K_ssm) / tol)))


# --- NumPy == torch ------------------------------------------------------------------------------

@given(case=dplr_cases(**SMALL))
def test_numpy_equals_torch_dplr(case):
    _, tol = _dplr_ref(case)
    a, b = ns.dplr_kernel(*case.args().values()), ts.dplr_kernel(*case.args().values())
    assert np.all(np.abs(a - b) <= 2 * tol), (case, float(np.max(np.abs(a - b) / tol)))


@given(case=s4d_cases(**SMALL))
def test_numpy_equals_torch_s4d(case):
    ref = sk.s4d_kernel(case.Lambda, case.B, case.C, case.dt, case.L)
    tol = tm.tolerance(ref, tm.s4d_kernel_terms(ref, case.Lambda.shape[0]))
    a, b = ns.s4d_kernel(*case.args().values()), ts.s4d_kernel(*case.args().values())
    assert np.all(np.abs(a - b) <= 2 * tol), (case, float(np.max(np.abs(a - b) / tol)))


@given(case=ssm_cases(**SMALL))
def test_numpy_equals_torch_ssm(case):
    ref = sk.ssm_kernel(case.Ad, case.Bd, case.C, case.L)
    tol = tm.ssm_kernel_tol(ref, case.Ad.shape[0])
    a, b = ns.ssm_kernel(*case.args().values()), ts.ssm_kernel(*case.args().values())
    assert np.all(np.abs(a - b) <= 2 * tol), (case, float(np.max(np.abs(a - b) / tol)))

