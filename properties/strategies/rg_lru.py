"""Inputs of ``rg_lru`` (CONTRACT.md): x, gate_x, gate_a (b, l, d), a_param (d,) fp32, reset (b, l)
bool or None, h0 (b, d) fp32 or None, return_last_state.

Every case is built by ``rg_lru_case_from_seed`` from a seed, its sizes and its feature flags,
so a drawn example and a long explicit one reproduce as the same generator call.

- a_param: half the channels in RecurrentGemma's initialisation (radius r in [0.9, 0.999], a_param
  = log(expm1(-log r))), half uniform in [-4, 8] (softplus's threshold, 20, is never reached:
  kernels that use torch's thresholded softplus compute the contract's softplus there);
  gate_x, gate_a ~ N(0, 1) or N(0, 16); x, h0 ~ N(0, 1) 2^k, k in -4..4.
- near_one_decay: without it, every non-reset step has |log a| >= L_MIN (1 - a^2 >= 2^-6.4):
  a_param and gate_a are raised just enough (margin 1.25, which covers the rounding of gate_a to
  a half dtype). With it, one to all channels get a_param in [-22, -8]: |log a| from ~1e-10 to
  ~3e-3, where 1 - a^2 cancels in float32 (it is exactly 0 below |log a| ~ 3e-8).
- reset: each (b, t) true with probability 1/8 or 1/2, reset[:, 0] sometimes; without the
  feature, reset is None.
- h0, last_state: drawn on or off.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from ssm_conformance.properties.options import coin, length_cap, pick
from ssm_conformance.properties.strategies.common import lengths, seeds
from ssm_conformance.properties.strategies.long_sequences import (long_lengths, sometimes_long,
                                                                 tensor_cap)

FEATURES = ("reset", "h0", "last_state", "near_one_decay")
L_MIN = 2.0**-7            # |log a| below this is near_one_decay
MARGIN = 1.25
ORACLE_ELEMENTS = 3072     # b l d of the multiple-precision oracle; longer: the long tier
ORACLE_LENGTH = 1100
METAMORPHIC_ELEMENTS = 1 << 16
_MODULE = "ssm_conformance.properties.strategies.rg_lru"


@dataclass
class RGLRUCase:
    x: np.ndarray
    gate_x: np.ndarray
    gate_a: np.ndarray
    a_param: np.ndarray
    reset: np.ndarray | None = None
    h0: np.ndarray | None = None
    return_last_state: bool = False
    features: frozenset = field(default_factory=frozenset)
    cotangent: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    fp32 = ("a_param", "h0")   # fp32 arguments in every dtype (CONTRACT.md)

    def args(self):
        return {"x": self.x, "gate_x": self.gate_x, "gate_a": self.gate_a,
                "a_param": self.a_param, "reset": self.reset, "h0": self.h0,
                "return_last_state": self.return_last_state}

    @property
    def shape(self):
        return self.x.shape

    @property
    def size(self) -> int:
        return self.x.shape[1]

    def replace(self, **kw):
        kw.setdefault("info", dict(self.info))
        return dataclasses.replace(self, **kw)

    def __repr__(self):
        return (f"RGLRUCase(shape={self.x.shape}, features={sorted(self.features)}, "
                f"seed={self.info.get('seed')})")


def _softplus(c):
    return np.logaddexp(c, 0.0)


def _inv_softplus(y):
    return np.log(np.expm1(y))


def _away_from_one(gate_a, a_param):
    """gate_a raised where needed so that |log a| = 8 sigmoid(gate_a) softplus(a_param) >=
    MARGIN L_MIN (a_param >= softplus^-1(MARGIN L_MIN / 2) already)."""
    need = MARGIN * L_MIN / (8.0 * _softplus(a_param))
    return np.maximum(gate_a, np.log(need / (1.0 - need))[None, None, :])


def rg_lru_case_from_seed(seed: int, b: int = 1, l: int = 16, d: int = 2, *, reset=False,
                          h0=False, last_state=False, near_one=False, gate_scale: float = 1.0,
                          x_exp: int = 0) -> RGLRUCase:
    """The RGLRUCase of ``seed`` with these sizes and features (module doc); deterministic: its
    reproduction is this call."""
    b, l, d = int(b), int(l), int(d)
    rng = np.random.default_rng(seed)
    shape = (b, l, d)
    x = rng.standard_normal(shape) * 2.0**x_exp
    gate_x = rng.standard_normal(shape) * gate_scale
    gate_a = rng.standard_normal(shape) * gate_scale
    radius = rng.uniform(0.9, 0.999, size=d)
    a_param = np.where(rng.random(d) < 0.5, _inv_softplus(-np.log(radius)),
                       rng.uniform(-4.0, 8.0, size=d))
    resets = None
    if reset:
        resets = rng.random((b, l)) < rng.choice([0.125, 0.5])
        resets[:, 0] |= rng.random(b) < 0.5
    if near_one:
        chosen = rng.random(d) < rng.uniform(0.3, 1.0)
        chosen[rng.integers(d)] = True
        a_param = np.where(chosen, rng.uniform(-22.0, -8.0, size=d), a_param)
    else:
        a_param = np.maximum(a_param, _inv_softplus(MARGIN * L_MIN / 2.0))  # 8 softplus >= 4 M L
    a_param = a_param.astype(np.float32).astype(np.float64)   # an fp32 weight
    if not near_one:
        gate_a = _away_from_one(gate_a, a_param)
    h0_arr = (rng.standard_normal((b, d)) * 2.0**x_exp).astype(np.float32).astype(np.float64) \
        if h0 else None
    features = {name for name, on in (("reset", reset), ("h0", h0), ("last_state", last_state),
                                      ("near_one_decay", near_one)) if on}
    case = RGLRUCase(x=x, gate_x=gate_x, gate_a=gate_a, a_param=a_param, reset=resets, h0=h0_arr,
                     return_last_state=bool(last_state), features=frozenset(features),
                     cotangent=rng.standard_normal(shape), info={"seed": seed})
    case.rebuild = (_MODULE, "rg_lru_case_from_seed(" + ", ".join(
        [f"seed={seed}", f"b={b}", f"l={l}", f"d={d}", f"reset={bool(reset)}", f"h0={bool(h0)}",
         f"last_state={bool(last_state)}", f"near_one={bool(near_one)}",
         f"gate_scale={gate_scale!r}", f"x_exp={x_exp}"]) + ")")
    return case


def _feature(draw, name: str) -> bool:
    """Whether this example exercises ``name``: forced on (--ssm-with), left out (--ssm-without),
    else drawn (options.coin)."""
    return coin(draw, name)


@st.composite
def rg_lru_cases(draw, max_elements=ORACLE_ELEMENTS, max_length=1024, min_length=1, min_batch=1,
                 last_state=None, long=False):
    """Cases of the multiple-precision oracle's size (b l d <= max_elements), or with ``long``
    one long sequence (l log-uniform up to 2^17, b d <= 4, within the profile's tensor cap)."""
    if long:
        l = draw(long_lengths(ORACLE_LENGTH + 1))
        b, d = draw(st.sampled_from([(1, 1), (1, 2), (2, 1), (2, 2), (1, 4)]))
        while b * d > 1 and b * d * l > tensor_cap():
            b, d = (1, d // 2) if d > 1 else (b // 2, d)
    else:
        l = draw(lengths(max_length).filter(lambda n: n >= min_length)) if min_length > 1 \
            else draw(lengths(max_length))
        b = draw(st.integers(min_batch, max(min_batch, 3)))
        d = draw(st.sampled_from([1, 2, 3, 4, 8, 16]))
        while d > 1 and b * l * d > max_elements:
            d //= 2
        l = max(min_length, min(l, max_elements // (b * d)))
    flags = {name: _feature(draw, name) for name in ("reset", "h0", "near_one_decay")}
    ls = _feature(draw, "last_state") if last_state is None else last_state
    return rg_lru_case_from_seed(draw(seeds()), b, length_cap(l), d, reset=flags["reset"],
                                 h0=flags["h0"], last_state=ls, near_one=flags["near_one_decay"],
                                 gate_scale=draw(st.sampled_from([1.0, 4.0])),
                                 x_exp=draw(st.integers(-4, 4)))


def oracle_or_long_cases(**kw):
    """Mostly oracle-sized cases, one in 16 long (each costs the subject l steps, twice)."""
    return sometimes_long(rg_lru_cases(**kw), rg_lru_cases(long=True, **kw))


def explicit_rg_lru(lengths_):
    """Explicit long cases (every profile) of the given lengths: tiny b, d; the features in turn
    (each as --ssm-without / --ssm-with allow: options.pick)."""
    cases = []
    for i, l in enumerate(lengths_):
        b, d = [(1, 1), (1, 2), (2, 1), (1, 3)][i % 4]
        cases.append(dict(seed=2600 + i, b=b, l=length_cap(l), d=d,
                          reset=pick("reset", i % 2 == 0),
                          h0=pick("h0", i % 3 != 1),
                          last_state=pick("last_state", i % 2 == 1),
                          near_one=pick("near_one_decay", i % 3 == 2),
                          gate_scale=(1.0, 4.0)[i % 2], x_exp=(i % 5) - 2))
    return cases


@st.composite
def split_cases(draw, cases):
    """(case, t) with 1 <= t < l: a split point."""
    case = draw(cases)
    return case, draw(st.integers(1, case.size - 1))


def time_slice(case: RGLRUCase, start: int, stop: int, h0=None) -> RGLRUCase:
    """Steps start..stop-1 of ``case`` as a case of its own, starting from ``h0`` (or the case's
    h0 when start = 0 and h0 is None)."""
    sl = lambda z: None if z is None else z[:, start:stop].copy()  # noqa: E731
    features = set(case.features) | ({"h0"} if h0 is not None else set())
    return case.replace(x=sl(case.x), gate_x=sl(case.gate_x), gate_a=sl(case.gate_a),
                        reset=sl(case.reset), h0=h0 if h0 is not None or start else case.h0,
                        cotangent=sl(case.cotangent), features=frozenset(features))


def redraw_after(case: RGLRUCase, t: int, seed: int) -> RGLRUCase:
    """``case`` with x, gate_x, gate_a, reset at steps >= t redrawn (same kinds of values)."""
    other = rg_lru_case_from_seed(seed, *case.shape, reset=case.reset is not None,
                                  h0=False, near_one="near_one_decay" in case.features)
    mix = lambda p, q: None if p is None else np.concatenate([p[:, :t], q[:, t:]], axis=1)  # noqa
    later = other.gate_a if "near_one_decay" in case.features else \
        _away_from_one(other.gate_a, case.a_param)
    gate_a = mix(case.gate_a, later)
    return case.replace(x=mix(case.x, other.x), gate_x=mix(case.gate_x, other.gate_x),
                        gate_a=gate_a, reset=mix(case.reset, other.reset))


LAYOUTS = ("reversed", "time_outermost")


def strided(t, layout: str):
    """The same values in a dense non-contiguous layout: axes stored in reverse order
    ("reversed") or time (axis 1) outermost ("time_outermost": (b, l, d) stored as (l, b, d)).
    Tensors with fewer than two axes stay as they are."""
    import torch
    if not isinstance(t, torch.Tensor) or t.dim() < 2:
        return t
    k = t.dim()
    perm = tuple(reversed(range(k))) if layout == "reversed" else (1, 0) + tuple(range(2, k))
    inverse = tuple(int(i) for i in np.argsort(perm))
    return t.permute(perm).contiguous().permute(inverse)
