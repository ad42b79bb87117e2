"""Tests of oracle/s4_kernels.py and the generating-function part of oracle/dplr.py.

The oracles are compared with independent routes: exact rational powering (Fractions), the S4D
closed form with exp(k x) in mpmath, dense powering vs the generating function at the roots of
unity (Cauchy sums + Woodbury + exact inverse DFT), the dense LU solve vs Woodbury, and the limit
at z = -1 approached along the unit circle.  Two oracles agree to their certified errors plus the
final rounding of each (half an ulp): |a - b| <= ulp(max(|a|,|b|)) + err_a + err_b.
"""
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from ssm_conformance.oracle import dplr as odplr
from ssm_conformance.oracle import s4_kernels as sk
from ssm_conformance.oracle.precision import to_mp
from ssm_conformance.oracle.reference import Reference

U = 2.0**-53


def close(a: Reference, b: Reference, extra=0.0):
    """|a - b| <= one ulp (each was rounded once from a certified value) + both errors."""
    bound = 2 * U * np.maximum(np.abs(a.value), np.abs(b.value)) + a.error + b.error + extra
    return np.all(np.abs(a.value - b.value) <= bound), np.max(np.abs(a.value - b.value) - bound)


def random_dplr(rng, n, r, scale=0.3):
    Lam = -rng.uniform(0.05, 1.0, n) + 1j * rng.normal(size=n) * 3
    P = scale * (rng.normal(size=(r, n)) + 1j * rng.normal(size=(r, n)))
    Q = scale * (rng.normal(size=(r, n)) + 1j * rng.normal(size=(r, n)))
    B = rng.normal(size=n) + 1j * rng.normal(size=n)
    C = rng.normal(size=n) + 1j * rng.normal(size=n)
    return Lam, P, Q, B, C


# ----------------------------------------------------------------------------------------------
# ssm_kernel


def test_ssm_kernel_matches_exact_rational_powering():
    rng = np.random.default_rng(1)
    n, L = 3, 12
    Ad = rng.normal(size=(n, n)) * 0.4
    Bd, C = rng.normal(size=n), rng.normal(size=n)
    ref = sk.ssm_kernel(Ad, Bd, C, L)
    A = [[Fraction(float(x)) for x in row] for row in Ad]
    h = [Fraction(float(x)) for x in Bd]
    c = [Fraction(float(x)) for x in C]
    for k in range(L):
        exact = sum(ci * hi for ci, hi in zip(c, h))
        # the value is the certified result rounded once: <= half an ulp + the oracle's error
        assert abs(Fraction(float(ref.value[k])) - exact) <= Fraction(
            0.5 * np.spacing(abs(float(exact)))) + Fraction(float(ref.error[k]))
        h = [sum(A[i][j] * h[j] for j in range(n)) for i in range(n)]


def test_ssm_kernel_magnitudes_bound_the_value():
    rng = np.random.default_rng(2)
    n, L = 4, 20
    Ad = rng.normal(size=(n, n)) * 0.3 + 1j * rng.normal(size=(n, n)) * 0.1
    Bd, C = rng.normal(size=n), rng.normal(size=n) + 0.5j
    ref = sk.ssm_kernel(Ad, Bd, C, L)
    k1 = np.arange(L) + 1
    # |C Ad^k Bd| <= |C||Ad|^k|Bd| = abs_power/(k+1), and <= ||C|| ||h_k|| <= norm_bound
    assert np.all(np.abs(ref.value) <= ref.magnitudes["abs_power"] / k1 * (1 + 1e-12))
    assert np.all(np.abs(ref.value) <= ref.magnitudes["norm_bound"] * (1 + 1e-12))
    assert np.iscomplexobj(ref.value) and ref.value.shape == (L,)


# ----------------------------------------------------------------------------------------------
# s4d_kernel


def _s4d_closed_form(Lam, B, C, dt, L, disc):
    """2 Re sum C_i Bbar_i exp(k log Abar_i) at 50 digits: exp(k x) instead of repeated products."""
    with mpmath.workdps(50):
        out = []
        terms = []
        for lam, b, c in zip(to_mp(Lam), to_mp(B), to_mp(C)):
            x = lam * mpmath.mpf(dt)
            if disc == "zoh":
                terms.append((x, c * (mpmath.exp(x) - 1) / lam * b))
            else:
                terms.append((mpmath.log((1 + x / 2) / (1 - x / 2)), c * mpmath.mpf(dt) * b / (1 - x / 2)))
        for k in range(L):
            out.append(2 * mpmath.re(mpmath.fsum(w * mpmath.exp(k * lg) for lg, w in terms)))
        return out


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_s4d_kernel_matches_closed_form(disc):
    rng = np.random.default_rng(3)
    n, L, dt = 5, 24, 0.07
    Lam = -rng.uniform(0.1, 2, n) + 1j * rng.normal(size=n) * 10
    B, C = rng.normal(size=n) + 1j * rng.normal(size=n), rng.normal(size=n) + 1j * rng.normal(size=n)
    ref = sk.s4d_kernel(Lam, B, C, dt, L, disc)
    exact = _s4d_closed_form(Lam, B, C, dt, L, disc)
    for k in range(L):
        # rounding once + certified error + 1e-40 of the sum's scale (50-digit closed form)
        bound = 0.5 * np.spacing(abs(ref.value[k])) + ref.error[k] + 1e-40 * ref.magnitudes["abs_sum"][k]
        assert abs(mpmath.mpf(float(ref.value[k])) - exact[k]) <= bound


def test_s4d_kernel_equals_ssm_kernel_of_the_conjugate_closed_system():
    # S4D keeps one of each conjugate pair: K = ssm_kernel of diag(Abar, conj Abar) with
    # Bd = (Bbar, conj Bbar), C = (C, conj C).  Abar, Bbar are rounded to complex128 to be fed to
    # ssm_kernel: |dK_k| <= 2 sum |C_i||Bbar_i||Abar_i|^k (u (k+1) + u) (relative rounding of Abar
    # raised to the k-th power, and of Bbar), plus one ulp and both oracles' errors.
    rng = np.random.default_rng(4)
    n, L, dt = 4, 16, 0.1
    Lam = -rng.uniform(0.1, 1, n) + 1j * rng.normal(size=n) * 4
    B, C = rng.normal(size=n) + 1j * rng.normal(size=n), rng.normal(size=n) + 1j * rng.normal(size=n)
    ref = sk.s4d_kernel(Lam, B, C, dt, L)
    Abar, Bbar = np.exp(Lam * dt), np.expm1(Lam * dt) / Lam * B
    big = sk.ssm_kernel(np.diag(np.concatenate([Abar, Abar.conj()])),
                        np.concatenate([Bbar, Bbar.conj()]), np.concatenate([C, C.conj()]), L)
    k = np.arange(L)
    input_rounding = 4 * U * (k + 2) * ref.magnitudes["abs_sum"]  # 2u per rounded complex number
    assert np.all(np.abs(big.value.imag) <= 2 * U * ref.magnitudes["abs_sum"] + big.error)
    assert close(ref, Reference(big.value.real, big.error), input_rounding)[0]


def test_s4d_without_factor_two_differs():
    # negative control of the comparison above: dropping the 2 of 2 Re is far outside the bound
    rng = np.random.default_rng(4)
    n, L, dt = 4, 8, 0.1
    Lam = -rng.uniform(0.1, 1, n) + 1j * rng.normal(size=n) * 4
    B, C = rng.normal(size=n) + 1j * rng.normal(size=n), rng.normal(size=n) + 1j * rng.normal(size=n)
    ref = sk.s4d_kernel(Lam, B, C, dt, L)
    assert np.max(np.abs(ref.value / 2 - ref.value)) > 1e-3


# ----------------------------------------------------------------------------------------------
# dplr_kernel: dense powering vs the generating function


@pytest.mark.parametrize("n,r,L", [(3, 1, 1), (3, 1, 2), (4, 1, 8), (4, 2, 9), (5, 2, 16), (6, 1, 15)])
def test_dplr_dense_powering_equals_generating_function(n, r, L):
    rng = np.random.default_rng(10 * n + r + L)
    args = random_dplr(rng, n, r)
    dense = sk.dplr_kernel(*args, 0.2, L)
    gf = odplr.resolvent_kernel(*args, 0.2, L)
    ok, excess = close(dense, gf)
    assert ok, excess


def test_dplr_gf_values_are_the_dft_of_the_dense_kernel():
    # Khat_j = sum_k K_k z_j^k with z_j = exp(-2 pi i j/L): an exact forward DFT of the dense
    # kernel, in mpmath, checked at every j including z = -1 (j = L/2).
    rng = np.random.default_rng(5)
    n, r, L, dt = 4, 2, 10, 0.3
    args = random_dplr(rng, n, r)
    Lm, Pm, Qm, Bm, Cm = (to_mp(a) for a in args)
    with mpmath.workdps(40):
        K = sk._dplr_dense_mp(Lm, Pm, Qm, Bm, Cm, dt, L)
        gf = odplr._gf_values(Lm, Pm, Qm, Bm, Cm, dt, L)
        for j in range(L):
            dft = mpmath.fsum(K[k] * mpmath.expjpi(mpmath.mpf(-2 * j * k) / L) for k in range(L))
            assert abs(dft - gf[j]) < mpmath.mpf("1e-35") * (1 + abs(dft))


def test_z_minus_one_limit():
    # Approach z = -1 along the unit circle with the Woodbury formula (no special case): the
    # values converge to (dt/2) C~ B, the exact limit the oracle uses.  At 60 digits and
    # z = -exp(i delta), the distance to the limit is O(delta) (analytic in z).
    rng = np.random.default_rng(6)
    n, r, L, dt = 4, 2, 6, 0.25
    Lm, Pm, Qm, Bm, Cm = (to_mp(a) for a in random_dplr(rng, n, r))
    with mpmath.workdps(60):
        limit = odplr._gf_values(Lm, Pm, Qm, Bm, Cm, dt, L)[L // 2]
        A = odplr.dense_A_mp(Lm, Pm, Qm)
        Abar, Bbar = odplr.bilinear_mp(A, Bm, dt)
        AL = odplr.matrix_power_mp(Abar, L)
        Ct = mpmath.matrix([[Cm[i] - mpmath.fsum(Cm[m] * AL[m, i] for m in range(n)) for i in range(n)]])
        dists = []
        for delta in ("1e-10", "1e-20"):
            z = -mpmath.expj(mpmath.mpf(delta))
            val = (Ct * mpmath.lu_solve(mpmath.eye(n) - z * Abar, Bbar))[0]  # C~ (I - Abar z)^{-1} Bbar
            dists.append(abs(val - limit))
        assert dists[0] < mpmath.mpf("1e-8") and dists[1] < mpmath.mpf("1e-18")
        assert abs(limit - mpmath.mpf(dt) / 2 * mpmath.fsum(Ct[i] * Bm[i] for i in range(n))) == 0


def test_woodbury_identity():
    rng = np.random.default_rng(7)
    n, r = 6, 2
    with mpmath.workdps(50):
        d = [mpmath.mpc(*v) for v in rng.normal(size=(n, 2))]
        U_ = mpmath.matrix([[mpmath.mpc(*rng.normal(size=2)) for _ in range(r)] for _ in range(n)])
        V_ = mpmath.matrix([[mpmath.mpc(*rng.normal(size=2)) for _ in range(r)] for _ in range(n)])
        b = [mpmath.mpc(*v) for v in rng.normal(size=(n, 2))]
        dense = mpmath.diag(d) + U_ * V_.H
        x_direct = mpmath.lu_solve(dense, mpmath.matrix(b))
        x_wood = odplr.woodbury_solve(d, U_, V_, b)
        assert mpmath.norm(x_direct - x_wood) < mpmath.mpf("1e-40") * mpmath.norm(x_direct)
        # a sign slip in the capacitance matrix (I - V* D^-1 U) is not the inverse
        Dinv_U = mpmath.matrix([[U_[i, a] / d[i] for a in range(r)] for i in range(n)])
        Dinv_b = mpmath.matrix([b[i] / d[i] for i in range(n)])
        wrong = Dinv_b - Dinv_U * mpmath.lu_solve(mpmath.eye(r) - V_.H * Dinv_U, V_.H * Dinv_b)
        assert mpmath.norm(x_direct - wrong) > mpmath.mpf("1e-3") * mpmath.norm(x_direct)


def test_dplr_with_zero_low_rank_is_s4d_bilinear():
    # P = Q = 0: K_k = sum_i C_i Bbar_i Abar_i^k, so 2 Re K = s4d_kernel(..., 'bilinear'); both are
    # oracles, so they agree to one ulp of the larger plus their errors (the real part of a
    # complex rounding is within half an ulp of |K|).
    rng = np.random.default_rng(8)
    n, L, dt = 5, 12, 0.15
    Lam, _, _, B, C = random_dplr(rng, n, 1)
    zero = np.zeros((1, n))
    dp = sk.dplr_kernel(Lam, zero, zero, B, C, dt, L)
    s4d = sk.s4d_kernel(Lam, B, C, dt, L, "bilinear")
    diff = np.abs(2 * dp.value.real - s4d.value)
    bound = 2 * U * (2 * np.abs(dp.value) + np.abs(s4d.value)) + 2 * dp.error + s4d.error
    assert np.all(diff <= bound)


def test_dplr_magnitudes_are_consistent():
    rng = np.random.default_rng(9)
    n, r, L, dt = 4, 2, 16, 0.2
    args = random_dplr(rng, n, r)
    ref = sk.dplr_kernel(*args, dt, L)
    m = ref.magnitudes
    k1 = np.arange(L) + 1
    assert np.all(np.abs(ref.value) <= m["abs_power"] / k1 * (1 + 1e-12))
    assert np.all(np.abs(ref.value) <= m["norm_bound"] * (1 + 1e-12))
    # cond_fft = ||Khat||_2 / sqrt(L) = ||K||_2 (Parseval), Khat evaluated in float64
    assert abs(m["cond_fft"] - np.linalg.norm(ref.value)) <= 1e-12 * np.linalg.norm(ref.value)
    # e_j includes |Khat_j| (the final rounding), so the mean bounds mean_j |Khat_j| from above
    assert m["cond_cauchy"] >= np.mean(np.abs(np.fft.fft(ref.value))) * (1 - 1e-12)
    assert all(np.all(np.isfinite(v)) for v in m.values())


def test_oracle_argument_errors():
    with pytest.raises(ValueError, match="P must have shape"):
        sk.dplr_kernel(np.ones(3), np.ones(3), np.ones((1, 3)), np.ones(3), np.ones(3), 0.1, 4)
    with pytest.raises(ValueError, match="C must have shape"):
        sk.s4d_kernel(np.ones(3), np.ones(3), np.ones(2), 0.1, 4)
    with pytest.raises(ValueError, match="L must be"):
        sk.ssm_kernel(np.eye(2), np.ones(2), np.ones(2), 0)
    with pytest.raises(ValueError, match="dt must be"):
        sk.s4d_kernel(np.ones(3), np.ones(3), np.ones(3), -0.1, 4)
