"""Our attention (implementations/{numpy,torch}/attention.py) and the subjects of
tests/subjects/attention_subjects.py, judged against the oracle (oracle/attention.py) with the
tolerance of its error analysis: SAFETY u ((e + 6) score_spread + (6 n_i + 8) abs_pv) + output
rounding, u of the compute dtype (float32 for half inputs).  Also the KV cache (decode == prefill)
and the ``offset`` extension."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssm_conformance.implementations.numpy import attention as np_att
from ssm_conformance.implementations.torch import attention as t_att
from ssm_conformance.oracle.attention import attention as oracle, tolerance_terms
from ssm_conformance.properties.tolerance import attention_tol
from tests.subjects import attention_subjects as subj

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16,
          "float16": torch.float16}


def _inputs(seed, b=1, h=2, l=5, s=7, e=8, scale_q=1.0):
    rng = np.random.default_rng(seed)
    return (scale_q * rng.standard_normal((b, h, l, e)), rng.standard_normal((b, h, s, e)),
            rng.standard_normal((b, h, s, e)))


def judge(fn, q, k, v, dtype, is_causal=False, scale=None, p_dtype=None):
    """Round the inputs to ``dtype``, run ``fn`` on tensors, return max |error| / tolerance
    (NaN/Inf where the oracle is finite count as infinitely wrong)."""
    t = [torch.from_numpy(a).to(DTYPES[dtype]) for a in (q, k, v)]
    ref = oracle(*[x.double().numpy() for x in t], is_causal=is_causal, scale=scale)
    out = fn(*t, is_causal=is_causal, scale=scale)
    assert out.dtype == DTYPES[dtype] and tuple(out.shape) == ref.value.shape
    got = out.double().numpy()
    if not np.all(np.isfinite(got)):
        return math.inf
    return float(np.max(np.abs(got - ref.value) / attention_tol(ref, tolerance_terms(ref, p_dtype), dtype)))


CASES = [dict(l=5, s=7, is_causal=False), dict(l=5, s=7, is_causal=True), dict(l=7, s=3, is_causal=True),
         dict(l=6, s=6, is_causal=True, scale=0.05), dict(l=4, s=6, is_causal=True, scale_q=30.0)]


def _case(i, c):
    c = dict(c)
    q, k, v = _inputs(i, l=c.pop("l"), s=c.pop("s"), scale_q=c.pop("scale_q", 1.0))
    return q, k, v, c


# ----------------------------------------------------------------------------------------------
# ours against the oracle


@pytest.mark.parametrize("i", range(len(CASES)))
def test_numpy_against_oracle(i):
    q, k, v, kw = _case(i, CASES[i])
    ref = oracle(q, k, v, **kw)
    got = np_att.attention(q, k, v, **kw)
    assert got.dtype == np.float64
    assert np.all(np.abs(got - ref.value) <= attention_tol(ref, tolerance_terms(ref), "float64"))
    # float32 in, float32 out, judged at u = 2^-24 on the rounded inputs
    q32, k32, v32 = (a.astype(np.float32) for a in (q, k, v))
    ref32 = oracle(q32.astype(np.float64), k32.astype(np.float64), v32.astype(np.float64), **kw)
    got32 = np_att.attention(q32, k32, v32, **kw)
    assert got32.dtype == np.float32
    assert np.all(np.abs(got32 - ref32.value) <= attention_tol(ref32, tolerance_terms(ref32), "float32"))


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16", "float16"])
@pytest.mark.parametrize("i", range(len(CASES)))
def test_torch_against_oracle(i, dtype):
    q, k, v, kw = _case(i, CASES[i])
    assert judge(t_att.attention, q, k, v, dtype, **kw) <= 1


def test_numpy_equals_torch_float64():
    """Both are accurate float64 algorithms: each within tol of the oracle, so within 2 tol of
    each other."""
    q, k, v = _inputs(9, b=2, h=3, l=6, s=8, e=5)
    ref = oracle(q, k, v, is_causal=True)
    tol = attention_tol(ref, tolerance_terms(ref), "float64")
    a = np_att.attention(q, k, v, is_causal=True)
    b = t_att.attention(*map(torch.from_numpy, (q, k, v)), is_causal=True).numpy()
    assert np.all(np.abs(a - b) <= 2 * tol)


def test_query_blocks_do_not_change_the_result(monkeypatch):
    """Blocks of 2 query rows (matrix products of other shapes: BLAS may round differently) are
    within the oracle's tolerance like the one-block result."""
    q, k, v = _inputs(10, l=9, s=9)
    ref = oracle(q, k, v, is_causal=True)
    tol = attention_tol(ref, tolerance_terms(ref), "float64")
    monkeypatch.setattr(np_att, "QUERY_BLOCK", 2)
    monkeypatch.setattr(t_att, "QUERY_BLOCK", 2)
    assert np.all(np.abs(np_att.attention(q, k, v, is_causal=True) - ref.value) <= tol)
    got = t_att.attention(*map(torch.from_numpy, (q, k, v)), is_causal=True).numpy()
    assert np.all(np.abs(got - ref.value) <= tol)


def test_large_logits_do_not_overflow():
    """Scores of order 1e4 (float32 exp overflows at 88.7): max subtraction keeps them finite."""
    q, k, v = _inputs(12, l=4, s=5, e=4, scale_q=1e4)
    for dtype in ("float32", "float64"):
        assert judge(t_att.attention, q, k, v, dtype, is_causal=True) <= 1
    got = np_att.attention(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32))
    assert np.all(np.isfinite(got))


def test_gradcheck_torch():
    q, k, v = (torch.from_numpy(a).requires_grad_() for a in _inputs(13, l=3, s=4, e=3))
    assert torch.autograd.gradcheck(lambda a, b, c: t_att.attention(a, b, c, is_causal=True), (q, k, v))


# ----------------------------------------------------------------------------------------------
# offset (bottom-right alignment) and the KV cache


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_offset_is_bottom_right_mask(impl):
    """offset = s - l keeps j <= i + s - l: equal to SDPA with an explicit bottom-right mask."""
    q, k, v = _inputs(14, l=3, s=7)
    mask = torch.ones(3, 7, dtype=torch.bool).tril(diagonal=4)
    want = F.scaled_dot_product_attention(*map(torch.from_numpy, (q, k, v)), attn_mask=mask).numpy()
    if impl == "numpy":
        got = np_att.attention(q, k, v, is_causal=True, offset=4)
    else:
        got = t_att.attention(*map(torch.from_numpy, (q, k, v)), is_causal=True, offset=4).numpy()
    ref = oracle(q, k, v)   # magnitudes of a full row bound these rows' errors too (more keys, n = s)
    assert np.all(np.abs(got - want) <= 2 * attention_tol(ref, tolerance_terms(ref), "float64"))


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_kv_cache_decode_equals_prefill(impl):
    """Append one token at a time (capacity 1: the buffer grows), attend the newest query to all
    cached keys; then a chunk of 3 at once: every row equals causal attention over the whole
    sequence, within the oracle's tolerance."""
    q, k, v = _inputs(15, b=2, h=2, l=9, s=9, e=4)
    ref = oracle(q, k, v, is_causal=True)
    tol = attention_tol(ref, tolerance_terms(ref), "float64")
    mod = np_att if impl == "numpy" else t_att
    conv = (lambda a: a) if impl == "numpy" else torch.from_numpy
    kw = {} if impl == "numpy" else {"dtype": torch.float64}
    cache = mod.KVCache(2, 2, 4, capacity=1, **kw)
    rows = []
    for t in range(6):
        cache.append(conv(k[:, :, t:t + 1]), conv(v[:, :, t:t + 1]))
        rows.append(mod.attend_cached(conv(q[:, :, t:t + 1]), cache))
    cache.append(conv(k[:, :, 6:]), conv(v[:, :, 6:]))
    rows.append(mod.attend_cached(conv(q[:, :, 6:]), cache))
    got = np.concatenate([np.asarray(r) for r in rows], axis=2)
    assert cache.length == 9
    assert np.all(np.abs(got - ref.value) <= tol)


def test_kv_cache_checks_shapes():
    cache = np_att.KVCache(1, 2, 4)
    with pytest.raises(ValueError, match="k must have shape"):
        cache.append(np.zeros((1, 3, 1, 4)), np.zeros((1, 3, 1, 4)))
    with pytest.raises(ValueError, match="v must have shape"):
        cache.append(np.zeros((1, 2, 1, 4)), np.zeros((1, 2, 2, 4)))
    with pytest.raises(ValueError, match="t <= cache length"):
        np_att.attend_cached(np.zeros((1, 2, 1, 4)), cache)
    tc = t_att.KVCache(1, 2, 4)
    with pytest.raises(ValueError, match="k must have shape"):
        tc.append(torch.zeros(1, 2, 1, 5), torch.zeros(1, 2, 1, 5))


# ----------------------------------------------------------------------------------------------
# input checking


def test_bad_inputs():
    a = np.ones((1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"k must have shape \(\.\.\., s, e\)"):
        np_att.attention(a, np.ones((1, 2, 3, 5)), a)
    with pytest.raises(ValueError, match="v must have shape"):
        np_att.attention(a, a, np.ones((1, 2, 4, 4)))
    with pytest.raises(TypeError, match="q must be a real"):
        np_att.attention(a.astype(complex), a, a)
    t = torch.ones(1, 2, 3, 4)
    with pytest.raises(TypeError, match="one dtype"):
        t_att.attention(t, t.double(), t)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        t_att.attention(a, t, t)
    with pytest.raises(ValueError, match="q must have shape"):
        t_att.attention(torch.ones(4), torch.ones(4), torch.ones(4))
    with pytest.raises(ValueError, match="k must have shape"):
        t_att.attention(t, torch.ones(1, 2, 3, 5), t)


# ----------------------------------------------------------------------------------------------
# the subjects


SUBJECT_INPUTS = [
    dict(l=5, s=5, is_causal=False), dict(l=5, s=5, is_causal=True), dict(l=3, s=6, is_causal=True),
    dict(l=6, s=3, is_causal=True), dict(l=4, s=5, is_causal=True, scale=0.3),
    dict(l=4, s=4, is_causal=False, scale_q=40.0),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(subj.CORRECT))
def test_correct_subjects_pass(name, dtype):
    for i, c in enumerate(SUBJECT_INPUTS):
        q, k, v, kw = _case(100 + i, c)
        assert judge(subj.CORRECT[name], q, k, v, dtype, **kw) <= 1, (name, c)


# The input that exposes each mistake (module doc of the subjects).
EXPOSING = {
    "causal_diag_minus1": dict(l=4, s=4, is_causal=True),
    "causal_diag_plus1": dict(l=4, s=4, is_causal=True),
    "scale_1_over_e": dict(l=4, s=4, is_causal=False),
    "unstabilized": dict(l=4, s=4, is_causal=False, scale_q=200.0),    # logits ~ 300 > 88.7
    "bottom_right": dict(l=3, s=6, is_causal=True),
    "softmax_wrong_axis": dict(l=4, s=4, is_causal=False),
}


@pytest.mark.parametrize("name", sorted(subj.WRONG))
def test_wrong_subjects_fail(name):
    q, k, v, kw = _case(200, EXPOSING[name])
    assert judge(subj.WRONG[name], q, k, v, "float32", **kw) > 10, name
    # the same input is passed by every correct subject
    for good in subj.CORRECT.values():
        assert judge(good, q, k, v, "float32", **kw) <= 1


def test_wrong_subjects_are_correct_elsewhere():
    """Each mistake hides where its feature is off (so the suite must switch the feature on):
    the mask bugs without is_causal, bottom-right with l == s, unstabilized at small logits."""
    q, k, v, _ = _case(300, dict(l=4, s=4))
    for name in ("causal_diag_minus1", "causal_diag_plus1", "bottom_right"):
        assert judge(subj.WRONG[name], q, k, v, "float32", is_causal=False) <= 1
    assert judge(subj.WRONG["bottom_right"], q, k, v, "float32", is_causal=True) <= 1
    assert judge(subj.WRONG["unstabilized"], q, k, v, "float32", is_causal=True) <= 1
    assert judge(subj.WRONG["scale_1_over_e"], q, k, v, "float32", scale=0.25) <= 1


def test_half_precision_subjects():
    """Half inputs are judged with float32 arithmetic inside.  Ours (float32 inside) passes; the
    naive subject, which computes in the half dtype itself, does not.  torch's SDPA passes with
    its math backend; its default CPU kernel rounds P to the input dtype before P.V, which the
    extra term of tolerance_terms(p_dtype=...) admits (docs/hybrid.md gives the measured ratios)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q, k, v = _inputs(400, l=6, s=9, e=8)
    for dtype in ("bfloat16", "float16"):
        assert judge(subj.ours, q, k, v, dtype, is_causal=True) <= 1
        assert judge(subj.naive, q, k, v, dtype, is_causal=True) > 1
        with sdpa_kernel([SDPBackend.MATH]):
            assert judge(subj.sdpa, q, k, v, dtype, is_causal=True) <= 1
        assert judge(subj.sdpa, q, k, v, dtype, is_causal=True, p_dtype=dtype) <= 1
