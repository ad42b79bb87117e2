"""Subjects for the long-sequence meta-tests (tests/test_meta_long_scan.py): chunked scans as GPU
kernels write them, with the state carried between chunks of CHUNK steps, and three mistakes that
only show past the first chunk boundary -- beyond the lengths the multiple-precision oracle can
judge (issue 11). Each is right on every input shorter than its chunk.

selective_scan (role semantics: mamba-ssm's selective_scan_ref, CONTRACT.md):
  selective_scan_chunked_correct -- the control: chunks of 2048 steps (mamba-ssm's CUDA kernel's
                                    chunk), each scanned from a zero state in parallel, the chunk
                                    states carried sequentially, each step adding its chunk's
                                    incoming state times the running product of the decays.
  ss_drops_state_past_2048       -- the carried state is dropped at the chunk boundaries (every
                                    chunk starts from zero): out is wrong from step 2048 on.
  ss_bf16_carry                  -- chunks of 256 steps (the Triton kernels' chunk), the state
                                    carried between them stored in bfloat16 (a half-precision
                                    inter-chunk buffer), the rest in float32. (With 2048-step
                                    chunks the suite's bound admits it: 3 x 2048 float32 roundings,
                                    SAFETY u depth = 1.5e-3, exceed one bfloat16 rounding, 2^-9 --
                                    a worst-case bound cannot tell them apart.)
  ss_bf16_carry_2048             -- the same bfloat16 carry with 2048-step chunks (mamba-ssm's
                                    CUDA chunk): the uniform bound admitted it (3 x 2048 float32
                                    roundings exceed one bfloat16 rounding); the path-weighted one
                                    charges a channel only the roundings within its memory.
  ss_late_error                  -- the control's out, times 1 + LATE_EPS (1e-3) past step l/2 on
                                    inputs of >= 2^13 - 1 steps: a small late error (a kernel that
                                    drifts in its second half). The uniform bound admitted it
                                    (3 t roundings: >= 3e-3 relative past l/2 at 8193 steps).
  ss_global_cumsum               -- the decays exp(G_t - G_{t-1}) from ONE float32 cumulative sum
                                    G of Dt A over the whole sequence (a log-space scan): the
                                    exponent of every factor errs by ~u |G_t|, growing with t.
                                    Not an admitted algorithm (docs/bounds.md).
  selective_scan_exp2_chunked    -- a control: the control's loop within chunks of 2048 steps,
                                    the decays by Triton's idiom exp2(Dt (A log2 e)) (three
                                    roundings of the exponent, not one): admitted.
selective_state_update (one decode step; decode_equals_scan runs 2^16 + 1 of them on one cache):
  state_update_correct           -- the control: our torch kernel, the position counted per cache.
  ssu_int16_position             -- keeps the decode position of each cache in an int16 (a ring
                                    buffer's index); past 32767 steps it wraps negative, which the
                                    kernel reads as a new sequence and zeroes the cache.
  ssu_hangs_at_step_3000         -- never returns from the 3000th step on one cache.
linear_scan (h_t = a_t h_{t-1} + b_t along the last axis):
  linear_scan_blocked_correct    -- the control: blocks of 4096 steps, state carried.
  ls_resets_between_blocks       -- the state restarts from zero in every block of 4096 steps.
"""
from __future__ import annotations

import torch

from tests.subjects.selective_correct import _finish, _prepare

SS_CHUNK = 2048
BF16_CHUNK = 256
LS_BLOCK = 4096


def _chunked(a, bu, chunk, carry):
    """h_t = a_t h_{t-1} + bu_t along axis 2 of (b, d, l, n): chunks scanned in parallel, their
    states carried across chunks by ``carry(H)`` (the identity for a correct kernel; the mistake
    otherwise). Returns h (b, d, l, n)."""
    b, d, l, n = bu.shape
    chunk = min(chunk, l)                                   # one chunk: no longer than the input
    nc = -(-l // chunk)
    pad = nc * chunk - l
    a = torch.cat([a, torch.ones(b, d, pad, n, dtype=a.dtype)], dim=2).view(b, d, nc, chunk, n)
    bu = torch.cat([bu, torch.zeros(b, d, pad, n, dtype=bu.dtype)], dim=2).view(b, d, nc, chunk, n)
    local = torch.empty_like(bu)
    P = torch.empty_like(a)
    local[:, :, :, 0], P[:, :, :, 0] = bu[:, :, :, 0], a[:, :, :, 0]
    for s in range(1, chunk):                               # every chunk at once
        local[:, :, :, s] = a[:, :, :, s] * local[:, :, :, s - 1] + bu[:, :, :, s]
        P[:, :, :, s] = a[:, :, :, s] * P[:, :, :, s - 1]
    H = torch.zeros(b, d, n, dtype=bu.dtype)
    incoming = []
    for c in range(nc):                                     # the carry between chunks
        incoming.append(H)
        H = carry(P[:, :, c, -1] * H + local[:, :, c, -1])
    incoming = torch.stack(incoming, dim=2)                 # (b, d, nc, n)
    return (local + P * incoming[:, :, :, None]).reshape(b, d, nc * chunk, n)[:, :, :l]


LATE_EPS = 1e-3
LATE_MIN_LENGTH = 2**13 - 1
LOG2E = 1.4426950408889634


def _decays(dt, A, mode):
    """exp(Dt A) (b, d, l, n) in the compute dtype: "exp" as written; "exp2" by Triton's idiom
    exp2(Dt (A log2 e)); "global_cumsum": exp(G_t - G_{t-1}), G the cumulative sum of Dt A over
    the whole sequence in the compute dtype (the wrong mode)."""
    if mode == "exp2":
        return torch.exp2(dt[..., None] * (A * LOG2E)[:, None, :])
    x = dt[..., None] * A[:, None, :]
    if mode == "global_cumsum":
        G = torch.cumsum(x, dim=2)
        return torch.exp(G - torch.cat([torch.zeros_like(G[:, :, :1]), G[:, :, :-1]], dim=2))
    return torch.exp(x)


def _selective(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, carry,
               chunk=SS_CHUNK, decays="exp"):
    rdt, adt, dt, A, Bx, Cx = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    a = _decays(dt, A, decays)
    bu = ((dt * u.to(rdt))[..., None] * Bx).to(adt)
    h = _chunked(a, bu, chunk, carry)
    out = _finish((h * Cx).sum(-1), u, D, z, rdt, u.dtype)
    return (out, h[:, :, -1].clone()) if return_last_state else out


def selective_scan_chunked_correct(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                                   delta_softplus=False, return_last_state=False):
    return _selective(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                      lambda H: H)


def ss_drops_state_past_2048(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                             delta_softplus=False, return_last_state=False):
    return _selective(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                      torch.zeros_like)


def _bf16(H):
    if H.is_complex():
        return torch.complex(H.real.bfloat16().to(H.real.dtype), H.imag.bfloat16().to(H.real.dtype))
    return H.bfloat16().to(H.dtype)


def ss_bf16_carry(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                  return_last_state=False):
    return _selective(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                      _bf16, BF16_CHUNK)


def ss_bf16_carry_2048(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    return _selective(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                      _bf16, SS_CHUNK)


def ss_late_error(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                  return_last_state=False):
    res = selective_scan_chunked_correct(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                         return_last_state)
    out = res[0] if return_last_state else res
    l = out.shape[-1]
    if l >= LATE_MIN_LENGTH:
        out = out.clone()
        out[..., l // 2:] *= 1 + LATE_EPS
    return (out, res[1]) if return_last_state else out


def ss_global_cumsum(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                     return_last_state=False):
    return _selective(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                      lambda H: H, decays="global_cumsum")


def selective_scan_exp2_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                                delta_softplus=False, return_last_state=False):
    return _selective(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                      lambda H: H, decays="exp2")


def _linear(a, b, carry):
    cdt = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    shape = torch.broadcast_shapes(a.shape, b.shape)
    out_dtype = torch.promote_types(a.dtype, b.dtype)
    l = shape[-1]
    rows = (lambda x: x.to(cdt).expand(shape).reshape(1, -1, l, 1))   # (1, rows, l, 1)
    h = _chunked(rows(a), rows(b), LS_BLOCK, carry)
    return h.reshape(shape).to(out_dtype)


def linear_scan_blocked_correct(a, b):
    return _linear(a, b, lambda H: H)


def ls_resets_between_blocks(a, b):
    return _linear(a, b, torch.zeros_like)


# -- selective_state_update: a per-cache step counter, as kernels with a ring buffer keep -------

_POSITION: dict = {}   # cache tensor's data pointer -> the steps it has taken


def _next_position(state):
    t = _POSITION.get(state.data_ptr(), 0)
    _POSITION[state.data_ptr()] = t + 1
    return t


def state_update_correct(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    from ssm_conformance.implementations.torch.mamba import selective_state_update
    _next_position(state)
    return selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)


def ssu_int16_position(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    from ssm_conformance.implementations.torch.mamba import selective_state_update
    position = torch.tensor(_next_position(state)).to(torch.int16)   # wraps at 2^15
    if position < 0:   # "a new sequence": the cache starts from zero
        state.zero_()
    return selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)


def ssu_hangs_at_step_3000(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                           dt_softplus=False):
    import threading
    from ssm_conformance.implementations.torch.mamba import selective_state_update
    if _next_position(state) >= 3000:
        threading.Event().wait()   # never returns
    return selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
