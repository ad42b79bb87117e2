"""Unit tests of our LTI implementations (implementations/{numpy,torch}/{discretize,convolution}.py)
and a sanity check of the third-party-style subjects in tests/subjects/lti_{correct,wrong}.py.

Expected values come from closed forms evaluated in mpmath, exact rational arithmetic (Fractions),
exact integer convolutions, or mpmath's own matrix exponential -- never from the code under test.
Full accuracy verdicts over the input space are the property suite's job; the inputs here are
small and well conditioned, and each tolerance is a forward error bound written beside it.
"""
from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch

from ssm_conformance.implementations.numpy import convolution as np_conv
from ssm_conformance.implementations.numpy import discretize as np_disc
from ssm_conformance.implementations.torch import convolution as torch_conv
from ssm_conformance.implementations.torch import discretize as torch_disc
from ssm_conformance.oracle.precision import to_float, verified
from tests.subjects import lti_correct, lti_wrong

U = 2.0**-53  # unit roundoff of float64

DISC_NAMES = ("zoh", "bilinear", "euler", "backward_euler")
DISC = [getattr(mod, name) for mod in (np_disc, torch_disc) for name in DISC_NAMES]
DISC += [lambda A, B, dt, m=m: m.generalized_bilinear(A, B, dt, 0.25) for m in (np_disc, torch_disc)]
DISC_IDS = [f"{mod}.{name}" for mod in ("numpy", "torch") for name in DISC_NAMES]
DISC_IDS += ["numpy.generalized_bilinear", "torch.generalized_bilinear"]
CONV = [np_conv.causal_conv, torch_conv.causal_conv]
CONV_IDS = ["numpy", "torch"]


# --- exact references ---------------------------------------------------------------------------

def frac_matrix(X):
    return [[Fraction(float(v)) for v in row] for row in np.atleast_2d(X)]


def frac_solve(M, R):
    """Exact M^{-1} R by Gauss-Jordan elimination over the rationals (M, R lists of Fractions)."""
    n = len(M)
    aug = [list(M[i]) + list(R[i]) for i in range(n)]
    for c in range(n):
        p = next(r for r in range(c, n) if aug[r][c] != 0)
        aug[c], aug[p] = aug[p], aug[c]
        piv = aug[c][c]
        aug[c] = [v / piv for v in aug[c]]
        for r in range(n):
            if r != c and aug[r][c] != 0:
                f = aug[r][c]
                aug[r] = [a - f * b for a, b in zip(aug[r], aug[c])]
    return [row[n:] for row in aug]


def exact_generalized_bilinear(A, B, dt, alpha):
    """Exact (Ad, Bd, M, R) in Fractions for the contract's formulas with exact inputs A, B, dt.

    M = I - alpha dt A, R = [I + (1 - alpha) dt A, dt B]; alpha a dyadic rational."""
    n = A.shape[0]
    Af, Bf = frac_matrix(A), frac_matrix(B.reshape(n, -1))
    dtf, al = Fraction(dt), Fraction(alpha)
    eye = [[Fraction(int(i == j)) for j in range(n)] for i in range(n)]
    M = [[eye[i][j] - al * dtf * Af[i][j] for j in range(n)] for i in range(n)]
    R = [[eye[i][j] + (1 - al) * dtf * Af[i][j] for j in range(n)] + [dtf * b for b in Bf[i]]
         for i in range(n)]
    X = frac_solve(M, R)
    return X, M, R


def to_np(F):
    return np.array([[float(v) for v in row] for row in F])


def inf_norm(F):
    return max(sum(abs(v) for v in row) for row in F)


def zoh_reference(A, B, dt):
    """(Ad, Bd) from mpmath's expm of the Van Loan block, precision verified by doubling."""
    n = A.shape[0]
    B2 = B.reshape(n, -1)
    m = B2.shape[1]

    def compute():
        M = mpmath.zeros(n + m, n + m)
        for i in range(n):
            for j in range(n):
                M[i, j] = mpmath.mpf(float(A[i, j])) * mpmath.mpf(dt)
            for j in range(m):
                M[i, n + j] = mpmath.mpf(float(B2[i, j])) * mpmath.mpf(dt)
        E = mpmath.expm(M)
        return np.array([[E[i, j] for j in range(n + m)] for i in range(n)], dtype=object)

    hi, _ = verified(compute, dps=30)
    E = to_float(hi)
    return E[:, :n], E[:, n:].reshape(B.shape)


def expm_tol(A, B, dt):
    """Normwise tolerances (for Ad, and per column of Bd) of a scaling-and-squaring exponential of
    the Van Loan block M with ||A dt||_1 <= 1 and columns of B scaled so ||M||_1 <= 1.

    Backward error: exp(M + dM), ||dM||_1 <= depth u ||M||_1 with depth = 9 n' (a Pade approximant
    or Taylor polynomial of ~6 products of n' x n' matrices plus a solve, no squaring needed at
    ||M||_1 <= 1). The Frechet derivative of exp is bounded by e^{||M||} <= e, so the forward
    error is <= e depth u ||M|| <= e depth u, plus u ||e^M|| <= e u for rounding the result.
    Unscaling column j of Bd multiplies its bound by ||dt B_j||_1 / (||M_j||_1 >= 1/4) <= 4 ||dt B_j||.
    """
    n = A.shape[0]
    B2 = B.reshape(n, -1)
    nn = n + B2.shape[1]
    assert np.abs(dt * A).sum(axis=0).max() <= 1.0
    bound = math.e * (9 * nn + 1) * U
    return bound, 4 * bound * np.abs(dt * B2).sum(axis=0)


def assert_zoh_close(Ad, Bd, Ad_ref, Bd_ref, A, B, dt):
    tol_A, tol_B = expm_tol(A, B, dt)
    n = A.shape[0]
    assert Ad.shape == Ad_ref.shape and Bd.shape == Bd_ref.shape
    assert np.abs(Ad - Ad_ref).sum(axis=0).max() <= tol_A
    err_B = np.abs((Bd - Bd_ref).reshape(n, -1)).sum(axis=0)
    assert np.all(err_B <= tol_B)


# --- argument checks ------------------------------------------------------------------------------

GOOD_A = np.array([[-1.0, 0.5], [0.0, -2.0]])
GOOD_B = np.array([1.0, -1.0])

BAD_SYSTEM = [  # (A, B, dt, the argument the message must name)
    (np.ones(2), GOOD_B, 0.1, "A"),  # 1-D
    (np.ones((2, 3)), GOOD_B, 0.1, "A"),  # not square
    (np.ones((2, 2, 2)), GOOD_B, 0.1, "A"),  # 3-D
    (np.ones((0, 0)), np.ones(0), 0.1, "A"),  # n = 0
    (np.array([["a", "b"], ["c", "d"]]), GOOD_B, 0.1, "A"),  # strings
    (GOOD_A.astype(complex), GOOD_B, 0.1, "A"),  # complex
    ([[1.0, 2.0], [3.0]], GOOD_B, 0.1, "A"),  # ragged
    (None, GOOD_B, 0.1, "A"),
    (np.array([[np.nan, 0.0], [0.0, 1.0]]), GOOD_B, 0.1, "A"),
    (GOOD_A, np.ones(3), 0.1, "B"),  # wrong number of rows
    (GOOD_A, np.ones((3, 1)), 0.1, "B"),
    (GOOD_A, np.ones((2, 1, 1)), 0.1, "B"),
    (GOOD_A, np.ones(()), 0.1, "B"),
    (GOOD_A, np.array([1.0, np.inf]), 0.1, "B"),
    (GOOD_A, "ab", 0.1, "B"),
    (GOOD_A, GOOD_B, 0.0, "dt"),
    (GOOD_A, GOOD_B, -0.1, "dt"),
    (GOOD_A, GOOD_B, float("nan"), "dt"),
    (GOOD_A, GOOD_B, float("inf"), "dt"),
    (GOOD_A, GOOD_B, np.array([0.1]), "dt"),  # not a scalar
    (GOOD_A, GOOD_B, "0.1", "dt"),
    (GOOD_A, GOOD_B, True, "dt"),
    (GOOD_A, GOOD_B, 1j, "dt"),
]


@pytest.mark.parametrize("fn", DISC, ids=DISC_IDS)
@pytest.mark.parametrize("case", range(len(BAD_SYSTEM)))
def test_discretize_rejects_bad_arguments(fn, case):
    A, B, dt, name = BAD_SYSTEM[case]
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b") as info:
        fn(A, B, dt)
    assert not isinstance(info.value, np.linalg.LinAlgError)  # caught before any linear algebra
    if isinstance(info.value, ValueError) and "shape" in str(info.value):  # names the shape expected
        assert "(n, n)" in str(info.value) or "(2," in str(info.value) or "()" in str(info.value)


@pytest.mark.parametrize("mod", [np_disc, torch_disc], ids=["numpy", "torch"])
@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), np.ones(1), "x"])
def test_generalized_bilinear_rejects_bad_alpha(mod, alpha):
    with pytest.raises((ValueError, TypeError), match=r"\balpha\b"):
        mod.generalized_bilinear(GOOD_A, GOOD_B, 0.1, alpha)


BAD_SIGNALS = [  # (u, K, the argument the message must name)
    (np.ones((2, 3)), np.ones((2, 3)), "u"),
    (np.ones(()), np.ones(()), "u"),
    (np.ones(0), np.ones(0), "u"),  # L = 0
    (np.ones(3), np.ones(4), "K"),
    (np.ones(3), np.ones((3, 1)), "K"),
    (np.array(["a", "b"]), np.ones(2), "u"),
    (np.ones(2), np.ones(2, dtype=complex), "K"),
    ([1.0, [2.0]], np.ones(2), "u"),
    (np.array([1.0, np.nan]), np.ones(2), "u"),
    (np.ones(2), np.array([np.inf, 1.0]), "K"),
    (np.ones(2), None, "K"),
]


@pytest.mark.parametrize("fn", CONV, ids=CONV_IDS)
@pytest.mark.parametrize("case", range(len(BAD_SIGNALS)))
def test_causal_conv_rejects_bad_arguments(fn, case):
    u, K, name = BAD_SIGNALS[case]
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b") as info:
        fn(u, K)
    if isinstance(info.value, ValueError) and "shape" in str(info.value):  # names the shape expected
        assert "(L,)" in str(info.value)


@pytest.mark.parametrize("mod", [np_disc, torch_disc], ids=["numpy", "torch"])
@pytest.mark.parametrize("name", ["bilinear", "backward_euler"])
def test_singular_resolvent_raises_linalg_error(mod, name):
    # A = diag(2, 1), dt = 1: I - dt/2 A and I - dt A both have a zero on the diagonal.
    A = np.diag([2.0, 1.0]) if name == "bilinear" else np.diag([1.0, 0.5])
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        getattr(mod, name)(A, GOOD_B, 1.0)


# --- shapes, dtypes, inputs left alone ------------------------------------------------------------

@pytest.mark.parametrize("fn", DISC, ids=DISC_IDS)
@pytest.mark.parametrize("b_shape", [(3,), (3, 1), (3, 2), (3, 0)])
def test_discretize_shapes_dtypes_and_inputs_untouched(fn, b_shape):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3, 3))
    B = rng.standard_normal(b_shape)
    A0, B0 = A.copy(), B.copy()
    Ad, Bd = fn(A, B, 0.25)
    assert isinstance(Ad, np.ndarray) and isinstance(Bd, np.ndarray)
    assert Ad.shape == (3, 3) and Bd.shape == b_shape
    assert Ad.dtype == np.float64 and Bd.dtype == np.float64
    assert np.array_equal(A, A0) and np.array_equal(B, B0)
    assert not np.shares_memory(Bd, B) and not np.shares_memory(Ad, A)


@pytest.mark.parametrize("fn", DISC, ids=DISC_IDS)
def test_discretize_accepts_tensors_lists_and_ints(fn):
    A = torch.tensor([[-1.0, 0.5], [0.0, -2.0]], dtype=torch.float32, requires_grad=True)
    B = torch.tensor([1.0, 2.0], dtype=torch.float32)
    Ad, Bd = fn(A, B, torch.tensor(0.5))
    Ad2, Bd2 = fn([[-1, 0.5], [0, -2]], [1, 2], 0.5)  # lists with ints; same exact values
    assert Ad.dtype == np.float64 and Bd.shape == (2,)
    assert np.array_equal(Ad, Ad2) and np.array_equal(Bd, Bd2)


@pytest.mark.parametrize("fn", CONV, ids=CONV_IDS)
@pytest.mark.parametrize("L", [1, 2, 5, 64])
def test_causal_conv_shape_dtype_and_inputs_untouched(fn, L):
    rng = np.random.default_rng(L)
    u, K = rng.standard_normal(L), rng.standard_normal(L)
    u0, K0 = u.copy(), K.copy()
    y = fn(u, K)
    assert isinstance(y, np.ndarray) and y.shape == (L,) and y.dtype == np.float64
    assert np.array_equal(u, u0) and np.array_equal(K, K0)
    y_t = fn(torch.tensor(u, dtype=torch.float32, requires_grad=True), torch.tensor(K))
    assert y_t.shape == (L,) and y_t.dtype == np.float64


# --- ZOH values -----------------------------------------------------------------------------------

ZOH = [np_disc.zoh, torch_disc.zoh]
ZOH_IDS = ["numpy", "torch"]


@pytest.mark.parametrize("zoh", ZOH, ids=ZOH_IDS)
@pytest.mark.parametrize("a", [-1.0, 0.75, -1e-3, 1e-12, -3e-200, 0.0])
def test_zoh_scalar_closed_form(zoh, a):
    # 1 x 1: Ad = e^{a dt}, Bd = (e^{a dt} - 1)/a b = dt b expm1(a dt)/(a dt); a = 0: Bd = dt b.
    # Small |a| is where the textbook A^{-1}(e^{A dt} - I) B cancels catastrophically.
    dt, b = 0.625, np.array([[1.5, -3.0]])
    A = np.array([[a]])
    with mpmath.workdps(50):
        x = mpmath.mpf(a) * mpmath.mpf(dt)
        Ad_ref = np.array([[float(mpmath.exp(x))]])
        phi = mpmath.expm1(x) / x if a != 0 else mpmath.mpf(1)
        Bd_ref = np.array([[float(mpmath.mpf(dt) * phi * mpmath.mpf(v)) for v in b[0]]])
    Ad, Bd = zoh(A, b, dt)
    assert_zoh_close(Ad, Bd, Ad_ref, Bd_ref, A, b, dt)


def jordan_reference(a, dt, n):
    """Closed forms for the n x n Jordan block J = a I + N (N the shift, N^n = 0), n <= 3:
    e^{J t} = e^{a t} sum_k N^k t^k / k!, and int_0^dt e^{J s} ds = sum_k N^k c_k with
    c_k = int_0^dt s^k/k! e^{a s} ds (exact polynomials in dt when a = 0)."""
    with mpmath.workdps(50):
        a, dt = mpmath.mpf(a), mpmath.mpf(dt)
        e = mpmath.exp(a * dt)
        c = [mpmath.quad(lambda s, k=k: s**k / mpmath.factorial(k) * mpmath.exp(a * s), [0, dt])
             for k in range(n)]
        Ad = np.zeros((n, n))
        Phi = np.zeros((n, n))
        for i in range(n):
            for j in range(i, n):
                k = j - i
                Ad[i, j] = float(e * dt**k / mpmath.factorial(k))
                Phi[i, j] = float(c[k])
    return Ad, Phi


@pytest.mark.parametrize("zoh", ZOH, ids=ZOH_IDS)
@pytest.mark.parametrize("a,n", [(0.0, 1), (0.0, 3), (-0.5, 2), (0.25, 3), (1e-9, 2)])
def test_zoh_singular_and_defective_closed_form(zoh, a, n):
    # Jordan blocks: defective for n >= 2, singular when a = 0 (nilpotent for n >= 2).
    dt = 0.3
    A = a * np.eye(n) + np.eye(n, k=1)
    B = np.arange(1.0, 2 * n + 1).reshape(n, 2) / 4
    Ad_ref, Phi = jordan_reference(a, dt, n)
    Bd_ref = Phi @ B  # exact to ~n u |Phi||B|, far inside expm_tol
    Ad, Bd = zoh(A, B, dt)
    assert np.all(np.isfinite(Ad)) and np.all(np.isfinite(Bd))
    assert_zoh_close(Ad, Bd, Ad_ref, Bd_ref, A, B, dt)


@pytest.mark.parametrize("zoh", ZOH, ids=ZOH_IDS)
@pytest.mark.parametrize("b_scale", [1e-300, 1.0, 1e12, 1e300])
def test_zoh_random_against_mpmath(zoh, b_scale):
    # Huge or tiny B must not cost Ad or Bd accuracy (columns of B are scaled by powers of two):
    # unscaled, torch.linalg.matrix_exp loses ~8 digits at ||B|| = 1e12.
    rng = np.random.default_rng(7)
    A = rng.standard_normal((3, 3))
    A *= 0.9 / np.abs(A).sum(axis=0).max()  # ||A||_1 = 0.9, dt = 1 -> ||A dt||_1 <= 1
    B = rng.standard_normal((3, 2)) * np.array([b_scale, 1.0])
    Ad_ref, Bd_ref = zoh_reference(A, B, 1.0)
    Ad, Bd = zoh(A, B, 1.0)
    assert_zoh_close(Ad, Bd, Ad_ref, Bd_ref, A, B, 1.0)


# --- generalized bilinear family: exact rationals -------------------------------------------------

def solve_tol(M, X, R, n):
    """LU with partial pivoting (Higham Thm 9.4): (M + dM) X = R, |dM| <= gamma_3n |L||U|, and
    || |L||U| ||_inf <= n rho_n ||M||_inf with growth rho_n <= 2^(n-1); so, per column,
    ||dX||_inf <= 3n * n 2^(n-1) u ||M^{-1}||_inf ||M||_inf ||X||_inf, plus u ||X|| for rounding R
    (formed in floating point: one product and one sum per element, relative u each, times
    ||M^{-1}|| ||R||)."""
    inv = to_np(frac_solve(M, [[Fraction(int(i == j)) for j in range(n)] for i in range(n)]))
    inv_norm = np.abs(inv).sum(axis=1).max()
    M_norm = inf_norm(M)
    X_np, R_np = to_np(X), to_np(R)
    cols = np.abs(X_np).max(axis=0)
    return (3 * n * n * 2 ** (n - 1) * U * inv_norm * M_norm * cols
            + 2 * U * inv_norm * np.abs(R_np).max(axis=0) + U * cols)


FAMILY = [("bilinear", 0.5), ("backward_euler", 1.0), ("euler", 0.0)]


@pytest.mark.parametrize("mod", [np_disc, torch_disc], ids=["numpy", "torch"])
@pytest.mark.parametrize("name,alpha", FAMILY + [("generalized_bilinear", 0.25)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solve_family_against_exact_rationals(mod, name, alpha, seed):
    rng = np.random.default_rng(seed)
    n = 3
    A = rng.standard_normal((n, n))
    B = rng.standard_normal((n, 2))
    dt = 0.3
    X, M, R = exact_generalized_bilinear(A, B, dt, alpha)
    fn = getattr(mod, name)
    Ad, Bd = fn(A, B, dt, alpha) if name == "generalized_bilinear" else fn(A, B, dt)
    err = np.abs(np.concatenate([Ad, Bd], axis=1) - to_np(X)).max(axis=0)
    assert np.all(err <= solve_tol(M, X, R, n))


@pytest.mark.parametrize("mod", [np_disc, torch_disc], ids=["numpy", "torch"])
def test_euler_is_exact_on_dyadic_inputs(mod):
    # dt = 1/2 and A, B in (1/8) Z with small numerators: I + dt A and dt B are exact in float64.
    A = np.array([[-3.0, 1.0, 0.5], [0.25, -0.125, 2.0], [0.0, 7.0, -1.0]])
    B = np.array([1.0, -0.375, 2.5])
    Ad, Bd = mod.euler(A, B, 0.5)
    assert np.array_equal(Ad, np.eye(3) + A / 2) and np.array_equal(Bd, B / 2)
    # Componentwise bound on generic floats: fl(1 + fl(dt a)) within u|dt a| + u|1 + dt a| + u^2.
    rng = np.random.default_rng(3)
    A, B, dt = rng.standard_normal((4, 4)), rng.standard_normal((4, 1)), 0.137
    Ad, Bd = mod.euler(A, B, dt)
    Ad_exact = np.eye(4) + dt * A  # only as a scale; the exact value is in Fractions below
    for i in range(4):
        for j in range(4):
            exact = int(i == j) + Fraction(dt) * Fraction(A[i, j])
            tol = U * (abs(dt * A[i, j]) + abs(Ad_exact[i, j])) * (1 + 2 * U)
            assert abs(Fraction(Ad[i, j]) - exact) <= Fraction(tol)
        assert abs(Fraction(Bd[i, 0]) - Fraction(dt) * Fraction(B[i, 0])) <= Fraction(U * abs(Bd[i, 0]))


@pytest.mark.parametrize("mod", [np_disc, torch_disc], ids=["numpy", "torch"])
def test_generalized_bilinear_endpoints_are_the_named_methods(mod):
    # Same formula and the same roundings: alpha = 0, 1/2, 1 must reproduce the named methods bit
    # for bit (alpha = 0 solves with I exactly; alpha = 1 adds 0 * A).
    rng = np.random.default_rng(4)
    A, B = rng.standard_normal((4, 4)), rng.standard_normal(4)
    for name, alpha in FAMILY:
        got = mod.generalized_bilinear(A, B, 0.2, alpha)
        want = getattr(mod, name)(A, B, 0.2)
        assert all(np.array_equal(g, w) for g, w in zip(got, want)), name


@pytest.mark.parametrize("name", DISC_NAMES)
def test_numpy_and_torch_agree(name):
    # Both are accurate to the bounds above; on this well-conditioned 4 x 4 problem (||A dt||_1 < 1,
    # ||(I - a dt A)^{-1}|| < 2) that is a few hundred u at most, relative to the norms.
    rng = np.random.default_rng(5)
    A = rng.standard_normal((4, 4))
    A *= 0.9 / np.abs(A).sum(axis=0).max()
    B = rng.standard_normal((4, 3))
    for a, b in zip(getattr(np_disc, name)(A, B, 1.0), getattr(torch_disc, name)(A, B, 1.0)):
        assert np.abs(a - b).max() <= 512 * U * max(1.0, np.abs(a).max())


# --- causal convolution ---------------------------------------------------------------------------

def dyadic_signals(L, seed):
    """u, K with 20-bit numerators over 2^10: the exact convolution fits int64 (|terms| < 2^40,
    L < 2^13) and, divided by 2^20, float64 exactly."""
    rng = np.random.default_rng(seed)
    ui = rng.integers(-(2**20), 2**20, size=L)
    Ki = rng.integers(-(2**20), 2**20, size=L)
    exact = np.convolve(ui, Ki)[:L].astype(np.float64) / 2.0**20  # int64 direct sum: exact
    return ui / 2.0**10, Ki / 2.0**10, exact


def fft_conv_tol(u, K, n):
    """Normwise FFT error (Higham Thm 24.2: each length-n FFT has relative error <= eta log2 n,
    eta ~ 7u with computed twiddles): two forward transforms, the product and the inverse give
    |err_t| <= ||err||_2 <= (3 * 7 log2(n) + 1) u (||K||_2 ||u||_1 + ||K||_1 ||u||_2)."""
    log_n = max(1, math.ceil(math.log2(n)))
    return (21 * log_n + 1) * U * (np.linalg.norm(K) * np.abs(u).sum()
                                   + np.abs(K).sum() * np.linalg.norm(u))


@pytest.mark.parametrize("fn", CONV, ids=CONV_IDS)
@pytest.mark.parametrize("L", [1, 2, 3, 7, 64, 1000, 4097])
def test_causal_conv_against_exact_integer_convolution(fn, L):
    u, K, exact = dyadic_signals(L, seed=L)
    y = fn(u, K)
    assert np.abs(y - exact).max() <= fft_conv_tol(u, K, 4 * L)  # any padding n <= 4L


@pytest.mark.parametrize("fn", CONV, ids=CONV_IDS)
def test_causal_conv_is_causal_and_not_circular(fn):
    # u = K = e_{L-1}: the only nonzero term of the full convolution is at index 2L - 2, which a
    # correct causal convolution drops; circular or short padding wraps it onto y_{L-2} or y_0.
    L = 33
    e = np.zeros(L)
    e[-1] = 1.0
    assert np.abs(fn(e, e)).max() <= fft_conv_tol(e, e, 4 * L)
    # an impulse at t = 0 reproduces K: y_t = K_t
    K = np.arange(1.0, L + 1)
    impulse = np.zeros(L)
    impulse[0] = 1.0
    assert np.abs(fn(impulse, K) - K).max() <= fft_conv_tol(impulse, K, 4 * L)


@pytest.mark.parametrize("fn", CONV, ids=CONV_IDS)
def test_causal_conv_single_sample_is_one_product(fn):
    # n = 1: the transforms are the identity, so y_0 = fl(K_0 u_0) exactly.
    assert fn(np.array([0.1]), np.array([3.0]))[0] == 0.1 * 3.0


def test_next_fast_len_is_the_next_7_smooth_number():
    smooth = sorted(2**a * 3**b * 5**c * 7**d for a in range(18) for b in range(12)
                    for c in range(8) for d in range(7))
    for target in list(range(1, 2000)) + [4095, 8191, 131071]:
        assert torch_conv.next_fast_len(target) == next(s for s in smooth if s >= target)


def test_numpy_and_torch_conv_agree():
    rng = np.random.default_rng(6)
    u, K = rng.standard_normal(3000), rng.standard_normal(3000)
    # both within fft_conv_tol of the exact result (paddings 6000 and 6000: both 2^4 3 5^3)
    assert np.abs(np_conv.causal_conv(u, K) - torch_conv.causal_conv(u, K)).max() <= \
        2 * fft_conv_tol(u, K, 6000)


# --- the subjects: correct ones are right, wrong ones are wrong where their docstring says -----

def _zoh_cases():
    rng = np.random.default_rng(11)
    A = rng.standard_normal((3, 3))
    A *= 0.9 / np.abs(A).sum(axis=0).max()
    B = rng.standard_normal((3, 2))
    nilpotent = np.eye(3, k=1)
    jordan = -0.5 * np.eye(2) + np.eye(2, k=1)
    cases = {"general": (A, B, 1.0),
             "singular": (nilpotent, np.array([[0.5], [-1.0], [2.0]]), 1.0),  # B (n, m), m = 1
             "defective": (jordan, np.array([[1.0], [2.0]]), 0.5),
             "large_B": (A, B * 1e12, 1.0),
             "small_dt": (A, B, 2.0**-30)}
    return {k: (A_, B_, dt, zoh_reference(A_, B_, dt)) for k, (A_, B_, dt) in cases.items()}


ZOH_CASES = None


def zoh_cases():
    global ZOH_CASES
    if ZOH_CASES is None:
        ZOH_CASES = _zoh_cases()
    return ZOH_CASES


CORRECT = {
    "zoh": ["zoh_scipy_cont2discrete", "zoh_series_scaling_squaring",
            "zoh_expm_phi1_then_multiply", "zoh_torch_phi1_block",
            "zoh_written_to_the_contract", "zoh_python_control_c2d"],
    "bilinear": ["bilinear_scipy_cont2discrete", "bilinear_inverse_then_multiply",
                 "bilinear_qr_solve", "bilinear_right_division"],
    "euler": ["euler_scipy_cont2discrete", "euler_explicit_loops", "euler_torch_float64"],
    "backward_euler": ["backward_euler_scipy_cont2discrete",
                       "backward_euler_inverse_then_multiply", "backward_euler_qr_solve",
                       "backward_euler_torch_solve"],
    "causal_conv": ["causal_conv_direct_loop", "causal_conv_np_convolve",
                    "causal_conv_scipy_fftconvolve", "causal_conv_scipy_oaconvolve",
                    "causal_conv_toeplitz_matvec", "causal_conv_fft_power_of_two",
                    "causal_conv_torch_conv1d"],
}


def test_subject_lists_are_complete():
    for module, listed in [(lti_correct, sum(CORRECT.values(), [])),
                           (lti_wrong, [name for name, _ in WRONG_NUMBERS] + HARNESS_CLASSES)]:
        public = {n for n, v in vars(module).items()
                  if callable(v) and not n.startswith("_") and v.__module__ == module.__name__}
        assert public == set(listed), module.__name__


@pytest.mark.parametrize("name", CORRECT["zoh"])
def test_correct_zoh_subjects(name):
    fn = getattr(lti_correct, name)
    for case, (A, B, dt, (Ad_ref, Bd_ref)) in zoh_cases().items():
        Ad, Bd = fn(A, B, dt)
        assert_zoh_close(np.asarray(Ad), np.asarray(Bd), Ad_ref, Bd_ref, A, B, dt)


@pytest.mark.parametrize("role", ["bilinear", "euler", "backward_euler"])
def test_correct_solve_family_subjects(role):
    alpha = dict(FAMILY)[role]
    rng = np.random.default_rng(12)
    A, B, dt = rng.standard_normal((3, 3)), rng.standard_normal((3, 2)), 0.3
    X, M, R = exact_generalized_bilinear(A, B, dt, alpha)
    # inverse-then-multiply is within the solve bound times ||M^{-1}|| ||M|| (Higham sec. 14.1),
    # which is < 4 for these matrices
    tol = 4 * solve_tol(M, X, R, 3)
    for name in CORRECT[role]:
        Ad, Bd = getattr(lti_correct, name)(A, B, dt)
        err = np.abs(np.concatenate([Ad, Bd], axis=1) - to_np(X)).max(axis=0)
        assert np.all(err <= tol), name
        Ad1, Bd1 = getattr(lti_correct, name)(A, B[:, 0], dt)
        assert Bd1.shape == (3,)


@pytest.mark.parametrize("name", CORRECT["causal_conv"])
@pytest.mark.parametrize("L", [1, 2, 17, 300])
def test_correct_conv_subjects(name, L):
    u, K, exact = dyadic_signals(L, seed=100 + L)
    y = getattr(lti_correct, name)(u, K)
    assert np.shape(y) == (L,) and np.asarray(y).dtype == np.float64
    assert np.abs(y - exact).max() <= fft_conv_tol(u, K, 4 * L)  # also >= the direct-sum bound


# Wrong subjects and the input that exposes each (numbers more than 100 x the bound off, or a raise)
WRONG_NUMBERS = [
    ("zoh_inverse_formula_solve", "singular"), ("zoh_inverse_formula_pinv", "singular"),
    ("zoh_euler_B", "general"), ("zoh_elementwise_exp", "general"),
    ("zoh_taylor_order2", "general"), ("zoh_eigendecomposition", "defective"),
    ("zoh_van_loan_B_not_scaled_by_dt", "small_dt"),
    ("bilinear_B_sign_flipped", "bilinear"), ("bilinear_factors_swapped", "bilinear"),
    ("bilinear_B_without_dt", "bilinear"), ("bilinear_B_half_dt", "bilinear"),
    ("bilinear_without_half", "bilinear"), ("bilinear_float32", "bilinear"),
    ("euler_missing_identity", "euler"), ("euler_B_without_dt", "euler"),
    ("euler_backward_instead", "euler"), ("euler_float32", "euler"),
    ("backward_euler_as_forward", "backward_euler"),
    ("backward_euler_B_without_resolvent", "backward_euler"),
    ("backward_euler_sign_flipped", "backward_euler"),
    ("backward_euler_transposed_solve", "backward_euler"),
    ("backward_euler_B_without_dt", "backward_euler"),
    ("causal_conv_fft_circular", "conv"), ("causal_conv_fft_kernel_at_L", "conv"),
    ("causal_conv_fft_pad_2L_minus_2", "conv"), ("causal_conv_off_by_one", "conv"),
    ("causal_conv_reversed_kernel", "conv"), ("causal_conv_fft_float32", "conv"),
]
HARNESS_CLASSES = ["causal_conv_mutates_input", "causal_conv_nondeterministic",
                   "causal_conv_wrong_shape", "causal_conv_float32_output",
                   "causal_conv_returns_nan", "causal_conv_raises_on_L1", "causal_conv_hangs_on_L1"]


def _ratio_or_raise(fn, args, err_of):
    try:
        out = fn(*args)
    except Exception:  # noqa: BLE001 - a raise on a valid input is a failure the suite reports
        return math.inf
    return err_of(out)


@pytest.mark.parametrize("name,case", WRONG_NUMBERS, ids=[n for n, _ in WRONG_NUMBERS])
def test_wrong_subjects_are_far_off(name, case):
    fn = getattr(lti_wrong, name)
    if name.startswith("zoh"):
        A, B, dt, (Ad_ref, Bd_ref) = zoh_cases()[case]
        tol_A, tol_B = expm_tol(A, B, dt)
        n = A.shape[0]

        def err_of(out):
            Ad, Bd = (np.asarray(x, dtype=np.float64) for x in out)
            if not (np.all(np.isfinite(Ad)) and np.all(np.isfinite(Bd))):
                return math.inf
            e_A = np.abs(Ad - Ad_ref).sum(axis=0).max() / tol_A
            e_B = (np.abs((Bd - Bd_ref).reshape(n, -1)).sum(axis=0) / tol_B).max()
            return max(e_A, e_B)
        ratio = _ratio_or_raise(fn, (A, B, dt), err_of)
    elif case == "conv":
        u, K, exact = dyadic_signals(40, seed=3)
        tol = fft_conv_tol(u, K, 160)
        ratio = _ratio_or_raise(fn, (u, K), lambda y: np.abs(y - exact).max() / tol)
    else:
        alpha = dict(FAMILY)[case]
        rng = np.random.default_rng(13)
        A, B, dt = rng.standard_normal((3, 3)), rng.standard_normal((3, 2)), 0.3
        X, M, R = exact_generalized_bilinear(A, B, dt, alpha)
        tol = solve_tol(M, X, R, 3)

        def err_of(out):
            err = np.abs(np.concatenate(out, axis=1) - to_np(X)).max(axis=0)
            return (err / tol).max()
        ratio = _ratio_or_raise(fn, (A, B, dt), err_of)
    assert ratio > 100, f"{name} is within {ratio:.3g} x the bound on {case!r}"


def test_wrong_subjects_of_the_harness_failure_classes():
    u, K, exact = dyadic_signals(16, seed=5)
    tol = fft_conv_tol(u, K, 64)
    # each is right apart from its one failure, so the suite must classify it by that failure
    u1 = u.copy()
    assert np.abs(lti_wrong.causal_conv_mutates_input(u1, K.copy()) - exact).max() <= tol
    assert not np.array_equal(u1, u)  # changed in place
    a, b = (lti_wrong.causal_conv_nondeterministic(u, K) for _ in range(2))
    assert not np.array_equal(a, b) and np.abs(a - exact).max() <= tol
    y = lti_wrong.causal_conv_wrong_shape(u, K)
    assert y.shape == (17,) and np.abs(y[:16] - exact).max() <= tol
    assert lti_wrong.causal_conv_wrong_shape(np.ones(1), np.ones(1)).shape == (2,)
    y = lti_wrong.causal_conv_float32_output(u, K)
    assert y.dtype == np.float32 and np.abs(y - exact).max() <= 2.0**-24 * np.abs(exact).max()
    y = lti_wrong.causal_conv_returns_nan(u, K)
    assert np.isnan(y[-1]) and np.abs(y[:-1] - exact[:-1]).max() <= tol
    assert np.isnan(lti_wrong.causal_conv_returns_nan(np.ones(1), np.ones(1))[0])
    with pytest.raises(ValueError):
        lti_wrong.causal_conv_raises_on_L1(np.ones(1), np.ones(1))
    for L in (2, 3, 5, 16):
        u_, K_, exact_ = dyadic_signals(L, seed=L)
        assert np.abs(lti_wrong.causal_conv_raises_on_L1(u_, K_) - exact_).max() <= \
            fft_conv_tol(u_, K_, 4 * L)
    # the hanging one is only called where it does not hang
    assert np.abs(lti_wrong.causal_conv_hangs_on_L1(u, K) - exact).max() <= tol
