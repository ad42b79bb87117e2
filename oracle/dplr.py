"""Diagonal plus low rank (DPLR), at high precision: the HiPPO decomposition, phase-invariant
comparisons, the Woodbury identity and the S4 generating function at the roots of unity.

Conventions (those of the contract's ``dplr_kernel``): Lambda (N,), P and Q (r, N) complex,
    A = diag(Lambda) - P^T conj(Q)        (= Lambda - sum_a p_a q_a^*, p_a, q_a the rows),
bilinear discretization with step dt, and K_k = C Abar^k Bbar for k < L.

1. NPLR -> DPLR of HiPPO (``dplr_hippo``).  With the exact facts of ``oracle.hippo.nplr``,
   A + P^T P = shift*I + S, S real skew.  H = -iS is Hermitian with a zero diagonal, so
   mpmath.eighe(H) = W diag(mu) W^* is the safe route (MATH.md: never hand a Hermitian solver a
   matrix whose diagonal carries a real shift; LAPACK's would drop its imaginary part).  Then
   S = W diag(i mu) W^*, and with V = W, Lambda = shift + i mu:
       A = V (diag(Lambda) - Pt^T conj(Pt)) V^*,   Pt = (V^* P^T)^T  (r, N),   Bt = V^* B
   (P real, so P^T P = V Pt^T conj(Pt) V^*).
2. Phase-invariant comparison (``compare_dplr``).  Eigenvectors are unique only up to a phase per
   eigenvalue (a unitary mixing inside a repeated eigenvalue, e.g. FouT's double zero), and
   eigenvalues come in any order.  Compared instead: Lambda as a multiset (optimal assignment),
   per cluster of equal eigenvalues the Gram matrix of the rows [Bt; Pt] restricted to the cluster
   (|Bt_i|^2, Bt_i conj(Pt_i), |Pt_i|^2 for simple eigenvalues), and the rebuilt A.
3. The generating function (``resolvent_kernel_gf``).  For |z| = 1, z != -1,
       Khat(z) = sum_{k<L} K_k z^k = Ct (I - Abar z)^{-1} Bbar,   Ct = C (I - Abar^L),
   since sum_{k<L} (Abar z)^k = (I - (Abar z)^L)(I - Abar z)^{-1} and z^L = 1 at the L-th roots.
   Bilinear: Abar = M^{-1}(I + dt/2 A), M = I - dt/2 A, Bbar = M^{-1} dt B, hence
       I - Abar z = M^{-1} [(1 - z) I - dt/2 (1 + z) A] = M^{-1} (dt/2)(1 + z) (g I - A),
       g = g(z) = (2/dt)(1 - z)/(1 + z),   and  (I - Abar z)^{-1} Bbar = 2/(1+z) (g - A)^{-1} B
   (M commutes with (g - A)^{-1}).  g - A = diag(g - Lambda) + P^T conj(Q); with
   R = diag(1/(g - Lambda)), Woodbury gives
       Khat(z) = 2/(1+z) [Ct R B - Ct R P^T (I_r + conj(Q) R P^T)^{-1} conj(Q) R B],
   four Cauchy sums sum_i v_i/(g - lambda_i).
   z = -1 (j = L/2 for even L): the limit.  (I - Abar z)^{-1} Bbar at z = -1 is
   (I + Abar)^{-1} Bbar; I + Abar = M^{-1}(M + I + dt/2 A) = 2 M^{-1}, so
       Khat(-1) = Ct (M/2) M^{-1} dt B = (dt/2) Ct B   exactly (no perturbation of z).
   The roots are z_j = exp(-2 pi i j/L), so Khat_j = sum_k K_k e^{-2 pi i jk/L} = fft(K)_j and
   K = ifft(Khat) (``resolvent_kernel``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import mpmath
import numpy as np
import scipy.optimize
import sympy as sp

from ssm_conformance.oracle import hippo
from ssm_conformance.oracle.precision import to_float, to_mp, verified
from ssm_conformance.oracle.reference import OracleError, Reference

# ----------------------------------------------------------------------------------------------
# argument checks shared with oracle.s4_kernels


def _complex_vector(x, name, n=None):
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.complex128)
    if arr.ndim != 1 or arr.shape[0] == 0 or (n is not None and arr.shape[0] != n):
        want = f"({n},)" if n is not None else "(N,) with N >= 1"
        raise ValueError(f"{name} must have shape {want}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries")
    return arr


def check_dt_L(dt, L):
    if isinstance(dt, (bool, np.bool_)) or np.ndim(dt) != 0 or np.iscomplexobj(dt):
        raise TypeError(f"dt must be a real scalar, got {dt!r}")
    dt = float(dt)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be finite and > 0, got {dt}")
    if isinstance(L, (bool, np.bool_)) or not isinstance(L, (int, np.integer)) or L < 1:
        raise ValueError(f"L must be an int >= 1, got {L!r}")
    return dt, int(L)


def check_dplr(Lambda, P, Q, B, C, dt, L):
    """-> complex128 Lambda (N,), P (r, N), Q (r, N), B (N,), C (N,); float dt; int L."""
    Lambda = _complex_vector(Lambda, "Lambda")
    n = Lambda.shape[0]
    mats = []
    for name, M in (("P", P), ("Q", Q)):
        M = np.asarray(M)
        if M.dtype == bool or not np.issubdtype(M.dtype, np.number):
            raise TypeError(f"{name} must be a numeric array, got dtype {M.dtype}")
        if M.ndim != 2 or M.shape[1] != n or M.shape[0] < 1:
            raise ValueError(f"{name} must have shape (r, {n}) with r >= 1, got shape {M.shape}")
        M = M.astype(np.complex128)
        if not np.all(np.isfinite(M)):
            raise ValueError(f"{name} has non-finite entries")
        mats.append(M)
    P, Q = mats
    if P.shape != Q.shape:
        raise ValueError(f"P and Q must have the same shape (r, N), got {P.shape} and {Q.shape}")
    B = _complex_vector(B, "B", n)
    C = _complex_vector(C, "C", n)
    dt, L = check_dt_L(dt, L)
    return Lambda, P, Q, B, C, dt, L


# ----------------------------------------------------------------------------------------------
# mpmath building blocks (work at the current mpmath precision)


def dense_A_mp(Lm, Pm, Qm):
    """A = diag(Lambda) - P^T conj(Q) as an mpmath matrix (Lm (N,), Pm, Qm (r, N) object arrays)."""
    r, n = Pm.shape
    A = mpmath.matrix(n)
    for i in range(n):
        for j in range(n):
            A[i, j] = -mpmath.fsum(Pm[a, i] * mpmath.conj(Qm[a, j]) for a in range(r))
        A[i, i] += Lm[i]
    return A


def bilinear_mp(A, Bm, dt):
    """Abar = M^{-1}(I + dt/2 A), Bbar = M^{-1} dt B, M = I - dt/2 A (mpmath, LU solves)."""
    n = A.rows
    h = mpmath.mpf(dt) / 2
    I = mpmath.eye(n)
    M, R = I - h * A, I + h * A
    Minv = mpmath.inverse(M)
    Bcol = mpmath.matrix([Bm[i] for i in range(n)])
    return Minv * R, Minv * (mpmath.mpf(dt) * Bcol)


def matrix_power_mp(X, e):
    """X^e by binary powering (e >= 0)."""
    result = mpmath.eye(X.rows)
    base = X
    while e:
        if e & 1:
            result = result * base
        e >>= 1
        if e:
            base = base * base
    return result


def woodbury_solve(d, U, V, b):
    """x = (diag(d) + U V^*)^{-1} b by the Woodbury identity, in mpmath:
        (D + U V^*)^{-1} = D^{-1} - D^{-1} U (I + V^* D^{-1} U)^{-1} V^* D^{-1}.
    d (N,), U, V (N, r), b (N,): mpmath matrices / sequences."""
    n, r = U.rows, U.cols
    Dinv_b = mpmath.matrix([b[i] / d[i] for i in range(n)])
    Dinv_U = mpmath.matrix(n, r)
    for i in range(n):
        for a in range(r):
            Dinv_U[i, a] = U[i, a] / d[i]
    Vh = V.H
    small = mpmath.eye(r) + Vh * Dinv_U
    return Dinv_b - Dinv_U * mpmath.lu_solve(small, Vh * Dinv_b)


def _gf_values(Lm, Pm, Qm, Bm, Cm, dt, L):
    """Khat(z_j), z_j = exp(-2 pi i j/L), j < L, as mpc (see the module docstring)."""
    r, n = Pm.shape
    A = dense_A_mp(Lm, Pm, Qm)
    Abar, _ = bilinear_mp(A, Bm, dt)
    AL = matrix_power_mp(Abar, L)
    Ct = [Cm[i] - mpmath.fsum(Cm[m] * AL[m, i] for m in range(n)) for i in range(n)]  # C (I - Abar^L)
    cq = [[mpmath.conj(Qm[a, i]) for i in range(n)] for a in range(r)]
    dtm = mpmath.mpf(dt)
    out = []
    for j in range(L):
        if 2 * j == L:  # z = -1: the removable singularity, its exact limit (dt/2) Ct B
            out.append(dtm / 2 * mpmath.fsum(Ct[i] * Bm[i] for i in range(n)))
            continue
        z = mpmath.expjpi(mpmath.mpf(-2 * j) / L)
        g = 2 / dtm * (1 - z) / (1 + z)
        R = [1 / (g - Lm[i]) for i in range(n)]
        k00 = mpmath.fsum(Ct[i] * R[i] * Bm[i] for i in range(n))
        k01 = [mpmath.fsum(Ct[i] * R[i] * Pm[b, i] for i in range(n)) for b in range(r)]
        k10 = mpmath.matrix([mpmath.fsum(cq[a][i] * R[i] * Bm[i] for i in range(n)) for a in range(r)])
        W = mpmath.eye(r)
        for a in range(r):
            for b in range(r):
                W[a, b] += mpmath.fsum(cq[a][i] * R[i] * Pm[b, i] for i in range(n))
        y = mpmath.lu_solve(W, k10)
        out.append(2 / (1 + z) * (k00 - mpmath.fsum(k01[b] * y[b] for b in range(r))))
    return np.array(out, dtype=object)


def _checked_gf(*args):
    try:
        return _gf_values(*args)
    except ZeroDivisionError:
        raise ValueError("g(z_j) equals an eigenvalue lambda_i at some root of unity: the Woodbury "
                         "form is undefined there (A itself may be fine); use "
                         "oracle.s4_kernels.dplr_kernel (dense powering)") from None


def _inverse_dft(values):
    """K_k = (1/L) sum_j Khat_j exp(+2 pi i jk/L), in mpmath."""
    L = len(values)
    roots = [mpmath.expjpi(mpmath.mpf(2 * m) / L) for m in range(L)]
    return np.array([mpmath.fsum(values[j] * roots[(j * k) % L] for j in range(L)) / L
                     for k in range(L)], dtype=object)


def resolvent_kernel_gf(Lambda, P, Q, B, C, dt, L):
    """Reference of Khat_j = Khat(z_j), z_j = exp(-2 pi i j/L), j = 0..L-1 (= fft(K)): the
    Cauchy/Woodbury route with the C~ correction and the exact limit at z = -1."""
    Lambda, P, Q, B, C, dt, L = check_dplr(Lambda, P, Q, B, C, dt, L)
    args = (to_mp(Lambda), to_mp(P), to_mp(Q), to_mp(B), to_mp(C), dt, L)
    hi, err = verified(lambda: _checked_gf(*args))
    return Reference(to_float(hi, complex_out=True), err, {})


def resolvent_kernel(Lambda, P, Q, B, C, dt, L):
    """Reference of K (L,) = inverse DFT of the generating function: a second oracle for
    ``dplr_kernel``, independent of dense powering (no magnitudes; use ``s4_kernels``')."""
    Lambda, P, Q, B, C, dt, L = check_dplr(Lambda, P, Q, B, C, dt, L)
    args = (to_mp(Lambda), to_mp(P), to_mp(Q), to_mp(B), to_mp(C), dt, L)
    hi, err = verified(lambda: _inverse_dft(_checked_gf(*args)))
    return Reference(to_float(hi, complex_out=True), err, {})


# ----------------------------------------------------------------------------------------------
# float64 magnitudes of the Cauchy / Woodbury / FFT algorithm (used by s4_kernels.dplr_kernel)


def cauchy_magnitudes(Lambda, P, Q, B, C, dt, L, Abar, power_norms, K):
    """First-order error magnitudes of computing K by Khat(z_j) (Cauchy sums + Woodbury) and an
    inverse FFT; float64 estimates from the exact inputs, the (rounded) exact Abar and the
    oracle's K.  power_norms = (||Abar^m||_2, ||Abar^m||_F), m = 0..L.

    Per root j (s = 2/(1+z), g = g(z), R_i = 1/(g - lambda_i)), the computed R_i has relative error
    <= c u rho_i, rho_i = 1 + |g||R_i| (g carries a relative error ~u, g - lambda_i may cancel).
    Write r_i = |R_i| rho_i and the Cauchy magnitudes a = sum|Ct||r||B|, b_a = sum|Ct||r||P_a|,
    c_a = sum|Q_a||r||B|, D_ab = sum|Q_a||r||P_b|; x = u^T W^{-1}, y = W^{-1} v the exact Woodbury
    vectors.  Perturbation theory of s (c00 - u^T W^{-1} v) with sums of length N and a
    backward-stable r x r solve gives
        |dKhat_j| <= u (N + r + 6) e_j,  e_j = |s| (a + b|y| + |x|c + |x|(D + |W|)|y|) + |Khat_j|.
    Where g(z_j) nearly equals some lambda_i this blows up (the diagonal resolvent is singular
    though A's need not be, e.g. HiPPO-FouT's lambda = 0 at z = 1); an accurate algorithm then
    evaluates Khat_j = C S_L(Abar z_j) Bbar, S_L(X) = sum_{k<L} X^k, by powering (as our
    implementations do), whose first-order error is <= u (6N + 4) ||C|| ||Bbar||
    (sum_{k<L} ||Abar^k|| + T_L) (T_L below; a 2N x 2N block powering): e_j is the smaller.
    Inverse DFT: K_k = (1/L) sum_j Khat_j z_j^{-k}, so |dK_k| <= mean_j |dKhat_j|:
        "cond_cauchy" = mean_j e_j                                  (depth N + r + 6).
    C~ = C - C Abar^L: a dense Abar (backward-stable solve, normwise relative perturbation
    e_A = ||M^{-1}||(||M|| ||Abar|| + ||I + dt/2 A||)) powered to L, sequentially or by squaring,
    has ||d(C Abar^L)|| <= u depth ||C|| T_L with
        T_L = sum_{j=1..L} ||Abar^{L-j}|| (e_A + ||Abar||_F) ||Abar^{j-1}||
              + sum_{i: 2^{i+1} <= L} (L / 2^{i+1}) ||Abar^{2^i}||_F^2 max_{m<=L} ||Abar^m||,
    (leaf perturbations of the L factors, plus the rounding of the squarings), and it enters
    Khat_j through x_j = (I - Abar z_j)^{-1} Bbar.  The inverse DFT of x_j over j is
    (1/L) sum_j x_j z_j^{-k} = sum_{m = k mod L} Abar^m Bbar = (I - Abar^L)^{-1} Abar^k Bbar, so
        "cond_ctilde"[k] = ||C|| (1 + ||Abar^L|| + T_L) ||(I - Abar^L)^+ Abar^k Bbar||
                                                                   (depth 3N + 2)
    (the pseudo-inverse: an eigenvalue 1 of Abar, e.g. FouT's dead slot, is annihilated by C~).
    FFT of length L: normwise relative error <= eta log2 L, eta ~ 7u (Higham, Thm 24.2), and
    ||ifft(Khat)||_2 = ||Khat||_2 / sqrt(L) bounds each element:
        "cond_fft" = ||Khat||_2 / sqrt(L) = ||K||_2                (depth 8 ceil(log2 L) + 2).
    """
    n = Lambda.shape[0]
    r = P.shape[0]
    norms2, normsF = power_norms
    A = np.diag(Lambda) - P.T @ Q.conj()
    M, Rm = np.eye(n) - dt / 2 * A, np.eye(n) + dt / 2 * A
    Minv = (Abar + np.eye(n)) / 2  # Abar = 2 M^{-1} - I exactly
    Bbar = Minv @ (dt * B)
    e_A = np.linalg.norm(Minv, 2) * (np.linalg.norm(M, 2) * norms2[1] + np.linalg.norm(Rm, 2))
    T = float(np.dot(norms2[L - 1::-1][:L], norms2[:L])) * (e_A + normsF[1])
    mx = float(np.max(norms2[: L + 1]))
    i = 0
    while 2 ** (i + 1) <= L:
        T += (L / 2 ** (i + 1)) * normsF[2**i] ** 2 * mx
        i += 1
    geometric = (np.linalg.norm(C) * np.linalg.norm(Bbar) * (np.sum(norms2[:L]) + T)
                 * (6 * n + 4) / (n + r + 6))

    Ct = C - C @ np.linalg.matrix_power(Abar, L)
    t = np.tan(np.pi * np.arange(L) / L)  # z = e^{-i theta}: (1-z)/(1+z) = i tan(theta/2)
    e = np.empty(L)
    for jj in range(L):
        if 2 * jj == L:  # the limit (dt/2) Ct B: one product and a sum of N terms
            e[jj] = dt * (np.abs(Ct) @ np.abs(B)) + abs(dt / 2 * (Ct @ B))
            continue
        s = 1 + 1j * t[jj]  # 2/(1+z)
        g = 2j * t[jj] / dt
        with np.errstate(all="ignore"):
            R = 1 / (g - Lambda)
            rr = np.abs(R) * (1 + abs(g) * np.abs(R))
            W = np.eye(r) + (Q.conj() * R) @ P.T  # (r, r)
            u_vec = (Ct * R) @ P.T  # Ct R P^T
            v_vec = (Q.conj() * (R * B)).sum(axis=1)  # conj(Q) R B
            try:
                x = np.linalg.solve(W.T, u_vec)  # x^T = u^T W^{-1}
                y = np.linalg.solve(W, v_vec)
            except np.linalg.LinAlgError:
                e[jj] = geometric
                continue
            a = np.abs(Ct) * rr @ np.abs(B)
            b = (np.abs(Ct) * rr) @ np.abs(P.T)
            c = (np.abs(Q) * rr) @ np.abs(B)
            D = (np.abs(Q) * rr) @ np.abs(P.T)
            khat = s * (Ct @ (R * B) - x @ v_vec)
            ej = abs(s) * (a + b @ np.abs(y) + np.abs(x) @ c
                           + np.abs(x) @ (D + np.abs(W)) @ np.abs(y)) + abs(khat)
        e[jj] = min(ej, geometric) if np.isfinite(ej) else geometric

    H = np.empty((n, L), dtype=np.complex128)  # h_k = Abar^k Bbar
    H[:, 0] = Bbar
    for kk in range(1, L):
        H[:, kk] = Abar @ H[:, kk - 1]
    Y = np.linalg.lstsq(np.eye(n) - np.linalg.matrix_power(Abar, L), H, rcond=None)[0]
    ctilde = np.linalg.norm(C) * (1 + norms2[L] + T) * np.linalg.norm(Y, axis=0)
    return {
        "cond_cauchy": float(np.mean(e)),
        "cond_ctilde": ctilde,
        "cond_fft": float(np.linalg.norm(K)),
    }


# ----------------------------------------------------------------------------------------------
# HiPPO: NPLR -> DPLR at high precision


@dataclass(frozen=True)
class DPLR:
    """A = V (diag(Lambda) - Pt^T conj(Pt)) V^*, B = V Bt; float64/complex128 roundings of the
    high-precision decomposition.  Lambda sorted by imaginary part (eighe's ascending mu)."""
    Lambda: np.ndarray  # (N,) complex
    Pt: np.ndarray  # (r, N) complex
    Bt: np.ndarray  # (N,) complex
    V: np.ndarray  # (N, N) complex unitary
    Lambda_err: np.ndarray  # certified by precision doubling
    residual: float  # max |A - V(Lambda - Pt^T conj Pt)V^*| and |V^*V - I| at the high precision
    A: np.ndarray  # exact A rounded
    B: np.ndarray  # exact B rounded


def _sympy_to_mp(M):
    return [[mpmath.mpmathify(sp.N(M[i, j], mpmath.mp.dps + 10)) for j in range(M.cols)]
            for i in range(M.rows)]


def _decompose(facts, n):
    """At the current precision: (mu ascending, W) of H = -iS, and Lambda, Pt, Bt, residual."""
    S = _sympy_to_mp(facts.S)
    H = mpmath.matrix(n)
    for i in range(n):
        for j in range(n):
            H[i, j] = mpmath.mpc(0, -1) * S[i][j]
    mu, W = mpmath.eighe(H)
    shift = mpmath.mpmathify(sp.N(facts.shift, mpmath.mp.dps + 10))
    Lam = [shift + mpmath.mpc(0, 1) * mu[i] for i in range(n)]
    Pmat = _sympy_to_mp(facts.P)
    Bv = _sympy_to_mp(facts.B)
    r = len(Pmat)
    Wh = W.H
    Pt = [[mpmath.fsum(Wh[i, m] * Pmat[a][m] for m in range(n)) for i in range(n)] for a in range(r)]
    Bt = [mpmath.fsum(Wh[i, m] * Bv[m][0] for m in range(n)) for i in range(n)]
    return Lam, W, Pt, Bt


def dplr_hippo(measure, N, dps=30):
    """The DPLR form of ``oracle.hippo.transition(measure, N)`` via mpmath.eighe on -iS.

    Eigenvalues are certified by precision doubling (dps and 2*dps); the eigenvectors at 2*dps are
    certified a posteriori by the residuals of A = V(...)V^* and V^*V = I."""
    facts = hippo.nplr(measure, N)
    with mpmath.workdps(dps):
        lam_lo = _decompose(facts, N)[0]
    with mpmath.workdps(2 * dps):
        Lam, W, Pt, Bt = _decompose(facts, N)
        err = np.array([float(abs(a - b)) for a, b in zip(Lam, lam_lo)])
        A = _sympy_to_mp(facts.A)
        r = len(Pt)
        core = mpmath.matrix(N)
        for i in range(N):
            for j in range(N):
                core[i, j] = -mpmath.fsum(Pt[a][i] * mpmath.conj(Pt[a][j]) for a in range(r))
            core[i, i] += Lam[i]
        rebuilt = W * core * W.H
        res = max(float(abs(rebuilt[i, j] - A[i][j])) for i in range(N) for j in range(N))
        WhW = W.H * W
        res = max(res, max(float(abs(WhW[i, j] - (1 if i == j else 0)))
                           for i in range(N) for j in range(N)))
        scale = max(1.0, max(float(abs(x)) for x in Lam))
        if res > 2.0**-64 * scale or np.max(err) > 2.0**-64 * scale:
            raise OracleError(f"DPLR of {measure} N={N} not certified at {2 * dps} digits")
        Lambda = to_float(np.array(Lam, dtype=object), complex_out=True)
        V = to_float(np.array([[W[i, j] for j in range(N)] for i in range(N)], dtype=object),
                     complex_out=True)
        Pt_f = to_float(np.array(Pt, dtype=object), complex_out=True)
        Bt_f = to_float(np.array(Bt, dtype=object), complex_out=True)
        A_f = to_float(np.array(A, dtype=object), complex_out=False)
        B_f = to_float(np.array(_sympy_to_mp(facts.B), dtype=object)[:, 0], complex_out=False)
    return DPLR(Lambda, Pt_f, Bt_f, V, err, res, A_f, B_f)


# ----------------------------------------------------------------------------------------------
# phase-invariant comparison


def match_eigenvalues(ref, got):
    """Optimal one-to-one matching of two eigenvalue lists (multisets): returns (perm, dist) with
    got[perm[i]] matched to ref[i] and dist[i] = |ref[i] - got[perm[i]]|."""
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.shape != got.shape:
        raise ValueError(f"eigenvalue lists differ in length: {ref.shape} vs {got.shape}")
    cost = np.abs(ref[:, None] - got[None, :])
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    perm = np.empty_like(cols)
    perm[rows] = cols
    return perm, cost[np.arange(len(ref)), perm]


def clusters(Lambda, tol):
    """Groups of indices whose eigenvalues are within tol of each other (single linkage)."""
    Lambda = np.asarray(Lambda)
    order = list(range(len(Lambda)))
    groups = []
    while order:
        group = [order.pop(0)]
        grew = True
        while grew:
            grew = False
            for i in list(order):
                if np.min(np.abs(Lambda[i] - Lambda[group])) <= tol:
                    group.append(i)
                    order.remove(i)
                    grew = True
        groups.append(np.array(sorted(group)))
    return groups


def gram_invariants(Pt, Bt, groups):
    """Per cluster c: G_c = X_c X_c^*, X = [Bt; Pt] ((1+r), N) restricted to the columns of c.
    Invariant under V -> V U for any unitary U acting inside each eigenspace (phases included)."""
    X = np.vstack([np.asarray(Bt)[None, :], np.asarray(Pt)])
    return [X[:, g] @ X[:, g].conj().T for g in groups]


def compare_dplr(ref, Lambda, Pt, Bt, V=None, cluster_tol=1e-6):
    """Discrepancies between a reference ``DPLR`` and a candidate decomposition (Lambda (N,),
    Pt (r, N), Bt (N,), optional V (N, N)), none of which depends on eigenvector phases or the
    order of eigenvalues.  Returns a dict of maximum absolute differences:
      "Lambda"  -- multiset distance (optimal matching),
      "gram"    -- per-cluster Gram matrices of [Bt; Pt] (|Bt|^2, Bt conj(Pt), |Pt|^2),
      "rebuild" -- |V (Lambda - Pt^T conj Pt) V^* - A| and |V Bt - B| (if V given).
    """
    Lambda, Pt, Bt = np.asarray(Lambda), np.atleast_2d(np.asarray(Pt)), np.asarray(Bt)
    if Pt.shape[0] != ref.Pt.shape[0]:
        # a candidate may carry extra zero rows (s4 pads P to the requested rank)
        pad = max(Pt.shape[0], ref.Pt.shape[0])
        Pt = np.vstack([Pt, np.zeros((pad - Pt.shape[0], Pt.shape[1]))])
        ref_Pt = np.vstack([ref.Pt, np.zeros((pad - ref.Pt.shape[0], ref.Pt.shape[1]))])
    else:
        ref_Pt = ref.Pt
    perm, dist = match_eigenvalues(ref.Lambda, Lambda)
    groups = clusters(ref.Lambda, cluster_tol)
    g_ref = gram_invariants(ref_Pt, ref.Bt, groups)
    g_got = gram_invariants(Pt[:, perm], Bt[perm], groups)
    out = {"Lambda": float(dist.max()),
           "gram": float(max(np.abs(a - b).max() for a, b in zip(g_ref, g_got)))}
    if V is not None:
        V = np.asarray(V)
        core = np.diag(Lambda) - Pt.T @ Pt.conj()
        out["rebuild"] = float(max(np.abs(V @ core @ V.conj().T - ref.A).max(),
                                   np.abs(V @ Bt - ref.B).max()))
    return out
