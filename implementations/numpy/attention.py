"""Softmax attention in NumPy (role ``attention``), with a KV cache for decoding.

    o_i = sum_j softmax_j(scale q_i . k_j) v_j      over the keys j that query i sees,

as ``torch.nn.functional.scaled_dot_product_attention`` without mask and dropout: scale 1/sqrt(e)
by default; ``is_causal`` keeps j <= i (top-left aligned when l != s, as torch's
``ones(L, S).tril(0)``); a row that sees no key (only when s = 0) gives 0, as torch does.

The softmax subtracts each row's maximum before exp (w = exp(S - max) <= 1, so nothing overflows
at any logit size) and normalizes after the P.V product.  Query rows are processed in blocks, so
the score matrix held at once is (block, s) per head.  float32 inputs compute in float32, everything
else in float64.

Decoding: ``KVCache`` holds the keys and values seen so far; ``attend_cached`` attends queries
at the newest positions to every cached key (``offset``: query i sits at position offset + i).
"""
from __future__ import annotations

import math

import numpy as np

QUERY_BLOCK = 256


def _as_float(fn, name, x):
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{fn}: {name} must be a real numeric array, got dtype {a.dtype}")
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _check(fn, q, k, v):
    q, k, v = _as_float(fn, "q", q), _as_float(fn, "k", k), _as_float(fn, "v", v)
    if q.ndim < 2:
        raise ValueError(f"{fn}: q must have shape (..., l, e), e.g. (b, h, l, e), got {q.shape}")
    lead, e = q.shape[:-2], q.shape[-1]
    if k.ndim != q.ndim or k.shape[:-2] != lead or k.shape[-1] != e:
        raise ValueError(f"{fn}: k must have shape (..., s, e) = {lead + ('s', e)}, got {k.shape}")
    if v.ndim != q.ndim or v.shape[:-1] != k.shape[:-1]:
        raise ValueError(f"{fn}: v must have shape (..., s, ev) = {lead + (k.shape[-2], 'ev')}, "
                         f"got {v.shape}")
    dtype = np.float32 if q.dtype == k.dtype == v.dtype == np.float32 else np.float64
    return q.astype(dtype, copy=False), k.astype(dtype, copy=False), v.astype(dtype, copy=False)


def attention(q, k, v, is_causal=False, scale=None, *, offset=0):
    """softmax(scale q k^T [causal]) v.  q (..., l, e), k (..., s, e), v (..., s, ev).

    offset (keyword, an extension of SDPA): query i sits at key position offset + i, so the
    causal mask keeps j <= offset + i (offset = s - l: bottom-right aligned, the rows of a chunk
    appended to a cache).  Returns (..., l, ev) in float32 for float32 inputs, else float64.
    """
    q, k, v = _check("attention", q, k, v)
    l, e, s = q.shape[-2], q.shape[-1], k.shape[-2]
    scale = 1.0 / math.sqrt(e) if scale is None else float(scale)
    out = np.zeros(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
    if s == 0:
        return out                                           # no key: 0, as torch
    kT = np.swapaxes(k, -1, -2)
    for i0 in range(0, l, QUERY_BLOCK):
        rows = np.arange(i0, min(i0 + QUERY_BLOCK, l))
        S = (q[..., rows, :] @ kT) * q.dtype.type(scale)     # (..., rows, s)
        if is_causal:
            hidden = np.arange(s)[None, :] > (rows + offset)[:, None]
            S = np.where(hidden, -np.inf, S)
        m = S.max(axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)                   # a row with no visible key: w = 0
        w = np.exp(S - m)                                    # in (0, 1]; exp(-inf) = 0
        den = w.sum(axis=-1, keepdims=True)
        out[..., rows, :] = (w @ v) / np.where(den > 0, den, 1)
    return out


class KVCache:
    """Keys and values of the tokens seen so far, (b, h, length, e) and (b, h, length, ev),
    grown by doubling a preallocated buffer."""

    def __init__(self, batch, heads, head_dim, v_dim=None, capacity=16, dtype=np.float64):
        self.shape = (int(batch), int(heads))
        self.e, self.ev = int(head_dim), int(head_dim if v_dim is None else v_dim)
        self.length = 0
        self._k = np.zeros(self.shape + (max(1, capacity), self.e), dtype=dtype)
        self._v = np.zeros(self.shape + (max(1, capacity), self.ev), dtype=dtype)

    @property
    def keys(self):
        return self._k[:, :, :self.length]

    @property
    def values(self):
        return self._v[:, :, :self.length]

    def append(self, k, v):
        """k (b, h, t, e), v (b, h, t, ev): the new tokens' keys and values."""
        k, v = np.asarray(k), np.asarray(v)
        if k.shape[:2] != self.shape or k.ndim != 4 or k.shape[3] != self.e:
            raise ValueError(f"KVCache.append: k must have shape (b, h, t, e) = {self.shape + ('t', self.e)}, "
                             f"got {k.shape}")
        if v.shape != k.shape[:3] + (self.ev,):
            raise ValueError(f"KVCache.append: v must have shape {k.shape[:3] + (self.ev,)}, got {v.shape}")
        new = self.length + k.shape[2]
        if new > self._k.shape[2]:
            cap = max(new, 2 * self._k.shape[2])
            for name in ("_k", "_v"):
                old = getattr(self, name)
                buf = np.zeros(old.shape[:2] + (cap, old.shape[3]), dtype=old.dtype)
                buf[:, :, :self.length] = old[:, :, :self.length]
                setattr(self, name, buf)
        self._k[:, :, self.length:new] = k
        self._v[:, :, self.length:new] = v
        self.length = new


def attend_cached(q, cache: KVCache, scale=None):
    """Queries q (b, h, t, e) of the t newest tokens (whose keys and values are already appended)
    attend causally to every cached key: query i sees keys j <= length - t + i."""
    q = np.asarray(q)
    if q.ndim != 4 or q.shape[2] > cache.length:
        raise ValueError(f"attend_cached: q must have shape (b, h, t, e) with t <= cache length "
                         f"{cache.length}, got {q.shape}")
    return attention(q, cache.keys, cache.values, is_causal=True, scale=scale,
                     offset=cache.length - q.shape[2])
