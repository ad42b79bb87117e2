"""Tests of oracle/convolution.py against independent derivations.

causal_conv: Fraction arithmetic and np.convolve on integers (exact), correctly rounded.
kernel: SymPy exact rational matrix powers.  recurrence: the convolution identity, exactly on
integer systems and in mpmath on random float systems.
"""
import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy as sp

from ssm_conformance.oracle.convolution import _kernel_mp, _recurrence_mp, causal_conv, kernel, recurrence
from ssm_conformance.oracle.precision import to_mp

U = 2.0**-53  # unit roundoff of float64


def fraction_conv(u, K):
    uf, Kf = [Fraction(x) for x in u], [Fraction(x) for x in K]
    return [sum((Kf[k] * uf[t - k] for k in range(t + 1)), Fraction(0)) for t in range(len(u))]


def wide(rng, L, spread=200):
    """Random float64 with exponents spread over +-spread (and some exact zeros)."""
    x = rng.standard_normal(L) * np.exp2(rng.integers(-spread, spread, L))
    x[rng.random(L) < 0.1] = 0.0
    return x


# ----------------------------------------------------------------------------------------------
# causal_conv


@pytest.mark.parametrize("L", [1, 2, 7, 13, 97, 512])
def test_causal_conv_is_exact_fraction_sum_rounded_once(L):
    rng = np.random.default_rng(L)
    u, K = wide(rng, L), wide(rng, L)
    ref = causal_conv(u, K)
    exact = fraction_conv(u, K)
    # float(Fraction) is correctly rounded, as the oracle must be: identical bits
    assert ref.value.tolist() == [float(y) for y in exact]
    assert np.all(ref.error == 0)
    # abs_conv is the exact sum_k |K_k||u_{t-k}| rounded once
    assert ref.magnitudes["abs_conv"].tolist() == [float(y) for y in fraction_conv(np.abs(u), np.abs(K))]


@pytest.mark.parametrize("L", [1, 9, 31, 512])
def test_causal_conv_matches_integer_np_convolve(L):
    # integers below 2^20: every partial sum is below 512 * 2^40 < 2^53, exact in int64 and float64
    rng = np.random.default_rng(100 + L)
    ui = rng.integers(-(2**20), 2**20, L)
    Ki = rng.integers(-(2**20), 2**20, L)
    expect = np.convolve(Ki, ui)[:L]
    # scaled by powers of two the result scales exactly too
    ref = causal_conv(ui * 2.0**-30, Ki * 2.0**7)
    assert ref.value.tolist() == (expect * 2.0**-23).tolist()


def test_causal_conv_index_convention():
    # y_t depends on u_0..u_t only; K_0 multiplies u_t (the current input)
    u = np.array([1.0, 0.0, 0.0, 0.0])
    K = np.array([2.0, 3.0, 5.0, 7.0])
    assert causal_conv(u, K).value.tolist() == [2.0, 3.0, 5.0, 7.0]
    assert causal_conv(np.array([0.0, 0.0, 1.0, 0.0]), K).value.tolist() == [0.0, 0.0, 2.0, 3.0]


def test_causal_conv_rounds_once_where_naive_summation_does_not():
    # y_2 = 1 + 2^-53 + 2^-53: left-to-right float64 gives 1 (ties to even, twice); exact 1 + 2^-52
    u = np.array([2.0**-53, 2.0**-53, 1.0])
    K = np.ones(3)
    naive = (K[0] * u[2] + K[1] * u[1]) + K[2] * u[0]
    assert naive == 1.0
    assert causal_conv(u, K).value[2] == 1.0 + 2.0**-52
    # cancellation after an inexact product: (1+2^-30)(1-2^-30) - 1 = -2^-60 exactly, float64 gives 0
    u = np.array([1.0, 1.0 - 2.0**-30])
    K = np.array([1.0 + 2.0**-30, -1.0])
    naive = K[0] * u[1] + K[1] * u[0]
    assert naive == 0.0
    assert causal_conv(u, K).value[1] == -(2.0**-60)


def test_causal_conv_single_product_matches_ieee_multiply_incl_subnormals_and_overflow():
    # L = 1: y_0 = K_0 u_0, and IEEE multiplication is correctly rounded, so bits must agree,
    # including subnormal results, ties to even at the subnormal boundary, and overflow to inf.
    rng = np.random.default_rng(11)
    cases = [(5e-324, 0.75), (5e-324, 0.5), (2.0**-1000, 2.0**-70 * 1.2345), (1e200, -1e200), (1.5, -2.5)]
    cases += [tuple(wide(rng, 2, spread=600)) for _ in range(50)]
    for a, b in cases:
        with np.errstate(all="ignore"):
            expect = np.float64(a) * np.float64(b)
        assert causal_conv([a], [b]).value[0] == expect, (a, b)


def test_abs_conv_bounds_naive_summation():
    # |fl(y_t) - y_t| <= gamma_{t+1} abs_conv_t for left-to-right summation of the products
    # (Higham (3.5)); check it, exactly in Fractions, on wide-exponent data with cancellation.
    rng = np.random.default_rng(12)
    L = 200
    u, K = wide(rng, L, spread=20), wide(rng, L, spread=20)
    ref = causal_conv(u, K)
    exact = fraction_conv(u, K)
    for t in range(L):
        s = 0.0
        for k in range(t + 1):
            s += K[k] * u[t - k]
        gamma = Fraction((t + 1) * U) / (1 - Fraction((t + 1) * U))
        # abs_conv is itself rounded once (relative error <= u): bound by (1 + u) abs_conv
        assert abs(Fraction(s) - exact[t]) <= gamma * Fraction(ref.magnitudes["abs_conv"][t]) * (1 + Fraction(U))


def test_fft_norm_magnitude():
    rng = np.random.default_rng(13)
    L = 300
    u, K = rng.standard_normal(L), rng.standard_normal(L) * np.exp(-np.arange(L) / 30)
    ref = causal_conv(u, K)
    nrm = ref.magnitudes["norm_K1_u2_plus_K2_u1"]
    direct = math.fsum(K**2) ** 0.5 * math.fsum(abs(u)) + math.fsum(abs(K)) * math.fsum(u**2) ** 0.5
    assert nrm == pytest.approx(direct, rel=1e-13)
    # sanity: a zero-padded FFT convolution (nfft >= 2L - 1) is within 3 u log2(nfft) * nrm
    # (two transforms with ||error|| <= log2(n) u ||.||, the product, the inverse; see the docstring)
    nfft = 1 << (2 * L - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(K, nfft) * np.fft.rfft(u, nfft), nfft)[:L]
    assert np.all(np.abs(y - ref.value) <= 3 * U * math.log2(nfft) * nrm)
    # and a circular (unpadded) FFT convolution is not: wrap-around is caught by the oracle
    yc = np.fft.irfft(np.fft.rfft(K) * np.fft.rfft(u), L)
    assert np.abs(yc - ref.value).max() > 1e3 * 3 * U * math.log2(nfft) * nrm


# ----------------------------------------------------------------------------------------------
# kernel


def sym(x):
    """float / complex -> the exact SymPy number it holds."""
    z = complex(x)
    return sp.Rational(*z.real.as_integer_ratio()) + sp.I * sp.Rational(*z.imag.as_integer_ratio())


def assert_rounded_from(value, err, exact):
    """|value - exact| <= half an ulp (rounding once) + the oracle's certified error; in Fractions."""
    for v, e, x in zip(value, err, exact):
        x = sp.Rational(x)
        d = abs(Fraction(float(v)) - Fraction(int(x.p), int(x.q)))
        assert d <= Fraction(np.spacing(abs(float(v)))) / 2 + Fraction(float(e)), (v, float(x))


def test_kernel_matches_sympy_matrix_power_real():
    rng = np.random.default_rng(14)
    n, L = 3, 24
    Ad = rng.standard_normal((n, n)) * 0.4
    Bd, C = rng.standard_normal(n), rng.standard_normal(n)
    ref = kernel(Ad, Bd, C, L)
    As = sp.Matrix(n, n, [sym(x) for x in Ad.ravel()])
    Bs, Cs = sp.Matrix([sym(x) for x in Bd]), sp.Matrix([sym(x) for x in C]).T
    exact, P = [], sp.eye(n)
    for _ in range(L):
        exact.append((Cs * P * Bs)[0])
        P = P * As
    assert ref.value.dtype == np.float64 and ref.value.shape == (L,)
    assert_rounded_from(ref.value, ref.error, exact)
    # abs_power = |C| |Ad|^k |Bd| (float64 chain; within a few ulps of the exact rational)
    absA = sp.Matrix(n, n, [abs(x) for x in As])
    absB, absC = Bs.applyfunc(abs), Cs.applyfunc(abs)
    exact_abs = [float((absC * absA**k * absB)[0]) for k in range(L)]
    np.testing.assert_allclose(ref.magnitudes["abs_power"], exact_abs, rtol=1e-13)


def test_kernel_matches_sympy_matrix_power_complex():
    Ad = np.array([[0.5 + 0.25j, -0.125], [0.75j, -0.5 + 0.5j]])
    Bd, C = np.array([1.0 - 0.5j, 0.25]), np.array([0.5, -1.0 + 2.0j])
    L = 12
    ref = kernel(Ad, Bd, C, L)
    assert ref.value.dtype == np.complex128
    As = sp.Matrix(2, 2, [sym(x) for x in Ad.ravel()])
    Bs, Cs = sp.Matrix([sym(x) for x in Bd]), sp.Matrix([sym(x) for x in C]).T
    exact = [sp.expand((Cs * As**k * Bs)[0]) for k in range(L)]
    assert_rounded_from(ref.value.real, ref.error, [sp.re(x) for x in exact])
    assert_rounded_from(ref.value.imag, ref.error, [sp.im(x) for x in exact])


# ----------------------------------------------------------------------------------------------
# the convolution-recurrence identity


def test_recurrence_equals_convolution_exactly_on_integer_systems():
    # integer Ad, Bd, C, D, u: both sides are integers below 2^53, so every step is exact and the
    # two float64 results must be identical, bit for bit.
    rng = np.random.default_rng(15)
    for n, L in ((1, 5), (2, 11), (3, 16)):
        Ad = rng.integers(-2, 3, (n, n)).astype(float)
        Bd, C = rng.integers(-3, 4, n).astype(float), rng.integers(-3, 4, n).astype(float)
        u, D = rng.integers(-5, 6, L).astype(float), float(rng.integers(-3, 4))
        K = kernel(Ad, Bd, C, L).value
        assert np.all(np.abs(K) < 2.0**40) and np.all(K == np.round(K))
        y = recurrence(Ad, Bd, C, D, u)
        assert np.all(y.error == 0)
        assert y.value.tolist() == (causal_conv(u, K).value + D * u).tolist()
        # and both equal the integer recurrence done by hand in Python ints
        h, ys = [0] * n, []
        Ai = Ad.astype(int).tolist()
        for uk in u.astype(int).tolist():
            h = [sum(a * x for a, x in zip(r, h)) + int(b) * uk for r, b in zip(Ai, Bd)]
            ys.append(sum(int(c) * x for c, x in zip(C, h)) + int(D) * uk)
        assert y.value.tolist() == [float(v) for v in ys]


def test_recurrence_equals_convolution_in_mpmath_random_floats():
    rng = np.random.default_rng(16)
    n, L = 4, 40
    Ad = rng.standard_normal((n, n)) * 0.3
    Bd, C, u = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(L)
    D = 0.75
    A_, B_, C_, u_ = to_mp(Ad), to_mp(Bd), to_mp(C), to_mp(u)
    with mpmath.workdps(50):
        K = _kernel_mp(A_, B_, C_, L)
        y = _recurrence_mp(A_, B_, C_, mpmath.mpf(D), u_)
        for t in range(L):
            conv = mpmath.fsum(K[k] * u_[t - k] for k in range(t + 1)) + D * u_[t]
            # both sides at 50 digits: differences are rounding at ~1e-50 times the magnitudes
            assert abs(y[t] - conv) <= mpmath.mpf(10) ** -45


def test_recurrence_equals_convolution_of_rounded_kernel():
    # Public functions: with K^ = fl(K) (|K^ - K| <= u|K|), c = fl(sum K^ u), d = fl(D u),
    # y = fl(c + d) and the recurrence's r = fl(y_exact):
    # |r - y| <= u (2 abs_conv + |D u| + |y| + |r|) (1 + O(u)) <= 4u (abs_conv + |D u|) + err.
    rng = np.random.default_rng(17)
    n, L = 5, 64
    Ad = rng.standard_normal((n, n)) * 0.35
    Bd, C, u = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(L)
    D = -1.25
    K = kernel(Ad, Bd, C, L)
    conv = causal_conv(u, K.value)
    rec = recurrence(Ad, Bd, C, D, u)
    bound = 4 * U * (conv.magnitudes["abs_conv"] + abs(D * u)) + rec.error + K.error.max() * np.abs(u).sum()
    assert np.all(np.abs(rec.value - (conv.value + D * u)) <= bound)
    # the index convention matters: a kernel shifted by one step is far outside that bound
    shifted = causal_conv(u, np.concatenate([[0.0], K.value[:-1]])).value + D * u
    assert np.abs(rec.value - shifted).max() > 1e6 * bound.max()


def test_recurrence_magnitude():
    Ad = np.array([[0.5, -0.25], [0.0, -0.5]])
    Bd, C, u, D = np.array([1.0, -1.0]), np.array([2.0, 1.0]), np.array([1.0, -2.0, 3.0]), -0.5
    mag = recurrence(Ad, Bd, C, D, u).magnitudes["abs_recurrence"]
    # sum_j |C| |Ad|^{k-j} |Bd| |u_j| + |D| |u_k|
    absA = np.abs(Ad)
    expect = [
        sum(np.abs(C) @ np.linalg.matrix_power(absA, k - j) @ np.abs(Bd) * abs(u[j]) for j in range(k + 1))
        + abs(D * u[k])
        for k in range(3)
    ]
    np.testing.assert_allclose(mag, expect, rtol=1e-15)


# ----------------------------------------------------------------------------------------------
# input validation


def test_causal_conv_validation():
    with pytest.raises(ValueError, match=r"^u .*\(L,\)"):
        causal_conv(np.ones((2, 2)), np.ones(4))
    with pytest.raises(ValueError, match=r"^K .*\(3,\)"):
        causal_conv(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"^u .*L >= 1"):
        causal_conv(np.ones(0), np.ones(0))
    with pytest.raises(ValueError, match=r"^K .*non-finite"):
        causal_conv(np.ones(2), np.array([1.0, np.nan]))
    with pytest.raises(TypeError, match=r"^u .*real"):
        causal_conv(np.ones(2, dtype=complex), np.ones(2))


def test_kernel_and_recurrence_validation():
    A, b, c = np.eye(2), np.ones(2), np.ones(2)
    with pytest.raises(ValueError, match=r"^Ad .*\(n, n\)"):
        kernel(np.ones((2, 3)), b, c, 4)
    with pytest.raises(ValueError, match=r"^Bd .*\(2,\)"):
        kernel(A, np.ones(3), c, 4)
    with pytest.raises(ValueError, match=r"^C .*\(2,\)"):
        kernel(A, b, np.ones((2, 1)), 4)
    for bad_L in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"^L "):
            kernel(A, b, c, bad_L)
    with pytest.raises(ValueError, match=r"^u "):
        recurrence(A, b, c, 0.0, np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"^D "):
        recurrence(A, b, c, np.inf, np.ones(3))
    with pytest.raises(TypeError, match=r"^D "):
        recurrence(A, b, c, np.ones(2), np.ones(3))
