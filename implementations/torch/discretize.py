"""Discretization of h' = A h + B u with step dt, computed by torch in float64 on the CPU.

Same roles and semantics as ``implementations.numpy.discretize`` (see its docstring): the LTI roles
take NumPy arrays (torch tensors are accepted too) and return NumPy float64 arrays. Only the
linear algebra differs: ``torch.linalg.matrix_exp`` for ZOH, ``torch.linalg.solve`` for the
generalized bilinear family.
"""
from __future__ import annotations

import numpy as np
import torch

from ssm_conformance.implementations.numpy.discretize import (split_van_loan, validate_alpha, validate_dt,
                                              validate_system, van_loan_block)

__all__ = ["zoh", "bilinear", "euler", "backward_euler", "generalized_bilinear"]


def zoh(A, B, dt):
    """Zero-order hold: Ad = e^{A dt}, Bd = (int_0^dt e^{A s} ds) B.

    exp([[A dt, B dt D], [0, 0]]) = [[Ad, Bd D], [0, I]] (Van Loan), D = diag(2^e) scaling the
    columns of B so that they do not inflate the norm matrix_exp picks its squarings from.
    """
    A, B = validate_system(A, B)
    dt = validate_dt(dt)
    n = A.shape[0]
    M, e = van_loan_block(A, B.reshape(n, -1), dt)
    E = expm(torch.from_numpy(M)).numpy()
    return split_van_loan(E, n, e, B.shape)


# torch.linalg.matrix_exp (torch 2.13, float64) errs by up to ~3000 ulps for 1-norms in about
# [0.004, 0.05] -- e.g. exp([[0.03, 0], [0, 0]])[0, 0] is off by 2e-11 relative -- while it is
# accurate above and below. Below SMALL_NORM we sum the Taylor series ourselves: with
# ||M||_1 <= 0.1, the terms after M^TAYLOR_DEGREE / TAYLOR_DEGREE! add < 0.1^15 / 15! ~ 1e-27.
SMALL_NORM = 0.1
TAYLOR_DEGREE = 14


def expm(M: torch.Tensor) -> torch.Tensor:
    """e^M for a square float64 tensor, accurate for every norm (see the note above)."""
    if float(M.abs().sum(dim=0).max()) > SMALL_NORM:
        return torch.linalg.matrix_exp(M)
    eye = torch.eye(M.shape[0], dtype=M.dtype)
    E = eye.clone()
    for k in range(TAYLOR_DEGREE, 0, -1):  # Horner: I + M/1 (I + M/2 (I + ... (I + M/14)))
        E = eye + (M @ E) / k
    return E


def _solve_shifted(A, B, dt, alpha, name):
    """(I - alpha dt A)^{-1} [I + (1 - alpha) dt A, dt B] with one LU factorization."""
    n = A.shape[0]
    A_t = torch.from_numpy(A)
    eye = torch.eye(n, dtype=torch.float64)
    M = eye - (alpha * dt) * A_t
    R = torch.cat([eye + ((1.0 - alpha) * dt) * A_t,
                   dt * torch.from_numpy(B).reshape(n, -1)], dim=1)
    try:
        X = torch.linalg.solve(M, R).numpy()
    except torch.linalg.LinAlgError:
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
    """Ad = (I - dt/2 A)^{-1}(I + dt/2 A), Bd = (I - dt/2 A)^{-1} dt B."""
    A, B = validate_system(A, B)
    dt = validate_dt(dt)
    return _solve_shifted(A, B, dt, 0.5, "bilinear")


def backward_euler(A, B, dt):
    """Ad = (I - dt A)^{-1}, Bd = (I - dt A)^{-1} dt B."""
    A, B = validate_system(A, B)
    dt = validate_dt(dt)
    return _solve_shifted(A, B, dt, 1.0, "backward_euler")


def euler(A, B, dt):
    """Ad = I + dt A, Bd = dt B."""
    A, B = validate_system(A, B)
    dt = validate_dt(dt)
    n = A.shape[0]
    Ad = torch.eye(n, dtype=torch.float64) + dt * torch.from_numpy(A)
    return Ad.numpy(), (dt * torch.from_numpy(B)).numpy()
