"""Hypothesis strategies: one module per family of roles. Each draws a *case*, an object with
``args()`` (the role's positional arguments, in order), ``size`` (for the report's plots) and
``features`` (the role features this input exercises)."""
