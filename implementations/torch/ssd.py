"""Mamba-2 SSD, chunked, in torch with autograd: the algorithm of implementations/numpy/ssd.py
(semantics of mamba-ssm's ``mamba_chunk_scan_combined``).

Precision as mamba-ssm's Triton kernels: dt and its cumulative sums in float32, every product
accumulated in float32 (float64 throughout for float64 x); out in x.dtype, final states in the
compute dtype (mamba-ssm returns them in float32).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ssm_conformance.implementations.numpy._mamba_checks import check_ssd
from ssm_conformance.implementations.torch.mamba import _need_tensors, real_compute_dtype


def segsum(dA):
    """S[..., i, j] = sum_{k=j+1..i} dA[..., k] for i >= j (0 for i < j), as direct sums:
    cumulative sums down the columns of the strictly lower triangle (ssd_minimal.segsum)."""
    Q = dA.shape[-1]
    strict = torch.tril(torch.ones(Q, Q, dtype=torch.bool, device=dA.device), -1)
    X = dA.unsqueeze(-1).expand(*dA.shape, Q).masked_fill(~strict, 0.0)   # X[..., i, j] = dA_i, i > j
    return torch.cumsum(X, dim=-2)


def ssd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
        dt_softplus=False, return_final_states=False):
    """x (b,l,h,p), dt (b,l,h), A (h,), B, C (b,l,g,n), D (h,) or (h,p), z (b,l,h,p),
    dt_bias (h,), initial_states (b,h,p,n); any l >= 1. Returns y (b,l,h,p) in x.dtype and, if
    asked, the final states (b,h,p,n) in the compute dtype."""
    fn = "ssd"
    _need_tensors(fn, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias, initial_states=initial_states)
    s = check_ssd(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states)
    b, l, h, p, g, n = s.b, s.l, s.h, s.p, s.g, s.n
    hg, Q = h // g, int(chunk_size)
    nc = -(-l // Q)
    pad = nc * Q - l
    rdt = real_compute_dtype(x.dtype)
    dtype_in = x.dtype
    x, dt, A, B, C = x.to(rdt), dt.to(rdt), A.to(rdt), B.to(rdt), C.to(rdt)

    if dt_bias is not None:
        dt = dt + dt_bias.to(rdt)
    if dt_softplus:
        dt = F.softplus(dt)
    # Pad after the dt transform: padded steps have dt = 0 (decay 1, no input).
    xp = F.pad(x, (0, 0, 0, 0, 0, pad))
    dtp = F.pad(dt, (0, 0, 0, pad))
    Bp = F.pad(B, (0, 0, 0, 0, 0, pad))
    Cp = F.pad(C, (0, 0, 0, 0, 0, pad))

    X = xp.reshape(b, nc, Q, g, hg, p).permute(0, 1, 3, 4, 2, 5)       # (b, c, g, hg, Q, p)
    DT = dtp.reshape(b, nc, Q, g, hg).permute(0, 1, 3, 4, 2)           # (b, c, g, hg, Q)
    Bc = Bp.reshape(b, nc, Q, g, n).permute(0, 1, 3, 2, 4)             # (b, c, g, Q, n)
    Cc = Cp.reshape(b, nc, Q, g, n).permute(0, 1, 3, 2, 4)             # (b, c, g, Q, n)
    dA = DT * A.reshape(g, hg, 1)                                      # (b, c, g, hg, Q)
    S = segsum(dA)                                                     # (b, c, g, hg, Q, Q)
    causal = torch.tril(torch.ones(Q, Q, dtype=torch.bool, device=x.device))
    Acs = torch.cumsum(dA, dim=-1)                                     # sum_{k=0..i} dA_k

    # 1. Intra-chunk: y_i = sum_{j<=i} (C_i . B_j) exp(S_ij) dt_j x_j.
    CB = torch.matmul(Cc, Bc.transpose(-1, -2))                        # (b, c, g, Q, Q)
    L = torch.exp(S).masked_fill(~causal, 0.0)                         # S = 0 above the diagonal
    M = CB.unsqueeze(3) * L * DT.unsqueeze(-2)
    Y = torch.matmul(M, X)                                             # (b, c, g, hg, Q, p)

    # 2. End state of each chunk from zero: sum_j exp(sum_{k=j+1..Q-1} dA_k) dt_j x_j B_j^T.
    w_in = torch.exp(S[..., Q - 1, :]) * DT                            # (b, c, g, hg, Q)
    states = torch.matmul((X * w_in.unsqueeze(-1)).transpose(-1, -2), Bc.unsqueeze(3))  # (b,c,g,hg,p,n)

    # 3. Pass states between chunks: H_c = exp(sum of dA over chunk c) H_{c-1} + states_c.
    decay = torch.exp(Acs[..., -1])                                    # (b, c, g, hg)
    hcur = (torch.zeros(b, g, hg, p, n, dtype=rdt, device=x.device) if initial_states is None
            else initial_states.to(rdt).reshape(b, g, hg, p, n))
    prev = []
    for c in range(nc):
        prev.append(hcur)
        hcur = decay[:, c, ..., None, None] * hcur + states[:, c]
    prev = torch.stack(prev, dim=1)                                    # state entering chunk c

    # 4. State entering the chunk, decayed to position i: exp(Acs_i) C_i . H_prev.
    Y = Y + torch.exp(Acs).unsqueeze(-1) * torch.matmul(Cc.unsqueeze(3), prev.transpose(-1, -2))

    y = Y.permute(0, 1, 4, 2, 3, 5).reshape(b, nc * Q, h, p)[:, :l]
    if D is not None:
        D = D.to(rdt)
        y = y + x * (D[:, None] if D.dim() == 1 else D)
    if z is not None:
        y = y * F.silu(z.to(rdt))
    y = y.to(dtype_in)
    if return_final_states:
        return y, hcur.reshape(b, h, p, n)
    return y
