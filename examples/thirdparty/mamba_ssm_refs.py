"""mamba-ssm's and causal-conv1d's pure-PyTorch references as suite subjects, imported from the
installed packages (their CUDA extensions stubbed by ssm_conformance.triton_cpu; mamba-ssm's
``__init__`` also needs triton importable). Optional dependencies: mamba-ssm, causal-conv1d,
triton, einops.

``selective_scan``  ``mamba_ssm.ops.selective_scan_interface.selective_scan_ref``, as is (the
                    role's argument order)
``causal_conv1d``   ``causal_conv1d.causal_conv1d_interface.causal_conv1d_ref``, with
                    ``activation`` passed by keyword: its positional order is (x, weight, bias,
                    initial_states, return_final_states, final_states_out, activation)
"""
from __future__ import annotations

from ssm_conformance import triton_cpu

triton_cpu.install(["cuda_stubs"])

from causal_conv1d.causal_conv1d_interface import causal_conv1d_ref  # noqa: E402
from mamba_ssm.ops.selective_scan_interface import selective_scan_ref as selective_scan  # noqa: E402,F401


def causal_conv1d(x, weight, bias=None, activation=None):
    return causal_conv1d_ref(x, weight, bias, activation=activation)
