"""Subjects for the per-call limit's warm-up rule (properties/subjects.py, tests/test_warmup.py)."""
from __future__ import annotations

import time

import numpy as np

COMPILE_S = 1.0  # the "compilation" of a new shape: 2.5 x the 0.4 s limit of the test
_compiled: set = set()


def causal_conv_jit_per_shape(u, K):
    """Correct, compiled per shape as JAX's jit does: the first call with each new length takes
    COMPILE_S, later calls are fast. Not a hang."""
    if u.shape not in _compiled:
        time.sleep(COMPILE_S)
        _compiled.add(u.shape)
    return np.convolve(u, K)[: len(u)]


def causal_conv_hangs_on_odd_lengths(u, K):
    """Hangs (an hour) when the length is odd and >= 3: the reproduction must be such an input,
    not the smallest input Hypothesis tries afterwards (L = 1 does not hang)."""
    if len(u) >= 3 and len(u) % 2 == 1:
        time.sleep(3600)
    return np.convolve(u, K)[: len(u)]
