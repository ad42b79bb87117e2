"""Sequences for the convolution roles: u and K of one length L = 1..512 (odd, prime, powers of
two and their neighbours), with kernels that decay (as an SSM kernel does), that do not decay,
that oscillate, that are a single spike, or integer-valued; scales over many binades."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from ssm_conformance.properties.strategies.common import lengths, seeds

KERNEL_KINDS = ("decaying", "nondecaying", "oscillating", "spike", "integer", "random")


@dataclass
class ConvCase:
    u: np.ndarray
    K: np.ndarray
    kernel_kind: str
    features: frozenset = field(default_factory=frozenset)

    def args(self):
        return {"u": self.u, "K": self.K}

    @property
    def size(self) -> int:
        return self.u.shape[0]

    def __repr__(self):
        return f"ConvCase(L={self.u.shape[0]}, kernel_kind={self.kernel_kind!r})"


def _kernel(kind: str, L: int, rng: np.random.Generator) -> np.ndarray:
    k = np.arange(L)
    if kind == "decaying":
        rate = rng.uniform(0.001, 0.5)
        return rng.standard_normal() * np.exp(-rate * k) * np.cos(rng.uniform(0, np.pi) * k)
    if kind == "nondecaying":
        return rng.choice([-1.0, 1.0]) * (1.0 + 0.1 * rng.standard_normal(L))
    if kind == "oscillating":
        return np.cos(rng.uniform(0, np.pi) * k + rng.uniform(0, 2 * np.pi))
    if kind == "spike":
        K = np.zeros(L)
        K[rng.integers(0, L)] = rng.standard_normal()
        return K
    if kind == "integer":
        return rng.integers(-5, 6, size=L).astype(float)
    return rng.standard_normal(L)


@st.composite
def conv_cases(draw, max_length: int = 512):
    L = draw(lengths(max_length))
    kind = draw(st.sampled_from(KERNEL_KINDS))
    rng = np.random.default_rng(draw(seeds()))
    K = _kernel(kind, L, rng) * 2.0 ** draw(st.integers(-30, 30))
    u_kind = draw(st.sampled_from(["normal", "integer", "positive"]))
    if u_kind == "normal":
        u = rng.standard_normal(L)
    elif u_kind == "integer":
        u = rng.integers(-8, 9, size=L).astype(float)
    else:
        u = rng.uniform(0.0, 1.0, size=L)
    u = u * 2.0 ** draw(st.integers(-30, 30))
    return ConvCase(u=u, K=K, kernel_kind=kind)
