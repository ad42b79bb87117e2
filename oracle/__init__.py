"""High-precision references for SSM kernels.

Every oracle takes float64/complex128 NumPy arrays, reads them as the exact binary numbers they
hold, computes in mpmath (or exact rationals / SymPy) at a precision it verifies by doubling, and
returns a :class:`~oracle.reference.Reference`: the value rounded once to float64, a bound on the
oracle's own error, and the magnitudes the tolerance model of ``properties/tolerance.py`` needs.
"""
from ssm_conformance.oracle.reference import Reference, OracleError

__all__ = ["Reference", "OracleError"]
