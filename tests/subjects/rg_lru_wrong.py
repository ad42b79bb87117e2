"""Wrong ``rg_lru`` subjects (realistic mistakes in RG-LRU kernels) and their control: one
sequential float32 loop, ``_loop``, with one mistake switched in each (tests/test_meta_rg_lru.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _loop(x, gate_x, gate_a, a_param, reset, h0, return_last_state, *, sqrt_form="expm1",
          reset_mode="right", use_h0=True, decay_factor=8.0, state_dtype=torch.float32,
          last_offset=0):
    cd = torch.float64 if x.dtype == torch.float64 else torch.float32
    sd = cd if state_dtype == torch.float32 else state_dtype
    b, l, d = x.shape
    log_a = -decay_factor * torch.sigmoid(gate_a.to(cd)) * F.softplus(a_param.to(cd))
    a = torch.exp(log_a)
    if sqrt_form == "expm1":
        m = torch.sqrt(-torch.expm1(2.0 * log_a))
    else:   # the textbook form: 1 - a^2 cancels where a is near 1
        m = torch.sqrt(1.0 - torch.exp(2.0 * log_a))
    if reset is not None and reset_mode != "ignored":
        r = reset[..., None]
        m = torch.where(r, torch.ones_like(m), m)
        if reset_mode == "right":
            a = torch.where(r, torch.zeros_like(a), a)
    bb = m * torch.sigmoid(gate_x.to(cd)) * x.to(cd)
    h = torch.zeros(b, d, dtype=sd) if (h0 is None or not use_h0) else h0.to(sd)
    ys, states = [], []
    for t in range(l):
        h = (a[:, t] * h.to(cd) + bb[:, t]).to(sd)
        ys.append(h)
        states.append(h)
    y = torch.stack(ys, dim=1).to(x.dtype)
    last = states[max(0, l - 1 - last_offset)].to(torch.float32)
    return (y, last) if return_last_state else y


def rg_correct(x, gate_x, gate_a, a_param, reset=None, h0=None, return_last_state=False):
    """The control: the contract's recurrence, m = sqrt(-expm1(2 log a))."""
    return _loop(x, gate_x, gate_a, a_param, reset, h0, return_last_state)


def rg_cancelling_sqrt(x, gate_x, gate_a, a_param, reset=None, h0=None, return_last_state=False):
    """m = sqrt(1 - exp(2 log a)) (RecurrentGemma's form): 1 - a^2 cancels near a = 1."""
    return _loop(x, gate_x, gate_a, a_param, reset, h0, return_last_state, sqrt_form="cancel")


def rg_ignores_reset(x, gate_x, gate_a, a_param, reset=None, h0=None, return_last_state=False):
    """reset never read: documents run into each other."""
    return _loop(x, gate_x, gate_a, a_param, reset, h0, return_last_state, reset_mode="ignored")


def rg_reset_keeps_state(x, gate_x, gate_a, a_param, reset=None, h0=None,
                         return_last_state=False):
    """At a reset m = 1, but h_{t-1} still decays into h_t (the state is not dropped)."""
    return _loop(x, gate_x, gate_a, a_param, reset, h0, return_last_state,
                 reset_mode="keeps_state")


def rg_ignores_h0(x, gate_x, gate_a, a_param, reset=None, h0=None, return_last_state=False):
    """h0 accepted and never used: the scan starts from 0."""
    return _loop(x, gate_x, gate_a, a_param, reset, h0, return_last_state, use_h0=False)


def rg_no_decay_constant(x, gate_x, gate_a, a_param, reset=None, h0=None,
                         return_last_state=False):
    """log a = -sigmoid(gate_a) softplus(a_param): Griffin's constant c = 8 left out."""
    return _loop(x, gate_x, gate_a, a_param, reset, h0, return_last_state, decay_factor=1.0)


def rg_fp16_state(x, gate_x, gate_a, a_param, reset=None, h0=None, return_last_state=False):
    """The state carried in float16 between steps (a half-precision cache)."""
    return _loop(x, gate_x, gate_a, a_param, reset, h0, return_last_state,
                 state_dtype=torch.float16)


def rg_last_state_off_by_one(x, gate_x, gate_a, a_param, reset=None, h0=None,
                             return_last_state=False):
    """h_last is the state before the last step, h_{l-2} (h_0 when l = 1)."""
    return _loop(x, gate_x, gate_a, a_param, reset, h0, return_last_state, last_offset=1)
