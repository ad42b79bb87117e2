"""Correct third-party-style subjects for the S4-family roles, each on a different algorithm from
ours (implementations/) and from each other. The meta-tests (tests/test_meta_s4.py) point the
suite at every one of them and expect every property to hold, e.g.

    python -m pytest properties --ssm-subject hippo_legs=tests/subjects/s4_correct.py:legs_loop
    python -m pytest properties \
        --ssm-subject dplr_kernel=tests/subjects/s4_correct.py:dplr_dense_power

Written as an outside user would: plain Python/NumPy/SciPy/torch, no argument checks, no import of
this repository (torch is imported inside the function that uses it). HiPPO conventions: those of
state-spaces/s4 ``transition()`` (oracle/hippo.py states each one).
"""
from __future__ import annotations

import cmath
import math

import numpy as np
import scipy.signal


# --- HiPPO: three constructions per measure -------------------------------------------------------
# *_loop: entry by entry with math.sqrt; *_similarity: vectorized, s4's way of building LegS as
# T M T^{-1} (T = diag sqrt(2n+1)) and the other measures from outer products, B as (N, 1);
# *_nplr: from the normal-plus-low-rank form, A = V (diag(Lambda) - P~^T conj(P~)) V^* with
# Lambda = shift + i mu, (mu, V) = eigh(-i S) of the skew part S written in closed form, P~ = V^* P.

def legs_loop(N):
    A = np.zeros((N, N))
    B = np.zeros(N)
    for n in range(N):
        B[n] = math.sqrt(2 * n + 1)
        for k in range(n):
            A[n, k] = -math.sqrt((2 * n + 1) * (2 * k + 1))
        A[n, n] = -(n + 1)
    return A, B


def legt_loop(N):
    A = np.zeros((N, N))
    B = np.zeros(N)
    for n in range(N):
        B[n] = 0.5 * math.sqrt(2 * n + 1)
        for k in range(N):
            sign = 1 if n >= k or (n - k) % 2 == 0 else -1
            A[n, k] = -0.5 * sign * math.sqrt((2 * n + 1) * (2 * k + 1))
    return A, B


def lagt_loop(N):
    A = np.zeros((N, N))
    for n in range(N):
        for k in range(n):
            A[n, k] = -1.0
        A[n, n] = -0.5
    return A, np.ones(N)


def fout_loop(N):
    B = np.zeros(N)
    B[0] = 1.0
    for n in range(2, N, 2):
        B[n] = math.sqrt(2)
    A = -np.outer(B, B)
    for k in range(1, N // 2):
        A[2 * k, 2 * k + 1] = -math.pi * k
        A[2 * k + 1, 2 * k] = math.pi * k
    return A, B


def legs_similarity(N):
    q = np.arange(N, dtype=np.float64)
    M = -np.tril(np.broadcast_to(2 * q + 1, (N, N))) + np.diag(q)  # M_nk = -(2k+1) (n >= k) + n
    T = np.diag(np.sqrt(2 * q + 1))
    return T @ M @ np.linalg.inv(T), np.sqrt(2 * q + 1)[:, None]


def legt_similarity(N):
    q = np.arange(N)
    r = np.sqrt(2.0 * q + 1)[:, None]
    n, k = np.meshgrid(q, q, indexing="ij")
    sign = np.where((n < k) & ((n - k) % 2 == 1), -1.0, 1.0)
    return -0.5 * (r * sign * r.T), 0.5 * r


def lagt_similarity(N):
    return -np.tril(np.ones((N, N)), -1) - 0.5 * np.eye(N), np.ones((N, 1))


def fout_similarity(N):
    """J block-diagonal, k [[0, -1], [1, 0]] on slots (2k, 2k+1), as a Kronecker product."""
    J = np.kron(np.diag(np.arange(N // 2, dtype=np.float64)), np.array([[0.0, -1.0], [1.0, 0.0]]))
    B = np.zeros((N, 1))
    B[0::2] = math.sqrt(2)
    B[0] = 1.0
    return np.pi * J - B @ B.T, B


def _from_nplr(S, P, shift, B):
    """A = V (diag(shift + i mu) - P~^T conj(P~)) V^*, B = V (V^* B), with -i S = V diag(mu) V^*."""
    mu, V = np.linalg.eigh(-1j * S)
    Pt = V.conj().T @ P.T  # (N, r)
    A = V @ (np.diag(shift + 1j * mu) - Pt @ Pt.conj().T) @ V.conj().T
    return A.real, (V @ (V.conj().T @ B)).real


def _sign(N):
    q = np.arange(N)
    return np.sign(q[:, None] - q[None, :]).astype(np.float64)  # sgn(n - k)


def legs_nplr(N):
    """A + P^T P = -I/2 + S, P_n = sqrt(n + 1/2), S_nk = -sgn(n - k) sqrt((2n+1)(2k+1))/2."""
    r = np.sqrt(2.0 * np.arange(N) + 1)
    S = -0.5 * _sign(N) * np.outer(r, r)
    P = np.sqrt(np.arange(N) + 0.5)[None, :]
    return _from_nplr(S, P, -0.5, r)


def legt_nplr(N):
    """A + P^T P = S (rank 2: P_0 on even n, P_1 on odd n, both sqrt(n + 1/2));
    S_nk = -sgn(n - k) sqrt((2n+1)(2k+1))/2 where n - k is odd, 0 where it is even."""
    q = np.arange(N)
    r = np.sqrt(2.0 * q + 1)
    odd = (q[:, None] - q[None, :]) % 2 == 1
    S = np.where(odd, -0.5 * _sign(N) * np.outer(r, r), 0.0)
    P = np.zeros((2, N))
    P[q % 2, q] = np.sqrt(q + 0.5)
    return _from_nplr(S, P, 0.0, 0.5 * r)


def lagt_nplr(N):
    """A + P^T P = S with P_n = sqrt(1/2), S_nk = -sgn(n - k)/2."""
    return _from_nplr(-0.5 * _sign(N), np.full((1, N), math.sqrt(0.5)), 0.0, np.ones(N))


def fout_nplr(N):
    """A + B B^T = pi J (skew), P = B."""
    B = np.zeros(N)
    B[0::2] = math.sqrt(2)
    B[0] = 1.0
    S = np.zeros((N, N))
    for k in range(1, N // 2):
        S[2 * k, 2 * k + 1], S[2 * k + 1, 2 * k] = -math.pi * k, math.pi * k
    return _from_nplr(S, B[None, :], 0.0, B)


# --- ssm_kernel: K_k = C Ad^k Bd ------------------------------------------------------------------

def ssm_sequential(Ad, Bd, C, L):
    """The recurrence h_k = Ad h_{k-1}, K_k = C h_k."""
    h = np.array(Bd, dtype=np.float64)
    K = np.empty(L)
    for k in range(L):
        K[k] = C @ h
        h = Ad @ h
    return K


def ssm_row_recurrence(Ad, Bd, C, L):
    """From the left: c_k = c_{k-1} Ad, K_k = c_k Bd."""
    c = np.array(C, dtype=np.float64)
    K = np.empty(L)
    for k in range(L):
        K[k] = c @ Bd
        c = c @ Ad
    return K


def ssm_matrix_power(Ad, Bd, C, L):
    """Ad^k by repeated squaring (np.linalg.matrix_power) for every k."""
    return np.array([C @ np.linalg.matrix_power(Ad, k) @ Bd for k in range(L)])


def ssm_scipy_dimpulse(Ad, Bd, C, L):
    """scipy.signal.dimpulse of (Ad, Bd, C, D = 0): y_0 = D = 0, y_k = C Ad^{k-1} Bd."""
    n = Ad.shape[0]
    _, (y,) = scipy.signal.dimpulse((Ad, np.reshape(Bd, (n, 1)), np.reshape(C, (1, n)),
                                     np.zeros((1, 1)), 1), n=L + 1)
    return y[1:, 0].copy()


# --- s4d_kernel: K_k = 2 Re sum_i C_i Bbar_i Abar_i^k (ZOH) ---------------------------------------

def s4d_direct_loop(Lambda, B, C, dt, L):
    """Plain Python complex arithmetic: Abar = e^{lambda dt}, Bbar = (Abar - 1)/lambda B."""
    K = []
    for k in range(L):
        total = 0j
        for lam, b, c in zip(Lambda, B, C):
            abar = cmath.exp(lam * dt)
            total += c * (abar - 1) / lam * b * abar**k
        K.append(2 * total.real)
    return np.array(K)


def s4d_vander(Lambda, B, C, dt, L):
    """np.vander of Abar (powers by repeated products), expm1 for Bbar."""
    x = Lambda * dt
    V = np.vander(np.exp(x), L, increasing=True)  # (N, L): V[i, k] = Abar_i^k
    return 2 * ((C * np.expm1(x) / Lambda * B) @ V).real


def s4d_torch_exp(Lambda, B, C, dt, L):
    """S4D's own kernel computation, in torch complex128: exp(dt Lambda k) for all k at once."""
    import torch

    lam = torch.as_tensor(np.asarray(Lambda, dtype=np.complex128))
    b = torch.as_tensor(np.asarray(B, dtype=np.complex128))
    c = torch.as_tensor(np.asarray(C, dtype=np.complex128))
    dtA = lam * dt
    powers = dtA[:, None] * torch.arange(L, dtype=torch.float64)  # (N, L)
    weights = c * b * (torch.exp(dtA) - 1.0) / lam
    return (2 * torch.einsum("n,nl->l", weights, torch.exp(powers)).real).numpy()


# --- dplr_kernel: K_k = C Abar^k Bbar, A = diag(Lambda) - P^T conj(Q), bilinear -------------------

def _dense(Lambda, P, Q, B, dt):
    n = Lambda.shape[0]
    A = np.diag(Lambda) - P.T @ Q.conj()
    M = np.eye(n) - dt / 2 * A
    return np.linalg.solve(M, np.eye(n) + dt / 2 * A), np.linalg.solve(M, dt * B)


def dplr_dense_power(Lambda, P, Q, B, C, dt, L):
    """Dense bilinear discretization by LU solves, then the recurrence h_k = Abar h_{k-1}."""
    Abar, h = _dense(Lambda, P, Q, B, dt)
    K = np.empty(L, dtype=np.complex128)
    for k in range(L):
        K[k] = C @ h
        h = Abar @ h
    return K


def dplr_scipy_cont2discrete(Lambda, P, Q, B, C, dt, L):
    """scipy.signal.cont2discrete(method='bilinear') (its 'gbt' branch, alpha = 1/2: the contract's
    Abar, Bbar), then the Krylov columns Abar^k Bbar by doubling."""
    n = Lambda.shape[0]
    A = np.diag(Lambda) - P.T @ Q.conj()
    Abar, Bbar, _, _, _ = scipy.signal.cont2discrete(
        (A, B.reshape(n, 1), np.zeros((1, n)), np.zeros((1, 1))), dt, method="bilinear")
    X, power = Bbar, Abar
    while X.shape[1] < L:
        X = np.concatenate([X, power @ X], axis=1)
        power = power @ power
    return C @ X[:, :L]


def dplr_dense_generating_function(Lambda, P, Q, B, C, dt, L):
    """S4's truncated generating function with dense linear algebra: Khat_j = C~ (I - Abar z_j)^{-1}
    Bbar at z_j = e^{-2 pi i j/L}, C~ = C (I - Abar^L), K = ifft(Khat). Where I - Abar z_j is
    (nearly) singular (an eigenvalue of Abar on the unit circle at 1/z_j: C~ annihilates it), Khat_j
    is the geometric sum C sum_{k<L} (Abar z_j)^k Bbar instead, the top-right block of
    [[Abar z_j, I], [0, I]]^L."""
    n = Lambda.shape[0]
    Abar, Bbar = _dense(Lambda, P, Q, B, dt)
    Ct = C - C @ np.linalg.matrix_power(Abar, L)
    Khat = np.empty(L, dtype=np.complex128)
    for j in range(L):
        z = np.exp(-2j * np.pi * j / L)
        M = np.eye(n) - Abar * z
        if np.linalg.cond(M) < 1e6:
            Khat[j] = Ct @ np.linalg.solve(M, Bbar)
        else:
            block = np.zeros((2 * n, 2 * n), dtype=np.complex128)
            block[:n, :n], block[:n, n:], block[n:, n:] = Abar * z, np.eye(n), np.eye(n)
            Khat[j] = C @ np.linalg.matrix_power(block, L)[:n, n:] @ Bbar
    return np.fft.ifft(Khat)
