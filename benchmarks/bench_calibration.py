"""How small a late error the suite's tolerance rejects: the calibration of the scan bounds.

    OMP_NUM_THREADS=1 python benchmarks/bench_calibration.py [--max-log2 17] [--elements 64]

For l = 2^10 ... 2^max-log2 (one step past each power of two, as the explicit long cases), on
Mamba's ranges (selective_case_from_seed: S4D-real A, typical dt, D and z; b=1, d=2, n=4) and on
a near-one linear scan (scan_case_from_seed, 2 rows): the reference and the tolerance the
properties compute (the long tier, oracle/long_scan.py, and properties/tolerance.py's terms for a
float32 subject), then, for each of --elements output elements past l/2 (evenly spaced), the
smallest relative error eps that, injected into that one element of an otherwise exact float32
result, is rejected (|fl32(y (1 + eps)) - ref| > tol), found by bisection over log eps. Printed:
the smallest (the tightest element) and the median over those elements, for the forward output
(out / h) and one gradient (grad_u / grad_b, the cotangent of the case).

Run it against another checkout (PYTHONPATH) to compare bounds: it reads whichever terms the
loaded properties/tolerance.py defines (the uniform bound had no ``linear_scan_terms``).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ssm_conformance.oracle import long_scan  # noqa: E402
from ssm_conformance.properties import tolerance as tm  # noqa: E402
from ssm_conformance.properties.strategies.scans import scan_case_from_seed  # noqa: E402
from ssm_conformance.properties.strategies.selective import selective_case_from_seed  # noqa: E402

DTYPE = "float32"


def linear_terms(ref):
    if hasattr(tm, "linear_scan_terms"):
        return tm.linear_scan_terms(ref)
    m = ref.magnitudes
    return [(m["depth"], m["abs_scan"] if "abs_scan" in m else m["abs_grad"])]


def smallest_rejected(value, tol, lo=1e-10, hi=1.0, steps=50):
    """Smallest eps with |fl32(value (1 + eps)) - value| > tol (value: the reference, float64),
    by bisection over log eps; inf if even eps = hi passes."""
    y = np.float64(np.float32(value))

    def rejected(eps):
        got = np.float64(np.float32(y * (1.0 + eps)))
        return abs(got - value) > tol

    if not rejected(hi):
        return np.inf
    if rejected(lo):
        return lo
    for _ in range(steps):
        mid = np.sqrt(lo * hi)
        lo, hi = (lo, mid) if rejected(mid) else (mid, hi)
    return hi


def late_calibration(ref, terms, count):
    """(min, median) over ``count`` elements past l/2 (last axis) of the smallest rejected eps;
    elements whose value is 0 are skipped (no relative error is defined there)."""
    tol = tm.tolerance(ref, terms, DTYPE)
    value = np.asarray(ref.value, dtype=np.float64)
    length = value.shape[-1]
    flat_rows = value.reshape(-1, length)
    tol_rows = np.broadcast_to(tol, value.shape).reshape(-1, length)
    steps = np.unique(np.linspace(length // 2, length - 1, max(1, count // flat_rows.shape[0]))
                      .astype(int))
    eps = [smallest_rejected(flat_rows[r, t], tol_rows[r, t])
           for r in range(flat_rows.shape[0]) for t in steps if flat_rows[r, t] != 0.0]
    return float(np.min(eps)), float(np.median(eps))


def selective(l, count):
    case = selective_case_from_seed(seed=7, b=1, d=2, l=l, n=4, D=True, z=True)
    kw = {k: v for k, v in case.args().items() if k != "return_last_state"}
    out = long_scan.selective_scan(**kw, subject_dtype=DTYPE)
    grads = long_scan.selective_scan_vjp(case.cotangent, **kw, subject_dtype=DTYPE)
    return (late_calibration(out, tm.selective_scan_terms(out), count),
            late_calibration(grads["u"], tm.selective_scan_terms(grads["u"]), count))


def linear(l, count):
    case = scan_case_from_seed(seed=7, shape=(2, l), a_kind="near_one")
    h = long_scan.linear_scan(case.a, case.b, subject_dtype=DTYPE)
    grads = long_scan.linear_scan_vjp(case.a, case.b, case.cotangent, subject_dtype=DTYPE)
    return (late_calibration(h, linear_terms(h), count),
            late_calibration(grads["b"], linear_terms(grads["b"]), count))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-log2", type=int, default=17)
    parser.add_argument("--elements", type=int, default=64)
    args = parser.parse_args()
    print(f"smallest relative error rejected in one element past l/2 (float32 subject; "
          f"min / median over {args.elements} elements)")
    print(f"{'role':<15s}{'l':>8s}  {'forward min':>12s} {'median':>10s}   "
          f"{'gradient min':>12s} {'median':>10s}")
    for role, fn in (("selective_scan", selective), ("linear_scan", linear)):
        for k in range(10, args.max_log2 + 1):
            l = 2**k + 1
            (fmin, fmed), (gmin, gmed) = fn(l, args.elements)
            print(f"{role:<15s}{l:>8d}  {fmin:12.2e} {fmed:10.2e}   {gmin:12.2e} {gmed:10.2e}",
                  flush=True)


if __name__ == "__main__":
    main()
