"""S4 kernels side by side: time and accuracy, float64, HiPPO-LegS N = 64, L = 4096.

    python benchmarks/bench_s4.py [--N 64] [--L 4096] [--L-oracle 512] [--repeat 3]

Compared: our DPLR kernel (Cauchy + Woodbury + FFT; NumPy and torch), our S4D kernel (Vandermonde;
NumPy and torch), and dense powering of the same bilinear Abar (our doubling ``ssm_kernel`` and
the plain sequential recurrence).  Errors are measured against
  * DPLR at full L: dense powering in extended precision (numpy.clongdouble, 64-bit significand,
    u = 2^-64) of Abar computed in mpmath -- not certified; it is itself checked against the
    certified mpmath oracle at L = --L-oracle, where the oracle's dense mpmath powering takes
    about a minute (at N = 64 and L = 4096 it would take well over ten minutes);
  * DPLR at L = --L-oracle: the certified oracle ``oracle.s4_kernels.dplr_kernel``;
  * S4D at full L: the certified oracle ``oracle.s4_kernels.s4d_kernel`` (it is O(N L)).
Errors are reported as max |K - K_ref| / max |K_ref|, and as the largest ratio to the tolerance
of tests/test_impl_s4.py where the oracle (with its magnitudes) is available.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import mpmath
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssm_conformance.implementations.numpy import hippo as nh  # noqa: E402
from ssm_conformance.implementations.numpy import s4 as ns  # noqa: E402
from ssm_conformance.implementations.torch import s4 as ts  # noqa: E402
from ssm_conformance.oracle import dplr as odplr  # noqa: E402
from ssm_conformance.oracle import s4_kernels as sk  # noqa: E402
from ssm_conformance.oracle.precision import to_mp  # noqa: E402

U, SAFETY = 2.0**-53, 4.0


def best_time(fn, repeat):
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def sequential(Ad, Bd, C, L):
    h, out = Bd.copy(), np.empty(L, dtype=np.result_type(Ad, Bd, C))
    for k in range(L):
        out[k] = C @ h
        h = Ad @ h
    return out


def extended_reference(Lam, P, Q, B, C, dt, L):
    """Dense powering in clongdouble of the mpmath-exact (40-digit) Abar, Bbar rounded to
    64-bit significands."""
    with mpmath.workdps(40):
        args = [to_mp(a) for a in (Lam, P, Q, B)]
        Abar, Bbar = odplr.bilinear_mp(odplr.dense_A_mp(*args[:3]), args[3], dt)

        def ld(z):  # mpc -> clongdouble, each part rounded once from 25 digits
            z = mpmath.mpc(z)
            re, im = (np.longdouble(mpmath.nstr(x, 25)) for x in (z.real, z.imag))
            return np.clongdouble(re) + np.clongdouble(1j) * im

        n = Abar.rows
        A = np.array([[ld(Abar[i, j]) for j in range(n)] for i in range(n)], dtype=np.clongdouble)
        h = np.array([ld(Bbar[i]) for i in range(n)], dtype=np.clongdouble)
    Cl = C.astype(np.clongdouble)
    out = np.empty(L, dtype=np.clongdouble)
    for k in range(L):
        out[k] = Cl @ h
        h = A @ h
    return out


def tol_dplr(ref, n, r, L):
    m = ref.magnitudes
    cauchy = (n + r + 6) * m["cond_cauchy"] + (3 * n + 2) * m["cond_ctilde"] + \
        (8 * math.ceil(math.log2(L)) + 2) * m["cond_fft"]
    dense = np.minimum(n * m["abs_power"] + (3 * n + 2) * m["disc"], (3 * n + 2) * m["norm_bound"])
    return SAFETY * U * np.maximum(cauchy, dense) + 2 * U * np.abs(ref.value) + ref.error


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--L", type=int, default=4096)
    ap.add_argument("--L-oracle", type=int, default=512)
    ap.add_argument("--dt", type=float, default=0.01)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    N, L, dt = a.N, a.L, a.dt
    Lam, Pt, Bt, V = nh.nplr("legs", N)
    C = np.random.default_rng(0).normal(size=N) @ V  # a real C in the HiPPO basis
    Ad, Bd = ns.discretize_dplr(Lam, Pt, Pt, Bt, dt)
    # S4D: S4D-Lin initialization, half of the conjugate pairs
    Ls4d = -0.5 + 1j * np.pi * np.arange(N // 2)
    Bs4d = np.ones(N // 2, dtype=complex)
    Cs4d = np.random.default_rng(1).normal(size=(N // 2, 2)) @ np.array([1, 1j])

    print(f"# S4 kernels, float64, LegS N={N}, L={L}, dt={dt}, best of {a.repeat}")
    runs = {
        "dplr numpy (Cauchy+Woodbury+FFT)": lambda: ns.dplr_kernel(Lam, Pt, Pt, Bt, C, dt, L),
        "dplr torch (Cauchy+Woodbury+FFT)": lambda: ts.dplr_kernel(Lam, Pt, Pt, Bt, C, dt, L),
        "dense numpy ssm_kernel (doubling)": lambda: ns.ssm_kernel(Ad, Bd, C, L),
        "dense torch ssm_kernel (doubling)": lambda: ts.ssm_kernel(Ad, Bd, C, L),
        "dense sequential recurrence": lambda: sequential(Ad, Bd, C, L),
        "s4d numpy (Vandermonde, ZOH)": lambda: ns.s4d_kernel(Ls4d, Bs4d, Cs4d, dt, L),
        "s4d torch (Vandermonde, ZOH)": lambda: ts.s4d_kernel(Ls4d, Bs4d, Cs4d, dt, L),
    }
    results = {name: best_time(fn, a.repeat) for name, fn in runs.items()}

    t0 = time.perf_counter()
    ref_ext = extended_reference(Lam, Pt, Pt, Bt, C, dt, L)
    t_ext = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_s4d = sk.s4d_kernel(Ls4d, Bs4d, Cs4d, dt, L)
    t_s4d = time.perf_counter() - t0
    Lo = min(a.L_oracle, L)
    t0 = time.perf_counter()
    ref_o = sk.dplr_kernel(Lam, Pt, Pt, Bt, C, dt, Lo)
    t_o = time.perf_counter() - t0
    tol_o = tol_dplr(ref_o, N, 1, Lo)
    tol_s4d = SAFETY * U * ((N // 2 + 4) * ref_s4d.magnitudes["abs_sum"] + 6 * ref_s4d.magnitudes["abs_power"]
                            + 6 * ref_s4d.magnitudes["abs_bbar"]) + 2 * U * np.abs(ref_s4d.value) + ref_s4d.error

    # at L_oracle, the kernels of length L_oracle (the DPLR kernel depends on L through C~)
    short = {
        "dplr numpy (Cauchy+Woodbury+FFT)": ns.dplr_kernel(Lam, Pt, Pt, Bt, C, dt, Lo),
        "dplr torch (Cauchy+Woodbury+FFT)": ts.dplr_kernel(Lam, Pt, Pt, Bt, C, dt, Lo),
        "dense numpy ssm_kernel (doubling)": ns.ssm_kernel(Ad, Bd, C, Lo),
        "dense torch ssm_kernel (doubling)": ts.ssm_kernel(Ad, Bd, C, Lo),
        "dense sequential recurrence": sequential(Ad, Bd, C, Lo),
    }
    ext_vs_oracle = np.max(np.abs(ref_ext[:Lo].astype(np.complex128) - ref_o.value)) / np.max(np.abs(ref_o.value))
    print(f"references: clongdouble powering L={L} {t_ext:.1f} s (its rel. error vs the certified "
          f"oracle at L={Lo}: {ext_vs_oracle:.1e}); mpmath dplr oracle L={Lo} {t_o:.1f} s; "
          f"mpmath s4d oracle L={L} {t_s4d:.1f} s")
    print(f"| kernel | time (ms) | rel. err L={L} | rel. err L={Lo} (oracle) | err/tol L={Lo} |")
    print("|---|---|---|---|---|")
    scale_ext = np.max(np.abs(ref_ext)).astype(float)
    for name, (t, K) in results.items():
        if name.startswith("s4d"):
            err = np.max(np.abs(K - ref_s4d.value)) / np.max(np.abs(ref_s4d.value))
            ratio = np.max(np.abs(K - ref_s4d.value) / tol_s4d)
            print(f"| {name} | {1e3 * t:.2f} | {err:.1e} (certified) | - | {ratio:.1e} (L={L}) |")
            continue
        err = float(np.max(np.abs(K.astype(np.clongdouble) - ref_ext)) / scale_ext)
        Ks = short[name]
        err_o = np.max(np.abs(Ks - ref_o.value)) / np.max(np.abs(ref_o.value))
        ratio = np.max(np.abs(Ks - ref_o.value) / tol_o)
        print(f"| {name} | {1e3 * t:.2f} | {err:.1e} | {err_o:.1e} | {ratio:.1e} |")


if __name__ == "__main__":
    main()
