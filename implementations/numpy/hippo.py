"""HiPPO transition matrices in float64 (roles ``hippo_legs``, ``hippo_legt``, ``hippo_lagt``,
``hippo_fout``) and their DPLR form, in the conventions of state-spaces/s4 ``transition()``
(see oracle/hippo.py for the derivations and every convention).

Each ``hippo_*(N)`` returns (A (N, N), B (N,)) float64, for the system d/dt c = A c + B u (LegS:
d/dt c = (1/t)(A c + B u)).
"""
from __future__ import annotations

import numpy as np

__all__ = ["hippo_legs", "hippo_legt", "hippo_lagt", "hippo_fout", "rank_correction", "nplr"]


def _check_N(N, even=False):
    if isinstance(N, (bool, np.bool_)) or not isinstance(N, (int, np.integer)) or N < 1:
        raise ValueError(f"N must be an int >= 1, got {N!r}")
    if even and N % 2:
        raise ValueError(f"N must be even for hippo_fout (s4 pairs cos/sin slots), got {N}")
    return int(N)


def hippo_legs(N):
    """LegS: A_nk = -sqrt((2n+1)(2k+1)) (n > k), -(n+1) (n = k), 0 (n < k); B_n = sqrt(2n+1)."""
    N = _check_N(N)
    r = np.sqrt(2.0 * np.arange(N) + 1.0)
    A = -np.tril(np.outer(r, r), -1) - np.diag(np.arange(N) + 1.0)
    return A, r.copy()


def hippo_legt(N):
    """LegT as s4 (window theta = 2, i.e. halved): A_nk = -sqrt((2n+1)(2k+1))/2 for n >= k and
    -(-1)^(n-k) sqrt((2n+1)(2k+1))/2 for n < k; B_n = sqrt(2n+1)/2."""
    N = _check_N(N)
    q = np.arange(N)
    r = np.sqrt(2.0 * q + 1.0)
    n, k = q[:, None], q[None, :]
    sign = np.where(n >= k, 1.0, np.where((n - k) % 2 == 0, 1.0, -1.0))
    return -0.5 * np.outer(r, r) * sign, 0.5 * r


def hippo_lagt(N):
    """LagT as s4 (beta = 1): A = I/2 - tril(ones), B = ones."""
    N = _check_N(N)
    return np.eye(N) / 2 - np.tril(np.ones((N, N))), np.ones(N)


def hippo_fout(N):
    """FouT as s4 (N even): B = (1, 0, sqrt2, 0, sqrt2, 0, ...), A = pi J - B B^T with
    J[2k, 2k+1] = -k, J[2k+1, 2k] = k."""
    N = _check_N(N, even=True)
    B = np.zeros(N)
    B[0::2] = np.sqrt(2.0)
    B[0] = 1.0
    J = np.zeros((N, N))
    for k in range(1, N // 2):
        J[2 * k, 2 * k + 1], J[2 * k + 1, 2 * k] = -k, k
    return np.pi * J - np.outer(B, B), B


_TRANSITIONS = {"legs": hippo_legs, "legt": hippo_legt, "lagt": hippo_lagt, "fout": hippo_fout}


def rank_correction(measure, N):
    """(P (r, N), shift) with A + P^T P = shift I + S, S skew (oracle.hippo.rank_correction)."""
    if measure not in _TRANSITIONS:
        raise ValueError(f"measure must be one of {sorted(_TRANSITIONS)}, got {measure!r}")
    N = _check_N(N, even=measure == "fout")
    q = np.arange(N)
    if measure == "legs":
        return np.sqrt(q + 0.5)[None, :], -0.5
    if measure == "legt":
        P = np.zeros((2, N))
        P[q % 2, q] = np.sqrt(q + 0.5)
        return P, 0.0
    if measure == "lagt":
        return np.full((1, N), np.sqrt(0.5)), 0.0
    return hippo_fout(N)[1][None, :], 0.0


def nplr(measure, N):
    """DPLR form of the HiPPO matrix: (Lambda (N,), P (r, N), B (N,), V (N, N)) complex with

        A = V (diag(Lambda) - P^T conj(P)) V^*,   B_hippo = V B,   V unitary,

    i.e. ``dplr_kernel``'s A with Q = P.  All N eigenvalues are kept (s4's nplr keeps one of
    each conjugate pair).  The skew part S = A + P0^T P0 - shift I is diagonalized with the
    Hermitian solver on -i S (exactly skew by construction (S - S^T)/2, zero diagonal), so
    Lambda = shift + i mu has its real part exactly the shift."""
    A, B = _TRANSITIONS[measure](N)
    P0, shift = rank_correction(measure, N)
    S = A + P0.T @ P0 - shift * np.eye(A.shape[0])
    S = (S - S.T) / 2  # the exact S is skew; keep only that part of the rounded one
    mu, V = np.linalg.eigh(-1j * S)
    Lambda = shift + 1j * mu
    Vh = V.conj().T
    return Lambda, (Vh @ P0.T).T, Vh @ B, V
