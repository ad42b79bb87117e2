"""Causal convolution y_t = sum_{k=0..t} K_k u_{t-k}, t = 0..L-1 (role ``causal_conv``), by FFT.

Linear (not circular) convolution by FFT needs both signals zero-padded to a common length
n >= 2L - 1: the full convolution has 2L - 1 terms, and any shorter n wraps its tail onto the head
(n = L is the circular convolution, the classic mistake). We take the smallest n >= 2L - 1 that
pocketfft's real transforms handle fastest (``scipy.fft.next_fast_len(..., real=True)``) and keep
the first L outputs.

There is no direct-sum path for small L: the FFT is used at every length, so whatever the property
suite draws exercises the code that runs at scale. (Its error is normwise, about
u log2(n) ||K|| ||u||, not componentwise; the suite's tolerance model accounts for that.)
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from ssm_conformance.implementations.numpy.discretize import as_real_array, check_finite

__all__ = ["causal_conv"]


def validate_signals(u, K) -> tuple[np.ndarray, np.ndarray]:
    """u and K real, finite, 1-D, of the same length L >= 1 -> float64 arrays."""
    u = as_real_array(u, "u")
    K = as_real_array(K, "K")
    if u.ndim != 1 or u.shape[0] == 0:
        raise ValueError(f"u must be 1-D of shape (L,) with L >= 1; got shape {u.shape}")
    if K.shape != u.shape:
        raise ValueError(f"K must have shape (L,) = {u.shape}, the shape of u; got shape {K.shape}")
    u = np.asarray(u, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    check_finite(u, "u")  # a NaN would spread to every output through the FFT
    check_finite(K, "K")
    return u, K


def causal_conv(u, K):
    """y (L,) float64 with y_t = sum_{k=0..t} K_k u_{t-k}."""
    u, K = validate_signals(u, K)
    L = u.shape[0]
    n = scipy.fft.next_fast_len(2 * L - 1, real=True)
    spectrum = scipy.fft.rfft(u, n) * scipy.fft.rfft(K, n)  # rfft zero-pads to n
    return scipy.fft.irfft(spectrum, n)[:L].copy()  # copy: do not keep the 2L buffer alive
