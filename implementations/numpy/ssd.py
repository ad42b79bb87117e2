"""Mamba-2 SSD (state space duality), chunked, in NumPy float64.

Semantics of mamba-ssm's ``mamba_chunk_scan_combined`` (mamba_ssm/ops/triton/ssd_combined.py;
the algorithm of mamba_ssm/modules/ssd_minimal.py). Per head h, with a scalar A_h and group
g(h) = h // (heads per group), the sequence map is the semiseparable matrix

    y_i = sum_{j <= i} (C_i . B_j) exp(sum_{k=j+1..i} dt_k A) dt_j x_j   [+ D x_i] [* SiLU(z_i)],

i.e. the recurrence h_i = exp(dt_i A) h_{i-1} + dt_i x_i B_i^T, y_i = h_i C_i. Chunks of length Q:
  1. intra-chunk outputs by the quadratic (attention-like) form,
  2. each chunk's end state from a zero start,
  3. states passed from chunk to chunk (a short sequential scan over the chunks),
  4. the contribution of the state entering each chunk.
Segment sums are direct sums of dt A inside one chunk (``segsum``), never differences of long
cumulative sums, so no cancellation across the sequence.
"""
from __future__ import annotations

import numpy as np

from ssm_conformance.implementations.numpy._mamba_checks import check_ssd
from ssm_conformance.implementations.numpy.mamba import _arr, silu, softplus


def segsum(dA):
    """S[..., i, j] = sum_{k=j+1..i} dA[..., k] for i >= j (0 for i < j), as direct sums
    (ssd_minimal.segsum): cumulative sums down the columns of the strictly lower triangle."""
    Q = dA.shape[-1]
    strict = np.tril(np.ones((Q, Q), dtype=bool), -1)
    X = np.where(strict, dA[..., :, None], 0.0)                    # X[..., i, j] = dA_i for i > j
    return np.cumsum(X, axis=-2)


def ssd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
        dt_softplus=False, return_final_states=False):
    """x (b,l,h,p), dt (b,l,h), A (h,), B, C (b,l,g,n), D (h,) or (h,p), z (b,l,h,p),
    dt_bias (h,), initial_states (b,h,p,n). Any l >= 1. Returns y (b,l,h,p) and, if asked, the
    final states (b,h,p,n)."""
    fn = "ssd"
    x, dt, A, B, C, D, z, dt_bias, initial_states = (
        _arr(fn, k, v) for k, v in (("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C), ("D", D),
                                    ("z", z), ("dt_bias", dt_bias), ("initial_states", initial_states)))
    s = check_ssd(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states)
    b, l, h, p, g, n = s.b, s.l, s.h, s.p, s.g, s.n
    hg, Q = h // g, int(chunk_size)
    nc = -(-l // Q)
    pad = nc * Q - l

    if dt_bias is not None:
        dt = dt + dt_bias
    if dt_softplus:
        dt = softplus(dt)
    # Pad after the dt transform: padded steps get dt = 0 (decay 1, no input) and leave the state
    # alone, so the final state is the state after step l - 1.
    padl = lambda a: np.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2))  # noqa: E731
    xp, dtp, Bp, Cp = padl(x), padl(dt), padl(B), padl(C)

    # Chunked views with the heads split as (group, head-in-group).
    X = xp.reshape(b, nc, Q, g, hg, p).transpose(0, 1, 3, 4, 2, 5)     # (b, c, g, hg, Q, p)
    DT = dtp.reshape(b, nc, Q, g, hg).transpose(0, 1, 3, 4, 2)         # (b, c, g, hg, Q)
    Bc = Bp.reshape(b, nc, Q, g, n).transpose(0, 1, 3, 2, 4)           # (b, c, g, Q, n)
    Cc = Cp.reshape(b, nc, Q, g, n).transpose(0, 1, 3, 2, 4)           # (b, c, g, Q, n)
    dA = DT * A.reshape(g, hg)[..., None]                              # (b, c, g, hg, Q)
    S = segsum(dA)                                                     # (b, c, g, hg, Q, Q)
    causal = np.tril(np.ones((Q, Q), dtype=bool))
    Acs = np.cumsum(dA, axis=-1)                                       # sum_{k=0..i} dA_k

    # 1. Intra-chunk: y_i = sum_{j<=i} (C_i . B_j) exp(S_ij) dt_j x_j.
    CB = Cc @ Bc.swapaxes(-1, -2)                                      # (b, c, g, Q, Q)
    M = np.where(causal, CB[:, :, :, None] * np.exp(S), 0.0) * DT[..., None, :]
    Y = M @ X                                                          # (b, c, g, hg, Q, p)

    # 2. End state of each chunk from zero: sum_j exp(sum_{k=j+1..Q-1} dA_k) dt_j x_j B_j^T.
    w_in = np.exp(S[..., Q - 1, :]) * DT                               # (b, c, g, hg, Q)
    states = (X * w_in[..., None]).swapaxes(-1, -2) @ Bc[:, :, :, None]   # (b, c, g, hg, p, n)

    # 3. Pass states between chunks: H_c = exp(sum of dA over chunk c) H_{c-1} + states_c.
    decay = np.exp(Acs[..., -1])                                       # (b, c, g, hg)
    prev = np.empty_like(states)                                       # state entering chunk c
    hcur = (np.zeros((b, g, hg, p, n)) if initial_states is None
            else initial_states.reshape(b, g, hg, p, n))
    for c in range(nc):
        prev[:, c] = hcur
        hcur = decay[:, c, ..., None, None] * hcur + states[:, c]

    # 4. State entering the chunk, decayed to position i: exp(Acs_i) C_i . H_prev.
    Y += np.exp(Acs)[..., None] * (Cc[:, :, :, None] @ prev.swapaxes(-1, -2))

    y = Y.transpose(0, 1, 4, 2, 3, 5).reshape(b, nc * Q, h, p)[:, :l]
    if D is not None:
        y = y + x * (D[:, None] if D.ndim == 1 else D)
    if z is not None:
        y = y * silu(z)
    if return_final_states:
        return y, hcur.reshape(b, h, p, n)
    return y
