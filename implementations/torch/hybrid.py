"""The Jamba-style hybrid stack of implementations/numpy/hybrid.py in torch.

Same architecture, configuration (``HybridConfig``) and weights: ``HybridStack.from_numpy`` loads
a NumPy ``HybridWeights`` (or ``from_dict(config, params)`` the flat dict of arrays), ``to_numpy``
exports them back, so one set of weights runs in both backends and in the oracle.

Precision: the parameters are float32 (default) or float64; activations of any float dtype are
cast to the parameters' dtype on entry (bf16 / fp16 activations are thus computed in float32, as
mamba-ssm does) and the output is returned in the activation dtype.  The residual stream, states
and KV caches stay in the parameters' dtype.  Runs on any device (``device=``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssm_conformance.implementations.numpy import hybrid as np_hybrid
from ssm_conformance.implementations.numpy.hybrid import HybridConfig  # noqa: F401  (re-exported)
from ssm_conformance.implementations.torch.attention import KVCache, attend_cached, attention
from ssm_conformance.implementations.torch.mamba import MambaBlock
from ssm_conformance.implementations.torch.mamba2 import Mamba2Block


def _param(x, dtype, device):
    return None if x is None else nn.Parameter(torch.as_tensor(x, dtype=dtype, device=device).clone())


def _np(t):
    return None if t is None else t.detach().cpu().double().numpy()


class Norm(nn.Module):
    """RMSNorm x * rsqrt(mean(x^2) + eps) * weight (mamba-ssm's) or LayerNorm."""

    def __init__(self, nw: np_hybrid.NormWeights, kind, eps, dtype, device):
        super().__init__()
        self.kind, self.eps = kind, float(eps)
        self.weight = _param(nw.weight, dtype, device)
        self.bias = _param(nw.bias, dtype, device)

    def forward(self, x):
        if self.kind == "rmsnorm":
            return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + self.eps) * self.weight
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)

    def to_numpy(self):
        return np_hybrid.NormWeights(_np(self.weight), _np(self.bias))


class MLP(nn.Module):
    def __init__(self, w: np_hybrid.MLPWeights, kind, dtype, device):
        super().__init__()
        self.kind = kind
        self.up_weight = _param(w.up_weight, dtype, device)
        self.down_weight = _param(w.down_weight, dtype, device)
        self.gate_weight = _param(w.gate_weight, dtype, device)

    def forward(self, x):
        up = F.linear(x, self.up_weight)
        if self.kind == "gated_silu":
            hidden = F.silu(F.linear(x, self.gate_weight)) * up
        else:
            hidden = F.silu(up) if self.kind == "silu" else F.gelu(up)
        return F.linear(hidden, self.down_weight)

    def to_numpy(self):
        return np_hybrid.MLPWeights(_np(self.up_weight), _np(self.down_weight), _np(self.gate_weight))


class AttentionMixer(nn.Module):
    """Multi-head causal attention with q/k/v/o projections (no bias, no positional encoding)."""

    def __init__(self, w: np_hybrid.AttentionWeights, n_heads, dtype, device):
        super().__init__()
        for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight", "o_proj_weight"):
            setattr(self, name, _param(getattr(w, name), dtype, device))
        self.n_heads = n_heads
        self.d_model = self.q_proj_weight.shape[0]
        self.head_dim = self.d_model // n_heads

    def _heads(self, x):                                   # (b, l, d) -> (b, H, l, e)
        b, l, _ = x.shape
        return x.reshape(b, l, self.n_heads, self.head_dim).transpose(1, 2)

    def init_state(self, batch):
        p = self.q_proj_weight
        return KVCache(batch, self.n_heads, self.head_dim, dtype=p.dtype, device=p.device)

    def forward(self, x, cache: KVCache | None = None):
        q, k, v = (self._heads(F.linear(x, W)) for W in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight))
        if cache is None:
            o = attention(q, k, v, is_causal=True)
        else:
            cache.append(k, v)
            o = attend_cached(q, cache)
        b, _, l, _ = o.shape
        return F.linear(o.transpose(1, 2).reshape(b, l, self.d_model), self.o_proj_weight)

    def to_numpy(self):
        return np_hybrid.AttentionWeights(*(_np(getattr(self, n)) for n in
                                            ("q_proj_weight", "k_proj_weight", "v_proj_weight", "o_proj_weight")))


class HybridState:
    """Decoding state: per layer a Mamba / Mamba-2 state or a KVCache; ``position``: tokens consumed."""

    def __init__(self, layers, batch):
        self.layers, self.batch, self.position = layers, int(batch), 0


class HybridStack(nn.Module):
    def __init__(self, weights: np_hybrid.HybridWeights, dtype=torch.float32, device=None):
        super().__init__()
        if not isinstance(weights, np_hybrid.HybridWeights):
            raise TypeError(f"HybridStack: weights must be a numpy HybridWeights, got {type(weights).__name__}")
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"HybridStack: parameter dtype must be float32 or float64, got {dtype}")
        weights = np_hybrid.HybridWeights.from_dict(weights.config, weights.to_dict())   # checked
        cfg = self.config = weights.config
        self.mixer_norms, self.mixers = nn.ModuleList(), nn.ModuleList()
        self.mlp_norms, self.mlps = nn.ModuleList(), nn.ModuleList()
        for lw, kind in zip(weights.layers, cfg.layer_types):
            self.mixer_norms.append(Norm(lw.mixer_norm, cfg.norm, cfg.norm_eps, dtype, device))
            if kind == "attention":
                self.mixers.append(AttentionMixer(lw.mixer, cfg.n_heads, dtype, device))
            elif cfg.mixer == "mamba1":
                self.mixers.append(MambaBlock(lw.mixer, dtype=dtype, device=device))
            else:
                self.mixers.append(Mamba2Block(lw.mixer, chunk_size=cfg.chunk_size, dtype=dtype, device=device))
            if lw.mlp is not None:
                self.mlp_norms.append(Norm(lw.mlp_norm, cfg.norm, cfg.norm_eps, dtype, device))
                self.mlps.append(MLP(lw.mlp, cfg.mlp, dtype, device))
        self.final_norm = (None if weights.final_norm is None
                           else Norm(weights.final_norm, cfg.norm, cfg.norm_eps, dtype, device))
        self.dtype = dtype

    # -- weights exchange ---------------------------------------------------------------------

    @classmethod
    def from_numpy(cls, weights, dtype=torch.float32, device=None):
        return cls(weights, dtype=dtype, device=device)

    @classmethod
    def from_dict(cls, config, params, dtype=torch.float32, device=None):
        return cls(np_hybrid.HybridWeights.from_dict(config, params), dtype=dtype, device=device)

    def to_numpy(self) -> np_hybrid.HybridWeights:
        """The weights as float64 NumPy arrays (exactly the values held, e.g. float32 ones)."""
        layers = []
        for i, m in enumerate(self.mixers):
            mixer = m.to_numpy()
            if self.config.mixer == "mamba2" and not isinstance(m, AttentionMixer):
                mixer.norm_eps = self.config.norm_eps
            has_mlp = len(self.mlps) > 0
            layers.append(np_hybrid.LayerWeights(self.mixer_norms[i].to_numpy(), mixer,
                                                 self.mlp_norms[i].to_numpy() if has_mlp else None,
                                                 self.mlps[i].to_numpy() if has_mlp else None))
        return np_hybrid.HybridWeights(self.config, layers,
                                       None if self.final_norm is None else self.final_norm.to_numpy())

    def to_dict(self) -> dict:
        return self.to_numpy().to_dict()

    # -- execution ----------------------------------------------------------------------------

    def _check_x(self, x, ndim):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"HybridStack: x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"HybridStack: x must be a floating-point tensor, got {x.dtype}")
        letters = "(b, l, d_model)" if ndim == 3 else "(b, d_model)"
        if x.dim() != ndim or x.shape[-1] != self.config.d_model or 0 in x.shape[:-1]:
            raise ValueError(f"HybridStack: x must have shape {letters} with d_model = {self.config.d_model}, "
                             f"got {tuple(x.shape)}")

    def _check_state(self, state, batch):
        if not isinstance(state, HybridState) or len(state.layers) != len(self.mixers):
            raise TypeError("HybridStack: state must be a HybridState from this stack's init_state")
        if state.batch != batch:
            raise ValueError(f"HybridStack: the state was made for batch {state.batch}, x has batch {batch}")

    def init_state(self, batch):
        return HybridState([m.init_state(batch) for m in self.mixers], batch)

    def _mlp(self, i, h):
        return h if not len(self.mlps) else h + self.mlps[i](self.mlp_norms[i](h))

    def forward(self, x, state: HybridState | None = None):
        """x (b, l, d_model) -> (b, l, d_model) in x's dtype; with ``state``, continue from it and
        advance it over x (prefill)."""
        self._check_x(x, 3)
        if state is not None:
            self._check_state(state, x.shape[0])
        dtype_in = x.dtype
        h = x.to(self.dtype)
        for i, mixer in enumerate(self.mixers):
            u = self.mixer_norms[i](h)
            h = h + (mixer(u) if state is None else mixer(u, state.layers[i]))
            h = self._mlp(i, h)
        if state is not None:
            state.position += x.shape[1]
        if self.final_norm is not None:
            h = self.final_norm(h)
        return h.to(dtype_in)

    def step(self, x_t, state: HybridState):
        """One token x_t (b, d_model) -> (y_t (b, d_model), state); the state advances in place."""
        self._check_x(x_t, 2)
        self._check_state(state, x_t.shape[0])
        dtype_in = x_t.dtype
        h = x_t.to(self.dtype)
        for i, mixer in enumerate(self.mixers):
            u = self.mixer_norms[i](h)
            if isinstance(mixer, AttentionMixer):
                h = h + mixer(u[:, None], state.layers[i])[:, 0]
            else:
                h = h + mixer.step(u, state.layers[i])[0]
            h = self._mlp(i, h)
        state.position += 1
        if self.final_norm is not None:
            h = self.final_norm(h)
        return h.to(dtype_in), state
