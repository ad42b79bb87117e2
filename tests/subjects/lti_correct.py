"""Correct third-party-style subjects for the LTI roles, each on a different algorithm from ours.

The meta-tests point the suite at these (``--ssm-subject discretize_zoh=tests/subjects/
lti_correct.py:zoh_series_scaling_squaring`` ...) and expect every property to hold. They are
written the way an outside user would write them: plain NumPy/SciPy/torch, no argument checks, no
import of this repository (torch is imported inside the functions that use it).

SciPy's ``cont2discrete`` (scipy/signal/_lti_conversion.py, SciPy 1.17) matches the contract:
'bilinear'/'tustin', 'euler'/'forward_diff' and 'backward_diff' all go through its 'gbt' branch,
ad = solve(I - alpha dt A, I + (1 - alpha) dt A), bd = solve(I - alpha dt A, dt B), with alpha =
1/2, 0, 1 -- the contract's formulas exactly (Bd carries dt, no sqrt(dt) or other factor); C and D
are transformed too but ignored here. 'zoh' is the Van Loan block exponential
expm(dt [[A, B], [0, 0]]) without any scaling of B.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.signal


def _cont2discrete(A, B, dt, method):
    """Adapter: scipy.signal.cont2discrete on (A, B, C = 0, D = 0) -> (Ad, Bd) of B's shape."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    n = A.shape[0]
    B2 = B.reshape(n, -1)
    C = np.zeros((1, n))
    D = np.zeros((1, B2.shape[1]))
    Ad, Bd, _, _, _ = scipy.signal.cont2discrete((A, B2, C, D), dt, method=method)
    return Ad, Bd.reshape(B.shape)


# --- discretize_zoh ------------------------------------------------------------------------------

def zoh_written_to_the_contract(A, B, dt):
    """Written to CONTRACT.md's signature: B is (n, m), so m = B.shape[1] (a 1-D B would raise
    here); Van Loan's block exponential expm(dt [[A, B], [0, 0]]) = [[Ad, Bd], [0, I]]."""
    n, m = A.shape[0], B.shape[1]
    block = np.zeros((n + m, n + m))
    block[:n, :n] = A * dt
    block[:n, n:] = B * dt
    E = scipy.linalg.expm(block)
    return E[:n, :n], E[:n, n:]


def zoh_python_control_c2d(A, B, dt):
    """python-control's ``c2d(sys, dt, method='zoh')`` on the state-space system (A, B, C = 0,
    D = 0) (control 0.10: scipy.signal.cont2discrete underneath); Ad, Bd as float64 arrays."""
    import control
    n, m = A.shape[0], B.shape[1]
    sysd = control.c2d(control.ss(A, B, np.zeros((1, n)), np.zeros((1, m))), dt, method="zoh")
    return np.asarray(sysd.A, dtype=np.float64), np.asarray(sysd.B, dtype=np.float64)


def zoh_scipy_cont2discrete(A, B, dt):
    """scipy.signal.cont2discrete(method='zoh'): expm of the unscaled Van Loan block."""
    return _cont2discrete(A, B, dt, "zoh")


def _exp_phi1(X):
    """(e^X, phi_1(X)) by Taylor series at X / 2^s and s doubling steps.

    ||X / 2^s||_1 <= 1/2, so 18 terms leave a truncation error below 0.5^19 / 19! ~ 1e-23.
    Doubling: e^{2Y} = (e^Y)^2 and phi_1(2Y) = 1/2 phi_1(Y) (e^Y + I)
    (phi_1(2Y) = int_0^1 e^{2Yt} dt = 1/2 (int_0^1 + int_1^2) e^{Yt} dt).
    """
    n = X.shape[0]
    eye = np.eye(n)
    norm = np.abs(X).sum(axis=0).max()
    s = max(0, math.ceil(math.log2(norm / 0.5))) if norm > 0 else 0
    Y = X / 2.0**s
    q = 18
    P = eye / math.factorial(q + 1)  # Horner for phi_1(Y) = sum_{k=0..q} Y^k / (k+1)!
    for k in range(q - 1, -1, -1):
        P = eye / math.factorial(k + 1) + Y @ P
    E = eye + Y @ P  # e^Y = I + Y phi_1(Y)
    for _ in range(s):
        P = 0.5 * (P @ (E + eye))
        E = E @ E
    return E, P


def zoh_series_scaling_squaring(A, B, dt):
    """e^{A dt} and phi_1(A dt) by Taylor series with scaling and squaring; Bd = dt phi_1(A dt) B."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    E, P = _exp_phi1(dt * A)
    return E, dt * (P @ B)


def zoh_expm_phi1_then_multiply(A, B, dt):
    """expm([[A dt, I], [0, 0]]) = [[e^{A dt}, phi_1(A dt)], [0, I]], then Bd = phi_1(A dt) (dt B)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    n = A.shape[0]
    M = np.zeros((2 * n, 2 * n))
    M[:n, :n] = dt * A
    M[:n, n:] = np.eye(n)
    E = scipy.linalg.expm(M)
    return E[:n, :n], E[:n, n:] @ (dt * B)


def zoh_torch_phi1_block(A, B, dt):
    """torch.linalg.matrix_exp of [[A dt, I], [0, 0]] in float64; Bd = phi_1(A dt) (dt B)."""
    import torch

    A_t = torch.as_tensor(np.asarray(A, dtype=np.float64))
    B_t = torch.as_tensor(np.asarray(B, dtype=np.float64))
    n = A_t.shape[0]
    M = torch.zeros(2 * n, 2 * n, dtype=torch.float64)
    M[:n, :n] = dt * A_t
    M[:n, n:] = torch.eye(n, dtype=torch.float64)
    E = torch.linalg.matrix_exp(M)
    return E[:n, :n].numpy(), (E[:n, n:] @ (dt * B_t)).numpy()


# --- discretize_bilinear ---------------------------------------------------------------------------

def bilinear_scipy_cont2discrete(A, B, dt):
    """scipy.signal.cont2discrete(method='bilinear') (= 'gbt' with alpha = 1/2)."""
    return _cont2discrete(A, B, dt, "bilinear")


def bilinear_inverse_then_multiply(A, B, dt):
    """Textbook: form (I - dt/2 A)^{-1} explicitly, then multiply."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    eye = np.eye(A.shape[0])
    inv = np.linalg.inv(eye - dt / 2 * A)
    return inv @ (eye + dt / 2 * A), inv @ (dt * B)


def bilinear_qr_solve(A, B, dt):
    """Householder QR of I - dt/2 A, then a triangular solve (backward stable, no pivoting)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    eye = np.eye(A.shape[0])
    Q, R = scipy.linalg.qr(eye - dt / 2 * A)
    Ad = scipy.linalg.solve_triangular(R, Q.T @ (eye + dt / 2 * A))
    Bd = scipy.linalg.solve_triangular(R, Q.T @ (dt * B))
    return Ad, Bd


def bilinear_right_division(A, B, dt):
    """Ad = (I + dt/2 A)(I - dt/2 A)^{-1}: the factors commute (both are functions of A), so the
    right division, solved as a transposed system, is the same matrix."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    eye = np.eye(A.shape[0])
    M = eye - dt / 2 * A
    Ad = np.linalg.solve(M.T, (eye + dt / 2 * A).T).T
    return Ad, np.linalg.solve(M, dt * B)


# --- discretize_euler ------------------------------------------------------------------------------

def euler_scipy_cont2discrete(A, B, dt):
    """scipy.signal.cont2discrete(method='euler') (= 'gbt' with alpha = 0: solves with I)."""
    return _cont2discrete(A, B, dt, "euler")


def euler_explicit_loops(A, B, dt):
    """Element by element in plain Python floats."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    n = A.shape[0]
    Ad = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            Ad[i, j] = (1.0 if i == j else 0.0) + dt * float(A[i, j])
    Bd = np.empty_like(B)
    for idx in np.ndindex(B.shape):
        Bd[idx] = dt * float(B[idx])
    return Ad, Bd


def euler_torch_float64(A, B, dt):
    """torch in float64: I + dt A, dt B."""
    import torch

    A_t = torch.as_tensor(np.asarray(A, dtype=np.float64))
    B_t = torch.as_tensor(np.asarray(B, dtype=np.float64))
    return (torch.eye(A_t.shape[0], dtype=torch.float64) + dt * A_t).numpy(), (dt * B_t).numpy()


# --- discretize_backward_euler ---------------------------------------------------------------------

def backward_euler_scipy_cont2discrete(A, B, dt):
    """scipy.signal.cont2discrete(method='backward_diff') (= 'gbt' with alpha = 1)."""
    return _cont2discrete(A, B, dt, "backward_diff")


def backward_euler_inverse_then_multiply(A, B, dt):
    """Textbook: Ad = (I - dt A)^{-1} explicitly, Bd = Ad (dt B)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    Ad = np.linalg.inv(np.eye(A.shape[0]) - dt * A)
    return Ad, Ad @ (dt * B)


def backward_euler_qr_solve(A, B, dt):
    """Householder QR of I - dt A, then triangular solves."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    eye = np.eye(A.shape[0])
    Q, R = scipy.linalg.qr(eye - dt * A)
    return (scipy.linalg.solve_triangular(R, Q.T),
            scipy.linalg.solve_triangular(R, Q.T @ (dt * B)))


def backward_euler_torch_solve(A, B, dt):
    """torch.linalg.solve in float64, one call per right-hand side."""
    import torch

    A_t = torch.as_tensor(np.asarray(A, dtype=np.float64))
    B_t = torch.as_tensor(np.asarray(B, dtype=np.float64))
    eye = torch.eye(A_t.shape[0], dtype=torch.float64)
    M = eye - dt * A_t
    Bd = torch.linalg.solve(M, (dt * B_t).reshape(A_t.shape[0], -1)).reshape(B_t.shape)
    return torch.linalg.solve(M, eye).numpy(), Bd.numpy()


# --- causal_conv -----------------------------------------------------------------------------------

def causal_conv_direct_loop(u, K):
    """y_t = K[:t+1] . u[t::-1], one dot product per output."""
    u = np.asarray(u, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    L = u.shape[0]
    y = np.empty(L)
    for t in range(L):
        y[t] = np.dot(K[: t + 1], u[t::-1])
    return y


def causal_conv_np_convolve(u, K):
    """np.convolve (direct sum, full length 2L - 1), first L outputs."""
    L = len(u)
    return np.convolve(np.asarray(u, dtype=np.float64), np.asarray(K, dtype=np.float64))[:L]


def causal_conv_scipy_fftconvolve(u, K):
    """scipy.signal.fftconvolve (pads to a fast length >= 2L - 1 itself), first L outputs."""
    L = len(u)
    return scipy.signal.fftconvolve(np.asarray(u, dtype=np.float64),
                                    np.asarray(K, dtype=np.float64))[:L]


def causal_conv_scipy_oaconvolve(u, K):
    """scipy.signal.oaconvolve (overlap-add FFT blocks), first L outputs."""
    L = len(u)
    return scipy.signal.oaconvolve(np.asarray(u, dtype=np.float64),
                                   np.asarray(K, dtype=np.float64))[:L]


def causal_conv_toeplitz_matvec(u, K):
    """Lower-triangular Toeplitz matrix T_{ts} = K_{t-s} (t >= s) times u."""
    u = np.asarray(u, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    T = scipy.linalg.toeplitz(K, np.zeros_like(K))
    return T @ u


def causal_conv_fft_power_of_two(u, K):
    """numpy.fft at the next power of two >= 2L (the usual S4 code pads to 2L)."""
    u = np.asarray(u, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    L = u.shape[0]
    n = 1 << (2 * L - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(u, n) * np.fft.rfft(K, n), n)[:L]


def causal_conv_torch_conv1d(u, K):
    """torch.nn.functional.conv1d (a cross-correlation) with the kernel flipped and L - 1 zeros
    padded on the left, so output t sees u_{t-L+1..t} against K_{L-1..0}."""
    import torch
    import torch.nn.functional as F

    u_t = torch.as_tensor(np.asarray(u, dtype=np.float64))
    K_t = torch.as_tensor(np.asarray(K, dtype=np.float64))
    L = u_t.shape[0]
    x = F.pad(u_t.reshape(1, 1, L), (L - 1, 0))
    return F.conv1d(x, K_t.flip(0).reshape(1, 1, L)).reshape(L).numpy()
