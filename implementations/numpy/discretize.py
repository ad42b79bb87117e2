"""Discretization of a linear time-invariant system h' = A h + B u with step dt (NumPy, float64).

Roles (../../shared/CONTRACT.md, "Linear time-invariant pieces"), each ``f(A, B, dt) -> (Ad, Bd)``:

    zoh             Ad = e^{A dt},                   Bd = (int_0^dt e^{A s} ds) B = dt phi_1(A dt) B
    bilinear        Ad = (I - dt/2 A)^{-1}(I + dt/2 A), Bd = (I - dt/2 A)^{-1} dt B
    euler           Ad = I + dt A,                   Bd = dt B
    backward_euler  Ad = (I - dt A)^{-1},            Bd = (I - dt A)^{-1} dt B

and ``generalized_bilinear(A, B, dt, alpha)``, Ad = (I - alpha dt A)^{-1}(I + (1 - alpha) dt A),
Bd = (I - alpha dt A)^{-1} dt B, which is Euler at alpha = 0, bilinear at 1/2, backward Euler at 1.

A is (n, n) real, B is (n,) or (n, m) real, dt a finite positive scalar; Bd has B's shape.
The argument checks here are shared with ``implementations.torch``.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg

__all__ = ["zoh", "bilinear", "euler", "backward_euler", "generalized_bilinear"]


# --- argument checks (also used by implementations.torch and implementations.*.convolution) -----

def as_real_array(x, name: str) -> np.ndarray:
    """``x`` as a NumPy array of a real numeric dtype (int or float), else TypeError naming it.

    Torch tensors are accepted (detached, moved to the CPU, widened to float64) so that the
    same checks serve the torch implementations.
    """
    if hasattr(x, "detach") and hasattr(x, "is_complex"):  # a torch tensor, without importing torch
        if x.is_complex() or str(x.dtype) == "torch.bool":
            raise TypeError(f"{name} must be a real numeric array; got a tensor of dtype {x.dtype}")
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged nesting, objects NumPy cannot convert
        raise TypeError(f"{name} must be a real numeric array; could not convert "
                        f"{type(x).__name__}: {exc}") from None
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric array (int or float); got dtype {arr.dtype}")
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite numbers; got NaN or Inf")


def validate_system(A, B) -> tuple[np.ndarray, np.ndarray]:
    """A (n, n) with n >= 1 and B (n,) or (n, m), both real and finite -> float64 copies."""
    A = as_real_array(A, "A")
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"A must be a square matrix of shape (n, n) with n >= 1; "
                         f"got shape {A.shape}")
    n = A.shape[0]
    B = as_real_array(B, "B")
    if B.ndim not in (1, 2) or B.shape[0] != n:
        raise ValueError(f"B must have shape ({n},) or ({n}, m) to match A of shape {A.shape}; "
                         f"got shape {B.shape}")
    A = np.array(A, dtype=np.float64)  # copies: nothing below can touch the caller's arrays
    B = np.array(B, dtype=np.float64)
    check_finite(A, "A")
    check_finite(B, "B")
    return A, B


def validate_scalar(x, name: str) -> float:
    """A real scalar (Python number, NumPy scalar, 0-d array or tensor) -> float."""
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real scalar; got a bool")
    arr = as_real_array(x, name)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar of shape (); got shape {arr.shape}")
    return float(arr)


def validate_dt(dt) -> float:
    value = validate_scalar(dt, "dt")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"dt must be a finite scalar > 0; got {value!r}")
    return value


def validate_alpha(alpha) -> float:
    value = validate_scalar(alpha, "alpha")
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"alpha must be a scalar in [0, 1]; got {value!r}")
    return value


# --- zero-order hold ---------------------------------------------------------------------------

def van_loan_block(A: np.ndarray, B: np.ndarray, dt: float):
    """The block matrix M = [[A dt, B dt D], [0, 0]] with D = diag(2^e_j), and the exponents e.

    exp(M) = [[e^{A dt}, dt phi_1(A dt) B D], [0, I]] (Van Loan 1978): no A^{-1}, so singular and
    defective A are fine. Bd is linear in B, so each column of B may be scaled by a power of two
    (exact) and the result unscaled (exact). We scale column j so that ||B_j dt||_1 is just below
    max(||A dt||_1, 1): a large ||B|| would otherwise raise ||M|| and make the exponential take
    more squarings than e^{A dt} needs, each costing accuracy (torch.linalg.matrix_exp loses 8
    digits of Ad at ||B|| = 1e12 without this), and a tiny ||B|| could underflow.

    A (n, n), B (n, m) float64, checked. Returns (M, e) with e an int array of length m.
    """
    n, m = B.shape
    with np.errstate(over="ignore"):  # checked just below
        X = dt * A
        Y = dt * B
    target = max(np.abs(X).sum(axis=0).max(), 1.0)
    if not (np.isfinite(target) and np.all(np.isfinite(Y))):
        raise ValueError(f"A*dt and B*dt must be finite in float64 (||A dt||_1 = {target:g}); "
                         f"dt = {dt:g} is too large for this A and B")
    norms = np.abs(Y).sum(axis=0)
    # norm = f 2^en, target = g 2^et with f, g in [1/2, 1): 2^(et - en - 1) * norm < target.
    _, en = np.frexp(norms)
    _, et = np.frexp(target)
    e = np.where(norms > 0, et - en - 1, 0)
    M = np.zeros((n + m, n + m))
    M[:n, :n] = X
    M[:n, n:] = np.ldexp(Y, e)  # exact unless it underflows, which the scaling avoids
    return M, e


def split_van_loan(E: np.ndarray, n: int, e: np.ndarray, b_shape) -> tuple[np.ndarray, np.ndarray]:
    """exp(M) from :func:`van_loan_block` -> (Ad, Bd) with Bd unscaled to B's shape."""
    Ad = np.array(E[:n, :n])
    Bd = np.ldexp(E[:n, n:], -e)
    return Ad, Bd.reshape(b_shape)


def expm_van_loan(M: np.ndarray, n: int) -> np.ndarray:
    """exp(M) for M = [[X, Y], [0, 0]] (X n x n) by scaling to ||M||_1 <= 1 and squaring.

    scipy.linalg.expm evaluates its degree-13 Pade approximant unscaled up to ||M||_1 = 5.37,
    where rounding in p_13(M) and q_13(M) is amplified by up to e^{||M||}: expm([[4.02]]) is off
    by 2500 ulps. At ||M||_1 <= 1 it uses a low-degree approximant with that factor <= e, and we
    square the result ourselves, keeping the block structure exact:
    [[E, F], [0, I]]^2 = [[E^2, E F + F], [0, I]].
    """
    norm = np.abs(M).sum(axis=0).max()
    s = max(0, math.ceil(math.log2(norm))) if norm > 0 else 0
    E = scipy.linalg.expm(np.ldexp(M, -s))  # M / 2^s, exact
    E11, F = E[:n, :n], E[:n, n:]
    for _ in range(s):
        E11, F = E11 @ E11, E11 @ F + F
    E = np.zeros_like(M)
    E[:n, :n], E[:n, n:] = E11, F
    return E


def zoh(A, B, dt):
    """Zero-order hold: Ad = e^{A dt}, Bd = (int_0^dt e^{A s} ds) B, via one block exponential."""
    A, B = validate_system(A, B)
    dt = validate_dt(dt)
    n = A.shape[0]
    M, e = van_loan_block(A, B.reshape(n, -1), dt)
    return split_van_loan(expm_van_loan(M, n), n, e, B.shape)


# --- generalized bilinear family ---------------------------------------------------------------

def _solve_shifted(A, B, dt, alpha, name):
    """(I - alpha dt A)^{-1} [I + (1 - alpha) dt A, dt B] with one LU factorization."""
    n = A.shape[0]
    eye = np.eye(n)
    M = eye - (alpha * dt) * A
    R = np.concatenate([eye + ((1.0 - alpha) * dt) * A, dt * B.reshape(n, -1)], axis=1)
    try:
        X = scipy.linalg.solve(M, R, check_finite=False)
    except np.linalg.LinAlgError:
        raise np.linalg.LinAlgError(
            f"{name}: I - {alpha:g}*dt*A is singular (A has the eigenvalue 1/({alpha:g}*dt) = "
            f"{1.0 / (alpha * dt):g}), so the discretization is undefined") from None
    return X[:, :n], X[:, n:].reshape(B.shape)


def generalized_bilinear(A, B, dt, alpha):
    """Ad = (I - alpha dt A)^{-1}(I + (1 - alpha) dt A), Bd = (I - alpha dt A)^{-1} dt B."""
    A, B = validate_system(A, B)
    dt = validate_dt(dt)
    alpha = validate_alpha(alpha)
    return _solve_shifted(A, B, dt, alpha, "generalized_bilinear")


def bilinear(A, B, dt):
    """Bilinear (Tustin, original S4): Ad = (I - dt/2 A)^{-1}(I + dt/2 A), Bd = (I - dt/2 A)^{-1} dt B."""
    A, B = validate_system(A, B)
    dt = validate_dt(dt)
    return _solve_shifted(A, B, dt, 0.5, "bilinear")


def backward_euler(A, B, dt):
    """Backward Euler: Ad = (I - dt A)^{-1}, Bd = (I - dt A)^{-1} dt B."""
    A, B = validate_system(A, B)
    dt = validate_dt(dt)
    return _solve_shifted(A, B, dt, 1.0, "backward_euler")  # R = [I + 0*A, dt B] = [I, dt B]


def euler(A, B, dt):
    """Forward Euler: Ad = I + dt A, Bd = dt B (no solve: two roundings per element)."""
    A, B = validate_system(A, B)
    dt = validate_dt(dt)
    return np.eye(A.shape[0]) + dt * A, dt * B
