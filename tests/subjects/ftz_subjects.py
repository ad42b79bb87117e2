"""Kernels that flush subnormal numbers to zero (FTZ hardware modes, JAX on CPU), for
tests/test_flush_to_zero.py: they must conform (CONTRACT.md admits an absolute error up to the
dtype's smallest normal number); ``*_beyond_tiny`` must not."""
from __future__ import annotations

import numpy as np
import torch

from ssm_conformance.implementations.numpy.s4 import ssm_kernel as _ssm_kernel

TINY64 = np.finfo(np.float64).tiny


def _flush(x, tiny):
    return np.where(np.abs(x) < tiny, 0.0, x)


def ssm_kernel_ftz(Ad, Bd, C, L):
    """Our NumPy ssm_kernel with its subnormal results flushed to zero."""
    return _flush(_ssm_kernel(Ad, Bd, C, L), TINY64)


def ssm_kernel_beyond_tiny(Ad, Bd, C, L):
    """Wrong: results below 2^30 tiny set to zero (errors up to 2^30 tiny on normal numbers,
    which an accurate kernel computes to 16 digits)."""
    return _flush(_ssm_kernel(Ad, Bd, C, L), 2.0**30 * TINY64)


def linear_scan_ftz(a, b):
    """h_t = a_t h_{t-1} + b_t step by step in the input's dtype, every state below the dtype's
    smallest normal flushed to zero before it is carried on (a recurrence in FTZ mode)."""
    tiny = torch.finfo(a.dtype).tiny
    h = torch.zeros_like(b[..., 0])
    out = torch.empty_like(b)
    for t in range(b.shape[-1]):
        h = a[..., t] * h + b[..., t]
        h = torch.where(h.abs() < tiny, torch.zeros_like(h), h)
        out[..., t] = h
    return out
