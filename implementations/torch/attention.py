"""Softmax attention in torch (role ``attention``), with a KV cache for decoding.

Same semantics as implementations/numpy/attention.py and ``scaled_dot_product_attention`` without
mask and dropout (scale 1/sqrt(e) by default; causal = top-left aligned j <= i; a row with no key
gives 0).  Precision: float64 computes in float64; float32, bfloat16 and float16 compute in
float32 (scores, max-subtracted softmax, P.V accumulation) and the output is rounded once to the
input dtype.  Query rows are processed in blocks, so at most (block, s) scores per head are held.
Differentiable (plain torch ops); runs on any device the inputs are on.
"""
from __future__ import annotations

import math

import torch

QUERY_BLOCK = 256
FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def compute_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check(fn, q, k, v):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{fn}: {name} must be float32/float64/bfloat16/float16, got {x.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"{fn}: q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"{fn}: q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if q.dim() < 2:
        raise ValueError(f"{fn}: q must have shape (..., l, e), e.g. (b, h, l, e), got {tuple(q.shape)}")
    lead, e = tuple(q.shape[:-2]), q.shape[-1]
    if k.dim() != q.dim() or tuple(k.shape[:-2]) != lead or k.shape[-1] != e:
        raise ValueError(f"{fn}: k must have shape (..., s, e) = {lead + ('s', e)}, got {tuple(k.shape)}")
    if v.dim() != q.dim() or tuple(v.shape[:-1]) != tuple(k.shape[:-1]):
        raise ValueError(f"{fn}: v must have shape (..., s, ev) = {lead + (k.shape[-2], 'ev')}, "
                         f"got {tuple(v.shape)}")


def attention(q, k, v, is_causal=False, scale=None, *, offset=0):
    """softmax(scale q k^T [causal]) v; q (..., l, e), k (..., s, e), v (..., s, ev) tensors of
    one dtype.  ``offset`` (keyword extension): query i sits at key position offset + i, the
    causal mask keeping j <= offset + i.  Returns (..., l, ev) in the input dtype."""
    _check("attention", q, k, v)
    dtype_in = q.dtype
    cdt = compute_dtype(dtype_in)
    q, k, v = q.to(cdt), k.to(cdt), v.to(cdt)
    l, e, s = q.shape[-2], q.shape[-1], k.shape[-2]
    scale = 1.0 / math.sqrt(e) if scale is None else float(scale)
    if s == 0 or l == 0:
        return q.new_zeros(q.shape[:-1] + (v.shape[-1],)).to(dtype_in)
    kT = k.transpose(-1, -2)
    keys = torch.arange(s, device=q.device)
    blocks = []
    for i0 in range(0, l, QUERY_BLOCK):
        rows = torch.arange(i0, min(i0 + QUERY_BLOCK, l), device=q.device)
        S = (q[..., i0:i0 + rows.numel(), :] @ kT) * scale          # (..., rows, s)
        if is_causal:
            S = S.masked_fill(keys[None, :] > (rows + offset)[:, None], float("-inf"))
        m = S.amax(dim=-1, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # no visible key: w = 0
        w = torch.exp(S - m)                                        # in (0, 1]
        den = w.sum(dim=-1, keepdim=True)
        blocks.append((w @ v) / torch.where(den > 0, den, torch.ones_like(den)))
    return torch.cat(blocks, dim=-2).to(dtype_in)


class KVCache:
    """Keys and values of the tokens seen so far, (b, h, length, e) / (b, h, length, ev), in a
    buffer that doubles when full (dtype: the compute dtype of the layer that owns it)."""

    def __init__(self, batch, heads, head_dim, v_dim=None, capacity=16, dtype=torch.float32, device=None):
        self.shape = (int(batch), int(heads))
        self.e, self.ev = int(head_dim), int(head_dim if v_dim is None else v_dim)
        self.length = 0
        cap = max(1, capacity)
        self._k = torch.zeros(self.shape + (cap, self.e), dtype=dtype, device=device)
        self._v = torch.zeros(self.shape + (cap, self.ev), dtype=dtype, device=device)

    @property
    def keys(self):
        return self._k[:, :, :self.length]

    @property
    def values(self):
        return self._v[:, :, :self.length]

    def append(self, k, v):
        """k (b, h, t, e), v (b, h, t, ev)."""
        if k.dim() != 4 or tuple(k.shape[:2]) != self.shape or k.shape[3] != self.e:
            raise ValueError(f"KVCache.append: k must have shape (b, h, t, e) = {self.shape + ('t', self.e)}, "
                             f"got {tuple(k.shape)}")
        if tuple(v.shape) != tuple(k.shape[:3]) + (self.ev,):
            raise ValueError(f"KVCache.append: v must have shape {tuple(k.shape[:3]) + (self.ev,)}, "
                             f"got {tuple(v.shape)}")
        new = self.length + k.shape[2]
        if new > self._k.shape[2]:
            cap = max(new, 2 * self._k.shape[2])
            for name in ("_k", "_v"):
                old = getattr(self, name)
                buf = old.new_zeros(old.shape[:2] + (cap, old.shape[3]))
                buf[:, :, :self.length] = old[:, :, :self.length]
                setattr(self, name, buf)
        with torch.no_grad():
            self._k[:, :, self.length:new] = k.to(self._k.dtype)
            self._v[:, :, self.length:new] = v.to(self._v.dtype)
        self.length = new


def attend_cached(q, cache: KVCache, scale=None):
    """Queries q (b, h, t, e) of the t newest tokens (already appended) attend causally to every
    cached key: query i sees keys j <= length - t + i."""
    if q.dim() != 4 or q.shape[2] > cache.length:
        raise ValueError(f"attend_cached: q must have shape (b, h, t, e) with t <= cache length "
                         f"{cache.length}, got {tuple(q.shape)}")
    return attention(q, cache.keys.to(q.dtype), cache.values.to(q.dtype), is_causal=True, scale=scale,
                     offset=cache.length - q.shape[2])
