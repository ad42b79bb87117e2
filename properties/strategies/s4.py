"""Inputs for the S4-family roles (CONTRACT.md): HiPPO sizes, and the kernels of stable and
marginal systems (``ssm_kernel``, ``s4d_kernel``, ``dplr_kernel``).

What is drawn, and why:

* ``hippo_cases(measure)``: N = 1..64 (FouT: even N only -- s4's construction pairs cos/sin slots
  and cannot build an odd N, CONTRACT.md/oracle.hippo), small N and the boundary 64 favoured.
* Kernels: sizes come from one of three *regimes*, so that the oracle's cost stays bounded while
  N and L both reach their ranges: "long" (L = 257..1024, the largest N the budget allows: N <= 4
  at L = 1024 for ssm_kernel), "wide" (N = 17..64, L as long as the budget allows), "square"
  (N <= 16, L <= 1024 under the budget). The oracles are mpmath loops: ``ssm_kernel`` and
  ``dplr_kernel`` power a dense matrix, N^2 L multiplications per precision; ``s4d_kernel`` costs
  N L. Budgets: N^2 L <= 2^14 (ssm_kernel), N L <= 2^15 (s4d_kernel); wide, long and square each
  1/3. ``dplr_kernel``'s oracle also inverts a dense N x N matrix in mpmath three times (~9e-5 N^3
  s here: 0.4 s at N = 16, 24 s at N = 64), so there N^2 L <= 2^13, the wide regime is drawn 1 in
  8 and stops at N = 24; properties/test_s4.py adds one explicit N = 64 HiPPO-LegS example in the
  profiles of 100 examples or more.
* Hypothesis draws seed 0 in about a third of these examples (and leans to the first value of
  sampled_from and to False in booleans), so kinds and coin flips come from an rng seeded with
  the drawn seed *and* the drawn sizes (``_rng``): each kind keeps its share.
* ``ssm_kernel`` (real Ad, Bd, C; the contract promises nothing about complex inputs): stable
  dense (spectral radius 0.3..0.999), marginal orthogonal (all eigenvalues on the unit circle),
  marginal diagonal (entries in [-1, 1] with +-1 present), a Jordan block at 1 (polynomial growth),
  non-normal upper triangular (|Ad|^k grows while Ad^k decays: the normwise bound matters), and
  bilinear-discretized HiPPO (the S4 setting; |Ad|^k explodes).
* ``s4d_kernel``: Lambda = -a + ib as S4D-Lin (b = pi n), S4D-Inv, S4D-LegS (the eigenvalues of
  the LegS DPLR form with Im >= 0), random (a from 1e-3 to 2, |b| up to pi N) and slow (a from
  1e-6 to 1e-3: near-marginal); dt over four decades, 1e-4..1; B ones or complex normal. Tiny
  |lambda dt| draws test the (e^x - 1)/lambda cancellation.
* ``dplr_kernel``: A = diag(Lambda) - P^T conj(Q), rank 1 or 2 (2 only while the ``rank2``
  feature is enabled), dt over four decades, 1e-3..10. Kinds: "hippo" (the DPLR form of
  LegS/LegT/LagT/FouT from implementations.numpy.hippo.nplr, Q = P: Re Lambda = -1/2 or 0, and
  g(z_j) can meet an eigenvalue: FouT, and LegT/LagT of odd N, have lambda = 0 (~1e-16 as
  computed), met by g(1) = 0), "dissipative"
  (Q = P, Re Lambda <= 0: A + A^* <= 0, so A is stable or marginal whatever the size of P, and
  the Woodbury term is large), "imaginary" (the same with Re Lambda = 0: marginal; lambda = 0
  exactly in half of them), and "general"
  (Q != P, ||P^T conj(Q)|| <= min_i |Re lambda_i| / 2, so A is stable by Bauer-Fike).
  HiPPO-LegT (rank 2) is its own kind, so rank 2 is drawn in about 4 of 10 draws.
  In half the non-HiPPO draws the decay is tied to L: L dt (max_i |Re lambda_i| +
  ||P^T conj(Q)||) <= 5, which bounds every eigenvalue's decay (Bauer-Fike), so Abar^L is not
  negligible and a kernel that omits S4's C~ = C (I - Abar^L) is visibly wrong.
  Some Re lambda_i = 0 exactly (imaginary, HiPPO LegT/LagT/FouT) is the feature
  ``marginal_Lambda``: the generating-function algorithm is singular there (g(z_j) = lambda_i);
  ``--ssm-without marginal_Lambda`` leaves those kinds out (every Re lambda_i < 0).
* Named classes (issue 19; beyond CONTRACT.md), each left out by --ssm-without and drawn in
  every example by --ssm-with: ``jordan_block`` (ssm_kernel's Jordan block at 1), ``slow_modes``
  (s4d_kernel's "slow" kind), ``near_marginal_Lambda`` (dplr_kernel: some Re lambda_i != 0 with
  |Re lambda_i| dt < 2^-10, a mode that loses less than 0.1% a step; left out, every such
  rate is raised to 2^-10 / dt, and HiPPO-LegS (Re lambda = -1/2) gets dt >= 2^-9).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from ssm_conformance.implementations.numpy import hippo as np_hippo
from ssm_conformance.properties.options import enabled, forced
from ssm_conformance.properties.strategies.common import log_uniform, seeds

MAX_N = 64
MAX_L = 1024
HIPPO_SIZES = (1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64)
KERNEL_LENGTHS = (1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33, 64, 65, 127, 128, 129, 255, 256,
                  257, 511, 512, 513, 1000, 1023, 1024)
DENSE_BUDGET = 2**14  # N^2 L, ssm_kernel
DPLR_BUDGET = 2**13  # N^2 L, dplr_kernel (whose oracle also inverts a dense matrix)
DIAGONAL_BUDGET = 2**15  # N L, s4d_kernel


# --- cases ---------------------------------------------------------------------------------------

@dataclass
class HippoCase:
    measure: str
    N: int
    features: frozenset = field(default_factory=frozenset)

    def args(self):
        return {"N": self.N}

    @property
    def size(self) -> int:
        return self.N

    def __repr__(self):
        return f"HippoCase(measure={self.measure!r}, N={self.N})"


@dataclass
class SSMCase:
    Ad: np.ndarray
    Bd: np.ndarray
    C: np.ndarray
    L: int
    kind: str
    features: frozenset = field(default_factory=frozenset)

    def args(self):
        return {"Ad": self.Ad, "Bd": self.Bd, "C": self.C, "L": self.L}

    @property
    def size(self) -> int:
        return self.L

    def __repr__(self):
        return f"SSMCase(kind={self.kind!r}, n={self.Ad.shape[0]}, L={self.L})"


@dataclass
class S4DCase:
    Lambda: np.ndarray
    B: np.ndarray
    C: np.ndarray
    dt: float
    L: int
    kind: str
    features: frozenset = field(default_factory=frozenset)

    def args(self):
        return {"Lambda": self.Lambda, "B": self.B, "C": self.C, "dt": self.dt, "L": self.L}

    @property
    def size(self) -> int:
        return self.L

    def __repr__(self):
        return f"S4DCase(kind={self.kind!r}, N={self.Lambda.shape[0]}, L={self.L}, dt={self.dt!r})"


@dataclass
class DPLRCase:
    Lambda: np.ndarray
    P: np.ndarray
    Q: np.ndarray
    B: np.ndarray
    C: np.ndarray
    dt: float
    L: int
    kind: str
    features: frozenset = field(default_factory=frozenset)

    def args(self):
        return {"Lambda": self.Lambda, "P": self.P, "Q": self.Q, "B": self.B, "C": self.C,
                "dt": self.dt, "L": self.L}

    @property
    def size(self) -> int:
        return self.L

    @property
    def rank(self) -> int:
        return self.P.shape[0]

    def __repr__(self):
        return (f"DPLRCase(kind={self.kind!r}, N={self.Lambda.shape[0]}, r={self.rank}, "
                f"L={self.L}, dt={self.dt!r})")


# --- building blocks -----------------------------------------------------------------------------

def _length(draw, lo: int, hi: int) -> int:
    """A length in [lo, hi]: the special lengths in range (1, primes, powers of two and their
    neighbours, 1024) or any integer."""
    special = [L for L in KERNEL_LENGTHS if lo <= L <= hi]
    if special and draw(st.booleans()):
        return draw(st.sampled_from(special))
    return draw(st.integers(lo, hi))


def _sizes(draw, *, max_n: int, max_l: int, budget: int, power: int, wide_one_in: int = 3):
    """(N, L) with N^power L <= budget, from the long / wide / square regimes (module docstring):
    wide (N above 16) with probability 1/wide_one_in, else long (L above 256) or square alike."""
    # the gate's odds bound the oracle's cost, and Hypothesis draws simple values (0, 1, the
    # bounds) far more often than their share: take it from a seed, not from seed 0 or 1
    wide = max_n > 16 and draw(seeds()) % wide_one_in == wide_one_in - 1
    regime = "wide" if wide else draw(st.sampled_from(["long", "square"] * (max_l > 256)
                                                     or ["square"]))
    if regime == "long":
        L = _length(draw, 257, max_l)
        n = draw(st.integers(1, max(1, min(max_n, int((budget / L) ** (1 / power))))))
    else:
        if wide:
            special = [m for m in (17, 24, 31, 32, 33, 48, 63, 64) if m <= max_n] + [max_n]
            n = draw(st.sampled_from(special) if draw(st.booleans()) else st.integers(17, max_n))
        else:
            n = draw(st.integers(1, min(16, max_n)))
        L = _length(draw, 1, max(1, min(max_l, budget // n**power)))
    return n, L


def _rng(seed: int, *salt: int) -> np.random.Generator:
    """The case's random numbers, kind included. Hypothesis draws seed 0 for about a third of the
    examples (and 1 for a tenth; st.sampled_from and st.booleans lean to their first value as
    much), so the seed is salted with the case's drawn sizes: cases that differ there get
    different kinds and matrices, each kind with its share."""
    return np.random.default_rng([seed, *salt])


def _complex_normal(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def hippo_bilinear(measure: str, n: int, dt: float):
    """Bilinear (Abar, Bbar) of a HiPPO system, float64 (inputs for ssm_kernel)."""
    A, B = getattr(np_hippo, f"hippo_{measure}")(n)
    M = np.eye(n) - dt / 2 * A
    return np.linalg.solve(M, np.eye(n) + dt / 2 * A), np.linalg.solve(M, dt * B)


# --- hippo ---------------------------------------------------------------------------------------

@st.composite
def hippo_cases(draw, measure: str, max_n: int = MAX_N):
    if draw(st.booleans()):
        N = draw(st.sampled_from([n for n in HIPPO_SIZES if n <= max_n]))
    else:
        N = draw(st.integers(1, max_n))
    if measure == "fout":  # even N only (module docstring)
        N = max(2, N + N % 2) if N < max_n else max_n - max_n % 2
    return HippoCase(measure=measure, N=N)


# --- ssm_kernel ----------------------------------------------------------------------------------

SSM_KINDS = ("stable_dense", "orthogonal", "diagonal", "jordan", "nonnormal", "hippo")


def _allowed(kinds, feature: str, feature_kinds) -> list:
    """``kinds`` less ``feature_kinds`` when ``feature`` is left out, only those when forced."""
    if forced(feature):
        return [k for k in kinds if k in feature_kinds]
    return [k for k in kinds if enabled(feature) or k not in feature_kinds]


def _ssm_matrix(kind: str, n: int, rng: np.random.Generator, draw):
    if kind == "stable_dense":
        G = rng.standard_normal((n, n))
        rho = float(np.max(np.abs(np.linalg.eigvals(G))))
        return G * (rng.uniform(0.3, 0.999) / rho) if rho > 0 else G
    if kind == "orthogonal":  # all eigenvalues on the unit circle: marginal
        Qm, R = np.linalg.qr(rng.standard_normal((n, n)))
        return Qm * np.sign(np.diag(R))[None, :]
    if kind == "diagonal":  # marginal: +-1 present, the rest inside [-1, 1]
        d = rng.uniform(-1.0, 1.0, n)
        d[rng.integers(0, n)] = rng.choice([-1.0, 1.0])
        return np.diag(d)
    if kind == "jordan":  # a Jordan block at 1 of size <= 3 (K grows like k^(m-1)), rest stable
        A = np.diag(rng.uniform(-0.9, 0.9, n))
        m = min(n, int(rng.integers(1, 4)))
        A[:m, :m] = np.eye(m) + np.eye(m, k=1)
        return A
    if kind == "nonnormal":  # |Ad|^k grows while Ad^k decays
        A = np.triu(rng.uniform(-3.0, 3.0, (n, n)), 1) / max(1, n) ** 0.5
        np.fill_diagonal(A, rng.uniform(-0.95, 0.95, n))
        return A
    measure = draw(st.sampled_from(["legs", "legt", "lagt"] + (["fout"] if n % 2 == 0 else [])))
    return hippo_bilinear(measure, n, draw(log_uniform(-3, 1)))[0]


@st.composite
def ssm_cases(draw, max_n: int = MAX_N, max_l: int = MAX_L, budget: int = DENSE_BUDGET):
    n, L = _sizes(draw, max_n=max_n, max_l=max_l, budget=budget, power=2)
    rng = _rng(draw(seeds()), n, L)
    kind = str(rng.choice(_allowed(SSM_KINDS, "jordan_block", ("jordan",))))
    Ad = _ssm_matrix(kind, n, rng, draw)
    scale = 2.0 ** draw(st.sampled_from([0, 0, -20, 20]))
    return SSMCase(Ad=Ad, Bd=rng.standard_normal(n) * scale, C=rng.standard_normal(n), L=L,
                   kind=kind, features=frozenset({"jordan_block"} if kind == "jordan" else ()))


# --- s4d_kernel ----------------------------------------------------------------------------------

S4D_KINDS = ("lin", "inv", "legs", "random", "slow")


def _s4d_lambda(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    q = np.arange(n)
    if kind == "lin":  # S4D-Lin
        return -rng.uniform(0.1, 1.0) + 1j * np.pi * q
    if kind == "inv":  # S4D-Inv
        return -0.5 + 1j * (n / np.pi) * (n / (2 * q + 1) - 1)
    if kind == "legs":  # S4D-LegS: the LegS DPLR eigenvalues, one of each conjugate pair
        lam = np_hippo.nplr("legs", 2 * n)[0]
        return np.sort_complex(lam[lam.imag >= 0])[:n]
    if kind == "random":
        return -np.exp(rng.uniform(np.log(1e-3), np.log(2.0), n)) + 1j * rng.uniform(
            -np.pi * n, np.pi * n, n)
    return -np.exp(rng.uniform(np.log(1e-6), np.log(1e-3), n)) + 1j * rng.uniform(-3, 3, n)


@st.composite
def s4d_cases(draw, max_n: int = MAX_N, max_l: int = MAX_L, budget: int = DIAGONAL_BUDGET):
    n, L = _sizes(draw, max_n=max_n, max_l=max_l, budget=budget, power=1)
    rng = _rng(draw(seeds()), n, L)
    kind = str(rng.choice(_allowed(S4D_KINDS, "slow_modes", ("slow",))))
    Lam = _s4d_lambda(kind, n, rng).astype(np.complex128)
    B = np.ones(n, dtype=np.complex128) if draw(st.booleans()) else _complex_normal(rng, n)
    return S4DCase(Lambda=Lam, B=B, C=_complex_normal(rng, n), dt=draw(log_uniform(-4, 0)), L=L,
                   kind=kind, features=frozenset({"slow_modes"} if kind == "slow" else ()))


# --- dplr_kernel ---------------------------------------------------------------------------------

DPLR_KINDS = ("dissipative", "imaginary", "general", "hippo-legs", "hippo-legt", "hippo-lagt",
              "hippo-fout")
# kinds with some Re Lambda_i = 0 exactly (the feature marginal_Lambda): the HiPPO DPLR forms
# other than LegS have Re Lambda = 0 (the dissipation is all in P), "imaginary" by construction
MARGINAL_KINDS = ("imaginary", "hippo-legt", "hippo-lagt", "hippo-fout")
RANK1_KINDS = ("hippo-legs", "hippo-lagt", "hippo-fout")
# near_marginal_Lambda: some Re lambda_i != 0 with |Re lambda_i| dt below this (module docstring)
NEAR_MARGINAL = 2.0**-10


def near_marginal(Lam: np.ndarray, dt: float) -> bool:
    rate = np.abs(np.real(Lam)) * dt
    return bool(np.any((rate > 0) & (rate < NEAR_MARGINAL)))


def _hippo_dplr(draw, measure: str, n: int, rng: np.random.Generator):
    """(Lambda, P, Q, B, C) of a HiPPO system in its DPLR basis (Q = P); C = C0 V with a real C0
    (a real C of the original basis) or complex normal."""
    Lam, Pt, Bt, V = np_hippo.nplr(measure, n)
    C = rng.standard_normal(n) @ V if draw(st.booleans()) else _complex_normal(rng, n)
    return Lam, Pt, Pt.copy(), Bt, C


@st.composite
def dplr_cases(draw, max_n: int = 24, max_l: int = MAX_L, budget: int = DPLR_BUDGET,
               wide_one_in: int = 8):
    """See the module docstring. The "wide" regime (N = 17..max_n) is drawn with probability
    1/wide_one_in: the oracle's dense mpmath inverse costs ~9e-5 N^3 s."""
    n, L = _sizes(draw, max_n=max_n, max_l=max_l, budget=budget, power=2,
                  wide_one_in=wide_one_in)
    # HiPPO-LegT has rank 2 (and needs N >= 2), the other measures rank 1; FouT needs even N
    kinds = [k for k in DPLR_KINDS if k != "hippo-legt" or (enabled("rank2") and n >= 2)]
    if not enabled("marginal_Lambda"):  # every Re Lambda < 0: no "imaginary", no LegT/LagT/FouT
        kinds = [k for k in kinds if k not in MARGINAL_KINDS]
    if forced("rank2"):
        kinds = [k for k in kinds if k not in RANK1_KINDS]
    if forced("marginal_Lambda"):
        kinds = [k for k in kinds if k in MARGINAL_KINDS]
    if forced("near_marginal_Lambda"):   # a tiny rate in a drawn Lambda (below)
        kinds = [k for k in kinds if k in ("dissipative", "general")]
    rng = _rng(draw(seeds()), n, L)
    kind = str(rng.choice(kinds or ["dissipative"]))
    if kind == "hippo-fout" and n % 2:
        n += 1  # FouT exists for even N only
    if kind == "hippo-legt":
        rank = 2
    elif kind.startswith("hippo"):
        rank = 1
    else:
        rank = 2 if forced("rank2") or (enabled("rank2") and rng.random() < 0.5) else 1
    visible = rng.random() < 0.5
    dt = draw(log_uniform(-3, 1))
    if kind == "hippo-legs" and not enabled("near_marginal_Lambda"):
        dt = max(dt, 2 * NEAR_MARGINAL)   # Re lambda = -1/2: |Re lambda| dt >= 2^-10
    if kind.startswith("hippo"):
        Lam, P, Q, B, C = _hippo_dplr(draw, kind.partition("-")[2], n, rng)
    else:
        im_scale = draw(st.sampled_from([1.0, np.pi * n]))
        if kind == "imaginary":
            a = np.zeros(n)
        else:
            a = np.exp(rng.uniform(np.log(1e-3), np.log(2.0), n))
            if forced("near_marginal_Lambda"):   # one mode that barely decays
                a[rng.integers(n)] = NEAR_MARGINAL / dt * 10.0 ** -rng.uniform(0.0, 2.0)
        b = rng.uniform(-im_scale, im_scale, n)
        if kind == "imaginary" and rng.random() < 0.5:
            b[rng.integers(n)] = 0.0  # lambda = 0 exactly: met by g(z_0) = g(1) = 0
        P = _complex_normal(rng, rank, n)
        if kind == "general":  # ||P^T conj(Q)||_2 <= min a / 2: stable (Bauer-Fike)
            Q = _complex_normal(rng, rank, n)
            P = P * (rng.uniform(0.0, 0.5) * a.min() / max(np.linalg.norm(P.T @ Q.conj(), 2),
                                                          1e-300))
        else:  # dissipative / imaginary: Q = P, ||P||^2 of the order of the rates (or 1e-3..1)
            size = a.max() * rng.uniform(0.1, 2.0) if a.max() > 0 else np.exp(
                rng.uniform(np.log(1e-3), 0.0))
            P = P * math.sqrt(size) / np.linalg.norm(P, 2)
            Q = P.copy()
        if visible:  # tie the decay to L: L dt (max a + ||P^T conj(Q)||) <= 5 (module docstring)
            rate = a.max() + np.linalg.norm(P.T @ Q.conj(), 2)
            target = np.exp(rng.uniform(np.log(1e-2), np.log(5.0)))
            if rate > 0:
                s = target / (L * dt * rate)
                if s < 1:
                    a, P, Q = a * s, P * math.sqrt(s), Q * math.sqrt(s)
        if not enabled("near_marginal_Lambda"):   # raise slow rates to 2^-10 / dt (stays stable)
            a = np.where(a > 0, np.maximum(a, NEAR_MARGINAL / dt), a)
        Lam = -a + 1j * b
        B, C = _complex_normal(rng, n), _complex_normal(rng, n)
    features = {"rank2"} if rank == 2 else set()
    if np.any(np.real(Lam) == 0):
        features.add("marginal_Lambda")
    if near_marginal(Lam, dt):
        features.add("near_marginal_Lambda")
    features = frozenset(features)
    return DPLRCase(Lambda=np.asarray(Lam, np.complex128), P=np.asarray(P, np.complex128),
                    Q=np.asarray(Q, np.complex128), B=np.asarray(B, np.complex128),
                    C=np.asarray(C, np.complex128), dt=float(dt), L=L, kind=kind,
                    features=features)


def dplr_hippo_legs_case(N: int = MAX_N, L: int = 5, dt: float = 0.01, seed: int = 0) -> DPLRCase:
    """One fixed HiPPO-LegS case (rank 1), e.g. the explicit N = 64 example of test_s4.py."""
    Lam, Pt, Bt, V = np_hippo.nplr("legs", N)
    C = np.random.default_rng(seed).standard_normal(N) @ V
    return DPLRCase(Lambda=Lam, P=Pt, Q=Pt.copy(), B=Bt, C=C.astype(np.complex128), dt=dt, L=L,
                    kind="hippo-legs")
