"""mamba-ssm's and causal-conv1d's pure-PyTorch references as suite subjects, imported from the
installed packages (their CUDA extensions stubbed by ssm_conformance.triton_cpu; mamba-ssm's
``__init__`` also needs triton importable). Optional dependencies: mamba-ssm, causal-conv1d,
triton, einops. The functions have the roles' argument order, so they are the subjects as is.

``selective_scan``  ``mamba_ssm.ops.selective_scan_interface.selective_scan_ref``
``causal_conv1d``   ``causal_conv1d.causal_conv1d_interface.causal_conv1d_ref``
"""
from __future__ import annotations

from ssm_conformance import triton_cpu

triton_cpu.install(["cuda_stubs"])

from causal_conv1d.causal_conv1d_interface import causal_conv1d_ref as causal_conv1d  # noqa: E402,F401
from mamba_ssm.ops.selective_scan_interface import selective_scan_ref as selective_scan  # noqa: E402,F401
