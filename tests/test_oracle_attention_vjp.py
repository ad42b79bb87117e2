"""The attention backward oracle (oracle/attention_vjp.py): values against SymPy's derivative of
the closed form on small cases, against float64 autograd of an independent loop, exact zeros
(causal keys no query sees, scale 0), the log-sum-exp path at scores of 1e4; its bound against
accurate float32 / half backwards (autograd of the math backend, FlashAttention-2 style with
P and dS rounded to bf16/fp16, with subnormals flushed to zero) and against wrong backwards;
input checking."""
from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
import torch

from ssm_conformance.oracle.attention_vjp import attention_vjp, tolerance_terms
from ssm_conformance.properties.tolerance import attention_tol
from tests.subjects import attention_subjects as subj


def _tol(ref, dtype):
    return attention_tol(ref, tolerance_terms(ref, dtype), dtype)


def _draw(rng, b=1, h=2, l=5, s=7, e=4, ev=None, scale_q=1.0):
    ev = e if ev is None else ev
    return (scale_q * rng.standard_normal((b, h, l, e)), rng.standard_normal((b, h, s, e)),
            rng.standard_normal((b, h, s, ev)), rng.standard_normal((b, h, l, ev)))


def _autograd(fn, q, k, v, g, dtype, **kw):
    """Gradients of sum(g * fn(q, k, v)) with the inputs and g rounded to ``dtype``; float64."""
    ts = [torch.tensor(x).to(getattr(torch, dtype)).requires_grad_() for x in (q, k, v)]
    out = fn(*ts, **kw)
    out.backward(torch.tensor(g).to(out.dtype))
    return {n: t.grad.double().numpy() for n, t in zip("qkv", ts)}


def _rounded(dtype, *arrays):
    return [torch.tensor(a).to(getattr(torch, dtype)).double().numpy() for a in arrays]


def _ratio(got, refs, dtype):
    return max(float(np.max(np.abs(got[n] - refs[n].value) / _tol(refs[n], dtype))) for n in "qkv")


# ----------------------------------------------------------------------------------------------
# values


@pytest.mark.parametrize("causal", [False, True])
def test_sympy_derivative_of_the_closed_form(causal):
    """l = 2, s = 3, e = ev = 1: o_i = sum_j exp(c q_i k_j) v_j / sum_j exp(c q_i k_j) over the
    visible keys, differentiated symbolically, evaluated at the (dyadic) inputs to 40 digits."""
    q = np.array([[[[0.75], [-1.5]]]])
    k = np.array([[[[0.5], [2.0], [-1.25]]]])
    v = np.array([[[[1.0], [-0.5], [3.0]]]])
    g = np.array([[[[0.25], [-2.0]]]])
    c = sympy.Rational(3, 10)
    Q, K, V = sympy.symbols("q0:2"), sympy.symbols("k0:3"), sympy.symbols("v0:3")
    L = 0
    for i in range(2):
        keys = [j for j in range(3) if not causal or j <= i]
        w = [sympy.exp(c * Q[i] * K[j]) for j in keys]
        L += sympy.Rational(g[0, 0, i, 0]) * sum(wj * V[j] for wj, j in zip(w, keys)) / sum(w)
    point = {**{Q[i]: sympy.Rational(q[0, 0, i, 0]) for i in range(2)},
             **{K[j]: sympy.Rational(k[0, 0, j, 0]) for j in range(3)},
             **{V[j]: sympy.Rational(v[0, 0, j, 0]) for j in range(3)}}
    refs = attention_vjp(q, k, v, g, is_causal=causal, scale=0.3)
    for name, syms in (("q", Q), ("k", K), ("v", V)):
        for idx, sym in enumerate(syms):
            exact = float(sympy.N(sympy.diff(L, sym).subs(point), 40))
            got = refs[name].value[0, 0, idx, 0]
            assert abs(got - exact) <= 2.0**-52 * abs(exact) + 1e-300, (name, idx, got, exact)


def loop_attention_t(q, k, v, is_causal=False, scale=None):
    """Independent torch reference, one query row at a time (autograd gives its backward)."""
    l, s, e = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1 / math.sqrt(e) if scale is None else scale
    rows = []
    for i in range(l):
        n = min(i + 1, s) if is_causal else s
        sc = (q[..., i:i + 1, :] @ k[..., :n, :].transpose(-1, -2)) * scale
        rows.append(torch.softmax(sc, dim=-1) @ v[..., :n, :])
    return torch.cat(rows, dim=-2)


@pytest.mark.parametrize("l,s,causal,scale", [(5, 7, False, None), (5, 7, True, None), (7, 3, True, 0.37),
                                              (1, 6, True, -0.5), (6, 1, False, 2.0)])
def test_float64_autograd_within_tolerance(l, s, causal, scale):
    """Autograd through an independent float64 loop is an accurate algorithm: within the float64
    tolerance, which is itself far below the gradients' size (not vacuous)."""
    rng = np.random.default_rng(10 * l + s)
    q, k, v, g = _draw(rng, l=l, s=s, ev=3)
    refs = attention_vjp(q, k, v, g, is_causal=causal, scale=scale)
    got = _autograd(loop_attention_t, q, k, v, g, "float64", is_causal=causal, scale=scale)
    assert _ratio(got, refs, "float64") <= 1
    for n in "qkv":
        assert np.max(_tol(refs[n], "float64")) < 1e-11 * max(1.0, np.abs(refs[n].value).max())


def test_keys_no_query_sees_get_exactly_zero_gradient():
    """Causal with s > l: keys j >= l are hidden from every query; their dK and dV are 0."""
    rng = np.random.default_rng(1)
    q, k, v, g = _draw(rng, l=3, s=6)
    refs = attention_vjp(q, k, v, g, is_causal=True)
    assert np.all(refs["k"].value[..., 3:, :] == 0) and np.all(refs["v"].value[..., 3:, :] == 0)
    assert np.all(refs["k"].value[..., :3, :] != 0)


def test_scale_zero_is_uniform_attention():
    """scale 0: P_ij = 1/n_i whatever q and k, so dQ = dK = 0 and dV_j = sum_i dO_i / n_i."""
    rng = np.random.default_rng(2)
    q, k, v, g = _draw(rng, l=4, s=4)
    refs = attention_vjp(q, k, v, g, is_causal=True, scale=0.0)
    assert np.all(refs["q"].value == 0) and np.all(refs["k"].value == 0)
    want = np.stack([sum(g[..., i, :] / (i + 1) for i in range(j, 4)) for j in range(4)], axis=-2)
    np.testing.assert_allclose(refs["v"].value, want, rtol=4 * 2.0**-53, atol=0)


def test_scores_of_1e4_saturate_without_overflow():
    """One key's score exceeds the others' by ~1e4: P is one-hot to double precision, so dV of
    that key is dO, dQ and dK are 0 up to exp(-1e4) -- and nothing overflows."""
    q = np.array([[[[100.0, 0.0]]]])
    k = np.array([[[[100.0, 0.0], [-100.0, 0.0], [0.0, 1.0]]]])
    v = np.arange(6.0).reshape(1, 1, 3, 2)
    g = np.array([[[[1.0, -2.0]]]])
    refs = attention_vjp(q, k, v, g, scale=1.0)
    np.testing.assert_array_equal(refs["v"].value[0, 0], [[1.0, -2.0], [0.0, 0.0], [0.0, 0.0]])
    assert np.all(np.abs(refs["q"].value) < 1e-300) and np.all(np.abs(refs["k"].value) < 1e-300)


def test_oracle_error_is_certified_small():
    rng = np.random.default_rng(4)
    refs = attention_vjp(*_draw(rng, l=4, s=6), is_causal=True)
    for ref in refs.values():
        assert np.all(ref.error <= 2.0**-64 * np.maximum(np.abs(ref.value), ref.magnitudes["main"]))


# ----------------------------------------------------------------------------------------------
# the bound admits accurate backwards and rejects wrong ones


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("scale_q,causal", [(1.0, False), (1.0, True), (30.0, True)])
def test_accurate_backwards_pass(dtype, scale_q, causal):
    """Autograd of the math backend, and the FlashAttention-2 style backward (P recomputed from
    the log-sum-exp, D from the output, P and dS rounded to the half dtype), on inputs rounded to
    ``dtype``; scale_q = 30 gives scores in the hundreds, saturated rows and underflowing P."""
    rng = np.random.default_rng(int(scale_q) + causal)
    q, k, v, g = _rounded(dtype, *_draw(rng, l=9, s=13, e=8, scale_q=scale_q))
    refs = attention_vjp(q, k, v, g, is_causal=causal)
    for fn in (subj.sdpa_math, subj.flash_manual):
        assert _ratio(_autograd(fn, q, k, v, g, dtype, is_causal=causal), refs, dtype) <= 1, fn


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_flush_to_zero_of_tiny_weights_passes_float32(dtype):
    """Weights below float32's tiny (1.2e-38) flushed to zero, as fast-math GPU kernels do:
    admitted in float32 and bfloat16 (module doc of oracle.attention.underflow_weight)."""
    q = np.array([[[[9.5, 0.0]]]])
    k = np.array([[[[9.5, 0.0], [0.0, 0.5]]]])            # scores 90.25 and 0: P_1 = e^-90 < tiny
    v = np.array([[[[1.0, 2.0], [-1.0, 0.5]]]])
    g = np.array([[[[1.0, 1.0]]]])
    refs = attention_vjp(q, k, v, g, scale=1.0)
    assert 0 < refs["v"].value[0, 0, 1, 0] < 2.0**-126
    flushed = {"q": np.zeros_like(q), "k": np.zeros_like(k), "v": np.array([[[[1.0, 1.0], [0.0, 0.0]]]])}
    assert _ratio(flushed, refs, dtype) <= 1


def test_float16_flushing_subnormal_weights_is_rejected():
    """float16's tiny is 6.1e-5, an ordinary weight: flushing P below it to zero before P^T dO
    (a conversion without subnormals) loses accuracy that the float16 bound does not admit."""
    s = 200
    q = np.zeros((1, 1, 1, 1))
    k = np.zeros((1, 1, s, 1))
    v = np.ones((1, 1, s, 1))
    g = np.ones((1, 1, 1, 1))
    refs = attention_vjp(q, k, v, g)                      # P = 1/200 = 5e-3 each: normal in fp16
    ok = {"q": np.zeros_like(q), "k": np.zeros_like(k), "v": np.full((1, 1, s, 1), 1 / s)}
    assert _ratio(ok, refs, "float16") <= 1
    s = 20000                                             # P = 5e-5 < tiny: flushing gives dV = 0
    q, k, v = np.zeros((1, 1, 1, 1)), np.zeros((1, 1, s, 1)), np.ones((1, 1, s, 1))
    refs = attention_vjp(q, k, v, g)
    flushed = {"q": np.zeros_like(q), "k": np.zeros_like(k), "v": np.zeros((1, 1, s, 1))}
    assert _ratio(flushed, refs, "float16") > 1


@pytest.mark.parametrize("name", sorted(subj.WRONG_BACKWARD))
def test_wrong_backwards_are_rejected_float32(name):
    """Each mistake of tests/subjects/attention_subjects.py's backward, on an input that
    exposes it (scores in the hundreds for the unstabilized log-sum-exp), is far outside."""
    rng = np.random.default_rng(7)
    scale_q = 40.0 if name == "bwd_lse_unstabilized" else 1.0
    q, k, v, g = _rounded("float32", *_draw(rng, l=6, s=9, e=8, scale_q=scale_q))
    refs = attention_vjp(q, k, v, g, is_causal=True)
    got = _autograd(subj.WRONG_BACKWARD[name], q, k, v, g, "float32", is_causal=True)
    assert _ratio(got, refs, "float32") > 100


# ----------------------------------------------------------------------------------------------
# inputs


def test_bad_inputs():
    a = np.ones((1, 2, 3))
    with pytest.raises(ValueError, match=r"grad_out must have the output's shape \(\.\.\., l, ev\) = \(1, 2, 3\)"):
        attention_vjp(a, a, a, np.ones((1, 3, 3)))
    with pytest.raises(ValueError, match="k must have shape"):
        attention_vjp(a, np.ones((1, 2, 4)), a, a)
    with pytest.raises(TypeError, match="grad_out must be real"):
        attention_vjp(a, a, a, a + 1j)
