"""RG-LRU (role ``rg_lru``: Griffin's Real-Gated Linear Recurrent Unit with the gates applied), in
NumPy, in the dtype of x (float64, or float32: float32 arithmetic throughout):

    log a_t = -8 sigmoid(gate_a_t) softplus(a_param),  m_t = sqrt(-expm1(2 log a_t)) (1 at resets)
    h_t = a_t h_{t-1} [0 at resets] + m_t sigmoid(gate_x_t) x_t,   h_{-1} = h0 or 0.

* ``rg_lru``          -- sequential: l steps, each vectorized over (b, d).
* ``rg_lru_parallel`` -- Hillis-Steele: log2(l) steps over the whole array, composing
  (a2, b2) o (a1, b1) = (a2 a1, a2 b1 + b2).
Returns y (b, l, d), and with ``return_last_state`` (y, h_last (b, d)).
"""
from __future__ import annotations

import numpy as np


def _leaves(x, gate_x, gate_a, a_param, reset, h0):
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1] < 1 or x.dtype.kind != "f":
        raise ValueError(f"rg_lru: x must be a real (b, l, d) array with l >= 1, got "
                         f"{x.dtype} {x.shape}")
    dt = np.float32 if x.dtype == np.float32 else np.float64
    b, l, d = x.shape
    gx, ga = np.asarray(gate_x, dtype=dt), np.asarray(gate_a, dtype=dt)
    c = np.asarray(a_param, dtype=dt)
    if gx.shape != x.shape or ga.shape != x.shape or c.shape != (d,):
        raise ValueError(f"rg_lru: gate_x, gate_a must have shape {x.shape} and a_param ({d},)")
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    log_a = dt(-8) * sig(ga) * np.logaddexp(c, dt(0))
    a = np.exp(log_a)
    m = np.sqrt(-np.expm1(2 * log_a))
    if reset is not None:
        r = np.asarray(reset, dtype=bool)
        if r.shape != (b, l):
            raise ValueError(f"rg_lru: reset must have shape ({b}, {l}), got {r.shape}")
        a = np.where(r[..., None], dt(0), a)
        m = np.where(r[..., None], dt(1), m)
    bb = (m * sig(gx) * x.astype(dt)).astype(dt)
    h0 = None if h0 is None else np.asarray(h0, dtype=dt)
    if h0 is not None and h0.shape != (b, d):
        raise ValueError(f"rg_lru: h0 must have shape ({b}, {d}), got {h0.shape}")
    return a.astype(dt), bb, h0


def rg_lru(x, gate_x, gate_a, a_param, reset=None, h0=None, return_last_state=False):
    a, bb, h0 = _leaves(x, gate_x, gate_a, a_param, reset, h0)
    h = np.empty_like(bb)
    prev = np.zeros_like(bb[:, 0]) if h0 is None else h0
    for t in range(bb.shape[1]):
        prev = a[:, t] * prev + bb[:, t]
        h[:, t] = prev
    return (h, h[:, -1].copy()) if return_last_state else h


def rg_lru_parallel(x, gate_x, gate_a, a_param, reset=None, h0=None, return_last_state=False):
    A, B, h0 = _leaves(x, gate_x, gate_a, a_param, reset, h0)
    if h0 is not None:
        B = B.copy()
        B[:, 0] += A[:, 0] * h0
    k, l = 1, B.shape[1]
    while k < l:
        B = np.concatenate([B[:, :k], A[:, k:] * B[:, :-k] + B[:, k:]], axis=1)
        if 2 * k < l:
            A = np.concatenate([A[:, :k], A[:, k:] * A[:, :-k]], axis=1)
        k *= 2
    return (B, B[:, -1].copy()) if return_last_state else B
