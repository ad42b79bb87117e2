"""Role ``selective_state_update``: our CUDA kernel ``state_update.cu`` behind the signature of
mamba-ssm's ``selective_state_update_ref``.

``state`` (b, d, n) or (b, h, d, n) is updated in place, whatever its strides (it is never copied);
its dtype may differ from x's (e.g. a float32 state with bfloat16 activations).  The other inputs of a
decode step are O(b d n) at most and are converted to the accumulation dtype (float32, float64 for
float64 x) before the launch.  Returns out with x's shape and dtype.
"""
from __future__ import annotations

import numpy as np

from . import _interop as io
from . import _loader

SOURCE = "state_update.cu"
ENTRY_POINTS = tuple(f"state_update_{s}_{t}" for s in ("f32", "f16", "bf16", "f64")
                     for t in ("f32", "f16", "bf16", "f64"))
_WARPS = 4


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """One decode step; updates ``state`` in place and returns out (see module doc)."""
    st = io.arg(state, "state")
    io.check_storage(st)
    if st.ndim == 3:
        b, d, n = st.shape
        h, heads = 1, False
    elif st.ndim == 4:
        b, h, d, n = st.shape
        heads = True
    else:
        raise ValueError(f"state must have shape (batch, dim, dstate) or (batch, nheads, dim, dstate) "
                         f"(got {st.shape})")
    if n < 1:
        raise ValueError(f"state must have dstate >= 1 (got shape {st.shape})")
    xa = io.arg(x, "x")
    io.check_storage(xa)
    dtype = xa.dtype
    acc = io.acc_dtype(dtype)
    row = (b, h, d) if heads else (b, d)
    row_what = "(batch, nheads, dim)" if heads else "(batch, dim)"
    io.check_shape(xa, row, row_what)
    dta = io.arg(dt, "dt")
    io.check_shape(dta, row, row_what)
    Aa = io.arg(A, "A")
    io.check_shape(Aa, (h, d, n) if heads else (d, n), "(nheads, dim, dstate)" if heads else "(dim, dstate)")
    Ba, Ca = io.arg(B, "B"), io.arg(C, "C")
    if heads:
        if Ba.ndim != 3 or Ba.shape[0] != b or Ba.shape[2] != n:
            raise ValueError(f"B must have shape (batch, ngroups, dstate) = ({b}, g, {n}) (got {Ba.shape})")
        g = Ba.shape[1]
        if g < 1 or h % g:
            raise ValueError(f"B has {g} groups, which must divide nheads = {h}")
        io.check_shape(Ca, (b, g, n), "(batch, ngroups, dstate)")
    else:
        g = 1
        io.check_shape(Ba, (b, n), "(batch, dstate)")
        io.check_shape(Ca, (b, n), "(batch, dstate)")
    Dd, za, bias = io.optional(D, "D"), io.optional(z, "z"), io.optional(dt_bias, "dt_bias")
    hd = (h, d) if heads else (d,)
    hd_what = "(nheads, dim)" if heads else "(dim,)"
    if Dd is not None:
        io.check_shape(Dd, hd, hd_what)
    if bias is not None:
        io.check_shape(bias, hd, hd_what)
    if za is not None:
        io.check_shape(za, row, row_what)

    with io.on_device(st, xa, dta, Aa, Ba, Ca, Dd, za, bias):
        k = {name: (None if a is None else io.compute(a, acc))
             for name, a in (("x", xa), ("dt", dta), ("A", Aa), ("B", Ba), ("C", Ca), ("D", Dd),
                             ("z", za), ("dt_bias", bias))}
        out = io.empty(row, dtype)
        item = st.data.itemsize
        strides = [s // item for s in st.data.strides]
        if not heads:
            strides = [strides[0], 0, strides[1], strides[2]]
        rows = b * h * d
        if rows > 0:
            _loader.launch(SOURCE, f"state_update_{io.SUFFIX[st.dtype]}_{io.SUFFIX[dtype]}",
                           -(-rows // _WARPS), 32 * _WARPS,
                           (st.data, *(np.int64(s) for s in strides), k["x"], k["dt"], k["A"], k["B"],
                            k["C"], io.ptr_or_null(k["D"]), io.ptr_or_null(k["z"]),
                            io.ptr_or_null(k["dt_bias"]), out, np.int64(b), np.int32(h), np.int64(d),
                            np.int32(n), np.int32(g), np.int32(bool(dt_softplus))))
        return io.give(out, dtype, xa.kind)
