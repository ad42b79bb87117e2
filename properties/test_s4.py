"""S4-family roles against the oracles.

hippo_legs/legt/lagt/fout: f(N) -> (A (N, N), B (N,) or (N, 1)) against the exact SymPy entries
of oracle.hippo.transition (s4's conventions) evaluated at 30 digits. ssm_kernel, s4d_kernel,
dplr_kernel: against oracle.s4_kernels (mpmath, precision certified by doubling).
Bounds: properties/tolerance.py, "S4 family" (max over algorithm families, min of two bounds of
one algorithm); inputs: properties/strategies/s4.py.
"""
from __future__ import annotations

from functools import lru_cache, partial

import numpy as np
import pytest
from hypothesis import example, given, settings

from ssm_conformance.oracle import hippo as oracle_hippo
from ssm_conformance.oracle import s4_kernels as oracle_s4
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.properties import tolerance as tm
from ssm_conformance.properties.harness import Output, oracle
from ssm_conformance.properties.strategies.s4 import (MAX_N, SSMCase, dplr_cases,
                                                     dplr_hippo_legs_case, hippo_cases, s4d_cases,
                                                     ssm_cases)
from ssm_conformance.properties.subjects import SubjectFailure

# --- HiPPO ---------------------------------------------------------------------------------------

_DIGITS = 30


def _evaluated(matrix) -> tuple[np.ndarray, np.ndarray]:
    """A SymPy matrix of exact entries -> (float64 values, error bound of the 30-digit values)."""
    value = np.array(matrix.evalf(_DIGITS).tolist(), dtype=np.float64)
    return value, np.abs(value) * 10.0 ** (1 - _DIGITS)


@lru_cache(maxsize=None)
def _exact_hippo(measure: str, size: int):
    """(A, err_A, B, err_B, P, shift) of s4's transition(measure, size) evaluated at 30 digits.
    Every entry of s4's A, B and of the rank correction P depends on its indices only, not on N,
    so the size-N matrices are the leading blocks of these (tests/test_meta_s4.py checks it):
    one SymPy evaluation per measure instead of one per drawn N (~2 s for LegT at N = 64)."""
    A_exact, B_exact = oracle_hippo.transition(measure, size)
    P_exact, shift = oracle_hippo.rank_correction(measure, size)
    A, err_A = _evaluated(A_exact)
    B, err_B = _evaluated(B_exact)
    P = np.array(P_exact.evalf(_DIGITS).tolist(), dtype=np.float64)
    return A, err_A, B[:, 0], err_B[:, 0], P, float(shift)


def hippo_reference(measure: str, N: int) -> tuple[Reference, Reference]:
    """(ref_A, ref_B (N,)) of s4's transition(measure, N), with the magnitudes of
    tolerance.hippo_tol: "abs" = |entry|; "nplr" (scalar) = ||S||_2 + |shift| + (1 + sqrt N)
    ||P||_F^2 for A, (1 + sqrt N) ||B||_2 for B, where A + P^T P = shift I + S
    (oracle.hippo.rank_correction, S skew)."""
    A, err_A, B, err_B, P, shift = _exact_hippo(measure, max(N, MAX_N + MAX_N % 2))
    A, err_A, B, err_B, P = A[:N, :N], err_A[:N, :N], B[:N], err_B[:N], P[:, :N]
    S = A + P.T @ P - shift * np.eye(N)
    root = 1.0 + np.sqrt(N)
    nplr_A = np.linalg.norm(S, 2) + abs(shift) + root * np.linalg.norm(P) ** 2
    ref_A = Reference(A, err_A, {"abs": np.abs(A), "nplr": nplr_A})
    ref_B = Reference(B, err_B, {"abs": np.abs(B), "nplr": root * np.linalg.norm(B)})
    return ref_A, ref_B


def _b_shape(sut, raw, N: int) -> tuple:
    """The contract allows B of shape (N,) or (N, 1): the shape to judge the returned B in.
    Structure errors (not a pair) are left to ``sut.outputs``."""
    if not isinstance(raw, (tuple, list)) or len(raw) != 2:
        return (N,)
    try:
        shape = tuple(np.shape(raw[1]))
    except Exception:  # noqa: BLE001 - not array-like: sut.outputs names it
        return (N,)
    if shape in ((N,), (N, 1)):
        return shape
    sut.fail(SubjectFailure("wrong_shape", f"returned B of shape {shape}, expected ({N},) or "
                                            f"({N}, 1)"))


def _hippo_role_test(measure: str):
    @pytest.mark.ssm_role(f"hippo_{measure}", property="matches_oracle")
    @given(case=hippo_cases(measure))
    def test(sut, case):
        N = case.N
        raw = sut.call(case)
        A, B = sut.outputs(raw, [Output("A", (N, N)), Output("B", _b_shape(sut, raw, N))])
        ref_A, ref_B = oracle(hippo_reference, measure, N)
        sut.judge(case, [("A", A, ref_A, partial(tm.hippo_tol, ref_A, N)),
                         ("B", B.reshape(N), ref_B, partial(tm.hippo_tol, ref_B, N))])

    return test


test_matches_oracle_hippo_legs = _hippo_role_test("legs")
test_matches_oracle_hippo_legt = _hippo_role_test("legt")
test_matches_oracle_hippo_lagt = _hippo_role_test("lagt")
test_matches_oracle_hippo_fout = _hippo_role_test("fout")


# --- kernels -------------------------------------------------------------------------------------

def _underflow_case(log2_decay: int) -> SSMCase:
    """K_k = 2^(log2_decay k), k < 5: exact powers of two, so K_4 is exactly 2^(4 log2_decay)."""
    return SSMCase(Ad=np.array([[2.0**log2_decay]]), Bd=np.array([1.0]), C=np.array([1.0]), L=5,
                   kind="underflow")


@pytest.mark.ssm_role("ssm_kernel", property="matches_oracle")
@given(case=ssm_cases())
# explicit, in every profile: a kernel that decays into float64's subnormal range (K_4 = 2^-1040,
# which a flush-to-zero kernel returns as 0, admitted) and to just above its smallest normal
# (K_4 = 2^-1020 = 4 tiny, which no kernel may flush)
@example(case=_underflow_case(-260))
@example(case=_underflow_case(-255))
def test_matches_oracle_ssm_kernel(sut, case):
    case = sut.round_case(case)  # --ssm-numpy-dtype float32: the inputs as the subject gets them
    (K,) = sut.outputs(sut.call(case), [Output("K", (case.L,))])
    ref = oracle(oracle_s4.ssm_kernel, case.Ad, case.Bd, case.C, case.L)
    sut.judge(case, [("K", K, ref, partial(tm.ssm_kernel_tol, ref, case.Ad.shape[0]))])


@pytest.mark.ssm_role("s4d_kernel", property="matches_oracle")
@given(case=s4d_cases())
def test_matches_oracle_s4d_kernel(sut, case):
    case = sut.round_case(case)  # --ssm-numpy-dtype float32: the inputs as the subject gets them
    (K,) = sut.outputs(sut.call(case), [Output("K", (case.L,))])
    ref = oracle(oracle_s4.s4d_kernel, case.Lambda, case.B, case.C, case.dt, case.L)
    sut.judge(case, [("K", K, ref, tm.s4d_kernel_terms(ref, case.Lambda.shape[0]))])


def _with_n64_example(test):
    """One explicit HiPPO-LegS example at N = 64 (rank 1, L = 5, dt = 0.01: ||Abar^L|| >=
    e^-0.05, so C~ matters), in the profiles of 100 examples or more (ci, thorough): dplr_cases
    stops at N = 24 because the oracle's dense mpmath inverse costs ~24 s at N = 64
    (strategies/s4.py)."""
    if settings.default.max_examples >= 100:
        return example(case=dplr_hippo_legs_case(N=64, L=5, dt=0.01))(test)
    return test


@pytest.mark.ssm_role("dplr_kernel", property="matches_oracle")
@given(case=dplr_cases())
@_with_n64_example
def test_matches_oracle_dplr_kernel(sut, case):
    case = sut.round_case(case)  # --ssm-numpy-dtype float32: the inputs as the subject gets them
    (K,) = sut.outputs(sut.call(case), [Output("K", (case.L,), kind="complex")])
    ref = oracle(oracle_s4.dplr_kernel, case.Lambda, case.P, case.Q, case.B, case.C, case.dt,
                 case.L)
    n, r = case.P.shape[1], case.P.shape[0]
    sut.judge(case, [("K", K, ref, partial(tm.dplr_kernel_tol, ref, n, r, case.L))])
