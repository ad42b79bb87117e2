"""ssm-conformance: a numerical-conformance suite for state-space-model kernels.

Installed, the suite lives under this one namespace: ``ssm_conformance.oracle`` (the
high-precision references), ``ssm_conformance.implementations`` (our kernels, the first
subjects), ``ssm_conformance.properties`` (the pytest plugin, harness, tolerance model and the
property tests). In a checkout those are the top-level folders ``oracle/``, ``implementations/``
and ``properties/``; the distribution maps them under this package (pyproject.toml,
``[tool.setuptools.package-dir]``), and in a checkout that is not installed the same names resolve
through ``__path__`` below, so every module has one name, installed or not.
"""
from __future__ import annotations

import os as _os

_HERE = _os.path.dirname(_os.path.abspath(__file__))
_CHECKOUT = _os.path.dirname(_HERE)
if not _os.path.isdir(_os.path.join(_HERE, "oracle")) and _os.path.isfile(
        _os.path.join(_CHECKOUT, "oracle", "reference.py")):
    __path__.append(_CHECKOUT)  # a checkout: ssm_conformance.oracle is <checkout>/oracle

__version__ = "0.1.0"
__all__ = ["check"]


def __getattr__(name):
    # ``from ssm_conformance import check``, imported on first use: ``import ssm_conformance``
    # (which every module of the suite does) stays free of pytest, Hypothesis and torch
    if name == "check":
        from ssm_conformance.api import check
        return check
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
