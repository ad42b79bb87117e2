"""Inputs of ``attention``: q (b,h,l,e), k, v (b,h,s,e).

Head dims e in {1, 2, 3, 4, 5, 8, 16, 32, 64}; query lengths l and key lengths s from 1, often
different (the causal mask is top-left aligned then, as torch's), keys up to s = 1024 with few
queries (the oracle costs ~1 s per 10^6 multiply-adds of b h l s e, so b h l s e <= 2^17);
score regimes: ordinary (|S| ~ 1), extreme (|S| up to 1e4, where exp overflows without the max
subtraction: float32 overflows above 88.7), one key dominating (saturated softmax) and all scores
equal (uniform softmax); ``causal`` and a custom ``scale`` (including negative and tiny) drawn on
and off unless removed by --ssm-without."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import assume, strategies as st

from properties.options import enabled
from properties.strategies.common import lengths, seeds

REGIMES = ("ordinary", "extreme", "dominant", "equal")
BUDGET = 2**17


@dataclass
class AttentionCase:
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    is_causal: bool
    scale: float | None
    regime: str
    features: frozenset = field(default_factory=frozenset)

    def args(self):
        return {"q": self.q, "k": self.k, "v": self.v, "is_causal": self.is_causal,
                "scale": self.scale}

    @property
    def size(self) -> int:
        return self.k.shape[-2]

    def __repr__(self):
        return (f"AttentionCase(q={self.q.shape}, k={self.k.shape}, is_causal={self.is_causal}, "
                f"scale={self.scale}, regime={self.regime!r})")


@st.composite
def attention_cases(draw):
    b, h = draw(st.sampled_from([(1, 1), (1, 2), (2, 1), (2, 3)]))
    e = draw(st.sampled_from([1, 2, 3, 4, 5, 8, 16, 32, 64]))
    s = draw(lengths(1024))
    l = draw(st.one_of(st.just(s), lengths(64)))
    assume(b * h * l * s * e <= BUDGET)
    rng = np.random.default_rng(draw(seeds()))
    regime = draw(st.sampled_from(REGIMES))
    q = rng.standard_normal((b, h, l, e))
    k = rng.standard_normal((b, h, s, e))
    v = rng.standard_normal((b, h, s, e)) * 2.0 ** draw(st.integers(-6, 6))
    features = set()
    is_causal = enabled("causal") and draw(st.booleans())
    if is_causal:
        features.add("causal")
    scale = None
    if enabled("scale") and draw(st.booleans()):
        scale = draw(st.sampled_from([1.0 / e, 0.3, 1.0, 2.0, -0.5, 1e-3]))
        features.add("scale")
    eff_scale = abs(scale) if scale is not None else 1.0 / np.sqrt(e)
    if regime == "extreme":  # scores up to ~1e4 in magnitude
        target = 10.0 ** draw(st.floats(2.0, 4.0))
        typical = eff_scale * np.sqrt(e)
        grow = np.sqrt(target / max(typical, 1e-12))
        q, k = q * grow, k * grow
    elif regime == "dominant":  # one key far above the rest
        j = int(rng.integers(0, s))
        k[..., j, :] = 30.0 * np.sign(q.mean(axis=-2, keepdims=True)[..., 0, :]) / max(
            eff_scale * e, 1e-12)
    elif regime == "equal":  # identical keys: the softmax is uniform
        k[...] = k[..., :1, :]
    return AttentionCase(q=q, k=k, v=v, is_causal=is_causal, scale=scale, regime=regime,
                         features=frozenset(features))
