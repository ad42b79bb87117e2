"""``selective_state_update`` (one Mamba decode step, semantics of mamba-ssm's
``selective_state_update_ref``) against the multiple-precision oracle (oracle/selective_scan.py).
Bounds: properties/tolerance.py, "Mamba selective scan"; inputs: properties/strategies/selective.py.

- matches_oracle: out (b, d) and the new state, read from ``state`` after the call (the role
  updates it in place), within the tolerance. A subject that leaves ``state`` unchanged fails
  as "inaccurate", with a message saying the state was not updated in place.
- decode_equals_scan: l decode steps from a zero state, each fed the state the previous step
  left, give the selective scan's output and last state (oracle_ss.selective_scan on the same
  inputs with variable B, C (b, n, l): step t's B, C are the scan's B[..., t], C[..., t]; dt_bias
  is the scan's delta_bias, dt_softplus its delta_softplus; D and z alike). Judged with the
  scan's tolerance: l steps form the same products as the scan's loop (3 roundings a step on
  every term's path, n + 8 for the output), so the scan's path-weighted bound covers the chain
  (docs/bounds.md). The state between steps is float32 for half
  dtypes (mamba-ssm keeps the decode cache in float32 or the model dtype; a half cache rounds
  the state every step, an error the scan's bound does not contain).

The state's dtype: the dtype under test in matches_oracle (rounded on input, written back in
it), so ``out`` must be formed from the new state before it is rounded to a half dtype, as
mamba-ssm's Triton kernel does.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from ssm_conformance.oracle import long_scan
from ssm_conformance.oracle import selective_scan as oracle_ss
from ssm_conformance.properties import tolerance as tm
from ssm_conformance.properties.harness import Output, oracle
from ssm_conformance.properties.strategies.long_sequences import decode_lengths, with_explicit
from ssm_conformance.properties.strategies.selective import (decode_case_from_seed, decode_cases,
                                                            explicit_decode, state_update_cases)
from ssm_conformance.properties.subjects import SubjectFailure

HALF = ("bfloat16", "float16")


def _step_outputs(sut, case, raw, state_dtype=None):
    """(out (b, d), new state (b, d, n)) as float64 arrays; the new state read from ``state``."""
    b, d, n = case.state.shape
    (out,) = sut.outputs(raw, [Output("out", (b, d))])
    (new,) = sut.outputs(sut.mutated["state"], [Output("state", (b, d, n), dtype=state_dtype)])
    return out, new


@pytest.mark.ssm_role("selective_state_update", property="matches_oracle")
@given(case=state_update_cases())
def test_state_update_matches_oracle(sut, case):
    out, new = _step_outputs(sut, case, sut.call(case))
    exact = sut.exact(case)
    ref_out, ref_state = oracle(oracle_ss.selective_state_update, **exact)
    checks = [("out", out, ref_out, tm.selective_scan_terms(ref_out)),
              ("state (after the call)", new, ref_state, tm.selective_scan_terms(ref_state))]
    try:
        sut.judge(case, checks)
    except SubjectFailure as failure:
        if np.array_equal(new, exact["state"]):
            raise SubjectFailure(failure.kind, "did not update `state` in place (it is unchanged "
                                 "after the call; the role must write the new state into it)\n"
                                 + failure.message) from None
        raise


SHORT_DECODE = 48  # the drawn decode sequences: every step a checked call (SubjectUnderTest.call)


@pytest.mark.ssm_role("selective_state_update", property="decode_equals_scan")
@with_explicit(decode_case_from_seed, explicit_decode(decode_lengths()))
@given(case=decode_cases(max_steps=SHORT_DECODE))
def test_state_update_decode_equals_scan(sut, case):
    b, d, l = case.x.shape
    half = sut.dtype in HALF
    state_dtype = "float32" if half else None
    if l > SHORT_DECODE:  # long decode sequences: the long tier's l steps from a zero state
        outs, state, seq, first = _long_decode(sut, case, half)
        ref_out, ref_last = long_scan.selective_state_update_sequence(
            first["state"], seq["x"], seq["dt"], first["A"], seq["B"], seq["C"], first["D"],
            seq["z"], first["dt_bias"], case.dt_softplus, subject_dtype=sut.dtype)
    else:
        outs, state, seq, first = _checked_decode(sut, case, half)
        ref_out, ref_last = oracle(oracle_ss.selective_scan, seq["x"], seq["dt"], first["A"],
                                   seq["B"], seq["C"], first["D"], seq["z"], first["dt_bias"],
                                   case.dt_softplus, return_last_state=True)
    sut.judge(case, [
        (f"out of steps 0..{l - 1} (vs. the scan's out)", outs, ref_out,
         tm.selective_scan_terms(ref_out)),
        (f"state after {l} steps (vs. the scan's last state)", state, ref_last,
         tm.selective_scan_terms(ref_last)) + ((state_dtype,) if state_dtype else ())])


def _checked_decode(sut, case, half):
    """Each step a checked call (hang, determinism, inputs unchanged), fed the state the previous
    step left; returns (out (b, d, l), last state, the scan's sequences, step 0's arguments), all
    float64, as the steps received them."""
    state_dtype = "float32" if half else None
    state, outs, steps = case.state, [], []
    for t in range(case.length):
        step = case.step(t, state, fp32_state=half)
        out, state = _step_outputs(sut, step, sut.call(step), state_dtype)
        outs.append(out)
        steps.append(sut.exact(step))
    seq = {k: np.stack([s[k] for s in steps], axis=-1) for k in ("x", "dt", "B", "C")}
    seq["z"] = None if case.z is None else np.stack([s["z"] for s in steps], axis=-1)
    return np.stack(outs, axis=-1), state, seq, steps[0]


def _long_decode(sut, case, half):
    """A long decode sequence (up to 2^17 steps) as a model's decode loop runs it: one cache
    tensor, zero at first, updated in place by every step, the step's inputs contiguous (b, d)
    and (b, n) slices of step-major tensors, all l calls in one worker thread
    (SubjectUnderTest.call_steps: hang per step, inputs unchanged). Step 0 is first made through
    the checked call, which also checks determinism. Returns what _checked_decode does."""
    import torch
    b, d, l = case.x.shape
    n = case.state.shape[-1]
    args = sut.inputs(case)   # x, dt, z (b, d, l), B, C (b, n, l) in the dtype under test
    cache_dtype = torch.float32 if half else getattr(torch, sut.dtype)
    state = torch.zeros(b, d, n, dtype=cache_dtype, device=sut.device)
    sut.call(case.step(0, np.zeros((b, d, n)), fp32_state=half))  # determinism, warm-up
    per_step = {k: None if args[k] is None else args[k].permute(2, 0, 1).contiguous()
                for k in ("x", "dt", "B", "C", "z")}  # (l, b, .): step t is per_step[k][t]
    fixed = {k: args[k] for k in ("A", "D", "dt_bias")}
    steps = [dict(state=state, x=per_step["x"][t], dt=per_step["dt"][t], A=fixed["A"],
                  B=per_step["B"][t], C=per_step["C"][t], D=fixed["D"],
                  z=None if per_step["z"] is None else per_step["z"][t],
                  dt_bias=fixed["dt_bias"], dt_softplus=case.dt_softplus) for t in range(l)]
    watched = {k: v for k, v in {**per_step, **fixed}.items() if v is not None}
    raw = sut.call_steps(case, steps, watched)
    (out0,) = sut.outputs(raw[0], [Output("out", (b, d))])
    bad = next((t for t, o in enumerate(raw) if not isinstance(o, torch.Tensor)
                or o.shape != raw[0].shape or o.dtype != raw[0].dtype
                or o.device != raw[0].device), None)
    if bad is not None:  # the first step whose output differs in kind fails with its own message
        sut.outputs(raw[bad], [Output(f"out of step {bad}", (b, d))])
    (outs,) = sut.outputs(torch.stack(raw, dim=-1), [Output("out", (b, d, l))])
    (last,) = sut.outputs(state, [Output("state", (b, d, n),
                                         dtype="float32" if half else None)])
    exact = sut.exact(case)
    seq = {k: exact[k] for k in ("x", "dt", "B", "C", "z")}
    first = dict(exact, state=np.zeros((b, d, n)))
    return outs, last, seq, first
