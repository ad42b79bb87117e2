"""Mamba-2 block in torch (as implementations/numpy/mamba2.py: mamba2.Mamba2's non-fused path with
rmsnorm=True, norm_before_gate=False, D per head), weights from a NumPy ``Mamba2Weights``.

Computes in the parameters' dtype (float32 by default): bf16/fp16 activations are upcast on entry
and the output is returned in the activation dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssm_conformance.implementations.numpy import mamba2 as np_mamba2
from ssm_conformance.implementations.torch.mamba import _param, causal_conv1d, causal_conv1d_update, selective_state_update
from ssm_conformance.implementations.torch.ssd import ssd

_SCALARS = ("headdim", "ngroups", "norm_eps")


def gated_rmsnorm(y, z, weight, eps, group_size):
    """rms_norm_ref(norm_before_gate=False): x = y SiLU(z); per group x / sqrt(mean(x^2) + eps) * weight."""
    xg = y * F.silu(z)
    shape = xg.shape
    xg = xg.reshape(*shape[:-1], shape[-1] // group_size, group_size)
    xg = xg * torch.rsqrt(xg.square().mean(dim=-1, keepdim=True) + eps)
    return xg.reshape(shape) * weight


class Mamba2State:
    """Decoding state: conv (b, d_inner + 2 g n, d_conv - 1), ssm (b, h, headdim, d_state)."""

    def __init__(self, conv, ssm):
        self.conv, self.ssm = conv, ssm


class Mamba2Block(nn.Module):
    def __init__(self, weights: np_mamba2.Mamba2Weights, chunk_size=64, dtype=torch.float32, device=None):
        super().__init__()
        for k, v in weights.as_dict().items():
            if k in _SCALARS:
                setattr(self, k, v)
            else:
                setattr(self, k, _param(v, dtype, device))
        self.d_model = weights.d_model
        self.d_inner = weights.d_inner
        self.nheads = weights.nheads
        self.d_state = weights.d_state
        self.d_conv = weights.d_conv
        self.chunk_size = int(chunk_size)

    @classmethod
    def random(cls, d_model, *, chunk_size=64, dtype=torch.float32, device=None, **kw):
        return cls(np_mamba2.Mamba2Weights.random(d_model, **kw), chunk_size=chunk_size, dtype=dtype, device=device)

    def to_numpy(self) -> np_mamba2.Mamba2Weights:
        kw = {}
        for k in np_mamba2.Mamba2Weights.__dataclass_fields__:
            v = getattr(self, k)
            kw[k] = v if (k in _SCALARS or v is None) else v.detach().cpu().double().numpy()
        return np_mamba2.Mamba2Weights(**kw)

    def init_state(self, batch):
        p = self.A_log
        return Mamba2State(
            conv=torch.zeros(batch, self.conv_weight.shape[0], self.d_conv - 1, dtype=p.dtype, device=p.device),
            ssm=torch.zeros(batch, self.nheads, self.headdim, self.d_state, dtype=p.dtype, device=p.device))

    def _check_input(self, x, ndim):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"Mamba2Block: x must be a torch.Tensor, got {type(x).__name__}")
        letters = "(b, l, d_model)" if ndim == 3 else "(b, d_model)"
        if x.dim() != ndim or x.shape[-1] != self.d_model:
            raise ValueError(f"Mamba2Block: x must have shape {letters} with d_model = {self.d_model}, "
                             f"got {tuple(x.shape)}")

    def _split(self, zxbcdt):
        di, gn = self.d_inner, self.ngroups * self.d_state
        return torch.split(zxbcdt, [di, di + 2 * gn, self.nheads], dim=-1)

    def _split_xbc(self, xBC):
        gn = self.ngroups * self.d_state
        return torch.split(xBC, [self.d_inner, gn, gn], dim=-1)

    def forward(self, u, state: Mamba2State | None = None):
        """u (b, l, d_model) -> (b, l, d_model); with ``state``, continue from it and update it."""
        self._check_input(u, 3)
        dtype_in = u.dtype
        u = u.to(self.A_log.dtype)
        b, l, _ = u.shape
        h, p, g, n = self.nheads, self.headdim, self.ngroups, self.d_state
        z, xBC, dt = self._split(F.linear(u, self.in_proj_weight, self.in_proj_bias))
        xBC, conv_final = causal_conv1d(xBC.transpose(1, 2), self.conv_weight, self.conv_bias, "silu",
                                        initial_states=None if state is None else state.conv,
                                        return_final_states=True)
        xs, B, C = self._split_xbc(xBC.transpose(1, 2))
        y, final = ssd(xs.reshape(b, l, h, p), dt, -torch.exp(self.A_log), B.reshape(b, l, g, n),
                       C.reshape(b, l, g, n), self.chunk_size, D=self.D, dt_bias=self.dt_bias,
                       initial_states=None if state is None else state.ssm, dt_softplus=True,
                       return_final_states=True)
        if state is not None:
            with torch.no_grad():
                state.conv.copy_(conv_final)
                state.ssm.copy_(final)
        y = gated_rmsnorm(y.reshape(b, l, h * p), z, self.norm_weight, self.norm_eps, self.d_inner // g)
        return F.linear(y, self.out_proj_weight, self.out_proj_bias).to(dtype_in)

    def step(self, u_t, state: Mamba2State):
        """One token: u_t (b, d_model) -> (y_t (b, d_model), state), the state updated in place."""
        self._check_input(u_t, 2)
        dtype_in = u_t.dtype
        u_t = u_t.to(self.A_log.dtype)
        b = u_t.shape[0]
        h, p, g, n = self.nheads, self.headdim, self.ngroups, self.d_state
        z, xBC, dt = self._split(F.linear(u_t, self.in_proj_weight, self.in_proj_bias))
        xBC = causal_conv1d_update(xBC, state.conv, self.conv_weight, self.conv_bias, "silu")
        xs, B, C = self._split_xbc(xBC)
        A = (-torch.exp(self.A_log))[:, None, None].expand(h, p, n)
        y = selective_state_update(state.ssm, xs.reshape(b, h, p), dt[:, :, None].expand(b, h, p), A,
                                   B.reshape(b, g, n), C.reshape(b, g, n),
                                   D=self.D[:, None].expand(h, p), dt_bias=self.dt_bias[:, None].expand(h, p),
                                   dt_softplus=True)
        y = gated_rmsnorm(y.reshape(b, h * p), z, self.norm_weight, self.norm_eps, self.d_inner // g)
        return F.linear(y, self.out_proj_weight, self.out_proj_bias).to(dtype_in), state
