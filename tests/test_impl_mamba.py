"""Unit tests of our Mamba-1 kernels and block (implementations/{numpy,torch}/{scan,mamba}.py) and
a sanity check of the subjects in tests/subjects/mamba_{wrong,refs}.py.

Expected values come from an independent straightforward loop written here (per batch, channel
and time step, in float64), from exact integer/rational arithmetic, or from a second algorithm
(decode vs prefill, one scan vs two) -- never from the code under test. Each tolerance is a
forward error bound written beside it: unit roundoff x depth x a magnitude computed by running the
same loop on absolute values.
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from ssm_conformance.implementations.numpy import mamba as np_mamba
from ssm_conformance.implementations.numpy import scan as np_scan
from ssm_conformance.implementations.torch import mamba as t_mamba
from ssm_conformance.implementations.torch import scan as t_scan
from tests.subjects import mamba_refs, mamba_wrong

U64 = 2.0**-53   # unit roundoff, float64
U32 = 2.0**-24   # float32
U_OUT = {torch.float32: U32, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}

T = torch.from_numpy


# ================================================================================================
# Independent references
# ================================================================================================

def ref_softplus(x):
    return x if x > 20 else math.log1p(math.exp(x))


def ref_silu(x):
    return x / (1.0 + math.exp(-x)) if x > -700 else 0.0


def coef(X, cplx, bi, di, t, d):
    """The n-vector B_t (or C_t) seen by batch bi, channel di: constant (d,n), variable (b,n,L),
    grouped (b,g,n,L); with complex A the variable forms hold (re, im) pairs along L."""
    if X.ndim == 2:
        return X[di]
    if X.ndim == 3:
        col = X[bi]
    else:
        g = X.shape[1]
        col = X[bi, di // (d // g)]
    if cplx:
        return col[:, 2 * t] + 1j * col[:, 2 * t + 1]
    return col[:, t]


def loop_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, softplus=False, h0=None):
    """(out, last_state, magnitude, depth, state_magnitude): the recurrence one channel at a time.
    ``magnitude`` (of out) and ``state_magnitude`` (of last_state) are the same computation on
    absolute values (no cancellation); ``depth`` is the largest |delta A| summed over time plus
    the operation count per output, for the error bound."""
    b, d, l = u.shape
    n = A.shape[1]
    cplx = np.iscomplexobj(A)
    out = np.zeros((b, d, l))
    mag = np.zeros((b, d, l))
    last = np.zeros((b, d, n), dtype=complex if cplx else float)
    last_mag = np.zeros((b, d, n))
    sum_dA = 0.0
    for bi, di in itertools.product(range(b), range(d)):
        h = np.zeros(n, dtype=complex) if h0 is None else np.array(h0[bi, di], dtype=complex)
        habs = np.abs(h)
        s = 0.0
        for t in range(l):
            dt = delta[bi, di, t] + (0.0 if delta_bias is None else delta_bias[di])
            dt = ref_softplus(dt) if softplus else dt
            Bt, Ct = coef(B, cplx, bi, di, t, d), coef(C, cplx, bi, di, t, d)
            a = np.exp(dt * A[di])
            h = a * h + dt * Bt * u[bi, di, t]
            habs = np.abs(a) * habs + abs(dt) * np.abs(Bt) * abs(u[bi, di, t])
            s += np.max(np.abs(dt * A[di]))
            y = np.sum(Ct * h)
            y = 2 * y.real if cplx else y.real
            yabs = (2 if cplx else 1) * np.sum(np.abs(Ct) * habs)
            if D is not None:
                y += D[di] * u[bi, di, t]
                yabs += abs(D[di] * u[bi, di, t])
            if z is not None:
                gate = ref_silu(z[bi, di, t])
                y *= gate
                yabs *= abs(gate)
            out[bi, di, t], mag[bi, di, t] = y, yabs
        last[bi, di] = h if cplx else h.real
        last_mag[bi, di] = habs
        sum_dA = max(sum_dA, s)
    return out, last, mag, sum_dA + n + 10, last_mag


def bound(mag, depth, u):
    """Forward error bound: each output is a sum of products whose relative error is at most
    depth * u (|delta A| * u from exp of a rounded argument per step, a few roundings per step,
    n for the dot product with C, a few for D, the gate and softplus)."""
    return depth * u * mag + 1e-300


def make_scan_inputs(rng, b=2, d=4, n=3, l=7, B_kind="variable", C_kind="variable", cplx=False, g=2):
    u = rng.normal(size=(b, d, l))
    delta = rng.normal(size=(b, d, l))
    A = -rng.uniform(0.2, 2.0, size=(d, n))
    if cplx:
        A = A + 1j * rng.normal(size=(d, n))
    L = 2 * l if cplx else l

    def mk(kind):
        if kind == "constant":
            X = rng.normal(size=(d, n))
            return X + 1j * rng.normal(size=(d, n)) if cplx else X
        if kind == "variable":
            return rng.normal(size=(b, n, L))
        return rng.normal(size=(b, g, n, L))

    return dict(u=u, delta=delta, A=A, B=mk(B_kind), C=mk(C_kind), D=rng.normal(size=d),
                z=rng.normal(size=(b, d, l)), delta_bias=rng.normal(size=d))


def to_torch(kw, dtype=None):
    out = {}
    for k, v in kw.items():
        if v is None:
            out[k] = None
            continue
        t = torch.from_numpy(np.asarray(v))
        if dtype is not None:
            t = t.to(torch.complex64 if t.is_complex() and dtype != torch.float64 else
                     (torch.complex128 if t.is_complex() else dtype))
        out[k] = t
    return out


# ================================================================================================
# linear_scan
# ================================================================================================

SCANS = [("numpy", np_scan.linear_scan), ("numpy-parallel", np_scan.linear_scan_parallel),
         ("torch", lambda a, b: t_scan.linear_scan(T(a), T(b)).numpy()),
         ("torch-parallel", lambda a, b: t_scan.linear_scan_parallel(T(a), T(b)).numpy())]


@pytest.mark.parametrize("name,scan", SCANS, ids=[s[0] for s in SCANS])
def test_linear_scan_exact_on_small_integers(name, scan):
    # Integer inputs with |h| < 2^53: every operation is exact in float64, so sequential and
    # parallel orders must both give the exact integer answer.
    rng = np.random.default_rng(1)
    a = rng.integers(-2, 3, size=(3, 5, 17)).astype(np.float64)
    b = rng.integers(-3, 4, size=(3, 5, 17)).astype(np.float64)
    h = np.zeros(a.shape[:-1], dtype=object)
    want = np.zeros(a.shape, dtype=object)
    for t in range(a.shape[-1]):
        h = a[..., t].astype(int).astype(object) * h + b[..., t].astype(int).astype(object)
        want[..., t] = h
    assert np.array_equal(scan(a, b), want.astype(np.float64))


@pytest.mark.parametrize("name,scan", SCANS, ids=[s[0] for s in SCANS])
def test_linear_scan_against_exact_rationals(name, scan):
    rng = np.random.default_rng(2)
    l = 40
    a = rng.uniform(-1.1, 1.1, size=(2, l))
    b = rng.normal(size=(2, l))
    got = scan(a, b)
    for r in range(2):
        h, habs = Fraction(0), 0.0
        for t in range(l):
            h = Fraction(a[r, t]) * h + Fraction(b[r, t])
            habs = abs(a[r, t]) * habs + abs(b[r, t])
            # sequential: h_t carries <= 2(t+1) roundings per term; Hillis-Steele: <= 3 ceil(log2 l)
            # (a product tree of depth log2 l, one multiply-add per level). 2(l+1) bounds both.
            assert abs(got[r, t] - float(h)) <= 2 * (l + 1) * U64 * habs


@pytest.mark.parametrize("parallel", [False, True])
def test_linear_scan_complex_matches_loop(parallel):
    rng = np.random.default_rng(3)
    a = rng.uniform(-1, 1, (3, 33)) + 1j * rng.uniform(-1, 1, (3, 33))
    b = rng.normal(size=(3, 33)) + 1j * rng.normal(size=(3, 33))
    h = np.zeros(3, complex)
    want, mag, habs = [], [], np.zeros(3)
    for t in range(33):
        h = a[:, t] * h + b[:, t]
        habs = np.abs(a[:, t]) * habs + np.abs(b[:, t])
        want.append(h)
        mag.append(habs)
    want, mag = np.stack(want, -1), np.stack(mag, -1)
    for fn in ((np_scan.linear_scan_parallel if parallel else np_scan.linear_scan),
               (t_scan.linear_scan_parallel if parallel else t_scan.linear_scan)):
        got = np.asarray(fn(T(a), T(b)) if fn.__module__.startswith("ssm_conformance.implementations.torch") else fn(a, b))
        # complex multiply-add: <= 4 roundings per step, both paths compare to the same loop
        assert np.all(np.abs(got - want) <= 8 * (33 + 1) * U64 * mag)


def test_linear_scan_parallel_equals_sequential_float32_torch():
    g = torch.Generator().manual_seed(4)
    a = torch.rand(4, 8, 300, generator=g) * 2 - 1
    b = torch.randn(4, 8, 300, generator=g)
    seq, par = t_scan.linear_scan(a, b), t_scan.linear_scan_parallel(a, b)
    want = np_scan.linear_scan(a.double().numpy(), b.double().numpy())
    mag = np_scan.linear_scan(np.abs(a.double().numpy()), np.abs(b.double().numpy()))
    for got in (seq, par):
        assert np.all(np.abs(got.double().numpy() - want) <= 2 * 301 * U32 * mag)  # float32, depth <= 2(l+1)


def test_linear_scan_half_dtypes():
    a = torch.rand(2, 50, dtype=torch.bfloat16)
    b = torch.randn(2, 50, dtype=torch.bfloat16)
    h = t_scan.linear_scan(a, b)
    assert h.dtype == torch.bfloat16
    want = np_scan.linear_scan(a.double().numpy(), b.double().numpy())
    mag = np_scan.linear_scan(np.abs(a.double().numpy()), np.abs(b.double().numpy()))
    # float32 compute (depth 2(l+1)) then one rounding to bfloat16 (2^-8 relative)
    assert np.all(np.abs(h.double().numpy() - want) <= (2 * 51 * U32 + 2.0**-8) * mag)


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("fn", [t_scan.linear_scan, t_scan.linear_scan_parallel])
def test_linear_scan_gradcheck(fn, cplx):
    g = torch.Generator().manual_seed(5)
    dt = torch.complex128 if cplx else torch.float64
    a = (torch.rand(2, 3, 9, generator=g, dtype=torch.float64) - 0.5).to(dt).requires_grad_()
    b = torch.randn(2, 3, 9, generator=g, dtype=torch.float64).to(dt).requires_grad_()
    assert torch.autograd.gradcheck(fn, (a, b))


def test_linear_scan_leaves_inputs_alone():
    for shape in [(7,), (1, 7), (3, 7)]:
        a, b = np.full(shape, 0.5), np.ones(shape)
        for fn in (np_scan.linear_scan, np_scan.linear_scan_parallel):
            fn(a, b)
            assert np.all(a == 0.5) and np.all(b == 1.0)
        ta, tb = torch.full(shape, 0.5), torch.ones(shape)
        for fn in (t_scan.linear_scan, t_scan.linear_scan_parallel):
            fn(ta, tb)
            assert torch.all(ta == 0.5) and torch.all(tb == 1.0)


def test_linear_scan_bad_inputs():
    with pytest.raises(ValueError, match="a and b"):
        np_scan.linear_scan(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="a and b"):
        t_scan.linear_scan(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        t_scan.linear_scan(np.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="l >= 1|length >= 1"):
        np_scan.linear_scan_parallel(np.ones((2, 0)), np.ones((2, 0)))


# ================================================================================================
# selective_scan
# ================================================================================================

KINDS = ["constant", "variable", "grouped"]


@pytest.mark.parametrize("cplx", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("B_kind,C_kind", list(itertools.product(KINDS, KINDS)))
def test_selective_scan_matches_loop_every_feature(B_kind, C_kind, cplx):
    rng = np.random.default_rng(hash((B_kind, C_kind, cplx)) % 2**32)
    kw = make_scan_inputs(rng, B_kind=B_kind, C_kind=C_kind, cplx=cplx)
    for mask in itertools.product([False, True], repeat=4):   # D, z, delta_bias, softplus on/off
        use_D, use_z, use_bias, sp = mask
        args = dict(kw, D=kw["D"] if use_D else None, z=kw["z"] if use_z else None,
                    delta_bias=kw["delta_bias"] if use_bias else None)
        if not sp:
            args["delta"] = np.abs(args["delta"])   # delta is a step size: >= 0 without softplus
        want, last, mag, depth, smag = loop_selective_scan(args["u"], args["delta"], args["A"], args["B"],
                                                           args["C"], args["D"], args["z"], args["delta_bias"], sp)
        tol = bound(mag, depth, U64)
        y, s = np_mamba.selective_scan(**args, delta_softplus=sp, return_last_state=True)
        assert np.all(np.abs(y - want) <= tol), (mask, np.max(np.abs(y - want) / tol))
        yt, st = t_mamba.selective_scan(**to_torch(args), delta_softplus=sp, return_last_state=True)
        assert yt.dtype == torch.float64
        assert np.all(np.abs(yt.numpy() - want) <= tol), (mask, np.max(np.abs(yt.numpy() - want) / tol))
        # last state: the same recurrence without the C contraction, under the same bound
        assert st.dtype == (torch.complex128 if cplx else torch.float64)
        assert np.all(np.abs(s - last) <= bound(smag, depth, U64))
        assert np.all(np.abs(st.numpy() - last) <= bound(smag, depth, U64))


def test_selective_scan_leaves_inputs_alone():
    kw = make_scan_inputs(np.random.default_rng(6), cplx=True, B_kind="grouped")
    h0 = np.ones((2, 4, 3), dtype=complex)
    before = {k: v.copy() for k, v in kw.items()}
    np_mamba.selective_scan(**kw, delta_softplus=True, initial_state=h0)
    tk = to_torch(kw)
    t_mamba.selective_scan(**tk, delta_softplus=True, initial_state=T(h0))
    for k, v in before.items():
        assert np.array_equal(kw[k], v) and np.array_equal(tk[k].numpy(), v), k
    assert np.all(h0 == 1)


def test_selective_scan_without_return_last_state_returns_array_only():
    kw = make_scan_inputs(np.random.default_rng(7))
    y = np_mamba.selective_scan(**kw)
    yt = t_mamba.selective_scan(**to_torch(kw))
    assert isinstance(y, np.ndarray) and isinstance(yt, torch.Tensor)
    assert y.shape == yt.shape == kw["u"].shape


@pytest.mark.parametrize("cplx", [False, True])
def test_selective_scan_state_carry(cplx):
    # scan(u1 || u2) == scan(u2) started from the last state of scan(u1)
    rng = np.random.default_rng(8)
    kw = make_scan_inputs(rng, l=11, B_kind="variable", C_kind="grouped", cplx=cplx)
    k = 5
    cut = (lambda X, s: X[..., 2 * s.start if cplx and s.start else 0: None if s.stop is None else 2 * s.stop]
           if cplx else X[..., s])

    def part(s):
        return dict(kw, u=kw["u"][..., s], delta=kw["delta"][..., s], z=kw["z"][..., s],
                    B=cut(kw["B"], s), C=cut(kw["C"], s))

    for impl, conv in ((np_mamba.selective_scan, lambda a: a), (t_mamba.selective_scan, to_torch)):
        full, last_full = impl(**conv(kw), delta_softplus=True, return_last_state=True)
        y1, s1 = impl(**conv(part(slice(0, k))), delta_softplus=True, return_last_state=True)
        y2, s2 = impl(**conv(part(slice(k, None))), delta_softplus=True, return_last_state=True,
                      initial_state=s1)
        joined = np.concatenate([np.asarray(y1), np.asarray(y2)], axis=-1)
        # identical operations in identical order: agreement to rounding of the reordered
        # contraction only (the scan itself is the same sequence of multiply-adds)
        assert np.allclose(joined, np.asarray(full), rtol=1e-13, atol=1e-13)
        assert np.allclose(np.asarray(s2), np.asarray(last_full), rtol=1e-13, atol=1e-13)


def test_selective_scan_blocks_do_not_change_the_result(monkeypatch):
    rng = np.random.default_rng(9)
    kw = make_scan_inputs(rng, l=13, B_kind="grouped", C_kind="variable")
    y1, s1 = np_mamba.selective_scan(**kw, delta_softplus=True, return_last_state=True)
    yt1, st1 = t_mamba.selective_scan(**to_torch(kw), delta_softplus=True, return_last_state=True)
    monkeypatch.setattr(np_mamba, "BLOCK_ELEMENTS", 2 * 4 * 3 * 3)   # blocks of 3 steps
    monkeypatch.setattr(t_mamba, "BLOCK_ELEMENTS", 2 * 4 * 3 * 4)    # blocks of 4 steps
    y2, s2 = np_mamba.selective_scan(**kw, delta_softplus=True, return_last_state=True)
    yt2, st2 = t_mamba.selective_scan(**to_torch(kw), delta_softplus=True, return_last_state=True)
    # the recurrence is the same sequence of operations whatever the blocking
    assert np.array_equal(s1, s2) and torch.equal(st1, st2)
    assert np.allclose(y1, y2, rtol=4 * U64, atol=1e-300) and torch.allclose(yt1, yt2, rtol=4 * U64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cplx", [False, True])
def test_selective_scan_torch_dtypes(dtype, cplx):
    rng = np.random.default_rng(10)
    kw = make_scan_inputs(rng, l=9, B_kind="variable", C_kind="grouped", cplx=cplx)
    tk = to_torch(kw)
    # activations in the dtype under test; A, D, delta_bias fp32 weights, as in mamba-ssm
    for k in ("u", "delta", "B", "C", "z"):
        tk[k] = tk[k].to(dtype)
    for k in ("A", "D", "delta_bias"):
        tk[k] = tk[k].to(torch.complex64 if tk[k].is_complex() else torch.float32)
    y, s = t_mamba.selective_scan(**tk, delta_softplus=True, return_last_state=True)
    assert y.dtype == dtype
    assert s.dtype == (torch.complex64 if cplx else torch.float32)
    # the oracle here: the float64 loop on exactly the rounded inputs
    exact = {k: (None if v is None else v.to(torch.complex128 if v.is_complex() else torch.float64).numpy())
             for k, v in tk.items()}
    want, _, mag, depth, _ = loop_selective_scan(exact["u"], exact["delta"], exact["A"], exact["B"], exact["C"],
                                              exact["D"], exact["z"], exact["delta_bias"], True)
    # float32 compute (depth x 2^-24) then one rounding of the output to the dtype
    tol = depth * U32 * mag + U_OUT[dtype] * np.abs(want) + 1e-30
    assert np.all(np.abs(y.double().numpy() - want) <= tol), np.max(np.abs(y.double().numpy() - want) / tol)


def test_selective_scan_gradcheck(monkeypatch):
    monkeypatch.setattr(t_mamba, "BLOCK_ELEMENTS", 1)   # one step per block: the carry is differentiated too
    g = torch.Generator().manual_seed(11)
    b, d, n, l = 1, 4, 2, 5
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()  # noqa: E731
    A = (-torch.rand(d, n, generator=g, dtype=torch.float64) - 0.2).requires_grad_()
    args = (r(b, d, l), r(b, d, l), A, r(b, 2, n, l), r(d, n), r(d), r(b, d, l), r(d), r(b, d, n))

    def f(u, delta, A, B, C, D, z, bias, h0):
        y, s = t_mamba.selective_scan(u, delta, A, B, C, D, z, bias, True, True, initial_state=h0)
        return y, s

    assert torch.autograd.gradcheck(f, args)


def test_selective_scan_gradcheck_complex():
    g = torch.Generator().manual_seed(12)
    b, d, n, l = 1, 2, 2, 4
    A = torch.complex(-torch.rand(d, n, generator=g, dtype=torch.float64) - 0.2,
                      torch.randn(d, n, generator=g, dtype=torch.float64)).requires_grad_()
    u = torch.randn(b, d, l, generator=g, dtype=torch.float64, requires_grad=True)
    delta = torch.rand(b, d, l, generator=g, dtype=torch.float64, requires_grad=True)
    B = torch.randn(b, n, 2 * l, generator=g, dtype=torch.float64, requires_grad=True)
    C = torch.complex(torch.randn(d, n, generator=g, dtype=torch.float64),
                      torch.randn(d, n, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: t_mamba.selective_scan(*a), (u, delta, A, B, C))


BAD_SCAN = [
    (dict(u=np.ones((2, 3))), ValueError, r"u must have shape \(b, d, l\)"),
    (dict(delta=np.ones((2, 4, 5))), ValueError, "delta must have shape"),
    (dict(A=np.ones((4, 2))), ValueError, "A must have shape"),
    (dict(B=np.ones((2, 3, 5))), ValueError, "B must have shape"),
    (dict(C=np.ones((2, 2, 3, 5))), ValueError, "C must have shape"),      # g = 2 does not divide d = 3
    (dict(C=np.ones((2, 3, 2, 4, 5))), ValueError, "C must have shape"),
    (dict(D=np.ones(4)), ValueError, r"D must have shape \(d,\)"),
    (dict(z=np.ones((2, 3, 4))), ValueError, "z must have shape"),
    (dict(delta_bias=np.ones((3, 1))), ValueError, "delta_bias must have shape"),
    (dict(B=np.ones((2, 2, 5)) + 1j), TypeError, "B must be real"),
    (dict(u=np.ones((2, 3, 5)) + 1j), TypeError, "u must be real"),
    (dict(u=np.ones((2, 3, 0)), delta=np.ones((2, 3, 0)), B=np.ones((2, 2, 0)), C=np.ones((2, 2, 0))),
     ValueError, "l >= 1"),
]


@pytest.mark.parametrize("bad,exc,match", BAD_SCAN)
@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_selective_scan_bad_inputs(impl, bad, exc, match):
    good = dict(u=np.ones((2, 3, 5)), delta=np.ones((2, 3, 5)), A=-np.ones((3, 2)),
                B=np.ones((2, 2, 5)), C=np.ones((2, 2, 5)))
    kw = dict(good, **bad)
    with pytest.raises(exc, match=match):
        if impl == "numpy":
            np_mamba.selective_scan(**kw)
        else:
            t_mamba.selective_scan(**to_torch(kw))


def test_selective_scan_complex_A_needs_interleaved_B():
    # complex A: a variable B has 2l entries along time (re/im pairs), not l
    kw = dict(u=np.ones((1, 2, 4)), delta=np.ones((1, 2, 4)), A=-np.ones((2, 3)) + 1j,
              B=np.ones((1, 3, 4)), C=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"2l"):
        np_mamba.selective_scan(**kw)
    with pytest.raises(TypeError, match="torch.Tensor"):
        t_mamba.selective_scan(**kw)


# ================================================================================================
# selective_state_update
# ================================================================================================

@pytest.mark.parametrize("features", list(itertools.product([False, True], repeat=4)))
def test_state_update_one_step_of_the_loop(features):
    use_D, use_z, use_bias, sp = features
    rng = np.random.default_rng(13)
    b, d, n = 2, 3, 4
    state0 = rng.normal(size=(b, d, n))
    x, dt = rng.normal(size=(b, d)), rng.normal(size=(b, d))
    if not sp:
        dt = np.abs(dt)
    A, B, C = -rng.uniform(0.2, 2, (d, n)), rng.normal(size=(b, n)), rng.normal(size=(b, n))
    D = rng.normal(size=d) if use_D else None
    z = rng.normal(size=(b, d)) if use_z else None
    bias = rng.normal(size=d) if use_bias else None
    # expected: one step of the selective-scan loop from state0 (B, C as (b, n, 1) variable inputs)
    want, last, mag, depth, smag = loop_selective_scan(x[..., None], dt[..., None], A, B[..., None], C[..., None],
                                                 D, None if z is None else z[..., None], bias, sp, h0=state0)
    st = state0.copy()
    out = np_mamba.selective_state_update(st, x, dt, A, B, C, D, z, bias, sp)
    assert np.all(np.abs(out - want[..., 0]) <= bound(mag[..., 0], depth, U64))
    assert np.all(np.abs(st - last) <= bound(smag, depth, U64))           # updated in place
    stt = T(state0.copy())
    ptr = stt.data_ptr()
    outt = t_mamba.selective_state_update(stt, T(x), T(dt), T(A), T(B), T(C), *(None if v is None else T(v) for v in (D, z, bias)), sp)
    assert stt.data_ptr() == ptr and np.all(np.abs(stt.numpy() - last) <= bound(smag, depth, U64))
    assert np.all(np.abs(outt.numpy() - want[..., 0]) <= bound(mag[..., 0], depth, U64))


def test_state_update_heads_and_groups_match_the_scan():
    # heads form (b, h, p, n) with g groups == selective_scan over the flattened channels h*p
    rng = np.random.default_rng(14)
    b, h, p, n, g = 2, 4, 3, 5, 2
    state0 = rng.normal(size=(b, h, p, n))
    x, dt, z = rng.normal(size=(b, h, p)), rng.normal(size=(b, h, p)), rng.normal(size=(b, h, p))
    A = -rng.uniform(0.2, 2, (h, p, n))
    B, C = rng.normal(size=(b, g, n)), rng.normal(size=(b, g, n))
    D, bias = rng.normal(size=(h, p)), rng.normal(size=(h, p))
    st = state0.copy()
    out = np_mamba.selective_state_update(st, x, dt, A, B, C, D, z, bias, True)
    y, last = np_mamba.selective_scan(x.reshape(b, h * p, 1), dt.reshape(b, h * p, 1), A.reshape(h * p, n),
                                      B[..., None], C[..., None], D.reshape(-1), z.reshape(b, h * p, 1),
                                      bias.reshape(-1), True, True, initial_state=state0.reshape(b, h * p, n))
    # same operations up to the order of the n-term dot product: n roundings of the magnitude
    mag = np.abs(state0).sum(-1).max() + 10
    assert np.allclose(out, y.reshape(b, h, p), rtol=0, atol=4 * n * U64 * mag * 10)
    assert np.allclose(st, last.reshape(b, h, p, n), rtol=0, atol=4 * U64 * mag)
    stt = T(state0.copy())
    outt = t_mamba.selective_state_update(stt, *(T(v) for v in (x, dt, A, B, C, D, z, bias)), True)
    assert np.allclose(outt.numpy(), out, rtol=0, atol=4 * n * U64 * mag * 10)
    assert np.allclose(stt.numpy(), st, rtol=0, atol=4 * U64 * mag)


def test_state_update_gradcheck():
    g = torch.Generator().manual_seed(15)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()  # noqa: E731
    b, d, n = 2, 3, 2
    args = (r(b, d, n), r(b, d), r(b, d), r(d, n), r(b, n), r(b, n), r(d), r(b, d), r(d))

    def f(state, *rest):
        st = state.clone()                     # the role updates its state argument in place
        out = t_mamba.selective_state_update(st, *rest, dt_softplus=True)
        return out, st

    assert torch.autograd.gradcheck(f, args)


def test_state_update_dtypes():
    state = torch.randn(2, 3, 4, dtype=torch.bfloat16)
    x = torch.randn(2, 3, dtype=torch.bfloat16)
    out = t_mamba.selective_state_update(state, x, torch.rand(2, 3, dtype=torch.bfloat16), -torch.rand(3, 4),
                                         torch.randn(2, 4, dtype=torch.bfloat16), torch.randn(2, 4, dtype=torch.bfloat16),
                                         torch.ones(3), dt_bias=torch.zeros(3), dt_softplus=True)
    assert out.dtype == torch.bfloat16 and state.dtype == torch.bfloat16


def test_state_update_bad_inputs():
    st = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"x must have shape \(b, d\)"):
        np_mamba.selective_state_update(st, np.ones((2, 4)), np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="B must have shape"):
        np_mamba.selective_state_update(st, np.ones((2, 3)), np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 5)), np.ones((2, 4)))
    with pytest.raises(TypeError, match="updated in place"):
        np_mamba.selective_state_update(st.tolist(), np.ones((2, 3)), np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="state must have shape"):
        t_mamba.selective_state_update(torch.zeros(2, 3), torch.ones(2, 3), torch.ones(2, 3), torch.ones(3, 4),
                                       torch.ones(2, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="g dividing h"):
        t_mamba.selective_state_update(torch.zeros(2, 3, 2, 4), torch.ones(2, 3, 2), torch.ones(2, 3, 2),
                                       torch.ones(3, 2, 4), torch.ones(2, 2, 4), torch.ones(2, 2, 4))


# ================================================================================================
# causal_conv1d
# ================================================================================================

@pytest.mark.parametrize("w", [1, 2, 4])
@pytest.mark.parametrize("use_bias,act", list(itertools.product([False, True], [None, "silu", "swish"])))
def test_causal_conv1d_matches_numpy_convolve(w, use_bias, act):
    rng = np.random.default_rng(15)
    b, d, l = 2, 3, 9
    x, wt, bias = rng.normal(size=(b, d, l)), rng.normal(size=(d, w)), rng.normal(size=d)
    want = np.zeros((b, d, l))
    mag = np.zeros((b, d, l))
    for bi, di in itertools.product(range(b), range(d)):
        # weight[:, -1] meets x_t: a convolution with the reversed weight, truncated to l
        want[bi, di] = np.convolve(x[bi, di], wt[di, ::-1])[:l]
        mag[bi, di] = np.convolve(np.abs(x[bi, di]), np.abs(wt[di, ::-1]))[:l]
    if use_bias:
        want += bias[:, None]
        mag += np.abs(bias)[:, None]
    if act:
        sig = 1 / (1 + np.exp(-want))
        want, mag = want * sig, mag * np.maximum(sig, 1.0)
    B_ = bias if use_bias else None
    tol = (w + 4) * U64 * mag + 1e-300   # w products and sums, the bias, the SiLU
    assert np.all(np.abs(np_mamba.causal_conv1d(x, wt, B_, act) - want) <= tol)
    got = t_mamba.causal_conv1d(T(x), T(wt), None if B_ is None else T(B_), act)
    assert got.dtype == torch.float64 and np.all(np.abs(got.numpy() - want) <= tol)


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_causal_conv1d_update_equals_full_and_states_continue(impl):
    rng = np.random.default_rng(16)
    b, d, l, w = 2, 3, 8, 4
    x, wt, bias = rng.normal(size=(b, d, l)), rng.normal(size=(d, w)), rng.normal(size=d)
    M = np_mamba if impl == "numpy" else t_mamba
    cv = (lambda a: a) if impl == "numpy" else T
    full, fin = M.causal_conv1d(cv(x), cv(wt), cv(bias), "silu", return_final_states=True)
    full = np.asarray(full)
    for state_len in (w - 1, w, w + 2):       # mamba keeps d_conv, causal-conv1d w - 1
        state = cv(np.zeros((b, d, state_len)))
        steps = np.stack([np.asarray(M.causal_conv1d_update(cv(x[:, :, t]), state, cv(wt), cv(bias), "silu"))
                          for t in range(l)], -1)
        assert np.allclose(steps, full, rtol=1e-14, atol=1e-14)   # same w-term sums
        assert np.allclose(np.asarray(state)[:, :, -(w - 1):], np.asarray(fin))
    y1, s1 = M.causal_conv1d(cv(x[..., :3]), cv(wt), cv(bias), None, return_final_states=True)
    y2 = M.causal_conv1d(cv(x[..., 3:]), cv(wt), cv(bias), None, initial_states=s1)
    want = np.asarray(M.causal_conv1d(cv(x), cv(wt), cv(bias), None))
    assert np.allclose(np.concatenate([np.asarray(y1), np.asarray(y2)], -1), want, rtol=1e-14, atol=1e-14)
    # several steps at once (x (b, d, s)) also continue the state
    state = cv(np.zeros((b, d, w - 1)))
    chunks = [np.asarray(M.causal_conv1d_update(cv(x[:, :, s:s + 3]), state, cv(wt), cv(bias), "silu"))
              for s in range(0, l, 3)]
    assert np.allclose(np.concatenate(chunks, -1), full, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_causal_conv1d_dtypes(dtype):
    g = torch.Generator().manual_seed(17)
    x = torch.randn(2, 4, 10, generator=g).to(dtype)
    wt, bias = torch.randn(4, 4, generator=g), torch.randn(4, generator=g)
    y = t_mamba.causal_conv1d(x, wt, bias, "silu")
    assert y.dtype == dtype
    want = np_mamba.causal_conv1d(x.double().numpy(), wt.double().numpy(), bias.double().numpy(), "silu")
    mag = np_mamba.causal_conv1d(np.abs(x.double().numpy()), np.abs(wt.double().numpy()), np.abs(bias.double().numpy()))
    # float32 compute (w + 4 roundings) then one rounding to the output dtype
    assert np.all(np.abs(y.double().numpy() - want) <= 8 * U32 * mag + U_OUT[dtype] * np.abs(want) + 1e-30)


def test_causal_conv1d_gradcheck():
    g = torch.Generator().manual_seed(18)
    x = torch.randn(2, 3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: t_mamba.causal_conv1d(*a, activation="silu"), (x, wt, bias),
                                    fast_mode=True)


def test_causal_conv1d_bad_inputs():
    with pytest.raises(ValueError, match=r"weight must have shape \(d, w\)"):
        np_mamba.causal_conv1d(np.ones((2, 3, 5)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="activation"):
        t_mamba.causal_conv1d(torch.ones(2, 3, 5), torch.ones(3, 2), activation="relu")
    with pytest.raises(ValueError, match="bias must have shape"):
        t_mamba.causal_conv1d(torch.ones(2, 3, 5), torch.ones(3, 2), torch.ones(2))
    with pytest.raises(ValueError, match="state_len >= w - 1"):
        np_mamba.causal_conv1d_update(np.ones((2, 3)), np.zeros((2, 3, 1)), np.ones((3, 4)))


# ================================================================================================
# Mamba block
# ================================================================================================

def _weights(bias=False):
    return np_mamba.MambaWeights.random(d_model=6, d_state=4, d_conv=3, expand=2, seed=19, bias=bias)


@pytest.mark.parametrize("bias", [False, True])
def test_mamba_block_decode_equals_prefill(bias):
    w = _weights(bias)
    x = np.random.default_rng(20).normal(size=(2, 9, 6))
    blk = np_mamba.MambaBlock(w)
    full = blk.forward(x)
    state = blk.init_state(2)
    steps = np.stack([blk.step(x[:, t], state)[0] for t in range(9)], 1)
    # the same sums in a different grouping (one scan vs l updates): a few ulps of the magnitude
    assert np.allclose(steps, full, rtol=1e-12, atol=1e-13)
    # prefill with a state then decode continues exactly like the whole sequence
    state = blk.init_state(2)
    head = blk.forward(x[:, :5], state)
    tail = np.stack([blk.step(x[:, t], state)[0] for t in range(5, 9)], 1)
    assert np.allclose(np.concatenate([head, tail], 1), full, rtol=1e-12, atol=1e-13)

    tb = t_mamba.MambaBlock(w, dtype=torch.float64)
    tfull = tb(T(x)).detach()
    assert np.allclose(tfull.numpy(), full, rtol=1e-12, atol=1e-13)     # numpy == torch
    st = tb.init_state(2)
    tsteps = torch.stack([tb.step(T(x[:, t]), st)[0] for t in range(9)], 1).detach()
    assert np.allclose(tsteps.numpy(), full, rtol=1e-12, atol=1e-13)
    st = tb.init_state(2)
    thead = tb(T(x[:, :5]), st).detach()
    ttail = torch.stack([tb.step(T(x[:, t]), st)[0] for t in range(5, 9)], 1).detach()
    assert np.allclose(torch.cat([thead, ttail], 1).numpy(), full, rtol=1e-12, atol=1e-13)


def test_mamba_block_weights_roundtrip_and_half_precision():
    w = _weights(True)
    tb = t_mamba.MambaBlock(w)                   # float32 weights
    back = tb.to_numpy()
    for k, v in w.as_dict().items():
        assert np.allclose(getattr(back, k), v, rtol=U32, atol=0)
    x = torch.randn(2, 7, 6, generator=torch.Generator().manual_seed(21))
    y32 = tb(x).detach()
    yb = tb(x.to(torch.bfloat16)).detach()
    assert yb.dtype == torch.bfloat16 and y32.dtype == torch.float32
    # bf16 activations: the input rounded to bf16 (2^-8 relative) drives the difference; the
    # block is smooth with O(1) gain at these sizes, so a few times 2^-8 of the output scale
    assert torch.allclose(yb.float(), y32, rtol=0, atol=8 * 2.0**-8 * y32.abs().max().item())
    with pytest.raises(ValueError, match=r"x must have shape \(b, l, d_model\)"):
        tb(torch.ones(2, 7, 5))
    with pytest.raises(ValueError, match=r"x must have shape \(b, d_model\)"):
        np_mamba.MambaBlock(w).step(np.ones((2, 5)), np_mamba.MambaBlock(w).init_state(2))


def test_mamba_block_gradients_flow():
    tb = t_mamba.MambaBlock(_weights(), dtype=torch.float64)
    x = torch.randn(1, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: tb(x), (x,), fast_mode=True)


# ================================================================================================
# Subjects: deliberately wrong kernels and the upstream-reference adapters
# ================================================================================================

WRONG_SCANS = {
    # name: (input adjustments that exercise the mistake, return_last_state)
    "ss_output_from_previous_state": ({}, False),
    "ss_delta_bias_after_softplus": ({}, False),
    "ss_sigmoid_gate": ({}, False),
    "ss_gate_before_D": ({}, False),
    "ss_group_modulo": (dict(B_kind="grouped", d=4, g=2), False),
    "ss_euler_A": ({}, False),
    "ss_complex_missing_factor_two": (dict(cplx=True), False),
    "ss_complex_A_imag_dropped": (dict(cplx=True), False),
    "ss_complex_pairs_not_interleaved": (dict(cplx=True), False),
    "ss_softplus_no_threshold": (dict(big_delta=True), False),
    "ss_last_state_previous_step": ({}, True),
    "ss_fp16_accumulation": ({}, False),
}


def _torch_scan_inputs(name, adj):
    rng = np.random.default_rng(22)
    big = adj.pop("big_delta", False)
    kw = make_scan_inputs(rng, b=2, d=adj.pop("d", 4), n=3, l=8, B_kind=adj.pop("B_kind", "variable"),
                          C_kind="variable", cplx=adj.pop("cplx", False), g=adj.pop("g", 2))
    if big:
        kw["delta"] = kw["delta"] + 100.0   # softplus argument > 88.7: exp overflows in float32
    return to_torch(kw, torch.float32)


@pytest.mark.parametrize("name", sorted(WRONG_SCANS))
def test_wrong_selective_scans_are_wrong(name):
    adj, want_state = WRONG_SCANS[name]
    kw = _torch_scan_inputs(name, dict(adj))
    ex = {k: None if v is None else v.to(torch.complex128 if v.is_complex() else torch.float64).numpy()
          for k, v in kw.items()}
    want, last, mag, depth, smag = loop_selective_scan(ex["u"], ex["delta"], ex["A"], ex["B"], ex["C"],
                                                       ex["D"], ex["z"], ex["delta_bias"], True)
    i = 1 if want_state else 0
    want, mag = (last, smag) if want_state else (want, mag)
    tol = depth * U32 * mag + U32 * np.abs(want) + 1e-30    # float32 compute, float32 result

    def ratio(res):
        got = res[i].to(torch.complex128 if res[i].is_complex() else torch.float64).numpy()
        with np.errstate(invalid="ignore"):
            r = np.abs(got - want) / tol
        return np.inf if not np.all(np.isfinite(got)) else r.max()

    # our kernel and the mistake-free base are within the float32 bound...
    assert ratio(t_mamba.selective_scan(**kw, delta_softplus=True, return_last_state=True)) <= 1
    assert ratio(mamba_wrong.selective_scan_correct(**kw, delta_softplus=True, return_last_state=True)) <= 1
    # ...and the mistake is far outside it (or not finite)
    assert ratio(getattr(mamba_wrong, name)(**kw, delta_softplus=True, return_last_state=True)) > 100


WRONG_SSU = ["ssu_state_not_in_place", "ssu_dt_not_softplus", "ssu_output_from_old_state"]


@pytest.mark.parametrize("name", WRONG_SSU)
def test_wrong_state_updates_are_wrong(name):
    g = torch.Generator().manual_seed(23)
    b, d, n = 2, 3, 4
    args = [torch.randn(b, d, generator=g), torch.randn(b, d, generator=g), -torch.rand(d, n, generator=g) - 0.5,
            torch.randn(b, n, generator=g), torch.randn(b, n, generator=g), torch.randn(d, generator=g)]
    s0 = torch.randn(b, d, n, generator=g)
    s_good, s_base, s_bad = s0.clone(), s0.clone(), s0.clone()
    o_good = t_mamba.selective_state_update(s_good, *args, dt_softplus=True)
    o_base = mamba_wrong.selective_state_update_correct(s_base, *args, dt_softplus=True)
    o_bad = getattr(mamba_wrong, name)(s_bad, *args, dt_softplus=True)
    assert torch.allclose(o_base, o_good, atol=1e-5) and torch.allclose(s_base, s_good, atol=1e-5)
    assert (o_bad - o_good).abs().max() > 1e-2 or (s_bad - s_good).abs().max() > 1e-2


WRONG_CONV = ["conv_weight_reversed", "conv_acausal_same_padding", "conv_bias_after_silu"]


@pytest.mark.parametrize("name", WRONG_CONV)
def test_wrong_convs_are_wrong(name):
    g = torch.Generator().manual_seed(24)
    x, wt, bias = torch.randn(2, 3, 9, generator=g), torch.randn(3, 4, generator=g), torch.randn(3, generator=g)
    good = t_mamba.causal_conv1d(x, wt, bias, "silu")
    assert torch.allclose(mamba_wrong.causal_conv1d_correct(x, wt, bias, "silu"), good, atol=1e-6)
    assert (getattr(mamba_wrong, name)(x, wt, bias, "silu") - good).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["linear_scan_exclusive", "linear_scan_operands_swapped"])
def test_wrong_linear_scans_are_wrong(name):
    g = torch.Generator().manual_seed(25)
    a, b = torch.rand(3, 10, generator=g), torch.randn(3, 10, generator=g)
    assert (getattr(mamba_wrong, name)(a, b) - t_scan.linear_scan(a, b)).abs().max() > 1e-2


def _need(which):
    ok, why = mamba_refs.available(which)
    if not ok:
        pytest.skip(why)


def test_refs_selective_scan_agree():
    _need("mamba_ssm")
    kw = to_torch(make_scan_inputs(np.random.default_rng(26), B_kind="grouped", C_kind="variable"), torch.float32)
    y1, s1 = mamba_refs.selective_scan(**kw, delta_softplus=True, return_last_state=True)
    y2, s2 = t_mamba.selective_scan(**kw, delta_softplus=True, return_last_state=True)
    assert y1.dtype == y2.dtype and s1.dtype == s2.dtype
    assert torch.allclose(y1, y2, rtol=1e-4, atol=1e-4) and torch.allclose(s1, s2, rtol=1e-4, atol=1e-4)


def test_refs_mamba_inner_agrees_with_block():
    _need("mamba_ssm")
    _need("causal_conv1d")
    tb = t_mamba.MambaBlock(_weights(True))
    x = torch.randn(2, 7, 6, generator=torch.Generator().manual_seed(27))
    xz = torch.nn.functional.linear(x, tb.in_proj_weight, tb.in_proj_bias).transpose(1, 2)
    ref = mamba_refs.mamba_inner(xz, tb.conv_weight.unsqueeze(1), tb.conv_bias, tb.x_proj_weight,
                                 tb.dt_proj_weight, tb.out_proj_weight, tb.out_proj_bias, -torch.exp(tb.A_log),
                                 D=tb.D, delta_bias=tb.dt_proj_bias)
    assert torch.allclose(ref, tb(x), rtol=1e-4, atol=1e-5)


def test_refs_pscan_agrees():
    _need("mambapy")
    a, b = torch.rand(3, 4, 21), torch.randn(3, 4, 21)
    assert torch.allclose(mamba_refs.linear_scan(a, b), t_scan.linear_scan(a, b), rtol=1e-5, atol=1e-5)
