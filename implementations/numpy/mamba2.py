"""Mamba-2 block in NumPy float64, as mamba_ssm/modules/mamba2.py (non-fused path, rmsnorm=True,
norm_before_gate=False, D per head, no extra MLP channels) and its ``step``:

    [z, x, B, C, dt] = in_proj(u)
    [x, B, C] = SiLU(causal_conv1d([x, B, C]))
    y = SSD(x, dt, A = -exp(A_log), B, C, D, dt_bias, dt_softplus=True)
    y = RMSNorm_grouped(y * SiLU(z)) * norm_weight          (group size d_inner / ngroups)
    out = out_proj(y)
"""
from __future__ import annotations

from dataclasses import dataclass, fields
import math

import numpy as np

from ssm_conformance.implementations.numpy.mamba import (
    _arr,
    _linear,
    causal_conv1d,
    causal_conv1d_update,
    selective_state_update,
    silu,
)
from ssm_conformance.implementations.numpy.ssd import ssd


def gated_rmsnorm(y, z, weight, eps, group_size):
    """layernorm_gated.rms_norm_ref with norm_before_gate=False: x = y SiLU(z), then each group
    of ``group_size`` channels scaled by 1/sqrt(mean(x^2) + eps), times weight."""
    xg = y * silu(z)
    shape = xg.shape
    xg = xg.reshape(shape[:-1] + (shape[-1] // group_size, group_size))
    rstd = 1.0 / np.sqrt(np.mean(xg * xg, axis=-1, keepdims=True) + eps)
    return (xg * rstd).reshape(shape) * weight


@dataclass
class Mamba2Weights:
    """Parameters of one Mamba-2 block (names of mamba2.Mamba2; conv weight (conv_dim, d_conv))."""

    in_proj_weight: np.ndarray      # (2 d_inner + 2 g n + h, d_model): rows [z; x; B; C; dt]
    conv_weight: np.ndarray         # (d_inner + 2 g n, d_conv)
    conv_bias: np.ndarray | None    # (d_inner + 2 g n,)
    dt_bias: np.ndarray             # (h,)
    A_log: np.ndarray               # (h,); A = -exp(A_log)
    D: np.ndarray                   # (h,)
    norm_weight: np.ndarray         # (d_inner,)
    out_proj_weight: np.ndarray     # (d_model, d_inner)
    headdim: int
    ngroups: int = 1
    norm_eps: float = 1e-5
    in_proj_bias: np.ndarray | None = None
    out_proj_bias: np.ndarray | None = None

    @property
    def d_model(self):
        return self.out_proj_weight.shape[0]

    @property
    def d_inner(self):
        return self.out_proj_weight.shape[1]

    @property
    def nheads(self):
        return self.A_log.shape[0]

    @property
    def d_state(self):
        return (self.conv_weight.shape[0] - self.d_inner) // (2 * self.ngroups)

    @property
    def d_conv(self):
        return self.conv_weight.shape[1]

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def random(cls, d_model, d_state=16, d_conv=4, expand=2, headdim=8, ngroups=1, A_init_range=(1, 16),
               dt_min=1e-3, dt_max=0.1, bias=False, conv_bias=True, seed=0):
        """Initialization of mamba2.Mamba2 (uniform linear weights, A ~ U(A_init_range), D = 1,
        dt_bias = softplus^-1 of a log-uniform dt, norm weight 1)."""
        rng = np.random.default_rng(seed)
        d_inner = expand * d_model
        if d_inner % headdim:
            raise ValueError(f"Mamba2Weights: d_inner = {d_inner} must be a multiple of headdim = {headdim}")
        h = d_inner // headdim
        if h % ngroups:
            raise ValueError(f"Mamba2Weights: nheads = {h} must be a multiple of ngroups = {ngroups}")
        conv_dim = d_inner + 2 * ngroups * d_state

        def lin(out_f, in_f):
            k = 1.0 / math.sqrt(in_f)
            return rng.uniform(-k, k, size=(out_f, in_f))

        dt = np.exp(rng.uniform(size=h) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = np.maximum(dt, 1e-4)
        k_conv = 1.0 / math.sqrt(d_conv)
        d_in_proj = 2 * d_inner + 2 * ngroups * d_state + h
        return cls(
            in_proj_weight=lin(d_in_proj, d_model),
            conv_weight=rng.uniform(-k_conv, k_conv, size=(conv_dim, d_conv)),
            conv_bias=rng.uniform(-k_conv, k_conv, size=conv_dim) if conv_bias else None,
            dt_bias=dt + np.log(-np.expm1(-dt)),
            A_log=np.log(rng.uniform(*A_init_range, size=h)),
            D=np.ones(h),
            norm_weight=np.ones(d_inner),
            out_proj_weight=lin(d_model, d_inner),
            headdim=headdim,
            ngroups=ngroups,
            in_proj_bias=rng.uniform(-0.1, 0.1, size=d_in_proj) if bias else None,
            out_proj_bias=rng.uniform(-0.1, 0.1, size=d_model) if bias else None,
        )


@dataclass
class Mamba2State:
    conv: np.ndarray   # (b, d_inner + 2 g n, d_conv - 1)
    ssm: np.ndarray    # (b, h, headdim, d_state)


_SCALARS = ("headdim", "ngroups", "norm_eps")


class Mamba2Block:
    def __init__(self, weights: Mamba2Weights, chunk_size=64):
        self.w = Mamba2Weights(**{k: (v if k in _SCALARS else _arr("Mamba2Block", k, v))
                                  for k, v in weights.as_dict().items()})
        self.chunk_size = int(chunk_size)

    def init_state(self, batch):
        w = self.w
        return Mamba2State(conv=np.zeros((batch, w.conv_weight.shape[0], w.d_conv - 1)),
                           ssm=np.zeros((batch, w.nheads, w.headdim, w.d_state)))

    def _check_input(self, x, ndim):
        x = _arr("Mamba2Block", "x", x)
        letters = "(b, l, d_model)" if ndim == 3 else "(b, d_model)"
        if x.ndim != ndim or x.shape[-1] != self.w.d_model:
            raise ValueError(f"Mamba2Block: x must have shape {letters} with d_model = {self.w.d_model}, "
                             f"got {x.shape}")
        return x

    def _split(self, zxbcdt):
        w = self.w
        di, gn = w.d_inner, w.ngroups * w.d_state
        return zxbcdt[..., :di], zxbcdt[..., di:2 * di + 2 * gn], zxbcdt[..., 2 * di + 2 * gn:]

    def _split_xbc(self, xBC):
        w = self.w
        di, gn = w.d_inner, w.ngroups * w.d_state
        return xBC[..., :di], xBC[..., di:di + gn], xBC[..., di + gn:]

    def forward(self, u, state: Mamba2State | None = None):
        """u (b, l, d_model) -> (b, l, d_model); with ``state``, continue from it and update it."""
        w = self.w
        u = self._check_input(u, 3)
        b, l, _ = u.shape
        h, p, g, n = w.nheads, w.headdim, w.ngroups, w.d_state
        z, xBC, dt = self._split(_linear(u, w.in_proj_weight, w.in_proj_bias))
        xBC, conv_final = causal_conv1d(xBC.transpose(0, 2, 1), w.conv_weight, w.conv_bias, "silu",
                                        initial_states=None if state is None else state.conv,
                                        return_final_states=True)
        xs, B, C = self._split_xbc(xBC.transpose(0, 2, 1))
        y, final = ssd(xs.reshape(b, l, h, p), dt, -np.exp(w.A_log), B.reshape(b, l, g, n),
                       C.reshape(b, l, g, n), self.chunk_size, D=w.D, dt_bias=w.dt_bias,
                       initial_states=None if state is None else state.ssm, dt_softplus=True,
                       return_final_states=True)
        if state is not None:
            state.conv[...] = conv_final
            state.ssm[...] = final
        y = gated_rmsnorm(y.reshape(b, l, h * p), z, w.norm_weight, w.norm_eps, w.d_inner // g)
        return _linear(y, w.out_proj_weight, w.out_proj_bias)

    def step(self, u_t, state: Mamba2State):
        """One token: u_t (b, d_model) -> (y_t (b, d_model), state), the state updated in place.
        The SSM step is selective_state_update in its heads form, as Mamba2.step."""
        w = self.w
        u_t = self._check_input(u_t, 2)
        b = u_t.shape[0]
        h, p, g, n = w.nheads, w.headdim, w.ngroups, w.d_state
        z, xBC, dt = self._split(_linear(u_t, w.in_proj_weight, w.in_proj_bias))
        xBC = causal_conv1d_update(xBC, state.conv, w.conv_weight, w.conv_bias, "silu")
        xs, B, C = self._split_xbc(xBC)
        A = np.broadcast_to(-np.exp(w.A_log)[:, None, None], (h, p, n))
        y = selective_state_update(state.ssm, xs.reshape(b, h, p), np.repeat(dt[:, :, None], p, axis=2),
                                   A, B.reshape(b, g, n), C.reshape(b, g, n),
                                   D=np.repeat(w.D[:, None], p, axis=1),
                                   dt_bias=np.repeat(w.dt_bias[:, None], p, axis=1), dt_softplus=True)
        y = gated_rmsnorm(y.reshape(b, h * p), z, w.norm_weight, w.norm_eps, w.d_inner // g)
        return _linear(y, w.out_proj_weight, w.out_proj_bias), state
