"""Timing of our LTI kernels, side by side (a script, not a test):

    python benchmarks/bench_lti.py [--repeats 7]

causal_conv: our NumPy (scipy.fft) and torch (torch.fft) FFT convolutions against direct
np.convolve(u, K)[:L], for L in (256, 4096, 65536). zoh: our NumPy (scipy.linalg.expm) and torch
(torch.linalg.matrix_exp) Van Loan exponentials for n in (4, 16, 64), B of shape (n, 1).
Prints the median of ``repeats`` timed runs (each the mean of enough calls to take >= 20 ms) and
speedups. On a shared machine, BLAS and torch thread pools that spin for busy cores distort the
figures by up to 1000x (torch zoh at n = 16: 160 ms with 2 threads, 0.6 ms with 1); for stable
figures run with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 (the settings are printed).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from ssm_conformance.implementations.numpy import convolution as np_conv  # noqa: E402
from ssm_conformance.implementations.numpy import discretize as np_disc  # noqa: E402
from ssm_conformance.implementations.torch import convolution as torch_conv  # noqa: E402
from ssm_conformance.implementations.torch import discretize as torch_disc  # noqa: E402


def median_time(fn, repeats: int) -> float:
    """Median over ``repeats`` of the mean time per call, each over >= 20 ms of calls
    (at most 3 samples for calls slower than 1 s: the O(L^2) direct sum at L = 65536)."""
    start = time.perf_counter()
    fn()  # warm up (plan caches, lazy imports)
    if time.perf_counter() - start > 1.0:
        repeats = min(repeats, 3)
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - start >= 0.02:
            break
        number *= 2
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def table(title, header, rows):
    print(f"\n{title}")
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    import torch
    print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, float64, CPU; "
          f"median of {args.repeats}")

    rows = []
    for L in (256, 4096, 65536):
        u, K = rng.standard_normal(L), rng.standard_normal(L)
        t_direct = median_time(lambda: np.convolve(u, K)[:L], args.repeats)
        t_np = median_time(lambda: np_conv.causal_conv(u, K), args.repeats)
        t_torch = median_time(lambda: torch_conv.causal_conv(u, K), args.repeats)
        rows.append([L, fmt(t_direct), fmt(t_np), fmt(t_torch),
                     f"{t_direct / t_np:.1f}x", f"{t_direct / t_torch:.1f}x"])
    table("causal_conv", ["L", "np.convolve", "ours numpy", "ours torch",
                          "speedup numpy", "speedup torch"], rows)

    rows = []
    for n in (4, 16, 64):
        A = rng.standard_normal((n, n)) / np.sqrt(n)
        B = rng.standard_normal((n, 1))
        t_np = median_time(lambda: np_disc.zoh(A, B, 0.1), args.repeats)
        t_torch = median_time(lambda: torch_disc.zoh(A, B, 0.1), args.repeats)
        rows.append([n, fmt(t_np), fmt(t_torch), f"{t_torch / t_np:.2f}"])
    table("discretize zoh (B: (n, 1))", ["n", "ours numpy", "ours torch", "torch / numpy"], rows)


if __name__ == "__main__":
    main()
