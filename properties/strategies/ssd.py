"""Inputs of ``ssd`` (Mamba-2 SSD, semantics of mamba-ssm's ``mamba_chunk_scan_combined``).

x (b,l,h,p), dt (b,l,h), A (h,), B, C (b,l,g,n), chunk_size, and the optional D ((h,) or (h,p)),
z (b,l,h,p), dt_bias (h,), initial_states (b,h,p,n), dt_softplus, return_final_states -- each
optional feature switched on or off independently (unless removed by --ssm-without).

Sizes: any length l >= 1 (1, lengths below, at and above the chunk size, not multiples of it,
up to 1100 > 1024), chunk sizes 1..256 (powers of two, and 3, 5, 48: mamba-ssm's kernels mask
partial chunks, so any chunk size is valid); h in 1..4 with g | h groups, p in 1..8, n in 1..16.
The oracle (oracle/ssd.py) costs ~ b l h p n multiple-precision multiply-adds, so the strategy
keeps b*l*h*p*n <= ``max_cost`` by shrinking p, n, h and b (never l): long sequences come with
small heads.

Values: x, B, C, z, initial_states normal, scaled by powers of two; A <= 0 per head (10^-3..16,
Mamba-2's init is 1..16; some heads exactly 0: no decay, long memory); dt as Mamba-2 produces it:
with dt_softplus, raw dt + dt_bias in one of three ranges (softplus of ~N(-4, 1): steps ~0.02;
N(0, 2); 15..30, through mamba-ssm's threshold 20 where softplus returns its argument); without
softplus, dt >= 0 and dt_bias >= 0, because mamba_chunk_scan_combined clamps the step to
dt_limit = (0, inf) and a negative step would test the clamp, which the references of mamba-ssm
(ssd_chunk_scan_combined_ref, ssd_minimal_discrete) do not have (docs/mamba_oracles.md).

``fp32``: A, D and dt_bias stay float32 under --ssm-dtype bfloat16/float16, as in mamba-ssm's
Mamba2 module (A = -exp(A_log.float()); D and dt_bias are float32 parameters, loaded as float32
by the Triton kernels); x, dt, B, C, z and initial_states are activations in the dtype under test.

Named classes (issue 19; beyond CONTRACT.md), each left out by --ssm-without and drawn in every
example by --ssm-with: ``zero_A`` (some head with A = 0 exactly) and ``non_pow2_chunk`` (a chunk
size that is not a power of two: 3, 5, 48, 100; Triton kernels such as fla's accept only powers
of two). A case's second chunk size (chunk_size_invariant) is drawn from the same class.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from hypothesis import strategies as st

from ssm_conformance.properties.options import coin, enabled, forced, length_cap, pick
from ssm_conformance.properties.strategies.common import SPECIAL_LENGTHS, seeds
from ssm_conformance.properties.strategies.long_sequences import long_lengths, tensor_cap

FEATURES = ("D", "z", "dt_bias", "dt_softplus", "initial_states", "final_states", "grouped_BC")
CHUNK_SIZES = (1, 2, 3, 4, 5, 8, 16, 32, 48, 64, 128, 256)
MAX_LENGTH = 1100
DT_KINDS = ("small", "moderate", "threshold")
# Time-indexed inputs: the ones a "future" redraw (causality) or a split (state carry) touches.
TIME_ARGS = ("x", "dt", "B", "C", "z")
KEEP = object()


@dataclass
class SSDCase:
    x: np.ndarray
    dt: np.ndarray
    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    chunk_size: int
    D: np.ndarray | None = None
    z: np.ndarray | None = None
    dt_bias: np.ndarray | None = None
    initial_states: np.ndarray | None = None
    dt_softplus: bool = False
    return_final_states: bool = False
    features: frozenset = field(default_factory=frozenset)
    cotangent: np.ndarray | None = None  # for the VJP, shaped like the output y
    split: int = 0  # a time step in 1..l-1 (0 when l = 1): causality and state carry
    other_chunk_size: int = 1  # a second chunk size (chunk-size invariance)
    dt_kind: str = "moderate"
    scales: tuple = (1.0, 1.0, 1.0)  # of x, B, C (a redraw of the future keeps them)
    seed: int = 0  # of the redrawn future (causality)
    layout: str = "contiguous"
    fp32: tuple = ("A", "D", "dt_bias")
    rebuild: tuple | None = None  # (module, generator call) of a long case (harness.describe)

    @property
    def length(self) -> int:
        return self.x.shape[1]

    def args(self):
        return {"x": self.x, "dt": self.dt, "A": self.A, "B": self.B, "C": self.C,
                "chunk_size": self.chunk_size, "D": self.D, "z": self.z, "dt_bias": self.dt_bias,
                "initial_states": self.initial_states, "dt_softplus": self.dt_softplus,
                "return_final_states": self.return_final_states}

    @property
    def size(self) -> int:
        return self.x.shape[1]

    @property
    def dims(self):
        b, l, h, p = self.x.shape
        return b, l, h, p, self.B.shape[2], self.B.shape[3]

    def __repr__(self):
        b, l, h, p, g, n = self.dims
        on = [f for f in FEATURES if f in self.features]
        D = "" if self.D is None else f", D{self.D.shape}"
        return (f"SSDCase(b={b}, l={l}, h={h}, p={p}, g={g}, n={n}, chunk_size={self.chunk_size}, "
                f"dt_kind={self.dt_kind!r}, features={on}{D}, layout={self.layout!r})")

    def with_time(self, start: int, stop: int, initial_states=KEEP, return_final_states=None):
        """The case restricted to time steps start..stop-1 (a new case, arrays copied),
        optionally with other initial_states / return_final_states."""
        parts = {k: None if getattr(self, k) is None else getattr(self, k)[:, start:stop].copy()
                 for k in TIME_ARGS}
        out = replace(self, **parts,
                      cotangent=None if self.cotangent is None else self.cotangent[:, start:stop].copy())
        if initial_states is not KEEP:
            out.initial_states = initial_states
        if return_final_states is not None:
            out.return_final_states = return_final_states
        return out

    def batch_element(self, i: int):
        """The case of batch element i alone (b = 1)."""
        sl = slice(i, i + 1)
        parts = {k: None if getattr(self, k) is None else getattr(self, k)[sl].copy()
                 for k in TIME_ARGS + ("initial_states", "cotangent")}
        out = replace(self, **parts)
        return out


def _scale(draw, lo=-4, hi=4) -> float:
    return 2.0 ** draw(st.integers(lo, hi))


def _fit(b, l, h, p, g, n, max_cost):
    """Shrink p, n, then h (keeping g | h), then b until b*l*h*p*n <= max_cost."""
    while b * l * h * p * n > max_cost:
        if p > 1 and p >= n:
            p //= 2
        elif n > 1:
            n //= 2
        elif h > 1:
            h = max(1, h // 2)
            g = max(1, min(g, h))
            while h % g:
                g -= 1
        elif b > 1:
            b -= 1
        else:
            break
    return b, l, h, p, g, n


def _raw_dt(kind: str, shape, rng) -> np.ndarray:
    """Pre-softplus dt (bias added later): three regimes of Mamba-2's step size."""
    if kind == "small":
        return rng.normal(-4.0, 1.0, shape)     # softplus ~ 0.02, Mamba-2's dt_min..dt_max
    if kind == "moderate":
        return rng.normal(0.0, 2.0, shape)
    return rng.uniform(15.0, 30.0, shape)       # across mamba-ssm's threshold 20


def time_arrays(rng, b, l, h, p, g, n, *, softplus, dt_kind, scales, has_z):
    """The time-indexed inputs x, dt, B, C, z (z None unless has_z), all of length l."""
    sx, sb, sc = scales
    out = {
        "x": rng.standard_normal((b, l, h, p)) * sx,
        "B": rng.standard_normal((b, l, g, n)) * sb,
        "C": rng.standard_normal((b, l, g, n)) * sc,
        "z": rng.standard_normal((b, l, h, p)) * 2.0 if has_z else None,
    }
    if softplus:
        out["dt"] = _raw_dt(dt_kind, (b, l, h), rng)
    else:  # a step >= 0 (see the module doc); decades 10^-3..4
        top = {"small": 0.05, "moderate": 1.0, "threshold": 4.0}[dt_kind]
        out["dt"] = rng.uniform(0.0, top, (b, l, h)) * 10.0 ** rng.uniform(-2, 0, (1, 1, h))
    return out


def _redraw_future(case: SSDCase, start: int, seed: int) -> SSDCase:
    """``case`` with every time-indexed input at t >= start drawn afresh (same distributions)."""
    rng = np.random.default_rng(seed)
    b, l, h, p, g, n = case.dims
    fresh = time_arrays(rng, b, l - start, h, p, g, n, softplus=case.dt_softplus,
                        dt_kind=case.dt_kind, scales=case.scales, has_z=case.z is not None)
    parts = {}
    for k in TIME_ARGS:
        if getattr(case, k) is None:
            continue
        arr = getattr(case, k).copy()
        arr[:, start:] = fresh[k]
        parts[k] = arr
    out = replace(case, **parts)
    return out


def redraw_future(case: SSDCase) -> SSDCase:
    """``case`` with its inputs at t >= case.split drawn afresh."""
    return _redraw_future(case, case.split, case.seed)


def _largest_proper_divisor(q: int) -> int:
    return max([d for d in range(1, q) if q % d == 0], default=1)


def is_pow2(q: int) -> bool:
    return q >= 1 and q & (q - 1) == 0


def chunk_sizes(sizes=CHUNK_SIZES) -> list:
    """``sizes`` the options allow: non_pow2_chunk left out, powers of two only; forced, the
    others only."""
    if forced("non_pow2_chunk"):
        return [q for q in sizes if not is_pow2(q)]
    return [q for q in sizes if enabled("non_pow2_chunk") or is_pow2(q)]


def _chunk_features(*sizes) -> set:
    return {"non_pow2_chunk"} if any(not is_pow2(q) for q in sizes) else set()


def zero_A_heads(A, draw_zero: bool, rng):
    """A (h,) with heads set to exactly 0 (zero_A): where ``draw_zero`` (the strategy's coin),
    about half of them, as drawn before; forced, at least one; left out, none."""
    if draw_zero:
        mask = rng.random(A.shape[0]) < 0.5
        if enabled("zero_A"):
            A[mask] = 0.0
    if forced("zero_A") and not np.any(A == 0):
        A[rng.integers(A.shape[0])] = 0.0
    return A


@st.composite
def ssd_cases(draw, *, max_cost: int = 4096, min_length: int = 1, min_batch: int = 1):
    """SSDCase; see the module doc. ``max_cost`` bounds b*l*h*p*n (oracle time)."""
    specials = [v for v in SPECIAL_LENGTHS + (1000, 1023, 1024, 1025, MAX_LENGTH) if v >= min_length]
    l = max(min_length, length_cap(draw(st.one_of(st.sampled_from(specials),
                                                  st.integers(min_length, MAX_LENGTH)))))
    chunk = draw(st.sampled_from(chunk_sizes()))
    b = draw(st.integers(min_batch, max(min_batch, 2)))
    h = draw(st.sampled_from([2, 3, 4] if forced("grouped_BC") else [1, 2, 3, 4]))
    grouped = h > 1 and coin(draw, "grouped_BC")
    g = draw(st.sampled_from([d for d in range(2, h + 1) if h % d == 0])) if grouped else 1
    p = draw(st.sampled_from([1, 2, 3, 4, 8]))
    n = draw(st.sampled_from([1, 2, 4, 8, 16]))
    b, l, h, p, g, n = _fit(b, l, h, p, g, n, max_cost)
    b = max(b, min_batch)
    rng = np.random.default_rng(draw(seeds()))
    features = set()

    def feature(name):
        on = coin(draw, name)
        if on:
            features.add(name)
        return on

    softplus = feature("dt_softplus")
    dt_kind = draw(st.sampled_from(DT_KINDS))
    scales = (_scale(draw), _scale(draw, -2, 2), _scale(draw, -2, 2))
    has_z = feature("z")
    arrays = time_arrays(rng, b, l, h, p, g, n, softplus=softplus, dt_kind=dt_kind,
                         scales=scales, has_z=has_z)
    A = -(10.0 ** rng.uniform(-3.0, np.log10(16.0), h))
    A = zero_A_heads(A, draw(st.booleans()), rng)   # no decay: the state sums the whole sequence
    if np.any(A == 0):
        features.add("zero_A")
    D = None
    if feature("D"):
        D = rng.standard_normal((h,) if draw(st.booleans()) else (h, p))
    dt_bias = None
    if feature("dt_bias"):
        # softplus: Mamba-2's init, inverse softplus of dt in [1e-3, 0.1], or N(0, 1);
        # without softplus a bias >= 0, so that the step stays >= 0.
        if softplus:
            dt0 = 10.0 ** rng.uniform(-3, -1, h)
            dt_bias = dt0 + np.log(-np.expm1(-dt0)) if draw(st.booleans()) else rng.standard_normal(h)
        else:
            dt_bias = rng.uniform(0.0, 0.1, h)
    init = None
    if feature("initial_states"):
        init = rng.standard_normal((b, h, p, n)) * _scale(draw, -3, 3)
    final = feature("final_states")
    if g > 1:
        features.add("grouped_BC")
    other = [q for q in chunk_sizes() if q != chunk] + [
        q for q in chunk_sizes((_largest_proper_divisor(chunk),))]
    features |= _chunk_features(chunk)
    case = SSDCase(x=arrays["x"], dt=arrays["dt"], A=A, B=arrays["B"], C=arrays["C"],
                   chunk_size=chunk, D=D, z=arrays["z"], dt_bias=dt_bias, initial_states=init,
                   dt_softplus=softplus, return_final_states=final, features=frozenset(features),
                   cotangent=rng.standard_normal((b, l, h, p)),
                   split=int(rng.integers(1, l)) if l > 1 else 0,
                   other_chunk_size=draw(st.sampled_from(other or [chunk])),
                   dt_kind=dt_kind, scales=scales, seed=int(rng.integers(2**32)))
    return case


# --- layouts -------------------------------------------------------------------------------------

def strided(t, perm=None):
    """The same values in a dense but non-contiguous layout: the axes stored in the order
    ``perm`` (default: reversed), e.g. x (b,l,h,p) stored l-fastest as a channel-last kernel
    leaves it. Dense layouts survive the harness's input snapshots (clone keeps the strides of a
    dense tensor; a sliced, non-dense one would come back contiguous). 0-d/1-d tensors and
    tensors with fewer than two axes of size > 1 cannot be non-contiguous and stay as they are."""
    import torch
    if not isinstance(t, torch.Tensor) or t.dim() < 2:
        return t
    perm = tuple(reversed(range(t.dim()))) if perm is None else tuple(perm)
    inverse = tuple(int(i) for i in np.argsort(perm))
    return t.permute(perm).contiguous().permute(inverse)


def use_layout(sut, case, name: str, transform=strided):
    """Make ``sut`` hand ``case``'s tensors to the subject in a non-contiguous layout (same
    values, so ``sut.exact(case)`` and the oracle are unchanged). Works through the harness's
    per-case memo of prepared inputs (SubjectUnderTest.inputs)."""
    args = sut.inputs(case)                       # rounded, finite, memoized on the case
    key = ("_inputs", sut.dtype, sut.device)
    case.__dict__["_prepared"][key] = {k: transform(v) for k, v in args.items()}
    case.layout = name
    case.features = frozenset(case.features) | {"non_contiguous"}   # counted by the report
    return case


# --- long cases (issue 11): built from a seed, judged against the long tier ---------------------

def ssd_case_from_seed(seed, b, l, h, p, g, n, chunk_size, dt_kind="moderate", softplus=False,
                       D=False, z=False, dt_bias=False, initial_states=False, final_states=False,
                       A_zero=False):
    """A deterministic SSDCase of length l (the distributions of ``ssd_cases``): what a long
    case's failure prints as its reproduction (``rebuild``). ``A_zero``: head 0 has A = 0 (``zero_A``)."""
    rng = np.random.default_rng(seed)
    arrays = time_arrays(rng, b, l, h, p, g, n, softplus=softplus, dt_kind=dt_kind,
                         scales=(1.0, 1.0, 1.0), has_z=z)
    A = -(10.0 ** rng.uniform(-3.0, np.log10(16.0), h))
    if A_zero:
        A[0] = 0.0
    features = {name for name, on in (("D", D), ("z", z), ("dt_bias", dt_bias),
                                      ("dt_softplus", softplus), ("initial_states", initial_states),
                                      ("final_states", final_states), ("grouped_BC", g > 1),
                                      ("zero_A", A_zero)) if on}
    features |= _chunk_features(chunk_size)
    call = (f"ssd_case_from_seed(seed={seed}, b={b}, l={l}, h={h}, p={p}, g={g}, n={n}, "
            f"chunk_size={chunk_size}, dt_kind={dt_kind!r}, softplus={softplus}, D={D}, z={z}, "
            f"dt_bias={dt_bias}, initial_states={initial_states}, final_states={final_states}, "
            f"A_zero={A_zero})")
    return SSDCase(x=arrays["x"], dt=arrays["dt"], A=A, B=arrays["B"], C=arrays["C"],
                   chunk_size=chunk_size, D=rng.standard_normal(h) if D else None, z=arrays["z"],
                   dt_bias=(rng.uniform(0.0, 0.1, h) if not softplus else rng.standard_normal(h))
                   if dt_bias else None,
                   initial_states=rng.standard_normal((b, h, p, n)) if initial_states else None,
                   dt_softplus=softplus, return_final_states=final_states,
                   features=frozenset(features), cotangent=rng.standard_normal((b, l, h, p)),
                   split=l // 2, dt_kind=dt_kind, seed=seed,
                   rebuild=("ssm_conformance.properties.strategies.ssd", call))


# lengths 2^k - 1, 2^k, 2^k + 1 (k = 11..17) and one past multiples of kernels' chunk sizes
LONG_LENGTHS = tuple(v for k in range(11, 18) for v in (2**k - 1, 2**k, 2**k + 1)) + (
    7 * 64 + 1, 9 * 128 + 1, 5 * 256 + 1, 3 * 2048 + 1, 5 * 4096 + 1)
LONG_CHUNKS = (256, 64, 128, 48, 256, 100)


# the backward's long cases (its tier costs ~3x the forward's; CI budget): the shortest, one past
# chunk multiples, and the longest
VJP_LONG_LENGTHS = (2**11 - 1, 5 * 256 + 1, 3 * 2048 + 1, 2**16 + 1, 2**17)


def long_ssd_cases(vjp=False):
    """The explicit long cases every profile judges (tiny heads; features and chunk sizes vary;
    every length capped by --ssm-max-length); ``vjp``: those of VJP_LONG_LENGTHS."""
    cases = []
    for i, l in enumerate(LONG_LENGTHS):
        if vjp and l not in VJP_LONG_LENGTHS:
            continue
        on = [pick(f, bool(i >> j & 1)) for j, f in
              enumerate(("dt_softplus", "D", "z", "dt_bias", "initial_states"))]
        chunks = chunk_sizes(LONG_CHUNKS)
        h = 2 if i % 3 == 0 or forced("grouped_BC") else 1
        cases.append(ssd_case_from_seed(
            seed=1000 + i, b=1, l=length_cap(l), h=h, p=1 + i % 2,
            g=h if forced("grouped_BC") else 1, n=2 if i % 2 else 4,
            chunk_size=chunks[i % len(chunks)], dt_kind=DT_KINDS[i % 2], softplus=on[0], D=on[1],
            z=on[2], dt_bias=on[3], initial_states=on[4],
            final_states=pick("final_states", i % 2 == 0), A_zero=pick("zero_A", i % 4 == 1)))
    return cases   # each within the options (the harness discards any that is not)


@st.composite
def drawn_long_ssd_cases(draw):
    """A drawn long sequence for the long tier: l log-uniform MAX_LENGTH + 1 .. 2^17, x
    (b, l, h, p) and B, C (b, l, g, n) at most 2^17 elements each (thorough: 2^20; the tier's
    forward costs ~0.2 us per element of x times n, so beyond 2^17 only l grows outside
    thorough), chunk size and features drawn; built by ssd_case_from_seed (its call is the
    reproduction)."""
    cap = tensor_cap()
    l = draw(long_lengths(MAX_LENGTH + 1))
    room = max(1, cap // l)
    h = draw(st.sampled_from([v for v in (1, 2, 4) if v <= room and (v > 1 or not
                                                                      forced("grouped_BC"))]
                             or [2 if forced("grouped_BC") else 1]))
    p = draw(st.sampled_from([v for v in (1, 2, 4) if h * v <= room] or [1]))
    g = h if forced("grouped_BC") else draw(
        st.sampled_from([1] + ([h] if h > 1 and enabled("grouped_BC") else [])))
    n = draw(st.sampled_from([v for v in (1, 2, 4, 8, 16) if g * v <= room] or [1]))
    on = {f: coin(draw, f)
          for f in ("dt_softplus", "D", "z", "dt_bias", "initial_states", "final_states")}
    return ssd_case_from_seed(
        seed=draw(seeds()), b=1, l=l, h=h, p=p, g=g, n=n,
        chunk_size=draw(st.sampled_from(chunk_sizes((32, 48, 64, 128, 256)))),
        dt_kind=draw(st.sampled_from(DT_KINDS)),
        softplus=on["dt_softplus"], D=on["D"], z=on["z"], dt_bias=on["dt_bias"],
        initial_states=on["initial_states"], final_states=on["final_states"],
        A_zero=pick("zero_A", draw(st.integers(0, 7)) == 0))
