"""A small Jamba-style hybrid stack (Mamba + attention), run as a whole sequence (prefill) and
token by token (decode with Mamba states and a KV cache), in torch float32.

    python examples/hybrid_demo.py [--mixer mamba1|mamba2] [--length 24] [--no-oracle]

Prints the largest disagreement between the two modes and the tolerance it is judged by: each
mode is an accurate float32 computation, within tol = SAFETY u E + u |y| of the exact result
(E the first-order error bound of oracle/hybrid.py, u = 2^-24), so the two may differ by at most
2 tol, element by element.  With the oracle (default) it also prints each mode's error against
the exact (multiple-precision) result.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssm_conformance.implementations.numpy.hybrid import HybridConfig, HybridWeights  # noqa: E402
from ssm_conformance.implementations.torch.hybrid import HybridStack  # noqa: E402
from ssm_conformance.oracle import hybrid as oh  # noqa: E402
from ssm_conformance.properties.tolerance import tolerance  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mixer", default="mamba1", choices=["mamba1", "mamba2"])
    ap.add_argument("--length", type=int, default=24)
    ap.add_argument("--no-oracle", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    cfg = HybridConfig(d_model=16, n_layers=4, pattern="MMMA", mixer=args.mixer, n_heads=2, d_state=8,
                       headdim=8, chunk_size=8, mlp_hidden=32)
    stack = HybridStack(HybridWeights.random(cfg, seed=0))            # float32 parameters
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, args.length, 16))).float()

    with torch.no_grad():
        prefill = stack(x)
        state = stack.init_state(1)
        decode = torch.stack([stack.step(x[:, t], state)[0] for t in range(args.length)], dim=1)

    # the tolerance: the error bound of the weights and inputs exactly as held in float32
    params, x64 = stack.to_dict(), x.double().numpy()
    value, E = oh.hybrid_error_bound(x64, cfg, params)
    tol = tolerance(oh.Reference(value, 0.0, {"forward_error": E}), [(1.0, E)], "float32")
    diff = np.abs(prefill.double().numpy() - decode.double().numpy())
    j = np.unravel_index(np.argmax(diff), diff.shape)                  # the largest disagreement
    i = np.unravel_index(np.argmax(diff / (2 * tol)), diff.shape)      # the closest to its tolerance
    at = lambda k: tuple(int(v) for v in k)                            # noqa: E731
    print(f"hybrid stack {cfg.layer_types}, mixer {cfg.mixer}, torch float32, sequence length {args.length}")
    print(f"largest |prefill - decode| = {diff[j]:.3e} at (b, t, i) = {at(j)}; "
          f"tolerance there (2 x bound) = {2 * tol[j]:.3e}")
    print(f"largest |prefill - decode| / tolerance = {diff[i] / (2 * tol[i]):.4f} at {at(i)} (must be <= 1)")
    print(f"bound E / |y| (units of u = 2^-24): median {np.median(E / np.abs(value)):.0f}, "
          f"max {np.max(E / np.abs(value)):.0f}")
    ok = bool(np.all(diff <= 2 * tol))
    if not args.no_oracle:
        ref = oh.hybrid_stack(x64, cfg, params)
        tol1 = tolerance(ref, oh.tolerance_terms(ref), "float32")
        for name, y in (("prefill", prefill), ("decode", decode)):
            err = np.abs(y.double().numpy() - ref.value)
            print(f"{name:8s} vs exact: max error {err.max():.3e}, max error / tolerance {np.max(err / tol1):.3f}")
            ok &= bool(np.all(err <= tol1))
    print("agree within the tolerance:", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
