"""``ssd`` (Mamba-2 SSD, semantics of mamba-ssm's ``mamba_chunk_scan_combined``) against the
multiple-precision oracle (oracle/ssd.py), forward and, with --ssm-grad, backward; and the
structural properties every correct kernel has, each judged with a bound derived from the same
tolerance model (properties/tolerance.py, "SSD and causal conv1d"):

- matches_oracle: out (and final states) within SAFETY u (depth abs_out + exp_cond) + rounding.
- vjp_matches_oracle: gradients of sum(cotangent * out) w.r.t. every differentiable input.
- chunk_size_invariant: two chunk sizes give the same map; each result is within its own
  tolerance of the exact one, so they differ by at most the sum of the two (tolerance.pair_tol).
- causal: changing the inputs at t >= k leaves out[:k] unchanged up to twice its tolerance.
- batch_independent: a batch element computed alone and within a batch agree up to twice its
  tolerance.
- state_carry: the final state after x[:k] (judged against the oracle), fed back as
  initial_states, continues the sequence: out of x[k:] from that state is judged against the
  oracle of x[k:] started from the state exactly as the subject receives it, i.e. against
  out(x) [k:] plus the propagated error of the carried state (see test_ssd_state_carry).
- non_contiguous: the same inputs in dense, non-contiguous layouts (axes stored in reverse
  order) still match the oracle.

Final states may come back in the dtype under test (mamba-ssm: C.dtype) or, for half dtypes, in
float32 (the accumulation dtype); they are judged with the rounding of the dtype they have.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import example, given

from ssm_conformance.oracle import long_ssd
from ssm_conformance.oracle import ssd as oracle_ssd
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.properties import tolerance as tm
from ssm_conformance.properties.harness import Output, oracle, skip_unless_grad, skip_unless_non_contiguous
from ssm_conformance.properties.options import enabled
from ssm_conformance.properties.strategies.ssd import (
    MAX_LENGTH, drawn_long_ssd_cases, long_ssd_cases, redraw_future, ssd_cases, use_layout,
)
from ssm_conformance.properties.strategies.long_sequences import sometimes_long

HALF = ("bfloat16", "float16")
SSD_LONG_ONE_IN = 32


# --- helpers -------------------------------------------------------------------------------------

def _final_dtype(sut, raw):
    """Output dtype of the final states: float32 accepted besides the dtype under test when that
    is a half dtype (accumulation dtype); anything else is left to sut.outputs to reject."""
    if sut.dtype in HALF and isinstance(raw, (tuple, list)) and len(raw) == 2:
        import torch
        if isinstance(raw[1], torch.Tensor) and raw[1].dtype == torch.float32:
            return "float32"
    return None


def _outputs(sut, case, raw):
    """(y, final_states or None, final_states dtype or None) as float64 arrays."""
    b, l, h, p, g, n = case.dims
    if not case.return_final_states:
        (y,) = sut.outputs(raw, [Output("y", (b, l, h, p))])
        return y, None, None
    fd = _final_dtype(sut, raw)
    y, final = sut.outputs(raw, [Output("y", (b, l, h, p)),
                                 Output("final_states", (b, h, p, n), dtype=fd)])
    return y, final, fd


def _oracle_args(exact, case):
    return ((exact["x"], exact["dt"], exact["A"], exact["B"], exact["C"], case.chunk_size),
            dict(D=exact["D"], z=exact["z"], dt_bias=exact["dt_bias"],
                 initial_states=exact["initial_states"], dt_softplus=case.dt_softplus))


def _long(case):
    """Beyond the drawn lengths: the long tier (oracle/long_ssd.py) judges."""
    return case.length > MAX_LENGTH


def _with_long_cases(test, vjp=False):
    """Every profile judges the explicit long cases first (strategies.ssd.long_ssd_cases)."""
    for case in reversed(long_ssd_cases(vjp)):
        test = example(case=case)(test)
    return test


def _refs(sut, case):
    """(Reference out, Reference final_states or None) on the inputs as the subject got them."""
    args, kw = _oracle_args(sut.exact(case), case)
    if _long(case):
        ref = oracle(long_ssd.ssd_long, *args, return_final_states=case.return_final_states,
                     subject_dtype=sut.dtype, **kw)
        return ref if case.return_final_states else (ref, None)
    if case.return_final_states:
        return oracle(oracle_ssd.ssd, *args, return_final_states=True, **kw)
    return oracle(oracle_ssd.ssd, *args, **kw), None


def _checks(y, final, fd, ref_y, ref_final, prefix=""):
    checks = [(prefix + "y", y, ref_y, tm.ssd_terms(ref_y))]
    if final is not None:
        check = (prefix + "final_states", final, ref_final, tm.ssd_terms(ref_final))
        checks.append(check + ((fd,) if fd else ()))
    return checks


def _judge_against_oracle(sut, case):
    y, final, fd = _outputs(sut, case, sut.call(case))
    ref_y, ref_final = _refs(sut, case)
    sut.judge(case, _checks(y, final, fd, ref_y, ref_final))


def _judge_pair(sut, case, name, out_a, out_b, ref, terms, fd=None, index=...):
    """out_a against out_b, two results that are exactly the same number:
    |out_a - out_b| <= 2 tol (tolerance.pair_tol with ref_a = ref_b = ref), at ``index``."""
    sut.judge_pair(case, name, out_a, out_b, np.asarray(ref.value)[index],
                   lambda d: tm.pair_tol(ref, terms, ref, terms, d)[index], fd)


# --- properties ----------------------------------------------------------------------------------

@pytest.mark.ssm_role("ssd", property="matches_oracle")
# one drawn example in 32 is long (SSD_LONG_ONE_IN: the SSD tier is the costliest; CI budget)
@given(case=sometimes_long(ssd_cases(max_cost=4096), drawn_long_ssd_cases(), SSD_LONG_ONE_IN))
@_with_long_cases
def test_ssd_matches_oracle(sut, case):
    _judge_against_oracle(sut, case)


@pytest.mark.ssm_role("ssd", property="vjp_matches_oracle")
@given(case=sometimes_long(ssd_cases(max_cost=2048), drawn_long_ssd_cases(), SSD_LONG_ONE_IN))
@lambda test: _with_long_cases(test, vjp=True)
def test_ssd_vjp_matches_oracle(sut, case):
    names = ["x", "dt", "A", "B", "C"] + [k for k in ("D", "z", "dt_bias", "initial_states")
                                         if getattr(case, k) is not None]
    skip_unless_grad(sut, case, wrt=names, cotangent=case.cotangent)
    exact = sut.exact(case)
    cot = sut.rounded(case.cotangent)
    _, grads = sut.call_vjp(case, names, cot)
    args, kw = _oracle_args(exact, case)
    if _long(case):
        refs = oracle(long_ssd.ssd_vjp_long, cot, *args, subject_dtype=sut.dtype, **kw)
    else:
        refs = oracle(oracle_ssd.ssd_vjp, cot, *args, **kw)
    checks = []
    for name in names:
        fd = "float32" if name in case.fp32 else None
        (g,) = sut.outputs(grads[name], [Output(f"grad_{name}", exact[name].shape, dtype=fd)])
        check = (f"grad_{name}", g, refs[name], tm.ssd_terms(refs[name]))
        checks.append(check + ((fd,) if fd else ()))
    sut.judge(case, checks)


@pytest.mark.ssm_role("ssd", property="chunk_size_invariant")
@given(case=ssd_cases(max_cost=1024))
def test_ssd_chunk_size_invariant(sut, case):
    other = replace(case, chunk_size=case.other_chunk_size)
    y_a, final_a, fd = _outputs(sut, case, sut.call(case))
    y_b, final_b, _ = _outputs(sut, other, sut.call(other))
    ref_a, refs_a = _refs(sut, case)
    ref_b, refs_b = _refs(sut, other)
    # |y_a - y_b| <= tol(chunk a) + tol(chunk b): the exp_cond of each chunk size differs
    checks = []
    for name, a, b, ra, rb, dtype in (("y", y_a, y_b, ref_a, ref_b, None),
                                      ("final_states", final_a, final_b, refs_a, refs_b, fd)):
        if a is None:
            continue
        sut.judge_finite(case, f"{name} (chunk_size {case.chunk_size})", a, ra.value, dtype)
        sut.judge_finite(other, f"{name} (chunk_size {other.chunk_size})", b, ra.value, dtype)
        bound = (lambda d, ra=ra, rb=rb:
                 tm.pair_tol(ra, tm.ssd_terms(ra), rb, tm.ssd_terms(rb), d))
        checks.append((name, a, Reference(b, 0.0, {}), bound) + ((dtype,) if dtype else ()))
    sut.judge(case, checks)


@pytest.mark.ssm_role("ssd", property="causal")
@given(case=ssd_cases(max_cost=1024, min_length=2))
def test_ssd_causal(sut, case):
    k = case.split
    changed = redraw_future(case)
    y_a, _, _ = _outputs(sut, case, sut.call(case))
    y_b, _, _ = _outputs(sut, changed, sut.call(changed))
    ref, _ = _refs(sut, case)   # out[:k] and its magnitudes depend on the inputs before k only
    _judge_pair(sut, case, f"y[:, :{k}]", y_a[:, :k], y_b[:, :k], ref, tm.ssd_terms(ref),
                index=(slice(None), slice(0, k)))


@pytest.mark.ssm_role("ssd", property="batch_independent")
@given(case=ssd_cases(max_cost=2048, min_batch=2))
def test_ssd_batch_independent(sut, case):
    i = case.split % case.x.shape[0]
    alone = case.batch_element(i)
    y, final, fd = _outputs(sut, case, sut.call(case))
    y1, final1, _ = _outputs(sut, alone, sut.call(alone))
    ref, ref_final = _refs(sut, alone)
    _judge_pair(sut, alone, f"y[{i}]", y[i:i + 1], y1, ref, tm.ssd_terms(ref))
    if final is not None:
        _judge_pair(sut, alone, f"final_states[{i}]", final[i:i + 1], final1, ref_final,
                    tm.ssd_terms(ref_final), fd)


@pytest.mark.ssm_role("ssd", property="state_carry")
@given(case=ssd_cases(max_cost=2048, min_length=2))
def test_ssd_state_carry(sut, case):
    """Prefill in two calls. (1) x[:k] from case.initial_states, final state S1 returned: judged
    against the oracle's. (2) x[k:] from initial_states = S1 as returned: out judged against the
    oracle of x[k:] started from S1 exactly as the subject receives it (rounded to the dtype
    under test). Since oracle(x)[k:] = oracle(x[k:], S1_exact), this is out(x)[k:] with the
    exact propagation of S1's (already judged) error added, not a looser bound."""
    if not (enabled("initial_states") and enabled("final_states")):
        pytest.skip("state_carry needs the features initial_states and final_states")
    k = case.split
    first = case.with_time(0, k, return_final_states=True)
    first.features = case.features | {"final_states"}
    y1, S1, fd = _outputs(sut, first, sut.call(first))
    ref_y1, ref_S1 = _refs(sut, first)
    sut.judge(first, _checks(y1, S1, fd, ref_y1, ref_S1, prefix="first call: "))
    second = case.with_time(k, case.x.shape[1], initial_states=S1)
    second.features = case.features | {"initial_states"}
    y2, final2, fd2 = _outputs(sut, second, sut.call(second))
    ref_y2, ref_final2 = _refs(sut, second)
    sut.judge(second, _checks(y2, final2, fd2, ref_y2, ref_final2, prefix="second call: "))


@pytest.mark.ssm_role("ssd", property="non_contiguous")
@given(case=ssd_cases(max_cost=2048))
def test_ssd_non_contiguous(sut, case):
    skip_unless_non_contiguous()
    use_layout(sut, case, "axes stored in reverse order")
    _judge_against_oracle(sut, case)
