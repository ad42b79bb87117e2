"""Role ``selective_scan``: our CUDA kernel ``selective_scan.cu`` behind the signature of mamba-ssm's
``selective_scan_ref``.

Dtypes: u, delta, z and variable B / C share one storage dtype (float32, float16, bfloat16 or
float64; the output has it too); A, D, delta_bias and constant B / C are converted to the
accumulation dtype (float32, float64 for float64 input).  Complex A (complex64 / complex128) takes
constant B / C complex (d, n) (real ones are promoted) and variable B / C real with interleaved
(re, im) time axis of length 2 l, as mamba-ssm; a complex variable B / C of length l is the same
memory and is accepted too.  ``last_state`` comes back in A's dtype, as in the reference.
"""
from __future__ import annotations

import math

import numpy as np

from . import _interop as io
from . import _loader

SOURCE = "selective_scan.cu"
ENTRY_POINTS = tuple(f"selective_scan_fwd_{s}_{k}" for k in ("real", "cplx")
                     for s in ("f32", "f16", "bf16", "f64"))

MAX_DSTATE = 256  # 32 lanes x SS_MAXS states per lane
_BLOCK_MAX = 128
_SMEM_BUDGET = 48 * 1024


def _variable_bc(a: io.Arg, name: str, b: int, d: int, n: int, l: int, dtype: str, cplx: bool):
    """Validate a variable B / C; return its number of groups."""
    if a.ndim == 3:
        groups, tail = 1, a.shape[1:]
        lead_ok = a.shape[0] == b
    else:
        groups, tail = a.shape[1], a.shape[2:]
        lead_ok = a.shape[0] == b
    if cplx and a.is_complex:
        # (.., n, l) complex == (.., n, 2 l) real interleaved, same memory
        real = io._REAL_OF[a.dtype]
        if real != dtype:
            raise TypeError(f"a complex variable {name} must be complex64 with float32 input or "
                            f"complex128 with float64 input (got {a.dtype} with {dtype} u); otherwise "
                            f"pass it real with an interleaved (re, im) time axis of length 2*l")
        exp_tail = (n, l)
        if not lead_ok or tuple(tail) != exp_tail:
            raise ValueError(f"{name} must have shape (batch, n, l) or (batch, g, n, l) = "
                             f"({b}, [g,] {n}, {l}) (got {a.shape})")
    else:
        io.check_storage(a, dtype)
        exp_tail = (n, 2 * l if cplx else l)
        if not lead_ok or tuple(tail) != exp_tail:
            what = "2*l (interleaved re/im, complex A)" if cplx else "l"
            raise ValueError(f"{name} must have shape (batch, n, {what}) or (batch, g, n, {what}) = "
                             f"({b}, [g,] {exp_tail[0]}, {exp_tail[1]}) (got {a.shape})")
    if groups < 1 or d % groups:
        raise ValueError(f"{name} has {groups} groups, which must divide dim = {d}")
    return groups


def _kernel_bc(a: io.Arg, acc: str, cplx: bool):
    """(kernel array, is_variable) for B or C; called on the arguments' device and stream."""
    if a.ndim == 2:  # constant (dim, n): accumulation dtype, complex as interleaved (re, im)
        data = io.compute(a, acc, complex_=cplx)
        return (data.view(acc) if cplx else data), 0
    data = io.contiguous(a)  # variable: storage dtype; a complex one is viewed as (re, im) pairs
    return (data.view(io._REAL_OF[a.dtype]) if a.is_complex else data), 1


def _chunk_len(dc: int, n: int, n_var_rows: int, acc_bytes: int) -> int:
    """Largest chunk length (power of 2, <= 128) whose shared tiles fit in 48 KiB."""
    lc = 128
    while lc > 1 and (3 * dc + n_var_rows * n) * (lc + 1) * acc_bytes > _SMEM_BUDGET:
        lc //= 2
    return lc


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False):
    """out (b, d, l) [, last_state (b, d, n)] as mamba-ssm ``selective_scan_ref``; see module doc."""
    ua = io.arg(u, "u")
    if ua.ndim != 3:
        raise ValueError(f"u must have shape (batch, dim, seqlen) (got {ua.shape})")
    io.check_storage(ua)
    dtype = ua.dtype
    acc = io.acc_dtype(dtype)
    b, d, l = ua.shape
    da = io.arg(delta, "delta")
    io.check_storage(da, dtype)
    io.check_shape(da, (b, d, l), "(batch, dim, seqlen)")

    Aa = io.arg(A, "A")
    if Aa.ndim != 2 or Aa.shape[0] != d:
        raise ValueError(f"A must have shape (dim, dstate) = ({d}, n) (got {Aa.shape})")
    n = Aa.shape[1]
    if not 1 <= n <= MAX_DSTATE:
        raise ValueError(f"A: dstate must be in [1, {MAX_DSTATE}] (got {n})")
    cplx = Aa.is_complex
    nparts = 2 if cplx else 1

    Ba, Ca = io.arg(B, "B"), io.arg(C, "C")
    za, Dd, bias = io.optional(z, "z"), io.optional(D, "D"), io.optional(delta_bias, "delta_bias")
    groups = []
    for a, name in ((Ba, "B"), (Ca, "C")):
        if a.ndim == 2:
            io.check_shape(a, (d, n), "(dim, dstate)")
            if a.is_complex and not cplx:
                raise TypeError(f"{name} is complex but A is real")
        elif a.ndim in (3, 4):
            groups.append((name, _variable_bc(a, name, b, d, n, l, dtype, cplx)))
        else:
            raise ValueError(f"{name} must have shape (dim, n), (batch, n, l) or (batch, g, n, l) "
                             f"(got {a.shape})")
    b_groups = dict(groups).get("B", 1)
    c_groups = dict(groups).get("C", 1)
    ngroups = math.lcm(b_groups, c_groups)  # divides d, since both group counts do
    if za is not None:
        io.check_storage(za, dtype)
        io.check_shape(za, (b, d, l), "(batch, dim, seqlen)")
    if Dd is not None and Dd.shape != (d,):
        raise ValueError(f"D must have shape (dim,) = ({d},) (got {Dd.shape})")
    if bias is not None and bias.shape != (d,):
        raise ValueError(f"delta_bias must have shape (dim,) = ({d},) (got {bias.shape})")

    with io.on_device(ua, da, Aa, Ba, Ca, za, Dd, bias):
        A_c = io.compute(Aa, acc, complex_=cplx)
        A_k = A_c.view(acc) if cplx else A_c
        B_k, var_B = _kernel_bc(Ba, acc, cplx)
        C_k, var_C = _kernel_bc(Ca, acc, cplx)
        D_k = None if Dd is None else io.compute(Dd, acc)
        bias_k = None if bias is None else io.compute(bias, acc)
        out = io.empty((b, d, l), dtype)
        last = io.empty((b, d, n), io._COMPLEX_OF[acc] if cplx else acc) if return_last_state else None

        tn = min(32, io.next_pow2(n))
        dpg = d // ngroups
        dc = max(32 // tn, min(_BLOCK_MAX // tn, io.next_pow2(dpg)))
        acc_bytes = 8 if acc == "float64" else 4
        lc = _chunk_len(dc, n, nparts * (var_B + var_C), acc_bytes)
        smem = (3 * dc + nparts * (var_B + var_C) * n) * (lc + 1) * acc_bytes
        grid = b * ngroups * (-(-dpg // dc))
        if l > 0 and b > 0 and d > 0:
            _loader.launch(SOURCE, f"selective_scan_fwd_{io.SUFFIX[dtype]}_{'cplx' if cplx else 'real'}",
                           grid, dc * tn,
                           (io.contiguous(ua), io.contiguous(da), A_k, B_k, C_k, io.ptr_or_null(D_k),
                            io.ptr_or_null(None if za is None else io.contiguous(za)),
                            io.ptr_or_null(bias_k), out, io.ptr_or_null(last),
                            np.int64(b), np.int64(d), np.int64(l), np.int32(n), np.int32(ngroups),
                            np.int32(b_groups), np.int32(c_groups), np.int32(var_B), np.int32(var_C),
                            np.int32(bool(delta_softplus)), np.int32(tn.bit_length() - 1), np.int32(dc),
                            np.int32(lc)),
                           shared_mem=smem)
        elif last is not None:
            last.fill(0)
        result = io.give(out, dtype, ua.kind)
        if not return_last_state:
            return result
        last = io.cast(last, str(last.dtype), Aa.dtype)
        return result, io.give(last, Aa.dtype, ua.kind)
