"""Mamba-1 kernels and the Mamba block in NumPy (float64 / complex128).

Conventions are those of mamba-ssm's pure-PyTorch references (state-spaces/mamba):
``selective_scan_ref`` and ``mamba_inner_ref`` (mamba_ssm/ops/selective_scan_interface.py),
``selective_state_update_ref`` (mamba_ssm/ops/triton/selective_state_update.py), the Mamba module
(mamba_ssm/modules/mamba_simple.py), and ``causal_conv1d_ref`` / ``causal_conv1d_update_ref``
(Dao-AILab/causal-conv1d). Per channel d and state n (MATH.md "Scans"):

    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t      (ZOH for A, Euler for B: mamba's choice)
    y_t = C_t . h_t  (2 Re(.) for complex A)  [+ D u_t]  [* SiLU(z_t)]
"""
from __future__ import annotations

from dataclasses import dataclass, fields
import math

import numpy as np
from scipy.special import expit

from ssm_conformance.implementations.numpy._mamba_checks import (
    check_causal_conv1d,
    check_conv_update,
    check_selective_scan,
    check_state_update,
)

SOFTPLUS_THRESHOLD = 20.0


def softplus(x):
    """torch.nn.functional.softplus (beta 1, threshold 20): x where x > 20, else log(1 + e^x)."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > SOFTPLUS_THRESHOLD, x, np.log1p(np.exp(np.minimum(x, SOFTPLUS_THRESHOLD))))


def silu(x):
    """x * sigmoid(x), with the logistic function evaluated without overflow."""
    return x * expit(x)


def _arr(fn, name, x, *, allow_complex=False):
    """Array-like -> float64 (or complex128) ndarray; None stays None."""
    if x is None:
        return None
    a = np.asarray(x)
    if a.dtype.kind not in "biufc":
        raise TypeError(f"{fn}: {name} must be a numeric array, got dtype {a.dtype}")
    if a.dtype.kind == "c":
        if not allow_complex:
            raise TypeError(f"{fn}: {name} must be real, got dtype {a.dtype}")
        return a.astype(np.complex128)
    return a.astype(np.float64)


# ----------------------------------------------------------------------------------------------
# Selective scan
# ----------------------------------------------------------------------------------------------

def _complex_pairs(X):
    """mamba-ssm's view_as_complex of '... (L two) -> ... L two': X[..., 2t] + i X[..., 2t+1]."""
    return X[..., 0::2] + 1j * X[..., 1::2]


def _time_major(X, kind):
    """A variable (b,n,l) or grouped (b,g,n,l) B/C as (l,b,n) or (l,b,g,n); constant unchanged."""
    if kind == "variable":
        return np.ascontiguousarray(X.transpose(2, 0, 1))
    if kind == "grouped":
        return np.ascontiguousarray(X.transpose(3, 0, 1, 2))
    return X


# Elements of one (T, b, d, n) block of the scan: small enough to stay in cache.
BLOCK_ELEMENTS = 1 << 17


def _expand_bu(dtu, Bt, kind, groups):
    """delta_t u_t B_t as (T, b, d, n) from dtu (T, b, d) and B: constant (d, n), variable
    (T, b, n), grouped (T, b, g, n) -- channel d uses group d // (d/g)."""
    if kind == "constant":
        return dtu[..., None] * Bt
    if kind == "variable":
        return dtu[..., None] * Bt[:, :, None, :]
    T, b, d = dtu.shape
    n = Bt.shape[-1]
    return (dtu.reshape(T, b, groups, d // groups)[..., None] * Bt[:, :, :, None, :]).reshape(T, b, d, n)


def _contract_C(H, Ct, kind, groups):
    """y_t = sum_n C_tn h_tn: (T, b, d) from H (T, b, d, n) and C in the forms of _expand_bu."""
    if kind == "constant":
        return np.einsum("lbdn,dn->lbd", H, Ct)
    if kind == "variable":
        return (H @ Ct[..., None])[..., 0]
    T, b, d, n = H.shape
    return (H.reshape(T, b, groups, d // groups, n) @ Ct[..., None])[..., 0].reshape(T, b, d)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, initial_state=None):
    """selective_scan_ref semantics in float64.

    u, delta (b,d,l); A (d,n) real or complex; B, C (d,n) | (b,n,l) | (b,g,n,l) (with complex A
    the variable forms are real with interleaved pairs, last axis 2l); D, delta_bias (d,);
    z (b,d,l). Returns out (b,d,l) float64 and, if asked, the last state (b,d,n) (complex128 for
    complex A). ``initial_state`` (b,d,n), an extension, is the state before u_0 (zero by default).
    """
    fn = "selective_scan"
    u, delta, D, z, delta_bias = (_arr(fn, k, v) for k, v in
                                  (("u", u), ("delta", delta), ("D", D), ("z", z), ("delta_bias", delta_bias)))
    A = _arr(fn, "A", A, allow_complex=True)
    B = _arr(fn, "B", B, allow_complex=True)
    C = _arr(fn, "C", C, allow_complex=True)
    initial_state = _arr(fn, "initial_state", initial_state, allow_complex=True)
    s = check_selective_scan(u, delta, A, B, C, D, z, delta_bias, initial_state)
    b, d, l, n = s.b, s.d, s.l, s.n
    if s.complex:
        B = B if s.B_kind == "constant" else _complex_pairs(B)
        C = C if s.C_kind == "constant" else _complex_pairs(C)

    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = softplus(delta)

    # Time-major layout (l, b, d, n): each step of the recurrence touches one contiguous slab.
    # Blocks of T steps keep the (T, b, d, n) temporaries small; the state is carried across.
    dt = np.ascontiguousarray(delta.transpose(2, 0, 1))            # (l, b, d)
    dtu = dt * u.transpose(2, 0, 1)                                # (l, b, d)
    Bt, Ct = _time_major(B, s.B_kind), _time_major(C, s.C_kind)
    T = max(1, min(l, BLOCK_ELEMENTS // (b * d * n)))
    h = (np.zeros((b, d, n), dtype=np.complex128 if s.complex else np.float64) if initial_state is None
         else initial_state)
    y = np.empty((l, b, d), dtype=np.complex128 if s.complex else np.float64)
    for t0 in range(0, l, T):
        blk = slice(t0, min(t0 + T, l))
        a = np.exp(dt[blk, ..., None] * A)                         # exp(delta A): (T, b, d, n)
        H = _expand_bu(dtu[blk], B if s.B_kind == "constant" else Bt[blk], s.B_kind, s.B_groups)
        H = H.astype(a.dtype, copy=False)                          # real B with complex A
        # h_t = a_t h_{t-1} + (delta B u)_t, in place over the input terms.
        H[0] += a[0] * h
        for t in range(1, H.shape[0]):
            H[t] += a[t] * H[t - 1]
        y[blk] = _contract_C(H, C if s.C_kind == "constant" else Ct[blk], s.C_kind, s.C_groups)
        h = H[-1].copy()
    if s.complex:
        y = 2.0 * y.real                                           # the conjugate pair's share
    out = np.ascontiguousarray(y.transpose(1, 2, 0))               # (b, d, l)
    if D is not None:
        out = out + u * D[:, None]
    if z is not None:
        out = out * silu(z)
    if return_last_state:
        return out, h
    return out


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """One decode step of selective_state_update_ref; ``state`` is updated IN PLACE.

    state (b,d,n) float64 ndarray [or (b,h,d,n)]; x, dt, z (b,d) [(b,h,d)]; A (d,n) [(h,d,n)];
    B, C (b,n) [(b,g,n)]; D, dt_bias (d,) [(h,d)]. Returns out (b,d) [(b,h,d)].
    """
    fn = "selective_state_update"
    if not isinstance(state, np.ndarray) or state.dtype != np.float64 or not state.flags.writeable:
        raise TypeError(f"{fn}: state must be a writeable float64 numpy.ndarray (it is updated in place), "
                        f"got {type(state).__name__}" + (f" of dtype {state.dtype}" if isinstance(state, np.ndarray) else ""))
    x, dt, A, B, C, D, z, dt_bias = (_arr(fn, k, v) for k, v in
                                     (("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C), ("D", D),
                                      ("z", z), ("dt_bias", dt_bias)))
    s = check_state_update(state, x, dt, A, B, C, D, z, dt_bias)
    if not s.heads:  # add the heads axis: (b,d,n) -> (b,1,d,n) etc.
        st = state[:, None]
        x, dt, A, B, C = x[:, None], dt[:, None], A[None], B[:, None], C[:, None]
        D = None if D is None else D[None]
        z = None if z is None else z[:, None]
        dt_bias = None if dt_bias is None else dt_bias[None]
    else:
        st = state
    if dt_bias is not None:
        dt = dt + dt_bias
    if dt_softplus:
        dt = softplus(dt)
    rep = s.h // s.g                                               # head h uses group h // (h/g)
    Bh = np.repeat(B, rep, axis=1)                                 # (b, h, n)
    Ch = np.repeat(C, rep, axis=1)
    new = st * np.exp(dt[..., None] * A) + (dt * x)[..., None] * Bh[:, :, None, :]
    st[...] = new                                                  # writes through to `state`
    out = (new @ Ch[..., None])[..., 0]                            # (b, h, d)
    if D is not None:
        out = out + x * D
    if z is not None:
        out = out * silu(z)
    return out if s.heads else out[:, 0]


# ----------------------------------------------------------------------------------------------
# Causal depthwise conv1d
# ----------------------------------------------------------------------------------------------

def causal_conv1d(x, weight, bias=None, activation=None, *, initial_states=None, return_final_states=False):
    """causal_conv1d_fn: out[b,d,t] = bias[d] + sum_k weight[d,k] x[b,d,t-(w-1)+k] (x_t meets
    weight[:, -1]; zeros, or ``initial_states`` (b,d,w-1), before t = 0), then SiLU if asked.
    With return_final_states also the last w-1 inputs (b,d,w-1), as causal_conv1d_ref."""
    fn = "causal_conv1d"
    x, weight, bias, initial_states = (_arr(fn, k, v) for k, v in
                                       (("x", x), ("weight", weight), ("bias", bias),
                                        ("initial_states", initial_states)))
    s = check_causal_conv1d(x, weight, bias, activation, initial_states)
    b, d, l, w = s.b, s.d, s.l, s.w
    head = np.zeros((b, d, w - 1)) if initial_states is None else initial_states
    xp = np.concatenate([head, x], axis=-1)                        # (b, d, w - 1 + l)
    out = np.zeros((b, d, l))
    for k in range(w):
        out += weight[:, k, None] * xp[:, :, k:k + l]
    if bias is not None:
        out += bias[:, None]
    if activation in ("silu", "swish"):
        out = silu(out)
    if return_final_states:
        return out, xp[:, :, xp.shape[-1] - (w - 1):].copy()
    return out


def causal_conv1d_update(x, conv_state, weight, bias=None, activation=None):
    """causal_conv1d_update_ref (no circular buffer): x (b,d) or (b,d,s); conv_state
    (b,d,state_len >= w-1) holds the previous inputs and is updated IN PLACE."""
    fn = "causal_conv1d_update"
    if not isinstance(conv_state, np.ndarray) or conv_state.dtype != np.float64:
        raise TypeError(f"{fn}: conv_state must be a float64 numpy.ndarray (it is updated in place)")
    x, weight, bias = (_arr(fn, k, v) for k, v in (("x", x), ("weight", weight), ("bias", bias)))
    s = check_conv_update(x, conv_state, weight, bias, activation)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[:, :, None]
    sl, w, steps = s.state_len, s.w, x.shape[-1]
    x_new = np.concatenate([conv_state, x], axis=-1)               # (b, d, state_len + s)
    if sl > 0:
        conv_state[...] = x_new[:, :, x_new.shape[-1] - sl:]
    out = np.zeros(x.shape)
    start = sl - (w - 1)                                           # output t sees x_new[start+t .. start+t+w-1]
    for k in range(w):
        out += weight[:, k, None] * x_new[:, :, start + k:start + k + steps]
    if bias is not None:
        out += bias[:, None]
    if activation in ("silu", "swish"):
        out = silu(out)
    return out[:, :, 0] if squeeze else out


# ----------------------------------------------------------------------------------------------
# Mamba block (mamba_simple.Mamba without the fused path)
# ----------------------------------------------------------------------------------------------

@dataclass
class MambaWeights:
    """Parameters of one Mamba block, named after mamba_simple.Mamba's modules (conv weight as
    (d_inner, d_conv), i.e. without the middle axis of nn.Conv1d)."""

    in_proj_weight: np.ndarray      # (2 d_inner, d_model): rows [x; z]
    conv_weight: np.ndarray         # (d_inner, d_conv)
    conv_bias: np.ndarray | None    # (d_inner,)
    x_proj_weight: np.ndarray       # (dt_rank + 2 d_state, d_inner): rows [dt; B; C]
    dt_proj_weight: np.ndarray      # (d_inner, dt_rank)
    dt_proj_bias: np.ndarray        # (d_inner,), softplus^-1 of the initial step sizes
    A_log: np.ndarray               # (d_inner, d_state); A = -exp(A_log)
    D: np.ndarray                   # (d_inner,)
    out_proj_weight: np.ndarray     # (d_model, d_inner)
    in_proj_bias: np.ndarray | None = None
    out_proj_bias: np.ndarray | None = None

    @property
    def d_model(self):
        return self.in_proj_weight.shape[1]

    @property
    def d_inner(self):
        return self.in_proj_weight.shape[0] // 2

    @property
    def d_state(self):
        return self.A_log.shape[1]

    @property
    def d_conv(self):
        return self.conv_weight.shape[1]

    @property
    def dt_rank(self):
        return self.dt_proj_weight.shape[1]

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def random(cls, d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", dt_min=1e-3, dt_max=0.1,
               bias=False, conv_bias=True, seed=0):
        """Initialization of mamba_simple.Mamba: nn.Linear/Conv1d default uniform weights, S4D-real
        A = -(1..n), D = 1, dt_proj.bias = softplus^-1(dt) with log-uniform dt in [dt_min, dt_max]."""
        rng = np.random.default_rng(seed)
        d_inner = int(expand * d_model)
        rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)

        def lin(out_f, in_f):
            k = 1.0 / math.sqrt(in_f)
            return rng.uniform(-k, k, size=(out_f, in_f))

        dt = np.exp(rng.uniform(size=d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = np.maximum(dt, 1e-4)
        k_conv = 1.0 / math.sqrt(d_conv)
        return cls(
            in_proj_weight=lin(2 * d_inner, d_model),
            conv_weight=rng.uniform(-k_conv, k_conv, size=(d_inner, d_conv)),
            conv_bias=rng.uniform(-k_conv, k_conv, size=d_inner) if conv_bias else None,
            x_proj_weight=lin(rank + 2 * d_state, d_inner),
            dt_proj_weight=rng.uniform(-rank ** -0.5, rank ** -0.5, size=(d_inner, rank)),
            dt_proj_bias=dt + np.log(-np.expm1(-dt)),              # inverse softplus
            A_log=np.log(np.tile(np.arange(1, d_state + 1, dtype=np.float64), (d_inner, 1))),
            D=np.ones(d_inner),
            out_proj_weight=lin(d_model, d_inner),
            in_proj_bias=rng.uniform(-0.1, 0.1, size=2 * d_inner) if bias else None,
            out_proj_bias=rng.uniform(-0.1, 0.1, size=d_model) if bias else None,
        )


@dataclass
class MambaState:
    """Decoding state: the last d_conv - 1 conv inputs and the SSM state."""

    conv: np.ndarray   # (b, d_inner, d_conv - 1)
    ssm: np.ndarray    # (b, d_inner, d_state)


def _linear(x, weight, bias):
    y = x @ weight.T
    return y if bias is None else y + bias


class MambaBlock:
    """Mamba mixer: in_proj -> causal conv1d + SiLU -> x_proj -> dt_proj (softplus with dt bias)
    -> selective scan (D skip, SiLU(z) gate) -> out_proj, as mamba_inner_ref."""

    def __init__(self, weights: MambaWeights):
        self.w = MambaWeights(**{k: _arr("MambaBlock", k, v) for k, v in weights.as_dict().items()})

    def init_state(self, batch):
        w = self.w
        return MambaState(conv=np.zeros((batch, w.d_inner, w.d_conv - 1)),
                          ssm=np.zeros((batch, w.d_inner, w.d_state)))

    def _check_input(self, x, ndim):
        x = _arr("MambaBlock", "x", x)
        letters = "(b, l, d_model)" if ndim == 3 else "(b, d_model)"
        if x.ndim != ndim or x.shape[-1] != self.w.d_model:
            raise ValueError(f"MambaBlock: x must have shape {letters} with d_model = {self.w.d_model}, "
                             f"got {x.shape}")
        return x

    def _split_x_dbl(self, x_dbl):
        r, n = self.w.dt_rank, self.w.d_state
        return x_dbl[..., :r], x_dbl[..., r:r + n], x_dbl[..., r + n:]

    def forward(self, x, state: MambaState | None = None):
        """x (b, l, d_model) -> (b, l, d_model). With ``state`` the sequence continues from it, and
        the state is updated in place to the end of x (prefill)."""
        w = self.w
        x = self._check_input(x, 3)
        xz = _linear(x, w.in_proj_weight, w.in_proj_bias).transpose(0, 2, 1)   # (b, 2 d_inner, l)
        xs, z = xz[:, :w.d_inner], xz[:, w.d_inner:]
        xc, conv_final = causal_conv1d(xs, w.conv_weight, w.conv_bias, "silu",
                                       initial_states=None if state is None else state.conv,
                                       return_final_states=True)
        dt, B, C = self._split_x_dbl(xc.transpose(0, 2, 1) @ w.x_proj_weight.T)  # (b, l, .)
        delta = (dt @ w.dt_proj_weight.T).transpose(0, 2, 1)                    # (b, d_inner, l)
        A = -np.exp(w.A_log)
        y, last = selective_scan(xc, delta, A, B.transpose(0, 2, 1), C.transpose(0, 2, 1), w.D, z,
                                 delta_bias=w.dt_proj_bias, delta_softplus=True, return_last_state=True,
                                 initial_state=None if state is None else state.ssm)
        if state is not None:
            state.conv[...] = conv_final
            state.ssm[...] = last
        return _linear(y.transpose(0, 2, 1), w.out_proj_weight, w.out_proj_bias)

    def step(self, x_t, state: MambaState):
        """One token: x_t (b, d_model) -> (y_t (b, d_model), state), the state updated in place."""
        w = self.w
        x_t = self._check_input(x_t, 2)
        xz = _linear(x_t, w.in_proj_weight, w.in_proj_bias)
        xs, z = xz[:, :w.d_inner], xz[:, w.d_inner:]
        xc = causal_conv1d_update(xs, state.conv, w.conv_weight, w.conv_bias, "silu")
        dt, B, C = self._split_x_dbl(xc @ w.x_proj_weight.T)
        dt = dt @ w.dt_proj_weight.T
        y = selective_state_update(state.ssm, xc, dt, -np.exp(w.A_log), B, C, w.D, z,
                                   dt_bias=w.dt_proj_bias, dt_softplus=True)
        return _linear(y, w.out_proj_weight, w.out_proj_bias), state
