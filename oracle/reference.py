"""What an oracle returns: a value, its own error bound, and magnitudes for the tolerance model."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class OracleError(RuntimeError):
    """The oracle could not certify its own result (precision doubling did not converge)."""


@dataclass(frozen=True)
class Reference:
    """One oracle output.

    value      -- the high-precision result rounded once to float64 / complex128.
    error      -- elementwise bound on |high-precision result - exact result| (from precision
                  doubling; zero for exact rational arithmetic). Rounding ``value`` to float64 is
                  *not* included: the tolerance model adds half an ulp of float64 for that.
    magnitudes -- named nonnegative arrays (broadcastable to ``value``) or scalars that a forward
                  error bound of an accurate algorithm scales with, e.g. ``sum_k |K_k||u_{t-k}|``
                  for a convolution. Their meaning is documented by the oracle that fills them and
                  consumed by ``properties/tolerance.py``.
    """

    value: np.ndarray
    error: np.ndarray | float = 0.0
    magnitudes: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "value", np.asarray(self.value))
        object.__setattr__(self, "error", np.asarray(self.error, dtype=np.float64))
