"""Role ``attention``: our CUDA kernel ``attention.cu`` behind the signature of
``torch.nn.functional.scaled_dot_product_attention`` (no mask tensor, no dropout):
q (..., l, e), k (..., s, e), v (..., s, ev) of one dtype (float32 / float16 / bfloat16 / float64),
equal leading dims; ``is_causal`` keeps key j <= query i (top-left aligned, as torch);
``scale`` defaults to 1/sqrt(e).  e, ev <= 256.
"""
from __future__ import annotations

import math

import numpy as np

from . import _interop as io
from . import _loader

SOURCE = "attention.cu"
ENTRY_POINTS = tuple(f"attention_fwd_{s}" for s in ("f32", "f16", "bf16", "f64"))
_WARPS = 8      # AT_WARPS in attention.cu: query rows per block
MAX_HEAD_DIM = 256  # 32 lanes x AT_MAXR output registers


def attention(q, k, v, is_causal=False, scale=None):
    """softmax(scale q k^T [causal mask]) v for each leading index."""
    qa, ka, va = io.arg(q, "q"), io.arg(k, "k"), io.arg(v, "v")
    if qa.ndim < 2:
        raise ValueError(f"q must have shape (..., l, e) (got {qa.shape})")
    io.check_storage(qa)
    dtype = qa.dtype
    io.check_storage(ka, dtype)
    io.check_storage(va, dtype)
    *lead, l, e = qa.shape
    if ka.ndim != qa.ndim or tuple(ka.shape[:-2]) != tuple(lead) or ka.shape[-1] != e:
        raise ValueError(f"k must have shape (..., s, e) = ({', '.join(map(str, lead))}, s, {e}) "
                         f"(got {ka.shape})")
    s = ka.shape[-2]
    if va.ndim != qa.ndim or tuple(va.shape[:-1]) != tuple(ka.shape[:-1]):
        raise ValueError(f"v must have shape (..., s, ev) = ({', '.join(map(str, lead))}, {s}, ev) "
                         f"(got {va.shape})")
    ev = va.shape[-1]
    if not (1 <= e <= MAX_HEAD_DIM and 1 <= ev <= MAX_HEAD_DIM):
        raise ValueError(f"q/k head dim e = {e} and v head dim ev = {ev} must be in [1, {MAX_HEAD_DIM}]")
    acc = io.acc_dtype(dtype)
    sc = 1.0 / math.sqrt(e) if scale is None else float(scale)
    bh = math.prod(lead)
    with io.on_device(qa, ka, va):
        out = io.empty((*lead, l, ev), dtype)
        acc_bytes = 8 if acc == "float64" else 4
        smem = (32 * (e + 1) + 32 * ev + _WARPS * e + _WARPS * 32) * acc_bytes
        if bh * l * ev > 0:
            _loader.launch(SOURCE, f"attention_fwd_{io.SUFFIX[dtype]}", bh * (-(-l // _WARPS)), 32 * _WARPS,
                           (io.contiguous(qa), io.contiguous(ka), io.contiguous(va), out, np.int64(bh),
                            np.int64(l), np.int64(s), np.int32(e), np.int32(ev),
                            (np.float64 if acc == "float64" else np.float32)(sc),
                            np.int32(bool(is_causal))),
                           shared_mem=smem)
        return io.give(out, dtype, qa.kind)
