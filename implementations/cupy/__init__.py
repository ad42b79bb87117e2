"""Our own CUDA kernels (CuPy RawModule, sources in the ``.cu`` files of this folder).

Importing this package needs neither CuPy nor a GPU: CuPy, torch and the kernels are loaded only
when a role function is called.  ``available()`` says whether they can run here.

Roles (signatures of shared/CONTRACT.md):

    selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False)
    selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False)
    ssd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
        dt_softplus=False, return_final_states=False)
    causal_conv1d(x, weight, bias=None, activation=None)
    attention(q, k, v, is_causal=False, scale=None)
    s4d_kernel(Lambda, B, C, dt, L)
    dplr_kernel(Lambda, P, Q, B, C, dt, L)

Sequence roles take CuPy arrays or torch CUDA tensors (exchanged through DLPack without copies) and
return the framework they got; the two S4 roles also take NumPy arrays (and return NumPy).
"""
from __future__ import annotations

import functools
import importlib

from .attention import attention
from .conv1d import causal_conv1d
from .s4 import dplr_kernel, s4d_kernel
from .selective_scan import selective_scan
from .ssd import ssd
from .state_update import selective_state_update

__all__ = ["available", "entry_points", "selective_scan", "selective_state_update", "ssd",
           "causal_conv1d", "attention", "s4d_kernel", "dplr_kernel"]


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """True when CuPy imports and at least one CUDA device is visible to it."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: all mean "cannot run here"
        return False


def entry_points() -> dict[str, tuple[str, ...]]:
    """Kernel file -> the extern "C" entry points its wrapper launches (checked by the compile test)."""
    # (the functions shadow their same-named submodules as package attributes: import by path)
    names = ("selective_scan", "state_update", "ssd", "conv1d", "attention", "s4")
    mods = [importlib.import_module(f"{__name__}.{name}") for name in names]
    return {m.SOURCE: m.ENTRY_POINTS for m in mods}
