"""Classic algorithms with a known blind spot, for the opt-out meta-tests (issue 13, item 2).

``dplr_generating_function`` is S4's DPLR kernel as the paper computes it (MATH.md): the
truncated generating function at the roots of unity z_j = e^{-2 pi i j/L},

    Khat_j = C~ (I - Abar z_j)^{-1} Bbar = 2/(1 + z_j) C~ (g_j - A)^{-1} B,
    g_j = 2/dt (1 - z_j)/(1 + z_j),   A = diag(Lambda) - P^T conj(Q),   C~ = C (I - Abar^L),

with (g_j - A)^{-1} by Woodbury over the Cauchy resolvent R_j = 1/(g_j - Lambda), and
K = ifft(Khat). g_j is purely imaginary, so where some Re Lambda_i = 0 the resolvent meets a pole
(lambda = 0 at z_0 = 1: inf/NaN) or comes close to one (cancellation): the role's feature
``marginal_Lambda``. Everywhere else it is accurate. It conforms with
``--ssm-without marginal_Lambda`` and fails without it.

Self-contained NumPy, written for this suite (not copied from state-spaces/s4).
"""
from __future__ import annotations

import numpy as np


def dplr_generating_function(Lambda, P, Q, B, C, dt, L):
    Lambda, B, C, P, Q = (np.asarray(x, dtype=np.complex128) for x in (Lambda, B, C, P, Q))
    n, r = Lambda.shape[0], P.shape[0]
    A = np.diag(Lambda) - P.T @ Q.conj()
    Abar = np.linalg.solve(np.eye(n) - dt / 2 * A, np.eye(n) + dt / 2 * A)
    Ct = C - C @ np.linalg.matrix_power(Abar, L)
    Bbar_dense = np.linalg.solve(np.eye(n) - dt / 2 * A, dt * B)
    Khat = np.empty(L, dtype=np.complex128)
    with np.errstate(all="ignore"):
        for j in range(L):
            z = np.exp(-2j * np.pi * j / L)
            if j * 2 == L:  # z = -1: g is infinite; Khat = C~ (I + Abar)^{-1} Bbar directly
                Khat[j] = Ct @ np.linalg.solve(np.eye(n) + Abar, Bbar_dense)
                continue
            g = 2 / dt * (1 - z) / (1 + z)
            R = 1 / (g - Lambda)                          # Cauchy resolvent, diagonal
            u = (Ct * R) @ P.T                            # C~ R P^T        (r,)
            v = (Q.conj() * (R * B)).sum(axis=1)          # conj(Q) R B     (r,)
            W = np.eye(r) + (Q.conj() * R) @ P.T          # I + conj(Q) R P^T
            Khat[j] = 2 / (1 + z) * (Ct @ (R * B) - u @ np.linalg.solve(W, v))
    return np.fft.ifft(Khat)
