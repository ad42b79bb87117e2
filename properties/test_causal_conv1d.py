"""``causal_conv1d`` (causal-conv1d's ``causal_conv1d_fn``) against the exact oracle
(oracle/causal_conv1d.py: the pre-activation summed exactly, SiLU in multiple precision), forward
and, with --ssm-grad, backward; and the structural properties of a causal depthwise convolution.
Bound (properties/tolerance.py, causal_conv1d_tol): SAFETY u (w + 1) abs_out + rounding, abs_out
= sum |weight||x| + |bias| (through SiLU: |SiLU'(s)| abs_pre + |SiLU(s)|); with SiLU, also the
whole value where s < -88.7 (float32), where every exp-based SiLU (torch's, causal-conv1d's
kernel) returns 0 for a value below 2.6e-37 (tolerance.silu_flushed).

- matches_oracle, vjp_matches_oracle (x, weight, bias).
- causal: changing x at t >= k leaves out[..., :k] unchanged up to twice its tolerance
  (tolerance.pair_tol: each call is within its tolerance of the same exact value).
- batch_independent: one batch element alone and within the batch agree up to twice its
  tolerance.
- non_contiguous: x stored channel-last ((b, l, d) memory order, as Mamba's in_proj output leaves
  it; causal_conv1d_fn takes it when d is a multiple of 8) or with channels outermost, and weight
  stored transposed, still match the oracle.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given

from ssm_conformance.oracle import causal_conv1d as oracle_conv
from ssm_conformance.properties import tolerance as tm
from ssm_conformance.properties.harness import (Output, oracle, skip_unless_grad,
                                                skip_unless_non_contiguous)
from ssm_conformance.oracle import long_conv1d
from ssm_conformance.properties.strategies.conv1d import (
    MAX_LENGTH, conv1d_cases, drawn_long_conv1d_cases, long_conv1d_cases, redraw_future,
)
from ssm_conformance.properties.strategies.long_sequences import sometimes_long
from ssm_conformance.properties.strategies.ssd import strided, use_layout


def _out(sut, case, raw):
    (y,) = sut.outputs(raw, [Output("out", case.x.shape)])
    return y


def _long(case):
    """Beyond the drawn lengths: the long tier (oracle/long_conv1d.py) judges."""
    return case.length > MAX_LENGTH


def _with_long_cases(test):
    """Every profile judges the explicit long cases first (strategies.conv1d.long_conv1d_cases)."""
    for case in reversed(long_conv1d_cases()):
        test = example(case=case)(test)
    return test


def _ref(sut, case):
    e = sut.exact(case)
    if _long(case):
        return oracle(long_conv1d.causal_conv1d_long, e["x"], e["weight"], e["bias"],
                      case.activation, subject_dtype=sut.dtype)
    return oracle(oracle_conv.causal_conv1d, e["x"], e["weight"], e["bias"], case.activation)


def _pre(sut, case):
    """The exact pre-activation (bias + sum of weight x), rounded to float64."""
    e = sut.exact(case)
    if _long(case):
        return oracle(long_conv1d.causal_conv1d_long, e["x"], e["weight"], e["bias"], None,
                      subject_dtype=sut.dtype).value
    return oracle(oracle_conv.causal_conv1d, e["x"], e["weight"], e["bias"], None).value


def _tol(sut, case, ref):
    pre = _pre(sut, case) if case.activation else None
    return lambda d: tm.causal_conv1d_tol(ref, pre, case.activation, d)


def _judge_pair(sut, case, name, out_a, out_b, ref, index=...):
    """|out_a - out_b| <= 2 tol for two results that are exactly the same number; a NaN/Inf
    where the oracle is finite fails as such first."""
    tol = _tol(sut, case, ref)   # |out_a - out_b| <= tol_a + tol_b (tolerance.pair_tol), here 2 tol
    sut.judge_pair(case, name, out_a, out_b, np.asarray(ref.value)[index],
                   lambda d: 2.0 * tol(d)[index])


@pytest.mark.ssm_role("causal_conv1d", property="matches_oracle")
@given(case=sometimes_long(conv1d_cases(), drawn_long_conv1d_cases()))
@_with_long_cases
def test_causal_conv1d_matches_oracle(sut, case):
    y = _out(sut, case, sut.call(case))
    ref = _ref(sut, case)
    sut.judge(case, [("out", y, ref, _tol(sut, case, ref))])


@pytest.mark.ssm_role("causal_conv1d", property="vjp_matches_oracle")
@given(case=sometimes_long(conv1d_cases(max_cost=4096), drawn_long_conv1d_cases()))
@_with_long_cases
def test_causal_conv1d_vjp_matches_oracle(sut, case):
    names = ["x", "weight"] + (["bias"] if case.bias is not None else [])
    skip_unless_grad(sut, case, wrt=names, cotangent=case.cotangent)
    cot = sut.rounded(case.cotangent)
    _, grads = sut.call_vjp(case, names, cot)
    e = sut.exact(case)
    if _long(case):
        refs = oracle(long_conv1d.causal_conv1d_vjp_long, cot, e["x"], e["weight"], e["bias"],
                      case.activation, subject_dtype=sut.dtype)
    else:
        refs = oracle(oracle_conv.causal_conv1d_vjp, cot, e["x"], e["weight"], e["bias"],
                      case.activation)
    pre = _pre(sut, case) if case.activation else None
    checks = []
    for name in names:
        fd = "float32" if name in case.fp32 else None
        (g,) = sut.outputs(grads[name], [Output(f"grad_{name}", e[name].shape, dtype=fd)])
        bound = (lambda d, name=name: tm.causal_conv1d_vjp_tol(
            refs[name], name, pre, cot, e["x"], e["weight"], case.activation, d))
        checks.append((f"grad_{name}", g, refs[name], bound) + ((fd,) if fd else ()))
    sut.judge(case, checks)


@pytest.mark.ssm_role("causal_conv1d", property="causal")
@given(case=conv1d_cases(min_length=2))
def test_causal_conv1d_causal(sut, case):
    k = case.split
    changed = redraw_future(case)
    y_a = _out(sut, case, sut.call(case))
    y_b = _out(sut, changed, sut.call(changed))
    ref = _ref(sut, case)   # out[..., :k] and its magnitudes depend on x before k only
    _judge_pair(sut, case, f"out[..., :{k}]", y_a[..., :k], y_b[..., :k], ref,
                index=(Ellipsis, slice(0, k)))


@pytest.mark.ssm_role("causal_conv1d", property="batch_independent")
@given(case=conv1d_cases(min_batch=2))
def test_causal_conv1d_batch_independent(sut, case):
    i = case.split % case.x.shape[0]
    alone = case.batch_element(i)
    y = _out(sut, case, sut.call(case))
    y1 = _out(sut, alone, sut.call(alone))
    _judge_pair(sut, alone, f"out[{i}]", y[i:i + 1], y1, _ref(sut, alone))


def _layout(case):
    """x channel-last ((b, l, d) memory order, as Mamba's in_proj output leaves it) when d is a
    multiple of 8 -- causal_conv1d_fn's CUDA kernel takes channel-last x only then, and raises
    otherwise --, else channels outermost ((d, b, l) memory order, rows of x still contiguous);
    weight stored transposed (the kernel reads it through its strides)."""
    d = case.x.shape[1]
    perm, name = ((0, 2, 1), "x channel-last") if d % 8 == 0 else ((1, 0, 2), "x channels outermost")

    def transform(t):
        return strided(t, perm) if getattr(t, "dim", lambda: 0)() == 3 else strided(t)
    return f"{name}, weight transposed", transform


@pytest.mark.ssm_role("causal_conv1d", property="non_contiguous")
@given(case=conv1d_cases())
def test_causal_conv1d_non_contiguous(sut, case):
    skip_unless_non_contiguous()
    use_layout(sut, case, *_layout(case))
    y = _out(sut, case, sut.call(case))
    ref = _ref(sut, case)
    sut.judge(case, [("out", y, ref, _tol(sut, case, ref))])
