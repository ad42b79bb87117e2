"""The long tier (oracle/long_ssd.py, long_conv1d.py, long_attention.py) against the MPFR oracles
(oracle/ssd.py, causal_conv1d.py, attention.py), forward, side by side on the same inputs:
elements per second (output elements: b l h p for ssd, b d l for conv1d, b h l s e score terms
for attention) for the tier in W = float64 (float32 subjects) and W = long double (float64
subjects), and for the MPFR oracle at the sizes it reaches; then the tier alone at long lengths.

    OMP_NUM_THREADS=1 python benchmarks/bench_long_mixers.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssm_conformance.oracle import attention as o_att  # noqa: E402
from ssm_conformance.oracle import causal_conv1d as o_conv  # noqa: E402
from ssm_conformance.oracle import long_attention as t_att  # noqa: E402
from ssm_conformance.oracle import long_conv1d as t_conv  # noqa: E402
from ssm_conformance.oracle import long_ssd as t_ssd  # noqa: E402
from ssm_conformance.oracle import ssd as o_ssd  # noqa: E402


def _rate(fn, elements):
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return elements / dt, dt


def _row(role, size, elements, fns):
    cells = []
    for name, fn in fns:
        rate, dt = _rate(fn, elements)
        cells.append(f"{name} {rate:10.3g}/s ({dt:6.2f} s)")
    print(f"{role:14s} {size:28s} " + "  ".join(cells), flush=True)


def main():
    rng = np.random.default_rng(0)
    print("role           size                         elements per second (seconds)")
    for l, mpfr in ((256, True), (1024, True), (2**17, False)):
        b, h, p, g, n = 1, 1, 2, 1, 4
        x, dt = rng.standard_normal((b, l, h, p)), rng.uniform(0, 1, (b, l, h))
        A, B, C = -rng.uniform(0.1, 2, h), rng.standard_normal((b, l, g, n)), rng.standard_normal((b, l, g, n))
        fns = [("tier W=f64", lambda: t_ssd.ssd_long(x, dt, A, B, C, 64, subject_dtype="float32")),
               ("tier W=f80", lambda: t_ssd.ssd_long(x, dt, A, B, C, 64, subject_dtype="float64"))]
        if mpfr:
            fns.append(("MPFR", lambda: o_ssd.ssd(x, dt, A, B, C, 64)))
        _row("ssd", f"b{b} l{l} h{h} p{p} n{n}", b * l * h * p, fns)
    for l, mpfr in ((1024, True), (8192, True), (2**17, False)):
        x, w = rng.standard_normal((1, 4, l)), rng.standard_normal((4, 4))
        fns = [("tier W=f64", lambda: t_conv.causal_conv1d_long(x, w, None, "silu", subject_dtype="float32")),
               ("tier W=f80", lambda: t_conv.causal_conv1d_long(x, w, None, "silu", subject_dtype="float64"))]
        if mpfr:
            fns.append(("MPFR", lambda: o_conv.causal_conv1d(x, w, None, "silu")))
        _row("causal_conv1d", f"b1 d4 l{l} w4 silu", x.size, fns)
    for s, mpfr in ((512, True), (2048, True), (2**14, False)):
        q, k, v = rng.standard_normal((1, 1, 4, 8)), rng.standard_normal((1, 1, s, 8)), rng.standard_normal((1, 1, s, 8))
        fns = [("tier W=f64", lambda: t_att.attention_long(q, k, v, subject_dtype="float32")),
               ("tier W=f80", lambda: t_att.attention_long(q, k, v, subject_dtype="float64"))]
        if mpfr:
            fns.append(("MPFR", lambda: o_att.attention(q, k, v)))
        _row("attention", f"b1 h1 l4 s{s} e8", 4 * s * 8, fns)


if __name__ == "__main__":
    main()
