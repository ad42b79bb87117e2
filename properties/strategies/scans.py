"""Inputs of ``linear_scan``: a, b of shape (..., l), l = 1..1024 (odd, prime, powers of two and
their neighbours), 0 to 2 leading axes; decay factors a of several kinds -- uniform in (-1, 1),
close to 1 (1 - 10^-k: long memory, where a scan's rounding errors accumulate), exactly 0 or 1,
and exp(-dt*lambda) as a selective scan makes them; b scaled by 2^-8..2^8 (examples that overflow a half dtype are discarded); complex a
and b (feature ``complex``) unless removed by --ssm-without.

Named classes of a (issue 19; beyond CONTRACT.md): ``zero_decay``, some a_t exactly 0 (the state
is reset: a log-space scan takes log 0), and ``negative_decay``, some real a_t < 0 (a log-space
scan of real a takes the log of a negative number; complex a has no sign and never has it).
Left out (--ssm-without), no a_t is 0 / negative; forced (--ssm-with), every example has one."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from ssm_conformance.properties.options import coin, enabled, forced, length_cap
from ssm_conformance.properties.strategies.common import lengths, seeds
from ssm_conformance.properties.strategies.long_sequences import (long_lengths, long_profile,
                                                                 with_explicit)

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

    @property
    def length(self) -> int:
        return self.a.shape[-1]

    def __repr__(self):
        return f"ScanCase(shape={self.a.shape}, a_kind={self.a_kind!r}, complex={np.iscomplexobj(self.a)})"


def _decay(kind: str, shape, rng: np.random.Generator, zero=None, negative=None) -> np.ndarray:
    """Real decay factors of ``kind``. ``zero`` / ``negative``: None, as the kind draws them;
    False, none exactly 0 / negative; True, at least one (an eighth of the entries, at least
    one, set to 0 / negated)."""
    if kind == "uniform":
        a = rng.uniform(-1.0, 1.0, size=shape)
    elif kind == "near_one":
        a = 1.0 - 10.0 ** -rng.uniform(1, 6, size=shape)
    elif kind == "zeros_and_ones":
        a = rng.choice([0.0, 1.0, -1.0, 0.5], size=shape)
    else:
        dt = 10.0 ** rng.uniform(-3, 0.5, size=shape)  # Delta as softplus produces it
        a = np.exp(-dt * 10.0 ** rng.uniform(-2, 1, size=shape))
    if negative is False:
        a = np.abs(a)
    if zero is False:
        a = np.where(a == 0, 0.5, a)
    if zero:
        a = np.where(_some(shape, rng), 0.0, a)
    if negative:  # negate some nonzero entries (a forced zero_decay keeps its zeros)
        mask = _some(shape, rng) & (a != 0)
        nonzero = np.flatnonzero(a)
        mask.flat[nonzero[rng.integers(nonzero.size)] if nonzero.size
                  else rng.integers(mask.size)] = True
        a = np.where(mask, np.where(a == 0, -0.5, -np.abs(a)), a)
    return a


def _some(shape, rng) -> np.ndarray:
    """A mask of about an eighth of the entries, at least one."""
    mask = rng.random(shape) < 0.125
    mask.flat[rng.integers(mask.size)] = True
    return mask


def decay_flags():
    """(zero, negative) arguments of ``_decay`` from --ssm-without / --ssm-with (a forced
    negative_decay draws real a only: the callers draw no complex then)."""
    zero = True if forced("zero_decay") else (None if enabled("zero_decay") else False)
    negative = True if forced("negative_decay") else \
        (None if enabled("negative_decay") else False)
    return zero, negative


def _complex_coin(draw) -> bool:
    return not forced("negative_decay") and coin(draw, "complex")


def decay_features(a: np.ndarray) -> set:
    """The named classes ``a`` falls in."""
    out = set()
    if np.any(a == 0):
        out.add("zero_decay")
    if not np.iscomplexobj(a) and np.any(a < 0):
        out.add("negative_decay")
    return out


@st.composite
def scan_cases(draw, max_length: int = 1024):
    length = draw(lengths(max_length))
    if forced("zero_decay") and forced("negative_decay"):
        length = max(length, 2)   # room for a zero and a negative a_t
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 2)]))
    shape = (*lead, length)
    rng = np.random.default_rng(draw(seeds()))
    kind = draw(st.sampled_from(A_KINDS))
    a = _decay(kind, shape, rng, *decay_flags())
    b = rng.standard_normal(shape) * 2.0 ** draw(st.integers(-8, 8))  # within half range
    features = set()
    if _complex_coin(draw):
        a = a * np.exp(1j * rng.uniform(-np.pi, np.pi, size=shape))
        b = b + 1j * rng.standard_normal(shape) * np.abs(b).max()
        features.add("complex")
    features |= decay_features(a)
    cotangent = rng.standard_normal(shape) + (1j * rng.standard_normal(shape)
                                              if np.iscomplexobj(a) else 0)
    return ScanCase(a=a, b=b, a_kind=kind, features=frozenset(features), cotangent=cotangent)


# ----------------------------------------------------------------------------------------------
# long sequences (issue 11): judged against the long tier (oracle/long_scan.py) beyond
# ORACLE_LENGTH; built by a public function of a seed, so a failure prints that call.

ORACLE_LENGTH = 1024   # the multiple-precision oracle up to here, the long tier beyond


def scan_case_from_seed(seed: int, shape: tuple, a_kind: str = "near_one", complex: bool = False,
                        b_exp: int = 0, zero=None, negative=None) -> ScanCase:
    """The ScanCase of ``seed``: a (decay kind ``a_kind``; ``zero``, ``negative`` as in
    ``_decay``), b ~ N(0, 1) 2^b_exp, complex a and b when ``complex``, a cotangent;
    deterministic (its reproduction is this call)."""
    shape = tuple(int(x) for x in shape)
    rng = np.random.default_rng(seed)
    a = _decay(a_kind, shape, rng, zero, negative)
    b = rng.standard_normal(shape) * 2.0 ** b_exp
    features = set()
    if complex:
        a = a * np.exp(1j * rng.uniform(-np.pi, np.pi, size=shape))
        b = b + 1j * rng.standard_normal(shape) * np.abs(b).max()
        features.add("complex")
    features |= decay_features(a)
    cotangent = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if complex else 0)
    case = ScanCase(a=a, b=b, a_kind=a_kind, features=frozenset(features), cotangent=cotangent)
    flags = "".join(f", {k}={v}" for k, v in (("zero", zero), ("negative", negative))
                    if v is not None)
    case.rebuild = ("ssm_conformance.properties.strategies.scans",
                    f"scan_case_from_seed(seed={seed}, shape={shape}, a_kind={a_kind!r}, "
                    f"complex={complex}, b_exp={b_exp}{flags})")
    return case


def _long_explicit(lengths):
    """Explicit long cases (every profile) of the given lengths (strategies/long_sequences.py:
    2^k - 1, 2^k, 2^k + 1 for k = 11..17 and one past multiples of the chunk sizes 64, 128, 256,
    2048, 4096); tiny leading axes, the decay kinds and complex in turn."""
    cases = []
    for i, l in enumerate(lengths):
        lead = [(), (1,), (2,), (1, 2)][i % 4]
        kind = A_KINDS[i % len(A_KINDS)]
        cplx = not forced("negative_decay") and (forced("complex")
                                                 or (enabled("complex") and i % 3 == 2))
        zero, negative = decay_flags()
        cases.append(dict(seed=1100 + i, shape=(*lead, length_cap(l)), a_kind=kind,
                          complex=cplx, b_exp=(i % 5) - 2, zero=zero, negative=negative))
    return cases


def with_long_cases(lengths):
    """Decorator: the test judges the explicit long cases of ``lengths`` first (every profile)."""
    return with_explicit(scan_case_from_seed, _long_explicit(lengths))


@st.composite
def long_scan_cases(draw):
    """A long sequence: l log-uniform up to 2^17 (thorough: up to 2^20 elements per tensor),
    one to a few rows."""
    l = draw(long_lengths(ORACLE_LENGTH + 1))
    cap = (1 << 20) if long_profile() else (1 << 17)
    lead = draw(st.sampled_from([(), (1,), (2,), (3,), (2, 2)]))
    while lead and int(np.prod(lead)) * l > cap:
        lead = lead[1:] if len(lead) > 1 else ()
    return scan_case_from_seed(draw(seeds()), (*lead, l), draw(st.sampled_from(A_KINDS)),
                               _complex_coin(draw), draw(st.integers(-8, 8)), *decay_flags())
