"""The tolerance model against the mistakes of MATH.md and against accurate algorithms of
different kinds, measured directly as error/tolerance ratios (the meta-tests check the same
through the command line, as verdicts). A bound that rejects an accurate algorithm, or admits a
mistake without a wide margin, fails here."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.linalg
import scipy.signal

from ssm_conformance.oracle import convolution as oracle_convolution
from ssm_conformance.oracle import discretize as oracle_discretize
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.properties import tolerance as tm


def ratio(out, ref, terms, dtype="float64"):
    tol = tm.tolerance(ref, terms, dtype)
    return float(np.max(np.abs(np.asarray(out) - ref.value) / tol))


def test_unit_roundoffs_are_those_of_ieee_and_bfloat16():
    assert tm.UNIT_ROUNDOFF["float64"] == np.finfo(np.float64).eps / 2
    assert tm.UNIT_ROUNDOFF["float32"] == np.finfo(np.float32).eps / 2
    assert tm.UNIT_ROUNDOFF["float16"] == np.finfo(np.float16).eps / 2
    assert tm.UNIT_ROUNDOFF["bfloat16"] == 2.0**-8  # 8 significand bits
    assert tm.compute_dtype("bfloat16") == tm.compute_dtype("float16") == "float32"


def test_output_rounding_alone_is_admitted_exactly():
    """Correct rounding of the exact value to the output dtype is always within tolerance."""
    rng = np.random.default_rng(1)
    exact = rng.standard_normal(1000) * 10.0 ** rng.uniform(-30, 30, 1000)
    ref = Reference(exact)
    for dtype, np_dtype in (("float32", np.float32), ("float16", np.float16)):
        if dtype == "float16":
            exact_h = exact[np.abs(exact) < 6e4]
            ref = Reference(exact_h)
            out = exact_h.astype(np_dtype).astype(np.float64)
        else:
            out = exact.astype(np_dtype).astype(np.float64)
        assert ratio(out, ref, [], dtype) <= 1.0


# --- causal convolution --------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _conv_case(L, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(L)
    K = np.exp(-0.05 * np.arange(L)) * rng.standard_normal(L)
    ref = oracle_convolution.causal_conv(u, K)
    return u, K, ref, tm.causal_conv_terms(ref, L)


ACCURATE_CONVOLUTIONS = {
    "direct sum": lambda u, K: np.array([np.dot(K[: t + 1], u[t::-1]) for t in range(len(u))]),
    "np.convolve": lambda u, K: np.convolve(u, K)[: len(u)],
    "fft, next_fast_len": lambda u, K: scipy.signal.fftconvolve(u, K)[: len(u)],
    "fft, power of two": lambda u, K: np.fft.irfft(
        np.fft.rfft(u, 2 ** int(np.ceil(np.log2(2 * len(u))))) *
        np.fft.rfft(K, 2 ** int(np.ceil(np.log2(2 * len(u))))))[: len(u)],
    "overlap-add": lambda u, K: scipy.signal.oaconvolve(u, K)[: len(u)],
}


@pytest.mark.parametrize("name", ACCURATE_CONVOLUTIONS)
@pytest.mark.parametrize("L", [1, 2, 97, 512, 4096])
def test_accurate_convolutions_are_admitted(name, L):
    u, K, ref, terms = _conv_case(L)
    assert ratio(ACCURATE_CONVOLUTIONS[name](u, K), ref, terms) <= 0.5


def _circular(u, K):
    return np.fft.irfft(np.fft.rfft(u) * np.fft.rfft(K), len(u))


def _kernel_at_L(u, K):
    L = len(u)
    Kf = np.fft.rfft(K, L)  # transformed at L ...
    uf = np.fft.rfft(u, 2 * L)  # ... the input at 2L: interleave the spectra by resampling
    return np.fft.irfft(np.repeat(Kf, 2)[: uf.shape[0]] * uf, 2 * L)[:L]


def _float32_fft(u, K):
    return scipy.signal.fftconvolve(u.astype(np.float32), K.astype(np.float32))[: len(u)]


@pytest.mark.parametrize("mistake,margin", [(_circular, 1e9), (_kernel_at_L, 1e9),
                                            (_float32_fft, 1e3)])
def test_convolution_mistakes_are_rejected_by_a_wide_margin(mistake, margin):
    u, K, ref, terms = _conv_case(512)
    assert ratio(mistake(u, K), ref, terms) >= margin


# --- zero-order hold -----------------------------------------------------------------------------

def _zoh_case(A, B, dt):
    ref_Ad, ref_Bd = oracle_discretize.zoh(A, B, dt)
    return (ref_Ad, ref_Bd), tm.zoh_terms(ref_Ad, ref_Bd, A, B, dt)


def _zoh_van_loan(A, B, dt):
    n = A.shape[0]
    M = np.zeros((n + B.shape[1],) * 2)
    M[:n, :n], M[:n, n:] = A * dt, B * dt
    E = scipy.linalg.expm(M)
    return E[:n, :n], E[:n, n:]


def _zoh_inverse(A, B, dt):  # MATH.md: valid only for invertible A, inaccurate near singular
    Ad = scipy.linalg.expm(A * dt)
    return Ad, np.linalg.solve(A, (Ad - np.eye(A.shape[0])) @ B)


def _zoh_euler_B(A, B, dt):  # MATH.md: ZOH for A mixed with Euler for B while claiming ZOH
    return scipy.linalg.expm(A * dt), dt * B


SYSTEMS = {
    "scipy's worst case": (np.array([[4.0233670749885855]]), np.array([[-0.13]]), 1.0),
    "near-singular": (np.array([[1e-9, 1.0], [0.0, -1.0]]), np.array([[1.0], [1.0]]), 0.5),
    "defective": (np.array([[-1.0, 1.0, 0.0], [0.0, -1.0, 1.0], [0.0, 0.0, -1.0]]),
                  np.ones((3, 2)), 0.1),
    "stiff": (np.diag([-1e3, -1.0, -1e-3]) + np.triu(np.ones((3, 3)), 1),
              np.array([[1.0], [2.0], [3.0]]), 1.0),
}


@pytest.mark.parametrize("system", SYSTEMS)
def test_van_loan_is_admitted(system):
    A, B, dt = SYSTEMS[system]
    refs, terms = _zoh_case(A, B, dt)
    for out, ref, t in zip(_zoh_van_loan(A, B, dt), refs, terms):
        assert ratio(out, ref, t) <= 1.0


def test_zoh_mistakes_are_rejected_by_a_wide_margin():
    A, B, dt = SYSTEMS["near-singular"]
    (ref_Ad, ref_Bd), (_, terms_Bd) = _zoh_case(A, B, dt)
    assert ratio(_zoh_inverse(A, B, dt)[1], ref_Bd, terms_Bd) >= 1e3
    A, B, dt = SYSTEMS["defective"]
    (ref_Ad, ref_Bd), (_, terms_Bd) = _zoh_case(A, B, dt)
    assert ratio(_zoh_euler_B(A, B, dt)[1], ref_Bd, terms_Bd) >= 1e6
