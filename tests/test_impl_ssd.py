"""Unit tests of our Mamba-2 SSD and block (implementations/{numpy,torch}/{ssd,mamba2}.py) and of
the SSD subjects in tests/subjects/mamba_{wrong,refs}.py.

Expected values come from the quadratic (semiseparable-matrix) form and the plain recurrence,
both written here one head and one output at a time in float64 (segment sums with math.fsum),
or from a second algorithm (other chunk sizes, two calls joined by the state, the selective scan)
-- never from the code under test. Each tolerance is a forward error bound written beside it.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from ssm_conformance.implementations.numpy import mamba as np_mamba
from ssm_conformance.implementations.numpy import mamba2 as np_mamba2
from ssm_conformance.implementations.numpy import ssd as np_ssd
from ssm_conformance.implementations.torch import mamba2 as t_mamba2
from ssm_conformance.implementations.torch import ssd as t_ssd
from tests.subjects import mamba_refs, mamba_wrong

U64 = 2.0**-53
U32 = 2.0**-24
U_OUT = {torch.float32: U32, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
T = torch.from_numpy


def ref_softplus(x):
    return x if x > 20 else math.log1p(math.exp(x))


def step_sizes(dt, dt_bias, softplus):
    v = dt + (0.0 if dt_bias is None else dt_bias)
    return np.vectorize(ref_softplus)(v) if softplus else v


def quadratic_ssd(x, dt, A, B, C, dt_bias=None, softplus=False, h0=None):
    """y_i = sum_{j<=i} (C_i . B_j) exp(sum_{k=j+1..i} dt_k A) dt_j x_j + exp(sum_{k<=i} dt_k A) h0 C_i,
    and the final state, head by head. Returns (y, final, |.|-magnitudes of both, sum |dt A|)."""
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    dtv = step_sizes(dt, dt_bias, softplus)
    y, ymag = np.zeros(x.shape), np.zeros(x.shape)
    fin, fmag = np.zeros((b, h, p, n)), np.zeros((b, h, p, n))
    sum_dA = 0.0
    for bi, hi in itertools.product(range(b), range(h)):
        gi = hi // (h // g)
        dA = dtv[bi, :, hi] * A[hi]
        sum_dA = max(sum_dA, float(np.sum(np.abs(dA))))
        seg = lambda j, i: math.fsum(dA[j + 1:i + 1])  # noqa: E731  sum_{k=j+1..i}
        for i in range(l):
            for j in range(i + 1):
                cb = C[bi, i, gi] @ B[bi, j, gi]
                cbabs = np.abs(C[bi, i, gi]) @ np.abs(B[bi, j, gi])
                e = math.exp(seg(j, i))
                y[bi, i, hi] += cb * e * dtv[bi, j, hi] * x[bi, j, hi]
                ymag[bi, i, hi] += cbabs * e * abs(dtv[bi, j, hi]) * np.abs(x[bi, j, hi])
            if h0 is not None:
                e = math.exp(seg(-1, i))
                y[bi, i, hi] += e * (h0[bi, hi] @ C[bi, i, gi])
                ymag[bi, i, hi] += e * (np.abs(h0[bi, hi]) @ np.abs(C[bi, i, gi]))
        for j in range(l):
            e = math.exp(seg(j, l - 1))
            fin[bi, hi] += e * dtv[bi, j, hi] * np.outer(x[bi, j, hi], B[bi, j, gi])
            fmag[bi, hi] += e * abs(dtv[bi, j, hi]) * np.outer(np.abs(x[bi, j, hi]), np.abs(B[bi, j, gi]))
        if h0 is not None:
            e = math.exp(seg(-1, l - 1))
            fin[bi, hi] += e * h0[bi, hi]
            fmag[bi, hi] += e * np.abs(h0[bi, hi])
    return y, fin, ymag, fmag, sum_dA


def depth(sum_dA, l, n, chunk):
    """Relative error bound / u of one term: a segment sum of <= min(chunk, l) terms rounded in
    a cumulative sum (error <= chunk u sum|dA|, amplified by exp), the chunk decays multiplied
    along the sequence (sum|dA| u), and l + n + 12 roundings of the products and sums."""
    return (min(chunk, l) + 2) * sum_dA + l + n + 12


def make_inputs(rng, b=2, l=13, h=4, p=3, g=2, n=5):
    return dict(x=rng.normal(size=(b, l, h, p)), dt=rng.normal(size=(b, l, h)), A=-rng.uniform(0.2, 1.5, h),
                B=rng.normal(size=(b, l, g, n)), C=rng.normal(size=(b, l, g, n)),
                D=rng.normal(size=(h, p)), z=rng.normal(size=(b, l, h, p)), dt_bias=rng.normal(size=h),
                initial_states=rng.normal(size=(b, h, p, n)))


def tt(d):
    return {k: None if v is None else T(np.asarray(v)) for k, v in d.items()}


IMPLS = [("numpy", np_ssd.ssd, lambda d: d, np.asarray),
         ("torch", t_ssd.ssd, tt, lambda t: t.numpy())]


# ================================================================================================
# ssd
# ================================================================================================

# every on/off combination of dt_bias, dt_softplus and initial_states, the group count cycling
# through 1 (shared B, C), 2 and 4 (= h: one group per head)
FEATURES = [(g, *f) for g, f in zip(itertools.cycle([1, 2, 4]), itertools.product([False, True], repeat=3))]
FEATURES.append((4, True, True, True))


@pytest.mark.parametrize("g,use_bias,softplus,use_h0", FEATURES)
def test_ssd_matches_quadratic_form_every_feature(g, use_bias, softplus, use_h0):
    rng = np.random.default_rng(100 + g)
    kw = make_inputs(rng, g=g)
    if not softplus:
        kw["dt"] = np.abs(kw["dt"])            # a step size: >= 0 without softplus
        kw["dt_bias"] = np.abs(kw["dt_bias"])
    bias = kw["dt_bias"] if use_bias else None
    h0 = kw["initial_states"] if use_h0 else None
    core, fin, cmag, fmag, sdA = quadratic_ssd(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], bias, softplus, h0)
    x = kw["x"]
    sig = 1 / (1 + np.exp(-kw["z"]))
    Dh, Dhp = kw["D"][:, 0].copy(), kw["D"]
    for (name, fn, conv, back), chunk in itertools.product(IMPLS, [1, 4, 13]):
        dep = depth(sdA, 13, 5, chunk)
        for D, use_z in [(None, False), (Dh, True), (Dhp, False), (Dhp, True)]:
            want, mag = core.copy(), cmag.copy()
            if D is not None:
                Dhp = D[:, None] if D.ndim == 1 else D
                want, mag = want + x * Dhp, mag + np.abs(x * Dhp)
            if use_z:
                want, mag = want * kw["z"] * sig, mag * np.abs(kw["z"] * sig)
            y, f = fn(**conv(dict(x=x, dt=kw["dt"], A=kw["A"], B=kw["B"], C=kw["C"], D=D,
                                  z=kw["z"] if use_z else None, dt_bias=bias, initial_states=h0)),
                      chunk_size=chunk, dt_softplus=softplus, return_final_states=True)
            y, f = back(y), back(f)
            tol = dep * U64 * mag + 1e-300
            assert np.all(np.abs(y - want) <= tol), (name, chunk, np.max(np.abs(y - want) / tol))
            assert np.all(np.abs(f - fin) <= dep * U64 * fmag + 1e-300), (name, chunk)


def test_ssd_matches_the_recurrence():
    # second independent form: h_i = exp(dt_i A) h_{i-1} + dt_i x_i B_i^T, y_i = h_i C_i
    rng = np.random.default_rng(101)
    kw = make_inputs(rng, l=9, g=1)
    dtv = step_sizes(kw["dt"], kw["dt_bias"], True)
    b, l, h, p = kw["x"].shape
    y = np.zeros(kw["x"].shape)
    H = kw["initial_states"].copy()
    mag, Habs = np.zeros(kw["x"].shape), np.abs(H)
    for i in range(l):
        a = np.exp(dtv[:, i] * kw["A"])[:, :, None, None]                          # (b, h, 1, 1)
        inp = dtv[:, i, :, None, None] * kw["x"][:, i, :, :, None] * kw["B"][:, i, 0][:, None, None, :]
        H = a * H + inp
        Habs = a * Habs + np.abs(inp)
        y[:, i] = np.einsum("bhpn,bn->bhp", H, kw["C"][:, i, 0])
        mag[:, i] = np.einsum("bhpn,bn->bhp", Habs, np.abs(kw["C"][:, i, 0]))
    sdA = float(np.max(np.sum(np.abs(dtv * kw["A"]), axis=1)))
    for name, fn, conv, back in IMPLS:
        out, fin = fn(**conv(dict(x=kw["x"], dt=kw["dt"], A=kw["A"], B=kw["B"], C=kw["C"],
                                  dt_bias=kw["dt_bias"], initial_states=kw["initial_states"])),
                      chunk_size=4, dt_softplus=True, return_final_states=True)
        dep = depth(sdA, l, 5, 4)
        assert np.all(np.abs(back(out) - y) <= dep * U64 * mag), name
        assert np.all(np.abs(back(fin) - H) <= dep * U64 * Habs), name


@pytest.mark.parametrize("name,fn,conv,back", IMPLS, ids=[i[0] for i in IMPLS])
def test_ssd_state_carry(name, fn, conv, back):
    # ssd(x1 || x2) == ssd(x2, initial_states = final state of x1), cut inside a chunk
    rng = np.random.default_rng(102)
    kw = make_inputs(rng, l=14)
    k = 6
    common = dict(A=kw["A"], D=kw["D"], dt_bias=kw["dt_bias"])
    cut = lambda s: {key: kw[key][:, s] for key in ("x", "dt", "B", "C", "z")}  # noqa: E731
    full, ffull = fn(**conv(dict(common, **cut(slice(None)), initial_states=kw["initial_states"])),
                     chunk_size=4, dt_softplus=True, return_final_states=True)
    y1, f1 = fn(**conv(dict(common, **cut(slice(0, k)), initial_states=kw["initial_states"])),
                chunk_size=4, dt_softplus=True, return_final_states=True)
    y2, f2 = fn(**conv(dict(common, **cut(slice(k, None)))), initial_states=f1,
                chunk_size=4, dt_softplus=True, return_final_states=True)
    _, _, ymag, fmag, sdA = quadratic_ssd(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], kw["dt_bias"], True,
                                          kw["initial_states"])
    dep = 2 * depth(sdA, 14, 5, 4)      # two runs, each within its bound of the exact value
    ymag = ymag + np.abs(kw["x"] * kw["D"])
    ymag = ymag * np.abs(kw["z"])       # |SiLU(z)| <= |z|
    joined = np.concatenate([back(y1), back(y2)], axis=1)
    assert np.all(np.abs(joined - back(full)) <= dep * U64 * ymag + 1e-300)
    assert np.all(np.abs(back(f2) - back(ffull)) <= dep * U64 * fmag + 1e-300)


@pytest.mark.parametrize("l", [1, 2, 7, 16, 17])
def test_ssd_any_length_and_chunk(l):
    rng = np.random.default_rng(103 + l)
    kw = make_inputs(rng, l=l)
    base = dict(x=kw["x"], dt=kw["dt"], A=kw["A"], B=kw["B"], C=kw["C"], dt_bias=kw["dt_bias"])
    want, fin, ymag, fmag, sdA = quadratic_ssd(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], kw["dt_bias"], True)
    for (name, fn, conv, back), chunk in itertools.product(IMPLS, [1, 3, 8, 16, 64]):
        y, f = fn(**conv(base), chunk_size=chunk, dt_softplus=True, return_final_states=True)
        assert back(y).shape == (2, l, 4, 3)
        dep = depth(sdA, l, 5, chunk)
        assert np.all(np.abs(back(y) - want) <= dep * U64 * ymag + 1e-300), (name, chunk)
        assert np.all(np.abs(back(f) - fin) <= dep * U64 * fmag + 1e-300), (name, chunk)


def test_ssd_D_per_head_equals_D_repeated_over_p():
    rng = np.random.default_rng(104)
    kw = make_inputs(rng)
    args = dict(x=kw["x"], dt=kw["dt"], A=kw["A"], B=kw["B"], C=kw["C"])
    Dh = kw["D"][:, 0].copy()
    for name, fn, conv, back in IMPLS:
        a = back(fn(**conv(dict(args, D=Dh)), chunk_size=4, dt_softplus=True))
        b = back(fn(**conv(dict(args, D=np.repeat(Dh[:, None], 3, axis=1))), chunk_size=4, dt_softplus=True))
        assert np.array_equal(a, b)     # x * D[h] either way: the same roundings


def test_ssd_equals_selective_scan_with_scalar_A_per_head():
    # Mamba-2 is the selective scan with A (h,) repeated over (p, n) and B, C grouped over heads
    rng = np.random.default_rng(105)
    kw = make_inputs(rng, l=11, g=2)
    b, l, h, p = kw["x"].shape
    n = 5
    y, fin = np_ssd.ssd(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], 4, D=kw["D"], z=kw["z"],
                        dt_bias=kw["dt_bias"], dt_softplus=True, return_final_states=True)
    ys, last = np_mamba.selective_scan(
        kw["x"].transpose(0, 2, 3, 1).reshape(b, h * p, l),
        np.repeat(kw["dt"].transpose(0, 2, 1), p, axis=1),
        np.repeat(kw["A"], p)[:, None] * np.ones(n),
        kw["B"].transpose(0, 2, 3, 1), kw["C"].transpose(0, 2, 3, 1), kw["D"].reshape(-1),
        kw["z"].transpose(0, 2, 3, 1).reshape(b, h * p, l), np.repeat(kw["dt_bias"], p), True, True)
    _, _, ymag, fmag, sdA = quadratic_ssd(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], kw["dt_bias"], True)
    dep = 2 * depth(sdA, l, n, 4)
    ymag = (ymag + np.abs(kw["x"] * kw["D"])) * np.abs(kw["z"])
    assert np.all(np.abs(ys.reshape(b, h, p, l).transpose(0, 3, 1, 2) - y) <= dep * U64 * ymag)
    assert np.all(np.abs(last.reshape(b, h, p, n) - fin) <= dep * U64 * fmag)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_ssd_torch_dtypes(dtype):
    rng = np.random.default_rng(106)
    kw = tt(make_inputs(rng, l=10))
    for k in ("x", "dt", "B", "C", "z"):
        kw[k] = kw[k].to(dtype)
    for k in ("A", "D", "dt_bias", "initial_states"):
        kw[k] = kw[k].float()
    y, f = t_ssd.ssd(**kw, chunk_size=4, dt_softplus=True, return_final_states=True)
    assert y.dtype == dtype and f.dtype == torch.float32
    ex = {k: v.double().numpy() for k, v in kw.items()}
    core, fin, cmag, fmag, sdA = quadratic_ssd(ex["x"], ex["dt"], ex["A"], ex["B"], ex["C"], ex["dt_bias"], True,
                                               ex["initial_states"])
    sig = 1 / (1 + np.exp(-ex["z"]))
    want = (core + ex["x"] * ex["D"]) * ex["z"] * sig
    mag = (cmag + np.abs(ex["x"] * ex["D"])) * np.abs(ex["z"] * sig)
    dep = depth(sdA, 10, 5, 4)
    # float32 compute, then one rounding of y to the dtype
    assert np.all(np.abs(y.double().numpy() - want) <= dep * U32 * mag + U_OUT[dtype] * np.abs(want) + 1e-30)
    assert np.all(np.abs(f.double().numpy() - fin) <= dep * U32 * fmag + 1e-30)


def test_ssd_gradcheck():
    g = torch.Generator().manual_seed(107)
    b, l, h, p, gr, n = 1, 4, 2, 2, 1, 2
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()  # noqa: E731
    A = (-torch.rand(h, generator=g, dtype=torch.float64) - 0.2).requires_grad_()
    args = (r(b, l, h, p), r(b, l, h), A, r(b, l, gr, n), r(b, l, gr, n), r(h, p), r(b, l, h, p), r(h),
            r(b, h, p, n))

    def f(x, dt, A, B, C, D, z, bias, h0):
        return t_ssd.ssd(x, dt, A, B, C, 2, D=D, z=z, dt_bias=bias, initial_states=h0, dt_softplus=True,
                         return_final_states=True)

    assert torch.autograd.gradcheck(f, args)


BAD_SSD = [
    (dict(x=np.ones((2, 5, 4))), ValueError, r"x must have shape \(b, l, h, p\)"),
    (dict(dt=np.ones((2, 5, 3))), ValueError, "dt must have shape"),
    (dict(A=np.ones((4, 1))), ValueError, r"A must have shape \(h,\)"),
    (dict(B=np.ones((2, 5, 3, 2))), ValueError, "g dividing"),
    (dict(C=np.ones((2, 5, 2, 3))), ValueError, "C must have shape"),
    (dict(D=np.ones((4, 2))), ValueError, r"D must have shape \(h,\)"),
    (dict(z=np.ones((2, 5, 4))), ValueError, "z must have shape"),
    (dict(dt_bias=np.ones(3)), ValueError, "dt_bias must have shape"),
    (dict(initial_states=np.ones((2, 4, 3, 3))), ValueError, "initial_states must have shape"),
    (dict(chunk_size=0), ValueError, "chunk_size"),
    (dict(chunk_size=2.5), ValueError, "chunk_size"),
    (dict(x=np.ones((2, 5, 4, 3)) * 1j), TypeError, "x must be real"),
]


@pytest.mark.parametrize("bad,exc,match", BAD_SSD)
@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_ssd_bad_inputs(impl, bad, exc, match):
    good = dict(x=np.ones((2, 5, 4, 3)), dt=np.ones((2, 5, 4)), A=-np.ones(4), B=np.ones((2, 5, 2, 2)),
                C=np.ones((2, 5, 2, 2)), chunk_size=4)
    kw = dict(good, **bad)
    with pytest.raises(exc, match=match):
        if impl == "numpy":
            np_ssd.ssd(**kw)
        else:
            t_ssd.ssd(**{k: T(np.asarray(v)) if k != "chunk_size" else v for k, v in kw.items()})


# ================================================================================================
# Mamba-2 block
# ================================================================================================

def _weights(ngroups=2, bias=False):
    return np_mamba2.Mamba2Weights.random(d_model=8, d_state=4, d_conv=4, expand=2, headdim=4, ngroups=ngroups,
                                          seed=108, bias=bias)


@pytest.mark.parametrize("ngroups,bias", [(1, False), (2, True)])
def test_mamba2_block_decode_equals_prefill(ngroups, bias):
    w = _weights(ngroups, bias)
    x = np.random.default_rng(109).normal(size=(2, 11, 8))
    blk = np_mamba2.Mamba2Block(w, chunk_size=4)
    full = blk.forward(x)
    # chunk size is an algorithmic choice: the output does not depend on it beyond rounding
    assert np.allclose(np_mamba2.Mamba2Block(w, chunk_size=3).forward(x), full, rtol=1e-12, atol=1e-13)
    state = blk.init_state(2)
    steps = np.stack([blk.step(x[:, t], state)[0] for t in range(11)], 1)
    assert np.allclose(steps, full, rtol=1e-12, atol=1e-13)    # same sums, other grouping
    state = blk.init_state(2)
    head = blk.forward(x[:, :6], state)
    tail = np.stack([blk.step(x[:, t], state)[0] for t in range(6, 11)], 1)
    assert np.allclose(np.concatenate([head, tail], 1), full, rtol=1e-12, atol=1e-13)

    tb = t_mamba2.Mamba2Block(w, chunk_size=4, dtype=torch.float64)
    assert np.allclose(tb(T(x)).detach().numpy(), full, rtol=1e-12, atol=1e-13)   # numpy == torch
    st = tb.init_state(2)
    tsteps = torch.stack([tb.step(T(x[:, t]), st)[0] for t in range(11)], 1).detach()
    assert np.allclose(tsteps.numpy(), full, rtol=1e-12, atol=1e-13)
    st = tb.init_state(2)
    thead = tb(T(x[:, :6]), st).detach()
    ttail = torch.stack([tb.step(T(x[:, t]), st)[0] for t in range(6, 11)], 1).detach()
    assert np.allclose(torch.cat([thead, ttail], 1).numpy(), full, rtol=1e-12, atol=1e-13)


def test_mamba2_block_roundtrip_half_precision_and_errors():
    w = _weights(2, True)
    tb = t_mamba2.Mamba2Block(w, chunk_size=4)
    back = tb.to_numpy()
    for k, v in w.as_dict().items():
        if isinstance(v, np.ndarray):
            assert np.allclose(getattr(back, k), v, rtol=U32, atol=0)
        else:
            assert getattr(back, k) == v
    x = torch.randn(2, 9, 8, generator=torch.Generator().manual_seed(110))
    y32 = tb(x).detach()
    yb = tb(x.to(torch.bfloat16)).detach()
    assert yb.dtype == torch.bfloat16
    # input rounded to bf16 (2^-8) through an O(1)-gain block, output rounded once more
    assert torch.allclose(yb.float(), y32, rtol=0, atol=8 * 2.0**-8 * y32.abs().max().item())
    with pytest.raises(ValueError, match="d_model = 8"):
        tb(torch.ones(2, 9, 7))
    with pytest.raises(ValueError, match="multiple of headdim"):
        np_mamba2.Mamba2Weights.random(d_model=6, headdim=5)


def test_mamba2_block_gradients():
    tb = t_mamba2.Mamba2Block(_weights(2), chunk_size=3, dtype=torch.float64)
    x = torch.randn(1, 5, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: tb(x), (x,), fast_mode=True)


# ================================================================================================
# Subjects
# ================================================================================================

WRONG_SSD = {
    # name: (the inputs that exercise the mistake, which output to judge)
    "ssd_state_not_carried": (dict(), "y"),
    "ssd_segsum_off_by_one": (dict(), "y"),
    "ssd_D_hp_transposed": (dict(), "y"),
    "ssd_initial_states_ignored": (dict(), "y"),
    "ssd_dt_bias_ignored": (dict(), "y"),
    "ssd_pad_before_dt_transform": (dict(), "final"),
}


@pytest.mark.parametrize("name", sorted(WRONG_SSD))
def test_wrong_ssds_are_wrong(name):
    _, which = WRONG_SSD[name]
    rng = np.random.default_rng(111)
    kw = make_inputs(rng, l=10)            # l = 10, chunk 4: three chunks, the last one padded
    tk = {k: T(v).float() for k, v in kw.items()}
    # the inputs were rounded to float32 for the torch subjects: compare on those exact values
    ex = {k: v.double().numpy() for k, v in tk.items()}
    core, fin, cmag, fmag, sdA = quadratic_ssd(ex["x"], ex["dt"], ex["A"], ex["B"], ex["C"], ex["dt_bias"], True,
                                               ex["initial_states"])
    sig = 1 / (1 + np.exp(-ex["z"]))
    want = (core + ex["x"] * ex["D"]) * ex["z"] * sig
    mag = (cmag + np.abs(ex["x"] * ex["D"])) * np.abs(ex["z"] * sig)
    dep = depth(sdA, 10, 5, 4)
    tol_y = dep * U32 * mag + U32 * np.abs(want) + 1e-30
    tol_f = dep * U32 * fmag + 1e-30

    def ratio(fn):
        y, f = fn(**tk, chunk_size=4, dt_softplus=True, return_final_states=True)
        if which == "y":
            return np.max(np.abs(y.double().numpy() - want) / tol_y)
        return np.max(np.abs(f.double().numpy() - fin) / tol_f)

    assert ratio(t_ssd.ssd) <= 1
    assert ratio(mamba_wrong.ssd_correct) <= 1
    assert ratio(getattr(mamba_wrong, name)) > 100


def _need(which):
    ok, why = mamba_refs.available(which)
    if not ok:
        pytest.skip(why)


@pytest.mark.parametrize("l", [12, 11])
def test_refs_ssd_agree(l):
    _need("mamba_ssm")
    kw = {k: T(v).float() for k, v in make_inputs(np.random.default_rng(112), l=l).items()}
    kw.pop("initial_states")
    y1 = mamba_refs.ssd(**kw, chunk_size=4, dt_softplus=True)
    y2 = t_ssd.ssd(**kw, chunk_size=4, dt_softplus=True)
    assert torch.allclose(y1, y2, rtol=1e-4, atol=1e-4)


def test_refs_ssd_minimal_agrees():
    _need("mamba_ssm")
    kw = {k: T(v).float() for k, v in make_inputs(np.random.default_rng(113), l=11).items()}
    y1, f1 = mamba_refs.ssd_minimal(**kw, chunk_size=4, dt_softplus=True, return_final_states=True)
    y2, f2 = t_ssd.ssd(**kw, chunk_size=4, dt_softplus=True, return_final_states=True)
    assert torch.allclose(y1, y2, rtol=1e-4, atol=1e-4) and torch.allclose(f1, f2, rtol=1e-4, atol=1e-4)
