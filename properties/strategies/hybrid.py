"""Inputs of the hybrid-stack properties (properties/test_hybrid_stack.py): a configuration of
our Jamba-style stack (implementations/{numpy,torch}/hybrid.py), seeds for its weights and input,
a batch and a length, and the dtype the torch stack computes in.

Configurations.  Layer placement (Mamba 'M' / attention 'A'): a tiled pattern ("M", "A", "MA",
"AM", "MMA", "MMMA", "AMMM", ...: all-Mamba and all-attention included), Jamba's attention period
and offset (``HybridConfig.jamba``), or an explicit list; 1..4 layers.  Mixer mamba1 / mamba2.
d_model in 2..12 with 1..4 attention heads dividing it (head dim 1 included), d_state 1..8,
d_conv 2..4 (causal-conv1d's widths), expand 1..2, dt_rank auto or 1..2; Mamba-2: headdim dividing
d_inner, ngroups dividing the heads, chunk sizes 1..64 (the length crosses chunk boundaries or
not).  MLP gated SiLU / SiLU / GELU / none (hidden 1..16 or 4 d_model), RMSNorm / LayerNorm,
eps 1e-5 or 1e-6, final norm or not.

Weights: ``HybridWeights.random`` (the Mamba blocks at mamba-ssm's initialization: D = 1, unit
gated-norm weights, no projection biases) or, perturbed, with random D, Mamba-2 gated-norm
weights 1 + N(0, 0.3^2), in/out projection biases and the conv bias dropped in every other layer,
so that every optional parameter of the exchange format is exercised.

Sizes.  Lengths 1..48 (1, odd, prime, powers of two and their neighbours), batch 1..3.  The error
bound (``oracle.hybrid.hybrid_error_bound``) runs one reverse pass per output element (batched
64 at a time, each sequence on its own) through a graph of l steps per layer: its cost grows like
b l^2 n_layers, so an example's b * l * n_layers is kept under ``max_cost`` by shrinking the
batch, then the layers (never the length): long sequences come with one sequence and fewer
layers.  The oracle property draws smaller sizes (``oracle_cases``).  Inputs x ~ N(0, 1) * 2^k,
k in -2..3, from a seed: the printed case is all it takes to rebuild an example.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from ssm_conformance.implementations.numpy.hybrid import HybridConfig, HybridWeights
from ssm_conformance.properties.strategies.common import seeds

MAX_LAYERS = 4
MAX_LENGTH = 48
# 1, small, odd, primes, powers of two and their neighbours up to 48
SPECIAL_LENGTHS = (1, 2, 3, 4, 5, 7, 8, 9, 11, 13, 16, 17, 23, 29, 31, 32, 33, 37, 41, 43, 47, 48)
PATTERNS = ("M", "A", "MA", "AM", "MMA", "MAM", "AMM", "MMMA", "AMMM", "MMAM", "MAMA")
D_MODELS = (2, 4, 6, 8, 12)
CHUNK_SIZES = (1, 2, 3, 4, 5, 8, 16, 64)
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class HybridCase:
    config: HybridConfig
    weight_seed: int
    perturbed: bool
    input_seed: int
    scale: float
    batch: int
    length: int
    dtype: str          # the torch stack's compute dtype; NumPy always computes in float64
    split: int = 0      # a position in 1..length-1 (0 when length = 1): prefix / changed token

    def weights(self) -> HybridWeights:
        W = HybridWeights.random(self.config, seed=self.weight_seed)
        if self.perturbed:
            _perturb(W, np.random.default_rng(self.weight_seed ^ 0x5EED))
        return W

    def x(self) -> np.ndarray:
        """(batch, length, d_model) float64."""
        rng = np.random.default_rng(self.input_seed)
        return self.scale * rng.standard_normal((self.batch, self.length, self.config.d_model))

    def changed(self) -> np.ndarray:
        """x with every token from ``split`` on redrawn (causality)."""
        x = self.x()
        rng = np.random.default_rng(self.input_seed + 1)
        x[:, self.split:] = self.scale * rng.standard_normal(x[:, self.split:].shape)
        return x


def _perturb(W: HybridWeights, rng) -> None:
    """Exercise the optional and non-trivial parameters (in place)."""
    for i, layer in enumerate(W.layers):
        m = layer.mixer
        if not hasattr(m, "A_log"):        # attention: q/k/v/o only
            continue
        m.D = rng.standard_normal(m.D.shape)
        m.in_proj_bias = rng.uniform(-0.1, 0.1, m.in_proj_weight.shape[0])
        m.out_proj_bias = rng.uniform(-0.1, 0.1, m.out_proj_weight.shape[0])
        if i % 2:
            m.conv_bias = None
        if hasattr(m, "norm_weight"):
            m.norm_weight = 1 + 0.3 * rng.standard_normal(m.norm_weight.shape)


@st.composite
def placements(draw, max_layers=MAX_LAYERS):
    """Keyword arguments of HybridConfig (or of HybridConfig.jamba) placing the layers."""
    kind = draw(st.sampled_from(("tiled", "jamba", "explicit")))
    if kind == "tiled":
        pattern = draw(st.sampled_from([p for p in PATTERNS if len(p) <= max_layers]))
        reps = draw(st.integers(1, max_layers // len(pattern)))
        return dict(pattern=pattern, n_layers=len(pattern) * reps)
    if kind == "jamba":           # period 1 (all attention) is the tiled pattern "A"
        period = draw(st.integers(2, 4))
        return dict(n_layers=draw(st.integers(1, max_layers)), attn_period=period,
                    attn_offset=draw(st.integers(0, period - 1)))
    layers = draw(st.lists(st.sampled_from(("M", "A", "mamba", "attention")), min_size=1,
                           max_size=max_layers))
    return dict(pattern=tuple(layers), n_layers=len(layers))


def _divisors(n, at_most):
    return [k for k in range(1, min(n, at_most) + 1) if n % k == 0]


@st.composite
def configs(draw, max_layers=MAX_LAYERS, d_models=D_MODELS, max_state=8):
    place = draw(placements(max_layers))
    mixer = draw(st.sampled_from(("mamba1", "mamba2")))
    d = draw(st.sampled_from(d_models))
    expand = draw(st.integers(1, 2))
    d_inner = expand * d
    headdim = draw(st.sampled_from(_divisors(d_inner, 8)))
    nheads = d_inner // headdim
    mlp = draw(st.sampled_from(("gated_silu", "silu", "gelu", "none")))
    kw = dict(d_model=d, mixer=mixer, n_heads=draw(st.sampled_from(_divisors(d, 4))),
              d_state=draw(st.integers(1, max_state)), d_conv=draw(st.integers(2, 4)),
              expand=expand, dt_rank=draw(st.sampled_from(("auto", 1, 2))), headdim=headdim,
              ngroups=draw(st.sampled_from(_divisors(nheads, 4))),
              chunk_size=draw(st.sampled_from(CHUNK_SIZES)), mlp=mlp,
              mlp_hidden=None if mlp == "none" else draw(st.one_of(st.none(), st.integers(1, 16))),
              norm=draw(st.sampled_from(("rmsnorm", "layernorm"))),
              norm_eps=draw(st.sampled_from((1e-5, 1e-6))), final_norm=draw(st.booleans()))
    if "attn_period" in place:
        return HybridConfig.jamba(n_layers=place["n_layers"], attn_period=place["attn_period"],
                                  attn_offset=place["attn_offset"], **kw)
    return HybridConfig(n_layers=place["n_layers"], pattern=place["pattern"], **kw)


def _fewer_layers(cfg: HybridConfig, n_layers: int) -> HybridConfig:
    """The first n_layers layers of cfg (an explicit pattern)."""
    if n_layers >= cfg.n_layers:
        return cfg
    kw = {f: getattr(cfg, f) for f in cfg.__dataclass_fields__ if f not in ("layer_types", "pattern",
                                                                             "n_layers")}
    return HybridConfig(n_layers=n_layers, pattern=cfg.layer_types[:n_layers], **kw)


@st.composite
def hybrid_cases(draw, max_cost=128, max_length=MAX_LENGTH, min_length=1, min_batch=1,
                 max_batch=3, max_layers=MAX_LAYERS, d_models=D_MODELS, max_state=8):
    """A HybridCase with batch * length * n_layers <= max_cost (batch >= min_batch kept)."""
    special = [n for n in SPECIAL_LENGTHS if min_length <= n <= max_length]
    length = draw(st.one_of(st.sampled_from(special), st.integers(min_length, max_length)))
    cfg = draw(configs(max_layers, d_models, max_state))
    batch = draw(st.integers(min_batch, max_batch))
    batch = max(min_batch, min(batch, max_cost // (length * cfg.n_layers)))
    cfg = _fewer_layers(cfg, max(1, max_cost // (length * batch)))
    return HybridCase(config=cfg, weight_seed=draw(seeds()), perturbed=draw(st.booleans()),
                      input_seed=draw(seeds()), scale=2.0 ** draw(st.integers(-2, 3)),
                      batch=batch, length=length, dtype=draw(st.sampled_from(DTYPES)),
                      split=draw(st.integers(1, length - 1)) if length > 1 else 0)


def oracle_cases():
    """Small cases for the multiple-precision oracle (its cost grows with b l times the layers'
    widths, and ~l^3 in Mamba-2's SSD forms)."""
    return hybrid_cases(max_cost=48, max_length=24, max_batch=2, d_models=(2, 4, 6, 8),
                        max_state=4)
