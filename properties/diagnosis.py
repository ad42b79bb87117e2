"""Diagnosis hints for an ``inaccurate`` verdict (issue 13): is the subject's output a simple
transform of the oracle's? A hint is given only when the transformed oracle matches the output
within the same tolerance (scaled with it) -- no guessing -- and only where the plain oracle does
not: the transform must explain the error.

Transforms tried (every one that fits is named, in this order; e.g. a one-step shift of the kernel
of Ad = -1 is also -1x):
  * a constant factor c in {2, 1/2, -1, -2, -1/2}: out = c * expected (tolerance |c| * tol);
  * complex conjugation: out = conj(expected) (complex outputs);
  * a one-step shift along an axis of length >= 3, either direction: out[t] = expected[t -+ 1]
    (compared on the L - 1 overlapping steps, tolerance the larger of the two positions');
  * reversed order along an axis of length >= 2: out[t] = expected[L - 1 - t].
Axes: a 1-D output's only axis is its sequence axis; for more axes each axis is tried and named.
"""
from __future__ import annotations

import numpy as np

FACTORS = ((2.0, "2x", "a conjugate-pair convention (2 Re, or both members of each pair kept)?"),
           (0.5, "1/2x", "a missing factor 2 (the 2 of 2 Re, a conjugate-pair convention)?"),
           (-1.0, "-1x", "a sign convention (A or the output negated)?"),
           (-2.0, "-2x", "a sign and a conjugate-pair convention?"),
           (-0.5, "-1/2x", "a sign and a missing factor 2?"))


def _fits(out, target, tol) -> bool:
    """out matches target within tol everywhere, and the match is not trivial (some element of
    out is non-zero)."""
    return bool(out.size) and bool(np.all(np.abs(out - target) <= tol)) and bool(np.any(out != 0))


def _explains(out, plain, target, tol) -> bool:
    """``target`` fits ``out`` where ``plain`` (the untransformed oracle) does not."""
    return _fits(out, target, tol) and not bool(np.all(np.abs(out - plain) <= tol))


def _axis_name(out, axis: int) -> str:
    return "along the sequence" if out.ndim == 1 else f"along axis {axis}"


def hint(out, expected, tol) -> str | None:
    """A one-line hint naming the transforms of ``expected`` that ``out`` is, or None."""
    found = list(_hints(out, expected, tol))
    return "; or ".join(found) if found else None


def _hints(out, expected, tol):
    try:
        out = np.asarray(out)
        expected = np.asarray(expected)
        tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), expected.shape)
    except (TypeError, ValueError):
        return
    if out.shape != expected.shape or out.size == 0:
        return
    if not (np.all(np.isfinite(out)) and np.all(np.isfinite(expected))
            and np.all(np.isfinite(tol))):
        return
    for c, name, why in FACTORS:
        if _explains(out, expected, c * expected, abs(c) * tol):
            yield f"looks like {name} the expected value everywhere: {why}"
    if np.iscomplexobj(out) or np.iscomplexobj(expected):
        if _explains(out, expected, np.conj(expected), tol):
            yield ("looks like the complex conjugate of the expected value everywhere: "
                    "a conj(C) / e^{-i theta} convention?")
    for axis in range(out.ndim):
        n = out.shape[axis]
        take = (lambda a, s, ax=axis: np.take(a, np.arange(s.start, s.stop), axis=ax))
        if n >= 3:
            head, tail = slice(0, n - 1), slice(1, n)
            # later: out[t] = expected[t - 1]
            if _explains(take(out, tail), take(expected, tail), take(expected, head),
                         np.maximum(take(tol, tail), take(tol, head))):
                yield (f"looks like the expected value shifted one step later "
                        f"{_axis_name(out, axis)} (out[t] = expected[t-1]): an off-by-one "
                        f"in the time index?")
            # earlier: out[t] = expected[t + 1]
            if _explains(take(out, head), take(expected, head), take(expected, tail),
                         np.maximum(take(tol, tail), take(tol, head))):
                yield (f"looks like the expected value shifted one step earlier "
                        f"{_axis_name(out, axis)} (out[t] = expected[t+1]): an off-by-one "
                        f"in the time index?")
        if n >= 2:
            flipped_tol = np.maximum(tol, np.flip(tol, axis))
            if _explains(out, expected, np.flip(expected, axis), flipped_tol):
                yield (f"looks like the expected value in reversed order "
                        f"{_axis_name(out, axis)}: a kernel or scan run backwards (flipped)?")
