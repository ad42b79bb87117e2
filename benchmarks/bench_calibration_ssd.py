"""Calibration of the ``ssd`` error bound (docs/bounds_ssd.md): the smallest relative error of the
late outputs (t >= l/2) that the tolerance rejects, and the oracle's time at l = 2^17.

For each length, a correct float32 kernel (implementations/torch/ssd.py, chunk_size 256) runs on
float32 inputs; its late outputs of one head are then multiplied by (1 + eps), and eps is
bisected (in log scale, to 2%) for the smallest value at which max |y - oracle| / tol > 1 --
the error a kernel may add to the late outputs before the suite notices.  Head 0 has A = 0 (no
decay: the state sums the whole past), head 1 A = -0.5 (decay over ~10..100 steps).  l <= 1100:
the MPFR oracle (oracle/ssd.py), beyond: the long tier (oracle/long_ssd.py), as the property.
--vjp: the same for grad x, on its early half (the far end of the reverse-time recurrence).

Run (from a checkout; PYTHONPATH selects the checkout measured, e.g. before/after a change):
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/bench_calibration_ssd.py [--lengths ...]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ssm_conformance.implementations.torch.ssd import ssd as torch_ssd
from ssm_conformance.oracle import long_ssd as t_ssd
from ssm_conformance.oracle import ssd as o_ssd
from ssm_conformance.properties import tolerance as tm
from ssm_conformance.properties.strategies.ssd import MAX_LENGTH, ssd_case_from_seed

LENGTHS = (1025, 8193, 32769, 131073)


def _f32(a):
    return None if a is None else np.asarray(a, dtype=np.float32).astype(np.float64)


def _inputs(l, chunk=256, seed=7):
    case = ssd_case_from_seed(seed=seed, b=1, l=l, h=2, p=1, g=1, n=2, chunk_size=chunk)
    case.A = np.array([0.0, -0.5])
    return {k: _f32(getattr(case, k)) for k in ("x", "dt", "A", "B", "C")}, chunk


def _oracle(args, chunk, l):
    pos = (args["x"], args["dt"], args["A"], args["B"], args["C"], chunk)
    if l <= MAX_LENGTH:
        return o_ssd.ssd(*pos)
    return t_ssd.ssd_long(*pos, subject_dtype="float32")


def smallest_rejected(y, ref, tol, mask, lo=1e-10, hi=1.0):
    """Smallest eps (to 2%) with max |y (1 + eps mask) - ref| / tol > 1; None if eps = hi passes,
    0.0 if eps = 0 is already rejected."""
    def rejected(eps):
        return np.max(np.abs(y * (1 + eps * mask) - ref) / tol) > 1.0
    if rejected(0.0):
        return 0.0
    if not rejected(hi):
        return None
    while hi / lo > 1.02:
        mid = np.sqrt(lo * hi)
        lo, hi = (lo, mid) if rejected(mid) else (mid, hi)
    return hi


def calibration(lengths):
    print("| l | eps rejected, head A = 0 | eps rejected, head A = -0.5 | oracle s |")
    print("|---|---|---|---|")
    for l in lengths:
        args, chunk = _inputs(l)
        t0 = time.perf_counter()
        ref = _oracle(args, chunk, l)
        secs = time.perf_counter() - t0
        with torch.no_grad():
            y = torch_ssd(*(torch.tensor(args[k], dtype=torch.float32) for k in ("x", "dt", "A", "B", "C")),
                          chunk).double().numpy()
        tol = tm.tolerance(ref, tm.ssd_terms(ref), "float32")
        cells = []
        for head in (0, 1):
            mask = np.zeros_like(y)
            mask[:, l // 2:, head] = 1.0
            eps = smallest_rejected(y, ref.value, tol, mask)
            cells.append("admitted up to 1" if eps is None else f"{eps:.2e}")
        print(f"| {l} | {cells[0]} | {cells[1]} | {secs:.2f} |", flush=True)


def calibration_vjp(lengths):
    """The same for grad x of sum(cotangent * y): relative error on its EARLY half (t < l/2, the
    far end of the adjoint recurrence)."""
    print("| l | grad x eps rejected, head A = 0 | head A = -0.5 | oracle s |")
    print("|---|---|---|---|")
    for l in lengths:
        args, chunk = _inputs(l)
        cot = _f32(np.random.default_rng(1).standard_normal(args["x"].shape))
        pos = (args["x"], args["dt"], args["A"], args["B"], args["C"], chunk)
        t0 = time.perf_counter()
        ref = (o_ssd.ssd_vjp(cot, *pos) if l <= MAX_LENGTH
               else t_ssd.ssd_vjp_long(cot, *pos, subject_dtype="float32"))["x"]
        secs = time.perf_counter() - t0
        ts = {k: torch.tensor(args[k], dtype=torch.float32, requires_grad=k == "x")
              for k in ("x", "dt", "A", "B", "C")}
        y = torch_ssd(*(ts[k] for k in ("x", "dt", "A", "B", "C")), chunk)
        (g,) = torch.autograd.grad(y, ts["x"], torch.tensor(cot, dtype=torch.float32))
        g = g.double().numpy()
        tol = tm.tolerance(ref, tm.ssd_terms(ref), "float32")
        cells = []
        for head in (0, 1):
            mask = np.zeros_like(g)
            mask[:, :l // 2, head] = 1.0
            eps = smallest_rejected(g, ref.value, tol, mask)
            cells.append("admitted up to 1" if eps is None else f"{eps:.2e}")
        print(f"| {l} | {cells[0]} | {cells[1]} | {secs:.2f} |", flush=True)


def timing(l=2**17, repeats=2):
    case = ssd_case_from_seed(seed=3, b=1, l=l, h=2, p=2, g=1, n=4, chunk_size=256, softplus=True,
                              D=True, z=True, dt_bias=True, initial_states=True, final_states=True)
    pos = tuple(_f32(getattr(case, k)) for k in ("x", "dt", "A", "B", "C")) + (256,)
    kw = {k: _f32(getattr(case, k)) for k in ("D", "z", "dt_bias", "initial_states")}
    cot = _f32(case.cotangent)
    best_f = best_b = np.inf
    clock = time.process_time   # CPU seconds of this process: steadier than wall time on a shared
    for _ in range(repeats):    # machine (run with OMP_NUM_THREADS=1: one thread)
        t0 = clock()
        t_ssd.ssd_long(*pos, dt_softplus=True, return_final_states=True, subject_dtype="float32", **kw)
        t1 = clock()
        t_ssd.ssd_vjp_long(cot, *pos, dt_softplus=True, subject_dtype="float32", **kw)
        t2 = clock()
        best_f, best_b = min(best_f, t1 - t0), min(best_b, t2 - t1)
    print(f"long tier at l = {l} (b=1, h=2, p=2, n=4, every feature): forward {best_f:.2f} s, "
          f"VJP {best_b:.2f} s CPU (best of {repeats})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="*", default=list(LENGTHS))
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--vjp", action="store_true", help="also the gradient's calibration")
    a = ap.parse_args()
    calibration(a.lengths)
    if a.vjp:
        calibration_vjp(a.lengths)
    if not a.no_timing:
        timing()
