"""Deliberately wrong subjects for the Mamba-family roles (selective_scan, ssd, causal_conv1d,
selective_state_update, linear_scan): each is a realistic kernel mistake.

The meta-tests point the suite at each of these and expect it to FAIL. Every docstring names the
mistake and the inputs that expose it (the feature that must be switched on, the sizes needed),
so a meta-test can tell whether the suite's input space reaches it.

The code is a plain, readable torch implementation of each role in the style of mamba-ssm's
references (``_selective_scan``, ``_ssd``, ...), with the mistake switched in at the one line where
it happens (``bug == ...``). With ``bug=None`` each base implementation is correct (tests check
this against implementations/ and against an independent loop), so a subject fails only through
its mistake. They compute in float32 (float64 for float64 input), like the real kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _cdt(dtype):
    return torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32


def _softplus(x, bug=None):
    if bug == "softplus_no_threshold":
        return torch.log(1 + torch.exp(x))        # exp overflows to inf above ~88.7 (float32)
    return F.softplus(x)                          # threshold 20: x itself above 20


def _pairs(X, cdt):
    """mamba-ssm's interleaved real layout (..., 2l) -> complex (..., l)."""
    X = X.to(cdt)
    return torch.complex(X[..., 0::2], X[..., 1::2])


# ================================================================================================
# selective_scan
# ================================================================================================

def _selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                    return_last_state=False, *, bug=None):
    """selective_scan_ref, written as a loop over time, with one optional mistake."""
    dtype_in = u.dtype
    rdt = _cdt(u.dtype)
    cplx = A.is_complex()
    adt = (torch.complex128 if rdt == torch.float64 else torch.complex64) if cplx else rdt
    if bug == "fp16_accumulation":
        rdt, adt = torch.float16, torch.float16   # (the real-A case only)
    u, delta = u.to(rdt), delta.to(rdt)
    if bug == "delta_bias_after_softplus":
        if delta_softplus:
            delta = _softplus(delta)
        if delta_bias is not None:
            delta = delta + delta_bias.to(rdt)[:, None]
    else:
        if delta_bias is not None:
            delta = delta + delta_bias.to(rdt)[:, None]
        if delta_softplus:
            delta = _softplus(delta, bug)
    A = A.to(adt)
    if bug == "complex_A_imag_dropped" and cplx:
        A = A.real.to(adt)                        # A cast through a real dtype
    b, d, l = u.shape
    n = A.shape[1]

    def per_step(X):
        """B or C as a function t -> (b or 1, d or 1, n)."""
        if X.dim() == 2:                          # constant (d, n)
            Xc = X.to(adt) if X.is_complex() else X.to(rdt)
            return lambda t: Xc[None]
        if cplx:
            if bug == "complex_pairs_not_interleaved":
                X = X.to(rdt)
                Xc = torch.complex(X[..., :l], X[..., l:])   # halves read as [re..., im...]
            else:
                Xc = _pairs(X, rdt)
        else:
            Xc = X.to(rdt)
        if Xc.dim() == 3:                         # variable (b, n, l)
            return lambda t: Xc[:, None, :, t]
        g = Xc.shape[1]                           # grouped (b, g, n, l)
        if bug == "group_modulo":
            idx = torch.arange(d, device=Xc.device) % g             # channel d -> group d % g
        else:
            idx = torch.arange(d, device=Xc.device) // (d // g)     # channel d -> group d // (d/g)
        Xd = Xc[:, idx]                           # (b, d, n, l)
        return lambda t: Xd[..., t]

    Bt, Ct = per_step(B), per_step(C)
    h = torch.zeros(b, d, n, dtype=adt, device=u.device)
    ys, states = [], []
    for t in range(l):
        dA = delta[:, :, t, None] * A
        if bug == "euler_A":
            decay = 1 + dA                        # forward Euler instead of exp (ZOH)
        else:
            decay = torch.exp(dA)
        h_prev = h
        h = decay * h + delta[:, :, t, None] * Bt(t) * u[:, :, t, None]
        states.append(h)
        y = ((h_prev if bug == "output_from_previous_state" else h) * Ct(t)).sum(-1)
        if y.is_complex():
            y = y.real if bug == "complex_missing_factor_two" else 2 * y.real
        ys.append(y)
    out = torch.stack(ys, dim=-1).to(_cdt(dtype_in))
    u = u.to(out.dtype)
    if bug == "gate_before_D" and z is not None:
        out = out * F.silu(z.to(out.dtype))
        if D is not None:
            out = out + u * D.to(out.dtype)[:, None]
    else:
        if D is not None:
            out = out + u * D.to(out.dtype)[:, None]
        if z is not None:
            gate = torch.sigmoid(z.to(out.dtype)) if bug == "sigmoid_gate" else F.silu(z.to(out.dtype))
            out = out * gate
    out = out.to(dtype_in)
    if return_last_state:
        last = states[-2] if (bug == "last_state_previous_step" and l > 1) else states[-1]
        return out, last.to(adt if bug != "fp16_accumulation" else torch.float32)
    return out


def selective_scan_correct(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                           return_last_state=False):
    """The base implementation without a mistake (a control: it must PASS)."""
    return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


def ss_output_from_previous_state(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                                  delta_softplus=False, return_last_state=False):
    """Off by one in time: y_t = C_t . h_{t-1} (the output read before the state update), so y_0
    misses u_0 entirely. Exposed by any input with l >= 1 and nonzero B, C, u."""
    return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                           bug="output_from_previous_state")


def ss_delta_bias_after_softplus(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                                 delta_softplus=False, return_last_state=False):
    """delta = softplus(delta) + delta_bias instead of softplus(delta + delta_bias). Exposed with
    features delta_bias AND delta_softplus (a nonzero bias); identical when either is off."""
    return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                           bug="delta_bias_after_softplus")


def ss_sigmoid_gate(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                    return_last_state=False):
    """Gate out * sigmoid(z) instead of out * SiLU(z) = out * z sigmoid(z). Exposed with feature
    z (any z != 1)."""
    return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                           bug="sigmoid_gate")


def ss_gate_before_D(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                     return_last_state=False):
    """(y * SiLU(z)) + D u: the D skip added after the gate, so it is not gated. Exposed with
    features D AND z together."""
    return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                           bug="gate_before_D")


def ss_group_modulo(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                    return_last_state=False):
    """Grouped B/C (b, g, n, l): channel d reads group d % g instead of d // (d/g) (mamba-ssm's
    repeat 'B G N L -> B (G H) N L' puts consecutive channels in one group). Exposed with feature
    grouped_BC and 1 < g < d (g = 1 and g = d map identically)."""
    return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                           bug="group_modulo")


def ss_euler_A(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
               return_last_state=False):
    """Decay 1 + delta A (forward Euler) instead of exp(delta A) (ZOH). Relative error about
    (delta A)^2 / 2 per step; exposed by any input with |delta A| not tiny (e.g. >= 0.1)."""
    return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                           bug="euler_A")


def ss_complex_missing_factor_two(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                                  delta_softplus=False, return_last_state=False):
    """Complex A: y = Re(C . h) instead of 2 Re(C . h) (the conjugate partner of each state is
    dropped, not folded in). Exposed with feature complex_A: half the SSM output."""
    return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                           bug="complex_missing_factor_two")


def ss_complex_A_imag_dropped(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                              delta_softplus=False, return_last_state=False):
    """Complex A passed through a real dtype: exp(delta Re A), the oscillation Im A lost. Exposed
    with feature complex_A and Im A != 0."""
    return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                           bug="complex_A_imag_dropped")


def ss_complex_pairs_not_interleaved(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                                     delta_softplus=False, return_last_state=False):
    """Complex A with variable B/C (b, n, 2l): read as [real parts | imaginary parts] halves instead
    of mamba-ssm's interleaved pairs (re_0, im_0, re_1, im_1, ...). Exposed with feature complex_A
    and a variable or grouped B or C (not constant_B/constant_C)."""
    return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                           bug="complex_pairs_not_interleaved")


def ss_softplus_no_threshold(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                             delta_softplus=False, return_last_state=False):
    """softplus(x) = log(1 + exp(x)) without the threshold: exp overflows for x > ~88.7 in float32
    (~709.8 in float64), giving delta = inf, then inf/NaN outputs where the oracle is finite.
    Exposed only with delta_softplus and delta (+ bias) above ~88.7: the input space must reach
    large delta. (log1p(exp(x)) has the same flaw; for moderate x it is accurate.)"""
    return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                           bug="softplus_no_threshold")


def ss_last_state_previous_step(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                                delta_softplus=False, return_last_state=False):
    """return_last_state gives h_{l-2} (the state before the last update). Exposed with feature
    last_state and l >= 2; out is correct."""
    return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                           bug="last_state_previous_step")


def ss_fp16_accumulation(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False):
    """The whole recurrence in float16 (state, decay, products) instead of float32 accumulation:
    relative error ~ 2^-11 per step growing with l, and overflow above 65504. Exposed in float32
    (and float64) tests by any input; in bfloat16/float16 tests only when the accumulated error
    exceeds the output rounding (long l). Real A only (complex A runs in float32/64)."""
    if A.is_complex():
        return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return _selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                           bug="fp16_accumulation")


# ================================================================================================
# ssd
# ================================================================================================

def _segsum(dA, bug=None):
    """S[..., i, j] = sum_{k=j+1..i} dA_k for i >= j, -inf above the diagonal."""
    Q = dA.shape[-1]
    X = dA.unsqueeze(-1).expand(*dA.shape, Q)            # X[..., i, j] = dA_i
    diag = 0 if bug == "segsum_off_by_one" else -1       # off by one: k = j..i
    X = X.masked_fill(~torch.tril(torch.ones(Q, Q, dtype=torch.bool, device=dA.device), diag), 0.0)
    S = torch.cumsum(X, dim=-2)
    return S.masked_fill(~torch.tril(torch.ones(Q, Q, dtype=torch.bool, device=dA.device)), -torch.inf)


def _ssd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
         dt_softplus=False, return_final_states=False, *, bug=None):
    """mamba_chunk_scan_combined in the style of ssd_minimal_discrete, with one optional mistake."""
    dtype_in = x.dtype
    rdt = _cdt(x.dtype)
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    Q = chunk_size
    pad = -l % Q
    x, dt, A = x.to(rdt), dt.to(rdt), A.to(rdt)
    B = B.to(rdt).repeat_interleave(h // g, dim=2)       # (b, l, h, n)
    C = C.to(rdt).repeat_interleave(h // g, dim=2)
    if bug == "pad_before_dt_transform":
        dt = F.pad(dt, (0, 0, 0, pad))                    # padded dt = 0 -> softplus(0 + bias) != 0
    if dt_bias is not None and bug != "dt_bias_ignored":
        dt = dt + dt_bias.to(rdt)
    if dt_softplus:
        dt = F.softplus(dt)
    if bug != "pad_before_dt_transform":
        dt = F.pad(dt, (0, 0, 0, pad))                    # padded dt = 0: no input, decay 1
    xp = F.pad(x, (0, 0, 0, 0, 0, pad))
    Bp = F.pad(B, (0, 0, 0, 0, 0, pad))
    Cp = F.pad(C, (0, 0, 0, 0, 0, pad))
    nc = (l + pad) // Q
    X = (xp * dt.unsqueeze(-1)).reshape(b, nc, Q, h, p)  # discretized input dt x
    Ad = (dt * A).reshape(b, nc, Q, h).permute(0, 3, 1, 2)   # (b, h, c, Q)
    Bc, Cc = Bp.reshape(b, nc, Q, h, n), Cp.reshape(b, nc, Q, h, n)
    Acs = torch.cumsum(Ad, dim=-1)
    Lm = torch.exp(_segsum(Ad, bug))
    Y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", Cc, Bc, Lm, X)
    decay_states = torch.exp(Acs[..., -1:] - Acs)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", Bc, decay_states, X)
    if initial_states is None or bug == "initial_states_ignored":
        h0 = torch.zeros(b, 1, h, p, n, dtype=rdt, device=x.device)
    else:
        h0 = initial_states.to(rdt).unsqueeze(1)
    states = torch.cat([h0, states], dim=1)              # (b, c+1, h, p, n)
    if bug == "state_not_carried":                       # every chunk starts from its own zero
        final = states[:, -1]
        states = torch.cat([h0, torch.zeros_like(states[:, 1:-1])], dim=1)
    else:
        chunk_decay = torch.exp(_segsum(F.pad(Acs[..., -1], (1, 0))))   # (b, h, c+1, c+1)
        new_states = torch.einsum("bhzc,bchpn->bzhpn", chunk_decay, states)
        states, final = new_states[:, :-1], new_states[:, -1]
    Y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", Cc, states, torch.exp(Acs))
    y = (Y_diag + Y_off).reshape(b, nc * Q, h, p)[:, :l]
    if D is not None:
        D = D.to(rdt)
        if D.dim() == 1:
            Dhp = D[:, None]
        elif bug == "D_hp_transposed":
            Dhp = D.t().reshape(h, p)                    # (h, p) flattened in (p, h) order
        else:
            Dhp = D
        y = y + x * Dhp
    if z is not None:
        y = y * F.silu(z.to(rdt))
    y = y.to(dtype_in)
    return (y, final) if return_final_states else y


def ssd_correct(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                dt_softplus=False, return_final_states=False):
    """The base implementation without a mistake (a control: it must PASS)."""
    return _ssd(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_softplus, return_final_states)


def ssd_state_not_carried(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                          initial_states=None, dt_softplus=False, return_final_states=False):
    """Inter-chunk state passing missing: every chunk after the first starts from zero, and the
    final state is the last chunk's own. Exposed whenever l > chunk_size."""
    return _ssd(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_softplus,
                return_final_states, bug="state_not_carried")


def ssd_segsum_off_by_one(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                          initial_states=None, dt_softplus=False, return_final_states=False):
    """Segment sum over k = j..i instead of k = j+1..i: input j is decayed by its own step, a
    factor exp(dt_j A) too much on the intra-chunk terms. Exposed by any input with dt A not tiny."""
    return _ssd(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_softplus,
                return_final_states, bug="segsum_off_by_one")


def ssd_D_hp_transposed(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                        initial_states=None, dt_softplus=False, return_final_states=False):
    """D of shape (h, p) read in (p, h) memory order (a flatten/reshape with the axes swapped).
    Exposed with feature D in its (h, p) form, h > 1 and p > 1, and D not constant."""
    return _ssd(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_softplus,
                return_final_states, bug="D_hp_transposed")


def ssd_initial_states_ignored(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                               initial_states=None, dt_softplus=False, return_final_states=False):
    """initial_states accepted and silently dropped (a zero start). Exposed with feature
    initial_states (nonzero)."""
    return _ssd(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_softplus,
                return_final_states, bug="initial_states_ignored")


def ssd_dt_bias_ignored(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                        initial_states=None, dt_softplus=False, return_final_states=False):
    """dt_bias not added (softplus(dt) instead of softplus(dt + dt_bias)). Exposed with feature
    dt_bias (nonzero), with or without dt_softplus."""
    return _ssd(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_softplus,
                return_final_states, bug="dt_bias_ignored")


def ssd_pad_before_dt_transform(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                                initial_states=None, dt_softplus=False, return_final_states=False):
    """dt zero-padded to a multiple of chunk_size BEFORE dt_bias and softplus (as the reference
    does), so padded steps get dt = softplus(0 + bias) > 0 and decay the final state (outputs stay
    right: x is zero there). Exposed with final_states, l not a multiple of chunk_size, and
    dt_softplus or dt_bias."""
    return _ssd(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_softplus,
                return_final_states, bug="pad_before_dt_transform")


# ================================================================================================
# causal_conv1d
# ================================================================================================

def _causal_conv1d(x, weight, bias=None, activation=None, *, bug=None):
    dtype_in = x.dtype
    rdt = _cdt(x.dtype)
    x, weight = x.to(rdt), weight.to(rdt)
    bias = None if bias is None else bias.to(rdt)
    d, w = weight.shape
    l = x.shape[-1]
    if bug == "weight_reversed":
        weight = weight.flip(-1)                          # weight[:, 0] multiplies x_t
    if bug == "acausal_same_padding":
        xp = F.pad(x, ((w - 1) // 2, w - 1 - (w - 1) // 2))   # 'same' padding: sees the future
    else:
        xp = F.pad(x, (w - 1, 0))
    out = F.conv1d(xp, weight.unsqueeze(1), None if bug == "bias_after_silu" else bias, groups=d)[..., :l]
    if activation in ("silu", "swish"):
        out = F.silu(out)
    if bug == "bias_after_silu" and bias is not None:
        out = out + bias[:, None]
    return out.to(dtype_in)


def causal_conv1d_correct(x, weight, bias=None, activation=None):
    """The base implementation without a mistake (a control: it must PASS)."""
    return _causal_conv1d(x, weight, bias, activation)


def conv_weight_reversed(x, weight, bias=None, activation=None):
    """weight[:, 0] multiplies x_t (a true convolution where causal-conv1d is a cross-correlation:
    weight[:, -1] multiplies x_t). Exposed whenever w >= 2 and the weight is not palindromic."""
    return _causal_conv1d(x, weight, bias, activation, bug="weight_reversed")


def conv_acausal_same_padding(x, weight, bias=None, activation=None):
    """'same' padding ((w-1)//2 on each side) instead of w-1 on the left: y_t sees x_{t+1..}.
    Exposed whenever w >= 2."""
    return _causal_conv1d(x, weight, bias, activation, bug="acausal_same_padding")


def conv_bias_after_silu(x, weight, bias=None, activation=None):
    """SiLU(conv) + bias instead of SiLU(conv + bias). Exposed with features bias AND silu."""
    return _causal_conv1d(x, weight, bias, activation, bug="bias_after_silu")


# ================================================================================================
# selective_state_update
# ================================================================================================

def _state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, *, bug=None):
    """selective_state_update_ref for state (b, d, n), computed in float32/64."""
    rdt = torch.float64 if torch.float64 in (state.dtype, x.dtype) else torch.float32
    dtype_in = x.dtype
    st = state.to(rdt, copy=True)                          # the state before the update
    x, dt, A, B, C = (t.to(rdt) for t in (x, dt, A, B, C))
    if dt_bias is not None:
        dt = dt + dt_bias.to(rdt)
    if dt_softplus and bug != "dt_not_softplus":
        dt = F.softplus(dt)
    new = st * torch.exp(dt.unsqueeze(-1) * A) + (dt * x).unsqueeze(-1) * B.unsqueeze(1)
    if bug == "state_not_in_place":
        state = new.to(state.dtype)                       # rebinds the name; caller's state unchanged
    else:
        state.copy_(new)
    out = ((st if bug == "output_from_old_state" else new) * C.unsqueeze(1)).sum(-1)
    if D is not None:
        out = out + x * D.to(rdt)
    if z is not None:
        out = out * F.silu(z.to(rdt))
    return out.to(dtype_in)


def selective_state_update_correct(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """The base implementation without a mistake (a control: it must PASS)."""
    return _state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)


def ssu_state_not_in_place(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """Returns the right output but never writes the new state into ``state`` (``state = ...``
    instead of ``state.copy_(...)``): the next decode step starts from a stale state. Exposed by
    checking the state after the call."""
    return _state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, bug="state_not_in_place")


def ssu_dt_not_softplus(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """dt_softplus ignored: the raw dt (+ bias) used as the step. Exposed with feature dt_softplus."""
    return _state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, bug="dt_not_softplus")


def ssu_output_from_old_state(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """out = C . h_{t-1}: the output read from the state before the update (the state itself is
    updated correctly). Exposed by any input (x_t's own contribution is missing from out)."""
    return _state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, bug="output_from_old_state")


# ================================================================================================
# linear_scan
# ================================================================================================

def linear_scan_exclusive(a, b):
    """Exclusive instead of inclusive scan: returns h_{t-1} (h_{-1} = 0) at position t."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = torch.broadcast_tensors(a.to(dtype), b.to(dtype))
    h = torch.zeros_like(b[..., 0])
    out = []
    for t in range(b.shape[-1]):
        out.append(h)
        h = a[..., t] * h + b[..., t]
    return torch.stack(out, dim=-1)


def linear_scan_operands_swapped(a, b):
    """Hillis-Steele scan with the non-commutative combine applied in the wrong order:
    (a1 a2, a1 b2 + b1) instead of (a2 a1, a2 b1 + b2), i.e. the earlier element's decay applied
    to the later input. Exposed whenever l >= 2 and a is not constant along time."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    A, B = torch.broadcast_tensors(a.to(dtype), b.to(dtype))
    l = B.shape[-1]
    k = 1
    while k < l:
        B = torch.cat([B[..., :k], A[..., :-k] * B[..., k:] + B[..., :-k]], dim=-1)
        A = torch.cat([A[..., :k], A[..., k:] * A[..., :-k]], dim=-1)
        k *= 2
    return B
