"""Side-by-side timings of our Mamba-family kernels against mamba-ssm's pure-torch references.

    python benchmarks/bench_mamba.py [--b 2 --d 256 --n 16 --l 2048] [--bwd-l 512] [--repeat 3] [--threads 1]

Rows (best of --repeat runs, after one warm-up; ratio = reference time / this row's time):
  selective scan, float32, forward (at l) and forward+backward (at --bwd-l: the reference's
  backward is quadratic in l -- each step's select allocates a full-size zero gradient -- so at
  l = 2048 one run takes minutes):
    * mamba-ssm ``selective_scan_ref`` through tests/subjects/mamba_refs.py when it loads (needs
      einops and the mamba-ssm sources, see docs/mamba_adapters.md); otherwise the ref-style loop
      of tests/subjects/mamba_wrong.py (``selective_scan_correct``), which is said in the table;
    * ours: implementations/torch/mamba.py (float32) and implementations/numpy/mamba.py (float64);
  linear scan h_t = a_t h_{t-1} + b_t over (b*d*n, l): sequential vs Hillis-Steele (NumPy, torch)
  and mambapy's pscan when it loads;
  SSD (Mamba-2) forward: ours (torch) vs ``ssd_chunk_scan_combined_ref`` when it loads.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ssm_conformance.implementations.numpy import mamba as np_mamba  # noqa: E402
from ssm_conformance.implementations.numpy import scan as np_scan  # noqa: E402
from ssm_conformance.implementations.torch import mamba as t_mamba  # noqa: E402
from ssm_conformance.implementations.torch import scan as t_scan  # noqa: E402
from ssm_conformance.implementations.torch import ssd as t_ssd  # noqa: E402
from tests.subjects import mamba_refs, mamba_wrong  # noqa: E402


def best_time(fn, repeat):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def fwd_bwd(fn, tensors):
    def run():
        ps = [t.detach().requires_grad_() if t.is_floating_point() or t.is_complex() else t for t in tensors]
        fn(*ps).float().sum().backward()
    return run


def table(title, rows):
    """rows: (name, seconds); the first row is the reference of the ratios."""
    print(f"\n{title}")
    ref = rows[0][1]
    w = max(len(r[0]) for r in rows)
    print(f"  {'':{w}}  {'time (ms)':>10}  {'ratio':>7}")
    for name, t in rows:
        print(f"  {name:{w}}  {t * 1e3:10.1f}  {ref / t:7.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--b", type=int, default=2)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--l", type=int, default=2048)
    ap.add_argument("--bwd-l", type=int, default=512, help="sequence length of the backward rows")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared machine several threads per op make "
                         "small-op loops like the reference's wait on descheduled threads)")
    ap.add_argument("--no-backward", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    b, d, n, l = args.b, args.d, args.n, args.l
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numpy {np.__version__}; "
          f"(b, d, n, l) = {(b, d, n, l)}")

    ok, why = mamba_refs.available("mamba_ssm")
    if ok:
        ref_name, ref_fn = "mamba-ssm selective_scan_ref", mamba_refs.selective_scan
    else:
        print(f"mamba-ssm references not loadable ({why.splitlines()[0]});\n"
              f"using the ref-style loop tests/subjects/mamba_wrong.py:selective_scan_correct instead")
        ref_name, ref_fn = "ref-style loop (mamba_wrong)", mamba_wrong.selective_scan_correct

    g = torch.Generator().manual_seed(0)
    u = torch.randn(b, d, l, generator=g)
    delta = torch.randn(b, d, l, generator=g) * 0.5
    A = -torch.rand(d, n, generator=g) - 0.5
    B = torch.randn(b, n, l, generator=g)
    C = torch.randn(b, n, l, generator=g)
    D = torch.randn(d, generator=g)
    z = torch.randn(b, d, l, generator=g)
    bias = torch.randn(d, generator=g)
    targs = (u, delta, A, B, C, D, z, bias)

    def ours_t(*a):
        return t_mamba.selective_scan(*a, delta_softplus=True)

    def ref_t(*a):
        return ref_fn(*a, delta_softplus=True)

    nargs = [t.double().numpy() for t in targs]
    rows = [(ref_name + " (fp32)", best_time(lambda: ref_t(*targs), args.repeat)),
            ("ours, torch (fp32)", best_time(lambda: ours_t(*targs), args.repeat)),
            ("ours, numpy (fp64)", best_time(lambda: np_mamba.selective_scan(*nargs, delta_softplus=True),
                                             args.repeat))]
    y_ref, y_ours = ref_t(*targs), ours_t(*targs)
    table(f"selective scan forward, D + z + delta_bias + softplus, variable B/C "
          f"(max |ours - ref| = {(y_ref - y_ours).abs().max().item():.2e})", rows)
    if not args.no_backward:
        lb = min(args.bwd_l, l)
        short = [t[..., :lb] if t.dim() == 3 else t for t in targs]
        rows = [(ref_name + " (fp32)", best_time(fwd_bwd(ref_t, short), args.repeat)),
                ("ours, torch (fp32)", best_time(fwd_bwd(ours_t, short), args.repeat))]
        table(f"selective scan forward + backward, l = {lb}", rows)

    # Linear scans over the same amount of work: (b*d*n) independent sequences of length l.
    a = torch.rand(b * d * n, l, generator=g) * 0.2 + 0.8
    x = torch.randn(b * d * n, l, generator=g)
    an, xn = a.double().numpy(), x.double().numpy()
    rows = [("numpy sequential (fp64)", best_time(lambda: np_scan.linear_scan(an, xn), args.repeat)),
            ("numpy Hillis-Steele (fp64)", best_time(lambda: np_scan.linear_scan_parallel(an, xn), args.repeat)),
            ("torch sequential (fp32)", best_time(lambda: t_scan.linear_scan(a, x), args.repeat)),
            ("torch Hillis-Steele (fp32)", best_time(lambda: t_scan.linear_scan_parallel(a, x), args.repeat))]
    if mamba_refs.available("mambapy")[0]:
        rows.append(("mambapy pscan, Blelloch (fp32)", best_time(lambda: mamba_refs.linear_scan(a, x), args.repeat)))
    table(f"linear scan, {b * d * n} sequences x l = {l} (ratio vs numpy sequential)", rows)

    # SSD at a Mamba-2-like shape with the same number of channels d = h * p.
    p = 64 if d % 64 == 0 else d
    h = d // p
    ns, chunk = 64, 256
    xs = torch.randn(b, l, h, p, generator=g)
    dts = torch.randn(b, l, h, generator=g)
    As = -torch.rand(h, generator=g) - 0.5
    Bs = torch.randn(b, l, 1, ns, generator=g)
    Cs = torch.randn(b, l, 1, ns, generator=g)
    Ds = torch.randn(h, generator=g)
    dtb = torch.randn(h, generator=g)
    rows = []
    if ok:
        rows.append(("mamba-ssm ssd_chunk_scan_combined_ref", best_time(
            lambda: mamba_refs.ssd(xs, dts, As, Bs, Cs, chunk, D=Ds, dt_bias=dtb, dt_softplus=True), args.repeat)))
    rows.append(("ours, torch", best_time(
        lambda: t_ssd.ssd(xs, dts, As, Bs, Cs, chunk, D=Ds, dt_bias=dtb, dt_softplus=True), args.repeat)))
    table(f"SSD forward, fp32, (b, l, h, p, n) = {(b, l, h, p, ns)}, chunk {chunk}", rows)


if __name__ == "__main__":
    main()
