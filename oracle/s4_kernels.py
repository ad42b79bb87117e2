"""Oracles of the S4-family kernels (roles ``ssm_kernel``, ``s4d_kernel``, ``dplr_kernel``).

All three are computed by plain powering in mpmath at a precision certified by doubling
(``oracle.precision.verified``): h_0 = Bbar, h_k = Abar h_{k-1}, K_k = C h_k.  The generating-
function route of S4 (Cauchy sums, Woodbury, roots of unity) lives in ``oracle.dplr`` and is
compared against this one in tests/test_oracle_s4.py.

Magnitudes (float64 estimates on the exact inputs, for ``properties/tolerance.py``): each key is
documented where it is built, with the *depth* it must be multiplied by, so that
    |computed K_k - K_k| <= u * sum_m depth_m * magnitude_m[k]
holds to first order for the accurate algorithms named there.  Where a bound grows with k (the
k+1 products of a chain), the (k+1) factor is inside the magnitude and the depth is a constant.
docs/s4_integration.md lists the terms per role.
"""
from __future__ import annotations


import mpmath
import numpy as np

from ssm_conformance.oracle.dplr import (_complex_vector, bilinear_mp, cauchy_magnitudes, check_dplr, check_dt_L,
                         dense_A_mp)
from ssm_conformance.oracle.precision import to_float, to_mp, verified
from ssm_conformance.oracle.reference import Reference


def _numeric(x, name):
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries")
    return arr


def _power_chain_mp(Abar, Bbar, Cm, L):
    """[C Abar^k Bbar for k < L] with mpmath matrices Abar (n,n), Bbar (n,1), C a sequence."""
    n = Abar.rows
    h = Bbar
    out = []
    for k in range(L):
        out.append(mpmath.fsum(Cm[i] * h[i] for i in range(n)))
        if k + 1 < L:
            h = Abar * h
    return np.array(out, dtype=object)


def _abs_chain(Aabs, babs, cabs, L):
    """c^T Aabs^k b for k < L, with nonnegative float64 inputs (no cancellation)."""
    out = np.empty(L)
    h = babs.copy()
    for k in range(L):
        out[k] = cabs @ h
        h = Aabs @ h
    return out


def power_norms(Abar, L):
    """(||Abar^m||_2, ||Abar^m||_F) for m = 0..L (float64, by sequential products)."""
    n = Abar.shape[0]
    norms2, normsF = np.empty(L + 1), np.empty(L + 1)
    X = np.eye(n, dtype=Abar.dtype)
    for m in range(L + 1):
        norms2[m] = np.linalg.norm(X, 2)
        normsF[m] = np.linalg.norm(X)
        X = X @ Abar
    return norms2, normsF


def _normwise_chain(Abar, Bbar, C, L, norms2, per_step):
    """||C|| (||h_k|| + sum_{j=1..k} ||Abar^{k-j}|| per_step ||h_{j-1}||), h_j = Abar^j Bbar:
    the first-order error of h_k = fl(Abar h_{k-1}) when step j adds an error of norm
    <= u depth per_step ||h_{j-1}|| (it is then carried by Abar^{k-j})."""
    hn = np.empty(L)
    h = Bbar.astype(np.complex128)
    for k in range(L):
        hn[k] = np.linalg.norm(h)
        h = Abar @ h
    conv = np.convolve(norms2[:L], hn)[: L]  # conv[k] = sum_{j'} ||A^{k-j'}|| ||h_{j'}||
    prop = np.concatenate([[0.0], conv[: L - 1]])  # sum_{j=1..k} ||A^{k-j}|| ||h_{j-1}||
    return np.linalg.norm(C) * (hn + per_step * prop)


# ----------------------------------------------------------------------------------------------
# ssm_kernel


def ssm_kernel(Ad, Bd, C, L):
    """K_k = C Ad^k Bd, k < L (role ``ssm_kernel``).  Ad (n, n), Bd (n,), C (n,), real or complex.

    Magnitudes:
      "abs_power"  (L,) = (k+1) |C| |Ad|^k |Bd|.  Any evaluation order of the product
                   C Ad ... Ad Bd (sequential recurrence, repeated squaring, doubling) has
                   |error| <= gamma_{(k+1) n} |C||Ad|^k|Bd| (Higham, (3.13) for products of k+2
                   factors with inner dimension n): depth n.
      "norm_bound" (L,) = ||C|| (||h_k|| + sum_j ||Ad^{k-j}|| ||Ad||_F ||h_{j-1}||): the normwise
                   first-order bound of the sequential recurrence (|fl(Ad h) - Ad h| <=
                   gamma_n |Ad||h|, || |Ad| ||_2 <= ||Ad||_F): depth n.  Useful where |Ad|^k
                   grows although Ad^k does not (non-normal Ad).
    """
    Ad = _numeric(Ad, "Ad")
    if Ad.ndim != 2 or Ad.shape[0] != Ad.shape[1] or Ad.shape[0] == 0:
        raise ValueError(f"Ad must have shape (n, n) with n >= 1, got shape {Ad.shape}")
    n = Ad.shape[0]
    Bd, C = _numeric(Bd, "Bd"), _numeric(C, "C")
    if Bd.shape != (n,):
        raise ValueError(f"Bd must have shape ({n},), got shape {Bd.shape}")
    if C.shape != (n,):
        raise ValueError(f"C must have shape ({n},), got shape {C.shape}")
    _, L = check_dt_L(1.0, L)
    cplx = any(np.iscomplexobj(x) for x in (Ad, Bd, C))

    abs_power = _abs_chain(np.abs(Ad), np.abs(Bd), np.abs(C), L)
    Adm, Bdm, Cm = mpmath.matrix(to_mp(Ad).tolist()), mpmath.matrix(list(to_mp(Bd))), list(to_mp(C))
    # judge each element's doubling error against its own componentwise scale
    hi, err = verified(lambda: _power_chain_mp(Adm, Bdm, Cm, L), scale=abs_power)
    norms2, _ = power_norms(Ad, L)
    mags = {
        "abs_power": abs_power * (np.arange(L) + 1),
        "norm_bound": _normwise_chain(Ad, Bd, C, L, norms2, np.linalg.norm(Ad)),
    }
    return Reference(to_float(hi, complex_out=cplx), err, mags)


# ----------------------------------------------------------------------------------------------
# s4d_kernel


def _s4d_terms_mp(Lm, Bm, Cm, dt, L, disc):
    """(Abar_i, Bbar_i) at the working precision."""
    dtm = mpmath.mpf(dt)
    out = []
    for lam, b in zip(Lm, Bm):
        x = lam * dtm
        if disc == "zoh":
            # Bbar = (e^x - 1)/lambda B = dt phi_1(x) B; phi_1(0) = 1 (lambda = 0 is removable)
            phi1 = mpmath.expm1(x) / x if x != 0 else mpmath.mpf(1)
            out.append((mpmath.exp(x), dtm * phi1 * b))
        else:
            out.append(((1 + x / 2) / (1 - x / 2), dtm * b / (1 - x / 2)))
    return out


def _s4d_mp(Lm, Bm, Cm, dt, L, disc):
    terms = _s4d_terms_mp(Lm, Bm, Cm, dt, L, disc)
    w = [c * bb for c, (_, bb) in zip(Cm, terms)]  # C_i Bbar_i, then times Abar_i^k
    out = []
    for k in range(L):
        out.append(2 * mpmath.re(mpmath.fsum(w)))
        w = [wi * a for wi, (a, _) in zip(w, terms)]
    return np.array(out, dtype=object)


def s4d_kernel(Lambda, B, C, dt, L, disc="zoh"):
    """K_k = 2 Re sum_i C_i Bbar_i Abar_i^k, k < L (role ``s4d_kernel``; one of each conjugate
    pair kept, as S4D).  disc='zoh': Abar = e^{lambda dt}, Bbar = (e^{lambda dt} - 1)/lambda B;
    disc='bilinear': Abar = (1 + x/2)/(1 - x/2), Bbar = dt B/(1 - x/2), x = lambda dt.

    Magnitudes (x_i = lambda_i dt; the factor 2 of 2 Re included):
      "abs_sum"   = 2 sum_i |C_i||Bbar_i||Abar_i|^k: forming the N products and their sum
                    (depth N + 4).
      "abs_power" = 2 sum_i |C_i||Bbar_i||Abar_i|^k (k+1)(1 + |x_i|) (zoh) or
                    (k+1)(1 + |log Abar_i|) (bilinear): Abar_i^k as exp(k x_i) or by k
                    products has relative error <= u (c + (k+1)(c' + |x_i|)) -- the argument
                    k x_i carries a relative rounding of a few u, amplified by |k x_i| in exp
                    (depth 6 zoh, 10 bilinear).
      "abs_bbar"  = 2 sum_i |C_i||B_i| ((|x_i| + 2)|e^{x_i}| + |e^{x_i} - 1|)/|lambda_i|
                    |Abar_i|^k (zoh): S4D's (exp(x) - 1)/lambda has absolute error
                    ~u (|x| + 2)|e^x|/|lambda| from exp and the subtraction, which expm1
                    would avoid (depth 6).  Bilinear: 2 sum|C||Bbar||Abar|^k (depth 6).
    """
    if disc not in ("zoh", "bilinear"):
        raise ValueError(f"disc must be 'zoh' or 'bilinear', got {disc!r}")
    Lambda = _complex_vector(Lambda, "Lambda")
    n = Lambda.shape[0]
    B, C = _complex_vector(B, "B", n), _complex_vector(C, "C", n)
    dt, L = check_dt_L(dt, L)
    x = Lambda * dt
    with np.errstate(all="ignore"):
        if disc == "zoh":
            Abar = np.exp(x)
            phi = np.where(x == 0, 1.0, np.expm1(x) / np.where(x == 0, 1.0, x))
            Bbar = dt * phi * B
            logA = x
        else:
            Abar = (1 + x / 2) / (1 - x / 2)
            Bbar = dt * B / (1 - x / 2)
            logA = np.log(Abar)
    k = np.arange(L)[:, None]
    powers = np.abs(Abar)[None, :] ** k  # (L, N)
    cb = 2 * np.abs(C) * np.abs(Bbar)
    abs_sum = powers @ cb
    abs_power = (powers * (k + 1) * (1 + np.abs(logA))[None, :]) @ cb
    if disc == "zoh":
        absx = np.abs(x)
        with np.errstate(all="ignore"):
            bb = np.where(Lambda == 0, dt * (absx + 3),
                          ((absx + 2) * np.abs(Abar) + np.abs(np.expm1(x))) / np.abs(
                              np.where(Lambda == 0, 1.0, Lambda)))
        abs_bbar = powers @ (2 * np.abs(C) * np.abs(B) * bb)
    else:
        abs_bbar = abs_sum
    Lm, Bm, Cm = list(to_mp(Lambda)), list(to_mp(B)), list(to_mp(C))
    hi, err = verified(lambda: _s4d_mp(Lm, Bm, Cm, dt, L, disc), scale=abs_sum)
    return Reference(to_float(hi, complex_out=False), err,
                     {"abs_sum": abs_sum, "abs_power": abs_power, "abs_bbar": abs_bbar})


# ----------------------------------------------------------------------------------------------
# dplr_kernel


def _dplr_dense_mp(Lm, Pm, Qm, Bm, Cm, dt, L):
    A = dense_A_mp(Lm, Pm, Qm)
    Abar, Bbar = bilinear_mp(A, Bm, dt)
    return _power_chain_mp(Abar, Bbar, Cm, L)


def _bilinear_f64(Lambda, P, Q, B, dt):
    """Abar, Bbar in float64 (used only for magnitudes)."""
    n = Lambda.shape[0]
    A = np.diag(Lambda) - P.T @ Q.conj()
    M = np.eye(n) - dt / 2 * A
    Abar = np.linalg.solve(M, np.eye(n) + dt / 2 * A)
    Bbar = np.linalg.solve(M, dt * B)
    return A, M, Abar, Bbar


def dplr_kernel(Lambda, P, Q, B, C, dt, L):
    """K_k = C Abar^k Bbar, k < L, with A = diag(Lambda) - P^T conj(Q) (P, Q (r, N)) and the
    bilinear Abar, Bbar (role ``dplr_kernel``), by dense powering in mpmath; complex (L,).

    Magnitudes:
      Dense route (discretize A, then power):
        "abs_power"  (k+1)|C||Abar|^k|Bbar|: the powering, any order of products (depth N).
        "disc"       |C| s_k, s_0 = E_B, s_k = |Abar| s_{k-1} + E_A |Abar|^{k-1}|Bbar|, with the
                     Oettli-Prager magnitudes of the solves, E_A = |M^{-1}|(|M||Abar| + |I + dt/2 A|),
                     E_B = |M^{-1}|(|M||Bbar| + dt|B|): first-order effect of a componentwise
                     stable discretization (depth 3N + 2).
        "norm_bound" ||C|| (||h_k|| + ||Abar^k|| e_B + sum_j ||Abar^{k-j}|| (e_A + ||Abar||_F)
                     ||h_{j-1}||), e_A = ||M^{-1}||(||M|| ||Abar|| + ||I + dt/2 A||),
                     e_B = ||M^{-1}||(||M|| ||Bbar|| + dt ||B||): the same, normwise
                     (backward-stable LU; the recurrence's matvecs) (depth 3N + 2).  |Abar|^k of
                     a HiPPO Abar grows although ||Abar^k|| does not: this is the term that
                     admits dense float64 powering of HiPPO systems.
      Generating-function route (S4: Cauchy sums + Woodbury at the roots of unity + inverse FFT),
      see ``oracle.dplr.cauchy_magnitudes``:
        "cond_cauchy" (depth N + r + 6), "cond_ctilde" (depth 3N + 2),
        "cond_fft" (depth 8 ceil(log2 L) + 2).
    """
    Lambda, P, Q, B, C, dt, L = check_dplr(Lambda, P, Q, B, C, dt, L)
    n = Lambda.shape[0]
    args = tuple(to_mp(a) for a in (Lambda, P, Q, B, C))
    with np.errstate(all="ignore"):
        A, M, Abar_est, Bbar_est = _bilinear_f64(Lambda, P, Q, B, dt)
        abs_power = _abs_chain(np.abs(Abar_est), np.abs(Bbar_est), np.abs(C), L)
    hi, err = verified(lambda: _dplr_dense_mp(*args, dt, L),
                       scale=abs_power if np.all(np.isfinite(abs_power)) else None)
    value = to_float(hi, complex_out=True)

    # magnitudes from the exact Abar, Bbar rounded once (one more mpmath pass, 40 digits)
    with mpmath.workdps(40):
        Abar_mp, Bbar_mp = bilinear_mp(dense_A_mp(*args[:3]), args[3], dt)
        Abar = to_float(np.array(Abar_mp.tolist(), dtype=object), complex_out=True)
        Bbar = to_float(np.array(Bbar_mp.tolist(), dtype=object)[:, 0], complex_out=True)
    with np.errstate(all="ignore"):
        Rm = np.eye(n) + dt / 2 * A
        Minv = (Abar + np.eye(n)) / 2  # Abar = 2 M^{-1} - I exactly
        absA, absM, absMinv = np.abs(Abar), np.abs(M), np.abs(Minv)
        E_A = absMinv @ (absM @ absA + np.abs(Rm))
        E_B = absMinv @ (absM @ np.abs(Bbar) + dt * np.abs(B))
        disc = np.empty(L)
        s = E_B.copy()
        p = np.abs(Bbar)  # |Abar|^{k-1}|Bbar|
        for k in range(L):
            if k > 0:
                s = absA @ s + E_A @ p
                p = absA @ p
            disc[k] = np.abs(C) @ s
        norms2, normsF = power_norms(Abar, L)
        nMinv, nM = np.linalg.norm(Minv, 2), np.linalg.norm(M, 2)
        e_A = nMinv * (nM * norms2[1] + np.linalg.norm(Rm, 2))
        e_B = nMinv * (nM * np.linalg.norm(Bbar) + dt * np.linalg.norm(B))
        norm_bound = (_normwise_chain(Abar, Bbar, C, L, norms2, e_A + normsF[1])
                      + np.linalg.norm(C) * norms2[:L] * e_B)
        mags = {"abs_power": abs_power * (np.arange(L) + 1), "disc": disc,
                "norm_bound": norm_bound}
        mags.update(cauchy_magnitudes(Lambda, P, Q, B, C, dt, L, Abar, (norms2, normsF), value))
    return Reference(value, err, mags)
