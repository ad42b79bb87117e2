"""Roles ``s4d_kernel`` and ``dplr_kernel`` on the GPU (kernels in ``s4.cu``).

These are linear time-invariant roles: NumPy arrays in (copied to the device, results copied back
as NumPy), or CuPy arrays / torch CUDA tensors (results in the same framework).  The compute dtype
is complex128 unless Lambda is complex64 / float32 / float16 (then complex64).

* ``s4d_kernel(Lambda, B, C, dt, L)``: K_k = 2 Re sum_i C_i B_i (e^{Lambda_i dt} - 1)/Lambda_i
  e^{k Lambda_i dt} (ZOH, one of each conjugate pair), by the Vandermonde kernel.  ``dt`` is a scalar
  or one step per mode, shape (N,).
* ``dplr_kernel(Lambda, P, Q, B, C, dt, L)``: K_k = C Abar^k Bbar for A = diag(Lambda) - P^T conj(Q)
  (P, Q of shape (r, N), r <= 4; 1-D means r = 1), bilinear Abar, Bbar.  Ct = C (I - Abar^L) is
  formed densely (Abar^L by repeated squaring, as state-spaces/s4 does); the Cauchy kernel with the
  Woodbury correction evaluates the generating function at the L-th roots of unity on the GPU, and
  ``cupy.fft.ifft`` turns it into K.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _interop as io
from . import _loader

SOURCE = "s4.cu"
ENTRY_POINTS = ("s4d_vandermonde_f32", "s4d_vandermonde_f64", "dplr_cauchy_f32_r2", "dplr_cauchy_f64_r2",
                "dplr_cauchy_f32_r4", "dplr_cauchy_f64_r4")
MAX_RANK = 4
_VAND_THREADS = 256
_DPLR_THREADS = 128
_DPLR_TILE = 64  # DPLR_TILE in s4.cu


def _length(L) -> int:
    if isinstance(L, (bool, np.bool_)) or not isinstance(L, (numbers.Integral, np.integer)) or int(L) < 1:
        raise ValueError(f"L must be a positive integer (got {L!r})")
    return int(L)


def _acc_of(a: io.Arg) -> str:
    return "float32" if a.dtype in ("complex64", "float32", "float16", "bfloat16") else "float64"


def _vector(a: io.Arg, n: int, acc: str):
    if a.shape != (n,):
        raise ValueError(f"{a.name} must have shape (N,) = ({n},) (got {a.shape})")
    return io.compute(a, acc, complex_=True)


def _scalar_dt(dt, name="dt") -> float:
    value = np.asarray(dt.get() if hasattr(dt, "get") else (dt.cpu() if hasattr(dt, "cpu") else dt))
    if value.size != 1:
        raise ValueError(f"{name} must be a scalar (got shape {value.shape})")
    value = float(value.reshape(()))
    if not value > 0:
        raise ValueError(f"{name} must be > 0 (got {value})")
    return value


def s4d_kernel(Lambda, B, C, dt, L):
    """K (L,) real; see module doc."""
    L = _length(L)
    la = io.arg(Lambda, "Lambda", host_ok=True)
    if la.ndim != 1:
        raise ValueError(f"Lambda must have shape (N,) (got {la.shape})")
    n = la.shape[0]
    acc = _acc_of(la)
    Ba, Ca = io.arg(B, "B", host_ok=True), io.arg(C, "C", host_ok=True)
    scalar_dt = np.ndim(dt) == 0 and not hasattr(dt, "__cuda_array_interface__") and not io._is_torch(dt)
    da = None if scalar_dt else io.arg(dt, "dt", host_ok=True)
    with io.on_device(la, Ba, Ca, da):
        import cupy

        lam = io.compute(la, acc, complex_=True)
        Bk, Ck = _vector(Ba, n, acc), _vector(Ca, n, acc)
        if da is None:
            dtk = cupy.full((n,), _scalar_dt(dt), dtype=acc)
        elif da.shape == (n,):
            dtk = io.compute(da, acc)
        elif da.data.size == 1:
            dtk = cupy.full((n,), _scalar_dt(da.data), dtype=acc)
        else:
            raise ValueError(f"dt must be a scalar or have shape (N,) = ({n},) (got {da.shape})")
        out = cupy.empty((L,), dtype=acc)
        acc_bytes = 8 if acc == "float64" else 4
        _loader.launch(SOURCE, f"s4d_vandermonde_{io.SUFFIX[acc]}", -(-L // _VAND_THREADS), _VAND_THREADS,
                       (lam.view(acc), Bk.view(acc), Ck.view(acc), dtk, out, np.int32(n), np.int64(L)),
                       shared_mem=4 * _VAND_THREADS * acc_bytes)
        return io.give(out, acc, la.kind)


def _bilinear_power_row(lam, P, Q, C, dt: float, L: int):
    """C Abar^L for A = diag(lam) - P^T conj(Q), Abar = (I - dt/2 A)^{-1} (I + dt/2 A), by repeated
    squaring of the dense N x N matrix (cuBLAS / cuSOLVER through CuPy)."""
    import cupy

    n = lam.shape[0]
    A = cupy.diag(lam) - P.T @ Q.conj()
    eye = cupy.eye(n, dtype=lam.dtype)
    Abar = cupy.linalg.solve(eye - (dt / 2) * A, eye + (dt / 2) * A)
    row, power, e = C.copy(), Abar, L
    while e:
        if e & 1:
            row = row @ power
        e >>= 1
        if e:
            power = power @ power
    return row


def dplr_kernel(Lambda, P, Q, B, C, dt, L):
    """K (L,) complex; see module doc."""
    L = _length(L)
    la = io.arg(Lambda, "Lambda", host_ok=True)
    if la.ndim != 1:
        raise ValueError(f"Lambda must have shape (N,) (got {la.shape})")
    n = la.shape[0]
    acc = _acc_of(la)
    Pa, Qa = io.arg(P, "P", host_ok=True), io.arg(Q, "Q", host_ok=True)
    Ba, Ca = io.arg(B, "B", host_ok=True), io.arg(C, "C", host_ok=True)
    shapes = []
    for a in (Pa, Qa):
        if a.ndim == 1:
            shapes.append(1)
            if a.shape != (n,):
                raise ValueError(f"{a.name} must have shape (r, N) = (r, {n}) or (N,) (got {a.shape})")
        elif a.ndim == 2 and a.shape[1] == n and a.shape[0] >= 1:
            shapes.append(a.shape[0])
        else:
            raise ValueError(f"{a.name} must have shape (r, N) = (r, {n}) (got {a.shape})")
    r = shapes[0]
    if shapes[1] != r:
        raise ValueError(f"P has rank {r} and Q has rank {shapes[1]}: they must agree")
    if r > MAX_RANK:
        raise ValueError(f"P, Q: rank r = {r} > {MAX_RANK} is not supported")
    step = _scalar_dt(dt)
    maxr = 2 if r <= 2 else 4
    with io.on_device(la, Pa, Qa, Ba, Ca):
        import cupy

        lam = io.compute(la, acc, complex_=True)
        Pk = io.compute(Pa, acc, complex_=True).reshape(r, n)
        Qk = io.compute(Qa, acc, complex_=True).reshape(r, n)
        Bk, Ck = _vector(Ba, n, acc), _vector(Ca, n, acc)
        Ct = Ck - _bilinear_power_row(lam, Pk, Qk, Ck, step, L)
        Qc = Qk.conj()
        # numerator slots, fixed layout for MAXR (see s4.cu): Ct B | Ct P_a | conj(Q_a) B | conj(Q_a) P_b
        V = cupy.zeros(((1 + maxr) ** 2, n), dtype=lam.dtype)
        V[0] = Ct * Bk
        V[1:1 + r] = Ct[None, :] * Pk
        V[1 + maxr:1 + maxr + r] = Qc * Bk[None, :]
        for a in range(r):
            base = 1 + 2 * maxr + a * maxr
            V[base:base + r] = Qc[a][None, :] * Pk
        khat = cupy.empty((L,), dtype=lam.dtype)
        acc_bytes = 8 if acc == "float64" else 4
        smem = (2 * _DPLR_TILE + (1 + maxr) ** 2 * 2 * _DPLR_TILE) * acc_bytes
        _loader.launch(SOURCE, f"dplr_cauchy_{io.SUFFIX[acc]}_r{maxr}", -(-L // _DPLR_THREADS), _DPLR_THREADS,
                       (lam.view(acc), V.view(acc), khat.view(acc), np.int32(n), np.int64(L),
                        (np.float64 if acc == "float64" else np.float32)(step), np.int32(r)),
                       shared_mem=smem)
        K = cupy.fft.ifft(khat)
        return io.give(K, str(K.dtype), la.kind)
