"""Deliberately wrong subjects for the LTI roles: each is a mistake seen in real code or write-ups.

The meta-tests point the suite at each of these and expect it to FAIL (exit status 1), in the
failure class its docstring names. Each docstring says what the mistake is and which inputs
expose it, so a meta-test can tell whether the suite's input space reaches them.
"""
from __future__ import annotations

import itertools
import math
import time

import numpy as np
import scipy.fft
import scipy.linalg


def _f64(*arrays):
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


def _van_loan(A, B, dt):
    """Correct ZOH (for the mixes below): expm of dt [[A, B], [0, 0]]."""
    n = A.shape[0]
    B2 = B.reshape(n, -1)
    M = np.zeros((n + B2.shape[1],) * 2)
    M[:n, :n] = dt * A
    M[:n, n:] = dt * B2
    E = scipy.linalg.expm(M)
    return E[:n, :n], E[:n, n:].reshape(B.shape)


# --- discretize_zoh ------------------------------------------------------------------------------

def zoh_inverse_formula_solve(A, B, dt):
    """Textbook Bd = A^{-1}(e^{A dt} - I) B via np.linalg.solve. Raises LinAlgError on singular A
    (feature singular_A); loses digits to cancellation in e^{A dt} - I when ||A dt|| is small or A
    is nearly singular (relative error ~ u / ||A dt||)."""
    A, B = _f64(A, B)
    Ad = scipy.linalg.expm(dt * A)
    return Ad, np.linalg.solve(A, (Ad - np.eye(A.shape[0])) @ B)


def zoh_inverse_formula_pinv(A, B, dt):
    """Bd = pinv(A)(e^{A dt} - I) B: "fixes" the singular case silently and wrongly -- on the null
    space of A the true Bd is dt B, pinv gives 0. Also cancels like the solve version."""
    A, B = _f64(A, B)
    Ad = scipy.linalg.expm(dt * A)
    return Ad, np.linalg.pinv(A) @ ((Ad - np.eye(A.shape[0])) @ B)


def zoh_euler_B(A, B, dt):
    """Mamba's convention sold as ZOH: Ad = e^{A dt} but Bd = dt B (Euler for B). Wrong whenever
    ||A dt|| is not negligible (relative error ~ ||A dt|| / 2)."""
    A, B = _f64(A, B)
    return scipy.linalg.expm(dt * A), dt * B


def zoh_elementwise_exp(A, B, dt):
    """np.exp(A dt) elementwise instead of the matrix exponential (Bd from the correct block).
    Wrong for every A that is not 1 x 1 (even diagonal A: exp(0) = 1 off the diagonal)."""
    A, B = _f64(A, B)
    _, Bd = _van_loan(A, B, dt)
    return np.exp(A * dt), Bd


def zoh_taylor_order2(A, B, dt):
    """Truncated Taylor series, no scaling: e^X ~ I + X + X^2/2, phi_1(X) ~ I + X/2 + X^2/6.
    Error ~ ||A dt||^3 / 6: fine for tiny steps, wrong for the rest."""
    A, B = _f64(A, B)
    eye = np.eye(A.shape[0])
    X = dt * A
    X2 = X @ X
    return eye + X + X2 / 2, dt * ((eye + X / 2 + X2 / 6) @ B)


def zoh_eigendecomposition(A, B, dt):
    """Diagonalize A = V diag(lam) V^{-1} and apply scalar ZOH per eigenvalue (expm1(x)/lam, with
    dt at lam = 0). Exact for diagonalizable A in exact arithmetic; for defective A (Jordan
    blocks) or nearly defective A, V is (nearly) singular and the result is garbage."""
    A, B = _f64(A, B)
    lam, V = np.linalg.eig(A)
    z = lam * dt
    e = np.exp(z)
    safe = np.where(z == 0, 1.0, z)
    phi = np.where(z == 0, 1.0, np.expm1(safe) / safe)  # phi_1(z) = (e^z - 1) / z
    Vinv = np.linalg.inv(V)
    Ad = (V * e) @ Vinv
    Bd = dt * ((V * phi) @ (Vinv @ B.astype(complex)))
    return Ad.real.copy(), Bd.real.copy()


def zoh_van_loan_B_not_scaled_by_dt(A, B, dt):
    """Van Loan block built as [[A dt, B], [0, 0]]: dt applied to A only, so Bd = phi_1(A dt) B,
    short of the factor dt. Right only at dt = 1."""
    A, B = _f64(A, B)
    n = A.shape[0]
    B2 = B.reshape(n, -1)
    M = np.zeros((n + B2.shape[1],) * 2)
    M[:n, :n] = dt * A
    M[:n, n:] = B2
    E = scipy.linalg.expm(M)
    return E[:n, :n], E[:n, n:].reshape(B.shape)


# --- discretize_bilinear ---------------------------------------------------------------------------

def bilinear_B_sign_flipped(A, B, dt):
    """Sign of dt/2 flipped in the B factor: Bd = (I + dt/2 A)^{-1} dt B (Ad correct)."""
    A, B = _f64(A, B)
    eye = np.eye(A.shape[0])
    Ad = np.linalg.solve(eye - dt / 2 * A, eye + dt / 2 * A)
    return Ad, np.linalg.solve(eye + dt / 2 * A, dt * B)


def bilinear_factors_swapped(A, B, dt):
    """Ad = (I + dt/2 A)^{-1}(I - dt/2 A): the inverse of the right Ad (the bilinear map of -A)."""
    A, B = _f64(A, B)
    eye = np.eye(A.shape[0])
    M = eye - dt / 2 * A
    return np.linalg.solve(eye + dt / 2 * A, M), np.linalg.solve(M, dt * B)


def bilinear_B_without_dt(A, B, dt):
    """Bd = (I - dt/2 A)^{-1} B: the dt factor on B forgotten. Right only at dt = 1."""
    A, B = _f64(A, B)
    eye = np.eye(A.shape[0])
    M = eye - dt / 2 * A
    return np.linalg.solve(M, eye + dt / 2 * A), np.linalg.solve(M, B)


def bilinear_B_half_dt(A, B, dt):
    """Bd = (I - dt/2 A)^{-1} B dt/2: the half step of the A factors copied onto B."""
    A, B = _f64(A, B)
    eye = np.eye(A.shape[0])
    M = eye - dt / 2 * A
    return np.linalg.solve(M, eye + dt / 2 * A), np.linalg.solve(M, dt / 2 * B)


def bilinear_without_half(A, B, dt):
    """dt instead of dt/2 in both factors: Ad = (I - dt A)^{-1}(I + dt A), Bd = (I - dt A)^{-1} dt B."""
    A, B = _f64(A, B)
    eye = np.eye(A.shape[0])
    M = eye - dt * A
    return np.linalg.solve(M, eye + dt * A), np.linalg.solve(M, dt * B)


def bilinear_float32(A, B, dt):
    """Correct formulas computed in float32 (as on many GPUs), returned as float64: ~1e-7 relative
    error, far outside a float64 tolerance."""
    A32 = np.asarray(A, dtype=np.float32)
    B32 = np.asarray(B, dtype=np.float32)
    h = np.float32(dt) / np.float32(2)
    eye = np.eye(A32.shape[0], dtype=np.float32)
    M = eye - h * A32
    Ad = np.linalg.solve(M, eye + h * A32)
    Bd = np.linalg.solve(M, np.float32(dt) * B32)
    return Ad.astype(np.float64), Bd.astype(np.float64)


# --- discretize_euler ------------------------------------------------------------------------------

def euler_missing_identity(A, B, dt):
    """Ad = dt A (the identity forgotten), Bd = dt B."""
    A, B = _f64(A, B)
    return dt * A, dt * B


def euler_B_without_dt(A, B, dt):
    """Ad = I + dt A, Bd = B (dt forgotten on B). Right only at dt = 1."""
    A, B = _f64(A, B)
    return np.eye(A.shape[0]) + dt * A, B.copy()


def euler_backward_instead(A, B, dt):
    """Backward Euler returned for forward Euler: Ad = (I - dt A)^{-1}, Bd = Ad dt B.
    Differs at second order, ~ ||dt A||^2."""
    A, B = _f64(A, B)
    Ad = np.linalg.inv(np.eye(A.shape[0]) - dt * A)
    return Ad, Ad @ (dt * B)


def euler_float32(A, B, dt):
    """I + dt A and dt B computed in float32, returned as float64 (precision loss ~1e-7)."""
    A32 = np.asarray(A, dtype=np.float32)
    B32 = np.asarray(B, dtype=np.float32)
    dt32 = np.float32(dt)
    Ad = np.eye(A32.shape[0], dtype=np.float32) + dt32 * A32
    return Ad.astype(np.float64), (dt32 * B32).astype(np.float64)


# --- discretize_backward_euler ---------------------------------------------------------------------

def backward_euler_as_forward(A, B, dt):
    """Forward Euler returned for backward Euler: Ad = I + dt A, Bd = dt B."""
    A, B = _f64(A, B)
    return np.eye(A.shape[0]) + dt * A, dt * B


def backward_euler_B_without_resolvent(A, B, dt):
    """Ad = (I - dt A)^{-1} but Bd = dt B: the resolvent forgotten on B."""
    A, B = _f64(A, B)
    return np.linalg.inv(np.eye(A.shape[0]) - dt * A), dt * B


def backward_euler_sign_flipped(A, B, dt):
    """(I + dt A)^{-1} instead of (I - dt A)^{-1} in both outputs."""
    A, B = _f64(A, B)
    M = np.eye(A.shape[0]) + dt * A
    return np.linalg.inv(M), np.linalg.solve(M, dt * B)


def backward_euler_transposed_solve(A, B, dt):
    """Row-major/column-major mix-up: solves with (I - dt A)^T. Right only for symmetric A."""
    A, B = _f64(A, B)
    Mt = (np.eye(A.shape[0]) - dt * A).T
    return np.linalg.inv(Mt), np.linalg.solve(Mt, dt * B)


def backward_euler_B_without_dt(A, B, dt):
    """Bd = (I - dt A)^{-1} B: dt forgotten on B. Right only at dt = 1."""
    A, B = _f64(A, B)
    Ad = np.linalg.inv(np.eye(A.shape[0]) - dt * A)
    return Ad, Ad @ B


# --- causal_conv: wrong numbers --------------------------------------------------------------------

def causal_conv_fft_circular(u, K):
    """FFT at length L, no zero padding: circular convolution; the tail wraps onto the head
    (y_t gets sum_{k>t} K_k u_{t-k+L}). Right only at L = 1."""
    u, K = _f64(u, K)
    L = u.shape[0]
    return np.fft.irfft(np.fft.rfft(u) * np.fft.rfft(K), L)


def causal_conv_fft_kernel_at_L(u, K):
    """Kernel transformed at length L, input at 2L; the kernel's L-point spectrum is zero-padded
    (in frequency, not in time) to the length of the input's, so its bins sit at the wrong
    frequencies."""
    u, K = _f64(u, K)
    L = u.shape[0]
    K_f = np.zeros(L + 1, dtype=complex)  # rfft at 2L has L + 1 bins
    K_L = np.fft.rfft(K)  # L // 2 + 1 bins
    K_f[: K_L.shape[0]] = K_L
    return np.fft.irfft(np.fft.rfft(u, 2 * L) * K_f, 2 * L)[:L]


def causal_conv_fft_pad_2L_minus_2(u, K):
    """Zero padding to 2L - 2, one short of 2L - 1: the last term of the full convolution,
    K_{L-1} u_{L-1}, wraps onto y_0. Right only at L = 1 or when K_{L-1} u_{L-1} = 0."""
    u, K = _f64(u, K)
    L = u.shape[0]
    n = max(2 * L - 2, 1)
    return np.fft.irfft(np.fft.rfft(u, n) * np.fft.rfft(K, n), n)[:L]


def causal_conv_off_by_one(u, K):
    """Index slip: y_t = sum_k K_k u_{t-k-1} (the output lags by one step; y_0 = 0)."""
    u, K = _f64(u, K)
    L = u.shape[0]
    return np.concatenate([[0.0], np.convolve(u, K)[: L - 1]])


def causal_conv_reversed_kernel(u, K):
    """conv1d-weight convention mixed up (weight[-1] multiplies u_t, as in causal-conv1d):
    y_t = sum_k K_{L-1-k} u_{t-k}, i.e. a correlation with K instead of a convolution."""
    u, K = _f64(u, K)
    L = u.shape[0]
    return np.convolve(u, K[::-1])[:L]


def causal_conv_fft_float32(u, K):
    """Correct padding, but the FFTs run in float32 (scipy.fft keeps single precision); returned
    as float64, so only the precision is wrong: ~1e-7 relative to ||K|| ||u||."""
    u32 = np.asarray(u, dtype=np.float32)
    K32 = np.asarray(K, dtype=np.float32)
    L = u32.shape[0]
    n = scipy.fft.next_fast_len(2 * L - 1, real=True)
    y = scipy.fft.irfft(scipy.fft.rfft(u32, n) * scipy.fft.rfft(K32, n), n)[:L]
    return y.astype(np.float64)


# --- causal_conv: the harness's failure classes (one each) -----------------------------------------

def causal_conv_mutates_input(u, K):
    """Failure class "mutated_input": reverses u in place as a scratch buffer for the direct sum
    and does not restore it. The output is right; the caller's u is left reversed (detectable
    whenever u is not a palindrome)."""
    L = len(u)
    u[:] = u[::-1].copy()  # u_rev[j] = u[L-1-j]
    y = np.empty(L)
    for t in range(L):
        # y_t = sum_{k<=t} K_k u_{t-k} = sum_k K_k u_rev[L-1-t+k]
        y[t] = np.dot(np.asarray(K[: t + 1], dtype=np.float64),
                      np.asarray(u[L - 1 - t:], dtype=np.float64))
    return y


def causal_conv_nondeterministic(u, K):
    """Failure class "nondeterministic": a correct direct sum plus a perturbation of 1..8 ulp that
    changes from call to call (like an unordered parallel reduction). Within any float64
    tolerance, so only the determinism check catches it. The perturbation follows a call counter,
    not a random draw: two consecutive calls always differ, so Hypothesis's replay of the shrunk
    example fails again. (A random 0..8 ulp draw agreed by chance with probability 1/17 at L = 1,
    and that replay then counted as flaky and printed no @reproduce_failure blob.)"""
    u, K = _f64(u, K)
    y = np.convolve(u, K)[: u.shape[0]]
    ulps = 1 + next(_NONDETERMINISTIC_CALLS) % 8
    return y + np.spacing(y) * ulps


_NONDETERMINISTIC_CALLS = itertools.count()


def causal_conv_wrong_shape(u, K):
    """Failure class "shape": returns L + 1 outputs (the loop bound of the full convolution)."""
    u, K = _f64(u, K)
    L = u.shape[0]
    full = np.concatenate([np.convolve(u, K), [0.0]])  # at least L + 1 long, even at L = 1
    return full[: L + 1]


def causal_conv_float32_output(u, K):
    """Failure class "dtype": right values, returned as float32."""
    u, K = _f64(u, K)
    return np.convolve(u, K)[: u.shape[0]].astype(np.float32)


def causal_conv_returns_nan(u, K):
    """Failure class "nan": the output buffer is NaN-initialized and the loop stops one short
    (range(L - 1)), so y_{L-1} stays NaN for every input."""
    u, K = _f64(u, K)
    L = u.shape[0]
    y = np.full(L, np.nan)
    for t in range(L - 1):
        y[t] = np.dot(K[: t + 1], u[t::-1])
    return y


def causal_conv_raises_on_L1(u, K):
    """Failure class "raised": FFT length 2^(floor(log2(L - 1)) + 2) (the power of two above
    2(L - 1)) -- right for L >= 2, but math.log2(0) raises ValueError at L = 1."""
    u, K = _f64(u, K)
    L = u.shape[0]
    n = 2 ** (int(math.log2(L - 1)) + 2)
    return np.fft.irfft(np.fft.rfft(u, n) * np.fft.rfft(K, n), n)[:L]


def causal_conv_hangs_on_L1(u, K):
    """Failure class "hang": sleeps for an hour when L == 1 (a wait on a condition that a
    one-sample input never meets); right otherwise."""
    u, K = _f64(u, K)
    L = u.shape[0]
    if L == 1:
        time.sleep(3600)
    return np.convolve(u, K)[:L]
