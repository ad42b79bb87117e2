"""Lengths of the long sequences (issue 11) for linear_scan, selective_scan and
selective_state_update: explicit lengths every profile judges, and drawn ones up to 2^17."""
from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st

from ssm_conformance.properties.options import length_cap

MAX_LONG_LENGTH = 1 << 17
# 2^k - 1, 2^k, 2^k + 1 for k = 11..17, and one past a multiple of the chunk sizes kernels use
# (64, 128, 256: Triton and CUDA chunks; 2048: mamba-ssm's selective-scan chunk; 4096)
POWER_LENGTHS = tuple(2**k + e for k in range(11, 18) for e in (-1, 0, 1))
CHUNK_LENGTHS = (7 * 64 + 1, 9 * 128 + 1, 5 * 256 + 1, 3 * 2048 + 1, 5 * 4096 + 1)
EXPLICIT_LENGTHS = CHUNK_LENGTHS + POWER_LENGTHS
# Each subject call costs l sequential steps twice (the harness checks determinism), so a role's
# two oracle properties share the explicit lengths: matches_oracle judges the chunk lengths and
# 2^k +- 1 for odd k (11, 13, 15, 17), vjp_matches_oracle those of even k (12, 14, 16) and
# 3 * 2048 + 1. Together: every explicit length, each profile, >= 2^16 in both.
FORWARD_LENGTHS = CHUNK_LENGTHS + tuple(2**k + e for k in (11, 13, 15, 17) for e in (-1, 0, 1))
BACKWARD_LENGTHS = (3 * 2048 + 1,) + tuple(2**k + e for k in (12, 14, 16) for e in (-1, 0, 1))
# selective_state_update: a decode sequence of l steps is l subject calls, made in one worker
# thread as a model's decode loop makes them (properties/test_state_update.py, ~0.1 ms a step for
# our torch kernel here), so decode_equals_scan judges one past the chunk sizes 64, 128, 256, 2048
# and 4096, and 2^16 + 1 steps, in every profile; thorough adds 2^17 + 1.


def decode_lengths():
    """The explicit decode lengths of the current profile."""
    return (7 * 64 + 1, 9 * 128 + 1, 5 * 256 + 1, 2049, 4097, 2**16 + 1) + \
        ((2**17 + 1,) if long_profile() else ())


def long_profile() -> bool:
    """Whether the run is the ``thorough`` profile (it goes to 2^20 elements per tensor)."""
    return getattr(settings, "_current_profile", None) == "thorough"


def long_lengths(min_length: int, max_length: int = MAX_LONG_LENGTH):
    """Lengths min_length..max_length, log-uniform (every octave as likely), capped by
    --ssm-max-length."""
    return st.integers(min_length.bit_length() - 1, max_length.bit_length() - 1).flatmap(
        lambda k: st.integers(max(min_length, 2**k), min(max_length, 2**(k + 1) - 1))
    ).map(length_cap)


def call_source(name, **kwargs) -> str:
    """``name(k=v, ...)`` as Python source: a generator call printed as a reproduction."""
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


class LazyCase:
    """An explicit case built on first use by ``factory(**kwargs)`` (importing the properties stays
    cheap); attributes are the built case's."""

    def __init__(self, factory, kwargs):
        self._factory, self._kwargs, self._case = factory, kwargs, None

    def __getattr__(self, name):
        if name.startswith("__") or name in ("_factory", "_kwargs", "_case"):
            raise AttributeError(name)
        if self.__dict__["_case"] is None:
            self.__dict__["_case"] = self.__dict__["_factory"](**self.__dict__["_kwargs"])
        return getattr(self.__dict__["_case"], name)

    def __repr__(self):
        return call_source(self._factory.__name__, **self._kwargs)


def with_explicit(factory, cases, arg="case"):
    """Decorator: the test judges ``factory(**kw)`` for each kw in ``cases`` first (Hypothesis's
    explicit phase: every profile)."""
    from hypothesis import example

    def decorate(test):
        for kw in reversed(cases):
            test = example(**{arg: LazyCase(factory, kw)})(test)
        return test
    return decorate


LONG_ONE_IN = 16   # one drawn example in 16 is long (the rest: the multiple-precision oracle's)
LONG_TENSOR = 1 << 17   # elements of a drawn long tensor (thorough: THOROUGH_TENSOR)
THOROUGH_TENSOR = 1 << 20


def tensor_cap(ci_cap: int = LONG_TENSOR) -> int:
    """Elements per tensor of a drawn long example in the current profile (``ci_cap`` outside
    ``thorough``)."""
    return THOROUGH_TENSOR if long_profile() else ci_cap


def sometimes_long(short, long, one_in: int = LONG_ONE_IN):
    """Drawn examples: one in ``one_in`` from ``long``, the others from ``short``."""
    return st.integers(1, one_in).flatmap(lambda i: long if i == one_in else short)
