"""mamba-ssm's Triton kernels as suite subjects, run on a CPU under Triton's interpreter
(ssm_conformance.triton_cpu; docs/ecosystem.md). Optional dependencies: mamba-ssm (installed
without building CUDA), triton, einops. Nothing of mamba-ssm is copied here: the subjects call
the installed package's functions.

``ssd``
    ``mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined`` as is (same argument order
    and names as the role; dt_limit left at its default (0, inf)).
``selective_state_update``
    ``mamba_ssm.ops.triton.selective_state_update.selective_state_update`` as is. It raises
    ``TypeError: Value after * must be an iterable, not int`` when D or dt_bias is None (a
    finding, docs/ecosystem.md): judge it with ``--ssm-with D,dt_bias``.
``selective_state_update_zero_filled``
    The same kernel with a missing D or dt_bias passed as zeros (D = 0 adds 0·x, dt_bias = 0
    adds 0 to dt: the same values), so that it is judged on everything else where the suite has
    no ``--ssm-with``.
"""
from __future__ import annotations

from ssm_conformance import triton_cpu

triton_cpu.install()

import torch  # noqa: E402
from mamba_ssm.ops.triton.selective_state_update import \
    selective_state_update as _ssu  # noqa: E402
from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined  # noqa: E402


def ssd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
        dt_softplus=False, return_final_states=False):
    return mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D=D, z=z, dt_bias=dt_bias,
                                     initial_states=initial_states, dt_softplus=dt_softplus,
                                     return_final_states=return_final_states)


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                           dt_softplus=False):
    return _ssu(state, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus)


def selective_state_update_zero_filled(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                                       dt_softplus=False):
    d = x.shape[-1]
    if D is None:
        D = torch.zeros(d, dtype=torch.float32, device=x.device)
    if dt_bias is None:
        dt_bias = torch.zeros(d, dtype=torch.float32, device=x.device)
    return _ssu(state, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus)
