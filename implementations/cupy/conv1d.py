"""Role ``causal_conv1d``: our CUDA kernel ``conv1d.cu`` behind the signature of causal-conv1d's
``causal_conv1d_fn``: x (b, d, l) in float32 / float16 / bfloat16 / float64 (the output has x's
dtype), weight (d, w) with ``weight[:, -1]`` multiplying x_t, optional bias (d,), activation None,
"silu" or "swish".  weight and bias are converted to the accumulation dtype (float32, float64 for
float64 x).
"""
from __future__ import annotations

import numpy as np

from . import _interop as io
from . import _loader

SOURCE = "conv1d.cu"
ENTRY_POINTS = tuple(f"causal_conv1d_fwd_{s}" for s in ("f32", "f16", "bf16", "f64"))
_TILE = 256  # CV_TILE in conv1d.cu


def causal_conv1d(x, weight, bias=None, activation=None):
    """out (b, d, l) = act(bias + depthwise causal convolution of x with weight)."""
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation must be None, 'silu' or 'swish' (got {activation!r})")
    xa = io.arg(x, "x")
    if xa.ndim != 3:
        raise ValueError(f"x must have shape (batch, dim, seqlen) (got {xa.shape})")
    io.check_storage(xa)
    dtype = xa.dtype
    acc = io.acc_dtype(dtype)
    b, d, l = xa.shape
    wa = io.arg(weight, "weight")
    if wa.ndim != 2 or wa.shape[0] != d or wa.shape[1] < 1:
        raise ValueError(f"weight must have shape (dim, width) = ({d}, w), w >= 1 (got {wa.shape})")
    w = wa.shape[1]
    ba = io.optional(bias, "bias")
    if ba is not None:
        io.check_shape(ba, (d,), "(dim,)")
    with io.on_device(xa, wa, ba):
        w_k = io.compute(wa, acc)
        b_k = None if ba is None else io.compute(ba, acc)
        out = io.empty((b, d, l), dtype)
        acc_bytes = 8 if acc == "float64" else 4
        if b * d * l > 0:
            _loader.launch(SOURCE, f"causal_conv1d_fwd_{io.SUFFIX[dtype]}", b * d * (-(-l // _TILE)), _TILE,
                           (io.contiguous(xa), w_k, io.ptr_or_null(b_k), out, np.int64(b * d),
                            np.int64(d), np.int64(l), np.int32(w), np.int32(activation is not None)),
                           shared_mem=(_TILE + 2 * w) * acc_bytes)
        return io.give(out, dtype, xa.kind)
