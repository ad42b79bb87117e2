"""Mamba-1 kernels and the Mamba block in torch, differentiable, for any float dtype.

Same semantics as implementations/numpy/mamba.py (mamba-ssm's ``selective_scan_ref``,
``selective_state_update_ref``, ``mamba_inner_ref``; causal-conv1d's ``causal_conv1d_ref`` /
``causal_conv1d_update_ref``). Precision follows mamba-ssm's kernels: inputs of any float dtype are
computed in float32 (float64 when the input is float64), with float32 accumulation, and the output
is returned in the input dtype; the returned SSM state stays in the compute dtype, as the
reference's ``last_state`` (complex for complex A).

Speed: the recurrence runs time-major (l, b, d, n), one fused multiply-add per step over a
contiguous slab, with a hand-written backward (implementations/torch/scan.py); the contraction
with C is one batched matmul over all steps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssm_conformance.implementations.numpy import mamba as np_mamba
from ssm_conformance.implementations.numpy._mamba_checks import (
    check_causal_conv1d,
    check_conv_update,
    check_selective_scan,
    check_state_update,
)
from ssm_conformance.implementations.torch.scan import scan_time_major


def _need_tensors(fn, **kw):
    for name, x in kw.items():
        if x is not None and not isinstance(x, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor or None, got {type(x).__name__}")
        if x is not None and not (x.is_floating_point() or x.is_complex()):
            raise TypeError(f"{fn}: {name} must be a floating-point tensor, got {x.dtype}")


def real_compute_dtype(dtype):
    """float64 stays float64; every other float dtype (float32, bfloat16, float16) runs in float32."""
    return torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32


def _complex_of(dtype):
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _complex_pairs(X, cdt):
    """view_as_complex of '... (L two) -> ... L two' (mamba-ssm's interleaved layout)."""
    X = X.to(cdt).contiguous()
    return torch.view_as_complex(X.view(*X.shape[:-1], X.shape[-1] // 2, 2))


def _time_major(X, kind):
    if kind == "variable":
        return X.permute(2, 0, 1)          # (b, n, l) -> (l, b, n)
    if kind == "grouped":
        return X.permute(3, 0, 1, 2)       # (b, g, n, l) -> (l, b, g, n)
    return X


# ----------------------------------------------------------------------------------------------
# Selective scan
# ----------------------------------------------------------------------------------------------

# Elements of one (T, b, d, n) block of the scan: small enough to stay in cache.
BLOCK_ELEMENTS = 1 << 18


def _block_len(l, width):
    """Time steps per block so that one (T, b, d, n) block holds about BLOCK_ELEMENTS elements."""
    return max(1, min(l, BLOCK_ELEMENTS // max(1, width)))


def _expand_bu(dtu, Bt, kind, groups):
    """delta_t u_t B_t as (T, b, d, n) from dtu (T, b, d) and B: constant (d, n), variable
    (T, b, n), grouped (T, b, g, n) -- channel d uses group d // (d/g), as repeat(B, 'B G N L ->
    B (G H) N L')."""
    if kind == "constant":
        return dtu.unsqueeze(-1) * Bt
    if kind == "variable":
        return dtu.unsqueeze(-1) * Bt.unsqueeze(2)
    T, b, d = dtu.shape
    n = Bt.shape[-1]
    return (dtu.view(T, b, groups, d // groups, 1) * Bt.unsqueeze(3)).reshape(T, b, d, n)


def _contract_C(H, Ct, kind, groups):
    """y_t = sum_n C_tn h_tn: (T, b, d) from H (T, b, d, n) and C in the forms of _expand_bu."""
    if kind == "constant":
        return (H * Ct).sum(-1)
    if kind == "variable":
        return torch.matmul(H, Ct.unsqueeze(-1)).squeeze(-1)
    T, b, d, n = H.shape
    return torch.matmul(H.view(T, b, groups, d // groups, n), Ct.unsqueeze(-1)).reshape(T, b, d)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, initial_state=None):
    """selective_scan_ref semantics (see the module docstring for dtypes).

    u, delta (b,d,l); A (d,n) real or complex; B, C (d,n) | (b,n,l) | (b,g,n,l) (complex A:
    variable forms real with interleaved pairs, last axis 2l); D, delta_bias (d,); z (b,d,l).
    Returns out (b,d,l) in u.dtype [, last_state (b,d,n) in the compute dtype]. ``initial_state``
    (b,d,n), an extension, is the state before step 0.
    """
    fn = "selective_scan"
    _need_tensors(fn, u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias,
                  initial_state=initial_state)
    s = check_selective_scan(u, delta, A, B, C, D, z, delta_bias, initial_state)
    b, d, l, n = s.b, s.d, s.l, s.n
    rdt = real_compute_dtype(u.dtype)
    cdt = _complex_of(rdt) if s.complex else rdt
    dtype_in = u.dtype

    u = u.to(rdt)
    delta = delta.to(rdt)
    if delta_bias is not None:
        delta = delta + delta_bias.to(rdt)[:, None]       # fp32 bias, before the softplus
    if delta_softplus:
        delta = F.softplus(delta)                         # threshold 20: identity above
    A = A.to(cdt)
    if s.B_kind == "constant":
        B = B.to(cdt if B.is_complex() else rdt)
    else:
        B = _complex_pairs(B, rdt) if s.complex else B.to(rdt)
    if s.C_kind == "constant":
        C = C.to(cdt if C.is_complex() else rdt)
    else:
        C = _complex_pairs(C, rdt) if s.complex else C.to(rdt)

    dt = delta.permute(2, 0, 1).contiguous()              # (l, b, d)
    dtu = dt * u.permute(2, 0, 1)                         # (l, b, d)
    Bt, Ct = _time_major(B, s.B_kind), _time_major(C, s.C_kind)
    # Blocks of T steps: the (T, b, d, n) temporaries stay small (cache-resident, reused) instead
    # of four (l, b, d, n) arrays; the state is carried from block to block.
    T = _block_len(l, b * d * n)
    h = None if initial_state is None else initial_state.to(cdt)
    ys = []
    # split (not slicing in a loop): its backward concatenates the block gradients once.
    B_blocks = [B] * len(range(0, l, T)) if s.B_kind == "constant" else Bt.split(T)
    C_blocks = [C] * len(range(0, l, T)) if s.C_kind == "constant" else Ct.split(T)
    for dt_k, dtu_k, B_k, C_k in zip(dt.split(T), dtu.split(T), B_blocks, C_blocks):
        a = (dt_k.unsqueeze(-1) * A).exp_()               # exp(delta A): (T, b, d, n)
        bu = _expand_bu(dtu_k, B_k, s.B_kind, s.B_groups)
        if bu.dtype != a.dtype:                           # real B with complex A
            bu = bu.to(a.dtype)
        H, h = scan_time_major(a, bu, h)                  # h_t = a_t h_{t-1} + (delta B u)_t
        ys.append(_contract_C(H, C_k, s.C_kind, s.C_groups))
    y = torch.cat(ys) if len(ys) > 1 else ys[0]           # (l, b, d)
    if y.is_complex():
        y = 2.0 * y.real                                  # one of each conjugate pair kept
    out = y.permute(1, 2, 0)                              # (b, d, l)
    if D is not None:
        out = out + u * D.to(rdt)[:, None]
    if z is not None:
        out = out * F.silu(z.to(rdt))
    out = out.to(dtype_in)
    if return_last_state:
        return out, h                                     # a fresh tensor (the scan's own output)
    return out


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """One decode step as selective_state_update_ref; ``state`` is updated IN PLACE (stored in its
    own dtype) and out (b,d) [or (b,h,d)] is returned in x.dtype. Computed in float32 (float64 when
    state or x is float64); out uses the new state before it is rounded to the state's dtype, as
    the Triton kernel does."""
    fn = "selective_state_update"
    _need_tensors(fn, state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
    s = check_state_update(state, x, dt, A, B, C, D, z, dt_bias)
    rdt = torch.float64 if torch.float64 in (state.dtype, x.dtype) else torch.float32
    dtype_in = x.dtype
    st = state.to(rdt, copy=True)          # the old state, kept apart from the in-place update
    x, dt, A, B, C = x.to(rdt), dt.to(rdt), A.to(rdt), B.to(rdt), C.to(rdt)
    D = None if D is None else D.to(rdt)
    z = None if z is None else z.to(rdt)
    dt_bias = None if dt_bias is None else dt_bias.to(rdt)
    if not s.heads:
        st, x, dt, A, B, C = st[:, None], x[:, None], dt[:, None], A[None], B[:, None], C[:, None]
        D = None if D is None else D[None]
        z = None if z is None else z[:, None]
        dt_bias = None if dt_bias is None else dt_bias[None]
    if dt_bias is not None:
        dt = dt + dt_bias
    if dt_softplus:
        dt = F.softplus(dt)
    rep = s.h // s.g                                      # head h uses group h // (h/g)
    Bh = B.repeat_interleave(rep, dim=1)                  # (b, h, n)
    Ch = C.repeat_interleave(rep, dim=1)
    new = st * torch.exp(dt.unsqueeze(-1) * A) + (dt * x).unsqueeze(-1) * Bh.unsqueeze(2)
    state.copy_(new if s.heads else new[:, 0])
    out = torch.matmul(new, Ch.unsqueeze(-1)).squeeze(-1)  # (b, h, d)
    if D is not None:
        out = out + x * D
    if z is not None:
        out = out * F.silu(z)
    out = out if s.heads else out[:, 0]
    return out.to(dtype_in)


# ----------------------------------------------------------------------------------------------
# Causal depthwise conv1d
# ----------------------------------------------------------------------------------------------

def causal_conv1d(x, weight, bias=None, activation=None, *, initial_states=None, return_final_states=False):
    """causal_conv1d_fn: x (b,d,l), weight (d,w) with weight[:, -1] on x_t, bias (d,), activation
    None/'silu'/'swish'; depthwise F.conv1d on the input padded on the left by w-1 zeros (or by
    ``initial_states`` (b,d,w-1)). Computed in float32 (float64 for float64 x or weight), returned
    in x.dtype; with return_final_states also the last w-1 inputs (b,d,w-1)."""
    fn = "causal_conv1d"
    _need_tensors(fn, x=x, weight=weight, bias=bias, initial_states=initial_states)
    s = check_causal_conv1d(x, weight, bias, activation, initial_states)
    rdt = torch.float64 if torch.float64 in (x.dtype, weight.dtype) else torch.float32
    xc, wc = x.to(rdt), weight.to(rdt)
    if initial_states is None:
        xp = F.pad(xc, (s.w - 1, 0))
    else:
        xp = torch.cat([initial_states.to(rdt), xc], dim=-1)
    out = F.conv1d(xp, wc.unsqueeze(1), None if bias is None else bias.to(rdt), groups=s.d)
    if activation in ("silu", "swish"):
        out = F.silu(out)
    out = out.to(x.dtype)
    if return_final_states:
        return out, xp[..., xp.shape[-1] - (s.w - 1):].to(x.dtype)
    return out


def causal_conv1d_update(x, conv_state, weight, bias=None, activation=None):
    """causal_conv1d_update_ref without the circular buffer: x (b,d) or (b,d,s), conv_state
    (b,d,state_len >= w-1) of previous inputs, updated IN PLACE; returns out like x."""
    fn = "causal_conv1d_update"
    _need_tensors(fn, x=x, conv_state=conv_state, weight=weight, bias=bias)
    s = check_conv_update(x, conv_state, weight, bias, activation)
    rdt = torch.float64 if torch.float64 in (x.dtype, weight.dtype) else torch.float32
    squeeze = x.dim() == 2
    xs = (x.unsqueeze(-1) if squeeze else x).to(rdt)
    x_new = torch.cat([conv_state.to(rdt), xs], dim=-1)   # (b, d, state_len + s)
    if s.state_len > 0:
        conv_state.copy_(x_new[..., x_new.shape[-1] - s.state_len:])
    start = s.state_len - (s.w - 1)
    out = F.conv1d(x_new[..., start:], weight.to(rdt).unsqueeze(1),
                   None if bias is None else bias.to(rdt), groups=s.d)
    if activation in ("silu", "swish"):
        out = F.silu(out)
    out = out.to(x.dtype)
    return out.squeeze(-1) if squeeze else out


# ----------------------------------------------------------------------------------------------
# Mamba block
# ----------------------------------------------------------------------------------------------

class MambaState:
    """Decoding state: conv (b, d_inner, d_conv - 1) previous conv inputs, ssm (b, d_inner, d_state)."""

    def __init__(self, conv, ssm):
        self.conv, self.ssm = conv, ssm


def _param(x, dtype, device):
    return None if x is None else nn.Parameter(torch.as_tensor(x, dtype=dtype, device=device).clone())


class MambaBlock(nn.Module):
    """Mamba mixer (mamba_simple.Mamba, non-fused path), weights from a NumPy ``MambaWeights``.

    Computes in the parameters' dtype (float32 by default, float64 if asked): bf16/fp16
    activations are upcast on entry and the output is returned in the activation dtype.
    """

    def __init__(self, weights: np_mamba.MambaWeights, dtype=torch.float32, device=None):
        super().__init__()
        for k, v in weights.as_dict().items():
            setattr(self, k, _param(v, dtype, device))
        self.d_model = weights.d_model
        self.d_inner = weights.d_inner
        self.d_state = weights.d_state
        self.d_conv = weights.d_conv
        self.dt_rank = weights.dt_rank

    @classmethod
    def random(cls, d_model, *, dtype=torch.float32, device=None, **kw):
        return cls(np_mamba.MambaWeights.random(d_model, **kw), dtype=dtype, device=device)

    def to_numpy(self) -> np_mamba.MambaWeights:
        """Export the weights (float64 NumPy arrays) for implementations.numpy.mamba.MambaBlock."""
        names = [f for f in np_mamba.MambaWeights.__dataclass_fields__]
        return np_mamba.MambaWeights(**{k: None if getattr(self, k) is None else
                                        getattr(self, k).detach().cpu().double().numpy() for k in names})

    @property
    def _dtype(self):
        return self.A_log.dtype

    def init_state(self, batch):
        p = self.A_log
        return MambaState(conv=torch.zeros(batch, self.d_inner, self.d_conv - 1, dtype=p.dtype, device=p.device),
                          ssm=torch.zeros(batch, self.d_inner, self.d_state, dtype=p.dtype, device=p.device))

    def _check_input(self, x, ndim):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"MambaBlock: x must be a torch.Tensor, got {type(x).__name__}")
        letters = "(b, l, d_model)" if ndim == 3 else "(b, d_model)"
        if x.dim() != ndim or x.shape[-1] != self.d_model:
            raise ValueError(f"MambaBlock: x must have shape {letters} with d_model = {self.d_model}, "
                             f"got {tuple(x.shape)}")

    def _split_x_dbl(self, x_dbl):
        r, n = self.dt_rank, self.d_state
        return x_dbl[..., :r], x_dbl[..., r:r + n], x_dbl[..., r + n:]

    def forward(self, x, state: MambaState | None = None):
        """x (b, l, d_model) -> (b, l, d_model); with ``state``, continue from it and update it."""
        self._check_input(x, 3)
        dtype_in = x.dtype
        x = x.to(self._dtype)
        xz = F.linear(x, self.in_proj_weight, self.in_proj_bias).transpose(1, 2)   # (b, 2 d_inner, l)
        xs, z = xz[:, :self.d_inner], xz[:, self.d_inner:]
        xc, conv_final = causal_conv1d(xs, self.conv_weight, self.conv_bias, "silu",
                                       initial_states=None if state is None else state.conv,
                                       return_final_states=True)
        dt, B, C = self._split_x_dbl(F.linear(xc.transpose(1, 2), self.x_proj_weight))
        delta = F.linear(dt, self.dt_proj_weight).transpose(1, 2)                  # (b, d_inner, l)
        A = -torch.exp(self.A_log)
        y, last = selective_scan(xc, delta, A, B.transpose(1, 2), C.transpose(1, 2), self.D, z,
                                 delta_bias=self.dt_proj_bias, delta_softplus=True, return_last_state=True,
                                 initial_state=None if state is None else state.ssm)
        if state is not None:
            with torch.no_grad():
                state.conv.copy_(conv_final)
                state.ssm.copy_(last)
        return F.linear(y.transpose(1, 2), self.out_proj_weight, self.out_proj_bias).to(dtype_in)

    def step(self, x_t, state: MambaState):
        """One token: x_t (b, d_model) -> (y_t (b, d_model), state), the state updated in place."""
        self._check_input(x_t, 2)
        dtype_in = x_t.dtype
        x_t = x_t.to(self._dtype)
        xz = F.linear(x_t, self.in_proj_weight, self.in_proj_bias)
        xs, z = xz[:, :self.d_inner], xz[:, self.d_inner:]
        xc = causal_conv1d_update(xs, state.conv, self.conv_weight, self.conv_bias, "silu")
        dt, B, C = self._split_x_dbl(F.linear(xc, self.x_proj_weight))
        dt = F.linear(dt, self.dt_proj_weight)
        y = selective_state_update(state.ssm, xc, dt, -torch.exp(self.A_log), B, C, self.D, z,
                                   dt_bias=self.dt_proj_bias, dt_softplus=True)
        return F.linear(y, self.out_proj_weight, self.out_proj_bias).to(dtype_in), state
