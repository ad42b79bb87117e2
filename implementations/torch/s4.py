"""S4-family kernels and the S4 layer in torch: the algorithms of implementations/numpy/s4.py
(read its docstring for the mathematics), on tensors.

Inputs may be tensors or NumPy arrays; the computation runs in ``dtype`` (float64 / complex128 by
default; float32 / complex64 on request) on the inputs' device (CPU for arrays).  The role
functions ``ssm_kernel``, ``s4d_kernel``, ``dplr_kernel`` return NumPy arrays (the contract's LTI
roles are "NumPy arrays in, array-likes out"); ``s4_layer`` returns a tensor.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = ["ssm_kernel", "s4d_kernel", "dplr_kernel", "discretize_dplr", "recurrence", "s4_layer"]

_COMPLEX = {torch.float64: torch.complex128, torch.float32: torch.complex64}


# --- argument checks ------------------------------------------------------------------------------

def _tensor(x, name, dtype=None, device=None):
    """x (tensor, array, sequence) -> tensor; TypeError naming x if it is not numeric."""
    if isinstance(x, torch.Tensor):
        t = x.detach().resolve_conj()
        if t.dtype == torch.bool:
            raise TypeError(f"{name} must be a numeric tensor; got dtype {t.dtype}")
    else:
        arr = np.asarray(x)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must be a numeric array; got dtype {arr.dtype}")
        t = torch.from_numpy(np.array(arr))  # a contiguous copy; keeps 0-d shapes
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must contain only finite numbers; got NaN or Inf")
    if dtype is not None:
        t = t.to(dtype)
    if device is not None:
        t = t.to(device)
    return t


def _real_dtype(dtype):
    if dtype not in _COMPLEX:
        raise ValueError(f"dtype must be torch.float64 or torch.float32; got {dtype}")
    return dtype, _COMPLEX[dtype]


def _vector(x, name, cdtype, n=None, device=None):
    t = _tensor(x, name, cdtype, device)
    if t.ndim != 1 or t.shape[0] == 0 or (n is not None and t.shape[0] != n):
        want = f"({n},)" if n is not None else "(N,) with N >= 1"
        raise ValueError(f"{name} must have shape {want}; got shape {tuple(t.shape)}")
    return t


def _low_rank(x, name, cdtype, n, device):
    t = _tensor(x, name, cdtype, device)
    if t.ndim != 2 or t.shape[1] != n or t.shape[0] < 1:
        raise ValueError(f"{name} must have shape (r, {n}) with r >= 1; got shape {tuple(t.shape)}")
    return t


def _dt(dt):
    if isinstance(dt, (bool, np.bool_)):
        raise TypeError("dt must be a real scalar; got a bool")
    t = _tensor(dt, "dt")
    if t.ndim != 0 or t.is_complex():
        raise ValueError(f"dt must be a real scalar of shape (); got shape {tuple(t.shape)}, "
                         f"dtype {t.dtype}")
    dt = float(t)
    if dt <= 0:
        raise ValueError(f"dt must be > 0; got {dt}")
    return dt


def _L(L):
    if isinstance(L, (bool, np.bool_)) or not isinstance(L, numbers.Integral) or L < 1:
        raise ValueError(f"L must be an int >= 1; got {L!r}")
    return int(L)


def _device_of(*xs):
    for x in xs:
        if isinstance(x, torch.Tensor):
            return x.device
    return torch.device("cpu")


def _numpy(t):
    return t.detach().cpu().resolve_conj().numpy()


# --- ssm_kernel -----------------------------------------------------------------------------------

def ssm_kernel(Ad, Bd, C, L, dtype=torch.float64):
    """K_k = C Ad^k Bd (k < L) by doubling the Krylov block [X, Ad^m X]; NumPy array out."""
    real, cplx = _real_dtype(dtype)
    device = _device_of(Ad, Bd, C)
    Ad, Bd, C = (_tensor(x, name, device=device) for x, name in ((Ad, "Ad"), (Bd, "Bd"), (C, "C")))
    if Ad.ndim != 2 or Ad.shape[0] != Ad.shape[1] or Ad.shape[0] == 0:
        raise ValueError(f"Ad must have shape (n, n) with n >= 1; got shape {tuple(Ad.shape)}")
    n = Ad.shape[0]
    if tuple(Bd.shape) != (n,):
        raise ValueError(f"Bd must have shape ({n},) to match Ad; got shape {tuple(Bd.shape)}")
    if tuple(C.shape) != (n,):
        raise ValueError(f"C must have shape ({n},) to match Ad; got shape {tuple(C.shape)}")
    L = _L(L)
    dt_ = cplx if any(x.is_complex() for x in (Ad, Bd, C)) else real
    power, X, C = Ad.to(dt_), Bd.to(dt_)[:, None], C.to(dt_)
    while X.shape[1] < L:
        X = torch.cat([X, power @ X], dim=1)
        if X.shape[1] < L:
            power = power @ power
    return _numpy(C @ X[:, :L])


# --- s4d_kernel -----------------------------------------------------------------------------------

def s4d_kernel(Lambda, B, C, dt, L, disc="zoh", dtype=torch.float64):
    """K_k = 2 Re sum_i C_i Bbar_i Abar_i^k by the Vandermonde product; ZOH (expm1) or bilinear."""
    if disc not in ("zoh", "bilinear"):
        raise ValueError(f"disc must be 'zoh' or 'bilinear'; got {disc!r}")
    real, cplx = _real_dtype(dtype)
    device = _device_of(Lambda, B, C)
    Lambda = _vector(Lambda, "Lambda", cplx, device=device)
    n = Lambda.shape[0]
    B, C = _vector(B, "B", cplx, n, device), _vector(C, "C", cplx, n, device)
    dt, L = _dt(dt), _L(L)
    x = Lambda * dt
    k = torch.arange(L, dtype=real, device=device)
    if disc == "zoh":
        zero = Lambda == 0
        safe = torch.where(zero, torch.ones_like(Lambda), Lambda)
        Bbar = torch.where(zero, torch.full_like(Lambda, dt), torch.expm1(x) / safe) * B
        log_Abar = x
    else:
        Abar = (1 + x / 2) / (1 - x / 2)
        Bbar = dt * B / (1 - x / 2)
        log_Abar = torch.log(Abar)
    V = torch.exp(log_Abar[:, None] * k[None, :])
    V[:, 0] = 1.0
    return _numpy(2 * ((C * Bbar) @ V).real)


# --- dplr_kernel ----------------------------------------------------------------------------------

def _dense_bilinear(Lambda, P, Q, B, dt):
    n = Lambda.shape[0]
    eye = torch.eye(n, dtype=Lambda.dtype, device=Lambda.device)
    A = torch.diag(Lambda) - P.T @ Q.conj()
    M = eye - dt / 2 * A
    Abar = torch.linalg.solve(M, eye + dt / 2 * A)
    Bbar = torch.linalg.solve(M, dt * B[:, None])[:, 0]
    return Abar, Bbar


def discretize_dplr(Lambda, P, Q, B, dt, dtype=torch.float64):
    """Dense bilinear (Abar, Bbar) tensors of A = diag(Lambda) - P^T conj(Q)."""
    _, cplx = _real_dtype(dtype)
    device = _device_of(Lambda, P, Q, B)
    Lambda = _vector(Lambda, "Lambda", cplx, device=device)
    n = Lambda.shape[0]
    P, Q = _low_rank(P, "P", cplx, n, device), _low_rank(Q, "Q", cplx, n, device)
    return _dense_bilinear(Lambda, P, Q, _vector(B, "B", cplx, n, device), _dt(dt))


def dplr_kernel(Lambda, P, Q, B, C, dt, L, dtype=torch.float64):
    """K_k = C Abar^k Bbar by Cauchy sums + Woodbury at the L-th roots of unity, C~ = C(I - Abar^L),
    2/(1+z) factor, exact limit at z = -1, inverse FFT; complex NumPy array out."""
    real, cplx = _real_dtype(dtype)
    device = _device_of(Lambda, P, Q, B, C)
    Lambda = _vector(Lambda, "Lambda", cplx, device=device)
    n = Lambda.shape[0]
    P, Q = _low_rank(P, "P", cplx, n, device), _low_rank(Q, "Q", cplx, n, device)
    if P.shape != Q.shape:
        raise ValueError(f"P and Q must have the same shape (r, {n}); got {tuple(P.shape)} and "
                         f"{tuple(Q.shape)}")
    B, C = _vector(B, "B", cplx, n, device), _vector(C, "C", cplx, n, device)
    dt, L = _dt(dt), _L(L)
    r = P.shape[0]

    Abar, Bbar = _dense_bilinear(Lambda, P, Q, B, dt)
    Ct = C - C @ torch.linalg.matrix_power(Abar, L)  # C~ = C (I - Abar^L)

    j = torch.arange(L, dtype=real, device=device)
    t = torch.tan(math.pi * j / L)
    half = L // 2 if L % 2 == 0 else None
    if half is not None:
        t[half] = 0.0  # overwritten by the limit below
    s = 1 + 1j * t  # 2/(1+z), z = exp(-2 pi i j/L)
    g = (2j / dt) * t  # (2/dt)(1-z)/(1+z)
    diff = g[:, None] - Lambda[None, :]
    R = 1.0 / diff  # (L, N)
    amplification = ((g.abs()[:, None] + Lambda.abs()[None, :] + 2 / dt) / diff.abs()).amax(dim=1)

    Qc = Q.conj()
    k00 = R @ (Ct * B)
    k01 = R @ (Ct[:, None] * P.T)  # (L, r)
    k10 = R @ (Qc.T * B[:, None])  # (L, r)
    W = torch.empty((L, r, r), dtype=cplx, device=device)
    for a in range(r):
        for b in range(r):
            W[:, a, b] = float(a == b) + R @ (Qc[a] * P[b])
    if r == 1:
        woodbury = k01[:, 0] * k10[:, 0] / W[:, 0, 0]
    else:
        woodbury = (k01 * torch.linalg.solve(W, k10[:, :, None])[:, :, 0]).sum(dim=1)
    Khat = s * (k00 - woodbury)
    if half is not None:
        Khat[half] = dt / 2 * (Ct @ B)  # exact limit at z = -1
    # g(z_j) at (or near) an eigenvalue of diag(Lambda): the geometric sum instead (numpy docstring)
    bad = ~(amplification <= _MAX_AMPLIFICATION)
    for jj in torch.nonzero(bad).flatten().tolist():
        if jj != half:
            z = complex(math.cos(2 * math.pi * jj / L), -math.sin(2 * math.pi * jj / L))
            Khat[jj] = C @ _geometric_sum(Abar * z, L) @ Bbar
    return _numpy(torch.fft.ifft(Khat))


_MAX_AMPLIFICATION = 1e4


def _geometric_sum(X, L):
    """sum_{k<L} X^k: the top-right block of [[X, I], [0, I]]^L."""
    n = X.shape[0]
    eye = torch.eye(n, dtype=X.dtype, device=X.device)
    block = torch.zeros((2 * n, 2 * n), dtype=X.dtype, device=X.device)
    block[:n, :n], block[:n, n:], block[n:, n:] = X, eye, eye
    return torch.linalg.matrix_power(block, L)[:n, n:]


# --- recurrent mode and the layer -----------------------------------------------------------------

def recurrence(Ad, Bd, C, u, dtype=torch.float64):
    """y_k = C h_k, h_k = Ad h_{k-1} + Bd u_k, h_{-1} = 0 (complex tensor out)."""
    _, cplx = _real_dtype(dtype)
    device = _device_of(Ad, Bd, C, u)
    Ad, Bd, C, u = (_tensor(x, nm, cplx, device) for x, nm in ((Ad, "Ad"), (Bd, "Bd"), (C, "C"), (u, "u")))
    if u.ndim != 1:
        raise ValueError(f"u must have shape (L,); got shape {tuple(u.shape)}")
    h = torch.zeros(Ad.shape[0], dtype=cplx, device=device)
    ys = []
    for k in range(u.shape[0]):
        h = Ad @ h + Bd * u[k]
        ys.append(C @ h)
    return torch.stack(ys)


def _causal_conv(K, u):
    """Causal convolution along the last axis by FFT, zero-padded to 2L."""
    L = u.shape[-1]
    n = 2 * L
    return torch.fft.irfft(torch.fft.rfft(u, n) * torch.fft.rfft(K, n), n)[..., :L]


def s4_layer(u, Lambda, P, Q, B, C, D, dt, mode="conv", dtype=torch.float64):
    """S4 layer over H channels (see implementations.numpy.s4.s4_layer): u (..., H, L) real;
    Lambda, B, C (H, N); P, Q (H, r, N); D, dt (H,).  Returns a real tensor (..., H, L)."""
    if mode not in ("conv", "recurrent"):
        raise ValueError(f"mode must be 'conv' or 'recurrent'; got {mode!r}")
    real, cplx = _real_dtype(dtype)
    device = _device_of(u, Lambda, P, Q, B, C, D, dt)
    u = _tensor(u, "u", device=device)
    if u.is_complex() or u.ndim < 2:
        raise ValueError(f"u must be real with shape (..., H, L); got shape {tuple(u.shape)}")
    u = u.to(real)
    H, L = u.shape[-2:]
    Lambda = _tensor(Lambda, "Lambda", cplx, device)
    if Lambda.ndim != 2 or Lambda.shape[0] != H:
        raise ValueError(f"Lambda must have shape ({H}, N); got shape {tuple(Lambda.shape)}")
    N = Lambda.shape[1]
    P, Q = _tensor(P, "P", cplx, device), _tensor(Q, "Q", cplx, device)
    for name, M in (("P", P), ("Q", Q)):
        if M.ndim != 3 or M.shape[0] != H or M.shape[2] != N or M.shape != P.shape:
            raise ValueError(f"{name} must have shape ({H}, r, {N}), the same for P and Q; "
                             f"got shape {tuple(M.shape)}")
    B, C = _tensor(B, "B", cplx, device), _tensor(C, "C", cplx, device)
    for name, M in (("B", B), ("C", C)):
        if tuple(M.shape) != (H, N):
            raise ValueError(f"{name} must have shape ({H}, {N}); got shape {tuple(M.shape)}")
    D, dts = _tensor(D, "D", device=device), _tensor(dt, "dt", device=device)
    for name, M in (("D", D), ("dt", dts)):
        if tuple(M.shape) != (H,) or M.is_complex():
            raise ValueError(f"{name} must be real with shape ({H},); got shape {tuple(M.shape)}")
    D = D.to(real)
    outs = []
    for h in range(H):
        uh = u[..., h, :]
        if mode == "conv":
            K = torch.as_tensor(dplr_kernel(Lambda[h], P[h], Q[h], B[h], C[h], dts[h], L, dtype),
                                device=device).real.to(real)
            yh = _causal_conv(K, uh)
        else:
            Abar, Bbar = _dense_bilinear(Lambda[h], P[h], Q[h], B[h], float(dts[h]))
            state = torch.zeros(uh.shape[:-1] + (N,), dtype=cplx, device=device)
            ys = []
            for k in range(L):
                state = state @ Abar.T + Bbar * uh[..., k, None]
                ys.append((state @ C[h]).real)
            yh = torch.stack(ys, dim=-1)
        outs.append(yh + D[h] * uh)
    return torch.stack(outs, dim=-2)
