"""Argument checks shared by the NumPy and torch Mamba-family kernels.

They look only at ``.shape``/``.ndim`` and complex-ness, so the same code serves NumPy arrays and
torch tensors. Every failure is a ValueError (shape) or TypeError (kind) that names the function,
the argument and the shape expected, in mamba-ssm's letters (b, d, l, n, g, h, p, w).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def is_complex(x) -> bool:
    m = getattr(x, "is_complex", None)  # torch.Tensor.is_complex()
    return bool(m()) if callable(m) else bool(np.iscomplexobj(x))


def _shape(x):
    return tuple(int(s) for s in x.shape)


def _need_ndim(fn, name, x, ndim, letters):
    if x.ndim != ndim:
        raise ValueError(f"{fn}: {name} must have shape {letters}, got {_shape(x)}")


def _need_shape(fn, name, x, shape, letters):
    if _shape(x) != tuple(shape):
        raise ValueError(f"{fn}: {name} must have shape {letters} = {tuple(shape)}, got {_shape(x)}")


def _need_real(fn, name, x):
    if is_complex(x):
        raise TypeError(f"{fn}: {name} must be real, got a complex {type(x).__name__}")


def check_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, initial_state=None):
    """Shapes of selective_scan_ref: u, delta (b,d,l); A (d,n) real or complex; B, C constant (d,n),
    variable (b,n,l) or grouped (b,g,n,l) -- with complex A the variable forms carry real and
    imaginary parts interleaved along the last axis (length 2l); D, delta_bias (d,); z (b,d,l)."""
    fn = "selective_scan"
    _need_ndim(fn, "u", u, 3, "(b, d, l)")
    b, d, l = _shape(u)
    if l < 1:
        raise ValueError(f"{fn}: u must have shape (b, d, l) with l >= 1, got {_shape(u)}")
    _need_shape(fn, "delta", delta, (b, d, l), "(b, d, l)")
    _need_ndim(fn, "A", A, 2, f"(d, n) with d = {d}")
    if A.shape[0] != d:
        raise ValueError(f"{fn}: A must have shape (d, n) with d = {d}, got {_shape(A)}")
    n = int(A.shape[1])
    cplx = is_complex(A)
    for name, x in (("u", u), ("delta", delta)):
        _need_real(fn, name, x)
    spec = SimpleNamespace(b=b, d=d, l=l, n=n, complex=cplx)
    lv = 2 * l if cplx else l  # length of the last axis of a variable B/C
    for name, X in (("B", B), ("C", C)):
        expect = (f"(d, n) = {(d, n)}, (b, n, {'2l' if cplx else 'l'}) = {(b, n, lv)} or "
                  f"(b, g, n, {'2l' if cplx else 'l'}) = {(b, 'g', n, lv)} with g dividing d")
        if X.ndim == 2:
            if _shape(X) != (d, n):
                raise ValueError(f"{fn}: {name} must have shape {expect}; got {_shape(X)}")
            if is_complex(X) and not cplx:
                raise TypeError(f"{fn}: {name} is complex but A is real; a complex B/C needs a complex A")
            kind, g = "constant", None
        elif X.ndim == 3:
            if _shape(X) != (b, n, lv):
                raise ValueError(f"{fn}: {name} must have shape {expect}; got {_shape(X)}")
            kind, g = "variable", 1
        elif X.ndim == 4:
            g = int(X.shape[1])
            if g < 1 or d % g != 0 or _shape(X) != (b, g, n, lv):
                raise ValueError(f"{fn}: {name} must have shape {expect}; got {_shape(X)}")
            kind = "grouped"
        else:
            raise ValueError(f"{fn}: {name} must have shape {expect}; got {_shape(X)}")
        if kind != "constant":
            # mamba-ssm: a variable B/C is real; with complex A it is viewed as complex pairs.
            _need_real(fn, name, X)
        setattr(spec, name + "_kind", kind)
        setattr(spec, name + "_groups", g)
    if D is not None:
        _need_shape(fn, "D", D, (d,), "(d,)")
        _need_real(fn, "D", D)
    if z is not None:
        _need_shape(fn, "z", z, (b, d, l), "(b, d, l)")
        _need_real(fn, "z", z)
    if delta_bias is not None:
        _need_shape(fn, "delta_bias", delta_bias, (d,), "(d,)")
        _need_real(fn, "delta_bias", delta_bias)
    if initial_state is not None:
        _need_shape(fn, "initial_state", initial_state, (b, d, n), "(b, d, n)")
        if is_complex(initial_state) and not cplx:
            raise TypeError(f"{fn}: initial_state is complex but A is real")
    return spec


def check_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None):
    """Shapes of selective_state_update_ref, with or without the heads axis:
    state (b,d,n) | (b,h,d,n); x, dt, z (b,d) | (b,h,d); A (d,n) | (h,d,n); B, C (b,n) | (b,g,n);
    D, dt_bias (d,) | (h,d). Returns the dims with heads (h = 1 when absent)."""
    fn = "selective_state_update"
    if state.ndim == 3:
        heads = False
        b, d, n = _shape(state)
        h = 1
        lx, lA, lD = "(b, d)", "(d, n)", "(d,)"
        sx, sA, sD = (b, d), (d, n), (d,)
    elif state.ndim == 4:
        heads = True
        b, h, d, n = _shape(state)
        lx, lA, lD = "(b, h, d)", "(h, d, n)", "(h, d)"
        sx, sA, sD = (b, h, d), (h, d, n), (h, d)
    else:
        raise ValueError(f"{fn}: state must have shape (b, d, n) or (b, h, d, n), got {_shape(state)}")
    _need_shape(fn, "x", x, sx, lx)
    _need_shape(fn, "dt", dt, sx, lx)
    _need_shape(fn, "A", A, sA, lA)
    if heads:
        _need_ndim(fn, "B", B, 3, f"(b, g, n) with g dividing h = {h}")
        g = int(B.shape[1])
        if g < 1 or h % g != 0 or _shape(B) != (b, g, n):
            raise ValueError(f"{fn}: B must have shape (b, g, n) = {(b, 'g', n)} with g dividing h = {h}, "
                             f"got {_shape(B)}")
        _need_shape(fn, "C", C, (b, g, n), "(b, g, n) like B")
    else:
        g = 1
        _need_shape(fn, "B", B, (b, n), "(b, n)")
        _need_shape(fn, "C", C, (b, n), "(b, n)")
    if D is not None:
        _need_shape(fn, "D", D, sD, lD)
    if z is not None:
        _need_shape(fn, "z", z, sx, lx)
    if dt_bias is not None:
        _need_shape(fn, "dt_bias", dt_bias, sD, lD)
    for name, v in (("state", state), ("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C),
                    ("D", D), ("z", z), ("dt_bias", dt_bias)):
        if v is not None:
            _need_real(fn, name, v)
    return SimpleNamespace(heads=heads, b=b, h=h, d=d, n=n, g=g)


def check_ssd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None):
    """Shapes of mamba_chunk_scan_combined: x (b,l,h,p); dt (b,l,h); A (h,); B, C (b,l,g,n) with
    g dividing h; D (h,) or (h,p); z (b,l,h,p); dt_bias (h,); initial_states (b,h,p,n)."""
    fn = "ssd"
    _need_ndim(fn, "x", x, 4, "(b, l, h, p)")
    b, l, h, p = _shape(x)
    if l < 1:
        raise ValueError(f"{fn}: x must have shape (b, l, h, p) with l >= 1, got {_shape(x)}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"{fn}: chunk_size must be a positive int, got {chunk_size!r}")
    _need_shape(fn, "dt", dt, (b, l, h), "(b, l, h)")
    _need_shape(fn, "A", A, (h,), "(h,)")
    _need_ndim(fn, "B", B, 4, f"(b, l, g, n) with g dividing h = {h}")
    g, n = int(B.shape[2]), int(B.shape[3])
    if g < 1 or h % g != 0 or _shape(B)[:2] != (b, l):
        raise ValueError(f"{fn}: B must have shape (b, l, g, n) = {(b, l, 'g', 'n')} with g dividing "
                         f"h = {h}, got {_shape(B)}")
    _need_shape(fn, "C", C, (b, l, g, n), "(b, l, g, n) like B")
    if D is not None and _shape(D) not in ((h,), (h, p)):
        raise ValueError(f"{fn}: D must have shape (h,) = {(h,)} or (h, p) = {(h, p)}, got {_shape(D)}")
    if z is not None:
        _need_shape(fn, "z", z, (b, l, h, p), "(b, l, h, p)")
    if dt_bias is not None:
        _need_shape(fn, "dt_bias", dt_bias, (h,), "(h,)")
    if initial_states is not None:
        _need_shape(fn, "initial_states", initial_states, (b, h, p, n), "(b, h, p, n)")
    for name, v in (("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z),
                    ("dt_bias", dt_bias), ("initial_states", initial_states)):
        if v is not None:
            _need_real(fn, name, v)
    return SimpleNamespace(b=b, l=l, h=h, p=p, g=g, n=n)


def check_causal_conv1d(x, weight, bias=None, activation=None, initial_states=None):
    """causal_conv1d_fn: x (b,d,l), weight (d,w), bias (d,), activation None/'silu'/'swish',
    initial_states (b,d,w-1)."""
    fn = "causal_conv1d"
    _need_ndim(fn, "x", x, 3, "(b, d, l)")
    b, d, l = _shape(x)
    _need_ndim(fn, "weight", weight, 2, f"(d, w) with d = {d}")
    if weight.shape[0] != d or weight.shape[1] < 1:
        raise ValueError(f"{fn}: weight must have shape (d, w) with d = {d}, w >= 1, got {_shape(weight)}")
    w = int(weight.shape[1])
    if bias is not None:
        _need_shape(fn, "bias", bias, (d,), "(d,)")
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"{fn}: activation must be None, 'silu' or 'swish', got {activation!r}")
    if initial_states is not None:
        _need_shape(fn, "initial_states", initial_states, (b, d, w - 1), "(b, d, w - 1)")
    for name, v in (("x", x), ("weight", weight), ("bias", bias), ("initial_states", initial_states)):
        if v is not None:
            _need_real(fn, name, v)
    return SimpleNamespace(b=b, d=d, l=l, w=w)


def check_conv_update(x, conv_state, weight, bias=None, activation=None):
    """causal_conv1d_update: x (b,d) or (b,d,s); conv_state (b,d,state_len >= w-1); weight (d,w)."""
    fn = "causal_conv1d_update"
    if x.ndim not in (2, 3):
        raise ValueError(f"{fn}: x must have shape (b, d) or (b, d, s), got {_shape(x)}")
    b, d = _shape(x)[:2]
    _need_ndim(fn, "weight", weight, 2, f"(d, w) with d = {d}")
    if weight.shape[0] != d or weight.shape[1] < 1:
        raise ValueError(f"{fn}: weight must have shape (d, w) with d = {d}, got {_shape(weight)}")
    w = int(weight.shape[1])
    _need_ndim(fn, "conv_state", conv_state, 3, f"(b, d, state_len) = {(b, d, 'state_len')}")
    if _shape(conv_state)[:2] != (b, d) or conv_state.shape[2] < w - 1:
        raise ValueError(f"{fn}: conv_state must have shape (b, d, state_len) = {(b, d, 'state_len')} "
                         f"with state_len >= w - 1 = {w - 1}, got {_shape(conv_state)}")
    if bias is not None:
        _need_shape(fn, "bias", bias, (d,), "(d,)")
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"{fn}: activation must be None, 'silu' or 'swish', got {activation!r}")
    return SimpleNamespace(b=b, d=d, w=w, state_len=int(conv_state.shape[2]))
