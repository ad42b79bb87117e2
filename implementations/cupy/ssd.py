"""Role ``ssd``: the four CUDA kernels of ``ssd.cu`` behind the signature of mamba-ssm's
``mamba_chunk_scan_combined``.

x, z, B, C share one storage dtype (the output has it; the final states have C's dtype, as in
mamba-ssm); dt may have any float dtype; A, D, dt_bias and initial_states are converted to the
accumulation dtype (float32, float64 for float64 x).  Any length l >= 1 and chunk_size >= 1.

``dt_limit`` (keyword only, default ``(0.0, inf)``) is mamba-ssm's: dt after bias and softplus is
clamped to it, so with the default a negative dt (no softplus) counts as 0, exactly as
``mamba_chunk_scan_combined`` does.
"""
from __future__ import annotations

import math

import numpy as np

from . import _interop as io
from . import _loader

SOURCE = "ssd.cu"
_S = ("f32", "f16", "bf16", "f64")
ENTRY_POINTS = (tuple(f"ssd_cumsum_{t}_{a}" for a in ("f32", "f64") for t in _S)
                + tuple(f"ssd_{k}_{t}" for k in ("chunk_state", "state_passing", "chunk_scan") for t in _S))
_THREADS = 256
_TILE = 32


def ssd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
        dt_softplus=False, return_final_states=False, *, dt_limit=(0.0, float("inf"))):
    """out (b, l, h, p) [, final_states (b, h, p, n)] as ``mamba_chunk_scan_combined``."""
    xa = io.arg(x, "x")
    if xa.ndim != 4:
        raise ValueError(f"x must have shape (batch, seqlen, nheads, headdim) (got {xa.shape})")
    io.check_storage(xa)
    dtype = xa.dtype
    acc = io.acc_dtype(dtype)
    b, l, h, p = xa.shape
    if l < 1 or h < 1 or p < 1:
        raise ValueError(f"x must have seqlen, nheads, headdim >= 1 (got shape {xa.shape})")
    Q = int(chunk_size)
    if Q != chunk_size or Q < 1:
        raise ValueError(f"chunk_size must be a positive integer (got {chunk_size!r})")
    dta = io.arg(dt, "dt")
    io.check_storage(dta)
    io.check_shape(dta, (b, l, h), "(batch, seqlen, nheads)")
    Aa = io.arg(A, "A")
    io.check_shape(Aa, (h,), "(nheads,)")
    Ba, Ca = io.arg(B, "B"), io.arg(C, "C")
    if Ba.ndim != 4 or Ba.shape[:2] != (b, l):
        raise ValueError(f"B must have shape (batch, seqlen, ngroups, dstate) = ({b}, {l}, g, n) "
                         f"(got {Ba.shape})")
    g, n = Ba.shape[2:]
    if g < 1 or n < 1 or h % g:
        raise ValueError(f"B has {g} groups and dstate {n}: need dstate >= 1 and groups dividing "
                         f"nheads = {h}")
    io.check_storage(Ba, dtype)
    io.check_storage(Ca, dtype)
    io.check_shape(Ca, (b, l, g, n), "(batch, seqlen, ngroups, dstate)")
    Dd, za, bias = io.optional(D, "D"), io.optional(z, "z"), io.optional(dt_bias, "dt_bias")
    init = io.optional(initial_states, "initial_states")
    if Dd is not None and Dd.shape not in ((h,), (h, p)):
        raise ValueError(f"D must have shape (nheads,) = ({h},) or (nheads, headdim) = ({h}, {p}) "
                         f"(got {Dd.shape})")
    if za is not None:
        io.check_storage(za, dtype)
        io.check_shape(za, (b, l, h, p), "(batch, seqlen, nheads, headdim)")
    if bias is not None:
        io.check_shape(bias, (h,), "(nheads,)")
    if init is not None:
        io.check_shape(init, (b, h, p, n), "(batch, nheads, headdim, dstate)")
    dt_min, dt_max = (float(v) for v in dt_limit)

    nc = -(-l // Q)
    with io.on_device(xa, dta, Aa, Ba, Ca, Dd, za, bias, init):
        import cupy

        x_k, B_k, C_k = io.contiguous(xa), io.contiguous(Ba), io.contiguous(Ca)
        z_k = None if za is None else io.contiguous(za)
        A_k = io.compute(Aa, acc)
        D_k = None if Dd is None else io.compute(Dd, acc)
        bias_k = None if bias is None else io.compute(bias, acc)
        init_k = None if init is None else io.compute(init, acc)
        scalar = np.float64 if acc == "float64" else np.float32
        dtw = cupy.empty((b, h, nc, Q), dtype=acc)
        cs = cupy.empty((b, h, nc, Q), dtype=cupy.float64)
        states = cupy.empty((b, nc, h, p, n), dtype=acc)
        out = io.empty((b, l, h, p), dtype)
        final = io.empty((b, h, p, n), Ca.dtype) if return_final_states else None
        sfx = io.SUFFIX[dtype]
        dims = (np.int64(b), np.int64(l), np.int32(h), np.int32(p), np.int32(g), np.int32(n),
                np.int32(Q), np.int64(nc))
        ntp, ntn, ntt = -(-p // _TILE), -(-n // _TILE), -(-Q // _TILE)
        if b > 0:
            _loader.launch(SOURCE, f"ssd_cumsum_{io.SUFFIX[dta.dtype]}_{io.SUFFIX[acc]}",
                           -(-(b * nc * h) // _THREADS), _THREADS,
                           (io.contiguous(dta), A_k, io.ptr_or_null(bias_k), dtw, cs, np.int64(b),
                            np.int64(l), np.int32(h), np.int32(Q), np.int64(nc),
                            np.int32(bool(dt_softplus)), scalar(dt_min), scalar(dt_max)))
            _loader.launch(SOURCE, f"ssd_chunk_state_{sfx}", b * nc * h * ntp * ntn, _THREADS,
                           (x_k, B_k, dtw, cs, states, *dims))
            _loader.launch(SOURCE, f"ssd_state_passing_{sfx}", -(-(b * h * p * n) // _THREADS), _THREADS,
                           (states, cs, io.ptr_or_null(init_k), io.ptr_or_null(final), np.int64(b),
                            np.int32(h), np.int64(p * n), np.int32(Q), np.int64(nc)))
            _loader.launch(SOURCE, f"ssd_chunk_scan_{sfx}", b * nc * h * ntt * ntp, _THREADS,
                           (x_k, B_k, C_k, io.ptr_or_null(z_k), io.ptr_or_null(D_k),
                            np.int32(Dd is not None and Dd.ndim == 2), dtw, cs, states, out, *dims))
        result = io.give(out, dtype, xa.kind)
        if not return_final_states:
            return result
        return result, io.give(final, Ca.dtype, xa.kind)


def workspace_bytes(b: int, l: int, h: int, p: int, n: int, chunk_size: int, dtype: str) -> int:
    """Device memory the work buffers of one call take (for the memory guards of tests/benchmarks)."""
    nc = math.ceil(l / chunk_size)
    acc_bytes = 8 if dtype == "float64" else 4
    return b * h * nc * chunk_size * (acc_bytes + 8) + b * nc * h * p * n * acc_bytes
