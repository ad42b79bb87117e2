"""The long oracle tier (oracle/long_scan.py) against the multiple-precision oracle, side by side.

    OMP_NUM_THREADS=1 python benchmarks/bench_long_scan.py [--repeat 3] [--skip-mp]

Rows (best of --repeat runs; elements per second = elements of the output's defining tensor,
b*d*l*n for the selective scan, rows*l for the linear scan, divided by the time):
  * the same inputs through oracle/scan.py / oracle/selective_scan.py (MPFR, precision doubling)
    and through the tier for a float32 subject (W = float64) and a float64 subject (W = long
    double): forward and VJP;
  * the certification the properties run at (b, d, l, n) = (1, 8, 65536, 16), float32 subject:
    value, error bound and magnitudes of the selective scan's forward (the issue's target:
    <= 10 s on one core).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ssm_conformance.oracle import long_scan  # noqa: E402
from ssm_conformance.oracle import scan as mp_scan  # noqa: E402
from ssm_conformance.oracle import selective_scan as mp_ss  # noqa: E402
from ssm_conformance.properties.strategies.selective import selective_case_from_seed  # noqa: E402


def best_time(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def row(name, elements, seconds):
    print(f"  {name:<44s} {seconds:9.4f} s   {elements / seconds:12.4g} elements/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-mp", action="store_true", help="tier rows only")
    args = parser.parse_args()
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"long double: {np.finfo(np.longdouble).nmant + 1}-bit significand")

    # selective scan, the same (oracle-sized) inputs through both
    case = selective_case_from_seed(seed=1, b=1, d=4, l=512, n=4, A="lognormal", D=True, z=True,
                                    delta_bias=True)
    kw = {k: v for k, v in case.args().items() if k != "return_last_state"}
    elements = 1 * 4 * 512 * 4
    print(f"selective_scan (b, d, l, n) = (1, 4, 512, 4), {elements} elements:")
    if not args.skip_mp:
        row("MPFR oracle, forward", elements, best_time(lambda: mp_ss.selective_scan(**kw), 1))
        row("MPFR oracle, VJP", elements,
            best_time(lambda: mp_ss.selective_scan_vjp(case.cotangent, **kw), 1))
    for subject in ("float32", "float64"):
        row(f"tier ({subject} subjects), forward", elements,
            best_time(lambda: long_scan.selective_scan(**kw, subject_dtype=subject), args.repeat))
        row(f"tier ({subject} subjects), VJP", elements,
            best_time(lambda: long_scan.selective_scan_vjp(case.cotangent, **kw,
                                                           subject_dtype=subject), args.repeat))

    rng = np.random.default_rng(2)
    a, b = rng.uniform(-1, 1, (4, 1024)), rng.standard_normal((4, 1024))
    elements = a.size
    print(f"linear_scan (4, 1024), {elements} elements:")
    if not args.skip_mp:
        row("MPFR oracle, forward", elements, best_time(lambda: mp_scan.linear_scan(a, b), 1))
    for subject in ("float32", "float64"):
        row(f"tier ({subject} subjects), forward", elements,
            best_time(lambda: long_scan.linear_scan(a, b, subject), args.repeat))

    print("certifying a (1, 8, 65536, 16) float32 selective scan forward "
          "(value + error bound + magnitudes):")
    case = selective_case_from_seed(seed=3, b=1, d=8, l=65536, n=16, A="lognormal",
                                    delta="typical", D=True, z=True, delta_bias=True)
    kw = {k: v for k, v in case.args().items() if k != "return_last_state"}
    seconds = best_time(lambda: long_scan.selective_scan(**kw, return_last_state=True,
                                                         subject_dtype="float32"), args.repeat)
    row("tier (float32 subject), forward + last state", 8 * 65536 * 16, seconds)
    print(f"  target <= 10 s: {'met' if seconds <= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
