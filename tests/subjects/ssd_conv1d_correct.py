"""Correct subjects for the roles ``ssd`` and ``causal_conv1d``, each on a different algorithm
from our bundled implementations (implementations/torch/ssd.py: chunked; implementations/torch/
mamba.py: F.pad + F.conv1d), for the meta-tests (tests/test_meta_ssd_conv1d.py): the suite must
pass every one of them.

All compute in float32 (float64 for float64 inputs), as the real kernels do, accept the fp32
weights of the harness (A, D, dt_bias; conv weight and bias in float32 with half activations),
return the output in the activation dtype and SSD's final states in the compute dtype.

ssd (x (b,l,h,p), dt (b,l,h), A (h,), B, C (b,l,g,n); head h reads group h // (h/g)):
- ``ssd_quadratic``: the semiseparable matrix y = M (Dt x), M_ij = C_i.B_j exp(sum_{k=j+1..i} Dt_k A)
  over the whole sequence (segment sums as column cumulative sums, never differences).
- ``ssd_recurrent``: the plain recurrence S_t = exp(Dt_t A) S_{t-1} + Dt_t x_t B_t^T, y_t = S_t C_t.
- ``ssd_chunked_divisor``: our chunked implementation run with the largest proper divisor of the
  given chunk size (a different blocking; chunks nested in the given ones, so the exponent error
  bound of the given chunk size still covers it).
- ``ssd_chunk_cumsum``: chunked as mamba-ssm's Triton kernels form their decays: ONE float32
  cumulative sum cs of Dt A per chunk, every decay exp(cs_i - cs_j), exp(cs_last - cs_j),
  exp(cs_last), exp(cs_i) a difference of two of its entries (no direct segment sums), states
  passed between chunks one at a time (written independently of implementations/torch/ssd.py).
dt transform for all three: Dt = softplus(dt + dt_bias) (torch's threshold 20 as mamba-ssm's) or
dt + dt_bias, then clamped at 0 from below (mamba_chunk_scan_combined's dt_limit = (0, inf)).

causal_conv1d (x (b,d,l), weight (d,w), weight[:, -1] on x_t):
- ``conv1d_padded_conv``: F.conv1d with padding=w-1 on both sides, the tail cut (causal_conv1d_ref).
- ``conv1d_unfold``: windows of the left-padded x by Tensor.unfold, contracted with the weight.
- ``conv1d_loop``: an explicit loop over the taps, out += weight[:, k] x_{t-(w-1)+k}.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ssm_conformance.implementations.torch import ssd as t_ssd


def _cdt(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


# ================================================================================================
# ssd
# ================================================================================================

def _ssd_prepare(x, dt, A, B, C, dt_bias, dt_softplus):
    """Compute-dtype copies, the clamped step Dt (b,l,h), and B, C per head (b,l,h,n)."""
    rdt = _cdt(x.dtype)
    h, g = x.shape[2], B.shape[2]
    dt = dt.to(rdt)
    if dt_bias is not None:
        dt = dt + dt_bias.to(rdt)
    if dt_softplus:
        dt = F.softplus(dt)
    Dt = dt.clamp_min(0.0)
    Bh = B.to(rdt).repeat_interleave(h // g, dim=2)
    Ch = C.to(rdt).repeat_interleave(h // g, dim=2)
    return rdt, x.to(rdt), Dt, A.to(rdt), Bh, Ch


def _ssd_finish(y, x, D, z, dtype_in, final, return_final_states):
    if D is not None:
        D = D.to(y.dtype)
        y = y + x * (D[:, None] if D.dim() == 1 else D)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    y = y.to(dtype_in)
    return (y, final) if return_final_states else y


def ssd_quadratic(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                  dt_softplus=False, return_final_states=False):
    """The semiseparable (quadratic) form over the whole sequence; chunk_size is not used."""
    rdt, xc, Dt, Ac, Bh, Ch = _ssd_prepare(x, dt, A, B, C, dt_bias, dt_softplus)
    b, l, h, p = x.shape
    dA = (Dt * Ac).permute(0, 2, 1)                                  # (b, h, l)
    strict = torch.tril(torch.ones(l, l, dtype=torch.bool), -1)
    # seg[i, j] = sum_{k=j+1..i} dA_k (i >= j): cumulative sums down column j of the strict lower
    # triangle filled with dA_i in row i
    seg = torch.cumsum(dA.unsqueeze(-1).expand(b, h, l, l).masked_fill(~strict, 0.0), dim=-2)
    L = torch.exp(seg).masked_fill(~torch.tril(torch.ones(l, l, dtype=torch.bool)), 0.0)
    CB = torch.einsum("bihn,bjhn->bhij", Ch, Bh)
    X = (xc * Dt.unsqueeze(-1)).permute(0, 2, 1, 3)                  # (b, h, l, p): Dt_j x_j
    y = torch.matmul(CB * L, X)                                      # (b, h, l, p)
    cs = torch.cumsum(dA, dim=-1)                                    # sum_{k<=i} dA_k
    if initial_states is not None:
        S0 = initial_states.to(rdt)                                  # (b, h, p, n)
        y = y + torch.exp(cs).unsqueeze(-1) * torch.einsum("bihn,bhpn->bhip", Ch, S0)
    final = None
    if return_final_states:
        w_last = torch.exp(seg[..., -1, :])                          # exp(sum_{k=j+1..l-1} dA_k)
        final = torch.einsum("bhj,bhjp,bjhn->bhpn", w_last, X, Bh)
        if initial_states is not None:
            final = final + torch.exp(cs[..., -1])[..., None, None] * initial_states.to(rdt)
    return _ssd_finish(y.permute(0, 2, 1, 3), xc, D, z, x.dtype, final, return_final_states)


def ssd_recurrent(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                  dt_softplus=False, return_final_states=False):
    """The recurrence, one step at a time; chunk_size is not used."""
    rdt, xc, Dt, Ac, Bh, Ch = _ssd_prepare(x, dt, A, B, C, dt_bias, dt_softplus)
    b, l, h, p = x.shape
    n = B.shape[3]
    S = (torch.zeros(b, h, p, n, dtype=rdt) if initial_states is None
         else initial_states.to(rdt).clone())
    decay = torch.exp(Dt * Ac)                                       # (b, l, h)
    inject = (Dt.unsqueeze(-1) * xc).unsqueeze(-1) * Bh.unsqueeze(3)  # (b, l, h, p, n): Dt x B^T
    states = []
    for t in range(l):
        S = decay[:, t, :, None, None] * S + inject[:, t]
        states.append(S)
    y = (torch.stack(states, dim=1) * Ch.unsqueeze(3)).sum(-1)       # y_t = S_t C_t
    return _ssd_finish(y, xc, D, z, x.dtype, S, return_final_states)


def _largest_proper_divisor(q: int) -> int:
    return max([d for d in range(1, q) if q % d == 0], default=1)


def ssd_chunked_divisor(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                        initial_states=None, dt_softplus=False, return_final_states=False):
    """implementations.torch.ssd.ssd with chunk size = the largest proper divisor of chunk_size
    (1 for a prime), after the clamp of dt + dt_bias (no softplus) at 0."""
    if not dt_softplus:   # our implementation does not clamp; the contract's semantics does
        dt = (dt.to(_cdt(x.dtype)) + (0 if dt_bias is None else dt_bias.to(_cdt(x.dtype)))).clamp_min(0)
        dt_bias = None
    return t_ssd.ssd(x, dt, A, B, C, _largest_proper_divisor(int(chunk_size)), D, z, dt_bias,
                     initial_states, dt_softplus, return_final_states)


def ssd_chunk_cumsum(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                     initial_states=None, dt_softplus=False, return_final_states=False):
    """Chunks of chunk_size steps; per chunk cs = cumsum(Dt A) (one float32 cumulative sum, as
    _chunk_cumsum_fwd_kernel), then y_i = sum_{j<=i in the chunk} C_i.B_j exp(cs_i - cs_j) Dt_j x_j
    + exp(cs_i) C_i.S_in, S_out = exp(cs_last) S_in + sum_j exp(cs_last - cs_j) Dt_j x_j B_j^T."""
    rdt, xc, Dt, Ac, Bh, Ch = _ssd_prepare(x, dt, A, B, C, dt_bias, dt_softplus)
    b, l, h, p = x.shape
    n = B.shape[3]
    Q = int(chunk_size)
    nc = -(-l // Q)
    pad = nc * Q - l
    chunks = lambda t: F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)).reshape(b, nc, Q, *t.shape[2:])  # noqa: E731
    X = chunks(xc * Dt.unsqueeze(-1))                                # (b, c, Q, h, p): Dt x, 0 padded
    Bc, Cc = chunks(Bh), chunks(Ch)                                  # (b, c, Q, h, n)
    cs = torch.cumsum(chunks(Dt * Ac), dim=2)                        # (b, c, Q, h), per chunk
    causal = torch.tril(torch.ones(Q, Q, dtype=torch.bool))
    expo = (cs.unsqueeze(3) - cs.unsqueeze(2)).masked_fill(~causal[:, :, None], -torch.inf)
    L = torch.exp(expo)                                              # (b, c, i, j, h)
    CB = torch.einsum("bcihn,bcjhn->bcijh", Cc, Bc)
    y = torch.einsum("bcijh,bcjhp->bcihp", CB * L, X)
    local = torch.einsum("bcjh,bcjhp,bcjhn->bchpn", torch.exp(cs[:, :, -1:] - cs), X, Bc)
    S = (torch.zeros(b, h, p, n, dtype=rdt) if initial_states is None
         else initial_states.to(rdt))
    off = []
    for c in range(nc):
        off.append(torch.exp(cs[:, c])[..., None] * torch.einsum("bihn,bhpn->bihp", Cc[:, c], S))
        S = torch.exp(cs[:, c, -1])[..., None, None] * S + local[:, c]
    y = (y + torch.stack(off, dim=1)).reshape(b, nc * Q, h, p)[:, :l]
    return _ssd_finish(y, xc, D, z, x.dtype, S, return_final_states)


# ================================================================================================
# causal_conv1d
# ================================================================================================

def _act(out, activation):
    return F.silu(out) if activation in ("silu", "swish") else out


def conv1d_padded_conv(x, weight, bias=None, activation=None):
    """F.conv1d(x, weight, bias, padding=w-1, groups=d)[..., :l] (as causal_conv1d_ref)."""
    rdt = _cdt(x.dtype)
    d, w = weight.shape
    out = F.conv1d(x.to(rdt), weight.to(rdt).unsqueeze(1), None if bias is None else bias.to(rdt),
                   padding=w - 1, groups=d)[..., :x.shape[-1]]
    return _act(out, activation).to(x.dtype)


def conv1d_unfold(x, weight, bias=None, activation=None):
    """Windows xp[t .. t+w-1] of the left-padded input (Tensor.unfold), summed against weight."""
    rdt = _cdt(x.dtype)
    w = weight.shape[1]
    windows = F.pad(x.to(rdt), (w - 1, 0)).unfold(-1, w, 1)          # (b, d, l, w)
    out = torch.einsum("bdlk,dk->bdl", windows, weight.to(rdt))
    if bias is not None:
        out = out + bias.to(rdt)[:, None]
    return _act(out, activation).to(x.dtype)


def conv1d_loop(x, weight, bias=None, activation=None):
    """out_t = bias + sum_k weight[:, k] x_{t-(w-1)+k}, one tap at a time (x_s = 0 for s < 0)."""
    rdt = _cdt(x.dtype)
    xc, wc = x.to(rdt), weight.to(rdt)
    l = x.shape[-1]
    w = weight.shape[1]
    out = torch.zeros_like(xc) if bias is None else bias.to(rdt)[:, None].expand_as(xc).clone()
    for k in range(w):
        shift = w - 1 - k                                            # tap k reads x_{t - shift}
        if shift < l:
            out[..., shift:] = out[..., shift:] + wc[:, k, None] * xc[..., :l - shift]
    return _act(out, activation).to(x.dtype)
