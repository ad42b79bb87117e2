"""The precision verdict (CONTRACT.md, "What a verdict rests on"): on sequence roles, a subject
that stays within the derived error bound may still lose far more precision than the standard
algorithms do in the same precision -- the bound is a worst case over every accurate algorithm,
often 2^10 or more above what a loop or a tree scan actually errs by at long lengths. Here the
panel of oracle/panel.py (a sequential loop and a tree scan for every recurrence, mamba-ssm's
chunked algorithm for ssd, both tap orders for causal_conv1d, plain and online softmax for
attention) runs in the subject's compute dtype on the inputs exactly as the subject got them, each
member's error against the oracle is measured, and per row (batch x channel, or batch x head)

    err_row(subject) <= K * max over members err_row(member) + floor_row

must hold, or the subject fails as ``imprecise`` with the bits it lost, log2(err / panel err).
K = --ssm-precision-factor (default 16: 4 bits); ``off`` leaves the bound alone as the verdict.
err_row is the largest |output - oracle| over the row's elements. Both verdicts apply: an error
beyond the bound fails as ``inaccurate`` first, whatever K is.

The floor: the panel may be luckier than any algorithm deserves on a row (a short row, exact
products, a cancellation every member rounds the same way), and an accurate algorithm outside the
panel rounds differently. An accurate algorithm may round each quantity the bound charges once
more than the panel members do, in the output dtype (an intermediate kept in the output dtype:
a state, P or dS in a half dtype; o read back rounded for FlashAttention's D = rowsum(dO o)); each
such rounding errs by at most u_out times that quantity's magnitude, which the oracle carries
(the tolerance's magnitudes). So

    floor_row = FLOOR_ROUNDINGS * u_out * max over the row of M_i  +  tiny_out  +  (K + 1) e_row,
    M_i = max(|y_i|, sum of the reference's first-order magnitudes at i)

The first-order magnitudes are those whose product with u is one rounding's error at the output,
with no depth folded in (FLOOR_MAGNITUDES): the abs-pass values of the recurrences ("abs_scan",
"abs_grad", "abs_out", "abs_state": the computation on |leaves|, which bounds every intermediate's
size on its way to the output), "exp_cond" (the exponentials' first-order error), attention's
"score_spread" and "abs_pv". Not the path-weighted magnitudes ("path": depths folded in; four
roundings of it would be the whole tolerance). The exception is attention's gradient, whose oracle
carries "main" with the softmax backward's depths folded in and "half" (P, dS and o rounded to a
half dtype): both are read, so a FlashAttention-style backward (D = rowsum(dO o), dS rounded) is
not mistaken for a precision loss; the verdict is weaker there. e_row is the row's largest oracle
error (its certified bound plus its rounding to float64: a measured error is off by up to e, the
subject's upwards and the panel's downwards), FLOOR_ROUNDINGS = 4 (a few), and tiny_out the
output dtype's smallest normal number, which every verdict admits (flush to zero).

Besides the verdict, every judged example records the ratio tolerance / panel error per row (the
bits the bound alone leaves unjudged; the median over rows), for report.json and report.md.
"""
from __future__ import annotations

import hashlib
import math
import pickle
import time

import numpy as np

from ssm_conformance.oracle.formats import TINY, UNIT_ROUNDOFF
from ssm_conformance.properties.options import RUN
from ssm_conformance.properties.subjects import SubjectFailure
from ssm_conformance.properties.tolerance import U64, tolerance

DEFAULT_FACTOR = 16.0
FLOOR_ROUNDINGS = 4.0
# properties judged by the precision verdict: which panel pass each one is
PROPERTIES = {"matches_oracle": "forward", "vjp_matches_oracle": "vjp"}
# the first-order magnitudes the floor reads (module doc); a new role's reference names its own
# here if they differ
FLOOR_MAGNITUDES = ("abs_scan", "abs_grad", "abs_out", "abs_state", "exp_cond", "score_spread",
                    "abs_pv", "main", "half", "abs")


def parse_factor(text) -> float | None:
    """--ssm-precision-factor: a number K >= 1, or "off" (None). ValueError otherwise."""
    if isinstance(text, str) and text.strip().lower() == "off":
        return None
    if isinstance(text, bool):
        raise ValueError(f"expected a number >= 1 or 'off', got {text!r}")
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number >= 1 or 'off', got {text!r}") from None
    if not (math.isfinite(value) and value >= 1.0):
        raise ValueError(f"expected a number >= 1 or 'off', got {text!r}")
    return value


def applies(sut, prop) -> bool:
    from ssm_conformance.oracle.panel import PANELS
    return (RUN.precision_factor is not None and sut.role.name in PANELS
            and prop in PROPERTIES)


# --- the panel's outputs, memoized on the inputs (every subject of a role gets the same draws) ---

_CACHE: dict = {}
# Hypothesis runs every example of one subject before the next subject's: the cache must hold a
# property's examples (the oracle's holds 4096), within a memory budget (long examples are MBs)
_CACHE_LIMIT = 4096
_CACHE_BYTES = 1 << 29


def panel_outputs(sut, case, mode) -> dict:
    """{member: {output name: float64/complex128 array}} (compute dtype, not yet rounded)."""
    from ssm_conformance.oracle import panel
    from ssm_conformance.properties.harness import _float64, _key

    args = sut.inputs(case)
    wrt, cot = (None, None) if mode == "forward" else sut.last_vjp()
    key = (sut.role.name, mode, sut.dtype, sut.device, _key(sut.exact(case)),
           None if cot is None else (tuple(wrt), _key(np.asarray(cot))))
    key = hashlib.blake2b(pickle.dumps(key, protocol=5), digest_size=20).digest()  # not the bytes
    if key not in _CACHE:
        raw = (panel.forward(sut.role.name, args) if mode == "forward"
               else panel.vjp(sut.role.name, args, wrt, cot))
        value = {m: {name: _float64(t) for name, t in outs.items()} for m, outs in raw.items()}
        size = sum(a.nbytes for outs in value.values() for a in outs.values())
        while _CACHE and (len(_CACHE) >= _CACHE_LIMIT
                          or sum(v[1] for v in _CACHE.values()) + size > _CACHE_BYTES):
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (value, size)
    return _CACHE[key][0]


def _rounded(array: np.ndarray, dtype: str) -> np.ndarray:
    """``array`` rounded to ``dtype`` (complex: its parts), as float64/complex128."""
    import torch
    t = torch.from_numpy(np.ascontiguousarray(array))
    if t.is_complex():
        if dtype != "float64":
            t = t.to(torch.complex64)
        return t.to(torch.complex128).numpy()
    return t.to(getattr(torch, dtype)).double().numpy()


def _row_max(x: np.ndarray, axes: tuple) -> np.ndarray:
    return np.max(x, axis=axes) if axes else x


def floor_magnitude(ref) -> np.ndarray:
    """M_i of the module doc: the size of one rounding of the quantities the bound charges."""
    value = np.abs(np.asarray(ref.value))
    total = np.zeros(value.shape)
    found = False
    for name in FLOOR_MAGNITUDES:
        if name in ref.magnitudes:
            found = True
            total = total + np.broadcast_to(np.abs(np.asarray(ref.magnitudes[name],
                                                              dtype=np.float64)), value.shape)
    if not found:
        raise RuntimeError(f"the reference carries none of the precision floor's magnitudes "
                           f"{FLOOR_MAGNITUDES} (it has {sorted(ref.magnitudes)}): a suite bug")
    return np.maximum(value, total)


def judge(sut, case, checks):
    """The precision verdict on the checks of one example (SubjectUnderTest.judge calls it once
    every check is within its bound). Records the figures and the time it took (the panel's
    cost, report.json "precision"."duration_s"); raises SubjectFailure("imprecise")."""
    from ssm_conformance.properties.harness import CURRENT_PROPERTY
    from ssm_conformance.properties.report import RECORDER

    prop = CURRENT_PROPERTY["name"]
    if not applies(sut, prop):
        return
    start = time.perf_counter()
    try:
        _judge(sut, case, checks, prop)
    finally:
        RECORDER.entry(sut, prop).precision_s += time.perf_counter() - start


def _judge(sut, case, checks, prop):
    from ssm_conformance.oracle.panel import PANELS
    from ssm_conformance.properties.report import RECORDER

    K = RUN.precision_factor
    spec = PANELS[sut.role.name]
    members = panel_outputs(sut, case, PROPERTIES[prop])
    worst, headroom = None, []
    for name, out, ref, terms, *out_dtype in checks:
        dtype = out_dtype[0] if out_dtype else sut.dtype
        missing = [m for m, outs in members.items() if name not in outs]
        if missing:
            raise RuntimeError(f"the precision panel of {sut.role.name} has no output {name!r} "
                               f"(members {', '.join(missing)}): a suite bug")
        value = np.asarray(ref.value)
        finite = np.isfinite(value)
        axes = tuple(spec.rows(name, out.ndim))

        def err_of(y):
            return np.where(finite, np.abs(y - np.where(finite, value, 0.0)), 0.0)

        sub_row = _row_max(err_of(out), axes)
        panel_rows = {m: _row_max(err_of(_rounded(outs[name], dtype)), axes)
                      for m, outs in members.items()}
        panel_row = np.maximum.reduce(list(panel_rows.values()))
        u_out = UNIT_ROUNDOFF[dtype]
        M = np.where(finite, floor_magnitude(ref), 0.0)
        # the oracle's own error e (certified bound + its rounding to float64) may move the
        # measured errors: err(subject) by +e, the panel's by -e (module doc)
        e = np.where(finite, np.broadcast_to(np.asarray(ref.error, dtype=np.float64), value.shape)
                     + U64 * np.abs(np.where(finite, value, 0.0)), 0.0)
        floor_row = (FLOOR_ROUNDINGS * u_out * _row_max(M, axes) + TINY[dtype]
                     + (K + 1.0) * _row_max(e, axes))
        limit = K * panel_row + floor_row
        ratio = sub_row / limit
        tol = terms(dtype) if callable(terms) else tolerance(ref, terms, dtype)
        tol_row = _row_max(np.where(finite, np.broadcast_to(tol, value.shape), 0.0), axes)
        # tolerance / panel error, the panel error counted at least one output rounding
        unit = u_out * _row_max(M, axes) + TINY[dtype]
        with np.errstate(divide="ignore", invalid="ignore"):
            bits = np.log2(tol_row / np.maximum(panel_row, unit))
        headroom.extend(np.ravel(bits[np.isfinite(bits)]).tolist())
        if ratio.size == 0:
            continue
        flat = int(np.argmax(ratio))
        row = tuple(int(i) for i in np.unravel_index(flat, np.shape(ratio)))
        entry = (float(np.ravel(ratio)[flat]), name, row, float(np.ravel(sub_row)[flat]),
                 float(np.ravel(panel_row)[flat]), float(np.ravel(floor_row)[flat]),
                 {m: float(np.ravel(r)[flat]) for m, r in panel_rows.items()}, axes, dtype)
        if worst is None or entry[0] > worst[0]:
            worst = entry
    if worst is None:
        return
    ratio, name, row, sub, pan, floor, per_member, axes, dtype = worst
    lost = bits_lost(sub, pan)
    unjudged = float(np.median(headroom)) if headroom else float("nan")
    RECORDER.observe_precision(sut, prop, case, ratio=ratio, bits_lost=lost,
                               unjudged_bits=unjudged)
    if not ratio <= 1.0:
        where = f"{name}[{', '.join(map(str, row))}{', ...' if axes else ''}]"
        members_text = ", ".join(f"{m} {e:.3e}" for m, e in per_member.items())
        raise SubjectFailure(
            "imprecise",
            f"within the error bound, but it loses {lost:.1f} bits against the standard "
            f"algorithms in {dtype}: the largest |error| on row {where} is {sub:.3e}, "
            f"{sub / pan if pan > 0 else float('inf'):.3g} times the panel's largest error "
            f"there ({members_text}); the limit is K x {pan:.3e} + floor {floor:.3e} = "
            f"{K * pan + floor:.3e} (K = {K:g}, --ssm-precision-factor; precision ratio "
            f"{ratio:.3g})\n" + sut._repro(case))


def bits_lost(err: float, panel_err: float) -> float:
    """log2(err / panel_err): inf where the panel is exact and the subject is not."""
    if err <= 0:
        return 0.0
    if panel_err <= 0:
        return float("inf")
    return math.log2(err / panel_err)
