"""Decode with state vs full recompute for the hybrid (Mamba + attention) stack, on this CPU.

    python benchmarks/bench_hybrid.py [--lengths 256 1024 4096] [--backends torch numpy]
                                      [--mixer mamba1|mamba2] [--d-model 64] [--layers 4]
                                      [--pattern MMMA] [--steps 16] [--threads N]

For each prefix length L: the cost of producing the token at position L
  * by decoding with state: Mamba conv/SSM states and the attention KV cache after a prefill of
    the L-token prefix; the median of --steps consecutive ``step`` calls (positions L + 5 ...,
    after 5 untimed ones: the first calls pay one-off costs such as the KV cache's reallocation;
    the median because the machine is shared);
  * by full recompute: a prefill of the whole L + 1 tokens, no state (one run).
One run each (a benchmark, not a profile); the ratio recompute / decode is printed.  The last
column compares the first decoded token with the last position of the recompute (max |difference|
relative to max |output|): the two modes must agree to rounding (examples/hybrid_demo.py judges
that against the error bound of oracle/hybrid.py at a size where the bound pass is cheap).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssm_conformance.implementations.numpy import hybrid as nh  # noqa: E402
from ssm_conformance.implementations.torch import hybrid as th  # noqa: E402


WARMUP = 4


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_backend(backend, cfg, weights, x, lengths, steps):
    if backend == "torch":
        stack = th.HybridStack(weights)                       # float32 parameters
        conv = lambda a: torch.from_numpy(a).float()          # noqa: E731
        back = lambda t: t.double().numpy()                   # noqa: E731
        dtype = "float32"
    else:
        stack = nh.HybridStack(weights)                       # float64
        conv = back = lambda a: a                             # noqa: E731
        dtype = "float64"
    rows = []
    with torch.no_grad():
        for L in lengths:
            state = stack.init_state(1)
            t_prefill, _ = timed(lambda: stack.forward(conv(x[:, :L]), state))
            first = back(stack.step(conv(x[:, L]), state)[0])      # token L (compared below)
            for t in range(L + 1, L + 1 + WARMUP):                   # untimed: first-call costs
                stack.step(conv(x[:, t]), state)
            t_dec = []
            for t in range(L + 1 + WARMUP, L + 1 + WARMUP + steps):
                dt, _ = timed(lambda: stack.step(conv(x[:, t]), state))
                t_dec.append(dt)
            t_full, y_full = timed(lambda: stack.forward(conv(x[:, :L + 1])))
            last = back(y_full)[:, -1]
            rel = np.abs(first - last).max() / np.abs(last).max()
            rows.append((L, t_prefill, float(np.median(t_dec)), t_full, rel))
    return dtype, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--backends", nargs="+", default=["torch", "numpy"], choices=["torch", "numpy"])
    ap.add_argument("--mixer", default="mamba1", choices=["mamba1", "mamba2"])
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--pattern", default="MMMA")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on this shared 2-core machine two threads cost "
                         "~50 ms of synchronization per small op, measured)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = nh.HybridConfig(d_model=args.d_model, n_layers=args.layers, pattern=args.pattern, mixer=args.mixer,
                          n_heads=4, d_state=16, headdim=16, chunk_size=64, mlp_hidden=2 * args.d_model)
    weights = nh.HybridWeights.random(cfg, seed=0)
    x = np.random.default_rng(1).standard_normal((1, max(args.lengths) + args.steps + WARMUP + 2, args.d_model))
    n_params = sum(a.size for a in weights.to_dict().values())
    print(f"hybrid stack: d_model {cfg.d_model}, layers {cfg.layer_types}, mixer {cfg.mixer}, "
          f"{n_params} parameters; batch 1; torch threads {torch.get_num_threads()}")
    print()
    header = f"{'backend':8s} {'L':>6s} {'prefill(L) s':>13s} {'decode ms/token':>16s} " \
             f"{'recompute(L+1) s':>17s} {'recompute/decode':>17s} {'rel. difference':>16s}"
    print(header)
    print("-" * len(header))
    for backend in args.backends:
        dtype, rows = run_backend(backend, cfg, weights, x, args.lengths, args.steps)
        for L, tp, td, tf, diff in rows:
            print(f"{backend + ' ' + dtype[-2:]:8s} {L:6d} {tp:13.3f} {1e3 * td:16.3f} {tf:17.3f} {tf / td:17.0f} "
                  f"{diff:16.2g}")


if __name__ == "__main__":
    main()
