"""S4-family convolution kernels and the S4 layer (NumPy, float64 / complex128).

Roles (../../shared/CONTRACT.md):
    ssm_kernel(Ad, Bd, C, L)                    K_k = C Ad^k Bd, k < L
    s4d_kernel(Lambda, B, C, dt, L)             K_k = 2 Re sum_i C_i Bbar_i Abar_i^k (ZOH)
    dplr_kernel(Lambda, P, Q, B, C, dt, L)      K_k = C Abar^k Bbar, A = diag(Lambda) - P^T conj(Q),
                                                bilinear Abar, Bbar; complex
and, not roles: ``discretize_dplr``, the recurrent mode ``recurrence`` / ``step``, and
``s4_layer`` (kernel, FFT causal convolution, D skip, H channels), whose convolutional and
recurrent modes agree.

The DPLR kernel is S4's algorithm (Gu, Goel, Re 2021, Alg. 1; derivation in oracle/dplr.py):
evaluate the truncated generating function Khat(z) = sum_{k<L} K_k z^k at the L-th roots of
unity z_j = exp(-2 pi i j/L) as
    Khat(z) = 2/(1+z) [Ct R B - Ct R P^T (I + conj(Q) R P^T)^{-1} conj(Q) R B],
    R = diag(1/(g(z) - Lambda)),  g(z) = (2/dt)(1-z)/(1+z),  Ct = C (I - Abar^L),
(Cauchy sums and Woodbury), then K = ifft(Khat).  On the unit circle, with theta_j = 2 pi j/L,
(1 - z)/(1 + z) = i tan(theta_j/2) and 2/(1 + z) = 1 + i tan(theta_j/2), which we use directly;
z = -1 (j = L/2, even L) is a removable singularity whose limit is Khat = (dt/2) Ct B.
Memory is O(N L) (the L x N Cauchy matrix), never (L, N, N).
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["ssm_kernel", "s4d_kernel", "dplr_kernel", "discretize_dplr", "recurrence", "step",
           "s4_layer"]


# --- argument checks ------------------------------------------------------------------------------

def _array(x, name):
    if hasattr(x, "detach") and hasattr(x, "resolve_conj"):  # torch tensor, without importing torch
        x = x.detach().cpu().resolve_conj().numpy()
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite numbers; got NaN or Inf")
    return arr


def _vector(x, name, n=None):
    arr = _array(x, name).astype(np.complex128)
    if arr.ndim != 1 or arr.shape[0] == 0 or (n is not None and arr.shape[0] != n):
        want = f"({n},)" if n is not None else "(N,) with N >= 1"
        raise ValueError(f"{name} must have shape {want}; got shape {arr.shape}")
    return arr


def _low_rank(x, name, n):
    arr = _array(x, name).astype(np.complex128)
    if arr.ndim != 2 or arr.shape[1] != n or arr.shape[0] < 1:
        raise ValueError(f"{name} must have shape (r, {n}) with r >= 1; got shape {arr.shape}")
    return arr


def _dt(dt):
    if isinstance(dt, (bool, np.bool_)):
        raise TypeError("dt must be a real scalar; got a bool")
    arr = _array(dt, "dt")
    if arr.ndim != 0 or np.iscomplexobj(arr):
        raise ValueError(f"dt must be a real scalar of shape (); got shape {arr.shape}, dtype {arr.dtype}")
    dt = float(arr)
    if dt <= 0:
        raise ValueError(f"dt must be > 0; got {dt}")
    return dt


def _L(L):
    if isinstance(L, (bool, np.bool_)) or not isinstance(L, numbers.Integral) or L < 1:
        raise ValueError(f"L must be an int >= 1; got {L!r}")
    return int(L)


def _dplr_args(Lambda, P, Q, B, C, dt, L):
    Lambda = _vector(Lambda, "Lambda")
    n = Lambda.shape[0]
    P, Q = _low_rank(P, "P", n), _low_rank(Q, "Q", n)
    if P.shape != Q.shape:
        raise ValueError(f"P and Q must have the same shape (r, {n}); got {P.shape} and {Q.shape}")
    return Lambda, P, Q, _vector(B, "B", n), _vector(C, "C", n), _dt(dt), _L(L)


# --- ssm_kernel -----------------------------------------------------------------------------------

def ssm_kernel(Ad, Bd, C, L):
    """K (L,) with K_k = C Ad^k Bd, by doubling the Krylov block:
    X_{2m} = [X_m, Ad^m X_m], Ad^{2m} = (Ad^m)^2  (log2 L products; O(n L) memory)."""
    Ad = _array(Ad, "Ad")
    if Ad.ndim != 2 or Ad.shape[0] != Ad.shape[1] or Ad.shape[0] == 0:
        raise ValueError(f"Ad must have shape (n, n) with n >= 1; got shape {Ad.shape}")
    n = Ad.shape[0]
    Bd, C = _array(Bd, "Bd"), _array(C, "C")
    if Bd.shape != (n,):
        raise ValueError(f"Bd must have shape ({n},) to match Ad; got shape {Bd.shape}")
    if C.shape != (n,):
        raise ValueError(f"C must have shape ({n},) to match Ad; got shape {C.shape}")
    L = _L(L)
    dtype = np.result_type(Ad, Bd, C, np.float64)
    power = Ad.astype(dtype)
    X = Bd.astype(dtype)[:, None]  # columns Ad^k Bd, k < m
    while X.shape[1] < L:
        X = np.concatenate([X, power @ X], axis=1)
        if X.shape[1] < L:
            power = power @ power
    return C.astype(dtype) @ X[:, :L]


# --- s4d_kernel -----------------------------------------------------------------------------------

def s4d_kernel(Lambda, B, C, dt, L, disc="zoh"):
    """K (L,) real, K_k = 2 Re sum_i C_i Bbar_i Abar_i^k, by the Vandermonde product (S4D).

    disc='zoh' (the role): Abar = exp(x), Bbar = (exp(x) - 1)/lambda B, x = lambda dt, with expm1
    (no cancellation for small |x|; lambda = 0 gives its limit dt B).
    disc='bilinear': Abar = (1 + x/2)/(1 - x/2), Bbar = dt B/(1 - x/2).
    The Vandermonde matrix Abar_i^k = exp(k log Abar_i) is (N, L): O(N L) memory."""
    if disc not in ("zoh", "bilinear"):
        raise ValueError(f"disc must be 'zoh' or 'bilinear'; got {disc!r}")
    Lambda = _vector(Lambda, "Lambda")
    n = Lambda.shape[0]
    B, C = _vector(B, "B", n), _vector(C, "C", n)
    dt, L = _dt(dt), _L(L)
    x = Lambda * dt
    k = np.arange(L)
    if disc == "zoh":
        safe = np.where(Lambda == 0, 1.0, Lambda)
        Bbar = np.where(Lambda == 0, dt, np.expm1(x) / safe) * B
        log_Abar = x
    else:
        Abar = (1 + x / 2) / (1 - x / 2)
        Bbar = dt * B / (1 - x / 2)
        with np.errstate(divide="ignore"):
            log_Abar = np.log(Abar)  # Abar = 0 (x = -2) gives -inf: exp(-inf k) = 0 for k > 0
    with np.errstate(invalid="ignore"):
        V = np.exp(log_Abar[:, None] * k[None, :])
    V[:, 0] = 1.0
    return 2 * ((C * Bbar) @ V).real


# --- dplr_kernel ----------------------------------------------------------------------------------

def discretize_dplr(Lambda, P, Q, B, dt):
    """Dense bilinear (Abar, Bbar) of A = diag(Lambda) - P^T conj(Q)."""
    Lambda = _vector(Lambda, "Lambda")
    n = Lambda.shape[0]
    P, Q = _low_rank(P, "P", n), _low_rank(Q, "Q", n)
    B, dt = _vector(B, "B", n), _dt(dt)
    A = np.diag(Lambda) - P.T @ Q.conj()
    M = np.eye(n) - dt / 2 * A
    Abar = np.linalg.solve(M, np.eye(n) + dt / 2 * A)
    Bbar = np.linalg.solve(M, dt * B)
    return Abar, Bbar


def dplr_kernel(Lambda, P, Q, B, C, dt, L):
    """K (L,) complex, K_k = C Abar^k Bbar (bilinear, A = diag(Lambda) - P^T conj(Q), rank r),
    by Cauchy sums + Woodbury at the roots of unity and an inverse FFT (see the module docstring)."""
    Lambda, P, Q, B, C, dt, L = _dplr_args(Lambda, P, Q, B, C, dt, L)
    r = P.shape[0]
    Abar, Bbar = discretize_dplr(Lambda, P, Q, B, dt)
    Ct = C - C @ np.linalg.matrix_power(Abar, L)  # C~ = C (I - Abar^L), binary powering

    j = np.arange(L)
    half = L // 2 if L % 2 == 0 else None
    t = np.tan(np.pi * j / L)
    if half is not None:
        t[half] = 0.0  # placeholder; overwritten by the limit below
    s = 1 + 1j * t  # 2/(1+z)
    g = (2j / dt) * t  # (2/dt)(1-z)/(1+z)
    # inf/nan appear only at roots where g(z_j) hits some lambda_i; those are replaced below
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        diff = g[:, None] - Lambda[None, :]
        R = 1.0 / diff  # (L, N) Cauchy matrix
        # relative error of R_i from rounding g and lambda_i: u (|g| + |lambda_i|)/|g - lambda_i|;
        # + 2/dt, the scale of g: an eigenvalue that is 0 up to rounding (HiPPO-LagT/LegT, odd N)
        # met at z = 1 (g = 0) has |R| ~ 1e16 that Woodbury would cancel
        amplification = ((np.abs(g)[:, None] + np.abs(Lambda)[None, :] + 2 / dt) / np.abs(diff)).max(axis=1)
        Qc = Q.conj()
        k00 = R @ (Ct * B)  # Ct R B
        k01 = R @ (Ct[:, None] * P.T)  # (L, r): Ct R P^T
        k10 = R @ (Qc.T * B[:, None])  # (L, r): conj(Q) R B
        W = np.empty((L, r, r), dtype=np.complex128)  # I + conj(Q) R P^T
        for a in range(r):
            for b in range(r):
                W[:, a, b] = (a == b) + R @ (Qc[a] * P[b])
        if r == 1:
            woodbury = k01[:, 0] * k10[:, 0] / W[:, 0, 0]
        else:
            woodbury = (k01 * np.linalg.solve(W, k10[:, :, None])[:, :, 0]).sum(axis=1)
        Khat = s * (k00 - woodbury)
    if half is not None:
        Khat[half] = dt / 2 * (Ct @ B)  # the limit at z = -1
    # Where g(z_j) (nearly) hits an eigenvalue lambda_i the diagonal resolvent -- not A's -- is
    # singular and the Cauchy/Woodbury form cancels catastrophically (e.g. HiPPO-FouT, lambda = 0,
    # at z = 1).  There Khat_j = C~ (I - Abar z)^{-1} Bbar = C S_L(Abar z) Bbar with the
    # geometric sum S_L(X) = sum_{k<L} X^k, the top-right block of [[X, I], [0, I]]^L: no division.
    for jj in np.flatnonzero(~(amplification <= _MAX_AMPLIFICATION)):
        if jj != half:
            Khat[jj] = C @ _geometric_sum(Abar * np.exp(-2j * np.pi * jj / L), L) @ Bbar
    return np.fft.ifft(Khat)


# beyond this the Cauchy form loses more than ~1e4 u to the rounding of g - lambda_i
_MAX_AMPLIFICATION = 1e4


def _geometric_sum(X, L):
    """sum_{k<L} X^k as the top-right block of [[X, I], [0, I]]^L (binary powering)."""
    n = X.shape[0]
    block = np.zeros((2 * n, 2 * n), dtype=X.dtype)
    block[:n, :n], block[:n, n:], block[n:, n:] = X, np.eye(n), np.eye(n)
    return np.linalg.matrix_power(block, L)[:n, n:]


# --- recurrent mode -------------------------------------------------------------------------------

def step(Ad, Bd, C, h, u_k):
    """One recurrent step: h <- Ad h + Bd u_k, y_k = C h.  Returns (y_k, h)."""
    h = Ad @ h + Bd * u_k
    return C @ h, h


def recurrence(Ad, Bd, C, u):
    """y (L,) with h_k = Ad h_{k-1} + Bd u_k, h_{-1} = 0, y_k = C h_k (the kernel K_k = C Ad^k Bd
    convolved with u)."""
    Ad, Bd, C = _array(Ad, "Ad"), _array(Bd, "Bd"), _array(C, "C")
    u = _array(u, "u")
    if u.ndim != 1:
        raise ValueError(f"u must have shape (L,); got shape {u.shape}")
    dtype = np.result_type(Ad, Bd, C, u, np.float64)
    h = np.zeros(Ad.shape[0], dtype=dtype)
    y = np.empty(u.shape[0], dtype=dtype)
    for k, uk in enumerate(u):
        y[k], h = step(Ad, Bd, C, h, uk)
    return y


# --- the S4 layer ---------------------------------------------------------------------------------

def _causal_conv(K, u):
    """y_t = sum_{k<=t} K_k u_{t-k} along the last axis, by FFT with zero padding to 2L (a
    length-L FFT would be circular)."""
    L = u.shape[-1]
    n = 2 * L
    return np.fft.irfft(np.fft.rfft(u, n) * np.fft.rfft(K, n), n)[..., :L]


def s4_layer(u, Lambda, P, Q, B, C, D, dt, mode="conv"):
    """S4 layer, H independent channels: y = Re(K_h) * u_h + D_h u_h per channel h.

    u (..., H, L) real; Lambda, B, C (H, N); P, Q (H, r, N); D (H,); dt (H,) > 0.
    mode='conv': K_h = dplr_kernel(...) and an FFT causal convolution;
    mode='recurrent': h_k = Abar h_{k-1} + Bbar u_k, y_k = Re(C h_k) + D u_k (dense bilinear).
    Both compute the same map (the kernel's imaginary part never reaches a real input's output:
    Re(K * u) = Re(K) * u).  Returns float64 (..., H, L)."""
    if mode not in ("conv", "recurrent"):
        raise ValueError(f"mode must be 'conv' or 'recurrent'; got {mode!r}")
    u = _array(u, "u")
    if np.iscomplexobj(u) or u.ndim < 2:
        raise ValueError(f"u must be real with shape (..., H, L); got shape {u.shape}, dtype {u.dtype}")
    H, L = u.shape[-2:]
    Lambda = _array(Lambda, "Lambda")
    if Lambda.ndim != 2 or Lambda.shape[0] != H:
        raise ValueError(f"Lambda must have shape ({H}, N); got shape {Lambda.shape}")
    N = Lambda.shape[1]
    P, Q = _array(P, "P"), _array(Q, "Q")
    for name, M in (("P", P), ("Q", Q)):
        if M.ndim != 3 or M.shape[0] != H or M.shape[2] != N or M.shape != P.shape:
            raise ValueError(f"{name} must have shape ({H}, r, {N}), the same for P and Q; "
                             f"got shape {M.shape}")
    B, C = _array(B, "B"), _array(C, "C")
    for name, M in (("B", B), ("C", C)):
        if M.shape != (H, N):
            raise ValueError(f"{name} must have shape ({H}, {N}); got shape {M.shape}")
    D, dt = _array(D, "D"), _array(dt, "dt")
    for name, M in (("D", D), ("dt", dt)):
        if M.shape != (H,) or np.iscomplexobj(M):
            raise ValueError(f"{name} must be real with shape ({H},); got shape {M.shape}")
    u = u.astype(np.float64)
    y = np.empty(u.shape, dtype=np.float64)
    for h in range(H):
        if mode == "conv":
            K = dplr_kernel(Lambda[h], P[h], Q[h], B[h], C[h], dt[h], L).real
            y[..., h, :] = _causal_conv(K, u[..., h, :])
        else:
            Abar, Bbar = discretize_dplr(Lambda[h], P[h], Q[h], B[h], dt[h])
            state = np.zeros(u.shape[:-2] + (N,), dtype=np.complex128)
            for k in range(L):
                state = state @ Abar.T + Bbar * u[..., h, k, None]
                y[..., h, k] = (state @ C[h]).real
        y[..., h, :] += D[h] * u[..., h, :]
    return y
