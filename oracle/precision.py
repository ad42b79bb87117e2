"""Precision doubling: evaluate an mpmath computation at p and 2p digits and certify agreement.

The difference between the two evaluations bounds the error of the lower one, hence (for a
convergent computation) of the higher one too; we return the higher one with that difference as
its error bound, and double again until the bound is far below half an ulp of float64.
"""
from __future__ import annotations

import mpmath
import numpy as np

from ssm_conformance.oracle.reference import OracleError

# Accept when the oracle's own error is below 2^-64 of the element's scale: 2^11 times smaller
# than float64's unit roundoff, so the oracle never decides a verdict.
ACCEPT = 2.0**-64


def to_mp(x):
    """float64/complex128 array (or scalar) -> nested object array of exact mpf/mpc."""
    arr = np.asarray(x)
    if np.iscomplexobj(arr):
        conv = lambda z: mpmath.mpc(complex(z).real, complex(z).imag)  # noqa: E731
    else:
        conv = lambda z: mpmath.mpf(float(z))  # noqa: E731
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        out[idx] = conv(arr[idx])
    return out


def to_float(x, complex_out=None):
    """Object array of mpf/mpc -> float64 (or complex128) array, each element rounded once."""
    arr = np.asarray(x, dtype=object)
    if complex_out is None:
        complex_out = any(isinstance(v, mpmath.mpc) for v in arr.flat)
    out = np.empty(arr.shape, dtype=np.complex128 if complex_out else np.float64)
    for idx in np.ndindex(arr.shape):
        v = arr[idx]
        out[idx] = complex(v) if complex_out else float(v)
    return out


def _abs(arr):
    out = np.empty(np.shape(arr), dtype=np.float64)
    for idx in np.ndindex(out.shape):
        out[idx] = float(abs(arr[idx]))
    return out


def verified(compute, *, dps=30, scale=None, max_dps=2000):
    """Run ``compute()`` (returns an object array of mp numbers, any shape) at ``dps`` and at
    ``2*dps`` decimal digits, doubling until the two agree to ``ACCEPT`` of each element's scale.

    scale -- optional nonnegative array broadcastable to the result: the size against which an
             element's error is judged when the element itself is (near) zero by cancellation;
             defaults to the largest |element| of the result.
    Returns (hi, err): the higher-precision object array and the float64 error bound array.
    """
    while dps <= max_dps:
        with mpmath.workdps(dps):
            lo = np.asarray(compute(), dtype=object)
        with mpmath.workdps(2 * dps):
            hi = np.asarray(compute(), dtype=object)
            diff = np.empty(hi.shape, dtype=object)
            for idx in np.ndindex(hi.shape):
                diff[idx] = abs(hi[idx] - lo[idx])
        err = _abs(diff)
        size = _abs(hi)
        ref_scale = np.maximum(size, size.max(initial=0.0) if scale is None else scale)
        if np.all(err <= ACCEPT * ref_scale):
            return hi, err
        dps *= 2
    raise OracleError(f"precision doubling did not converge by {max_dps} digits")
