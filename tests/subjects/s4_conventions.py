"""Kernels in S4's own conventions, and the adapters of docs/s4_integration.md ("Conventions users
trip on") that make them subjects of the contract's roles (issue 13, item 7).

``kernel_dplr_s4_convention(Lambda, P, Q, B, Ct, step, L)`` follows the convention of
annotated-s4's ``kernel_DPLR`` (written here from the mathematics, not copied): rank 1 (P, Q of
shape (N,)), the *conjugate* of S4's C~ = C (I - Abar^L) in (the Cauchy sums use conj(Ct)), the
generating function at z_j = e^{-2 pi i j/L} with g_j = 2/step (1 - z_j)/(1 + z_j), Woodbury,
``ifft``, and the *real part* out. The role ``dplr_kernel`` takes C itself and returns the complex
K, so ``dplr_kernel_from_s4_convention`` (the documented adapter) forms C~ from C, passes its
conjugate, and recovers the complex K from two real parts: K is linear in C, and
Re K(-i C) = Im K(C).

``s4d_kernel_one_of_pair`` returns Re sum_i C_i B_i ... without the 2 (one member of each
conjugate pair, as written in some S4D ports); ``s4d_kernel_from_one_of_pair`` is the adapter.
"""
from __future__ import annotations

import numpy as np


def kernel_dplr_s4_convention(Lambda, P, Q, B, Ct, step, L):
    z = np.exp(-2j * np.pi * np.arange(L) / L)
    g = 2.0 / step * (1.0 - z) / (1.0 + z)
    c = 2.0 / (1.0 + z)

    def cauchy(v):                      # sum_i v_i / (g_j - Lambda_i), for every j
        return (v[None, :] / (g[:, None] - Lambda[None, :])).sum(axis=1)

    k00, k01 = cauchy(Ct.conj() * B), cauchy(Ct.conj() * P)
    k10, k11 = cauchy(Q.conj() * B), cauchy(Q.conj() * P)
    return np.fft.ifft(c * (k00 - k01 / (1.0 + k11) * k10)).real


# --- the adapter of docs/s4_integration.md (keep the two in step) -------------------------------

def dplr_kernel_from_s4_convention(Lambda, P, Q, B, C, dt, L, kernel=kernel_dplr_s4_convention):
    """Role ``dplr_kernel`` (C in, complex K out) from a kernel taking conj(C~) and returning Re K.
    Rank 1 only (run with --ssm-without rank2); a generating-function kernel also needs
    --ssm-without marginal_Lambda."""
    n = Lambda.shape[0]
    A = np.diag(Lambda) - P.T @ Q.conj()                      # P, Q: (1, N)
    Abar = np.linalg.solve(np.eye(n) - dt / 2 * A, np.eye(n) + dt / 2 * A)
    Ct = C - C @ np.linalg.matrix_power(Abar, L)              # S4's C~ = C (I - Abar^L)

    def real_part(Cx):                                         # Re K for the row vector Cx
        return np.asarray(kernel(Lambda, P[0], Q[0], B, np.conj(Cx), dt, L), dtype=np.float64)

    return real_part(Ct) + 1j * real_part(-1j * Ct)           # Re K(-iC) = Im K(C)


def dplr_kernel_s4_convention_unadapted(Lambda, P, Q, B, C, dt, L):
    """The S4-convention kernel called as if it were the role (C for conj(C~), real K): wrong."""
    return kernel_dplr_s4_convention(Lambda, P[0], Q[0], B, C, dt, L).astype(np.complex128)


def s4d_kernel_one_of_pair(Lambda, B, C, dt, L):
    x = Lambda * dt
    return ((C * (np.expm1(x) / Lambda) * B) @ np.exp(x[:, None] * np.arange(L))).real


def s4d_kernel_from_one_of_pair(Lambda, B, C, dt, L):
    """Role ``s4d_kernel`` (2 Re: the conjugate partner's contribution) from Re of one member."""
    return 2.0 * s4d_kernel_one_of_pair(Lambda, B, C, dt, L)
