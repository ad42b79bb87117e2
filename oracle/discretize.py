"""Discretization oracles: zero-order hold and the generalized bilinear transform.

Continuous system h' = A h + B u, step dt.

ZOH (Van Loan):   exp(dt*[[A, B], [0, 0]]) = [[Ad, Bd], [0, I]],
                  Ad = e^{dt A},  Bd = (int_0^dt e^{A s} ds) B = dt*phi_1(dt A) B.
                  phi_1 is entire, so this holds for singular, nilpotent and defective A; no A^{-1}.
Generalized bilinear, alpha in [0, 1] (Zhang, Chong, Hao, Liu 2007; S4 uses alpha = 1/2):
                  M = I - alpha*dt*A,  Ad = M^{-1}(I + (1-alpha)*dt*A),  Bd = M^{-1}*dt*B.
                  alpha = 0: forward Euler, 1/2: bilinear (Tustin), 1: backward Euler.

Values are computed in mpmath at a precision certified by ``oracle.precision.verified``; the
magnitudes (for ``properties/tolerance.py``) are float64 estimates, right within a factor ~2.
"""
from __future__ import annotations

import math
import numbers

import mpmath
import numpy as np
import scipy.linalg

from ssm_conformance.oracle.precision import to_float, to_mp, verified
from ssm_conformance.oracle.reference import Reference

# theta_13 of Higham (2005) / scipy.linalg.expm: the scaling-and-squaring threshold for the
# degree-13 Pade approximant, rounded up (5.3719...).
THETA_13 = 5.4


# ----------------------------------------------------------------------------------------------
# input validation


def _numeric_array(x, name):
    arr = np.asarray(x)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.number)):
        raise TypeError(f"{name} must be a real or complex numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries (NaN or Inf)")
    return arr


def _check(A, B, dt):
    """-> (A (n,n), B2 (n,m), dt float, B_was_1d)."""
    A = _numeric_array(A, "A")
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"A must be a square matrix of shape (n, n) with n >= 1, got shape {A.shape}")
    n = A.shape[0]
    B = _numeric_array(B, "B")
    if B.ndim not in (1, 2) or B.shape[0] != n or B.size == 0:
        raise ValueError(f"B must have shape ({n},) or ({n}, m) with m >= 1 to match A, got shape {B.shape}")
    if isinstance(dt, (bool, np.bool_)) or not isinstance(dt, numbers.Real):
        raise TypeError(f"dt must be a real number, got {type(dt).__name__}")
    dt = float(dt)
    if not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be finite and > 0, got {dt}")
    one_d = B.ndim == 1
    return A, (B[:, None] if one_d else B), dt, one_d


def _split(top, n, one_d):
    """Top block rows (n, n+m) -> (Ad part (n,n), Bd part (n,m) or (n,))."""
    ad, bd = top[:, :n], top[:, n:]
    return ad, (bd[:, 0] if one_d else bd)


def _col(x, one_d):
    """Per-column quantity of shape (m,) -> (1, m), or a scalar for a 1-D B."""
    return float(x[0]) if one_d else np.asarray(x, dtype=np.float64)[None, :]


def _block_scale(Ad_est, Bd_est):
    """Scale for verified() on the top block rows [Ad, Bd], from float64 estimates.

    Ad entries are judged against max|Ad|, column j of Bd against max|Bd[:, j]|, so elements that
    are 0 by cancellation do not force endless doubling and a huge B does not loosen Ad.  Floor
    2^-1010: then the accepted error, 2^-64 * scale, is below the smallest subnormal float64.
    """
    with np.errstate(all="ignore"):
        n, m = Bd_est.shape
        scale = np.concatenate(
            [np.full((n, n), np.abs(Ad_est).max()), np.broadcast_to(np.abs(Bd_est).max(axis=0), (n, m))],
            axis=1,
        )
    if not np.all(np.isfinite(scale)):
        return None  # float64 overflow: fall back to verified()'s default (max |element|)
    return np.maximum(scale, 2.0**-1010)


# ----------------------------------------------------------------------------------------------
# magnitudes of the matrix exponential


def frechet_magnitude(X):
    """S = ||X||_2 * max_s ||e^{X(1-s)}||_2 ||e^{Xs}||_2 over a grid of s in [0, 1].

    The Frechet derivative of expm is L(X, E) = int_0^1 e^{X(1-s)} E e^{Xs} ds (Higham, Functions
    of Matrices, (10.15)), so ||L(X, E)|| <= ||E|| max_s ||e^{X(1-s)}|| ||e^{Xs}||: a backward-stable
    expm (||dX|| <= c u ||X||) has forward error <= c u S to first order.
    Grid: 17 uniform points and the boundary layers 2^-k, 1 - 2^-k, k = 1..ceil(log2(1+||X||_1))+1,
    where a stiff X makes the integrand peak.  Each e^{Xs} is computed once (scipy.linalg.expm).
    """
    X = np.asarray(X)
    norm1 = float(np.linalg.norm(X, 1))
    kmax = min(math.ceil(math.log2(1.0 + norm1)) + 1, 60)
    pairs = [(i / 16, (16 - i) / 16) for i in range(17)]
    pairs += [(2.0**-k, 1.0 - 2.0**-k) for k in range(1, kmax + 1)]
    cache = {}

    def norm_exp(s):
        if s not in cache:
            with np.errstate(all="ignore"):
                cache[s] = float(np.linalg.norm(scipy.linalg.expm(X * s), 2))
        return cache[s]

    with np.errstate(all="ignore"):
        S = float(np.linalg.norm(X, 2)) * max(norm_exp(s) * norm_exp(t) for s, t in pairs)
    return S if math.isfinite(S) else math.inf


def squarings(X):
    """Number of squarings of scipy's (Higham 2005) scaling and squaring: ceil(log2(||X||_1/theta_13))."""
    norm1 = float(np.linalg.norm(np.asarray(X), 1))
    if norm1 <= THETA_13:
        return 0
    return max(0, math.ceil(math.log2(norm1 / THETA_13)))


# ----------------------------------------------------------------------------------------------
# ZOH


def _zoh_top(Amp, Bmp, dtmp):
    """Top block rows [Ad, Bd] of expm(dt*[[A, B],[0, 0]]) at the working precision."""
    n, m = Bmp.shape
    blk = mpmath.zeros(n + m)
    for i in range(n):
        for j in range(n):
            blk[i, j] = dtmp * Amp[i, j]
        for j in range(m):
            blk[i, n + j] = dtmp * Bmp[i, j]
    E = mpmath.expm(blk)
    return np.array([[E[i, j] for j in range(n + m)] for i in range(n)], dtype=object)


def zoh(A, B, dt):
    """Zero-order hold: Ad = e^{dt A}, Bd = (int_0^dt e^{As} ds) B, by the Van Loan block exponential.

    A (n,n), B (n,m) or (n,), dt > 0.  Returns (Ad_ref, Bd_ref), ``Reference`` objects; Bd has B's
    number of dimensions.  The magnitudes (float64, for the tolerance model) are explained in the
    comments below.
    """
    A, B, dt, one_d = _check(A, B, dt)
    n, m = B.shape
    cplx = np.iscomplexobj(A) or np.iscomplexobj(B)

    # float64 estimates: scale for the doubling, and the magnitudes.
    X = dt * A
    Xt = np.zeros((2 * n, 2 * n), dtype=X.dtype)  # dt*[[A, I],[0, 0]]: top-right of expm is Phi
    Xt[:n, :n], Xt[:n, n:] = X, dt * np.eye(n)
    with np.errstate(all="ignore"):
        Ad_est = scipy.linalg.expm(X)
        Phi = scipy.linalg.expm(Xt)[:n, n:]  # Phi = dt*phi_1(dt A), Bd = Phi B
        Bd_est = Phi @ B

    Amp, Bmp, dtmp = to_mp(A), to_mp(B), mpmath.mpf(dt)
    top, err = verified(lambda: _zoh_top(Amp, Bmp, dtmp), scale=_block_scale(Ad_est, Bd_est))
    Ad, Bd = _split(to_float(top, complex_out=cplx), n, one_d)
    Ad_err, Bd_err = _split(err, n, one_d)

    S_phi = frechet_magnitude(Xt)
    Bcols = np.linalg.norm(B, 2, axis=0)
    abs_phi_B = np.abs(Phi) @ np.abs(B)
    Ad_ref = Reference(
        Ad,
        Ad_err,
        {
            # first-order forward error of a backward-stable expm of X = dt*A is <= c u * frechet
            "frechet": frechet_magnitude(X),
            # each squaring can amplify the error; scipy's count for X
            "squarings": squarings(X),
            "abs_value": np.abs(Ad),
        },
    )
    Bd_ref = Reference(
        Bd,
        Bd_err,
        {
            # Bd = Phi B, Phi the top-right block of expm(Xt): ||dPhi|| <= c u S_phi gives
            # |dBd_ij| <= ||dPhi||_2 ||B[:, j]||_2 <= c u S_phi ||B[:, j]||_2
            "frechet": _col(S_phi * Bcols, one_d),
            # componentwise: rounding Phi elementwise (|dPhi| <= c u |Phi|) and the product Phi B
            "abs_phi_B": abs_phi_B[:, 0] if one_d else abs_phi_B,
            "squarings": squarings(Xt),
            "abs_value": np.abs(Bd),
        },
    )
    return Ad_ref, Bd_ref


# ----------------------------------------------------------------------------------------------
# generalized bilinear


def _bilinear_top(Amp, Bmp, dtmp, almp):
    """[Ad, Bd] = M^{-1} [I + (1-alpha) dt A, dt B], M = I - alpha dt A, solved column by column."""
    n, m = Bmp.shape
    M = mpmath.matrix(n)
    R = mpmath.matrix(n, n + m)
    for i in range(n):
        for j in range(n):
            dA = dtmp * Amp[i, j]
            M[i, j] = (1 if i == j else 0) - almp * dA
            R[i, j] = (1 if i == j else 0) + (1 - almp) * dA
        for j in range(m):
            R[i, n + j] = dtmp * Bmp[i, j]
    out = np.empty((n, n + m), dtype=object)
    for j in range(n + m):
        x = mpmath.lu_solve(M, R.column(j))
        for i in range(n):
            out[i, j] = x[i]
    return out


def _solve_bounds(Minv, M, X, R):
    """Bounds of a backward-stable solve M X = R (first order, perturbations relative to eps=1).

    normwise (columnwise): ||dX_j|| <= ||M^{-1}|| (||dM|| ||X_j|| + ||dR_j||)
                           with ||dM|| <= eps ||M||, ||dR_j|| <= eps ||R_j||;
    componentwise (Oettli-Prager): |dX| <= |M^{-1}| (|dM| |X| + |dR|), |dM| <= eps|M|, |dR| <= eps|R|.
    """
    nMinv, nM = np.linalg.norm(Minv, 2), np.linalg.norm(M, 2)
    cols = nMinv * (nM * np.linalg.norm(X, 2, axis=0) + np.linalg.norm(R, 2, axis=0))
    whole = nMinv * (nM * np.linalg.norm(X, 2) + np.linalg.norm(R, 2))
    elem = np.abs(Minv) @ (np.abs(M) @ np.abs(X) + np.abs(R))
    return float(whole), cols, elem


def generalized_bilinear(A, B, dt, alpha):
    """Ad = M^{-1}(I + (1-alpha) dt A), Bd = M^{-1} dt B with M = I - alpha dt A, alpha in [0, 1].

    Returns (Ad_ref, Bd_ref).  Raises ValueError when M is singular (or so ill-conditioned that no
    precision up to ~2000 digits resolves it).
    """
    A, B, dt, one_d = _check(A, B, dt)
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a real number in [0, 1], got {type(alpha).__name__}")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    n, m = B.shape
    cplx = np.iscomplexobj(A) or np.iscomplexobj(B)

    I = np.eye(n)
    M = I - alpha * dt * A
    RA, RB = I + (1.0 - alpha) * dt * A, dt * B
    try:
        with np.errstate(all="ignore"):
            scale = _block_scale(np.linalg.solve(M, RA), np.linalg.solve(M, RB))
    except np.linalg.LinAlgError:  # exactly singular in float64; mpmath decides below
        scale = None

    Amp, Bmp, dtmp, almp = to_mp(A), to_mp(B), mpmath.mpf(dt), mpmath.mpf(alpha)
    dps = 30
    while True:
        try:
            top, err = verified(lambda: _bilinear_top(Amp, Bmp, dtmp, almp), dps=dps, scale=scale)
            break
        except ZeroDivisionError:  # mpmath: a pivot below ||M||_1 * eps at this precision
            if dps >= 1000:
                raise ValueError(
                    f"M = I - alpha*dt*A is singular (alpha={alpha}, dt={dt}); "
                    "the transform is undefined for these A, dt"
                ) from None
            dps *= 4
    Ad, Bd = _split(to_float(top, complex_out=cplx), n, one_d)
    Ad_err, Bd_err = _split(err, n, one_d)

    # float64 magnitudes.  M^{-1} without a float64 inverse: from M = I - alpha dt A one gets
    # I + (1-alpha) dt A = (I - (1-alpha) M)/alpha, hence Ad = (M^{-1} - (1-alpha) I)/alpha and
    # M^{-1} = alpha*Ad + (1-alpha)*I exactly (also for alpha = 0, where M = I).
    Minv = alpha * Ad + (1.0 - alpha) * I
    Bd2 = Bd[:, None] if one_d else Bd
    a_whole, _, a_elem = _solve_bounds(Minv, M, Ad, RA)
    _, b_cols, b_elem = _solve_bounds(Minv, M, Bd2, RB)
    Ad_ref = Reference(Ad, Ad_err, {"solve": a_whole, "elementwise": a_elem, "abs_value": np.abs(Ad)})
    Bd_ref = Reference(
        Bd,
        Bd_err,
        {
            "solve": _col(b_cols, one_d),
            "elementwise": b_elem[:, 0] if one_d else b_elem,
            "abs_value": np.abs(Bd),
        },
    )
    return Ad_ref, Bd_ref


def bilinear(A, B, dt):
    """Bilinear (Tustin), as in the original S4: alpha = 1/2."""
    return generalized_bilinear(A, B, dt, 0.5)


def euler(A, B, dt):
    """Forward Euler: Ad = I + dt A, Bd = dt B (alpha = 0)."""
    return generalized_bilinear(A, B, dt, 0.0)


def backward_euler(A, B, dt):
    """Backward Euler: Ad = (I - dt A)^{-1}, Bd = (I - dt A)^{-1} dt B (alpha = 1)."""
    return generalized_bilinear(A, B, dt, 1.0)
