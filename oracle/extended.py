"""The long-input oracle tier's working precision: a floating-point format far above the subject's.

The multiple-precision oracles cost ~40 us per element, which caps them near 6000 elements. The
long tier (``oracle/long_*.py``) evaluates the same definitions vectorized over the
non-sequential axes in an ordinary floating-point format W, and returns the same ``Reference``
(value, error bound, magnitudes). Its error bound is derived like the subject's tolerance, with
W's unit roundoff u_W in place of the subject's:

    |tier - exact| <= C_role * u_W * (depth * magnitude + ...)          (per role: oracle/long_*.py)

so the tier's error enters the verdict through ``Reference.error`` and the tolerance model
(``properties/tolerance.py``: tol = ... + oracle_error) exactly as the MPFR oracle's certified
error does. It is small against the tolerance when u_W << u of the subject's compute dtype:

    subject dtype        compute dtype   W                               u_W / u_subject
    float16, bfloat16    float32         float64                         2^-29
    float32              float32         float64                         2^-29
    float64              float64         np.longdouble (x87 80-bit:      2^-11
                                         64-bit significand)

On a platform whose long double is float64 itself (MSVC, most ARM64 builds: ``LONGDOUBLE_IS_EXTENDED``
below is False) float64 subjects are judged with W = float64: the tier's bound is then about
1/SAFETY of the tolerance it joins, so the verdict stays sound (an accurate kernel still passes)
but is about 1.25 times less sharp. Nothing is skipped; ``tier_format`` says which W was used,
and the report names it.
"""
from __future__ import annotations

import numpy as np

from ssm_conformance.oracle.formats import UNIT_ROUNDOFF

LONGDOUBLE_IS_EXTENDED = np.finfo(np.longdouble).nmant >= 63

# unit roundoff of each working format (half an ulp of 1)
TIER_UNIT_ROUNDOFF = {
    "float64": 2.0**-53,
    "longdouble": float(np.finfo(np.longdouble).eps) / 2,
}


def tier_format(subject_dtype: str) -> str:
    """The working format W of the tier for a subject judged in ``subject_dtype``."""
    if subject_dtype not in UNIT_ROUNDOFF:
        raise ValueError(f"subject_dtype must be one of {', '.join(UNIT_ROUNDOFF)}, "
                         f"got {subject_dtype!r}")
    return "longdouble" if subject_dtype == "float64" else "float64"


def tier_dtype(subject_dtype: str):
    """NumPy real dtype of W (``np.float64`` or ``np.longdouble``)."""
    return np.longdouble if tier_format(subject_dtype) == "longdouble" else np.float64


def tier_complex_dtype(subject_dtype: str):
    """NumPy complex dtype of W (``np.complex128`` or ``np.clongdouble``)."""
    return np.clongdouble if tier_format(subject_dtype) == "longdouble" else np.complex128


def tier_unit_roundoff(subject_dtype: str) -> float:
    """u_W for a subject judged in ``subject_dtype``."""
    return TIER_UNIT_ROUNDOFF[tier_format(subject_dtype)]
