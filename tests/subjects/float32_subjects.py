"""Kernels written in float32, for ``--ssm-numpy-dtype float32`` (tests/test_numpy_dtype.py):
``*_f32`` are accurate float32 kernels and must conform; the others must be rejected, each
docstring says how."""
from __future__ import annotations

import numpy as np


def causal_conv_f32(u, K):
    """Direct summation in float32 (np.convolve keeps the float32 of its inputs)."""
    return np.convolve(u, K)[: len(u)]


def euler_f32(A, B, dt):
    """Ad = I + dt A, Bd = dt B, every operation in float32."""
    dt = np.float32(dt)
    return np.eye(A.shape[0], dtype=np.float32) + dt * A, dt * B


def causal_conv_f16_accumulation(u, K):
    """Wrong: accumulates in float16, returns float32 (half precision where float32 is promised)."""
    return np.convolve(u.astype(np.float16), K.astype(np.float16))[: len(u)].astype(np.float32)


def euler_off_by_1e4(A, B, dt):
    """Wrong: Bd scaled by 1 + 1e-4 (about 1700 float32 ulps)."""
    Ad, Bd = euler_f32(A, B, dt)
    return Ad, Bd * np.float32(1 + 1e-4)


def causal_conv_float16_out(u, K):
    """Wrong dtype: returns float16 where float32 is promised."""
    return causal_conv_f32(u, K).astype(np.float16)
