"""Continuous-time systems (A, B, dt) for the discretization roles.

Classes of A (each drawn with probability 1/8 or more): dense, diagonal, singular (an exactly
zero or repeated row), nilpotent (strictly upper triangular), defective (a Jordan block under an
integer unimodular similarity, so exactly defective in float64), oscillatory (skew-symmetric plus
a negative shift, eigenvalues with large imaginary parts), stiff (eigenvalues spread over four
decades, ||A dt|| up to 2000), zero. Sizes n = 1..16, B (n, m) with m = 1..4 columns, scaled
by 2^0, 2^+-12, 2^+-40 or 0, dt from 1e-6 to 1e2, and ||A dt|| from 1e-8 to 30 (stiff: to 2000).

Named classes (issue 19; beyond CONTRACT.md), each left out by --ssm-without and drawn in every
example by --ssm-with: ``defective_A`` (the defective and nilpotent classes, n >= 2: not
diagonalizable, an eigendecomposition-based expm breaks), ``stiff_A``, ``oscillatory_A``, and
``extreme_B`` (B scaled by 2^+-40 or 0). ``singular_A`` (discretize_zoh) is numerical rank < n.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import assume, strategies as st

from ssm_conformance.properties.options import enabled, forced
from ssm_conformance.properties.strategies.common import log_uniform, power_of_two_near

KINDS = ("dense", "diagonal", "singular", "nilpotent", "defective", "oscillatory", "stiff", "zero")
SINGULAR_KINDS = {"singular", "nilpotent", "zero"}
# the named classes of A (module docstring): feature -> kinds
CLASS_KINDS = {"defective_A": ("defective", "nilpotent"), "stiff_A": ("stiff",),
               "oscillatory_A": ("oscillatory",)}
B_SCALES = (1.0, 1.0, 2.0**-40, 2.0**-12, 2.0**12, 2.0**40, 0.0)
EXTREME_B = (2.0**-40, 2.0**40, 0.0)


def _kinds(singular_feature):
    """The classes of A the options allow: a left-out class is not drawn, a forced one only."""
    kinds = [k for k in KINDS if singular_feature is None or enabled(singular_feature)
             or k not in SINGULAR_KINDS]
    kinds = [k for k in kinds if all(enabled(f) or k not in ks for f, ks in CLASS_KINDS.items())]
    for feature, ks in CLASS_KINDS.items():
        if forced(feature):
            kinds = [k for k in kinds if k in ks]
    if singular_feature is not None and forced(singular_feature):
        kinds = [k for k in kinds if k in SINGULAR_KINDS]
    return kinds or ["dense"]   # an impossible combination is refused by the option parser


def class_features(kind: str, A: np.ndarray) -> set:
    """The named classes (stiff_A, oscillatory_A, defective_A) of ``A`` drawn as ``kind``: a dense
    or singular draw that is defective by chance (small integer entries) counts as defective_A
    too (``_defective_by_chance``)."""
    out = {f for f, ks in CLASS_KINDS.items() if kind in ks}
    if kind in CLASS_KINDS["defective_A"] and (A.shape[0] < 2 or not np.any(A)):
        out.discard("defective_A")   # 1 x 1 (or zero): diagonalizable
    if kind in ("dense", "singular") and _defective_by_chance(A):
        out.add("defective_A")
    return out


def _defective_by_chance(A: np.ndarray) -> bool:
    """Whether ``A`` (a dense or singular draw) may be defective. Normal entries give distinct
    eigenvalues (almost surely); integer ones can repeat one without enough eigenvectors, e.g.
    [[1, 1], [0, 1]]. Eigenvalues that do not cluster: diagonalizable. A cluster: decided exactly
    (SymPy) for an integer matrix up to a power-of-two scale, else taken as defective."""
    n = A.shape[0]
    if n < 2:
        return False
    lam = np.linalg.eigvals(A)
    scale = max(float(np.abs(lam).max()), np.finfo(float).tiny)
    gaps = np.abs(lam[:, None] - lam[None, :]) + np.eye(n) * scale
    if gaps.min() > 1e-6 * scale:
        return False
    top = int(np.floor(np.log2(np.abs(A[A != 0]).min()))) if np.any(A) else 0
    for k in range(top, top - 4, -1):   # A = A0 2^k with A0 integer (entries up to 3 here)?
        unit = A / 2.0**k
        if np.array_equal(unit, np.round(unit)) and np.abs(unit).max() < 2**40:
            import sympy
            return not sympy.Matrix(unit.astype(int).tolist()).is_diagonalizable()
    return True


@dataclass
class LTICase:
    A: np.ndarray
    B: np.ndarray
    dt: float
    kind: str
    features: frozenset = field(default_factory=frozenset)

    def args(self):
        return {"A": self.A, "B": self.B, "dt": self.dt}

    @property
    def size(self) -> int:
        return self.A.shape[0]

    def __repr__(self):
        return (f"LTICase(kind={self.kind!r}, n={self.A.shape[0]}, B.shape={self.B.shape}, "
                f"dt={self.dt!r})")


def _matrix(kind: str, n: int, entries: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A base matrix of the given class with entries of order 1 (before scaling)."""
    if kind == "dense":
        return entries
    if kind == "diagonal":
        return np.diag(np.diag(entries))
    if kind == "singular":
        A = entries.copy()
        if n == 1:
            return np.zeros((1, 1))
        i, j = rng.choice(n, size=2, replace=False)
        if rng.random() < 0.5:
            A[i] = 0.0  # a zero row
        else:
            A[i] = A[j]  # a repeated row
        return A
    if kind == "nilpotent":
        return np.triu(entries, 1)
    if kind == "defective":
        lam = float(rng.integers(-4, 3))
        J = lam * np.eye(n) + np.eye(n, k=1)  # one Jordan block: geometric multiplicity 1
        S = np.triu(rng.integers(-1, 2, size=(n, n)).astype(float), 1) + np.eye(n)
        S_inv = np.linalg.inv(S).round()  # unit upper triangular integer: inverse is integer
        return S @ J @ S_inv  # exact in float64 (small integers)
    if kind == "oscillatory":
        skew = np.triu(entries, 1)
        return skew - skew.T - 0.5 * np.eye(n)
    if kind == "stiff":
        rates = 10.0 ** rng.uniform(0, 4, size=n)
        return -np.diag(rates) + np.triu(entries, 1)  # eigenvalues -rates, spread 4 decades
    if kind == "zero":
        return np.zeros((n, n))
    raise ValueError(kind)


@st.composite
def lti_cases(draw, max_n: int = 16, singular_feature: str | None = None):
    """Draw (A, B, dt). ``singular_feature``: the role feature name that singular A exercises
    (discretize_zoh's ``singular_A``); when it is removed by --ssm-without, singular classes
    are not drawn."""
    kind = draw(st.sampled_from(_kinds(singular_feature)))
    # a forced defective_A needs n >= 2 (a 1 x 1 matrix is diagonal)
    n = draw(st.integers(2 if forced("defective_A") else 1, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    entries = draw(st.sampled_from(["normal", "integer"]))
    base = rng.standard_normal((n, n)) if entries == "normal" else \
        rng.integers(-3, 4, size=(n, n)).astype(float)
    A0 = _matrix(kind, n, base, rng)
    dt = draw(log_uniform(-6, 2))
    target = draw(log_uniform(3, 4)) if kind == "stiff" else draw(log_uniform(-8, 1)) * 3
    norm = np.linalg.norm(A0, 1)
    A = A0 * power_of_two_near(target / (norm * dt)) if norm > 0 else A0
    # B is (n, m), m >= 1, always 2-D (CONTRACT.md: all four discretize roles); m = 1 half the time
    m = 1 if draw(st.booleans()) else draw(st.integers(2, 4))
    B = rng.standard_normal((n, m))
    # B over many binades: Van Loan's block grows with ||B||, and Ad must not care; and B = 0
    # (a Van Loan block as small as A dt itself)
    scales = [x for x in B_SCALES if (x in EXTREME_B and enabled("extreme_B"))
              or (x not in EXTREME_B and not forced("extreme_B"))]
    scale = draw(st.sampled_from(scales))
    B = B * scale
    features = class_features(kind, A) | ({"extreme_B"} if scale in EXTREME_B else set())
    if "defective_A" in features:   # a dense or singular draw that is defective by chance
        assume(enabled("defective_A"))
    if singular_feature and np.linalg.matrix_rank(A) < n:  # numerically singular
        # integer and diagonal draws are often singular by chance; a Jordan block at 0 always is
        assume(enabled(singular_feature))
        features.add(singular_feature)
    return LTICase(A=A, B=B, dt=dt, kind=kind, features=frozenset(features))
