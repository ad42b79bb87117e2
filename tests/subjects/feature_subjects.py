"""Kernels that are right except on one named input class (issue 19): each fails the suite by
default and conforms with ``--ssm-without NAME``, or one that requires an optional argument and
conforms with ``--ssm-with NAME`` (tests/test_meta_features.py). Each is our bundled kernel with
one deliberate restriction, as a third-party kernel has it."""
from __future__ import annotations

import torch

from ssm_conformance.implementations.torch import mamba as t_mamba
from ssm_conformance.implementations.torch import scan as t_scan
from ssm_conformance.implementations.torch import ssd as t_ssd


def linear_scan_clamps_negative_decay(a, b):
    """Treats a decay factor as a rate in [0, 1]: real a clamped at 0 (wrong where some a_t < 0,
    the class negative_decay)."""
    if not a.is_complex():
        a = a.clamp(min=0.0)
    return t_scan.linear_scan(a, b)


def linear_scan_zero_means_no_decay(a, b):
    """Reads a_t = 0 as "no decay" (a masked-out factor taken as 1): wrong exactly where some
    a_t = 0, the class zero_decay."""
    return t_scan.linear_scan(torch.where(a == 0, torch.ones_like(a), a), b)


def ssd_pow2_chunks_only(x, dt, A, B, C, chunk_size, *args, **kwargs):
    """Accepts powers of two only as chunk sizes, as Triton kernels such as fla's do: raises on
    the class non_pow2_chunk."""
    if chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of 2, got {chunk_size}")
    return t_ssd.ssd(x, dt, A, B, C, chunk_size, *args, **kwargs)


def state_update_requires_D(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                            dt_softplus=False):
    """Requires the skip weight D (an optional argument of the role): raises without it; judged
    with ``--ssm-with D``."""
    if D is None:
        raise TypeError("D is required")
    return t_mamba.selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
