"""Causal convolution y_t = sum_{k=0..t} K_k u_{t-k} (role ``causal_conv``) by torch.fft, float64 CPU.

Same semantics as ``implementations.numpy.convolution``: zero padding of both signals to the
smallest n >= 2L - 1 of the form 2^a 3^b 5^c 7^d (lengths pocketfft/MKL transform fast), rfft,
product, irfft, first L outputs. Padding to less than 2L - 1 would wrap the tail of the full
convolution onto its head (circular convolution). NumPy arrays or tensors in, NumPy float64 out.
"""
from __future__ import annotations

import torch

from ssm_conformance.implementations.numpy.convolution import validate_signals

__all__ = ["causal_conv", "next_fast_len"]


def next_fast_len(target: int) -> int:
    """Smallest n >= target whose only prime factors are 2, 3, 5, 7 (target >= 1)."""
    n = max(int(target), 1)
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def causal_conv(u, K):
    """y (L,) float64 NumPy array with y_t = sum_{k=0..t} K_k u_{t-k}."""
    u, K = validate_signals(u, K)
    L = u.shape[0]
    n = next_fast_len(2 * L - 1)
    spectrum = torch.fft.rfft(torch.from_numpy(u), n) * torch.fft.rfft(torch.from_numpy(K), n)
    return torch.fft.irfft(spectrum, n)[:L].numpy().copy()
