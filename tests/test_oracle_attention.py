"""The attention oracle (oracle/attention.py): value against independent float64 computations,
exact rational cases and closed forms; the log-sum-exp path at scores +-1e4; causal masks with
l != s (top-left aligned, torch's convention); rows without keys; its magnitudes against
accurate float32 algorithms (naive and online/flash-style); input checking."""
from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssm_conformance.oracle.attention import attention, tolerance_terms
from ssm_conformance.properties.tolerance import attention_tol

U64 = 2.0**-53


def _tol(ref, dtype="float64"):
    """SAFETY u ((e + 6) score_spread + (6 n_i + 8) abs_pv) + output rounding (module doc)."""
    return attention_tol(ref, tolerance_terms(ref), dtype)


def _qkv(rng, b=1, h=2, l=5, s=7, e=4, ev=None, scale_q=1.0):
    return (scale_q * rng.standard_normal((b, h, l, e)), rng.standard_normal((b, h, s, e)),
            rng.standard_normal((b, h, s, e if ev is None else ev)))


def loop_attention(q, k, v, is_causal, scale):
    """Independent float64 reference: one query row at a time, keys chosen by the explicit rule
    j <= i (top-left) for causal, softmax with the row max subtracted."""
    *lead, l, e = q.shape
    s = k.shape[-2]
    out = np.zeros(q.shape[:-1] + (v.shape[-1],))
    for idx in np.ndindex(*lead):
        for i in range(l):
            keys = [j for j in range(s) if (not is_causal or j <= i)]
            if not keys:
                continue
            sc = np.array([scale * np.dot(q[idx + (i,)], k[idx + (j,)]) for j in keys])
            w = np.exp(sc - sc.max())
            out[idx + (i,)] = (w[:, None] * v[idx][keys]).sum(axis=0) / w.sum()
    return out


# ----------------------------------------------------------------------------------------------
# values


@pytest.mark.parametrize("l,s,causal", [(5, 7, False), (5, 7, True), (7, 3, True), (4, 4, True), (1, 6, True),
                                        (6, 1, True)])
def test_matches_independent_float64_loop(l, s, causal):
    """The loop is an accurate float64 algorithm, so it lies within the oracle's own tolerance
    at u = 2^-53 (this also checks that the magnitudes admit an accurate algorithm)."""
    rng = np.random.default_rng(l * 10 + s)
    q, k, v = _qkv(rng, l=l, s=s, ev=3)
    for scale in (None, 0.37):
        ref = attention(q, k, v, is_causal=causal, scale=scale)
        sc = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
        got = loop_attention(q, k, v, causal, sc)
        assert np.all(np.abs(got - ref.value) <= _tol(ref))
        # and not vacuously: the tolerance is far below the values' size
        assert np.max(_tol(ref)) < 1e-12 * max(1.0, np.abs(ref.value).max())


def test_matches_torch_sdpa_float64():
    rng = np.random.default_rng(3)
    for causal in (False, True):
        q, k, v = _qkv(rng, b=2, h=3, l=6, s=9, e=5)
        ref = attention(q, k, v, is_causal=causal)
        got = F.scaled_dot_product_attention(*map(torch.from_numpy, (q, k, v)), is_causal=causal).numpy()
        assert np.all(np.abs(got - ref.value) <= _tol(ref))


@pytest.mark.parametrize("l,s", [(4, 4), (3, 6), (6, 3)])
def test_uniform_weights_give_exact_prefix_means(l, s):
    """q = 0: every visible key has weight 1/n_i, so o_i = mean of v over the visible keys,
    exactly in rationals; with the top-left causal mask row i sees keys 0..min(i, s-1)."""
    rng = np.random.default_rng(l + 7 * s)
    q = np.zeros((1, 1, l, 3))
    k = rng.standard_normal((1, 1, s, 3))
    v = rng.standard_normal((1, 1, s, 2))
    ref = attention(q, k, v, is_causal=True)
    for i in range(l):
        n = min(i, s - 1) + 1
        for c in range(2):
            exact = sum(Fraction(float(v[0, 0, j, c])) for j in range(n)) / n
            assert abs(Fraction(float(ref.value[0, 0, i, c])) - exact) <= Fraction(math.ulp(float(exact))) / 2


def test_top_left_causal_mask_with_one_hot_values():
    """v = identity: o_i is the weight row itself.  Top-left alignment: row i gives weight 0 to
    keys j > i and > 0 to keys j <= i, also when l > s (rows i >= s see every key) and l < s."""
    rng = np.random.default_rng(5)
    for l, s in ((3, 6), (6, 3)):
        q, k = rng.standard_normal((1, 1, l, 4)), rng.standard_normal((1, 1, s, 4))
        v = np.eye(s)[None, None]
        P = attention(q, k, v, is_causal=True).value[0, 0]
        for i in range(l):
            for j in range(s):
                assert (P[i, j] > 0) == (j <= i), (l, s, i, j)
        np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=4 * U64 * s)


def test_rows_without_keys_are_zero_as_torch():
    """s = 0: no key at all.  torch returns 0 (its safe softmax), not NaN; so does the oracle."""
    q = np.ones((1, 2, 3, 4))
    k = np.zeros((1, 2, 0, 4))
    v = np.zeros((1, 2, 0, 5))
    for causal in (False, True):
        ref = attention(q, k, v, is_causal=causal)
        assert ref.value.shape == (1, 2, 3, 5) and np.all(ref.value == 0)
        t = F.scaled_dot_product_attention(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v),
                                           is_causal=causal)
        assert torch.all(t == 0)


# ----------------------------------------------------------------------------------------------
# the log-sum-exp path


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_scores_of_1e4_two_keys_closed_form(sign):
    """e = 1, scale = 1, q = +-1e4, k = (1, 1 - 2^-20): scores +-1e4 and +-(1e4 - d), d = 1e4 2^-20
    exact.  o = v0 + (v1 - v0) sigma(-+d) in closed form (mpmath, 50 digits).  exp(1e4)
    overflows float64: only a max-subtracted (LSE) evaluation gets here."""
    q = np.array([[[[sign * 1e4]]]])
    k = np.array([[[[1.0], [1.0 - 2.0**-20]]]])
    v = np.array([[[[0.75, -2.0], [-1.5, 3.25]]]])
    ref = attention(q, k, v, scale=1.0)
    d = mpmath.mpf(1e4) * mpmath.mpf(2) ** -20
    with mpmath.workdps(50):
        sig = 1 / (1 + mpmath.exp(sign * d))          # weight of key 1: e^{-sign d} / (1 + e^{-sign d})
        for c in range(2):
            exact = mpmath.mpf(v[0, 0, 0, c]) + (mpmath.mpf(v[0, 0, 1, c]) - mpmath.mpf(v[0, 0, 0, c])) * sig
            assert abs(ref.value[0, 0, 0, c] - float(exact)) <= math.ulp(float(exact)) / 2
    assert np.all(np.isfinite(ref.magnitudes["score_spread"])) and np.isfinite(ref.error).all()
    with np.errstate(over="ignore", invalid="ignore"):
        w = np.exp(sign * 1e4 * k[0, 0, :, 0])           # exp without the max: inf/inf or 0/0
        assert not np.all(np.isfinite(w / w.sum()))


def test_scores_of_1e4_one_key_dominates():
    """Scores 1e4, -1e4, 5e3: the weights are 1, e^-2e4, e^-5e3 relative to the first, so o = v0
    to far below an ulp; and the naive float64 loop (max subtracted) agrees."""
    q = np.array([[[[1e4]]]])
    k = np.array([[[[1.0], [-1.0], [0.5]]]])
    v = np.array([[[[0.3, -7.0], [11.0, 5.0], [-2.0, 1.0]]]])
    ref = attention(q, k, v, scale=1.0)
    np.testing.assert_array_equal(ref.value[0, 0, 0], v[0, 0, 0])
    np.testing.assert_array_equal(loop_attention(q, k, v, False, 1.0), ref.value)


def test_causal_large_negative_and_positive_scores_float64():
    """Scores up to +-1e4 with a causal mask, l != s: the float64 loop within tolerance."""
    rng = np.random.default_rng(11)
    q, k, v = _qkv(rng, l=6, s=4, e=3, scale_q=3e3)
    ref = attention(q, k, v, is_causal=True, scale=1.0)
    assert np.abs(ref.magnitudes["score_spread"]).max() > 0
    assert np.all(np.abs(loop_attention(q, k, v, True, 1.0) - ref.value) <= _tol(ref))


# ----------------------------------------------------------------------------------------------
# the tolerance model against accurate float32 algorithms


def online_attention_f32(q, k, v, is_causal, scale, block=2):
    """FlashAttention-style online softmax in float32: keys in blocks, running max m, running
    denominator and accumulator rescaled by exp(m_old - m_new)."""
    q, k, v = (np.asarray(a, dtype=np.float32) for a in (q, k, v))
    *lead, l, e = q.shape
    s, ev = k.shape[-2], v.shape[-1]
    sc = np.float32(scale)
    out = np.zeros(q.shape[:-1] + (ev,), dtype=np.float32)
    for idx in np.ndindex(*lead):
        for i in range(l):
            m, den, acc = np.float32(-np.inf), np.float32(0), np.zeros(ev, dtype=np.float32)
            for j0 in range(0, s, block):
                js = [j for j in range(j0, min(j0 + block, s)) if not is_causal or j <= i]
                if not js:
                    continue
                S = (k[idx][js] @ q[idx + (i,)]) * sc
                m_new = max(m, S.max())
                alpha = np.exp(m - m_new) if np.isfinite(m) else np.float32(0)
                p = np.exp(S - m_new)
                den = den * alpha + p.sum(dtype=np.float32)
                acc = acc * alpha + p @ v[idx][js]
                m = m_new
            out[idx + (i,)] = acc / den
    return out


@pytest.mark.parametrize("scale_q,causal", [(1.0, False), (1.0, True), (40.0, True), (400.0, False)])
def test_float32_naive_and_online_within_tolerance(scale_q, causal):
    """Inputs rounded to float32, oracle on the rounded values, tolerance at u = 2^-24: the
    naive max-subtracted and the online (block 2, many rescalings) float32 algorithms pass.  Large
    scale_q gives logits in the hundreds, where exp without the max would overflow float32."""
    rng = np.random.default_rng(int(scale_q) + causal)
    q, k, v = (a.astype(np.float32).astype(np.float64) for a in _qkv(rng, b=1, h=2, l=6, s=9, e=8, scale_q=scale_q))
    ref = attention(q, k, v, is_causal=causal)
    tol = _tol(ref, "float32")
    sc = 1 / math.sqrt(8)
    naive = loop_attention(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32), causal, np.float32(sc))
    online = online_attention_f32(q, k, v, causal, sc)
    for got in (naive, online):
        assert np.all(np.abs(got.astype(np.float64) - ref.value) <= tol)


def test_tolerance_rejects_a_wrong_scale_float32():
    """Not vacuous: attention with scale 1/e instead of 1/sqrt(e), in float32, is far outside."""
    rng = np.random.default_rng(2)
    q, k, v = (a.astype(np.float32).astype(np.float64) for a in _qkv(rng, l=5, s=5, e=8))
    ref = attention(q, k, v)
    wrong = loop_attention(q, k, v, False, 1 / 8)
    assert np.max(np.abs(wrong - ref.value) / _tol(ref, "float32")) > 100


# ----------------------------------------------------------------------------------------------
# precision and inputs


def test_oracle_error_is_certified_small():
    rng = np.random.default_rng(4)
    q, k, v = _qkv(rng, l=4, s=4)
    ref = attention(q, k, v, is_causal=True)
    assert np.all(ref.error <= 2.0**-64 * np.maximum(np.abs(ref.value), ref.magnitudes["abs_pv"]))
    assert ref.magnitudes["depth_score"] == 4 + 6
    np.testing.assert_array_equal(ref.magnitudes["depth_pv"][:, 0], 6 * np.array([1, 2, 3, 4]) + 8)


@pytest.mark.parametrize("args,exc,match", [
    (((2, 3), (2, 3, 4), (2, 3, 4)), ValueError, "k must have shape"),
    (((1, 3, 4), (1, 5, 3), (1, 5, 4)), ValueError, "k must have shape"),
    (((1, 3, 4), (1, 5, 4), (1, 4, 4)), ValueError, "v must have shape"),
    (((4,), (4,), (4,)), ValueError, "q must have shape"),
])
def test_bad_shapes(args, exc, match):
    q, k, v = (np.ones(s) for s in args)
    with pytest.raises(exc, match=match):
        attention(q, k, v)


def test_bad_values():
    a = np.ones((1, 2, 3))
    with pytest.raises(TypeError, match="q must be real"):
        attention(a + 1j, a, a)
    with pytest.raises(ValueError, match="non-finite"):
        attention(a, a * np.nan, a)
    with pytest.raises(ValueError, match="scale must be a finite"):
        attention(a, a, a, scale=float("inf"))
    with pytest.raises(TypeError, match="is_causal"):
        attention(a, a, a, is_causal="yes")
