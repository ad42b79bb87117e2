"""Tests of oracle/discretize.py against independent derivations.

ZOH: SymPy closed forms, Ad = (A t).exp() (Jordan form) and Bd = int_0^dt exp(A s) ds * B
(symbolic integration), evaluated to 45 digits -- no Van Loan block, no mpmath.expm.
Bilinear family: exact rational solves in SymPy.  Magnitudes: brute-force perturbation.
"""
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import scipy.linalg
import sympy as sp

from ssm_conformance.oracle.discretize import (
    backward_euler,
    bilinear,
    euler,
    frechet_magnitude,
    generalized_bilinear,
    squarings,
    zoh,
)
from ssm_conformance.oracle.precision import ACCEPT, verified
from ssm_conformance.oracle.reference import OracleError

s_sym = sp.symbols("s", real=True)


def rat(x):
    """float -> the exact sympy Rational it holds."""
    return sp.Rational(*float(x).as_integer_ratio())


def sym_matrix(a):
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    return sp.Matrix(a.shape[0], a.shape[1], [rat(v) for v in a.ravel()])


def assert_matches_exact(value, err, exact):
    """value (float64 array) is exact (mpmath numbers) rounded once, up to the oracle's own error.

    Bound: |value - exact| <= half an ulp of float64 (the final rounding) + err (the oracle's
    certified error) + 1e-40 |exact| (the 45-digit evaluation of the SymPy closed form).
    """
    value = np.atleast_1d(value)
    err = np.broadcast_to(np.atleast_1d(err), value.shape)
    exact = np.asarray(exact, dtype=object).reshape(value.shape)
    with mpmath.workdps(60):
        for idx in np.ndindex(value.shape):
            v, x = float(value[idx]), mpmath.mpf(exact[idx])
            bound = mpmath.mpf(np.spacing(abs(v))) / 2 + float(err[idx]) + abs(x) * 1e-40
            assert abs(mpmath.mpf(v) - x) <= bound, (idx, v, x)


def assert_exact_rational(value, err, exact):
    """Same as above with an exact rational reference (SymPy), compared in Fractions."""
    value = np.atleast_1d(value)
    err = np.broadcast_to(np.atleast_1d(err), value.shape)
    exact = np.asarray(exact, dtype=object).reshape(value.shape)
    for idx in np.ndindex(value.shape):
        x = sp.Rational(exact[idx])
        xf = Fraction(int(x.p), int(x.q))
        v = float(value[idx])
        bound = Fraction(np.spacing(abs(v))) / 2 + Fraction(float(err[idx]))
        assert abs(Fraction(v) - xf) <= bound, (idx, v, float(xf))


# ----------------------------------------------------------------------------------------------
# ZOH against SymPy closed forms

P2 = np.array([[1.0, 1.0], [0.0, 1.0]])  # unimodular: P J P^{-1} stays rational and defective
ZOH_CASES = {
    "1x1": (np.array([[-0.7]]), np.array([[1.5]]), 0.1),
    "1x1_zero": (np.array([[0.0]]), np.array([[-2.25]]), 0.375),
    "2x2_diagonalizable": (np.array([[-1.0, 2.0], [0.5, -3.0]]), np.array([[1.0], [-0.5]]), 0.375),
    "2x2_jordan": (np.array([[-0.5, 1.0], [0.0, -0.5]]), np.array([[0.25, 1.0], [1.0, -1.0]]), 0.75),
    "2x2_defective_nontriangular": (
        P2 @ np.array([[-0.5, 1.0], [0.0, -0.5]]) @ np.linalg.inv(P2),
        np.array([[1.0], [2.0]]),
        1.25,
    ),
    "3x3_jordan": (
        np.array([[-1.25, 1.0, 0.0], [0.0, -1.25, 1.0], [0.0, 0.0, -1.25]]),
        np.array([[1.0], [0.5], [-1.0]]),
        0.5,
    ),
    "nilpotent_2x2": (np.array([[1.0, 1.0], [-1.0, -1.0]]), np.array([[1.0], [3.0]]), 0.625),
    "nilpotent_3x3": (
        np.array([[0.0, 2.0, -1.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]]),
        np.array([[1.0], [1.0], [1.0]]),
        1.5,
    ),
    "singular_not_nilpotent": (np.array([[-1.0, 1.0], [1.0, -1.0]]), np.array([[0.5], [2.0]]), 0.3),
}


@pytest.mark.parametrize("case", list(ZOH_CASES))
def test_zoh_matches_sympy_closed_form(case):
    A, B, dt = ZOH_CASES[case]
    As, Bs, t = sym_matrix(A), sym_matrix(B), rat(dt)
    Ad_exact = (As * t).exp()
    integral = (As * s_sym).exp().applyfunc(lambda e: sp.integrate(e, (s_sym, 0, t)))
    Bd_exact = integral * Bs
    Ad, Bd = zoh(A, B, dt)
    assert_matches_exact(Ad.value, Ad.error, [sp.N(x, 45) for x in Ad_exact])
    assert_matches_exact(Bd.value, Bd.error, [sp.N(x, 45) for x in Bd_exact])


def test_zoh_scalar_formulas_and_1d_B():
    # 1x1, a != 0: Bd = (e^{a dt} - 1)/a * b; a = 0: Ad = 1 and Bd = dt*b exactly.
    # Stiff and growing cases included: e^{-700} is normal, e^{-1000} underflows to 0.
    for a, b, dt in ((-0.7, 1.5, 0.1), (-700.0, 1.5, 1.0), (-1000.0, -0.5, 1.0), (3.0, 1.0, 10.0)):
        Ad, Bd = zoh([[a]], [b], dt)
        assert Bd.value.shape == (1,) and np.isscalar(Bd.magnitudes["frechet"])
        assert Bd.magnitudes["abs_phi_B"].shape == (1,)
        with mpmath.workdps(50):
            A_, B_, t_ = mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(dt)
            assert_matches_exact(Ad.value, Ad.error, [mpmath.exp(A_ * t_)])
            assert_matches_exact(Bd.value, Bd.error, [mpmath.expm1(A_ * t_) / A_ * B_])
    Ad0, Bd0 = zoh([[0.0]], [3.0], 0.75)
    assert Ad0.value[0, 0] == 1.0 and Bd0.value[0] == 2.25


def test_zoh_error_is_tiny_relative_to_block_scale():
    # verified() accepts when the oracle error is < 2^-64 of the block's scale (max |Ad| for Ad,
    # max |Bd[:, j]| for column j of Bd).
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((5, 5)), rng.standard_normal((5, 3)) * [1.0, 1e-8, 1e8]
    Ad, Bd = zoh(A, B, 0.7)
    assert np.all(Ad.error <= ACCEPT * np.abs(Ad.value).max())
    assert np.all(Bd.error <= ACCEPT * np.abs(Bd.value).max(axis=0))
    # and the value agrees with scipy's expm to within its own forward error bound, c u S (c=16)
    u = 2.0**-53
    assert np.abs(Ad.value - scipy.linalg.expm(0.7 * A)).max() <= 16 * u * Ad.magnitudes["frechet"]


def test_bilinear_error_is_tiny_relative_to_block_scale():
    rng = np.random.default_rng(10)
    A, B = rng.standard_normal((5, 5)), rng.standard_normal((5, 3)) * [1.0, 1e-8, 1e8]
    Ad, Bd = bilinear(A, B, 0.7)
    assert np.all(Ad.error <= ACCEPT * np.abs(Ad.value).max())
    assert np.all(Bd.error <= ACCEPT * np.abs(Bd.value).max(axis=0))


def test_verified_raises_when_doubling_does_not_converge():
    # A "computation" whose result depends on the working precision never certifies.
    with pytest.raises(OracleError):
        verified(lambda: np.array([1 / mpmath.mpf(mpmath.mp.dps)]), max_dps=240)


# ----------------------------------------------------------------------------------------------
# bilinear family against exact rational solves


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 0.3])
def test_generalized_bilinear_matches_exact_rationals(alpha):
    rng = np.random.default_rng(2)
    A, B, dt = rng.standard_normal((3, 3)), rng.standard_normal((3, 2)), 0.2
    As, Bs, t, al = sym_matrix(A), sym_matrix(B), rat(dt), rat(alpha)
    I = sp.eye(3)
    M = I - al * t * As
    Ad_exact = M.LUsolve(I + (1 - al) * t * As)
    Bd_exact = M.LUsolve(t * Bs)
    Ad, Bd = generalized_bilinear(A, B, dt, alpha)
    assert_exact_rational(Ad.value, Ad.error, list(Ad_exact))
    assert_exact_rational(Bd.value, Bd.error, list(Bd_exact))


def test_named_transforms_are_the_right_alphas():
    rng = np.random.default_rng(3)
    A, B, dt = rng.standard_normal((3, 3)), rng.standard_normal(3), 0.4
    As, Bs, t = sym_matrix(A), sym_matrix(B[:, None]), rat(dt)
    I = sp.eye(3)
    # forward Euler: I + dt A, dt B
    Ad, Bd = euler(A, B, dt)
    assert_exact_rational(Ad.value, Ad.error, list(I + t * As))
    assert_exact_rational(Bd.value, Bd.error, list(t * Bs))
    # backward Euler: (I - dt A)^{-1}, (I - dt A)^{-1} dt B
    Ad, Bd = backward_euler(A, B, dt)
    Minv = (I - t * As).inv()
    assert_exact_rational(Ad.value, Ad.error, list(Minv))
    assert_exact_rational(Bd.value, Bd.error, list(Minv * t * Bs))
    # bilinear: (I - dt/2 A)^{-1}(I + dt/2 A), (I - dt/2 A)^{-1} dt B
    Ad, Bd = bilinear(A, B, dt)
    Minv = (I - t / 2 * As).inv()
    assert_exact_rational(Ad.value, Ad.error, list(Minv * (I + t / 2 * As)))
    assert_exact_rational(Bd.value, Bd.error, list(Minv * t * Bs))


def test_bilinear_complex_matches_exact():
    A = np.array([[-0.5 + 2.0j, 0.25], [1.0j, -1.0 - 0.5j]])
    B = np.array([1.0 - 1.0j, 0.5])
    Ad, Bd = bilinear(A, B, 0.25)
    As = sp.Matrix(2, 2, [rat(z.real) + sp.I * rat(z.imag) for z in A.ravel()])
    Bs = sp.Matrix(2, 1, [rat(z.real) + sp.I * rat(z.imag) for z in B])
    M = sp.eye(2) - sp.Rational(1, 8) * As
    for ref, exact in ((Ad, M.LUsolve(sp.eye(2) + sp.Rational(1, 8) * As)), (Bd, M.LUsolve(Bs / 4))):
        ex = [sp.nsimplify(sp.expand(x)) for x in exact]
        v = ref.value.ravel()
        assert_exact_rational(v.real, ref.error.ravel(), [sp.re(x) for x in ex])
        assert_exact_rational(v.imag, ref.error.ravel(), [sp.im(x) for x in ex])


def test_singular_M_raises():
    with pytest.raises(ValueError, match="singular"):
        bilinear(np.eye(2), np.ones(2), 2.0)  # M = I - (2/2) I = 0


# ----------------------------------------------------------------------------------------------
# magnitudes against brute force


def test_frechet_is_exact_for_scalars_and_normal_matrices():
    # scalar x: L(x, e) = e^x e, so S = |x| e^x exactly.
    for x in (-3.0, 0.5, -40.0):
        assert frechet_magnitude(np.array([[x]])) == pytest.approx(abs(x) * np.exp(x), rel=1e-12)
    # symmetric X: ||e^{Xs}|| = e^{lam_max s}; E = eps ||X|| q q^T (q the top eigenvector) attains
    # ||expm(X+E) - expm(X)|| = eps ||X|| e^{lam_max} (1 + O(eps)) = eps * S.
    rng = np.random.default_rng(4)
    G = rng.standard_normal((4, 4))
    X = (G + G.T) / 2
    lam, Q = np.linalg.eigh(X)
    S = frechet_magnitude(X)
    assert S == pytest.approx(np.linalg.norm(X, 2) * np.exp(lam[-1]), rel=1e-12)
    eps = 1e-7
    q = Q[:, -1:]
    diff = np.linalg.norm(scipy.linalg.expm(X + eps * np.linalg.norm(X, 2) * q @ q.T) - scipy.linalg.expm(X), 2)
    assert diff / (eps * S) == pytest.approx(1.0, rel=1e-5)  # O(eps) second-order + u/eps rounding


@pytest.mark.parametrize(
    "X",
    [
        np.random.default_rng(5).standard_normal((5, 5)) * 2,
        np.array([[-200.0, 300.0, 0.0], [0.0, -1.0, 50.0], [0.0, 0.0, -30.0]]),  # stiff, non-normal
        # transient hump of ||e^{Xs}|| (~ b s e^{-as}) at s ~ 1/a: the sup sits in a boundary layer
        np.array([[-1000.0, 1e5, 0.0], [0.0, -1000.0, 0.0], [0.0, 0.0, 0.0]]),
    ],
)
def test_frechet_bounds_random_perturbations(X):
    # ||expm(X+dX) - expm(X)|| <= ||dX|| max_s ||e^{X(1-s)}|| ||e^{Xs}|| + O(||dX||^2)
    #                          = (||dX||/||X||) * S ; allow 2x for the grid maximum (vs. the sup).
    S = frechet_magnitude(X)
    E0 = scipy.linalg.expm(X)
    eps, nX = 1e-7, np.linalg.norm(X, 2)
    rng = np.random.default_rng(6)
    worst = 0.0
    for _ in range(10):
        dX = rng.standard_normal(X.shape)
        dX *= eps * nX / np.linalg.norm(dX, 2)
        worst = max(worst, np.linalg.norm(scipy.linalg.expm(X + dX) - E0, 2) / (eps * S))
    assert worst <= 2.0
    # the grid (with its boundary layers) catches the sup of the integrand: compare with a fine grid
    # (the fine grid contains frechet_magnitude's own points, so S <= fine exactly)
    half = np.concatenate([np.linspace(0, 0.5, 201), np.geomspace(1e-6, 0.5, 150), 2.0 ** -np.arange(1, 20)])
    fine = nX * max(
        np.linalg.norm(scipy.linalg.expm(X * v), 2) * np.linalg.norm(scipy.linalg.expm(X * (1 - v)), 2)
        for v in half
    )
    assert fine / 2 <= S <= fine * (1 + 1e-12)


def test_squarings_count():
    # smallest s >= 0 with ||X||_1 / 2^s <= theta_13 ~ 5.4
    for norm1, expect in ((0.0, 0), (5.0, 0), (5.5, 1), (10.8, 1), (11.0, 2), (100.0, 5)):
        assert squarings(np.array([[norm1]])) == expect
    A = np.array([[-60.0, 1.0], [0.0, -1.0]])
    Ad, Bd = zoh(A, np.ones((2, 1)), 1.0)
    assert Ad.magnitudes["squarings"] == 4  # ||X||_1 = 61 -> 61/16 <= 5.4 < 61/8
    assert Bd.magnitudes["squarings"] == squarings(np.block([[A, np.eye(2)], [np.zeros((2, 4))]]))


def test_zoh_Bd_magnitudes_brute_force():
    rng = np.random.default_rng(7)
    n, m, dt = 4, 3, 0.6
    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, m))
    Ad, Bd = zoh(A, B, dt)
    assert Bd.magnitudes["frechet"].shape == (1, m)
    # Phi = int_0^dt e^{As} ds, certified in mpmath: the Bd of zoh with B = I.
    Phi = zoh(A, np.eye(n), dt)[1].value
    np.testing.assert_allclose(Bd.magnitudes["abs_phi_B"], np.abs(Phi) @ np.abs(B), rtol=1e-13)
    np.testing.assert_allclose(Bd.magnitudes["abs_value"], np.abs(Bd.value), rtol=0)
    np.testing.assert_allclose(Ad.magnitudes["abs_value"], np.abs(Ad.value), rtol=0)
    # frechet_j: perturb Xt = dt[[A, I],[0, 0]] by ||dXt|| = eps||Xt||; then
    # ||dPhi B_j|| <= ||dPhi|| ||B_j|| <= eps * S_phi * ||B_j|| (first order; 2x for the grid max)
    Xt = np.block([[dt * A, dt * np.eye(n)], [np.zeros((n, 2 * n))]])
    Phi0 = scipy.linalg.expm(Xt)[:n, n:]
    eps = 1e-7
    for _ in range(10):
        dX = rng.standard_normal(Xt.shape)
        dX *= eps * np.linalg.norm(Xt, 2) / np.linalg.norm(dX, 2)
        dPhi = scipy.linalg.expm(Xt + dX)[:n, n:] - Phi0
        ratio = np.linalg.norm(dPhi @ B, 2, axis=0) / (eps * Bd.magnitudes["frechet"][0])
        assert np.all(ratio <= 2.0)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 0.3])
def test_bilinear_elementwise_bound_is_attained(alpha):
    # M X = R with |dM| <= eps|M|, |dR| <= eps|R|: M dX = dR - dM X', so
    # |dX| <= eps |M^{-1}| (|M||X'| + |R|); signs aligned with M^{-1}[i, :] and X attain it for
    # element (i, j) up to O(eps).
    rng = np.random.default_rng(8)
    n, dt, eps = 4, 0.5, 1e-8
    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, 2))
    Ad, Bd = generalized_bilinear(A, B, dt, alpha)
    M = np.eye(n) - alpha * dt * A
    Minv = np.linalg.inv(M)
    for ref, R in ((Ad, np.eye(n) + (1 - alpha) * dt * A), (Bd, dt * B)):
        X = ref.value
        elem = ref.magnitudes["elementwise"]
        for i, j in ((0, 0), (n - 1, X.shape[1] - 1)):
            sg = np.sign(Minv[i, :])[:, None]
            dR = eps * np.abs(R) * sg
            dM = -eps * np.abs(M) * sg * np.sign(X[:, j])[None, :]
            Xp = np.linalg.solve(M + dM, R + dR)
            # float64 solve rounding: ~u*cond(M)*|X| << eps*elem; 1e-4 relative slack covers both
            assert abs(Xp[i, j] - X[i, j]) / (eps * elem[i, j]) == pytest.approx(1.0, rel=1e-4)
        # normwise ("solve"): random ||dM|| = eps||M||, ||dR_j|| = eps||R_j|| stay below the bound
        for _ in range(5):
            dM = rng.standard_normal((n, n))
            dM *= eps * np.linalg.norm(M, 2) / np.linalg.norm(dM, 2)
            dR = rng.standard_normal(R.shape)
            dR *= eps * np.linalg.norm(R, 2, axis=0) / np.linalg.norm(dR, 2, axis=0)
            dX = np.linalg.solve(M + dM, R + dR) - X
            if ref is Ad:
                assert np.linalg.norm(dX, 2) <= eps * ref.magnitudes["solve"] * (1 + 1e-4)
            else:
                cols = np.linalg.norm(dX, 2, axis=0)
                assert np.all(cols <= eps * ref.magnitudes["solve"][0] * (1 + 1e-4))


def test_bilinear_magnitudes_alpha0_and_shapes():
    rng = np.random.default_rng(9)
    A, B, dt = rng.standard_normal((3, 3)), rng.standard_normal(3), 0.25
    Ad, Bd = euler(A, B, dt)
    # M = I: the elementwise bound is |X| + |R|, the magnitude of rounding I + dt A and dt B
    R = np.eye(3) + dt * A
    np.testing.assert_allclose(Ad.magnitudes["elementwise"], np.abs(Ad.value) + np.abs(R), rtol=1e-15)
    np.testing.assert_allclose(Bd.magnitudes["elementwise"], np.abs(Bd.value) + np.abs(dt * B), rtol=1e-15)
    assert np.isscalar(Bd.magnitudes["solve"]) and Bd.magnitudes["elementwise"].shape == (3,)
    # solve, whole matrices with M = I: ||X|| + ||R||
    assert Ad.magnitudes["solve"] == pytest.approx(np.linalg.norm(Ad.value, 2) + np.linalg.norm(R, 2), rel=1e-14)


# ----------------------------------------------------------------------------------------------
# input validation


@pytest.mark.parametrize("fn", [zoh, bilinear, euler, backward_euler])
def test_validation_names_the_argument(fn):
    good_A, good_B = np.eye(2), np.ones((2, 1))
    with pytest.raises(ValueError, match=r"^A .*\(n, n\)"):
        fn(np.ones((2, 3)), good_B, 0.1)
    with pytest.raises(ValueError, match=r"^B .*\(2,\)"):
        fn(good_A, np.ones((3, 1)), 0.1)
    with pytest.raises(ValueError, match=r"^A .*non-finite"):
        fn(np.array([[np.nan, 0.0], [0.0, 1.0]]), good_B, 0.1)
    with pytest.raises(ValueError, match=r"^B .*non-finite"):
        fn(good_A, np.array([[np.inf], [0.0]]), 0.1)
    for bad_dt in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match=r"^dt "):
            fn(good_A, good_B, bad_dt)
    with pytest.raises(TypeError, match=r"^dt "):
        fn(good_A, good_B, "0.1")
    with pytest.raises(TypeError, match=r"^A "):
        fn(np.array([["a", "b"], ["c", "d"]]), good_B, 0.1)


def test_alpha_validation():
    for bad in (-0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match=r"^alpha "):
            generalized_bilinear(np.eye(2), np.ones(2), 0.1, bad)
