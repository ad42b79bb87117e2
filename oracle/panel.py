"""The precision panel: the standard accurate algorithms of each sequence role, in the subject's
compute dtype, on the inputs exactly as the subject receives them (properties/precision.py
measures their errors against the oracle and judges a subject against the worst of them).

Compute dtype (as mamba-ssm, causal-conv1d and FlashAttention accumulate): the input dtype for
float32 and float64; float32 for bfloat16/float16 inputs, whose values are read exactly. Each
member returns its outputs in the compute dtype (the verdict rounds them to the dtype the
subject's output is judged in); the members are differentiable, so a member's VJP is torch
autograd through it (or the member's own standard backward: the loop's adjoint loop,
FlashAttention-2's backward), with the inputs' dtypes as leaves (a half activation's gradient
comes back in the half dtype, as the subject's).

Members (every one is vectorized over batch, channels, heads and state; only the recurrences'
time loop, the chunk loop and the key-block loop are Python loops):

- recurrences (linear_scan, selective_scan, ssd): ``loop``, the sequential recurrence
  h_t = a_t h_{t-1} + b_t (one multiply-add a step), and ``tree``, a Hillis-Steele scan under
  (a2, b2) o (a1, b1) = (a2 a1, a2 b1 + b2) (log2 l levels). ssd adds ``chunked``: the chunked
  algorithm at the subject's chunk_size with the decays formed, as mamba-ssm's Triton chunk scan
  forms them, from a float32 cumulative sum per chunk, exp(cs_t - cs_s) and exp(cs_t) (forward
  only: autograd through those differences is not within the VJP's error bound, see PANELS).
- selective_state_update (one step): the new state, and out = C . state summed over n
  sequentially (``loop``) or pairwise (``tree``).
- causal_conv1d: the direct tap sum, bias first, taps in ascending (``taps_up``) and descending
  (``taps_down``) order.
- attention: ``plain`` softmax (max-subtracted, all keys of a row at once) and ``online``
  (FlashAttention-style: key blocks of ATTENTION_BLOCK, running max and sum, float32 accumulation,
  P rounded to the input dtype before P.V in half dtypes); gradients also ``flash_backward``
  (FlashAttention-2's backward: P recomputed from the log-sum-exp, D = rowsum(dO o) with o as
  returned, P and dS rounded to the input dtype in half dtypes).

Adding a role: one entry in ``PANELS`` (properties/precision.py reads it): its members, the
function computing one member's outputs (named as the property's checks name them), and the
axes of each output that one row (batch x channel, or batch x head) spans.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ATTENTION_BLOCK = 128      # keys per block of the online-softmax member
BLOCK_ELEMENTS = 1 << 22   # temporaries of one query block / chunk block


def compute_dtype(*tensors):
    """float64 if any input is float64 (complex128 if complex), else float32 (complex64)."""
    dts = [t.dtype for t in tensors if isinstance(t, torch.Tensor)]
    wide = any(dt in (torch.float64, torch.complex128) for dt in dts)
    return torch.float64 if wide else torch.float32


def _complex(rdt):
    return torch.complex128 if rdt == torch.float64 else torch.complex64


# --- the two recurrence algorithms (time on the first axis) --------------------------------------

def _recur(a, h):
    """h[t] += a[t] * h[t-1] for t = 1.., in place, over the first axis: one multiply and one add
    a step (NumPy ufuncs on the CPU, ~4x less overhead per step than torch's on small slabs)."""
    if h.device.type == "cpu":
        A, H = a.numpy().reshape(len(a), -1), h.numpy().reshape(len(h), -1)   # views
        tmp = np.empty_like(H[0])
        for t in range(1, H.shape[0]):
            np.multiply(A[t], H[t - 1], out=tmp)
            np.add(H[t], tmp, out=H[t])
        return h
    hs, as_ = h.unbind(0), a.unbind(0)
    for t in range(1, len(hs)):
        hs[t].add_(as_[t] * hs[t - 1])
    return h


class _Loop(torch.autograd.Function):
    """h_t = a_t h_{t-1} + b_t sequentially (h_{-1} = h0 or 0); backward: the adjoint recurrence
    g_t = dh_t + conj(a_{t+1}) g_{t+1}, da_t = g_t conj(h_{t-1}), db_t = g_t, dh0 = conj(a_0) g_0."""

    @staticmethod
    def forward(ctx, a, b, h0):
        a = a.detach().contiguous()
        h = b.detach().contiguous().clone()
        if h0 is not None:
            h[0] = h[0] + a[0] * h0
        _recur(a, h)
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx, gh):
        a, h, h0 = ctx.saved_tensors
        ac = a.conj().resolve_conj() if a.is_complex() else a
        g = gh.detach().contiguous().clone()
        # the adjoint runs backwards in time: the same recurrence on the time-reversed slabs
        _recur_reversed(ac, g)
        first = torch.zeros_like(h[:1]) if h0 is None else h0.unsqueeze(0).to(h.dtype)
        h_prev = torch.cat([first, h[:-1]])
        grad_a = g * (h_prev.conj() if h_prev.is_complex() else h_prev)
        grad_h0 = None if h0 is None else (g[0] * ac[0]).to(h0.dtype)
        return grad_a, g, grad_h0


def _recur_reversed(ac, g):
    """g[t] += ac[t+1] * g[t+1] for t = l-2 .. 0, in place."""
    if g.device.type == "cpu":
        A, G = ac.numpy().reshape(len(ac), -1), g.numpy().reshape(len(g), -1)   # views
        tmp = np.empty_like(G[0])
        for t in range(G.shape[0] - 2, -1, -1):
            np.multiply(A[t + 1], G[t + 1], out=tmp)
            np.add(G[t], tmp, out=G[t])
        return g
    gs, acs = g.unbind(0), ac.unbind(0)
    for t in range(len(gs) - 2, -1, -1):
        gs[t].add_(acs[t + 1] * gs[t + 1])
    return g


def _tree(a, b, h0):
    """Hillis-Steele: after the level with offset k, position t holds the composition of the
    elements t-2k+1..t (out-of-place, so autograd differentiates it)."""
    if h0 is not None:
        b = torch.cat([(b[0] + a[0] * h0).unsqueeze(0), b[1:]])
    A, B = a, b
    length, k = b.shape[0], 1
    while k < length:
        B = torch.cat([B[:k], A[k:] * B[:-k] + B[k:]])
        if 2 * k < length:
            A = torch.cat([A[:k], A[k:] * A[:-k]])
        k *= 2
    return B


def scan(a, b, method, h0=None):
    """The recurrence over the first axis of a, b (broadcast to one shape and dtype)."""
    a, b = torch.broadcast_tensors(a, b)
    dt = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dt), b.to(dt)
    h0 = None if h0 is None else h0.to(dt)
    if method == "loop":
        return _Loop.apply(a, b, h0)
    if method == "tree":
        return _tree(a, b, h0)
    raise ValueError(f"unknown recurrence method {method!r}")


# --- weights broadcast over time, their gradients accumulated sequentially ----------------------

class _SeqBroadcast(torch.autograd.Function):
    """``w`` broadcast to ``shape``; its backward sums the gradient over the time axis by a
    running sum in the gradient's dtype, step after step (np.add.accumulate is strictly
    sequential; torch's CPU cumsum accumulates float32 in float64), as a kernel's time loop
    accumulates a weight's gradient (mamba-ssm's backward: dA, dD, ddelta_bias in registers over
    the chunk loop), then over the other broadcast axes as torch sums. A pairwise sum errs by
    ~log2(l) roundings of the summands' magnitude, the running sum by up to l: both are standard,
    so the panel has both (the loop members accumulate this way, the others as torch does)."""

    @staticmethod
    def forward(ctx, w, shape, time_axis):
        ctx.wshape, ctx.time = w.shape, time_axis
        return w.expand(shape)

    @staticmethod
    def backward(ctx, g):
        arr = g.detach().cpu().contiguous().numpy()
        running = np.add.accumulate(arr, axis=ctx.time).take([-1], axis=ctx.time)
        acc = torch.from_numpy(np.ascontiguousarray(running)).to(g.device)
        return acc.sum_to_size(ctx.wshape), None, None


def _weight(w, shape, time_axis, sequential):
    """``w`` broadcast over ``shape`` (right-aligned); ``sequential``: its gradient accumulated
    over ``time_axis`` step by step (_SeqBroadcast)."""
    if not sequential or not w.requires_grad:
        return w
    return _SeqBroadcast.apply(w, tuple(shape), time_axis)


# --- linear_scan ---------------------------------------------------------------------------------

def linear_scan(args, method):
    a, b = args["a"], args["b"]
    rdt = compute_dtype(a, b)
    cdt = _complex(rdt) if (a.is_complex() or b.is_complex()) else rdt
    a, b = torch.broadcast_tensors(a.to(cdt), b.to(cdt))
    return {"h": scan(a.movedim(-1, 0), b.movedim(-1, 0), method).movedim(0, -1)}


# --- selective_scan ------------------------------------------------------------------------------

def _softplus(x):
    return F.softplus(x)   # mamba-ssm's: threshold 20, the identity above


def _pairs(X, rdt):
    """mamba-ssm's interleaved complex layout '... (L two) -> ... L' as a complex tensor."""
    X = X.to(rdt)
    return torch.complex(X[..., 0::2], X[..., 1::2])


def _per_channel(X, d, kind, rdt, cplx):
    """B or C as (l, b, d, n) (or broadcastable): constant (d, n), variable (b, n, l), grouped
    (b, g, n, l), channel c reading group c // (d / g)."""
    if X.ndim == 2:
        return X.to(_complex(rdt) if X.is_complex() else rdt)
    X = _pairs(X, rdt) if cplx else X.to(rdt)
    if X.ndim == 3:
        return X.permute(2, 0, 1).unsqueeze(2)                      # (l, b, 1, n)
    X = X.repeat_interleave(d // X.shape[1], dim=1)                  # (b, d, n, l)
    return X.permute(3, 0, 1, 2)                                     # (l, b, d, n)


def selective_scan(args, method):
    u, delta, A = args["u"], args["delta"], args["A"]
    rdt = compute_dtype(u, delta)
    cplx = A.is_complex()
    cdt = _complex(rdt) if cplx else rdt
    d = u.shape[1]
    seq = method == "loop"     # weights' gradients accumulated step by step over time
    u, delta = u.to(rdt), delta.to(rdt)
    b, _, l = u.shape
    n = A.shape[1]
    if args.get("delta_bias") is not None:
        delta = delta + _weight(args["delta_bias"].to(rdt)[:, None], (b, d, l), 2, seq)
    if args.get("delta_softplus"):
        delta = _softplus(delta)
    dt = delta.permute(2, 0, 1)                                       # (l, b, d)
    a = torch.exp(dt.unsqueeze(-1) * _weight(A.to(cdt), (l, b, d, n), 0, seq))  # (l, b, d, n)
    Bt = _per_channel(args["B"], d, None, rdt, cplx)
    Ct = _per_channel(args["C"], d, None, rdt, cplx)
    if Bt.ndim == 2:
        Bt = _weight(Bt, (l, b, d, n), 0, seq)
    if Ct.ndim == 2:
        Ct = _weight(Ct, (l, b, d, n), 0, seq)
    bu = (dt * u.permute(2, 0, 1)).unsqueeze(-1) * Bt                 # (l, b, d, n)
    H = scan(a, bu, method)
    y = (H * Ct).sum(-1)                                              # (l, b, d)
    if y.is_complex():
        y = 2.0 * y.real                                              # one of each pair kept
    out = y.permute(1, 2, 0)
    if args.get("D") is not None:
        out = out + u * _weight(args["D"].to(rdt)[:, None], (b, d, l), 2, seq)
    if args.get("z") is not None:
        out = out * F.silu(args["z"].to(rdt))
    result = {"out": out}
    if args.get("return_last_state"):
        result["last_state"] = H[-1]
    return result


def _selective_rows(name, ndim):
    """Rows are (batch, channel); a weight's row is its channel; B/C rows their (batch, group)."""
    if name in ("grad_A",):
        return (1,)
    if name in ("grad_D", "grad_delta_bias"):
        return ()
    if name in ("grad_B", "grad_C"):
        return {2: (1,), 3: (1, 2), 4: (2, 3)}[ndim]
    return (2,)    # out, last_state (b, d, n), grad_u, grad_delta, grad_z (b, d, l)


# --- selective_state_update ----------------------------------------------------------------------

def _reduce_last(x, method):
    """sum over the last axis: sequentially (loop) or pairwise (tree)."""
    if method == "loop":
        acc = x[..., 0]
        for j in range(1, x.shape[-1]):
            acc = acc + x[..., j]
        return acc
    while x.shape[-1] > 1:
        if x.shape[-1] % 2:
            x = torch.cat([x, torch.zeros_like(x[..., :1])], dim=-1)
        x = x[..., 0::2] + x[..., 1::2]
    return x[..., 0]


def state_update(args, method):
    state, x, dt, A, B, C = (args[k] for k in ("state", "x", "dt", "A", "B", "C"))
    if state.ndim != 3:
        raise ValueError("the selective_state_update panel takes the contract's form: state "
                         f"(b, d, n), got shape {tuple(state.shape)}")
    rdt = compute_dtype(state, x)
    st, x, dt, A, B, C = (t.to(rdt) for t in (state, x, dt, A, B, C))
    if args.get("dt_bias") is not None:
        dt = dt + args["dt_bias"].to(rdt)
    if args.get("dt_softplus"):
        dt = _softplus(dt)
    new = st * torch.exp(dt.unsqueeze(-1) * A) + (dt * x).unsqueeze(-1) * B.unsqueeze(1)
    out = _reduce_last(new * C.unsqueeze(1), method)                 # (b, d)
    if args.get("D") is not None:
        out = out + x * args["D"].to(rdt)
    if args.get("z") is not None:
        out = out * F.silu(args["z"].to(rdt))
    return {"out": out, "state (after the call)": new}


def _state_update_rows(name, ndim):
    return () if ndim == 2 else (2,)   # out (b, d): one element a row; state (b, d, n)


# --- ssd -----------------------------------------------------------------------------------------

def _ssd_prepare(args, seq=False):
    """The inputs in the compute dtype, dt transformed, B and C per head; ``seq``: the weights
    A and dt_bias broadcast over (b, l, h) with their gradients accumulated over time step by
    step (_SeqBroadcast)."""
    x, dt, A, B, C = (args[k] for k in ("x", "dt", "A", "B", "C"))
    rdt = compute_dtype(x, dt)
    h, g = x.shape[2], B.shape[2]
    x, dt = x.to(rdt), dt.to(rdt)
    A = _weight(A.to(rdt), dt.shape, 1, seq)
    if args.get("dt_bias") is not None:
        dt = dt + _weight(args["dt_bias"].to(rdt), dt.shape, 1, seq)
    if args.get("dt_softplus"):
        dt = _softplus(dt)
    Bh = B.to(rdt).repeat_interleave(h // g, dim=2)                  # (b, l, h, n)
    Ch = C.to(rdt).repeat_interleave(h // g, dim=2)
    h0 = args.get("initial_states")
    return rdt, x, dt, A, Bh, Ch, None if h0 is None else h0.to(rdt)


def _ssd_finish(args, rdt, x, y, final, seq=False):
    if args.get("D") is not None:
        D = args["D"].to(rdt)
        y = y + x * _weight(D[:, None] if D.ndim == 1 else D, x.shape, 1, seq)
    if args.get("z") is not None:
        y = y * F.silu(args["z"].to(rdt))
    result = {"y": y}
    if args.get("return_final_states"):
        result["final_states"] = final
    return result


def ssd_recurrent(args, method):
    """The state recurrence H_t = exp(dt_t A) H_{t-1} + dt_t x_t B_t^T (H (b, h, p, n)),
    y_t = H_t C_t, by the loop or the tree."""
    seq = method == "loop"
    rdt, x, dt, A, Bh, Ch, h0 = _ssd_prepare(args, seq)
    a = torch.exp(dt * A).permute(1, 0, 2)[..., None, None]          # (l, b, h, 1, 1)
    bx = (dt.unsqueeze(-1) * x).permute(1, 0, 2, 3).unsqueeze(-1) * \
        Bh.permute(1, 0, 2, 3).unsqueeze(3)                           # (l, b, h, p, n)
    H = scan(a, bx, method, h0)
    y = (H * Ch.permute(1, 0, 2, 3).unsqueeze(3)).sum(-1).permute(1, 0, 2, 3)   # (b, l, h, p)
    return _ssd_finish(args, rdt, x, y, H[-1], seq)


def ssd_chunked(args, chunk_size):
    """mamba-ssm's chunked SSD at ``chunk_size`` Q: cs = cumsum(dt A) within each chunk (float32
    for half inputs), intra-chunk y_i = sum_{j<=i} (C_i . B_j) exp(cs_i - cs_j) dt_j x_j, chunk
    states S_c = sum_j exp(cs_last - cs_j) dt_j x_j B_j^T, passed between chunks as
    H_c = exp(cs_last) H_{c-1} + S_c, and y_i += exp(cs_i) C_i . H_{c-1}."""
    rdt, x, dt, A, Bh, Ch, h0 = _ssd_prepare(args)
    b, l, h, p = x.shape
    n = Bh.shape[-1]
    Q = int(chunk_size)
    nc = -(-l // Q)
    pad = nc * Q - l                     # padded steps: dt = 0 (decay 1, no input)
    X = F.pad(x, (0, 0, 0, 0, 0, pad)).reshape(b, nc, Q, h, p)
    DT = F.pad(dt, (0, 0, 0, pad)).reshape(b, nc, Q, h)
    Bc = F.pad(Bh, (0, 0, 0, 0, 0, pad)).reshape(b, nc, Q, h, n)
    Cc = F.pad(Ch, (0, 0, 0, 0, 0, pad)).reshape(b, nc, Q, h, n)
    cs = torch.cumsum(DT * A, dim=2)                                  # (b, c, Q, h)
    causal = torch.tril(torch.ones(Q, Q, dtype=torch.bool, device=x.device))
    per_chunk = b * h * Q * Q * max(p, n)
    step = max(1, BLOCK_ELEMENTS // max(1, per_chunk))
    Ys, Ss = [], []
    for c0 in range(0, nc, step):
        sl = slice(c0, c0 + step)
        csb = cs[:, sl]
        diff = csb.unsqueeze(3) - csb.unsqueeze(2)                    # (b, c, Qi, Qj, h)
        L = torch.exp(diff.masked_fill(~causal[:, :, None], -math.inf))
        CB = torch.einsum("bcihn,bcjhn->bcijh", Cc[:, sl], Bc[:, sl])
        W = CB * L * DT[:, sl].unsqueeze(2)
        Ys.append(torch.einsum("bcijh,bcjhp->bcihp", W, X[:, sl]))
        w_in = torch.exp(csb[:, :, -1:] - csb) * DT[:, sl]              # (b, c, Q, h)
        Ss.append(torch.einsum("bcjh,bcjhp,bcjhn->bchpn", w_in, X[:, sl], Bc[:, sl]))
    Y, S = torch.cat(Ys, dim=1), torch.cat(Ss, dim=1)
    decay = torch.exp(cs[:, :, -1])                                   # (b, c, h)
    hcur = torch.zeros(b, h, p, n, dtype=rdt, device=x.device) if h0 is None else h0
    prev = []
    for c in range(nc):
        prev.append(hcur)
        hcur = decay[:, c, :, None, None] * hcur + S[:, c]
    prev = torch.stack(prev, dim=1)                                   # (b, c, h, p, n)
    Y = Y + torch.exp(cs).unsqueeze(-1) * torch.einsum("bcihn,bchpn->bcihp", Cc, prev)
    y = Y.reshape(b, nc * Q, h, p)[:, :l]
    return _ssd_finish(args, rdt, x, y, hcur)


def ssd(args, method):
    if method == "chunked":
        return ssd_chunked(args, args["chunk_size"])
    return ssd_recurrent(args, method)


def _ssd_rows(name, ndim):
    """Rows are (batch, head): y, x, z (b, l, h, p); dt (b, l, h); B, C (b, l, g, n) by group;
    states (b, h, p, n); a weight's row is its head."""
    if name in ("y", "grad_x", "grad_z", "grad_B", "grad_C"):
        return (1, 3)
    if name == "grad_dt":
        return (1,)
    if name in ("final_states", "grad_initial_states"):
        return (2, 3)
    if name == "grad_D":
        return () if ndim == 1 else (1,)
    return ()    # grad_A, grad_dt_bias (h,)


# --- causal_conv1d -------------------------------------------------------------------------------

def causal_conv1d(args, method):
    """out_t = bias + sum_k weight[:, k] x_{t-(w-1)+k}, the taps summed in ascending or
    descending k, then SiLU."""
    x, weight = args["x"], args["weight"]
    rdt = compute_dtype(x, weight)
    x, weight = x.to(rdt), weight.to(rdt)
    w, length = weight.shape[1], x.shape[-1]
    xp = F.pad(x, (w - 1, 0))
    bias = args.get("bias")
    seq = method == "taps_up"   # the weights' gradients accumulated over time step by step
    acc = torch.zeros_like(x) if bias is None else \
        _weight(bias.to(rdt)[:, None], x.shape, 2, seq).expand_as(x)
    for k in (range(w) if method == "taps_up" else range(w - 1, -1, -1)):
        acc = acc + _weight(weight[:, k, None], x.shape, 2, seq) * xp[..., k:k + length]
    if args.get("activation") in ("silu", "swish"):
        acc = F.silu(acc)
    return {"out": acc}


def _conv1d_rows(name, ndim):
    return {"grad_bias": (), "grad_weight": (1,)}.get(name, (2,))   # (b, d, l): rows (b, d)


# --- attention -----------------------------------------------------------------------------------

def _attention_setup(args):
    q, k, v = args["q"], args["k"], args["v"]
    half = q.dtype in (torch.bfloat16, torch.float16)
    rdt = compute_dtype(q)
    scale = args.get("scale")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    return q.dtype, half, rdt, q.to(rdt), k.to(rdt), v.to(rdt), scale, bool(args.get("is_causal"))


def _mask(rows, keys, device):
    """True where key j is hidden from query i (top-left causal: j > i)."""
    return torch.arange(keys, device=device)[None, :] > rows[:, None]


def attention_plain(args):
    """softmax(scale q k^T) v with the row maximum subtracted, query rows in blocks."""
    dtype_in, half, rdt, q, k, v, scale, causal = _attention_setup(args)
    l, s = q.shape[-2], k.shape[-2]
    if s == 0 or l == 0:
        return {"out": q.new_zeros(q.shape[:-1] + (v.shape[-1],))}
    rows_per = max(1, BLOCK_ELEMENTS // max(1, s * max(1, q[..., :1, :1].numel())))
    blocks = []
    for i0 in range(0, l, rows_per):
        rows = torch.arange(i0, min(l, i0 + rows_per), device=q.device)
        S = (q[..., i0:i0 + len(rows), :] @ k.transpose(-1, -2)) * scale
        if causal:
            S = S.masked_fill(_mask(rows, s, q.device), -math.inf)
        blocks.append(torch.softmax(S, dim=-1) @ v)
    return {"out": torch.cat(blocks, dim=-2)}


def _online(q, k, v, scale, causal, half, dtype_in):
    """FlashAttention's forward: key blocks, running max m and sum, o = acc / sum; returns
    (o, lse)."""
    l, s = q.shape[-2], k.shape[-2]
    rows = torch.arange(l, device=q.device)
    m = torch.full(q.shape[:-1] + (1,), -math.inf, dtype=q.dtype, device=q.device)
    den = torch.zeros_like(m)
    acc = torch.zeros(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype, device=q.device)
    for j0 in range(0, s, ATTENTION_BLOCK):
        kb, vb = k[..., j0:j0 + ATTENTION_BLOCK, :], v[..., j0:j0 + ATTENTION_BLOCK, :]
        S = (q @ kb.transpose(-1, -2)) * scale
        if causal:
            S = S.masked_fill(_mask(rows, kb.shape[-2] + j0, q.device)[:, j0:], -math.inf)
        m_new = torch.maximum(m, S.amax(dim=-1, keepdim=True))
        safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        corr = torch.exp(m - safe)
        P = torch.exp(S - safe)
        den = den * corr + P.sum(dim=-1, keepdim=True)
        Pv = P.to(dtype_in).to(q.dtype) if half else P
        acc = acc * corr + Pv @ vb
        m = m_new
    o = acc / torch.where(den > 0, den, torch.ones_like(den))
    lse = torch.where(den > 0, m + torch.log(den), torch.full_like(m, math.inf))
    return o, lse


def attention_online(args):
    dtype_in, half, rdt, q, k, v, scale, causal = _attention_setup(args)
    if k.shape[-2] == 0 or q.shape[-2] == 0:
        return {"out": q.new_zeros(q.shape[:-1] + (v.shape[-1],))}
    return {"out": _online(q, k, v, scale, causal, half, dtype_in)[0]}


class _Flash(torch.autograd.Function):
    """The online forward with FlashAttention-2's backward (Dao 2023, Algorithm 2):
    P = exp(S - lse), dV = P^T dO, dP = dO V^T, D = rowsum(dO o), dS = P (dP - D),
    dQ = scale dS K, dK = scale dS^T Q; in half dtypes P and dS are rounded to the input dtype
    before the products and o is read as returned (rounded)."""

    @staticmethod
    def forward(ctx, q, k, v, scale, causal, dtype_in):
        half = dtype_in in (torch.bfloat16, torch.float16)
        o, lse = _online(q, k, v, scale, causal, half, dtype_in)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.scale, ctx.causal, ctx.half, ctx.dtype_in = scale, causal, half, dtype_in
        return o

    @staticmethod
    def backward(ctx, dO):
        q, k, v, o, lse = ctx.saved_tensors
        rnd = (lambda t: t.to(ctx.dtype_in).to(q.dtype)) if ctx.half else (lambda t: t)
        rows = torch.arange(q.shape[-2], device=q.device)
        dO = dO.to(q.dtype)
        Dsum = (dO * rnd(o)).sum(dim=-1, keepdim=True)
        dQ = torch.zeros_like(q)
        dKs, dVs = [], []
        for j0 in range(0, k.shape[-2], ATTENTION_BLOCK):   # dQ accumulated block after block
            kb, vb = k[..., j0:j0 + ATTENTION_BLOCK, :], v[..., j0:j0 + ATTENTION_BLOCK, :]
            S = (q @ kb.transpose(-1, -2)) * ctx.scale
            if ctx.causal:
                S = S.masked_fill(_mask(rows, kb.shape[-2] + j0, q.device)[:, j0:], -math.inf)
            P = torch.exp(S - lse)
            dVs.append(rnd(P).transpose(-1, -2) @ dO)
            dS = P * (dO @ vb.transpose(-1, -2) - Dsum)
            dQ = dQ + (rnd(dS) @ kb) * ctx.scale
            dKs.append((rnd(dS).transpose(-1, -2) @ q) * ctx.scale)
        return dQ, torch.cat(dKs, dim=-2), torch.cat(dVs, dim=-2), None, None, None


def attention_flash(args):
    dtype_in, half, rdt, q, k, v, scale, causal = _attention_setup(args)
    if k.shape[-2] == 0 or q.shape[-2] == 0:
        return {"out": q.new_zeros(q.shape[:-1] + (v.shape[-1],))}
    return {"out": _Flash.apply(q, k, v, scale, causal, dtype_in)}


def attention(args, method):
    return {"plain": attention_plain, "online": attention_online,
            "flash_backward": attention_flash}[method](args)


# --- rg_lru --------------------------------------------------------------------------------------

def rg_lru(args, method):
    """Griffin's RG-LRU (CONTRACT.md) in the compute dtype: the leaves a_t and
    b_t = m_t sigmoid(gate_x_t) x_t as our torch kernels form them (m_t = sqrt(-expm1(2 log a_t)),
    its derivative written out; a_t = 0 and m_t = 1 at a reset), then the loop or the tree over
    time from h0. The loop member accumulates a_param's gradient over time step by step."""
    from ssm_conformance.implementations.torch.rg_lru import leaves

    x = args["x"]
    rdt = compute_dtype(x, args["gate_x"], args["gate_a"])
    a_param = _weight(args["a_param"].to(rdt), tuple(x.shape), 1, method == "loop")
    a, b = leaves(x, args["gate_x"], args["gate_a"], a_param, args.get("reset"), rdt)
    h0 = args.get("h0")
    h = scan(a.movedim(1, 0), b.movedim(1, 0), method,
             None if h0 is None else h0.to(rdt)).movedim(0, 1)
    return {"y": h, "h_last": h[:, -1]}


# --- the registry --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Panel:
    """members: the algorithms' names (``vjp_members``: those whose gradients are judged, default
    the same); run(args, member) -> {output name: tensor}; rows(name, ndim) -> the axes of that
    output that one row spans (the others index the row)."""

    members: tuple
    run: object
    rows: object
    vjp_members: tuple | None = None


PANELS = {
    "linear_scan": Panel(("loop", "tree"), linear_scan, lambda name, ndim: (ndim - 1,)),
    "selective_scan": Panel(("loop", "tree"), selective_scan, _selective_rows),
    "selective_state_update": Panel(("loop", "tree"), state_update, _state_update_rows),
    # the chunked algorithm's gradient by autograd (through exp(cs_i - cs_j) and the cumsum)
    # is not within the VJP's bound (grad_dt, grad_A err/tol ~13 on ci examples): forward only
    "ssd": Panel(("loop", "tree", "chunked"), ssd, _ssd_rows, vjp_members=("loop", "tree")),
    "causal_conv1d": Panel(("taps_up", "taps_down"), causal_conv1d, _conv1d_rows),
    "attention": Panel(("plain", "online"), attention, lambda name, ndim: (ndim - 2, ndim - 1),
                       vjp_members=("plain", "online", "flash_backward")),
    # rows (batch, channel): y and the activations' gradients (b, l, d) span time
    "rg_lru": Panel(("loop", "tree"), rg_lru, lambda name, ndim: (1,) if ndim == 3 else ()),
}


def forward(role: str, args: dict) -> dict:
    """{member: {output name: tensor (compute dtype)}} of every member of ``role``'s panel."""
    panel = PANELS[role]
    with torch.no_grad():
        return {m: {k: t.detach() for k, t in panel.run(args, m).items()} for m in panel.members}


def vjp(role: str, args: dict, wrt, cotangent) -> dict:
    """{member: {"grad_<name>": tensor}}: each member's gradient of sum(cotangent * first output)
    with respect to the ``wrt`` inputs (leaves in the inputs' own dtypes)."""
    panel = PANELS[role]
    result = {}
    for member in panel.vjp_members or panel.members:
        leaves = {name: (value.detach().clone().requires_grad_(True) if name in wrt else value)
                  for name, value in args.items()}
        with torch.enable_grad():
            first = next(iter(panel.run(leaves, member).values()))
            cot = torch.as_tensor(cotangent).to(device=first.device, dtype=first.dtype)
            targets = [leaves[name] for name in wrt]
            grads = torch.autograd.grad(first, targets, cot, allow_unused=True)
        result[member] = {f"grad_{name}": (torch.zeros_like(t) if g is None else g.detach())
                          for name, g, t in zip(wrt, grads, targets)}
    return result
