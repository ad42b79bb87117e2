"""Building blocks shared by the strategies."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

# Sequence lengths the suite always wants in the mix: 1, small, odd, prime, powers of two and
# their neighbours (FFT sizes, chunk boundaries), up to 512.
SPECIAL_LENGTHS = (1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 32, 33, 61, 64, 65, 97, 127, 128, 129,
                   251, 255, 256, 257, 384, 509, 511, 512)


def lengths(max_length: int = 512, special_lengths=SPECIAL_LENGTHS) -> st.SearchStrategy[int]:
    """Lengths 1..max_length, the special ones often; capped by --ssm-max-length."""
    from ssm_conformance.properties.options import length_cap
    special = [n for n in special_lengths if n <= max_length]
    return st.one_of(st.sampled_from(special), st.integers(1, max_length)).map(length_cap)


def log_uniform(lo_exp: int, hi_exp: int) -> st.SearchStrategy[float]:
    """Positive floats spread over decades 10^lo_exp .. 10^hi_exp."""
    return st.builds(lambda e, m: float(m * 10.0**e), st.integers(lo_exp, hi_exp - 1),
                     st.floats(1.0, 10.0, exclude_max=True))


def power_of_two_near(x: float) -> float:
    """The power of two nearest x: scaling by it is exact, so drawn structure (zero rows,
    Jordan blocks, exact singularity) survives."""
    return float(2.0 ** np.round(np.log2(x)))


def seeds() -> st.SearchStrategy[int]:
    return st.integers(0, 2**32 - 1)
