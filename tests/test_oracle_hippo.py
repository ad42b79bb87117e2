"""Tests of oracle/hippo.py and the HiPPO part of oracle/dplr.py.

Independent routes: the HiPPO derivation from measure and basis (oracle.hippo.derive_*), the
closed forms in s4's conventions (oracle.hippo.transition), small literal matrices worked out by
hand from state-spaces/s4 src/models/hippo/hippo.py (commit e757cef5), the Legendre basis behind
LegS evaluated by mpmath, and exact (SymPy) arithmetic for the NPLR identities.
"""
import mpmath
import numpy as np
import pytest
import sympy as sp

from ssm_conformance.oracle import dplr as odplr
from ssm_conformance.oracle import hippo

r2, r3, r5, r15 = sp.sqrt(2), sp.sqrt(3), sp.sqrt(5), sp.sqrt(15)
h = sp.Rational(1, 2)

# Worked out by hand from s4's transition() (default measure_args), see the module docstring.
S4_LITERALS = {
    ("legs", 3): (sp.Matrix([[-1, 0, 0], [-r3, -2, 0], [-r5, -r15, -3]]), sp.Matrix([1, r3, r5])),
    ("legt", 3): (sp.Matrix([[-h, r3 / 2, -r5 / 2], [-r3 / 2, -3 * h, r15 / 2],
                             [-r5 / 2, -r15 / 2, -5 * h]]), sp.Matrix([h, r3 / 2, r5 / 2])),
    ("lagt", 3): (sp.Matrix([[-h, 0, 0], [-1, -h, 0], [-1, -1, -h]]), sp.Matrix([1, 1, 1])),
    ("fout", 4): (sp.Matrix([[-1, 0, -r2, 0], [0, 0, 0, 0], [-r2, 0, -2, -sp.pi], [0, 0, sp.pi, 0]]),
                  sp.Matrix([1, 0, r2, 0])),
    ("fout", 6): (sp.Matrix([[-1, 0, -r2, 0, -r2, 0], [0, 0, 0, 0, 0, 0],
                             [-r2, 0, -2, -sp.pi, -2, 0], [0, 0, sp.pi, 0, 0, 0],
                             [-r2, 0, -2, 0, -2, -2 * sp.pi], [0, 0, 0, 0, 2 * sp.pi, 0]]),
                  sp.Matrix([1, 0, r2, 0, r2, 0])),
}


def is_zero(M):
    return M.applyfunc(lambda e: sp.simplify(sp.expand(e))) == sp.zeros(*M.shape)


@pytest.mark.parametrize("key", sorted(S4_LITERALS))
def test_transition_matches_s4_literals(key):
    A, B = hippo.transition(*key)
    A0, B0 = S4_LITERALS[key]
    assert is_zero(A - A0) and is_zero(B - B0)


@pytest.mark.parametrize("N", [1, 2, 3, 5, 8])
def test_derived_legs_equals_closed_form(N):
    A, B = hippo.derive_legs(N)
    A0, B0 = hippo.transition("legs", N)
    assert is_zero(A - A0) and is_zero(B - B0)


@pytest.mark.parametrize("N", [1, 2, 3, 5, 8])
def test_derived_legt_equals_s4_with_window_2(N):
    A0, B0 = hippo.transition("legt", N)
    A2, B2 = hippo.derive_legt(N, theta=2)
    assert is_zero(A2 - A0) and is_zero(B2 - B0)
    A1, B1 = hippo.derive_legt(N, theta=1)  # the unit window is twice s4's matrices
    assert is_zero(A1 - 2 * A0) and is_zero(B1 - 2 * B0)


@pytest.mark.parametrize("N", [1, 2, 4, 7])
def test_derived_lagt_equals_closed_form(N):
    A, B = hippo.derive_lagt(N)
    A0, B0 = hippo.transition("lagt", N)
    assert is_zero(A - A0) and is_zero(B - B0)


@pytest.mark.parametrize("N", [2, 4, 6])
def test_fout_is_window2_frequencies_with_unit_boundary_weight(N):
    # derive_fout(N, theta) = (J - b b^T/theta, b/theta): recover J and b from the derivation
    A2, B2 = hippo.derive_fout(N, theta=2)
    J, b = A2 + 2 * B2 * B2.T, 2 * B2
    A0, B0 = hippo.transition("fout", N)
    assert is_zero(A0 - (J - b * b.T)) and is_zero(B0 - b)
    # and theta = 2 as derived is s4's 'fourier_decay' (A = pi J - B B^T/2, B/2), not 'fout'
    assert not is_zero(A2 - A0)


def test_fout_rejects_odd_N():
    with pytest.raises(ValueError, match="even"):
        hippo.transition("fout", 5)


def test_legs_eigenvalues_are_exactly_minus_1_to_minus_N():
    N = 7
    A, _ = hippo.transition("legs", N)
    assert A.eigenvals() == {-k: 1 for k in range(1, N + 1)}


@pytest.mark.parametrize("measure", hippo.MEASURES)
def test_nplr_entry_proof_for_all_N(measure):
    assert all(res == 0 for res in hippo.nplr_entry_proof(measure))


@pytest.mark.parametrize("measure", hippo.MEASURES)
@pytest.mark.parametrize("N", [2, 4, 6, 32])
def test_nplr_identity_exact(measure, N):
    facts = hippo.nplr(measure, N)  # asserts S + S^T == 0 exactly
    assert facts.P.rows == (2 if measure == "legt" else 1)
    # and S really is A + P^T P - shift I
    assert is_zero(facts.A + facts.P.T * facts.P - facts.shift * sp.eye(N) - facts.S)


def test_nplr_catches_wrong_legs_sign():
    # the popular mistake: +(n+1) on the diagonal -> no skew part with shift -1/2
    N = 4
    A, _ = hippo.transition("legs", N)
    for n in range(N):
        A[n, n] = n + 1
    P, shift = hippo.rank_correction("legs", N)
    S = A + P.T * P - shift * sp.eye(N)
    assert not is_zero(S + S.T)


def test_legs_basis_matches_scaled_legendre():
    # (e^{tA} B)_n = sqrt(2n+1) P_n(2e^{-t} - 1) e^{-t}; mpmath at 40 digits, tolerance 1e-30
    # covers mpmath.expm's truncation and rounding at that precision (~1e-38 |entries|).
    N = 6
    A, B = hippo.transition("legs", N)
    with mpmath.workdps(40):
        Am = mpmath.matrix([[mpmath.mpf(sp.N(A[i, j], 50)) for j in range(N)] for i in range(N)])
        Bm = mpmath.matrix([mpmath.mpf(sp.N(B[i], 50)) for i in range(N)])
        for t in ("0.25", "1", "3"):
            t = mpmath.mpf(t)
            x = mpmath.expm(t * Am) * Bm
            for n in range(N):
                y = mpmath.sqrt(2 * n + 1) * mpmath.legendre(n, 2 * mpmath.exp(-t) - 1) * mpmath.exp(-t)
                assert abs(x[n] - y) < mpmath.mpf("1e-30")
        # negative control: the +(n+1) diagonal does not have this basis
        Aw = Am.copy()
        for n in range(N):
            Aw[n, n] = n + 1
        x = mpmath.expm(Aw) * Bm
        y = [mpmath.sqrt(2 * n + 1) * mpmath.legendre(n, 2 * mpmath.exp(-1) - 1) * mpmath.exp(-1)
             for n in range(N)]
        assert max(abs(x[n] - y[n]) for n in range(N)) > 1


# ----------------------------------------------------------------------------------------------
# DPLR decomposition (oracle/dplr.py)


@pytest.mark.parametrize("measure", hippo.MEASURES)
def test_dplr_hippo_rebuilds_A(measure):
    d = odplr.dplr_hippo(measure, 8)
    # the decomposition is certified at 60 digits; rounding each factor to float64 leaves
    # |V (Lambda - Pt^T conj Pt) V^* - A| <= ~N^2 u max(|Lambda|, |Pt|^2) (three products of N terms)
    scale = max(np.abs(d.Lambda).max(), (np.abs(d.Pt) ** 2).sum(axis=0).max())
    out = odplr.compare_dplr(d, d.Lambda, d.Pt, d.Bt, d.V)
    assert out["Lambda"] == 0 and out["gram"] == 0
    assert out["rebuild"] <= 3 * 8 * 8 * 2.0**-53 * scale
    shift = float(hippo.rank_correction(measure, 8)[1])
    assert np.all(d.Lambda.real == shift)  # Lambda = shift + i mu exactly


def test_dplr_legs_eigenvalues_against_sympy():
    # -iS of LegS N=4: eigenvalues from SymPy's exact characteristic polynomial, to 30 digits
    N = 4
    S = hippo.nplr("legs", N).S
    x = sp.Symbol("x")
    mus = sorted(sp.Poly((-sp.I * S).charpoly(x).as_expr(), x).nroots(n=30), key=lambda v: float(v))
    d = odplr.dplr_hippo("legs", N)
    got = sorted(d.Lambda.imag)
    for a, b in zip(got, mus):
        assert abs(a - float(b)) <= 2.0**-52 * abs(float(b))  # rounding to float64 only


def test_compare_dplr_is_phase_and_order_invariant_and_catches_swaps():
    d = odplr.dplr_hippo("legs", 6)
    rng = np.random.default_rng(0)
    perm = rng.permutation(6)
    ph = np.exp(1j * rng.uniform(0, 2 * np.pi, 6))
    # V -> V diag(ph): Pt -> conj(ph) Pt, Bt -> conj(ph) Bt, keeps A and B
    V2, Pt2, Bt2 = (d.V * ph)[:, perm], (d.Pt * ph.conj())[:, perm], (d.Bt * ph.conj())[perm]
    out = odplr.compare_dplr(d, d.Lambda[perm], Pt2, Bt2, V2)
    # products of two rounded numbers and sums of N of them: a few ulps of the scale
    assert out["Lambda"] == 0
    assert out["gram"] <= 8 * 2.0**-53 * (np.abs(d.Bt) ** 2 + np.abs(d.Pt[0]) ** 2).max()
    assert out["rebuild"] <= 3 * 36 * 2.0**-53 * 40
    # a wrong decomposition (two Bt entries swapped) is caught
    Bt3 = d.Bt.copy()
    Bt3[[0, 1]] = Bt3[[1, 0]]
    assert odplr.compare_dplr(d, d.Lambda, d.Pt, Bt3)["gram"] > 1e-3


def test_compare_dplr_handles_fout_double_zero():
    d = odplr.dplr_hippo("fout", 6)
    zero = np.flatnonzero(np.abs(d.Lambda) < 1e-12)
    assert len(zero) == 2
    # any unitary mixing inside the zero eigenspace is an equally valid decomposition
    c, s = np.cos(0.7), np.sin(0.7) * np.exp(0.3j)
    U = np.array([[c, -s.conjugate()], [s, c]])
    V2, Pt2, Bt2 = d.V.copy(), d.Pt.copy(), d.Bt.copy()
    V2[:, zero] = d.V[:, zero] @ U
    Pt2[:, zero] = d.Pt[:, zero] @ U.conj()
    Bt2[zero] = U.conj().T @ d.Bt[zero]
    out = odplr.compare_dplr(d, d.Lambda, Pt2, Bt2, V2)
    assert out["gram"] <= 1e-14 and out["rebuild"] <= 1e-13


def test_shifted_hermitian_pitfall_is_detected():
    # MATH.md: a Hermitian solver on a matrix whose diagonal carries the real shift drops it.
    from ssm_conformance.implementations.numpy.hippo import hippo_legs, rank_correction
    A, B = hippo_legs(6)
    P, _ = rank_correction("legs", 6)
    AP = A + P.T @ P  # = -1/2 I + S
    mu, V = np.linalg.eigh(AP * -1j)  # LAPACK reads the diagonal as real: -1/2 is lost
    Lam = 1j * mu
    d = odplr.dplr_hippo("legs", 6)
    assert odplr.compare_dplr(d, Lam, (V.conj().T @ P.T).T, V.conj().T @ B)["Lambda"] >= 0.5 - 1e-12
