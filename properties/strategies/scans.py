"""Inputs of ``linear_scan``: a, b of shape (..., l), l = 1..1024 (odd, prime, powers of two and
their neighbours), 0 to 2 leading axes; decay factors a of several kinds -- uniform in (-1, 1),
close to 1 (1 - 10^-k: long memory, where a scan's rounding errors accumulate), exactly 0 or 1,
and exp(-dt*lambda) as a selective scan makes them; b scaled by 2^-8..2^8 (examples that overflow a half dtype are discarded); complex a
and b (feature ``complex``) unless removed by --ssm-without."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from ssm_conformance.properties.options import enabled
from ssm_conformance.properties.strategies.common import lengths, seeds

A_KINDS = ("uniform", "near_one", "zeros_and_ones", "selective")


@dataclass
class ScanCase:
    a: np.ndarray
    b: np.ndarray
    a_kind: str
    features: frozenset = field(default_factory=frozenset)
    cotangent: np.ndarray | None = None

    def args(self):
        return {"a": self.a, "b": self.b}

    @property
    def size(self) -> int:
        return self.a.shape[-1]

    def __repr__(self):
        return f"ScanCase(shape={self.a.shape}, a_kind={self.a_kind!r}, complex={np.iscomplexobj(self.a)})"


def _decay(kind: str, shape, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        return rng.uniform(-1.0, 1.0, size=shape)
    if kind == "near_one":
        return 1.0 - 10.0 ** -rng.uniform(1, 6, size=shape)
    if kind == "zeros_and_ones":
        return rng.choice([0.0, 1.0, -1.0, 0.5], size=shape)
    dt = 10.0 ** rng.uniform(-3, 0.5, size=shape)  # Delta as softplus produces it
    return np.exp(-dt * 10.0 ** rng.uniform(-2, 1, size=shape))


@st.composite
def scan_cases(draw, max_length: int = 1024):
    length = draw(lengths(max_length))
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 2)]))
    shape = (*lead, length)
    rng = np.random.default_rng(draw(seeds()))
    kind = draw(st.sampled_from(A_KINDS))
    a = _decay(kind, shape, rng)
    b = rng.standard_normal(shape) * 2.0 ** draw(st.integers(-8, 8))  # within half range
    features = set()
    if enabled("complex") and draw(st.booleans()):
        a = a * np.exp(1j * rng.uniform(-np.pi, np.pi, size=shape))
        b = b + 1j * rng.standard_normal(shape) * np.abs(b).max()
        features.add("complex")
    cotangent = rng.standard_normal(shape) + (1j * rng.standard_normal(shape)
                                              if np.iscomplexobj(a) else 0)
    return ScanCase(a=a, b=b, a_kind=kind, features=frozenset(features), cotangent=cotangent)
