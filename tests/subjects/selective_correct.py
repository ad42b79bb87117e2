"""Correct third-party-style subjects for the roles ``selective_scan`` and
``selective_state_update``, each on a different algorithm from our bundled kernels.

The meta-tests (tests/test_meta_selective.py) point the suite at these and expect every property to
hold. Semantics: mamba-ssm's ``selective_scan_ref`` / ``selective_state_update_ref`` (CONTRACT.md,
docs/mamba_oracles.md). Per batch b, channel d, state n:

    x_t = delta_t + delta_bias;  Dt_t = softplus(x_t) (threshold 20) if delta_softplus else x_t
    h_t = exp(Dt_t A) h_{t-1} + Dt_t B_t u_t          (h_{-1} = 0)
    y_t = C_t . h_t   (2 Re(C_t . h_t) for complex A, no conjugate);  out = (y + D u) * SiLU(z)

Activations of any float dtype are computed in float32 (float64 for float64 input) and the output
is returned in u's dtype; the last state in the compute dtype (complex for complex A).

selective_scan:
  selective_scan_loop      -- the recurrence as a plain loop over time (float32), y_t formed per step.
  selective_scan_chunked   -- two-level chunked scan (as GPU kernels split time): every chunk of Q
                              steps is scanned from a zero state in parallel with the others, the
                              chunk-end states are then carried sequentially across chunks, and each
                              step adds its chunk's incoming state times the running product of the
                              decays (no division, no logarithm: the same products and sums).
  selective_scan_tree      -- Hillis-Steele doubling scan of the pairs (a_t, b_t) over the whole
                              (b, d, l, n) tensor: log2(l) rounds, no loop over time.
  selective_scan_numpy     -- implementations/numpy/mamba.py (float64) wrapped to tensors.
  selective_scan_mamba_ref -- mamba-ssm's selective_scan_ref itself (tests/subjects/mamba_refs.py;
                              needs einops and the mamba-ssm sources, see docs/mamba_adapters.md).
selective_state_update:
  state_update_einsum      -- one step by elementwise products and an einsum over n (float32).
  state_update_via_scan    -- one step of our torch selective_scan started from ``state`` (its
                              ``initial_state`` extension), written back with ``copy_``.
  state_update_numpy       -- implementations/numpy/mamba.py (float64) on a NumPy copy of the state,
                              written back into the tensor.
  state_update_mamba_ref   -- mamba-ssm's selective_state_update_ref (as selective_scan_mamba_ref).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 16  # steps per chunk of selective_scan_chunked (several chunks already at l = 17, 33, ...)


# ----------------------------------------------------------------------------------------------
# shared pieces (each subject is otherwise self-contained)

def _compute_dtype(t):
    return torch.float64 if t.dtype in (torch.float64, torch.complex128) else torch.float32


def _complex_of(rdt):
    return torch.complex128 if rdt == torch.float64 else torch.complex64


def _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """Discretization inputs in the compute dtype:
    Dt (b, d, l), A (d, n), and B, C expanded to (b, d, l, n) (complex for complex A)."""
    rdt = _compute_dtype(u)
    cplx = A.is_complex()
    adt = _complex_of(rdt) if cplx else rdt
    b, d, l = u.shape
    dt = delta.to(rdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(rdt)[:, None]           # the bias goes in BEFORE the softplus
    if delta_softplus:
        dt = F.softplus(dt)                             # beta 1, threshold 20
    A = A.to(adt)

    def expand(X):
        if X.dim() == 2:                                # constant (d, n)
            X = X.to(adt if X.is_complex() else rdt)
            return X[None, :, None, :].expand(b, d, l, X.shape[-1])
        X = X.to(rdt)
        if cplx:                                        # (Re, Im) interleaved along the last axis
            X = torch.complex(X[..., 0::2], X[..., 1::2])
        if X.dim() == 3:                                # variable (b, n, l)
            return X.transpose(1, 2)[:, None].expand(b, d, l, X.shape[1])
        g = X.shape[1]                                  # grouped (b, g, n, l): channel d reads
                                                        # group d // (d/g)
        X = X.repeat_interleave(d // g, dim=1)          # (b, d, n, l)
        return X.transpose(2, 3)

    return rdt, adt, dt, A, expand(B), expand(C)


def _finish(y, u, D, z, rdt, dtype_in):
    """y (b, d, l) complex or real -> out = ([2 Re] y + D u) * SiLU(z) in u's dtype."""
    if y.is_complex():
        y = 2.0 * y.real
    u = u.to(rdt)
    if D is not None:
        y = y + u * D.to(rdt)[:, None]
    if z is not None:
        y = y * F.silu(z.to(rdt))
    return y.to(dtype_in)


# ----------------------------------------------------------------------------------------------
# selective_scan

def selective_scan_loop(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                        return_last_state=False):
    """The recurrence, one step at a time."""
    rdt, adt, dt, A, Bx, Cx = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    b, d, l = u.shape
    uc = u.to(rdt)
    h = torch.zeros(b, d, A.shape[1], dtype=adt)
    ys = []
    for t in range(l):
        h = (torch.exp(dt[:, :, t, None] * A) * h
             + (dt[:, :, t] * uc[:, :, t])[..., None] * Bx[:, :, t])
        ys.append((h * Cx[:, :, t]).sum(-1))
    out = _finish(torch.stack(ys, dim=-1), u, D, z, rdt, u.dtype)
    return (out, h) if return_last_state else out


def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                           return_last_state=False):
    """Two-level scan over chunks of CHUNK steps.

    Within chunk c (steps s = 0..Q-1 of it), from a zero state, in parallel over chunks:
        local_s = a_s local_{s-1} + b_s,   P_s = a_s P_{s-1}   (P: the decay since the chunk start)
    then across chunks, sequentially:  H_c = P_{Q-1}^(c) H_{c-1} + local_{Q-1}^(c)  (H_{-1} = 0),
    and h_s^(c) = local_s^(c) + P_s^(c) H_{c-1}.  The same products of the same a's as the loop,
    bracketed differently: the bound of the sequential scan holds (docs/mamba_oracles.md).
    """
    rdt, adt, dt, A, Bx, Cx = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    b, d, l = u.shape
    n = A.shape[1]
    Q = CHUNK
    nc = -(-l // Q)
    pad = nc * Q - l
    a = torch.exp(dt[..., None] * A[:, None, :])                               # (b, d, l, n)
    bu = ((dt * u.to(rdt))[..., None] * Bx).to(adt)                # (b, d, l, n)
    # padding steps: a = 1, b = 0 (they change nothing and are cut off)
    a = torch.cat([a, torch.ones(b, d, pad, n, dtype=adt)], dim=2).view(b, d, nc, Q, n)
    bu = torch.cat([bu, torch.zeros(b, d, pad, n, dtype=adt)], dim=2).view(b, d, nc, Q, n)
    local, P = [], []
    loc, prod = bu[:, :, :, 0], a[:, :, :, 0]
    local.append(loc)
    P.append(prod)
    for s in range(1, Q):                                          # all chunks at once
        loc = a[:, :, :, s] * loc + bu[:, :, :, s]
        prod = a[:, :, :, s] * prod
        local.append(loc)
        P.append(prod)
    local = torch.stack(local, dim=3)                              # (b, d, nc, Q, n)
    P = torch.stack(P, dim=3)
    H = torch.zeros(b, d, n, dtype=adt)
    incoming = []
    for c in range(nc):                                            # carry across chunks
        incoming.append(H)
        H = P[:, :, c, -1] * H + local[:, :, c, -1]
    incoming = torch.stack(incoming, dim=2)                        # (b, d, nc, n)
    h = (local + P * incoming[:, :, :, None]).reshape(b, d, nc * Q, n)[:, :, :l]
    y = (h * Cx).sum(-1)
    out = _finish(y, u, D, z, rdt, u.dtype)
    return (out, h[:, :, -1].clone()) if return_last_state else out


def selective_scan_tree(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                        return_last_state=False):
    """Hillis-Steele inclusive scan of (a_t, b_t) with the combine
    (a1, b1) then (a2, b2) -> (a2 a1, a2 b1 + b2): after the round with shift k every position
    holds the composition of the last 2k steps; ceil(log2 l) rounds in all."""
    rdt, adt, dt, A, Bx, Cx = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    a = torch.exp(dt[..., None] * A[:, None, :])                               # (b, d, l, n)
    h = ((dt * u.to(rdt))[..., None] * Bx).to(adt)
    l = u.shape[-1]
    k = 1
    while k < l:
        h = torch.cat([h[:, :, :k], a[:, :, k:] * h[:, :, :-k] + h[:, :, k:]], dim=2)
        a = torch.cat([a[:, :, :k], a[:, :, k:] * a[:, :, :-k]], dim=2)
        k *= 2
    y = (h * Cx).sum(-1)
    out = _finish(y, u, D, z, rdt, u.dtype)
    return (out, h[:, :, -1].clone()) if return_last_state else out


def _np(t):
    """Tensor -> float64/complex128 NumPy array (exact: every float32/bf16/fp16 is a float64)."""
    if t is None:
        return None
    t = t.detach().cpu()
    return (t.to(torch.complex128) if t.is_complex() else t.to(torch.float64)).numpy()


def selective_scan_numpy(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False):
    """implementations.numpy.mamba.selective_scan (float64), results cast as the role's dtypes."""
    from ssm_conformance.implementations.numpy import mamba as np_mamba

    res = np_mamba.selective_scan(*(_np(t) for t in (u, delta, A, B, C, D, z, delta_bias)),
                                  delta_softplus=delta_softplus,
                                  return_last_state=return_last_state)
    rdt = _compute_dtype(u)
    out = torch.from_numpy(res[0] if return_last_state else res).to(u.dtype)
    if not return_last_state:
        return out
    last = torch.from_numpy(res[1])
    return out, last.to(_complex_of(rdt) if last.is_complex() else rdt)


def selective_scan_mamba_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                             delta_softplus=False, return_last_state=False):
    """mamba-ssm's selective_scan_ref, unchanged (computes in float32)."""
    from tests.subjects import mamba_refs

    return mamba_refs.selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                     return_last_state)


# ----------------------------------------------------------------------------------------------
# selective_state_update

def state_update_einsum(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """state <- state exp(dt A) + dt x B;  out = (sum_n state C + D x) SiLU(z), in float32."""
    rdt = torch.float64 if torch.float64 in (state.dtype, x.dtype) else torch.float32
    dt = dt.to(rdt)
    if dt_bias is not None:
        dt = dt + dt_bias.to(rdt)
    if dt_softplus:
        dt = F.softplus(dt)
    xc = x.to(rdt)
    new = (state.to(rdt) * torch.exp(torch.einsum("bd,dn->bdn", dt, A.to(rdt)))
           + torch.einsum("bd,bn->bdn", dt * xc, B.to(rdt)))
    state.copy_(new)
    out = torch.einsum("bdn,bn->bd", new, C.to(rdt))   # from the new state before its rounding
    if D is not None:
        out = out + D.to(rdt) * xc
    if z is not None:
        out = out * F.silu(z.to(rdt))
    return out.to(x.dtype)


def state_update_via_scan(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """A scan of length 1 from ``state``: implementations.torch.mamba.selective_scan with its
    ``initial_state`` extension and variable B, C of length 1."""
    from ssm_conformance.implementations.torch.mamba import selective_scan

    rdt = torch.float64 if torch.float64 in (state.dtype, x.dtype) else torch.float32
    out, last = selective_scan(x.to(rdt)[..., None], dt.to(rdt)[..., None], A, B.to(rdt)[..., None],
                               C.to(rdt)[..., None], D, None if z is None else z.to(rdt)[..., None],
                               dt_bias, dt_softplus, True, initial_state=state.to(rdt))
    state.copy_(last)
    return out[..., 0].to(x.dtype)


def state_update_numpy(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """implementations.numpy.mamba.selective_state_update (float64) on a NumPy copy of the state."""
    from ssm_conformance.implementations.numpy import mamba as np_mamba

    st = _np(state).copy()
    out = np_mamba.selective_state_update(st, *(_np(t) for t in (x, dt, A, B, C, D, z, dt_bias)),
                                          dt_softplus=dt_softplus)
    state.copy_(torch.from_numpy(st))
    return torch.from_numpy(out).to(x.dtype)


def state_update_mamba_ref(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """mamba-ssm's selective_state_update_ref, unchanged (computes in the inputs' dtypes)."""
    from tests.subjects import mamba_refs

    return mamba_refs.selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)

