"""Deliberately wrong subjects with the contract's role signatures: each carries one mistake of
MATH.md that "looks right" (a stable-looking matrix, a decaying kernel), so only an oracle
catches it.  The suite must fail every one of them, e.g.

    python -m pytest properties --ssm-subject hippo_legs=tests/subjects/s4_wrong.py:legs_plus_diagonal
    python -m pytest properties --ssm-subject dplr_kernel=tests/subjects/s4_wrong.py:dplr_no_ctilde

Self-contained NumPy (no import of our implementations), so a fix there cannot hide a mistake here.
"""
from __future__ import annotations

import numpy as np


# --- hippo_legs ----------------------------------------------------------------------------------

def legs_plus_diagonal(N):
    """LegS with +(n+1) on the diagonal (a popular write-up's sign slip): eigenvalues +1..+N."""
    r = np.sqrt(2.0 * np.arange(N) + 1.0)
    A = -np.tril(np.outer(r, r), -1) + np.diag(np.arange(N) + 1.0)
    return A, r.copy()


# --- dplr_kernel ---------------------------------------------------------------------------------

def _dplr(Lambda, P, Q, B, C, dt, L, *, ctilde=True, factor=True, woodbury_sign=-1.0):
    Lambda, B, C = (np.asarray(x, dtype=np.complex128) for x in (Lambda, B, C))
    P, Q = np.asarray(P, dtype=np.complex128), np.asarray(Q, dtype=np.complex128)
    n, r = Lambda.shape[0], P.shape[0]
    A = np.diag(Lambda) - P.T @ Q.conj()
    M = np.eye(n) - dt / 2 * A
    Abar = np.linalg.solve(M, np.eye(n) + dt / 2 * A)
    Ct = C - C @ np.linalg.matrix_power(Abar, L) if ctilde else C
    z = np.exp(-2j * np.pi * np.arange(L) / L)
    with np.errstate(all="ignore"):
        g = 2 / dt * (1 - z) / (1 + z)
        s = 2 / (1 + z) if factor else np.ones(L)
    out = np.empty(L, dtype=np.complex128)
    for j in range(L):
        if np.abs(1 + z[j]) < 1e-12:  # z = -1: the limit (of the formula this subject uses)
            out[j] = (dt / 2 if factor else 0.0) * (Ct @ B)
            continue
        R = 1 / (g[j] - Lambda)
        u = (Ct * R) @ P.T
        v = (Q.conj() * (R * B)).sum(axis=1)
        W = np.eye(r) + (Q.conj() * R) @ P.T
        out[j] = s[j] * (Ct @ (R * B) + woodbury_sign * u @ np.linalg.solve(W, v))
    return np.fft.ifft(out)


def dplr_no_ctilde(Lambda, P, Q, B, C, dt, L):
    """Uses C where S4 needs C~ = C (I - Abar^L): the truncation of the generating function is
    lost, so K is aliased (right only where Abar^L is negligible)."""
    return _dplr(Lambda, P, Q, B, C, dt, L, ctilde=False)


def dplr_no_bilinear_factor(Lambda, P, Q, B, C, dt, L):
    """Drops the 2/(1+z) of (I - Abar z)^{-1} Bbar = 2/(1+z) (g(z) - A)^{-1} B."""
    return _dplr(Lambda, P, Q, B, C, dt, L, factor=False)


def dplr_woodbury_sign(Lambda, P, Q, B, C, dt, L):
    """Adds the Woodbury correction instead of subtracting it."""
    return _dplr(Lambda, P, Q, B, C, dt, L, woodbury_sign=+1.0)


# --- s4d_kernel ----------------------------------------------------------------------------------

def _s4d(Lambda, B, C, dt, L, *, two=2.0, euler_B=False):
    Lambda, B, C = (np.asarray(x, dtype=np.complex128) for x in (Lambda, B, C))
    x = Lambda * dt
    Bbar = dt * B if euler_B else (np.exp(x) - 1) / Lambda * B
    V = np.exp(x[:, None] * np.arange(L)[None, :])
    return two * ((C * Bbar) @ V).real


def s4d_no_factor_two(Lambda, B, C, dt, L):
    """Keeps one of each conjugate pair but forgets the 2 of 2 Re."""
    return _s4d(Lambda, B, C, dt, L, two=1.0)


def s4d_euler_B(Lambda, B, C, dt, L):
    """ZOH for A but Euler for B (Bbar = dt B) while the role asks for ZOH."""
    return _s4d(Lambda, B, C, dt, L, euler_B=True)
