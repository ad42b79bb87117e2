"""The floating-point formats the suite judges: unit roundoff u (half an ulp of 1, the relative
error of one rounding to nearest) and tiny (the smallest normal number: below it a rounding may
lose up to u tiny absolutely, or all of it where a kernel flushes subnormals to zero)."""

UNIT_ROUNDOFF = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "bfloat16": 2.0**-8,   # 8-bit significand, float32's exponent range
    "float16": 2.0**-11,
}
TINY = {
    "float64": 2.0**-1022,
    "float32": 2.0**-126,
    "bfloat16": 2.0**-126,
    "float16": 2.0**-14,
}
