"""More deliberately wrong S4-family subjects, for the roles tests/subjects/s4_wrong.py leaves
without one (ssm_kernel, hippo_legt/lagt/fout) and for mistakes MATH.md lists that it does not
cover. Each "looks right" (a stable matrix, a decaying kernel); only an oracle catches it. The
meta-tests (tests/test_meta_s4.py) expect the suite to FAIL every one.

Self-contained NumPy, no import of this repository.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg


# --- HiPPO ---------------------------------------------------------------------------------------

def legs_transposed(N):
    """LegS transposed (upper triangular): same eigenvalues -1..-N, same B -- a spectrum check
    passes, the entries do not."""
    r = np.sqrt(2.0 * np.arange(N) + 1.0)
    return (-np.tril(np.outer(r, r), -1) - np.diag(np.arange(N) + 1.0)).T, r


def legs_float32(N):
    """LegS built in float32 and returned as float64 (relative error ~6e-8)."""
    r = np.sqrt(2.0 * np.arange(N, dtype=np.float32) + 1)
    A = -np.tril(np.outer(r, r), -1) - np.diag(np.arange(N, dtype=np.float32) + 1)
    return A.astype(np.float64), r.astype(np.float64)


def legt_not_halved(N):
    """LegT with window theta = 1 (the derivation's A, B) instead of s4's halved theta = 2."""
    q = np.arange(N)
    r = np.sqrt(2.0 * q + 1)
    n, k = q[:, None], q[None, :]
    sign = np.where(n >= k, 1.0, (-1.0) ** ((n - k) % 2))
    return -np.outer(r, r) * sign, r


def lagt_paper_convention(N):
    """The HiPPO paper's LagT (Laguerre polynomials under e^{-s}): A - I/2, i.e. -tril(ones)."""
    return -np.tril(np.ones((N, N))), np.ones(N)


def fout_decay_halved(N):
    """s4's 'fourier_decay' returned as 'fout': -B B^T / 2 and B / 2."""
    B = np.zeros(N)
    B[0::2] = math.sqrt(2)
    B[0] = 1.0
    J = np.kron(np.diag(np.arange(N // 2, dtype=np.float64)), np.array([[0.0, -1.0], [1.0, 0.0]]))
    return np.pi * J - np.outer(B, B) / 2, B / 2


def fout_frequency_2pi(N):
    """Frequencies 2 pi k (a window theta = 1) instead of s4's pi k."""
    B = np.zeros(N)
    B[0::2] = math.sqrt(2)
    B[0] = 1.0
    J = np.kron(np.diag(np.arange(N // 2, dtype=np.float64)), np.array([[0.0, -1.0], [1.0, 0.0]]))
    return 2 * np.pi * J - np.outer(B, B), B


# --- ssm_kernel ----------------------------------------------------------------------------------

def ssm_off_by_one(Ad, Bd, C, L):
    """K_k = C Ad^{k+1} Bd: the kernel of y_k = C h_{k-1}, one step late (MATH.md: y_k depends on
    u_0..u_k)."""
    h = Ad @ Bd
    K = np.empty(L)
    for k in range(L):
        K[k] = C @ h
        h = Ad @ h
    return K


def ssm_transposed(Ad, Bd, C, L):
    """Powers of Ad^T (a row/column convention slip): right only for symmetric Ad."""
    h = np.array(Bd, dtype=np.float64)
    K = np.empty(L)
    for k in range(L):
        K[k] = C @ h
        h = Ad.T @ h
    return K


def ssm_float32(Ad, Bd, C, L):
    """The right recurrence in float32, returned as float64."""
    A32, h, c = (np.asarray(x, dtype=np.float32) for x in (Ad, Bd, C))
    K = np.empty(L)
    for k in range(L):
        K[k] = c @ h
        h = A32 @ h
    return K


# --- s4d_kernel ----------------------------------------------------------------------------------

def s4d_bilinear(Lambda, B, C, dt, L):
    """Bilinear Abar, Bbar where the role asks for ZOH."""
    x = Lambda * dt
    Abar = (1 + x / 2) / (1 - x / 2)
    Bbar = dt * B / (1 - x / 2)
    return 2 * ((C * Bbar) @ np.vander(Abar, L, increasing=True)).real


# --- dplr_kernel ---------------------------------------------------------------------------------

def dplr_zoh(Lambda, P, Q, B, C, dt, L):
    """ZOH discretization (MATH.md: "S4 described as ZOH-discretized"; S4 is bilinear)."""
    n = Lambda.shape[0]
    A = np.diag(Lambda) - P.T @ Q.conj()
    M = np.zeros((n + 1, n + 1), dtype=np.complex128)
    M[:n, :n], M[:n, n] = A * dt, B * dt
    E = scipy.linalg.expm(M)
    Abar, h = E[:n, :n], E[:n, n]
    K = np.empty(L, dtype=np.complex128)
    for k in range(L):
        K[k] = C @ h
        h = Abar @ h
    return K


def dplr_no_low_rank(Lambda, P, Q, B, C, dt, L):
    """MATH.md: "a simplified S4 kernel written as a Cauchy sum over eigenvalues without the
    low-rank correction": the kernel of diag(Lambda), P and Q ignored."""
    x = Lambda * dt
    Abar = (1 + x / 2) / (1 - x / 2)
    Bbar = dt * B / (1 - x / 2)
    return (C * Bbar) @ np.vander(Abar, L, increasing=True)
