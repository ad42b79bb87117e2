"""A Jamba-style hybrid stack in NumPy: Mamba (Mamba-1 or Mamba-2) layers interleaved with causal
attention layers, each a pre-norm residual block followed by a pre-norm residual MLP.

    for each layer i:  h = h + mixer_i(norm(h));   h = h + mlp_i(norm(h))
    out = norm(h)                                                  (final norm, optional)

mixer: Mamba block (implementations/numpy/mamba.py, mamba2.py) or multi-head causal softmax
attention without positional encoding (as Jamba's attention layers): q, k, v = x Wq^T, x Wk^T,
x Wv^T split into n_heads heads of d_model / n_heads, out = concat_h(attention_h) Wo^T.
norm: RMSNorm x / sqrt(mean(x^2) + eps) * w (mamba-ssm's) or LayerNorm.
mlp: gated SiLU (Jamba / LLaMA: down(silu(gate x) * up x)), or down(act(up x)) with SiLU / GELU.

Two execution modes that agree: ``forward`` (a whole sequence; with a state it continues from it:
prefill) and ``step`` (one token: the Mamba conv and SSM states, the attention KV cache).
Weights live in ``HybridWeights``; ``to_dict`` / ``from_dict`` give the flat dict of float64
arrays read by the oracle (oracle/hybrid.py) and by the torch stack (implementations/torch/hybrid.py).
Everything computes in float64.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
import math

import numpy as np
from scipy.special import erf

from ssm_conformance.implementations.numpy.attention import KVCache, attend_cached, attention
from ssm_conformance.implementations.numpy.mamba import MambaBlock, MambaWeights, silu
from ssm_conformance.implementations.numpy.mamba2 import Mamba2Block, Mamba2Weights

MIXERS = ("mamba1", "mamba2")
NORMS = ("rmsnorm", "layernorm")
MLPS = ("gated_silu", "silu", "gelu", "none")
_LETTERS = {"m": "mamba", "mamba": "mamba", "a": "attention", "attention": "attention"}


# ================================================================================================
# Configuration
# ================================================================================================

@dataclass(frozen=True)
class HybridConfig:
    """Shape of a hybrid stack.

    pattern -- a string of 'M' (Mamba) / 'A' (attention) tiled over the layers ("MMMA": one
               attention layer in four, the last of each group; n_layers must be a multiple of
               its length), or an explicit sequence of n_layers entries 'M'/'A'/'mamba'/'attention'.
               ``HybridConfig.jamba(...)`` places one attention layer every ``attn_period`` layers
               at ``attn_offset``, as Jamba's attn_layer_period / attn_layer_offset.
    mixer   -- "mamba1" | "mamba2" for the Mamba layers.  headdim, ngroups, chunk_size: Mamba-2.
    mlp     -- "gated_silu" | "silu" | "gelu" | "none"; mlp_hidden defaults to 4 d_model.
    norm    -- "rmsnorm" | "layernorm", norm_eps for every norm (Mamba-2's gated norm too).
    """

    d_model: int
    n_layers: int
    pattern: str | tuple = "MMMA"
    mixer: str = "mamba1"
    n_heads: int = 4
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"
    headdim: int = 16
    ngroups: int = 1
    chunk_size: int = 64
    mlp: str = "gated_silu"
    mlp_hidden: int | None = None
    norm: str = "rmsnorm"
    norm_eps: float = 1e-5
    final_norm: bool = True
    layer_types: tuple = field(init=False)

    def __post_init__(self):
        for name in ("d_model", "n_layers", "n_heads", "d_state", "d_conv", "expand", "headdim",
                     "ngroups", "chunk_size"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"HybridConfig: {name} must be a positive integer, got {v!r}")
        for name, allowed in (("mixer", MIXERS), ("mlp", MLPS), ("norm", NORMS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"HybridConfig: {name} must be one of {allowed}, got {getattr(self, name)!r}")
        object.__setattr__(self, "layer_types", self._resolve_pattern())
        if "attention" in self.layer_types and self.d_model % self.n_heads:
            raise ValueError(f"HybridConfig: d_model = {self.d_model} must be a multiple of "
                             f"n_heads = {self.n_heads}")
        if self.mixer == "mamba2" and "mamba" in self.layer_types:
            d_inner = self.expand * self.d_model
            if d_inner % self.headdim or (d_inner // self.headdim) % self.ngroups:
                raise ValueError(f"HybridConfig: Mamba-2 needs d_inner = expand * d_model = {d_inner} "
                                 f"a multiple of headdim = {self.headdim}, and nheads a multiple of "
                                 f"ngroups = {self.ngroups}")
        if self.mlp_hidden is not None and (not isinstance(self.mlp_hidden, (int, np.integer))
                                            or self.mlp_hidden < 1):
            raise ValueError(f"HybridConfig: mlp_hidden must be a positive integer or None, got {self.mlp_hidden!r}")
        if not self.norm_eps >= 0:
            raise ValueError(f"HybridConfig: norm_eps must be >= 0, got {self.norm_eps!r}")

    def _resolve_pattern(self):
        p = self.pattern
        if isinstance(p, str):
            if not p or any(c.lower() not in "ma" for c in p):
                raise ValueError(f"HybridConfig: pattern string must consist of 'M' and 'A', got {p!r}")
            if self.n_layers % len(p):
                raise ValueError(f"HybridConfig: n_layers = {self.n_layers} must be a multiple of the "
                                 f"pattern length {len(p)} ({p!r}); give an explicit list otherwise")
            return tuple(_LETTERS[c.lower()] for c in p) * (self.n_layers // len(p))
        p = tuple(p)
        object.__setattr__(self, "pattern", p)                       # hashable, like the config
        if len(p) != self.n_layers:
            raise ValueError(f"HybridConfig: an explicit pattern needs n_layers = {self.n_layers} "
                             f"entries, got {len(p)}")
        bad = [e for e in p if not isinstance(e, str) or e.lower() not in _LETTERS]
        if bad:
            raise ValueError(f"HybridConfig: pattern entries must be 'M'/'A'/'mamba'/'attention', got {bad}")
        return tuple(_LETTERS[e.lower()] for e in p)

    @classmethod
    def jamba(cls, d_model, n_layers, attn_period=8, attn_offset=4, **kw):
        """One attention layer every attn_period layers, at index attn_offset (Jamba: 8, 4)."""
        if not 0 <= attn_offset < attn_period:
            raise ValueError(f"HybridConfig.jamba: need 0 <= attn_offset < attn_period, got "
                             f"{attn_offset}, {attn_period}")
        pattern = tuple("A" if i % attn_period == attn_offset else "M" for i in range(n_layers))
        return cls(d_model=d_model, n_layers=n_layers, pattern=pattern, **kw)

    @property
    def hidden(self):
        return 4 * self.d_model if self.mlp_hidden is None else int(self.mlp_hidden)


# ================================================================================================
# Weights
# ================================================================================================

@dataclass
class AttentionWeights:
    q_proj_weight: np.ndarray   # (d_model, d_model)
    k_proj_weight: np.ndarray
    v_proj_weight: np.ndarray
    o_proj_weight: np.ndarray


@dataclass
class NormWeights:
    weight: np.ndarray           # (d_model,)
    bias: np.ndarray | None = None   # LayerNorm only


@dataclass
class MLPWeights:
    up_weight: np.ndarray        # (hidden, d_model)
    down_weight: np.ndarray      # (d_model, hidden)
    gate_weight: np.ndarray | None = None   # (hidden, d_model), gated SiLU only


@dataclass
class LayerWeights:
    mixer_norm: NormWeights
    mixer: MambaWeights | Mamba2Weights | AttentionWeights
    mlp_norm: NormWeights | None = None
    mlp: MLPWeights | None = None


_M2_SCALARS = ("headdim", "ngroups", "norm_eps")


def _array_fields(obj):
    """(name, array or None) of a weights dataclass, without the scalar fields."""
    return [(f.name, getattr(obj, f.name)) for f in fields(obj) if f.name not in _M2_SCALARS]


@dataclass
class HybridWeights:
    config: HybridConfig
    layers: list
    final_norm: NormWeights | None = None

    @classmethod
    def random(cls, config: HybridConfig, seed=0):
        """Initialization: Mamba blocks as mamba-ssm (their ``random``), linear layers uniform
        +-1/sqrt(fan_in) as nn.Linear, norms weight 1 (+ small random perturbation so that the
        weight is exercised) and bias small random."""
        rng = np.random.default_rng(seed)
        d, f = config.d_model, config.hidden

        def lin(out_f, in_f):
            k = 1.0 / math.sqrt(in_f)
            return rng.uniform(-k, k, size=(out_f, in_f))

        def norm():
            return NormWeights(weight=1.0 + 0.1 * rng.standard_normal(d),
                               bias=0.1 * rng.standard_normal(d) if config.norm == "layernorm" else None)

        layers = []
        for i, kind in enumerate(config.layer_types):
            if kind == "attention":
                mixer = AttentionWeights(lin(d, d), lin(d, d), lin(d, d), lin(d, d))
            elif config.mixer == "mamba1":
                mixer = MambaWeights.random(d, d_state=config.d_state, d_conv=config.d_conv,
                                            expand=config.expand, dt_rank=config.dt_rank,
                                            seed=int(rng.integers(2**31)))
            else:
                mixer = Mamba2Weights.random(d, d_state=config.d_state, d_conv=config.d_conv,
                                             expand=config.expand, headdim=config.headdim,
                                             ngroups=config.ngroups, seed=int(rng.integers(2**31)))
                mixer.norm_eps = config.norm_eps
            mlp = None
            if config.mlp != "none":
                mlp = MLPWeights(up_weight=lin(f, d), down_weight=lin(d, f),
                                 gate_weight=lin(f, d) if config.mlp == "gated_silu" else None)
            layers.append(LayerWeights(norm(), mixer, norm() if mlp is not None else None, mlp))
        return cls(config, layers, norm() if config.final_norm else None)

    def to_dict(self) -> dict:
        """Flat dict name -> float64 array (the exchange format of oracle/hybrid.py); absent
        optional biases are left out."""
        out = {}

        def put(prefix, obj):
            for name, v in _array_fields(obj):
                if v is not None:
                    out[f"{prefix}.{name}"] = np.array(v, dtype=np.float64)

        for i, lw in enumerate(self.layers):
            put(f"layers.{i}.mixer_norm", lw.mixer_norm)
            put(f"layers.{i}.mixer", lw.mixer)
            if lw.mlp is not None:
                put(f"layers.{i}.mlp_norm", lw.mlp_norm)
                put(f"layers.{i}.mlp", lw.mlp)
        if self.final_norm is not None:
            put("final_norm", self.final_norm)
        return out

    @classmethod
    def from_dict(cls, config: HybridConfig, params: dict):
        """Inverse of ``to_dict``; every name and shape is checked against ``config`` (ValueError
        naming the parameter and the shape expected, or the names that are missing / unused)."""
        if not isinstance(config, HybridConfig):
            raise TypeError(f"HybridWeights.from_dict: config must be a HybridConfig, got {type(config).__name__}")
        P = {}
        for k, v in params.items():
            a = np.asarray(v)
            if a.dtype.kind not in "biuf":
                raise TypeError(f"HybridWeights.from_dict: params['{k}'] must be a real array, got dtype {a.dtype}")
            P[k] = a.astype(np.float64)
        used = set()
        d, f = config.d_model, config.hidden

        def take(name, shape, optional=False):
            if name not in P:
                if optional:
                    return None
                raise ValueError(f"HybridWeights.from_dict: missing parameter '{name}' of shape {shape}")
            if P[name].shape != tuple(shape):
                raise ValueError(f"HybridWeights.from_dict: '{name}' must have shape {tuple(shape)}, "
                                 f"got {P[name].shape}")
            used.add(name)
            return P[name]

        def norm(prefix):
            return NormWeights(take(prefix + ".weight", (d,)),
                               take(prefix + ".bias", (d,)) if config.norm == "layernorm" else None)

        layers = []
        for i, kind in enumerate(config.layer_types):
            pre = f"layers.{i}.mixer."
            if kind == "attention":
                mixer = AttentionWeights(*(take(pre + n, (d, d)) for n in
                                           ("q_proj_weight", "k_proj_weight", "v_proj_weight", "o_proj_weight")))
            elif config.mixer == "mamba1":
                di, n, w = config.expand * d, config.d_state, config.d_conv
                r = math.ceil(d / 16) if config.dt_rank == "auto" else int(config.dt_rank)
                mixer = MambaWeights(
                    in_proj_weight=take(pre + "in_proj_weight", (2 * di, d)),
                    conv_weight=take(pre + "conv_weight", (di, w)),
                    conv_bias=take(pre + "conv_bias", (di,), optional=True),
                    x_proj_weight=take(pre + "x_proj_weight", (r + 2 * n, di)),
                    dt_proj_weight=take(pre + "dt_proj_weight", (di, r)),
                    dt_proj_bias=take(pre + "dt_proj_bias", (di,)),
                    A_log=take(pre + "A_log", (di, n)),
                    D=take(pre + "D", (di,)),
                    out_proj_weight=take(pre + "out_proj_weight", (d, di)),
                    in_proj_bias=take(pre + "in_proj_bias", (2 * di,), optional=True),
                    out_proj_bias=take(pre + "out_proj_bias", (d,), optional=True))
            else:
                di, n, w, g = config.expand * d, config.d_state, config.d_conv, config.ngroups
                h = di // config.headdim
                cd = di + 2 * g * n
                mixer = Mamba2Weights(
                    in_proj_weight=take(pre + "in_proj_weight", (di + cd + h, d)),
                    conv_weight=take(pre + "conv_weight", (cd, w)),
                    conv_bias=take(pre + "conv_bias", (cd,), optional=True),
                    dt_bias=take(pre + "dt_bias", (h,)), A_log=take(pre + "A_log", (h,)),
                    D=take(pre + "D", (h,)), norm_weight=take(pre + "norm_weight", (di,)),
                    out_proj_weight=take(pre + "out_proj_weight", (d, di)),
                    headdim=config.headdim, ngroups=g, norm_eps=config.norm_eps,
                    in_proj_bias=take(pre + "in_proj_bias", (di + cd + h,), optional=True),
                    out_proj_bias=take(pre + "out_proj_bias", (d,), optional=True))
            mlp = mlp_norm = None
            if config.mlp != "none":
                mlp_norm = norm(f"layers.{i}.mlp_norm")
                mp = f"layers.{i}.mlp."
                mlp = MLPWeights(take(mp + "up_weight", (f, d)), take(mp + "down_weight", (d, f)),
                                 take(mp + "gate_weight", (f, d)) if config.mlp == "gated_silu" else None)
            layers.append(LayerWeights(norm(f"layers.{i}.mixer_norm"), mixer, mlp_norm, mlp))
        final = norm("final_norm") if config.final_norm else None
        unused = sorted(set(P) - used)
        if unused:
            raise ValueError(f"HybridWeights.from_dict: parameters not used by this config: {unused[:6]}")
        return cls(config, layers, final)


# ================================================================================================
# Layers
# ================================================================================================

def rms_norm(x, weight, eps):
    """x / sqrt(mean(x^2) + eps) * weight over the last axis (mamba-ssm's RMSNorm)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def layer_norm(x, weight, bias, eps):
    """(x - mean) / sqrt(var + eps) * weight + bias (two-pass, biased variance)."""
    xc = x - np.mean(x, axis=-1, keepdims=True)
    y = xc / np.sqrt(np.mean(xc * xc, axis=-1, keepdims=True) + eps) * weight
    return y if bias is None else y + bias


def gelu(x):
    """Exact (erf) GELU, torch's default."""
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def mlp(x, w: MLPWeights, kind):
    up = x @ w.up_weight.T
    if kind == "gated_silu":
        hidden = silu(x @ w.gate_weight.T) * up
    else:
        hidden = silu(up) if kind == "silu" else gelu(up)
    return hidden @ w.down_weight.T


class AttentionMixer:
    """Multi-head causal attention with q/k/v/o projections (no bias, no positional encoding)."""

    def __init__(self, w: AttentionWeights, n_heads):
        self.w, self.n_heads = w, n_heads
        self.d_model = w.q_proj_weight.shape[0]
        self.head_dim = self.d_model // n_heads

    def _heads(self, x):                                    # (b, l, d) -> (b, H, l, e)
        b, l, _ = x.shape
        return x.reshape(b, l, self.n_heads, self.head_dim).transpose(0, 2, 1, 3)

    def init_state(self, batch):
        return KVCache(batch, self.n_heads, self.head_dim)

    def forward(self, x, cache: KVCache | None = None):
        """x (b, l, d) -> (b, l, d).  With a cache, the new tokens' keys/values are appended and
        the queries attend to everything cached (bottom-right aligned causal mask)."""
        w = self.w
        q, k, v = (self._heads(x @ W.T) for W in (w.q_proj_weight, w.k_proj_weight, w.v_proj_weight))
        if cache is None:
            o = attention(q, k, v, is_causal=True)
        else:
            cache.append(k, v)
            o = attend_cached(q, cache)
        b, _, l, _ = o.shape
        return o.transpose(0, 2, 1, 3).reshape(b, l, self.d_model) @ w.o_proj_weight.T


# ================================================================================================
# The stack
# ================================================================================================

@dataclass
class HybridState:
    """Decoding state: per layer a MambaState / Mamba2State (conv and SSM states) or a KVCache;
    ``position`` counts the tokens consumed."""

    layers: list
    batch: int
    position: int = 0


class HybridStack:
    def __init__(self, weights: HybridWeights):
        if not isinstance(weights, HybridWeights):
            raise TypeError(f"HybridStack: weights must be a HybridWeights, got {type(weights).__name__}")
        # round trip through the checked dict: shapes validated against the config
        self.weights = HybridWeights.from_dict(weights.config, weights.to_dict())
        cfg = self.config = weights.config
        self.mixers = []
        for lw, kind in zip(self.weights.layers, cfg.layer_types):
            if kind == "attention":
                self.mixers.append(AttentionMixer(lw.mixer, cfg.n_heads))
            elif cfg.mixer == "mamba1":
                self.mixers.append(MambaBlock(lw.mixer))
            else:
                self.mixers.append(Mamba2Block(lw.mixer, chunk_size=cfg.chunk_size))

    def _norm(self, x, nw: NormWeights):
        if self.config.norm == "rmsnorm":
            return rms_norm(x, nw.weight, self.config.norm_eps)
        return layer_norm(x, nw.weight, nw.bias, self.config.norm_eps)

    def _check_x(self, x, ndim):
        a = np.asarray(x)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"HybridStack: x must be a real array, got dtype {a.dtype}")
        letters = "(b, l, d_model)" if ndim == 3 else "(b, d_model)"
        if a.ndim != ndim or a.shape[-1] != self.config.d_model or 0 in a.shape[:-1]:
            raise ValueError(f"HybridStack: x must have shape {letters} with d_model = {self.config.d_model}, "
                             f"got {a.shape}")
        return a.astype(np.float64)

    def _check_state(self, state, batch):
        if not isinstance(state, HybridState) or len(state.layers) != len(self.mixers):
            raise TypeError("HybridStack: state must be a HybridState from this stack's init_state")
        if state.batch != batch:
            raise ValueError(f"HybridStack: the state was made for batch {state.batch}, x has batch {batch}")

    def init_state(self, batch):
        """Empty decoding state for ``batch`` sequences."""
        return HybridState([m.init_state(batch) for m in self.mixers], int(batch))

    def forward(self, x, state: HybridState | None = None):
        """x (b, l, d_model) -> (b, l, d_model).  With ``state`` the sequence continues from it,
        and the state is advanced over x (prefill)."""
        x = self._check_x(x, 3)
        if state is not None:
            self._check_state(state, x.shape[0])
        h = x
        for i, (mixer, lw) in enumerate(zip(self.mixers, self.weights.layers)):
            u = self._norm(h, lw.mixer_norm)
            h = h + (mixer.forward(u) if state is None else mixer.forward(u, state.layers[i]))
            if lw.mlp is not None:
                h = h + mlp(self._norm(h, lw.mlp_norm), lw.mlp, self.config.mlp)
        if state is not None:
            state.position += x.shape[1]
        return h if self.weights.final_norm is None else self._norm(h, self.weights.final_norm)

    def step(self, x_t, state: HybridState):
        """One token x_t (b, d_model) -> (y_t (b, d_model), state); the state advances in place."""
        x_t = self._check_x(x_t, 2)
        self._check_state(state, x_t.shape[0])
        h = x_t
        for i, (mixer, lw) in enumerate(zip(self.mixers, self.weights.layers)):
            u = self._norm(h, lw.mixer_norm)
            if isinstance(mixer, AttentionMixer):
                h = h + mixer.forward(u[:, None], state.layers[i])[:, 0]
            else:
                h = h + mixer.step(u, state.layers[i])[0]
            if lw.mlp is not None:
                h = h + mlp(self._norm(h, lw.mlp_norm), lw.mlp, self.config.mlp)
        state.position += 1
        y = h if self.weights.final_norm is None else self._norm(h, self.weights.final_norm)
        return y, state
