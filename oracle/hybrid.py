"""Oracles of the pieces of a Jamba-style hybrid stack, and of the whole stack.

Pieces (x (..., d) float64, read exactly; value in multiple precision, MPFR via gmpy2 at mpmath's
working precision, certified by ``oracle.precision.verified``):

    rms_norm(x, w, eps)      x / sqrt(mean(x^2) + eps) * w          (mamba-ssm's RMSNorm:
                                                                     x * rsqrt(x.pow(2).mean(-1) + eps) * weight)
    layer_norm(x, w, b, eps) (x - mean) / sqrt(mean((x - mean)^2) + eps) * w + b   (biased variance)
    mlp(x, up, down, gate)   gated (Jamba / LLaMA):  down(silu(gate x) * (up x));
                             plain:  down(act(up x)), act = SiLU or GELU (exact erf form)

The stack (``hybrid_stack``): x (b, l, d_model) ->
    for each layer i:  h = h + mixer_i(norm(h));   h = h + mlp_i(norm(h))      (pre-norm residual)
    then norm(h) if final_norm.
A mixer is causal multi-head softmax attention (q/k/v/o projections without bias, head dim
d_model / n_heads, scale 1/sqrt(head dim), no positional encoding -- as Jamba's attention layers) or
a Mamba block: Mamba-1 (mamba_simple.Mamba's non-fused path: in_proj -> causal conv1d + SiLU ->
x_proj -> dt_proj -> selective scan with softplus(dt + dt_proj.bias), D, SiLU(z) gate -> out_proj)
or Mamba-2 (mamba2.Mamba2's non-fused path: in_proj [z, xBC, dt] -> conv1d + SiLU on xBC -> SSD with
softplus(dt + dt_bias), D per head -> gated RMSNorm (norm_before_gate=False) per group ->
out_proj).  The Mamba cores are the mamba oracles' functions (``selective_scan_mp``,
``ssd_forms_mp``), evaluated on multiple-precision inputs, so the whole stack runs in one precision.

Configuration (any object with these attributes, or a mapping): ``layer_types`` (sequence of
"mamba" / "attention"), ``mixer`` ("mamba1" | "mamba2"), ``n_heads``, ``norm`` ("rmsnorm" |
"layernorm"), ``norm_eps`` (every norm, Mamba-2's gated one too), ``mlp`` ("gated_silu" | "silu" |
"gelu" | "none"), ``final_norm`` (bool), and for Mamba-2 ``headdim``, ``ngroups``, ``chunk_size``.
Parameters: a flat dict of float64 arrays -- the exchange format of docs/hybrid.md:
    layers.{i}.mixer_norm.weight (d,)  [.bias (d,) for layernorm]
    layers.{i}.mixer.{name}     Mamba-1: in_proj_weight, conv_weight (d_inner, d_conv), conv_bias,
                                x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D, out_proj_weight
                                [in_proj_bias, out_proj_bias];  Mamba-2: in_proj_weight, conv_weight,
                                conv_bias, dt_bias, A_log, D, norm_weight, out_proj_weight [biases];
                                attention: q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight (d, d)
    layers.{i}.mlp_norm.weight [.bias];  layers.{i}.mlp.up_weight (f, d), down_weight (d, f)
                                [gate_weight (f, d) for gated_silu]
    final_norm.weight [.bias]
A missing optional bias (conv_bias, in/out_proj_bias) is absent from the dict.

Error model.  ``hybrid_stack`` (and each piece) carries one magnitude, "forward_error": a
first-order, componentwise bound E (in units of u, the compute dtype's unit roundoff) of
|computed - exact| for an accurate implementation.  Every operation is a rounding site k whose
local error an accurate kernel keeps below u L_k (elementwise); to first order the output error
is sum_k J_k delta_k, J_k the exact Jacobian of the output with respect to site k, so

    E_i = sum_k sum_m |J_k[i, m]| L_k[m]                        (``propagate``)

computed in float64 by marking each site with a zero perturbation and one reverse-mode pass
(torch autograd) per output element.  Using the Jacobian of the whole remaining computation, not
a product of per-layer absolute values, keeps E from growing geometrically with depth (the
running-error form |W_L| ... |W_1| grew ~40x per layer on the tests' stacks; this form grows
~1.5x).  The local bounds L (Higham, "Accuracy and Stability of Numerical Algorithms", ch. 3):
    linear y = x W^T + b:   (k + 1)(|x| |W|^T + |b|)         (gamma_k for any summation order)
    x * y, x + y:           |x y|, |x + y|
    SiLU:                   4 |SiLU(x)|                       (exp, add, divide, multiply)
    GELU:                   4 |x|                             (1 + erf cancels for x << 0)
    softplus(x + bias):     |x + bias| at the add; sigma(x) + |softplus| (exp seen through log1p,
                            log1p's own rounding); none above the threshold 20
    A = -exp(A_log):        |A|
    exp(Dt A):              |Dt A| + 1 at the argument (its rounding; exp's, as a relative error)
    RMSNorm / LayerNorm:    mean of d squares (d + 1) m; + eps 2 (m + eps) (the add, eps rounded
                            to the dtype); rsqrt 2 r; the products 2 |y|; LayerNorm's mean
                            (d + 1) mean |x|, x - mean |x - mean|, + bias |y|
    causal conv1d:          (w + 1)(sum_k |w_k||x_{t-k}| + |bias|)
    Delta B u / Delta x:    2 |.|
    scan h_t = a_t h_{t-1} + b_t:  3 H_t at b_t (product, add, one spare for tree / chunked
                            orders), H_t = sum_s (prod a) |b_s| the state's magnitude; y = C.h:
                            n sum_n |C| H
    SSD (chunked, chunk-local cumulative sums, Q = min(chunk_size, l), F_t the chunk-local sum of
                            |Dt A|): exponent (1 + Q)|Dt A| + 1, sources Dt x also Q F_j |Dt x|,
                            outputs also Q F_i sum_n |C| H  (oracle/ssd.py's weights)
    D u, y + D u:           |D u|, sum_n |C| H + |D u|
    attention:              scores (e + 6)(a_ij + A_i), output (6 n_i + 8) sum_j p_ij |v_j|
                            (oracle/attention.py; the softmax's Jacobian p_ij (v_j - o_i) comes
                            from the autograd pass)
Tolerance (``tolerance_terms``): SAFETY * u * E + output rounding (properties/tolerance.py).
Weights are exact (given in the dtype under test, e.g. float32 values), so they carry no error.
"""
from __future__ import annotations

from collections.abc import Mapping
import math

import gmpy2
import numpy as np
import torch

from ssm_conformance.oracle.attention import lse_attention_mp, visible
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.oracle.selective_scan import as_array, mp_of, selective_scan_mp, verified_many
from ssm_conformance.oracle.ssd import ssd_forms_mp

MIXERS = ("mamba1", "mamba2")
NORMS = ("rmsnorm", "layernorm")
MLPS = ("gated_silu", "silu", "gelu", "none")
SOFTPLUS_THRESHOLD = 20.0


# ================================================================================================
# The two arithmetics: multiple-precision values, and float64 values with error bounds
# ================================================================================================

_mp_silu = np.frompyfunc(lambda v: v / (1 + gmpy2.exp(-v)), 1, 1)
_mp_exp = np.frompyfunc(gmpy2.exp, 1, 1)
_mp_rsqrt = np.frompyfunc(lambda v: 1 / gmpy2.sqrt(v), 1, 1)
_mp_of_float = np.frompyfunc(gmpy2.mpfr, 1, 1)   # float64 -> MPFR, exact (53 bits <= any precision used)


class MP:
    """Values: object arrays of MPFR numbers (run under oracle.selective_scan.hp_context)."""

    @staticmethod
    def const(W):
        return None if W is None else _mp_of_float(np.asarray(W, dtype=np.float64))

    @staticmethod
    def cut(x, a, b):
        return x[..., a:b]

    def linear(self, x, W, b=None):
        y = np.matmul(x, self.const(W).T)
        return y if b is None else y + self.const(b)

    @staticmethod
    def add(x, y):
        return x + y

    @staticmethod
    def mul(x, y):
        return x * y

    @staticmethod
    def silu(x):
        return _mp_silu(x)

    @staticmethod
    def gelu(x):
        r2 = gmpy2.sqrt(gmpy2.mpfr(2))
        return np.frompyfunc(lambda v: v * (1 + gmpy2.erf(v / r2)) / 2, 1, 1)(x)

    def rms_norm(self, x, w, eps, group=None):
        xg = _grouped(x, group)
        ms = (xg * xg).sum(axis=-1, keepdims=True) / xg.shape[-1]
        return (xg * _mp_rsqrt(ms + gmpy2.mpfr(eps))).reshape(x.shape) * self.const(w)

    def layer_norm(self, x, w, b, eps):
        mu = x.sum(axis=-1, keepdims=True) / x.shape[-1]
        xc = x - mu
        var = (xc * xc).sum(axis=-1, keepdims=True) / x.shape[-1]
        y = xc * _mp_rsqrt(var + gmpy2.mpfr(eps)) * self.const(w)
        return y if b is None else y + self.const(b)

    def conv(self, x, w, bias):
        """Depthwise causal conv along l of x (b, l, c): y_t = bias + sum_k w[:, k] x_{t-(W-1)+k}."""
        b, l, c = x.shape
        W = w.shape[1]
        wm = self.const(w)
        xp = np.concatenate([np.full((b, W - 1, c), gmpy2.mpfr(0), dtype=object), x], axis=1)
        y = sum(wm[:, k] * xp[:, k:k + l] for k in range(W))
        return y if bias is None else y + self.const(bias)

    def scan1(self, u, delta, A_log, B, C, D, z, dt_bias):
        """Mamba-1 core via the selective-scan oracle; (b, l, .) layouts in and out."""
        A = -_mp_exp(self.const(A_log))
        out, _ = selective_scan_mp(np.swapaxes(u, 1, 2), np.swapaxes(delta, 1, 2), A,
                                   np.swapaxes(B, 1, 2), np.swapaxes(C, 1, 2), D=D,
                                   z=np.swapaxes(z, 1, 2), delta_bias=dt_bias, delta_softplus=True)
        return np.swapaxes(mp_of(out), 1, 2)

    def ssd(self, xs, dt, A_log, B, C, D, dt_bias, headdim, ngroups, chunk_size):
        """Mamba-2 core via the SSD oracle (recurrent form); xs (b, l, h p) -> (b, l, h p)."""
        b, l, hp = xs.shape
        h, n = hp // headdim, B.shape[-1] // ngroups
        A = -_mp_exp(self.const(A_log))
        forms = ssd_forms_mp(xs.reshape(b, l, h, headdim), dt, A, B.reshape(b, l, ngroups, n),
                             C.reshape(b, l, ngroups, n), chunk_size, D=D, dt_bias=dt_bias, dt_softplus=True)
        return mp_of(forms["recurrent"][0]).reshape(b, l, hp)

    def attention(self, q, k, v, n_heads):
        """Causal multi-head attention of (b, l, d) projections."""
        qh, kh, vh = (_heads(t, n_heads) for t in (q, k, v))
        e, l = qh.shape[-1], qh.shape[-2]
        S = np.matmul(qh, np.swapaxes(kh, -1, -2)) * (1 / gmpy2.sqrt(gmpy2.mpfr(e)))
        return _merge(lse_attention_mp(S, vh, visible(l, l, True)))


class JAC:
    """Float64 values (torch, CPU) with every rounding site marked: ``site(z, L)`` returns
    z + delta with delta a zero tensor whose gradient is recorded, L the bound (units of u) of the
    rounding error an accurate implementation commits there.  The bound of the output is then
    E_i = sum_sites sum_m |d y_i / d delta_m| L_m (``propagate``): first order, with the exact
    Jacobian of the rest of the computation (module doc)."""

    def __init__(self):
        self.sites = []

    def site(self, z, L):
        d = torch.zeros_like(z, requires_grad=True)
        self.sites.append((d, L.detach()))
        return z + d

    @staticmethod
    def const(W):
        return None if W is None else torch.as_tensor(np.asarray(W, dtype=np.float64))

    @staticmethod
    def cut(x, a, b):
        return x[..., a:b]

    def linear(self, x, W, b=None):
        W, b = self.const(W), self.const(b)
        y = x @ W.T
        mag = x.detach().abs() @ W.abs().T
        if b is not None:
            y, mag = y + b, mag + b.abs()
        return self.site(y, (W.shape[1] + (b is not None)) * mag)      # gamma_k dot products

    def add(self, x, y):
        s = x + y
        return self.site(s, s.detach().abs())

    def mul(self, x, y):
        p = x * y
        return self.site(p, p.detach().abs())

    def silu(self, x):
        y = x * torch.sigmoid(x)
        return self.site(y, 4 * y.detach().abs())                     # exp, add, divide, multiply

    def gelu(self, x):
        y = 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
        return self.site(y, 4 * x.detach().abs())                     # 1 + erf cancels for x << 0

    def _rsqrt_of(self, m, eps, d):
        """r = (m + eps)^-1/2 of a mean m of d nonnegative terms (squares, a sum, a division)."""
        m = self.site(m, (d + 1) * m.detach())
        t = m + eps
        t = self.site(t, 2 * t.detach())                              # the add, eps rounded to the dtype
        r = torch.rsqrt(t)
        return self.site(r, 2 * r.detach())                           # rsqrt, or 1/sqrt

    def rms_norm(self, x, w, eps, group=None):
        xg = _grouped(x, group)
        r = self._rsqrt_of((xg * xg).mean(dim=-1, keepdim=True), eps, xg.shape[-1])
        y = (xg * r).reshape(x.shape) * self.const(w)
        return self.site(y, 2 * y.detach().abs())

    def layer_norm(self, x, w, b, eps):
        d = x.shape[-1]
        mu = self.site(x.mean(dim=-1, keepdim=True), (d + 1) * x.detach().abs().mean(dim=-1, keepdim=True))
        xc = x - mu
        xc = self.site(xc, xc.detach().abs())
        r = self._rsqrt_of((xc * xc).mean(dim=-1, keepdim=True), eps, d)
        y = xc * r * self.const(w)
        y = self.site(y, 2 * y.detach().abs())
        if b is not None:
            y = y + self.const(b)
            y = self.site(y, y.detach().abs())
        return y

    def conv(self, x, w, bias):
        w, bias = self.const(w), self.const(bias)
        b, l, c = x.shape
        W = w.shape[1]
        xp = torch.cat([x.new_zeros(b, W - 1, c), x], dim=1)
        y = sum(w[:, k] * xp[:, k:k + l] for k in range(W))
        mag = sum(w[:, k].abs() * xp[:, k:k + l].detach().abs() for k in range(W))
        if bias is not None:
            y, mag = y + bias, mag + bias.abs()
        return self.site(y, (W + 1) * mag)

    def _softplus_dt(self, x, bias):
        """Dt = softplus(x + bias), threshold 20 (log1p(exp(.)) below it)."""
        xb = x + self.const(bias)
        xb = self.site(xb, xb.detach().abs())
        above = xb > SOFTPLUS_THRESHOLD
        sp = torch.where(above, xb, torch.log1p(torch.exp(torch.clamp(xb, max=SOFTPLUS_THRESHOLD))))
        # exp's rounding, seen through log1p: sigma(x); log1p's own: |sp|
        return self.site(sp, torch.where(above, 0.0, torch.sigmoid(xb.detach()) + sp.detach().abs()))

    def _A(self, A_log):
        A = -torch.exp(self.const(A_log))
        return self.site(A, A.abs())                                  # A = -exp(A_log), one rounding

    def _recurrence(self, arg, inject, C, L_inject, extra=None):
        """h_t = exp(arg_t) h_{t-1} + inject_t (h_{-1} = 0) along axis 1; y_t = sum_n C_t h_t
        (last axis).  A rounding error at h_t (product, add: 2, and one spare for tree / chunked
        orders) acts as an error of inject_t, so that site carries L_inject + 3 H_t,
        H_t = sum_{s<=t} exp(sum_{r=s+1..t} arg_r) |inject_s| the state's magnitude (exp(arg) >= 0
        here); y_t carries (n + extra) Y_t, Y = sum_n |C| H.  Returns y (b, l, ...), Y.
        Run step by step (``_scan``): the closed form h_t = sum_s exp(sum arg) inject_s holds
        (l, l) decay tensors, which made every reverse pass of ``propagate`` O(l^2) per state
        (12 s against 0.35 s for the bound at l = 48, 4 layers); the Jacobian is the same."""
        a = torch.exp(arg).expand_as(inject)
        with torch.no_grad():
            H = _scan(a, inject.abs())
        inj = self.site(inject, L_inject + 3 * H)
        h = _scan(a, inj)
        n = inject.shape[-1]
        Y = (C.detach().abs() * H).sum(dim=-1)
        y = self.site((C * h).sum(dim=-1), (n + (0.0 if extra is None else extra)) * Y)
        return y, Y

    def scan1(self, u, delta, A_log, B, C, D, z, dt_bias):
        """Mamba-1 core, (b, l, .) layouts: u, delta, z (b, l, d); B, C (b, l, n)."""
        A = self._A(A_log)                                            # (d, n)
        Dt = self._softplus_dt(delta, dt_bias)                        # (b, l, d)
        arg = Dt[..., None] * A
        arg = self.site(arg, arg.detach().abs() + 1)                  # its rounding; exp's (relative)
        bu = (Dt * u)[..., None] * B[:, :, None, :]                   # delta * B * u: two products
        y, Y = self._recurrence(arg, bu, C[:, :, None, :], 2 * bu.detach().abs())
        Du = self.const(D) * u
        Du = self.site(Du, Du.detach().abs())
        pre = y + Du
        pre = self.site(pre, Y + Du.detach().abs())
        return self.mul(pre, self.silu(z))

    def ssd(self, xs, dt, A_log, B, C, D, dt_bias, headdim, ngroups, chunk_size):
        """Mamba-2 core (no gate): xs (b, l, h p), dt (b, l, h), B, C (b, l, g n) -> (b, l, h p).
        A chunked kernel's exponents come from chunk-local cumulative sums (Q = min(chunk, l),
        F_t = the chunk-local cumulative sum of |Dt A|): exponent sites carry (1 + Q) |Dt A|, the
        sources Dt x also Q F_j, the outputs also Q F_i (oracle/ssd.py's weights)."""
        b, l, hp = xs.shape
        h, p = hp // headdim, headdim
        n = B.shape[-1] // ngroups
        grp = torch.as_tensor(np.arange(h) // (h // ngroups))
        x4 = xs.reshape(b, l, h, p)
        Bh, Ch = B.reshape(b, l, ngroups, n)[:, :, grp], C.reshape(b, l, ngroups, n)[:, :, grp]
        A = self._A(A_log)                                            # (h,)
        Dt = self._softplus_dt(dt, dt_bias)                           # (b, l, h)
        Q = min(int(chunk_size), l)
        arg = Dt * A
        w = arg.detach().abs()
        F = torch.cat([torch.cumsum(w[:, c0:c0 + chunk_size], dim=1) for c0 in range(0, l, chunk_size)], dim=1)
        arg = self.site(arg, (1 + Q) * w + 1)
        dtx = Dt[..., None] * x4
        dtx = self.site(dtx, dtx.detach().abs() * (1 + Q * F[..., None]))
        inj = dtx[..., None] * Bh[:, :, :, None, :]                   # (b, l, h, p, n)
        y, Y = self._recurrence(arg[..., None, None], inj, Ch[:, :, :, None, :], inj.detach().abs(),
                                extra=Q * F[..., None])
        Dx = self.const(D)[:, None] * x4
        Dx = self.site(Dx, Dx.detach().abs())
        out = y + Dx
        out = self.site(out, Y + Dx.detach().abs())
        return out.reshape(b, l, hp)

    def attention(self, q, k, v, n_heads):
        """Causal multi-head attention of (b, l, d) projections: exponent sites (e + 6)(a_ij + A_i)
        on the scores, (6 n_i + 8) sum_j p_ij |v_j| on the output (oracle/attention.py)."""
        qh, kh, vh = (_heads_t(t, n_heads) for t in (q, k, v))
        l, e = qh.shape[-2:]
        mask = torch.as_tensor(visible(l, l, True))
        scale = 1 / math.sqrt(e)
        S = scale * qh @ kh.transpose(-1, -2)
        a = scale * qh.detach().abs() @ kh.detach().abs().transpose(-1, -2)
        A = torch.where(mask, a, 0.0).amax(dim=-1, keepdim=True)
        S = self.site(S, torch.where(mask, (e + 6) * (a + A), 0.0))
        P = torch.softmax(S.masked_fill(~mask, float("-inf")), dim=-1)
        o = P @ vh
        n_keys = mask.sum(dim=1, keepdim=True).to(o.dtype)
        o = self.site(o, (6 * n_keys + 8) * (P.detach() @ vh.detach().abs()))
        return _merge_t(o)


def _scan(a, b):
    """h_t = a_t h_{t-1} + b_t along axis 1, h_{-1} = 0.  The steps are ``unbind`` slices: their
    backward is one stack, where indexing a[:, t] would add a zero-filled full-size gradient per
    step (O(l^2) again)."""
    hs, h = [], None
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
        h = b_t if h is None else a_t * h + b_t
        hs.append(h)
    return torch.stack(hs, dim=1)


def propagate(out, sites):
    """E_i = sum over sites of sum_m |d out_i / d delta_m| L_m, by one backward pass per output
    element (batched).  out: float64 tensor; returns a NumPy array of out's shape."""
    flat = out.reshape(-1)
    deltas = [d for d, _ in sites]
    E = np.zeros(flat.numel())
    eye = torch.eye(flat.numel(), dtype=flat.dtype)
    size = sum(d.numel() for d in deltas)
    step = max(1, min(64, 2**23 // max(size, 1)))          # batched gradients: <= 2^23 numbers
    for i0 in range(0, flat.numel(), step):
        rows = eye[i0:i0 + step]
        grads = torch.autograd.grad(flat, deltas, grad_outputs=rows, retain_graph=True,
                                    is_grads_batched=True, allow_unused=True)
        acc = torch.zeros(rows.shape[0], dtype=flat.dtype)
        for g, (_, L) in zip(grads, sites):
            if g is not None:
                acc += (g.abs() * L).reshape(rows.shape[0], -1).sum(dim=1)
        E[i0:i0 + rows.shape[0]] = acc.numpy()
    return E.reshape(tuple(out.shape))


def _jac_bound(x, fn):
    """Run fn on the JAC arithmetic from exact input x: (float64 value, bound E).
    Every function bounded here maps each x[i] (first axis: the batch of the stack, a leading
    axis of the pieces) on its own, so the Jacobian is block diagonal in i: each block is bounded
    alone (b times less work than reverse passes through the whole batch)."""
    if x.ndim < 2 or x.shape[0] == 1:
        return _jac_bound_one(x, fn)
    parts = [_jac_bound_one(x[i:i + 1], fn) for i in range(x.shape[0])]
    return np.concatenate([v for v, _ in parts]), np.concatenate([E for _, E in parts])


def _jac_bound_one(x, fn):
    ops = JAC()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # small tensors: one thread is fastest (20x on a loaded machine)
    try:
        with torch.enable_grad():
            out = fn(ops, torch.as_tensor(x))
            E = propagate(out, ops.sites) if ops.sites else np.zeros(tuple(out.shape))
    finally:
        torch.set_num_threads(threads)
    return out.detach().numpy(), E


def _heads_t(x, n_heads):
    b, l, d = x.shape
    return x.reshape(b, l, n_heads, d // n_heads).transpose(1, 2)


def _merge_t(x):
    b, H, l, e = x.shape
    return x.transpose(1, 2).reshape(b, l, H * e)


def _grouped(x, group):
    return x if group is None else x.reshape(x.shape[:-1] + (x.shape[-1] // group, group))


def _heads(x, n_heads):
    b, l, d = x.shape
    return np.swapaxes(x.reshape(b, l, n_heads, d // n_heads), 1, 2)     # (b, H, l, e)


def _merge(x):
    b, H, l, e = x.shape
    return np.swapaxes(x, 1, 2).reshape(b, l, H * e)


# ================================================================================================
# The stack, written once for both arithmetics
# ================================================================================================

def _norm(ops, x, cfg, P, prefix):
    if cfg["norm"] == "rmsnorm":
        return ops.rms_norm(x, P[prefix + ".weight"], cfg["norm_eps"])
    return ops.layer_norm(x, P[prefix + ".weight"], P.get(prefix + ".bias"), cfg["norm_eps"])


def _mlp(ops, x, P, prefix, kind):
    up = ops.linear(x, P[prefix + ".up_weight"])
    if kind == "gated_silu":
        hidden = ops.mul(ops.silu(ops.linear(x, P[prefix + ".gate_weight"])), up)
    else:
        hidden = ops.silu(up) if kind == "silu" else ops.gelu(up)
    return ops.linear(hidden, P[prefix + ".down_weight"])


def _mamba1(ops, x, P, pre):
    g = lambda name: P.get(pre + name)   # noqa: E731
    d_inner = P[pre + "in_proj_weight"].shape[0] // 2
    n = P[pre + "A_log"].shape[1]
    r = P[pre + "dt_proj_weight"].shape[1]
    xz = ops.linear(x, g("in_proj_weight"), g("in_proj_bias"))
    xs, z = ops.cut(xz, 0, d_inner), ops.cut(xz, d_inner, 2 * d_inner)
    xc = ops.silu(ops.conv(xs, g("conv_weight"), g("conv_bias")))
    x_dbl = ops.linear(xc, g("x_proj_weight"))
    dt, B, C = ops.cut(x_dbl, 0, r), ops.cut(x_dbl, r, r + n), ops.cut(x_dbl, r + n, r + 2 * n)
    delta = ops.linear(dt, g("dt_proj_weight"))
    y = ops.scan1(xc, delta, g("A_log"), B, C, g("D"), z, g("dt_proj_bias"))
    return ops.linear(y, g("out_proj_weight"), g("out_proj_bias"))


def _mamba2(ops, x, P, pre, cfg):
    g = lambda name: P.get(pre + name)   # noqa: E731
    d_inner = P[pre + "out_proj_weight"].shape[1]
    h = P[pre + "A_log"].shape[0]
    conv_dim = P[pre + "conv_weight"].shape[0]
    gn = (conv_dim - d_inner) // 2
    zxbcdt = ops.linear(x, g("in_proj_weight"), g("in_proj_bias"))
    z = ops.cut(zxbcdt, 0, d_inner)
    xBC = ops.silu(ops.conv(ops.cut(zxbcdt, d_inner, d_inner + conv_dim), g("conv_weight"), g("conv_bias")))
    dt = ops.cut(zxbcdt, d_inner + conv_dim, d_inner + conv_dim + h)
    xs, B, C = ops.cut(xBC, 0, d_inner), ops.cut(xBC, d_inner, d_inner + gn), ops.cut(xBC, d_inner + gn, conv_dim)
    y = ops.ssd(xs, dt, g("A_log"), B, C, g("D"), g("dt_bias"), cfg["headdim"], cfg["ngroups"], cfg["chunk_size"])
    y = ops.rms_norm(ops.mul(y, ops.silu(z)), g("norm_weight"), cfg["norm_eps"], group=d_inner // cfg["ngroups"])
    return ops.linear(y, g("out_proj_weight"), g("out_proj_bias"))


def _attention(ops, x, P, pre, cfg):
    q, k, v = (ops.linear(x, P[pre + name]) for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"))
    return ops.linear(ops.attention(q, k, v, cfg["n_heads"]), P[pre + "o_proj_weight"])


def _stack(ops, x, cfg, P):
    h = x
    for i, kind in enumerate(cfg["layer_types"]):
        u = _norm(ops, h, cfg, P, f"layers.{i}.mixer_norm")
        pre = f"layers.{i}.mixer."
        if kind == "attention":
            mixed = _attention(ops, u, P, pre, cfg)
        elif cfg["mixer"] == "mamba1":
            mixed = _mamba1(ops, u, P, pre)
        else:
            mixed = _mamba2(ops, u, P, pre, cfg)
        h = ops.add(h, mixed)
        if cfg["mlp"] != "none":
            u = _norm(ops, h, cfg, P, f"layers.{i}.mlp_norm")
            h = ops.add(h, _mlp(ops, u, P, f"layers.{i}.mlp", cfg["mlp"]))
    if cfg["final_norm"]:
        h = _norm(ops, h, cfg, P, "final_norm")
    return h


# ================================================================================================
# Checking the configuration and the parameters
# ================================================================================================

_KEYS = ("layer_types", "mixer", "n_heads", "norm", "norm_eps", "mlp", "final_norm")
_MAMBA2_KEYS = ("headdim", "ngroups", "chunk_size")


def read_config(config):
    """Config object (attributes) or mapping -> dict of the fields the oracle reads."""
    get = (lambda k: config[k]) if isinstance(config, Mapping) else (lambda k: getattr(config, k))
    cfg = {}
    for k in _KEYS:
        try:
            cfg[k] = get(k)
        except (KeyError, AttributeError):
            raise ValueError(f"config lacks '{k}' (needs {', '.join(_KEYS)})") from None
    cfg["layer_types"] = tuple(cfg["layer_types"])
    bad = [t for t in cfg["layer_types"] if t not in ("mamba", "attention")]
    if bad or not cfg["layer_types"]:
        raise ValueError(f"config.layer_types must be a non-empty sequence of 'mamba'/'attention', "
                         f"got {cfg['layer_types']}")
    for k, allowed in (("mixer", MIXERS), ("norm", NORMS), ("mlp", MLPS)):
        if cfg[k] not in allowed:
            raise ValueError(f"config.{k} must be one of {allowed}, got {cfg[k]!r}")
    if cfg["mixer"] == "mamba2" and "mamba" in cfg["layer_types"]:
        for k in _MAMBA2_KEYS:
            try:
                cfg[k] = int(get(k))
            except (KeyError, AttributeError):
                raise ValueError(f"config lacks '{k}', needed by Mamba-2 layers") from None
    cfg["norm_eps"] = float(cfg["norm_eps"])
    return cfg


def _expect(P, name, shape, optional=False):
    if name not in P:
        if optional:
            return
        raise ValueError(f"params lacks '{name}' (shape {shape})")
    if P[name].shape != tuple(shape):
        raise ValueError(f"params['{name}'] must have shape {tuple(shape)}, got {P[name].shape}")


def check_params(cfg, params, d_model):
    """Validate names and shapes; returns the params as float64 arrays."""
    P = {k: as_array(v, f"params['{k}']", real=True) for k, v in params.items()}
    used = set()

    def need(name, shape, optional=False):
        _expect(P, name, shape, optional)
        used.add(name)

    def norm(prefix):
        need(prefix + ".weight", (d_model,))
        if cfg["norm"] == "layernorm":
            need(prefix + ".bias", (d_model,), optional=True)
        elif prefix + ".bias" in P:
            raise ValueError(f"params['{prefix}.bias'] given, but RMSNorm has no bias")

    for i, kind in enumerate(cfg["layer_types"]):
        pre = f"layers.{i}.mixer."
        norm(f"layers.{i}.mixer_norm")
        if kind == "attention":
            if d_model % cfg["n_heads"]:
                raise ValueError(f"d_model = {d_model} must be a multiple of n_heads = {cfg['n_heads']}")
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight", "o_proj_weight"):
                need(pre + name, (d_model, d_model))
        elif cfg["mixer"] == "mamba1":
            for name in ("in_proj_weight", "A_log", "dt_proj_weight", "conv_weight"):
                if pre + name not in P or P[pre + name].ndim != 2:
                    raise ValueError(f"params['{pre}{name}'] missing or not a matrix")
            di = P[pre + "in_proj_weight"].shape[0] // 2
            n, r, w = (P[pre + k].shape[1] for k in ("A_log", "dt_proj_weight", "conv_weight"))
            need(pre + "in_proj_weight", (2 * di, d_model))
            need(pre + "A_log", (di, n))
            need(pre + "dt_proj_weight", (di, r))
            need(pre + "conv_weight", (di, w))
            need(pre + "conv_bias", (di,), optional=True)
            need(pre + "x_proj_weight", (r + 2 * n, di))
            need(pre + "dt_proj_bias", (di,))
            need(pre + "D", (di,))
            need(pre + "out_proj_weight", (d_model, di))
            need(pre + "in_proj_bias", (2 * di,), optional=True)
            need(pre + "out_proj_bias", (d_model,), optional=True)
        else:
            if pre + "out_proj_weight" not in P or pre + "A_log" not in P:
                raise ValueError(f"params lacks '{pre}out_proj_weight' or '{pre}A_log'")
            di, h = P[pre + "out_proj_weight"].shape[1], P[pre + "A_log"].shape[0]
            p, g = cfg["headdim"], cfg["ngroups"]
            if h * p != di or h % g:
                raise ValueError(f"Mamba-2 layer {i}: nheads {h} x headdim {p} must equal d_inner {di}, "
                                 f"and ngroups {g} must divide nheads")
            need(pre + "out_proj_weight", (d_model, di))
            need(pre + "A_log", (h,))
            conv_dim = P.get(pre + "conv_weight", np.zeros((di, 1))).shape[0]
            if (conv_dim - di) % (2 * g) or conv_dim <= di:
                raise ValueError(f"params['{pre}conv_weight'] must have shape (d_inner + 2 g n, d_conv), "
                                 f"got {P.get(pre + 'conv_weight', np.zeros(0)).shape}")
            need(pre + "conv_weight", (conv_dim, P[pre + "conv_weight"].shape[1]))
            need(pre + "conv_bias", (conv_dim,), optional=True)
            need(pre + "in_proj_weight", (di + conv_dim + h, d_model))
            need(pre + "in_proj_bias", (di + conv_dim + h,), optional=True)
            need(pre + "dt_bias", (h,))
            need(pre + "D", (h,))
            need(pre + "norm_weight", (di,))
            need(pre + "out_proj_bias", (d_model,), optional=True)
        if cfg["mlp"] != "none":
            norm(f"layers.{i}.mlp_norm")
            f = P.get(f"layers.{i}.mlp.up_weight", np.zeros((0, d_model))).shape[0]
            need(f"layers.{i}.mlp.up_weight", (f, d_model))
            need(f"layers.{i}.mlp.down_weight", (d_model, f))
            if cfg["mlp"] == "gated_silu":
                need(f"layers.{i}.mlp.gate_weight", (f, d_model))
    if cfg["final_norm"]:
        norm("final_norm")
    extra = sorted(set(P) - used)
    if extra:
        raise ValueError(f"params has names this configuration does not use: {extra[:5]}")
    return P


def _check_x(x, d_model=None):
    x = as_array(x, "x", real=True)
    if x.ndim != 3 or 0 in x.shape or (d_model is not None and x.shape[-1] != d_model):
        raise ValueError("x must have shape (b, l, d_model) with every size >= 1"
                         + (f" and d_model = {d_model}" if d_model else "") + f", got {x.shape}")
    return x


def _d_model(cfg, params):
    name = "final_norm.weight" if cfg["final_norm"] else "layers.0.mixer_norm.weight"
    if name not in params:
        raise ValueError(f"params lacks '{name}'")
    return np.shape(params[name])[0]


# ================================================================================================
# Public oracles
# ================================================================================================

def _run(x, mp_fn, jac_fn) -> Reference:
    """Value in multiple precision (certified by doubling, each element accepted against its own
    error bound E so the oracle's error is <= 2^-11 of any tolerance), bound E from float64."""
    _, E = _jac_bound(x, jac_fn)

    def compute():
        return [mp_fn(_mp_of_float(x))]

    (hi, err), = verified_many(compute, [E])
    return Reference(np.vectorize(float, otypes=[np.float64])(hi), err, {"forward_error": E})


def tolerance_terms(ref):
    """(depth, magnitude) pairs for properties.tolerance.tolerance: the bound E has depth 1."""
    return [(1.0, ref.magnitudes["forward_error"])]


def rms_norm(x, weight, eps=1e-5) -> Reference:
    """x (..., d) / sqrt(mean(x^2) + eps) * weight (d,)."""
    x = as_array(x, "x", real=True)
    w = as_array(weight, "weight", real=True)
    if x.ndim < 1 or w.shape != x.shape[-1:]:
        raise ValueError(f"weight must have shape (d,) = {x.shape[-1:]}, got {w.shape}")
    return _run(x, lambda m: MP().rms_norm(m, w, eps), lambda ops, t: ops.rms_norm(t, w, eps))


def layer_norm(x, weight, bias=None, eps=1e-5) -> Reference:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis (biased variance)."""
    x = as_array(x, "x", real=True)
    w = as_array(weight, "weight", real=True)
    b = None if bias is None else as_array(bias, "bias", real=True)
    for name, a in (("weight", w), ("bias", b)):
        if a is not None and a.shape != x.shape[-1:]:
            raise ValueError(f"{name} must have shape (d,) = {x.shape[-1:]}, got {a.shape}")
    return _run(x, lambda m: MP().layer_norm(m, w, b, eps), lambda ops, t: ops.layer_norm(t, w, b, eps))


def mlp(x, up_weight, down_weight, gate_weight=None, activation="silu") -> Reference:
    """down(silu(gate x) * up x) when gate_weight is given (activation must be "silu"), else
    down(act(up x)) with act "silu" or "gelu".  x (..., d), up/gate (f, d), down (d, f); no biases."""
    x = as_array(x, "x", real=True)
    up, down = as_array(up_weight, "up_weight", real=True), as_array(down_weight, "down_weight", real=True)
    gate = None if gate_weight is None else as_array(gate_weight, "gate_weight", real=True)
    d = x.shape[-1]
    if up.ndim != 2 or up.shape[1] != d:
        raise ValueError(f"up_weight must have shape (f, d) = (f, {d}), got {up.shape}")
    if down.shape != (d, up.shape[0]):
        raise ValueError(f"down_weight must have shape (d, f) = {(d, up.shape[0])}, got {down.shape}")
    if gate is not None and gate.shape != up.shape:
        raise ValueError(f"gate_weight must have shape {up.shape}, got {gate.shape}")
    if activation not in ("silu", "gelu") or (gate is not None and activation != "silu"):
        raise ValueError(f"activation must be 'silu' (gated or not) or 'gelu' (not gated), got {activation!r}")
    kind = "gated_silu" if gate is not None else activation
    P = {"m.up_weight": up, "m.down_weight": down, "m.gate_weight": gate}
    return _run(x, lambda m: _mlp(MP(), m, P, "m", kind), lambda ops, t: _mlp(ops, t, P, "m", kind))


def hybrid_stack(x, config, params) -> Reference:
    """The whole stack on x (b, l, d_model) (module doc).  Returns Reference (b, l, d_model) with
    magnitudes {"forward_error": E}; tolerance terms [(1, E)] (``tolerance_terms``)."""
    cfg = read_config(config)
    d_model = _d_model(cfg, params)
    P = check_params(cfg, params, d_model)
    x = _check_x(x, d_model)
    return _run(x, lambda m: _stack(MP(), m, cfg, P), lambda ops, t: _stack(ops, t, cfg, P))


def hybrid_error_bound(x, config, params):
    """Only the float64 pass: (float64 value, E) -- the tolerance of ``hybrid_stack`` without its
    multiple-precision value (cheap; for sizes the oracle is too slow for)."""
    cfg = read_config(config)
    d_model = _d_model(cfg, params)
    P = check_params(cfg, params, d_model)
    x = _check_x(x, d_model)
    return _jac_bound(x, lambda ops, t: _stack(ops, t, cfg, P))
