"""HiPPO transition matrices, exactly (SymPy): derived from measure and basis, and in s4's conventions.

Two independent routes, compared by tests/test_oracle_hippo.py:

* ``derive_legs``, ``derive_legt``, ``derive_lagt``, ``derive_fout`` -- the HiPPO derivation (Gu et
  al. 2020, Appendix D): project the input history onto an orthonormal basis under a measure,
  c_n(t) = <u, g_n^{(t)}>_{mu^{(t)}}, differentiate under the integral sign, and express d/dt c in
  terms of c and u.  Only polynomial (or trigonometric) projections are computed, exactly.
* ``transition(measure, N)`` -- the closed forms as state-spaces/s4 ``src/models/hippo/hippo.py``
  ``transition()`` builds them (read at commit e757cef5), written as exact SymPy entries.  Every
  convention of that file is stated at the measure below; the tests show how each one relates to
  the derivation.

``rank_correction`` / ``nplr`` give the normal-plus-low-rank facts: a real P (r, N) and a shift such
that S = A + P^T P - shift*I is skew-symmetric, exactly (P^T P = sum_r p_r p_r^T, as s4's
``rank_correction`` (r, N) rows).  ``nplr_entry_proof`` proves the identity for every N from the
entry formulas (symbolic n, k).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

MEASURES = ("legs", "legt", "lagt", "fout")

_y = sp.Symbol("y", real=True)  # a basis variable


def _check_N(N, measure=None):
    if isinstance(N, bool) or not isinstance(N, int) or N < 1:
        raise ValueError(f"N must be an int >= 1, got {N!r}")
    if measure == "fout" and N % 2:
        # s4: freqs = arange(N//2) gives an A of size 2*(N//2); B has N entries -> no odd N.
        raise ValueError(f"N must be even for measure 'fout' (s4's construction), got {N}")


def _check_measure(measure):
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")


# ----------------------------------------------------------------------------------------------
# The derivations


def _poly(expr, var):
    return sp.Poly(sp.expand(expr), var, domain=sp.QQ)


def _legendre_integrals(q, N):
    """int_{-1}^{1} q(y) P_k(y) dy for k < N, exactly; q a rational polynomial (sp.Poly in y)."""
    out = []
    for k in range(N):
        antiderivative = (q * _poly(sp.legendre(k, _y), _y)).integrate()
        out.append(antiderivative.eval(1) - antiderivative.eval(-1))
    return out


def _laguerre_weighted_integral(p):
    """int_0^inf p(s) e^{-s} ds = sum_m p_m m!, exactly; p a rational sp.Poly."""
    return sum(c * sp.factorial(m[0]) for m, c in p.terms())


def derive_legs(N):
    """HiPPO-LegS from its measure; returns (A, B), B of shape (N, 1), with d/dt c = (1/t)(A c + B u).

    Measure mu^{(t)} = (1/t) 1_[0,t](x) dx; basis g_n(t, x) = sqrt(2n+1) P_n(y), y = 2x/t - 1, which
    is orthonormal since dmu = dy/2 on [-1, 1].  c_n(t) = (1/t) int_0^t u(x) g_n(t, x) dx, so

      d/dt c_n = -(1/t) c_n + (1/t) u(t) g_n(t, t) + (1/t) int_0^t u(x) d/dt g_n(t, x) dx,

    d/dt g_n = sqrt(2n+1) P_n'(y) (-2x/t^2) = (1/t) q_n(y),  q_n(y) = -(1 + y) sqrt(2n+1) P_n'(y),
    a polynomial of degree n: q_n = sum_k a_nk g_k, so the last term is (1/t) sum_k a_nk c_k.
    Hence A_nk = a_nk - delta_nk and B_n = g_n(t, t) = sqrt(2n+1) P_n(1) = sqrt(2n+1).
    """
    _check_N(N)
    A = sp.zeros(N, N)
    for n in range(N):
        # a_nk = (1/2) int q_n sqrt(2k+1) P_k dy, with q_n = sqrt(2n+1) * (rational polynomial)
        q = _poly(-(1 + _y) * sp.diff(sp.legendre(n, _y), _y), _y)
        for k, integral in enumerate(_legendre_integrals(q, N)):
            A[n, k] = sp.Rational(1, 2) * sp.sqrt((2 * n + 1) * (2 * k + 1)) * integral
        A[n, n] -= 1
    B = sp.Matrix([sp.sqrt(2 * n + 1) for n in range(N)])
    return A, B


def derive_legt(N, theta=1):
    """HiPPO-LegT (window theta) from its measure; returns (A, B), d/dt c = A c + B u.

    Measure mu^{(t)} = (1/theta) 1_[t-theta, t](x) dx; basis g_n(t, x) = sqrt(2n+1) P_n(y),
    y = 2(x - t)/theta + 1 in [-1, 1].  With c_n = (1/theta) int_{t-theta}^t u g_n dx,

      d/dt c_n = (1/theta)[u(t) g_n(t, t) - u(t-theta) g_n(t, t-theta)]
                 + (1/theta) int u(x) d/dt g_n(t, x) dx,

    g_n(t, t) = sqrt(2n+1), g_n(t, t-theta) = sqrt(2n+1)(-1)^n, d/dt g_n = (1/theta) q_n(y) with
    q_n = -2 sqrt(2n+1) P_n'(y) = sum_k a_nk g_k.  HiPPO replaces the unknown u(t - theta) by its
    reconstruction from the current coefficients, sum_k c_k g_k(t, t - theta).  Hence
    A_nk = (a_nk - sqrt(2n+1)(-1)^n sqrt(2k+1)(-1)^k)/theta, B_n = sqrt(2n+1)/theta.
    """
    _check_N(N)
    theta = sp.nsimplify(theta)
    A = sp.zeros(N, N)
    for n in range(N):
        q = _poly(-2 * sp.diff(sp.legendre(n, _y), _y), _y)  # q_n / sqrt(2n+1)
        for k, integral in enumerate(_legendre_integrals(q, N)):
            a_nk = sp.Rational(1, 2) * sp.sqrt((2 * n + 1) * (2 * k + 1)) * integral
            A[n, k] = (a_nk - sp.sqrt((2 * n + 1) * (2 * k + 1)) * (-1) ** (n + k)) / theta
    B = sp.Matrix([sp.sqrt(2 * n + 1) / theta for n in range(N)])
    return A, B


def derive_lagt(N):
    """Translated Laguerre with Laguerre *functions*; returns (A, B), d/dt c = A c + B u.

    Basis l_n(s) = L_n(s) e^{-s/2} (orthonormal in L^2([0, inf), ds)), measure ds on (-inf, t] in
    the elapsed time s = t - x:  c_n(t) = int_{-inf}^t u(x) l_n(t - x) dx.  Then

      d/dt c_n = u(t) l_n(0) + int u(x) l_n'(t - x) dx,  l_n' = (L_n' - L_n/2) e^{-s/2},

    and L_n' - L_n/2 = sum_k a_nk L_k with a_nk = int_0^inf (L_n' - L_n/2) L_k e^{-s} ds (L_k are
    orthonormal under e^{-s} ds).  Hence A = (a_nk), B_n = l_n(0) = L_n(0) = 1.
    (The HiPPO paper's LagT, measure e^{-(t-x)} with basis L_n, gives A - I/2; s4's 'lagt' is this
    one, see ``transition``.)
    """
    _check_N(N)
    s = sp.Symbol("s", real=True)
    A = sp.zeros(N, N)
    for n in range(N):
        Ln = sp.laguerre(n, s)
        q = _poly(sp.diff(Ln, s) - Ln / 2, s)
        for k in range(N):
            A[n, k] = _laguerre_weighted_integral(q * _poly(sp.laguerre(k, s), s))
    B = sp.ones(N, 1)
    return A, B


def derive_fout(N, theta=1):
    """Translated Fourier (window theta) from its measure; returns (A, B), d/dt c = A c + B u.

    Measure (1/theta) 1_[t-theta, t](x) dx; with s = x - t in [-theta, 0] and w_k = 2 pi k/theta the
    basis, in s4's slot layout, is g_0 = 1, g_1 = 0 (the "sine of frequency 0": an identically zero,
    dead slot that s4 keeps), and for k = 1..N/2-1: g_{2k} = sqrt2 cos(w_k s),
    g_{2k+1} = sqrt2 sin(w_k (t - x)) = -sqrt2 sin(w_k s) (sine of the elapsed time, which gives
    s4's signs).  With c_n = (1/theta) int u(x) g_n(x - t) dx,

      d/dt c_n = (1/theta)[u(t) g_n(0) - u(t - theta) g_n(-theta)] - (1/theta) int u g_n'(x - t) dx,

    g_n(0) = g_n(-theta) = B_n (periodic basis), u(t - theta) ~ sum_k c_k g_k(-theta) = B^T c, and
    -g_n' = sum_k J_nk g_k (projected below).  Hence A = J - B B^T/theta, B/theta.
    """
    _check_N(N, "fout")
    theta = sp.nsimplify(theta)
    s = sp.Symbol("s", real=True)
    g = [sp.Integer(1), sp.Integer(0)]
    for k in range(1, N // 2):
        w = 2 * sp.pi * k / theta
        g += [sp.sqrt(2) * sp.cos(w * s), -sp.sqrt(2) * sp.sin(w * s)]
    g = g[:N]
    J = sp.zeros(N, N)
    for n in range(N):
        dg = -sp.diff(g[n], s)
        for k in range(N):
            if g[k] != 0 and dg != 0:
                J[n, k] = sp.simplify(sp.integrate(dg * g[k], (s, -theta, 0)) / theta)
    B = sp.Matrix([g_n.subs(s, 0) for g_n in g])
    assert B == sp.Matrix([g_n.subs(s, -theta) for g_n in g])  # periodic: both endpoints agree
    return J - B * B.T / theta, B / theta


# ----------------------------------------------------------------------------------------------
# s4's conventions, exactly


def transition(measure, N):
    """(A, B) as s4's ``transition(measure, N)`` (default measure_args), exact; B is (N, 1).

    legs: A_nk = -sqrt((2n+1)(2k+1)) (n > k), -(n+1) (n = k), 0 (n < k); B_n = sqrt(2n+1).
          (s4 builds T M T^{-1} with M_nk = -(2k+1) (n >= k) + n delta_nk, T = diag sqrt(2n+1);
          these are the entries.)  Equals ``derive_legs`` (for d/dt c = (1/t)(A c + B u)).
    legt: A_nk = -(1/2) sqrt((2n+1)(2k+1)) * (1 if n >= k else (-1)^(n-k)), B_n = sqrt(2n+1)/2.
          s4 "halves again for timescale correctness": this is ``derive_legt`` with window
          theta = 2 (theta = 1 gives twice these).
    lagt: A = I/2 - tril(ones), B = beta * ones with s4's default beta = 1.  Equals
          ``derive_lagt`` (Laguerre functions; the HiPPO paper's LagT is A - I/2).
    fout: N even.  Slot 0 constant, slot 1 dead, slots (2k, 2k+1) = (cos, sin) of frequency k:
          A = pi*J - B B^T with J[2k, 2k+1] = -k, J[2k+1, 2k] = k, B = (1, 0, sqrt2, 0, sqrt2, 0, ...).
          Note s4's pi*k is the frequency of a window theta = 2 (2 pi k/theta) while the boundary
          term -B B^T has the weight of theta = 1 (theta = 2 would give -B B^T/2 and B/2: that is
          s4's 'fourier_decay').  So s4's 'fout' is the skew part of ``derive_fout(N, 2)`` minus
          B B^T: not the exact FouT of one window, but the contract asks for s4's convention.
    """
    _check_measure(measure)
    _check_N(N, measure)
    r = [sp.sqrt(2 * n + 1) for n in range(N)]
    A = sp.zeros(N, N)
    if measure == "legs":
        for n in range(N):
            for k in range(n):
                A[n, k] = -r[n] * r[k]
            A[n, n] = -(n + 1)
        B = sp.Matrix(r)
    elif measure == "legt":
        half = sp.Rational(1, 2)
        for n in range(N):
            for k in range(N):
                A[n, k] = -half * r[n] * r[k] * (1 if n >= k else (-1) ** (n - k))
        B = sp.Matrix(r) * half
    elif measure == "lagt":
        for n in range(N):
            for k in range(n):
                A[n, k] = -1
            A[n, n] = -sp.Rational(1, 2)
        B = sp.ones(N, 1)
    else:  # fout
        B = sp.zeros(N, 1)
        B[0] = 1
        for n in range(2, N, 2):
            B[n] = sp.sqrt(2)
        for k in range(1, N // 2):
            A[2 * k, 2 * k + 1] = -sp.pi * k
            A[2 * k + 1, 2 * k] = sp.pi * k
        A = A - B * B.T
    return A, B


# ----------------------------------------------------------------------------------------------
# Normal plus low rank


def rank_correction(measure, N):
    """(P, shift): P (r, N) exact, as s4's ``rank_correction`` (minimal rank), and the real shift
    with A + P^T P = shift*I + S, S skew-symmetric.

    legs: r = 1, P_n = sqrt(n + 1/2), shift = -1/2.
    legt: r = 2, P_0 = sqrt(2n+1)/sqrt2 at even n (0 at odd), P_1 the same at odd n; shift 0
          (s4 halves P by 2^{-1/2} "just like the original matrix was halved").
    lagt: r = 1, P_n = sqrt(1/2), shift 0.
    fout: r = 1, P = B, shift 0; S = pi*J has a double zero eigenvalue (slots 0 and 1).
    """
    _check_measure(measure)
    _check_N(N, measure)
    if measure == "legs":
        P = sp.Matrix([[sp.sqrt(sp.Rational(2 * n + 1, 2)) for n in range(N)]])
        return P, -sp.Rational(1, 2)
    if measure == "legt":
        P = sp.zeros(2, N)
        for n in range(N):
            P[n % 2, n] = sp.sqrt(sp.Rational(2 * n + 1, 2))
        return P, sp.Integer(0)
    if measure == "lagt":
        return sp.Matrix([[sp.sqrt(sp.Rational(1, 2))] * N]), sp.Integer(0)
    return transition("fout", N)[1].T, sp.Integer(0)


@dataclass(frozen=True)
class NPLR:
    """A + P^T P = shift*I + S with S = -S^T; all exact SymPy."""
    A: sp.Matrix
    B: sp.Matrix
    P: sp.Matrix  # (r, N)
    shift: sp.Expr
    S: sp.Matrix


def nplr(measure, N):
    """The normal-plus-low-rank facts of ``transition(measure, N)``; raises AssertionError if the
    skew part is not exactly skew (it is a theorem, checked here in exact arithmetic)."""
    A, B = transition(measure, N)
    P, shift = rank_correction(measure, N)
    S = (A + P.T * P - shift * sp.eye(N)).applyfunc(sp.nsimplify if measure == "fout" else sp.expand)
    residual = (S + S.T).applyfunc(sp.simplify)
    assert residual == sp.zeros(N, N), f"{measure}: A + P^T P - shift I is not skew for N={N}"
    return NPLR(A, B, P, shift, S)


def nplr_entry_proof(measure):
    """Prove A + P^T P - shift*I skew for *every* N from the entry formulas, with symbolic
    n > k >= 0 (and the diagonal n = k): returns the list of residuals, all exactly zero.

    For legt the entries depend on the parities of n and k, so each of the four cases is
    proved separately (n = 2a + p, k = 2b + q).
    """
    _check_measure(measure)
    n, k = sp.symbols("n k", integer=True, nonnegative=True)
    half = sp.Rational(1, 2)
    rn, rk = sp.sqrt(2 * n + 1), sp.sqrt(2 * k + 1)
    out = []
    if measure == "legs":
        # (n > k): A_nk = -rn rk, A_kn = 0, P_n P_k = rn rk / 2 (both terms): S_nk + S_kn
        out.append(sp.simplify(-rn * rk + 0 + 2 * (rn * rk / 2)))
        # (n = k): A_nn + P_n^2 - shift = -(n+1) + (n + 1/2) + 1/2 must be 0 (S_nn = 0)
        out.append(sp.simplify(-(n + 1) + (n + half) + half))
    elif measure == "legt":
        for same_parity in (True, False):
            sign_nk = 1 if same_parity else -1  # (-1)^(n-k)
            pp = rn * rk / 2 if same_parity else 0  # sum_r P_rn P_rk
            # n > k: A_nk = -rn rk/2, A_kn = -(1/2) rk rn (-1)^(k-n)
            out.append(sp.simplify(-rn * rk / 2 - rn * rk / 2 * sign_nk + 2 * pp))
        out.append(sp.simplify(-half * rn * rn + rn * rn / 2))  # diagonal, shift 0
    elif measure == "lagt":
        out.append(sp.simplify(-1 + 0 + 2 * half))  # n > k: A_nk = -1, A_kn = 0, P P = 1/2
        out.append(sp.simplify((half - 1) + half - 0))  # diagonal: A_nn = 1/2 - 1, P_n^2 = 1/2, shift 0
    else:
        # fout: A + B B^T = pi*J by definition of s4's A; J is skew entry by entry.
        out.append(sp.simplify(-sp.pi * k + sp.pi * k))
    return out
