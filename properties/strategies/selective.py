"""Inputs of ``selective_scan`` and ``selective_state_update`` (CONTRACT.md; semantics of mamba-ssm's
``selective_scan_ref`` / ``selective_state_update_ref``, conventions in docs/mamba_oracles.md).

Every feature of the role is drawn on and off (unless removed by --ssm-without):
complex A (with B/C interleaved real (b, n, 2l) when variable, complex (d, n) when constant),
constant / variable / grouped B and C (independently; groups 1 < g < d included), D, z,
delta_bias, delta_softplus, return_last_state.

Sizes. Lengths 1..1100 (odd, prime, powers of two and their neighbours: 1023, 1024, 1025, ...),
state sizes 1..64, channels 1..16, batch 1..3. The oracle costs ~40 us per element of
(b, d, l, n) (twice that for complex A), so an example's b*d*l*n is drawn under a budget
(``max_elements``; a third of the examples small, a third medium, a third up to the budget) and
long sequences come with small b*d*n. The metamorphic properties (causal, batch independence,
strided inputs, state carry) need only the oracle's float64 magnitude pass, not its
multiple-precision values, and draw up to 2^20 elements: enough to cross the time blocking of
kernels that block by b*d*n (ours: 2^18 / (b d n) steps per block).

Values. A real: S4D-real (-(1..n)), -exp(N(0, 1)), close to 0 (-10^-k, k = 1..7, and exact zeros),
or a per-element mix; complex A adds Im A = pi k (S4D-Lin) or uniform in [-10, 10].
delta with softplus: typical (-7..0, Delta ~ 1e-3..0.7), across the threshold 20 (15..25), beyond
float32's exp overflow (80..120: a softplus without its threshold returns inf), or a mix; the
bias in [-4, 4]. Without softplus: Delta = delta + bias >= 0 (log-uniform 1e-4..1, or 1..30), so
exp(Delta A) never grows. delta + bias is kept >= 1e-6 away from 20 (the branch jump of softplus,
e^-20 ~ 2e-9 in Delta, is in no tolerance term and visible in float64; docs/mamba_oracles.md).
u scaled by 2^-4..2^4, B and C by 2^-2..2^2, z in N(0, 2^2) (SiLU near 0 and saturated).
Half dtypes: A, D, delta_bias (and constant B/C, as mamba-ssm's weights) are float32 (``fp32``).

Named class (issue 19; beyond CONTRACT.md): ``zero_A``, some entries of A exactly 0 (no decay: the
"near_zero" kind draws them; a kernel that divides by A or takes log(-A) breaks there). Left out
(--ssm-without zero_A), no entry is 0; forced (--ssm-with zero_A), every A has one. Every feature
forced by --ssm-with is on in every example (properties/options.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from ssm_conformance.properties.options import coin, enabled, forced, length_cap, pick
from ssm_conformance.properties.strategies.common import lengths, seeds
from ssm_conformance.properties.strategies.long_sequences import (call_source as _call_source,
                                                                 long_lengths, long_profile)

SPECIAL_LENGTHS = (1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 97, 127, 128, 129, 251,
                   255, 256, 257, 509, 511, 512, 513, 1021, 1023, 1024, 1025, 1031, 1100)
STATE_SIZES = (1, 2, 3, 4, 8, 16, 32, 64)
A_KINDS = ("s4d_real", "lognormal", "near_zero", "mixed")
SOFTPLUS_DELTA_KINDS = ("typical", "threshold", "huge", "mixed")
PLAIN_DELTA_KINDS = ("small", "large")
THRESHOLD = 20.0
THRESHOLD_MARGIN = 1e-6

ORACLE_ELEMENTS = 6144        # matches_oracle / vjp: b*d*l*n (x2 for complex A counted)
METAMORPHIC_ELEMENTS = 1 << 20
# Every activation tensor at most 2^14 elements: a failing (or new worst) example is printed in
# full as its reproduction, and printing costs ~0.15 s per 2^14 numbers, superlinearly more above.
MAX_ACTIVATION = 1 << 14


@dataclass
class SelectiveCase:
    """One call of ``selective_scan``: arrays in float64/complex128, flags as Python values."""

    u: np.ndarray
    delta: np.ndarray
    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray | None = None
    z: np.ndarray | None = None
    delta_bias: np.ndarray | None = None
    delta_softplus: bool = False
    return_last_state: bool = False
    features: frozenset = field(default_factory=frozenset)
    fp32: tuple = ("A", "D", "delta_bias")
    info: dict = field(default_factory=dict)   # kinds drawn, for the repr
    cotangent: np.ndarray | None = None

    def args(self):
        return {"u": self.u, "delta": self.delta, "A": self.A, "B": self.B, "C": self.C,
                "D": self.D, "z": self.z, "delta_bias": self.delta_bias,
                "delta_softplus": self.delta_softplus, "return_last_state": self.return_last_state}

    @property
    def shape(self):
        b, d, l = self.u.shape
        return b, d, l, self.A.shape[1]

    @property
    def size(self) -> int:
        return self.u.shape[-1]

    @property
    def length(self) -> int:
        return self.u.shape[-1]

    @property
    def complex(self) -> bool:
        return bool(np.iscomplexobj(self.A))

    def replace(self, **changes) -> "SelectiveCase":
        """A copy with some arrays/flags changed (features and fp32 kept)."""
        cotangent = changes.pop("cotangent", self.cotangent)
        values = {**self.args(), **changes}
        return SelectiveCase(**values, features=self.features, fp32=self.fp32, info=dict(self.info),
                             cotangent=cotangent)

    def __repr__(self):
        b, d, l, n = self.shape
        return (f"SelectiveCase(b={b}, d={d}, l={l}, n={n}, {self.info}, "
                f"features={sorted(self.features)})")


def time_slice(case: SelectiveCase, start: int, stop: int) -> dict:
    """The time-varying arrays of ``case`` restricted to steps start..stop-1 (interleaved complex
    B/C: last-axis entries 2 start .. 2 stop - 1)."""
    out = {"u": case.u[..., start:stop], "delta": case.delta[..., start:stop]}
    if case.z is not None:
        out["z"] = case.z[..., start:stop]
    for name in ("B", "C"):
        X = getattr(case, name)
        if X.ndim > 2:
            out[name] = X[..., 2 * start:2 * stop] if case.complex and not np.iscomplexobj(X) \
                else X[..., start:stop]
    return out


def _A(kind, d, n, rng, zeros=True):
    """Real A (d, n) of ``kind``; ``zeros``: the near_zero kind's exact zeros (zero_A) kept."""
    if kind == "s4d_real":
        return -np.tile(np.arange(1.0, n + 1), (d, 1))
    if kind == "lognormal":
        return -np.exp(rng.standard_normal((d, n)))
    if kind == "near_zero":
        A = -(10.0 ** -rng.uniform(1, 7, size=(d, n)))
        mask = rng.random((d, n)) < 0.25
        if zeros:
            A[mask] = 0.0
        return A
    parts = [_A(k, d, n, rng, zeros) for k in A_KINDS[:3]]
    choice = rng.integers(0, 3, size=(d, n))
    return np.choose(choice, parts)


def zero_A_flag():
    """The ``zero_A`` argument of the case builders: True forced, False left out, None drawn as
    the kind draws it."""
    return True if forced("zero_A") else (None if enabled("zero_A") else False)


def with_zero_A(A, zero, rng):
    """A (complex part included) with at least one entry set to exactly 0 when ``zero``."""
    if zero:
        A = A.copy()
        A.flat[rng.integers(A.size)] = 0.0
    return A


def _bc_forms(name: str, need_groups: bool = True) -> list:
    """The forms of B or C (``name``) the options allow: constant (constant_B / constant_C),
    grouped (grouped_BC), variable; a forced constant form only."""
    if forced(f"constant_{name}"):
        return ["constant"]
    return (["variable"] + (["constant"] if enabled(f"constant_{name}") else [])
            + (["grouped"] if enabled("grouped_BC") and need_groups else []))


def _force_groups(B_kind: str, C_kind: str) -> tuple:
    """A forced grouped_BC: B or C grouped (the one not forced constant)."""
    if forced("grouped_BC") and "grouped" not in (B_kind, C_kind):
        if forced("constant_C"):
            return "grouped", C_kind
        return B_kind, "grouped"
    return B_kind, C_kind


def _delta(kind, shape, softplus, rng):
    if softplus:
        if kind == "typical":
            return rng.uniform(-7.0, 0.0, size=shape)
        if kind == "threshold":
            return rng.uniform(15.0, 25.0, size=shape)
        if kind == "huge":
            return rng.uniform(80.0, 120.0, size=shape)
        parts = [_delta(k, shape, True, rng) for k in SOFTPLUS_DELTA_KINDS[:3]]
        return np.choose(rng.integers(0, 3, size=shape), parts)
    if kind == "small":
        return 10.0 ** rng.uniform(-4, 0, size=shape)
    return rng.uniform(1.0, 30.0, size=shape)


def _limit_decay(A, delta, bias, softplus, max_decay):
    """A scaled per channel so that every exponent Dt |Re A| <= max_decay.

    For gradients: with max_decay = 80, exp(Dt A) >= e^-80 ~ 1.8e-35 stays a normal float32.
    Beyond e^-87.3 the factor is subnormal: it keeps only ~2^-149 absolute accuracy, and when
    every term of dL/dA[d, n] holds such a factor, that gradient's relative error reaches 1e-3
    while its magnitude-based tolerance does not count this gradual-underflow error times the
    other factors (the model's underflow term is u * tiny, without cofactors). Measured: a
    correct float32 loop at 2x the tolerance. The forward pass is not affected (the
    subnormal factor multiplies a state that is added to normal-sized inputs)."""
    x = delta + (0.0 if bias is None else np.float32(bias).astype(np.float64)[None, :, None])
    with np.errstate(over="ignore"):
        dt = np.where(x > THRESHOLD, x, np.log1p(np.exp(np.minimum(x, THRESHOLD)))) if softplus \
            else x
    worst = np.abs(dt).max(axis=(0, 2)) * np.abs(A.real).max(axis=1)       # per channel
    scale = np.where(worst > max_decay, max_decay / np.maximum(worst, 1e-300), 1.0)
    return A * scale[:, None]


def _away_from_threshold(delta, bias):
    """Move delta where delta + float32(bias) lies within THRESHOLD_MARGIN of 20."""
    x = delta + (0.0 if bias is None else np.float32(bias).astype(np.float64)[None, :, None])
    near = np.abs(x - THRESHOLD) < THRESHOLD_MARGIN
    return np.where(near, delta + 1e-3, delta)


def _bc(kind, b, d, n, l, g, cplx, rng, scale):
    if kind == "constant":
        X = rng.standard_normal((d, n))
        if cplx:
            X = X + 1j * rng.standard_normal((d, n))
        return X * scale
    lead = (b, n) if kind == "variable" else (b, g, n)
    return rng.standard_normal(lead + ((2 * l) if cplx else l,)) * scale


@st.composite
def _dims(draw, max_elements, min_batch, min_length, max_length, cplx, need_groups):
    """(b, d, l, n) under the element budget (b d l n, halved for complex A), every activation
    tensor (u, delta, z: b d l; B, C: b n l, b g n l) at most MAX_ACTIVATION elements; d has a
    divisor 1 < g < d when groups are drawn."""
    budget = max_elements // (2 if cplx else 1)
    act = MAX_ACTIVATION // (2 if cplx else 1)
    classes = ["small", "medium", "large"] + (["huge"] if budget >= 1 << 18 else [])
    size_class = draw(st.sampled_from(classes))
    if size_class == "huge":
        # the most state (b d n = 4096 b) and as many steps as the activation cap allows:
        # 2^18 / (b d n) steps per block in our torch kernel, so 2..4 blocks
        d, n, b = 64, 64, max(min_batch, draw(st.sampled_from([1, 2])))
        top = max(min_length, length_cap(min(max_length, budget // (b * d * n),
                                             act // (b * max(d, n)))))
        return b, d, draw(st.integers(max(min_length, top // 2), top)), n
    budget = {"small": min(256, budget), "medium": min(2048, budget), "large": budget}[size_class]
    budget = max(budget, min_batch * min_length)
    top = max(min_length, min(max_length, budget // min_batch, act // min_batch))
    length = max(min_length, draw(lengths(top, SPECIAL_LENGTHS)))
    room = max(1, budget // (length * min_batch))
    n = draw(st.sampled_from([s for s in STATE_SIZES if s <= room and min_batch * s * length <= act]
                             or [1]))
    room = max(1, room // n)
    channels = (2, 4, 6, 8, 16) if need_groups else (1, 2, 3, 4, 6, 8, 16)
    d = draw(st.sampled_from([c for c in channels if c <= room and min_batch * c * length <= act]
                             or [channels[0]]))
    room = max(1, room // d)
    b = draw(st.sampled_from([x for x in (1, 2, 3) if min_batch <= x <= max(room, min_batch)
                              and x * max(d, n) * length <= act] or [min_batch]))
    return b, d, length, n


@st.composite
def selective_cases(draw, max_elements=ORACLE_ELEMENTS, max_length=1100, min_length=1,
                    min_batch=1, real_only=False, last_state=None, max_decay=None):
    """Inputs of ``selective_scan``. ``last_state``: None draws return_last_state, True/False
    forces it. ``real_only`` leaves complex A out (properties whose oracle is real only).
    ``max_decay``: A scaled per channel so that Dt |Re A| <= max_decay (see _limit_decay)."""
    cplx = not real_only and coin(draw, "complex_A")
    B_kind = draw(st.sampled_from(_bc_forms("B")))
    C_kind = draw(st.sampled_from(_bc_forms("C")))
    B_kind, C_kind = _force_groups(B_kind, C_kind)
    grouped = "grouped" in (B_kind, C_kind)
    b, d, l, n = draw(_dims(max_elements, min_batch, min_length, max_length, cplx, grouped))
    rng = np.random.default_rng(draw(seeds()))
    divisors = [x for x in range(1, d + 1) if d % x == 0]
    proper = [x for x in divisors if 1 < x < d]
    # groups: mostly 1 < g < d (where consecutive channels sharing a group shows), sometimes 1 or d
    fits = (lambda x: b * x * n * l * (2 if cplx else 1) <= MAX_ACTIVATION or x == 1)
    proper = [x for x in proper if fits(x)]
    g = draw(st.sampled_from(proper * 3 + [x for x in (1, d) if fits(x)] if proper
                             else [x for x in divisors if fits(x)]))
    softplus = coin(draw, "delta_softplus")
    has = {f: coin(draw, f) for f in ("D", "z", "delta_bias")}
    ret_last = coin(draw, "last_state") if last_state is None else last_state

    a_kind = draw(st.sampled_from(A_KINDS))
    zero = zero_A_flag()
    A = _A(a_kind, d, n, rng, zero is not False)
    if cplx:
        imag = (np.pi * np.tile(np.arange(n), (d, 1)) if draw(st.booleans())
                else rng.uniform(-10, 10, size=(d, n)))
        A = A + 1j * imag
    A = with_zero_A(A, zero, rng)
    delta_kind = draw(st.sampled_from(SOFTPLUS_DELTA_KINDS if softplus else PLAIN_DELTA_KINDS))
    delta = _delta(delta_kind, (b, d, l), softplus, rng)
    if has["delta_bias"]:
        bias = rng.uniform(-4.0, 4.0, size=d) if softplus else rng.uniform(0.0, 0.5, size=d)
    else:
        bias = None
    delta = _away_from_threshold(delta, bias)
    if max_decay is not None:
        A = _limit_decay(A, delta, bias, softplus, max_decay)
    u = rng.standard_normal((b, d, l)) * 2.0 ** draw(st.integers(-4, 4))
    B = _bc(B_kind, b, d, n, l, g, cplx, rng, 2.0 ** draw(st.integers(-2, 2)))
    C = _bc(C_kind, b, d, n, l, g, cplx, rng, 2.0 ** draw(st.integers(-2, 2)))
    D = rng.standard_normal(d) if has["D"] else None
    z = 2.0 * rng.standard_normal((b, d, l)) if has["z"] else None

    features = {f for f, on in has.items() if on}
    features |= {"complex_A"} if cplx else set()
    features |= {"constant_B"} if B_kind == "constant" else set()
    features |= {"constant_C"} if C_kind == "constant" else set()
    features |= {"grouped_BC"} if grouped else set()
    features |= {"delta_softplus"} if softplus else set()
    features |= {"last_state"} if ret_last else set()
    features |= {"zero_A"} if np.any(A == 0) else set()
    fp32 = ("A", "D", "delta_bias") + tuple(name for name, kind in (("B", B_kind), ("C", C_kind))
                                            if kind == "constant")
    info = {"A": a_kind, "delta": delta_kind, "B": B_kind, "C": C_kind}
    if grouped:
        info["g"] = g
    return SelectiveCase(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=bias,
                         delta_softplus=softplus, return_last_state=ret_last,
                         features=frozenset(features), fp32=fp32, info=info,
                         cotangent=rng.standard_normal((b, d, l)))


# ----------------------------------------------------------------------------------------------
# selective_state_update

@dataclass
class StateUpdateCase:
    """One decode step: state (b, d, n), x, dt, z (b, d), A (d, n), B, C (b, n), D, dt_bias (d,)."""

    state: np.ndarray
    x: np.ndarray
    dt: np.ndarray
    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray | None = None
    z: np.ndarray | None = None
    dt_bias: np.ndarray | None = None
    dt_softplus: bool = False
    features: frozenset = field(default_factory=frozenset)
    fp32: tuple = ("A", "D", "dt_bias")
    info: dict = field(default_factory=dict)

    def args(self):
        return {"state": self.state, "x": self.x, "dt": self.dt, "A": self.A, "B": self.B,
                "C": self.C, "D": self.D, "z": self.z, "dt_bias": self.dt_bias,
                "dt_softplus": self.dt_softplus}

    @property
    def size(self) -> int:
        return int(np.prod(self.state.shape))

    def __repr__(self):
        b, d, n = self.state.shape
        return (f"StateUpdateCase(b={b}, d={d}, n={n}, {self.info}, "
                f"features={sorted(self.features)})")


@st.composite
def state_update_cases(draw):
    """One decode step. b 1..4, d 1..64, n 1..64 (b*d*n <= 2^14: the oracle costs ~10 us per
    state element); A, dt, bias drawn as for the scan; the incoming state as a scan leaves it
    (normal, scaled by 2^-4..2^6), or exactly zero."""
    b = draw(st.sampled_from([1, 2, 3, 4]))
    n = draw(st.sampled_from(STATE_SIZES))
    d = draw(st.sampled_from([x for x in (1, 2, 3, 5, 8, 16, 64) if b * x * n <= 1 << 14] or [1]))
    rng = np.random.default_rng(draw(seeds()))
    softplus = coin(draw, "dt_softplus")
    has = {f: coin(draw, f) for f in ("D", "z", "dt_bias")}
    a_kind = draw(st.sampled_from(A_KINDS))
    zero = zero_A_flag()
    A = with_zero_A(_A(a_kind, d, n, rng, zero is not False), zero, rng)
    dt_kind = draw(st.sampled_from(SOFTPLUS_DELTA_KINDS if softplus else PLAIN_DELTA_KINDS))
    dt = _delta(dt_kind, (b, d, 1), softplus, rng)
    if has["dt_bias"]:
        bias = rng.uniform(-4.0, 4.0, size=d) if softplus else rng.uniform(0.0, 0.5, size=d)
    else:
        bias = None
    dt = _away_from_threshold(dt, bias)[..., 0]
    state = (np.zeros((b, d, n)) if draw(st.integers(0, 7)) == 0
             else rng.standard_normal((b, d, n)) * 2.0 ** draw(st.integers(-4, 6)))
    x = rng.standard_normal((b, d)) * 2.0 ** draw(st.integers(-4, 4))
    B = rng.standard_normal((b, n)) * 2.0 ** draw(st.integers(-2, 2))
    C = rng.standard_normal((b, n)) * 2.0 ** draw(st.integers(-2, 2))
    D = rng.standard_normal(d) if has["D"] else None
    z = 2.0 * rng.standard_normal((b, d)) if has["z"] else None
    features = {f for f, on in has.items() if on} | ({"dt_softplus"} if softplus else set())
    features |= {"zero_A"} if np.any(A == 0) else set()
    return StateUpdateCase(state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=bias,
                           dt_softplus=softplus, features=frozenset(features),
                           info={"A": a_kind, "dt": dt_kind})


@dataclass
class DecodeCase(StateUpdateCase):
    """l decode steps from a zero state: step t calls the state update on x[..., t], dt[..., t],
    B[..., t], C[..., t], z[..., t] (arrays here hold the whole sequence: x, dt, z (b, d, l);
    B, C (b, n, l)), with the state the previous step left. The state is float32 (``fp32``):
    a decode cache kept in a half dtype rounds the state every step, an error the scan's bound
    does not contain."""

    fp32: tuple = ("state", "A", "D", "dt_bias")

    @property
    def size(self) -> int:
        return self.x.shape[-1]

    @property
    def length(self) -> int:
        return self.x.shape[-1]

    def step(self, t: int, state: np.ndarray, fp32_state: bool) -> StateUpdateCase:
        """Step t from ``state``; the state float32 when ``fp32_state`` (half dtypes), else in
        the dtype under test."""
        pick = (lambda v: None if v is None else v[..., t])
        fp32 = ("A", "D", "dt_bias") + (("state",) if fp32_state else ())
        return StateUpdateCase(state=state, x=self.x[..., t], dt=self.dt[..., t], A=self.A,
                               B=self.B[..., t], C=self.C[..., t], D=self.D, z=pick(self.z),
                               dt_bias=self.dt_bias, dt_softplus=self.dt_softplus,
                               features=self.features, fp32=fp32, info=self.info)

    def call_lines(self, fn: str, dtype: str, device: str) -> list[str]:
        """The decode loop as Python source (the reproduction prints it after the arguments):
        a zero cache, float32 for half dtypes, updated in place by each step."""
        b, d, n = self.state.shape
        cache = "float32" if dtype in ("bfloat16", "float16") else dtype
        z = "None if z is None else z[..., t].contiguous()"
        return ["import torch",
                f"state = torch.zeros({b}, {d}, {n}, dtype=torch.{cache}, device={device!r})"
                "   # the decode cache",
                f"outs = [{fn}(state, x[..., t].contiguous(), dt[..., t].contiguous(), A, "
                f"B[..., t].contiguous(), C[..., t].contiguous(), D, {z}, dt_bias, dt_softplus)",
                f"        for t in range({self.length})]"]

    def __repr__(self):
        b, d, l = self.x.shape
        return (f"DecodeCase({l} steps from a zero state, b={b}, d={d}, n={self.A.shape[1]}; "
                f"the arrays hold all steps: step t takes x[..., t], dt[..., t], B[..., t], "
                f"C[..., t], z[..., t]; {self.info}, features={sorted(self.features)})")


@st.composite
def decode_cases(draw, max_steps=48, max_elements=2048):
    """A short sequence for l decode steps (2 subject calls per step): l 1..48,
    b*d*n*l <= 2048, real A, B and C per step (b, n, l)."""
    b, d, l, n = draw(_dims(max_elements, 1, 1, max_steps, False, False))
    rng = np.random.default_rng(draw(seeds()))
    softplus = coin(draw, "dt_softplus")
    has = {f: coin(draw, f) for f in ("D", "z", "dt_bias")}
    a_kind = draw(st.sampled_from(A_KINDS))
    dt_kind = draw(st.sampled_from(SOFTPLUS_DELTA_KINDS if softplus else PLAIN_DELTA_KINDS))
    dt = _delta(dt_kind, (b, d, l), softplus, rng)
    if has["dt_bias"]:
        bias = rng.uniform(-4.0, 4.0, size=d) if softplus else rng.uniform(0.0, 0.5, size=d)
    else:
        bias = None
    features = {f for f, on in has.items() if on} | ({"dt_softplus"} if softplus else set())
    x = rng.standard_normal((b, d, l)) * 2.0 ** draw(st.integers(-4, 4))
    zero = zero_A_flag()
    A = with_zero_A(_A(a_kind, d, n, rng, zero is not False), zero, rng)
    features |= {"zero_A"} if np.any(A == 0) else set()
    return DecodeCase(state=np.zeros((b, d, n)), x=x,
                      dt=_away_from_threshold(dt, bias), A=A,
                      B=rng.standard_normal((b, n, l)) * 2.0 ** draw(st.integers(-2, 2)),
                      C=rng.standard_normal((b, n, l)) * 2.0 ** draw(st.integers(-2, 2)),
                      D=rng.standard_normal(d) if has["D"] else None,
                      z=2.0 * rng.standard_normal((b, d, l)) if has["z"] else None,
                      dt_bias=bias, dt_softplus=softplus, features=frozenset(features),
                      info={"A": a_kind, "dt": dt_kind})


# ----------------------------------------------------------------------------------------------
# long sequences (issue 11): beyond the multiple-precision oracle's budget, judged against the
# long tier (oracle/long_scan.py). Built by public functions of a seed and parameters, so a
# failing case prints that call as its reproduction (``rebuild``), not its numbers.

LONG_ELEMENTS = 1 << 18        # b d l n of a drawn long case (ci, dev)
THOROUGH_ELEMENTS = 1 << 20    # thorough: 2^20 elements per tensor
_MODULE = "ssm_conformance.properties.strategies.selective"


def selective_case_from_seed(seed, b=1, d=1, l=2048, n=2, *, A="s4d_real", delta="typical",
                             softplus=True, B="variable", C="variable", g=1, D=False, z=False,
                             delta_bias=False, last_state=False, complex_A=False,
                             max_decay=None, zero_A=None) -> SelectiveCase:
    """The SelectiveCase of ``seed`` with the given sizes and features (kinds as in
    ``selective_cases``: A in A_KINDS, delta in SOFTPLUS_DELTA_KINDS or PLAIN_DELTA_KINDS, B and C
    "variable", "constant" or "grouped" with g groups; ``zero_A``: None, A's zeros as its kind
    draws them, False none, True at least one); deterministic."""
    kwargs = dict(seed=seed, b=b, d=d, l=l, n=n, A=A, delta=delta, softplus=softplus, B=B, C=C,
                  g=g, D=D, z=z, delta_bias=delta_bias, last_state=last_state,
                  complex_A=complex_A, max_decay=max_decay)
    if zero_A is not None:
        kwargs["zero_A"] = zero_A
    rng = np.random.default_rng(seed)
    Am = _A(A, d, n, rng, zero_A is not False)
    if complex_A:
        Am = Am + 1j * np.pi * np.tile(np.arange(n), (d, 1))
    Am = with_zero_A(Am, zero_A, rng)
    dm = _delta(delta, (b, d, l), softplus, rng)
    bias = None
    if delta_bias:
        bias = rng.uniform(-4.0, 4.0, size=d) if softplus else rng.uniform(0.0, 0.5, size=d)
    dm = _away_from_threshold(dm, bias)
    if max_decay is not None:
        Am = _limit_decay(Am, dm, bias, softplus, max_decay)
    u = rng.standard_normal((b, d, l))
    Bm = _bc(B, b, d, n, l, g, complex_A, rng, 1.0)
    Cm = _bc(C, b, d, n, l, g, complex_A, rng, 1.0)
    features = {f for f, on in (("D", D), ("z", z), ("delta_bias", delta_bias),
                                ("complex_A", complex_A), ("delta_softplus", softplus),
                                ("last_state", last_state)) if on}
    features |= {"constant_B"} if B == "constant" else set()
    features |= {"constant_C"} if C == "constant" else set()
    features |= {"grouped_BC"} if "grouped" in (B, C) else set()
    features |= {"zero_A"} if np.any(Am == 0) else set()
    fp32 = ("A", "D", "delta_bias") + tuple(name for name, kind in (("B", B), ("C", C))
                                            if kind == "constant")
    case = SelectiveCase(u=u, delta=dm, A=Am, B=Bm, C=Cm,
                         D=rng.standard_normal(d) if D else None,
                         z=2.0 * rng.standard_normal((b, d, l)) if z else None,
                         delta_bias=bias, delta_softplus=softplus, return_last_state=last_state,
                         features=frozenset(features), fp32=fp32,
                         info={"A": A, "delta": delta, "B": B, "C": C, "long": True},
                         cotangent=rng.standard_normal((b, d, l)))
    case.rebuild = (_MODULE, _call_source("selective_case_from_seed", **kwargs))
    return case


_FEATURES = ("D", "z", "delta_bias", "last_state", "complex_A", "softplus")


def explicit_selective(lengths, max_decay=None):
    """Keyword arguments of the explicit long cases of ``lengths``: b d n tiny, the features
    (each on in about half of them), kinds of A and delta, and B/C forms varied across them;
    features removed by --ssm-without left out."""
    cases = []
    for i, l in enumerate(lengths):
        coin = np.random.default_rng(7700 + i).random(len(_FEATURES)) < 0.5
        on = dict(zip(_FEATURES, coin.tolist()))
        on = {f: pick({"softplus": "delta_softplus"}.get(f, f), v) for f, v in on.items()}
        forms = [("variable", "variable"), ("constant", "variable"), ("variable", "grouped"),
                 ("grouped", "constant")][i % 4]
        forms = tuple("constant" if forced("constant_" + name) else
                      f if f == "variable" or enabled({"constant": "constant_" + name,
                                                       "grouped": "grouped_BC"}[f])
                      else "variable" for f, name in zip(forms, "BC"))
        forms = _force_groups(*forms)
        d = 2 if "grouped" in forms else 1 + (i % 2)
        softplus = on["softplus"]
        kinds = SOFTPLUS_DELTA_KINDS if softplus else PLAIN_DELTA_KINDS
        cases.append(dict(seed=2100 + i, b=1 + (i % 3 == 0), d=d, l=length_cap(l),
                          n=(1, 2, 4)[i % 3], A=A_KINDS[i % len(A_KINDS)],
                          delta=kinds[i % len(kinds)], softplus=softplus, B=forms[0],
                          C=forms[1], g=2 if "grouped" in forms else 1, D=on["D"], z=on["z"],
                          delta_bias=on["delta_bias"], last_state=on["last_state"],
                          complex_A=on["complex_A"], max_decay=max_decay,
                          **({} if zero_A_flag() is None else {"zero_A": zero_A_flag()})))
    return cases


@st.composite
def long_selective_cases(draw, min_length=ORACLE_ELEMENTS + 1, max_decay=None):
    """A long sequence: l log-uniform up to 2^17, b d l n <= 2^18 (thorough: every tensor up to
    2^20 elements), the features drawn as in selective_cases."""
    cap = THOROUGH_ELEMENTS if long_profile() else LONG_ELEMENTS
    l = draw(long_lengths(min(min_length, 1 << 16)))
    room = max(1, cap // l)
    n = draw(st.sampled_from([x for x in STATE_SIZES if x <= room] or [1]))
    d = draw(st.sampled_from([x for x in (1, 2, 4, 8) if x * n <= room] or [1]))
    b = draw(st.sampled_from([x for x in (1, 2) if x * d * n <= room] or [1]))
    B = draw(st.sampled_from(_bc_forms("B", d > 1 or forced("grouped_BC"))))
    C = draw(st.sampled_from(_bc_forms("C", d > 1 or forced("grouped_BC"))))
    B, C = _force_groups(B, C)
    softplus = coin(draw, "delta_softplus")
    on = {f: coin(draw, f) for f in ("D", "z", "delta_bias")}
    return selective_case_from_seed(
        draw(seeds()), b, d, l, n, A=draw(st.sampled_from(A_KINDS)),
        delta=draw(st.sampled_from(SOFTPLUS_DELTA_KINDS if softplus else PLAIN_DELTA_KINDS)),
        softplus=softplus, B=B, C=C, g=d if d > 1 and "grouped" in (B, C) else 1, **on,
        last_state=coin(draw, "last_state"), complex_A=coin(draw, "complex_A"),
        max_decay=max_decay, zero_A=zero_A_flag())


def decode_case_from_seed(seed, b=1, d=1, l=2048, n=2, *, A="s4d_real", dt="typical",
                          dt_softplus=True, D=False, z=False, dt_bias=False,
                          zero_A=None) -> DecodeCase:
    """The DecodeCase of ``seed``: l decode steps from a zero state (kinds as in decode_cases;
    ``zero_A`` as in selective_case_from_seed); deterministic."""
    kwargs = dict(seed=seed, b=b, d=d, l=l, n=n, A=A, dt=dt, dt_softplus=dt_softplus, D=D, z=z,
                  dt_bias=dt_bias)
    if zero_A is not None:
        kwargs["zero_A"] = zero_A
    rng = np.random.default_rng(seed)
    dtm = _delta(dt, (b, d, l), dt_softplus, rng)
    bias = None
    if dt_bias:
        bias = rng.uniform(-4.0, 4.0, size=d) if dt_softplus else rng.uniform(0.0, 0.5, size=d)
    features = {f for f, on in (("D", D), ("z", z), ("dt_bias", dt_bias),
                                ("dt_softplus", dt_softplus)) if on}
    x = rng.standard_normal((b, d, l))
    Am = with_zero_A(_A(A, d, n, rng, zero_A is not False), zero_A, rng)
    features |= {"zero_A"} if np.any(Am == 0) else set()
    case = DecodeCase(state=np.zeros((b, d, n)), x=x,
                      dt=_away_from_threshold(dtm, bias), A=Am,
                      B=rng.standard_normal((b, n, l)), C=rng.standard_normal((b, n, l)),
                      D=rng.standard_normal(d) if D else None,
                      z=2.0 * rng.standard_normal((b, d, l)) if z else None,
                      dt_bias=bias, dt_softplus=dt_softplus, features=frozenset(features),
                      info={"A": A, "dt": dt, "long": True})
    case.rebuild = (_MODULE, _call_source("decode_case_from_seed", **kwargs))
    return case


def explicit_decode(lengths):
    """Keyword arguments of explicit long decode sequences of ``lengths`` (tiny b d n, features
    varied; removed ones left out)."""
    cases = []
    for i, l in enumerate(lengths):
        coin = np.random.default_rng(8800 + i).random(4) < 0.5
        on = {f: pick(f, bool(c)) for f, c in zip(("D", "z", "dt_bias", "dt_softplus"), coin)}
        kinds = SOFTPLUS_DELTA_KINDS if on["dt_softplus"] else PLAIN_DELTA_KINDS
        cases.append(dict(seed=3100 + i, b=1, d=1 + i % 2, l=length_cap(l), n=(2, 1, 4)[i % 3],
                          A=A_KINDS[i % len(A_KINDS)], dt=kinds[i % len(kinds)], **on,
                          **({} if zero_A_flag() is None else {"zero_A": zero_A_flag()})))
    return cases


# ----------------------------------------------------------------------------------------------
# derived inputs of the metamorphic properties

@st.composite
def split_cases(draw, cases, max_suffix=None, suffix_elements=None):
    """(case, t) with 1 <= t < l: a split point, often at a power of two or its neighbour (block
    and chunk boundaries of blocked kernels); l - t <= max_suffix if given, and
    (l - t) b d n <= suffix_elements if given (at least one step)."""
    case = draw(cases)
    l = case.size
    if suffix_elements is not None:
        b, d, _, n = case.shape
        max_suffix = max(1, min(max_suffix or l, suffix_elements // (b * d * n)))
    lo = 1 if max_suffix is None else max(1, l - max_suffix)
    special = {lo, l - 1, max(lo, l // 2)}
    special |= {2 ** k + e for k in range(1, 12) for e in (-1, 0, 1) if lo <= 2 ** k + e < l}
    t = draw(st.one_of(st.sampled_from(sorted(special)), st.integers(lo, l - 1)))
    return case, t


def redraw_after(case: SelectiveCase, t: int, seed: int) -> SelectiveCase:
    """``case`` with every time-varying input (u, delta, z, variable/grouped B and C) redrawn at
    steps >= t, in the ranges the case already spans."""
    rng = np.random.default_rng(seed)
    changes = {}

    def redraw(X, start, scale):
        X = X.copy()
        X[..., start:] = rng.standard_normal(X[..., start:].shape) * scale
        return X

    changes["u"] = redraw(case.u, t, np.abs(case.u).max() + 1.0)
    delta = case.delta.copy()
    delta[..., t:] = rng.uniform(case.delta.min(), case.delta.max(), size=delta[..., t:].shape)
    changes["delta"] = _away_from_threshold(delta, case.delta_bias)
    if case.z is not None:
        changes["z"] = redraw(case.z, t, 2.0)
    for name in ("B", "C"):
        X = getattr(case, name)
        if X.ndim > 2:
            start = 2 * t if case.complex and not np.iscomplexobj(X) else t
            changes[name] = redraw(X, start, np.abs(X).max() + 1.0)
    return case.replace(**changes)


def batch_element(case: SelectiveCase, i: int) -> SelectiveCase:
    """Batch element i of ``case`` alone (b = 1)."""
    pick = (lambda X: None if X is None else X[i:i + 1])
    changes = {"u": pick(case.u), "delta": pick(case.delta), "z": pick(case.z)}
    for name in ("B", "C"):
        X = getattr(case, name)
        if X.ndim > 2:
            changes[name] = pick(X)
    return case.replace(cotangent=None, **changes)


LAYOUTS = ("reversed", "time_outermost")


def strided(t, layout: str):
    """The same values in a dense, non-contiguous layout: the axes stored in reverse order
    ("reversed"), or the last (time) axis stored outermost ("time_outermost": u (b, d, l) laid out
    as (l, b, d), B (b, n, l) as (l, b, n)). Dense layouts survive the harness's input snapshots
    (clone keeps a dense tensor's strides; a sliced one would come back contiguous). Tensors with
    fewer than two axes stay as they are."""
    import torch
    if not isinstance(t, torch.Tensor) or t.dim() < 2:
        return t
    k = t.dim()
    perm = tuple(reversed(range(k))) if layout == "reversed" else (k - 1,) + tuple(range(k - 1))
    inverse = tuple(int(i) for i in np.argsort(perm))
    return t.permute(perm).contiguous().permute(inverse)
