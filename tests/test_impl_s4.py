"""Our S4-family implementations (NumPy and torch) against the oracles, with error-analysis
tolerances built from the oracles' magnitudes (terms documented in oracle/s4_kernels.py and
docs/s4_integration.md):

    tol = 4 u sum_m depth_m magnitude_m + 2 u |K| + oracle error      (u = 2^-53, SAFETY = 4)

For dplr_kernel two algorithm families are admitted: the generating-function route (Cauchy sums,
Woodbury, FFT) and the dense route (discretize, then power); the dense family's componentwise and
normwise bounds are both valid for it, so its tolerance is their minimum; the role's tolerance is
the maximum over the families.
"""
import importlib.util
import math
from pathlib import Path

import mpmath
import numpy as np
import pytest
import torch

from ssm_conformance.implementations.numpy import hippo as nh
from ssm_conformance.implementations.numpy import s4 as ns
from ssm_conformance.implementations.torch import s4 as ts
from ssm_conformance.oracle import dplr as odplr
from ssm_conformance.oracle import hippo as oh
from ssm_conformance.oracle import s4_kernels as sk

U = 2.0**-53
SAFETY = 4.0
IMPLS = {"numpy": ns, "torch": ts}


def _tol(ref, terms):
    forward = sum(depth * np.asarray(ref.magnitudes[name], dtype=float) for name, depth in terms)
    return SAFETY * U * forward + 2 * U * np.abs(ref.value) + ref.error


def ssm_tol(ref, n):
    # any product order: (k+1)-weighted componentwise, depth n; sequential normwise, depth n
    return np.minimum(_tol(ref, [("abs_power", n)]), _tol(ref, [("norm_bound", n)]))


def s4d_tol(ref, n, disc):
    return _tol(ref, [("abs_sum", n + 4), ("abs_power", 6 if disc == "zoh" else 10), ("abs_bbar", 6)])


def dplr_tol(ref, n, r, L):
    cauchy = _tol(ref, [("cond_cauchy", n + r + 6), ("cond_ctilde", 3 * n + 2),
                        ("cond_fft", 8 * math.ceil(math.log2(max(L, 2))) + 2)])
    dense = np.minimum(_tol(ref, [("abs_power", n), ("disc", 3 * n + 2)]),
                       _tol(ref, [("norm_bound", 3 * n + 2)]))
    return np.maximum(cauchy, dense)


def random_dplr(rng, n, r, scale=0.3):
    Lam = -rng.uniform(0.05, 1.0, n) + 1j * rng.normal(size=n) * 3
    P = scale * (rng.normal(size=(r, n)) + 1j * rng.normal(size=(r, n)))
    Q = scale * (rng.normal(size=(r, n)) + 1j * rng.normal(size=(r, n)))
    B = rng.normal(size=n) + 1j * rng.normal(size=n)
    C = rng.normal(size=n) + 1j * rng.normal(size=n)
    return Lam, P, Q, B, C


def load_wrong():
    path = Path(__file__).parent / "subjects" / "s4_wrong.py"
    spec = importlib.util.spec_from_file_location("s4_wrong", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------------------------
# HiPPO


@pytest.mark.parametrize("measure", oh.MEASURES)
@pytest.mark.parametrize("N", [2, 6, 16])
def test_hippo_matches_exact_transition(measure, N):
    A, B = getattr(nh, f"hippo_{measure}")(N)
    A0, B0 = oh.transition(measure, N)
    assert A.shape == (N, N) and B.shape == (N,) and A.dtype == np.float64
    exA = np.array(A0.evalf(30).tolist(), dtype=float)
    exB = np.array(B0.evalf(30).tolist(), dtype=float)[:, 0]
    # entries are one or two correctly rounded operations (sqrt, products, pi*k, sums of two):
    # <= 3 u |entry| (the exact value rounded once adds u)
    assert np.all(np.abs(A - exA) <= 4 * U * np.abs(exA))
    assert np.all(np.abs(B - exB) <= 4 * U * np.abs(exB))


@pytest.mark.parametrize("measure", oh.MEASURES)
def test_nplr_against_oracle_dplr(measure):
    N = 12
    Lam, Pt, Bt, V = nh.nplr(measure, N)
    ref = odplr.dplr_hippo(measure, N)
    out = odplr.compare_dplr(ref, Lam, Pt, Bt, V)
    facts = oh.nplr(measure, N)
    S = np.array(facts.S.evalf(30).tolist(), dtype=float)
    normS = np.linalg.norm(S, 2)
    # Hermitian eigensolver: backward error ||E|| <= c N u ||S|| (c ~ 1, plus the O(u|S|) rounding
    # of S itself) -> eigenvalue error <= that (Weyl).
    assert out["Lambda"] <= SAFETY * N * U * normS
    # Gram invariants: eigenvector perturbation <= ||E|| / gap (Davis-Kahan), times |[Bt; Pt]|^2;
    # clusters are exact, the gap is between distinct eigenvalues.
    lam = np.sort(ref.Lambda.imag)
    gaps = np.diff(lam)
    gap = gaps[gaps > 1e-6].min()
    X2 = np.abs(ref.Bt).max() ** 2 + (np.abs(ref.Pt) ** 2).sum(axis=0).max()
    assert out["gram"] <= SAFETY * N * U * normS / gap * X2
    # rebuilt A from float64 factors: three products of N terms
    assert out["rebuild"] <= SAFETY * 3 * N * U * (normS + X2)


def test_nplr_legs_real_part_is_exactly_minus_half():
    Lam, _, _, _ = nh.nplr("legs", 16)
    assert np.all(Lam.real == -0.5)


# ----------------------------------------------------------------------------------------------
# kernels vs oracles


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n,r,L", [(3, 1, 1), (3, 1, 2), (4, 1, 16), (5, 2, 9), (6, 2, 32), (8, 1, 7)])
def test_dplr_kernel_vs_oracle(impl, n, r, L):
    rng = np.random.default_rng(100 * n + 10 * r + L)
    args = random_dplr(rng, n, r)
    dt = 0.2
    ref = sk.dplr_kernel(*args, dt, L)
    K = IMPLS[impl].dplr_kernel(*args, dt, L)
    assert K.shape == (L,) and np.iscomplexobj(K)
    assert np.all(np.abs(K - ref.value) <= dplr_tol(ref, n, r, L))


@pytest.mark.parametrize("impl", IMPLS)
def test_dplr_kernel_on_hippo_legs_equals_dense_kernel(impl):
    # the S4 setting: A = LegS in its DPLR basis (Q = P), C = C0 V; the Cauchy route and the
    # dense route of the same A are both within their tolerances of the oracle
    N, L, dt = 12, 128, 0.03
    Lam, Pt, Bt, V = nh.nplr("legs", N)
    C = np.random.default_rng(0).normal(size=N) @ V
    ref = sk.dplr_kernel(Lam, Pt, Pt, Bt, C, dt, L)
    tol = dplr_tol(ref, N, 1, L)
    K = IMPLS[impl].dplr_kernel(Lam, Pt, Pt, Bt, C, dt, L)
    Ad, Bd = ns.discretize_dplr(Lam, Pt, Pt, Bt, dt)
    K_dense = IMPLS[impl].ssm_kernel(Ad, Bd, C, L)
    assert np.all(np.abs(K - ref.value) <= tol)
    assert np.all(np.abs(K_dense - ref.value) <= tol)
    assert np.all(np.abs(K - K_dense) <= 2 * tol)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("measure", oh.MEASURES)
def test_dplr_kernel_on_every_hippo_measure(impl, measure):
    # LegT/LagT/FouT have Re Lambda = 0: g(z_j) on the imaginary axis can meet lambda_i (FouT:
    # lambda = 0 at z = 1, where the diagonal resolvent is singular but A's is not); our kernels
    # switch to the geometric sum there, and the tolerance is the same.
    N, L, dt = 8, 20, 0.2
    Lam, Pt, Bt, V = nh.nplr(measure, N)
    C = np.random.default_rng(3).normal(size=N) @ V
    ref = sk.dplr_kernel(Lam, Pt, Pt, Bt, C, dt, L)
    K = IMPLS[impl].dplr_kernel(Lam, Pt, Pt, Bt, C, dt, L)
    assert np.all(np.isfinite(K))
    assert np.all(np.abs(K - ref.value) <= dplr_tol(ref, N, Pt.shape[0], L))
    if measure == "fout":  # the generating-function oracle is undefined there, and says so
        with pytest.raises(ValueError, match="Woodbury form is undefined"):
            odplr.resolvent_kernel_gf(Lam, Pt, Pt, Bt, C, dt, L)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n,L,cplx", [(1, 1, False), (3, 10, False), (4, 33, True), (6, 64, True)])
def test_ssm_kernel_vs_oracle(impl, n, L, cplx):
    rng = np.random.default_rng(7 * n + L)
    Ad = rng.normal(size=(n, n)) / math.sqrt(n) * 0.9
    Bd, C = rng.normal(size=n), rng.normal(size=n)
    if cplx:
        Ad = Ad + 0.2j * rng.normal(size=(n, n)) / math.sqrt(n)
        C = C + 1j * rng.normal(size=n)
    ref = sk.ssm_kernel(Ad, Bd, C, L)
    K = IMPLS[impl].ssm_kernel(Ad, Bd, C, L)
    assert K.shape == (L,) and np.iscomplexobj(K) == cplx
    assert np.all(np.abs(K - ref.value) <= ssm_tol(ref, n))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
@pytest.mark.parametrize("n,L,dt", [(1, 1, 0.1), (4, 20, 0.05), (8, 64, 0.01), (3, 17, 1.5)])
def test_s4d_kernel_vs_oracle(impl, disc, n, L, dt):
    rng = np.random.default_rng(n + L)
    Lam = -rng.uniform(0.01, 2, n) + 1j * np.pi * np.arange(n)  # S4D-Lin-like
    B, C = np.ones(n) + 0j, rng.normal(size=n) + 1j * rng.normal(size=n)
    ref = sk.s4d_kernel(Lam, B, C, dt, L, disc)
    K = IMPLS[impl].s4d_kernel(Lam, B, C, dt, L, disc=disc)
    assert K.shape == (L,) and not np.iscomplexobj(K)
    assert np.all(np.abs(K - ref.value) <= s4d_tol(ref, n, disc))


def test_numpy_equals_torch():
    # both within their tolerance of the oracle implies within twice it of each other
    rng = np.random.default_rng(11)
    n, r, L, dt = 5, 2, 24, 0.1
    args = random_dplr(rng, n, r)
    ref = sk.dplr_kernel(*args, dt, L)
    a, b = ns.dplr_kernel(*args, dt, L), ts.dplr_kernel(*args, dt, L)
    assert np.all(np.abs(a - b) <= 2 * dplr_tol(ref, n, r, L))
    # torch accepts tensors (and computes on their device) and returns NumPy arrays
    tens = [torch.as_tensor(x) for x in args]
    c = ts.dplr_kernel(*tens, torch.tensor(dt, dtype=torch.float64), L)
    assert isinstance(c, np.ndarray) and np.all(np.abs(c - b) <= 2 * dplr_tol(ref, n, r, L))


# ----------------------------------------------------------------------------------------------
# the S4 layer: convolutional mode == recurrent mode == exact map


def _layer_params(rng, H, N, r):
    Lam = -rng.uniform(0.1, 1, (H, N)) + 1j * rng.normal(size=(H, N)) * 2
    P = 0.3 * (rng.normal(size=(H, r, N)) + 1j * rng.normal(size=(H, r, N)))
    Q = 0.3 * (rng.normal(size=(H, r, N)) + 1j * rng.normal(size=(H, r, N)))
    B = rng.normal(size=(H, N)) + 1j * rng.normal(size=(H, N))
    C = rng.normal(size=(H, N)) + 1j * rng.normal(size=(H, N))
    return Lam, P, Q, B, C, rng.normal(size=H), rng.uniform(0.05, 0.3, H)


@pytest.mark.parametrize("impl", IMPLS)
def test_layer_conv_equals_recurrent_equals_exact(impl):
    rng = np.random.default_rng(12)
    H, N, r, L, batch = 2, 4, 2, 24, 2
    Lam, P, Q, B, C, D, dt = _layer_params(rng, H, N, r)
    u = rng.normal(size=(batch, H, L))
    mod = IMPLS[impl]
    y_conv = np.asarray(mod.s4_layer(u, Lam, P, Q, B, C, D, dt, mode="conv"))
    y_rec = np.asarray(mod.s4_layer(u, Lam, P, Q, B, C, D, dt, mode="recurrent"))
    assert y_conv.shape == y_rec.shape == (batch, H, L)
    for h in range(H):
        ref = sk.dplr_kernel(Lam[h], P[h], Q[h], B[h], C[h], dt[h], L)
        Kre = ref.value.real
        tolK = dplr_tol(ref, N, r, L)
        for b in range(batch):
            uh = u[b, h]
            with mpmath.workdps(30):  # exact y = Re(K) * u + D u (K rounded once: in tolK)
                exact = np.array([float(mpmath.fsum(mpmath.mpf(Kre[k]) * uh[t - k] for k in range(t + 1))
                                        + mpmath.mpf(D[h]) * uh[t]) for t in range(L)])
            # kernel error convolved with |u| + FFT convolution (21 log2(2L) (||K||_2||u||_1 +
            # ||K||_1||u||_2), properties/tolerance.causal_conv_terms) + the D skip, all x SAFETY u;
            # the recurrent mode's error is the dense-route kernel error convolved with |u|.
            conv_abs = np.convolve(tolK + U * np.abs(Kre), np.abs(uh))[:L]
            fft = 21 * math.log2(2 * L) * (np.linalg.norm(Kre) * np.abs(uh).sum()
                                           + np.abs(Kre).sum() * np.linalg.norm(uh))
            tol = conv_abs + SAFETY * U * (fft + 2 * np.abs(D[h] * uh)) + 2 * U * np.abs(exact)
            assert np.all(np.abs(y_conv[b, h] - exact) <= tol)
            assert np.all(np.abs(y_rec[b, h] - exact) <= tol)


# ----------------------------------------------------------------------------------------------
# the recurrent mode alone and bad inputs


def test_recurrence_equals_kernel_convolution():
    rng = np.random.default_rng(13)
    n, L = 4, 20
    Lam, P, Q, B, C = random_dplr(rng, n, 1)
    Ad, Bd = ns.discretize_dplr(Lam, P, Q, B, 0.1)
    u = np.zeros(L)
    u[0] = 1.0  # impulse response = kernel
    ref = sk.ssm_kernel(Ad, Bd, C, L)
    for mod in (ns, ts):
        y = np.asarray(mod.recurrence(Ad, Bd, C, u))
        assert np.all(np.abs(y - ref.value) <= ssm_tol(ref, n))


BAD = [
    ("dplr_kernel", (np.ones(3), np.ones(3), np.ones((1, 3)), np.ones(3), np.ones(3), 0.1, 4), "P"),
    ("dplr_kernel", (np.ones(3), np.ones((1, 3)), np.ones((2, 3)), np.ones(3), np.ones(3), 0.1, 4), "P and Q"),
    ("dplr_kernel", (np.ones(3), np.ones((1, 3)), np.ones((1, 3)), np.ones(4), np.ones(3), 0.1, 4), "B"),
    ("dplr_kernel", (np.ones(3), np.ones((1, 3)), np.ones((1, 3)), np.ones(3), np.ones(3), 0.1, 0), "L"),
    ("dplr_kernel", (np.ones(3), np.ones((1, 3)), np.ones((1, 3)), np.ones(3), np.ones(3), -1.0, 4), "dt"),
    ("dplr_kernel", (np.ones(3), np.ones((1, 3)), np.ones((1, 3)), np.ones(3), np.ones(3), np.ones(2), 4), "dt"),
    ("s4d_kernel", (np.ones((2, 3)), np.ones(3), np.ones(3), 0.1, 4), "Lambda"),
    ("s4d_kernel", (np.ones(3), np.ones(3), np.array([1.0, np.nan, 1.0]), 0.1, 4), "C"),
    ("s4d_kernel", (np.ones(3), np.ones(3), np.ones(3), 0.1, 2.5), "L"),
    ("ssm_kernel", (np.ones((2, 3)), np.ones(2), np.ones(2), 4), "Ad"),
    ("ssm_kernel", (np.eye(2), np.ones(3), np.ones(2), 4), "Bd"),
    ("ssm_kernel", (np.eye(2), np.ones(2), np.ones((2, 1)), 4), "C"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fn,args,name", BAD)
def test_bad_inputs_raise_named_errors(impl, fn, args, name):
    with pytest.raises((ValueError, TypeError), match=rf"^{name}\b"):
        getattr(IMPLS[impl], fn)(*args)


def test_bad_inputs_hippo_and_layer():
    with pytest.raises(ValueError, match="^N must"):
        nh.hippo_legs(0)
    with pytest.raises(ValueError, match="even"):
        nh.hippo_fout(5)
    with pytest.raises(TypeError, match="^Ad"):
        ns.ssm_kernel(np.array([["a"]]), np.ones(1), np.ones(1), 2)
    rng = np.random.default_rng(0)
    Lam, P, Q, B, C, D, dt = _layer_params(rng, 2, 3, 1)
    for mod in (ns, ts):
        with pytest.raises(ValueError, match="^Lambda"):
            mod.s4_layer(np.ones((3, 5)), Lam, P, Q, B, C, D, dt)
        with pytest.raises(ValueError, match="^D"):
            mod.s4_layer(np.ones((2, 5)), Lam, P, Q, B, C, np.ones(3), dt)
        with pytest.raises(ValueError, match="^mode"):
            mod.s4_layer(np.ones((2, 5)), Lam, P, Q, B, C, D, dt, mode="fft")


def test_inputs_not_modified():
    rng = np.random.default_rng(1)
    args = random_dplr(rng, 4, 2)
    copies = [a.copy() for a in args]
    for mod in (ns, ts):
        mod.dplr_kernel(*args, 0.1, 8)
        mod.s4d_kernel(args[0], args[3], args[4], 0.1, 8)
    assert all(np.array_equal(a, c) for a, c in zip(args, copies))


# ----------------------------------------------------------------------------------------------
# the deliberately wrong subjects fail under the same tolerances


def test_wrong_subjects_are_caught():
    wrong = load_wrong()
    # hippo: eigenvalues +1..+N vs the exact transition
    A, _ = wrong.legs_plus_diagonal(6)
    A0 = np.array(oh.transition("legs", 6)[0].evalf(30).tolist(), dtype=float)
    assert np.max(np.abs(A - A0)) > 1
    # dplr: L dt small enough that Abar^L matters (C~), rank 2 (Woodbury)
    rng = np.random.default_rng(21)
    n, r, L, dt = 5, 2, 16, 0.1
    args = random_dplr(rng, n, r, scale=0.5)
    ref = sk.dplr_kernel(*args, dt, L)
    tol = dplr_tol(ref, n, r, L)
    assert np.all(np.abs(wrong._dplr(*args, dt, L) - ref.value) <= tol)  # the unmutated helper passes
    for f in (wrong.dplr_no_ctilde, wrong.dplr_no_bilinear_factor, wrong.dplr_woodbury_sign):
        assert np.max(np.abs(f(*args, dt, L) - ref.value) / tol) > 1e3, f.__name__
    # s4d
    Lam = -rng.uniform(0.1, 1, n) + 1j * np.pi * np.arange(n)
    B, C = np.ones(n) + 0j, rng.normal(size=n) + 1j * rng.normal(size=n)
    ref = sk.s4d_kernel(Lam, B, C, 0.1, L)
    tol = s4d_tol(ref, n, "zoh")
    assert np.all(np.abs(wrong._s4d(Lam, B, C, 0.1, L) - ref.value) <= tol)
    for f in (wrong.s4d_no_factor_two, wrong.s4d_euler_B):
        assert np.max(np.abs(f(Lam, B, C, 0.1, L) - ref.value) / tol) > 1e3, f.__name__
