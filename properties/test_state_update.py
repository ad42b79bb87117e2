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
  scan's tolerance: l steps form the same products as the scan (depth 3 per step, n + 8 for the
  output), so the scan's bound covers the chain. The state between steps is float32 for half
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


@pytest.mark.ssm_role("selective_state_update", property="decode_equals_scan")
@with_explicit(decode_case_from_seed, explicit_decode(decode_lengths()))
@given(case=decode_cases())
def test_state_update_decode_equals_scan(sut, case):
    b, d, l = case.x.shape
    half = sut.dtype in HALF
    state_dtype = "float32" if half else None
    state = case.state
    outs, steps = [], []
    for t in range(l):
        step = case.step(t, state, fp32_state=half)
        out, state = _step_outputs(sut, step, sut.call(step), state_dtype)
        outs.append(out)
        steps.append(sut.exact(step))
    # the scan on exactly the values the steps received
    seq = {k: np.stack([s[k] for s in steps], axis=-1) for k in ("x", "dt", "B", "C")}
    z = None if case.z is None else np.stack([s["z"] for s in steps], axis=-1)
    first = steps[0]
    if l > 48:  # long decode sequences: the long tier's l steps from the state of step 0
        ref_out, ref_last = long_scan.selective_state_update_sequence(
            first["state"], seq["x"], seq["dt"], first["A"], seq["B"], seq["C"], first["D"], z,
            first["dt_bias"], case.dt_softplus, subject_dtype=sut.dtype)
    else:
        ref_out, ref_last = oracle(oracle_ss.selective_scan, seq["x"], seq["dt"], first["A"], seq["B"],
                                   seq["C"], first["D"], z, first["dt_bias"],
                                   case.dt_softplus, return_last_state=True)
    sut.judge(case, [
        (f"out of steps 0..{l - 1} (vs. the scan's out)", np.stack(outs, axis=-1), ref_out,
         tm.selective_scan_terms(ref_out)),
        (f"state after {l} steps (vs. the scan's last state)", state, ref_last,
         tm.selective_scan_terms(ref_last)) + ((state_dtype,) if state_dtype else ())])
