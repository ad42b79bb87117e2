"""Throughput of our CuPy kernels (selective scan, SSD) against the device's copy bandwidth.

For each configuration: time per call (median of CUDA-event timings after warm-up), elements per
second, the bytes the kernel must move at least (every input read once, every output written once)
divided by the time, and that bandwidth as a fraction of the measured device copy bandwidth
(a large cupy array copy: read + write).  Where ``implementations.torch`` provides the same role and
torch sees a GPU, the same inputs are timed through it too and the ratio is printed.

    python benchmarks/bench_cupy.py [--quick] [--repeat N]

Without a GPU it prints why and exits 0.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ssm_conformance.implementations.cupy as icu  # noqa: E402

ITEMSIZE = {"float32": 4, "float16": 2, "float64": 8}


def _time(fn, repeat):
    import cupy

    for _ in range(2):
        fn()
    cupy.cuda.get_current_stream().synchronize()
    times = []
    for _ in range(repeat):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return statistics.median(times)


def copy_bandwidth(repeat):
    """Bytes per second of a device-to-device copy of a 1 GiB array (read + write counted)."""
    import cupy

    a = cupy.ones(1 << 28, dtype=cupy.float32)
    b = cupy.empty_like(a)
    t = _time(lambda: b.__setitem__(slice(None), a), repeat)
    return 2 * a.nbytes / t


# where implementations.torch keeps each role (looked up lazily; absent ones are simply skipped)
_TORCH_ROLES = {"selective_scan": ("ssm_conformance.implementations.torch.mamba", "selective_scan"),
                "ssd": ("ssm_conformance.implementations.torch.ssd", "ssd")}


def _torch_role(name):
    """The role ``name`` of implementations.torch and the torch module, or (None, None)."""
    try:
        import importlib

        import torch

        if not torch.cuda.is_available():
            return None, None
        module, attr = _TORCH_ROLES[name]
        return getattr(importlib.import_module(module), attr, None), torch
    except Exception:
        return None, None


def _report(label, t, elements, nbytes, copy_bw, t_torch=None):
    line = (f"{label:<48s} {t * 1e3:9.3f} ms  {elements / t / 1e9:8.2f} Gelem/s  "
            f"{nbytes / t / 1e9:8.1f} GB/s  {nbytes / t / copy_bw:6.1%} of copy")
    if t_torch is not None:
        line += f"   torch {t_torch * 1e3:9.3f} ms  (ours {t_torch / t:5.2f}x faster)"
    print(line, flush=True)


def bench_selective_scan(configs, copy_bw, repeat):
    import cupy

    torch_fn, torch = _torch_role("selective_scan")
    for b, d, l, n, dtype in configs:
        rng = cupy.random.default_rng(0)
        u = rng.standard_normal((b, d, l), dtype=cupy.float32).astype(dtype)
        delta = rng.uniform(-3, 0, (b, d, l), dtype=cupy.float32).astype(dtype)
        z = rng.standard_normal((b, d, l), dtype=cupy.float32).astype(dtype)
        A = -rng.uniform(0.1, 1, (d, n), dtype=cupy.float32)
        B = rng.standard_normal((b, 1, n, l), dtype=cupy.float32).astype(dtype)
        C = rng.standard_normal((b, 1, n, l), dtype=cupy.float32).astype(dtype)
        D = rng.standard_normal(d, dtype=cupy.float32)
        bias = rng.standard_normal(d, dtype=cupy.float32)

        def ours():
            icu.selective_scan(u, delta, A, B, C, D, z, bias, True)

        t = _time(ours, repeat)
        nbytes = ITEMSIZE[dtype] * (4 * b * d * l + 2 * b * n * l)  # u, delta, z, out; B, C
        t_torch = None
        if torch_fn is not None:
            args = [torch.from_dlpack(a) for a in (u, delta, A, B, C, D, z, bias)]
            try:
                t_torch = _time(lambda: torch_fn(*args, delta_softplus=True), repeat)
            except Exception as exc:  # a torch path without this feature set: say so, keep going
                print(f"  (implementations.torch.selective_scan failed here: {exc})")
        _report(f"selective_scan b{b} d{d} l{l} n{n} {dtype}", t, b * d * l, nbytes, copy_bw, t_torch)
        del u, delta, z, B, C


def bench_ssd(configs, copy_bw, repeat):
    import cupy

    torch_fn, torch = _torch_role("ssd")
    for b, l, h, p, g, n, chunk, dtype in configs:
        rng = cupy.random.default_rng(0)
        x = rng.standard_normal((b, l, h, p), dtype=cupy.float32).astype(dtype)
        z = rng.standard_normal((b, l, h, p), dtype=cupy.float32).astype(dtype)
        dt = rng.uniform(-3, 0, (b, l, h), dtype=cupy.float32).astype(dtype)
        A = -rng.uniform(0.1, 1, (h,), dtype=cupy.float32)
        B = rng.standard_normal((b, l, g, n), dtype=cupy.float32).astype(dtype)
        C = rng.standard_normal((b, l, g, n), dtype=cupy.float32).astype(dtype)
        D = rng.standard_normal(h, dtype=cupy.float32)
        bias = rng.standard_normal(h, dtype=cupy.float32)

        def ours():
            icu.ssd(x, dt, A, B, C, chunk, D=D, z=z, dt_bias=bias, dt_softplus=True)

        t = _time(ours, repeat)
        nbytes = ITEMSIZE[dtype] * (3 * b * l * h * p + b * l * h + 2 * b * l * g * n)  # x, z, out; dt; B, C
        t_torch = None
        if torch_fn is not None:
            args = [torch.from_dlpack(a) for a in (x, dt, A, B, C)]
            kw = {k: torch.from_dlpack(v) for k, v in (("D", D), ("z", z), ("dt_bias", bias))}
            try:
                t_torch = _time(lambda: torch_fn(*args, chunk, dt_softplus=True, **kw), repeat)
            except Exception as exc:
                print(f"  (implementations.torch.ssd failed here: {exc})")
        _report(f"ssd b{b} l{l} h{h} p{p} g{g} n{n} Q{chunk} {dtype}", t, b * l * h * p, nbytes, copy_bw, t_torch)
        del x, z, dt, B, C


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    if not icu.available():
        print("bench_cupy: no CUDA GPU visible to CuPy (or CuPy is not installed); nothing to measure.")
        return 0
    import cupy

    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    print(f"device {dev.id}: {props['name'].decode()}  (sm_{dev.compute_capability})")
    bw = copy_bandwidth(args.repeat)
    print(f"copy bandwidth (1 GiB device-to-device, read + write): {bw / 1e9:.1f} GB/s\n")
    if args.quick:
        ss = [(2, 256, 2048, 16, "float32")]
        sd = [(2, 2048, 8, 64, 1, 64, 256, "float32")]
    else:
        ss = [(8, 1536, 2048, 16, "float32"), (8, 1536, 2048, 16, "float16"),
              (1, 2048, 1 << 17, 16, "float16"), (2, 768, 8192, 64, "float32")]
        sd = [(8, 2048, 24, 64, 1, 128, 256, "float32"), (8, 2048, 24, 64, 1, 128, 256, "float16"),
              (1, 1 << 17, 32, 64, 8, 64, 256, "float16"), (4, 4096, 16, 128, 1, 256, 128, "float32")]
    bench_selective_scan(ss, bw, args.repeat)
    bench_ssd(sd, bw, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
