"""Inputs of ``attention``: q (b,h,l,e), k, v (b,h,s,e).

Head dims e in {1, 2, 3, 4, 5, 8, 16, 32, 64}; query lengths l and key lengths s from 1, often
different (the causal mask is top-left aligned then, as torch's), keys up to s = 1024 with few
queries (the oracle costs ~1 s per 10^6 multiply-adds of b h l s e, so b h l s e <= 2^17);
score regimes: ordinary (|S| ~ 1), extreme (|S| up to 1e4, where exp overflows without the max
subtraction: float32 overflows above 88.7), one key dominating (saturated softmax) and all scores
equal (uniform softmax); ``causal`` and a custom ``scale`` (including negative, tiny and zero:
scale 0 makes every score 0 and the softmax uniform) drawn on and off unless removed by
--ssm-without.  Each case carries a cotangent (b,h,l,e) for the backward; ``budget`` bounds
b h l s e (the backward oracle costs about three times the forward's)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import assume, example, strategies as st

from ssm_conformance.properties.options import coin, enabled, forced, pick
from ssm_conformance.properties.strategies.common import lengths, seeds

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
    cotangent: np.ndarray | None = None
    rebuild: tuple | None = None  # (module, generator call) of a long case (harness.describe)

    @property
    def length(self) -> int:
        return self.k.shape[-2]

    def args(self):
        return {"q": self.q, "k": self.k, "v": self.v, "is_causal": self.is_causal,
                "scale": self.scale}

    @property
    def size(self) -> int:
        return self.k.shape[-2]

    def __repr__(self):
        return (f"AttentionCase(q={self.q.shape}, k={self.k.shape}, is_causal={self.is_causal}, "
                f"scale={self.scale}, regime={self.regime!r})")


SCALES = ("1/e", 0.3, 1.0, 2.0, -0.5, 1e-3, 0.0)


def make_case(shape, is_causal, scale, regime, seed, v_exp=0, cot_exp=0, extreme_log10=3.0):
    """The case of one draw: shape (b, h, l, s, e), q, k, v, cotangent standard normal from
    ``seed`` (v times 2^v_exp, cotangent times 2^cot_exp), then shaped by the score regime."""
    b, h, l, s, e = shape
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((b, h, l, e))
    k = rng.standard_normal((b, h, s, e))
    v = rng.standard_normal((b, h, s, e)) * 2.0**v_exp
    eff_scale = abs(scale) if scale is not None else 1.0 / np.sqrt(e)
    if eff_scale == 0.0:  # every score is 0 whatever q and k: no regime to make
        regime = "equal"
    elif regime == "extreme":  # scores up to ~10^extreme_log10 in magnitude
        typical = eff_scale * np.sqrt(e)
        grow = np.sqrt(10.0**extreme_log10 / typical)
        q, k = q * grow, k * grow
    elif regime == "dominant":  # one key far above the rest
        j = int(rng.integers(0, s))
        k[..., j, :] = 30.0 * np.sign(q.mean(axis=-2, keepdims=True)[..., 0, :]) / (eff_scale * e)
    elif regime == "equal":  # identical keys: the softmax is uniform
        k[...] = k[..., :1, :]
    features = ({"causal"} if is_causal else set()) | ({"scale"} if scale is not None else set())
    cotangent = rng.standard_normal((b, h, l, e)) * 2.0**cot_exp
    return AttentionCase(q=q, k=k, v=v, is_causal=is_causal, scale=scale, regime=regime,
                         features=frozenset(features), cotangent=cotangent)


# Cases every profile runs first (Hypothesis's explicit phase), for interactions of input classes
# that random generation may leave out of 100 examples: causal with a negative and a zero scale
# (torch's default CPU SDPA returns NaN there), a top-left mask with l < s and l > s at large
# logits, and 1024 keys with one dominant.  ``explicit_cases()`` leaves out those that use a
# feature removed by --ssm-without.
EXPLICIT = (
    dict(shape=(1, 2, 5, 7, 4), is_causal=True, scale=-0.5, regime="ordinary", seed=1),
    dict(shape=(2, 1, 6, 6, 8), is_causal=True, scale=0.0, regime="ordinary", seed=2),
    dict(shape=(1, 1, 3, 9, 8), is_causal=True, scale=None, regime="extreme", seed=3, v_exp=3),
    dict(shape=(1, 1, 9, 4, 5), is_causal=True, scale=2.0, regime="extreme", seed=4, extreme_log10=4.0),
    dict(shape=(1, 1, 2, 1024, 16), is_causal=False, scale=None, regime="dominant", seed=5, cot_exp=-3),
)


# Long key axes (issue 11): 2^k - 1, 2^k, 2^k + 1 keys (k = 11..14) and one past multiples of
# kernels' tile sizes; few queries; judged against the long tier (oracle/long_attention.py).
LONG_KEYS = tuple(v for k in range(11, 15) for v in (2**k - 1, 2**k, 2**k + 1)) + (
    7 * 64 + 1, 9 * 128 + 1, 5 * 256 + 1, 3 * 2048 + 1, 3 * 4096 + 1)
LONG_THRESHOLD = 1024  # keys beyond the drawn range: the long tier judges


def _long_scale(i: int):
    """The scale of long case i: None, 0.5, None, 2.0 in turn (0.5 for None where scale is
    forced, None for all where it is left out)."""
    scale = (None, 0.5, None, 2.0)[i % 4]
    if forced("scale") and scale is None:
        return 0.5
    return scale if enabled("scale") else None


def long_cases():
    from ssm_conformance.properties.options import length_cap
    cases = []
    for i, s in enumerate(LONG_KEYS):
        kw = dict(shape=(1, 1 + i % 2, 2 + i % 3, length_cap(s), (4, 8, 16)[i % 3]),
                  is_causal=pick("causal", i % 3 == 1),
                  scale=_long_scale(i),
                  regime=("ordinary", "dominant", "extreme", "ordinary")[i % 4], seed=3000 + i)
        case = make_case(**kw)
        case.rebuild = ("ssm_conformance.properties.strategies.attention",
                        "make_case(" + ", ".join(f"{k}={v!r}" for k, v in kw.items()) + ")")
        cases.append(case)
    return cases


def explicit_cases():
    cases = [make_case(**kw) for kw in EXPLICIT]
    return [c for c in cases if all(enabled(f) for f in c.features)]


def with_long_cases(test):
    """Decorator: ``test`` also runs ``long_cases()`` first (every profile)."""
    for case in reversed([c for c in long_cases() if all(enabled(f) for f in c.features)]):
        test = example(case=case)(test)
    return test


def with_explicit_cases(test):
    """Decorator: ``test`` runs ``explicit_cases()`` before the drawn ones (every profile)."""
    for case in reversed(explicit_cases()):
        test = example(case=case)(test)
    return test


@st.composite
def attention_cases(draw, budget=BUDGET, causal_only=False):
    """``causal_only``: causal cases with at least two keys, drawn as such (the causal property
    filtered half of all draws and tripped Hypothesis's filter_too_much health check)."""
    b, h = draw(st.sampled_from([(1, 1), (1, 2), (2, 1), (2, 3)]))
    e = draw(st.sampled_from([1, 2, 3, 4, 5, 8, 16, 32, 64]))
    s = draw(lengths(1024))
    s = max(2, s) if causal_only else s
    l = draw(st.one_of(st.just(s), lengths(64)))
    assume(b * h * l * s * e <= budget)
    seed = draw(seeds())
    regime = draw(st.sampled_from(REGIMES))
    v_exp = draw(st.integers(-6, 6))
    is_causal = forced("causal") or (enabled("causal") and (causal_only or draw(st.booleans())))
    scale = None
    if coin(draw, "scale"):
        scale = draw(st.sampled_from(SCALES))
        scale = 1.0 / e if scale == "1/e" else scale
    return make_case((b, h, l, s, e), is_causal, scale, regime, seed, v_exp=v_exp,
                     cot_exp=draw(st.integers(-4, 4)),
                     extreme_log10=draw(st.floats(2.0, 4.0)) if regime == "extreme" else 3.0)


@st.composite
def drawn_long_attention_cases(draw):
    """Drawn long key axes for the long tier: s log-uniform LONG_THRESHOLD + 1 .. 2^14 keys, 1..8
    queries, k and v (b, h, s, e) at most 2^17 elements each (thorough: 2^20); causal, scale,
    regime drawn; built by make_case (its call is the reproduction)."""
    from ssm_conformance.properties.strategies.long_sequences import long_lengths, tensor_cap
    s = draw(long_lengths(LONG_THRESHOLD + 1, 1 << 14))
    room = max(1, tensor_cap() // s)
    e = draw(st.sampled_from([v for v in (1, 2, 4, 8, 16, 32, 64) if v <= room] or [1]))
    h = draw(st.sampled_from([v for v in (1, 2) if v * e <= room] or [1]))
    scale = None
    if coin(draw, "scale"):
        scale = draw(st.sampled_from(SCALES))
        scale = 1.0 / e if scale == "1/e" else scale
    kw = dict(shape=(1, h, draw(st.integers(1, 8)), s, e),
              is_causal=coin(draw, "causal"), scale=scale,
              regime=draw(st.sampled_from(REGIMES)), seed=draw(seeds()))
    case = make_case(**kw)
    case.rebuild = ("ssm_conformance.properties.strategies.attention",
                    "make_case(" + ", ".join(f"{k}={v!r}" for k, v in kw.items()) + ")")
    return case
