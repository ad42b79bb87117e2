"""The pure-PyTorch paths of Hugging Face transformers' Mamba and Mamba-2 models
(``transformers.models.mamba.modeling_mamba``, ``...mamba2.modeling_mamba2``; checked with
transformers 5.25.0) as suite subjects. These module-level functions are what the models'
slow / torch forward calls when no hub kernel is installed (their decorators
``use_kernel_func_from_hub_with_fallback`` fall back to them). Optional dependency: transformers.

| subject | transformers function | role | what the adapter does |
|---|---|---|---|
| ``selective_scan`` | ``mamba.modeling_mamba.mamba_selective_scan`` | selective_scan | nothing (same signature); only variable B/C (b,n,l), real A: ``--ssm-without complex_A,constant_B,constant_C,grouped_BC`` |
| ``selective_state_update`` | ``mamba.modeling_mamba.mamba_selective_state_update`` | selective_state_update | keyword arguments (its order is D, dt_bias, dt_softplus, z) |
| ``causal_conv1d`` | ``mamba.modeling_mamba.causal_conv1d_fn`` | causal_conv1d | nothing |
| ``ssd`` | ``mamba2.modeling_mamba2.mamba2_chunk_scan`` | ssd | keyword arguments; it has no z: ``--ssm-without z`` |
| ``mamba2_selective_state_update`` | ``mamba2.modeling_mamba2.mamba2_selective_state_update`` | selective_state_update | the role's (b,d,n) state as heads of dim 1: state (b,d,1,n), x, dt (b,d,1), A (d,1,n), one group B, C (b,1,n), D, dt_bias (d,1) |
"""
from __future__ import annotations

from transformers.models.mamba import modeling_mamba as _m1
from transformers.models.mamba2 import modeling_mamba2 as _m2

causal_conv1d = _m1.causal_conv1d_fn


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False):
    if A.is_complex() or B.dim() != 3 or C.dim() != 3:
        raise NotImplementedError("transformers' mamba_selective_scan: real A and variable B, C "
                                  "(b, n, l) only (--ssm-without complex_A,constant_B,constant_C,"
                                  "grouped_BC)")
    return _m1.mamba_selective_scan(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                    delta_softplus=delta_softplus,
                                    return_last_state=return_last_state)


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                           dt_softplus=False):
    return _m1.mamba_selective_state_update(state, x, dt, A, B, C, D=D, dt_bias=dt_bias,
                                            dt_softplus=dt_softplus, z=z)


def ssd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
        dt_softplus=False, return_final_states=False):
    if z is not None:
        raise NotImplementedError("transformers' mamba2_chunk_scan has no z gate "
                                  "(--ssm-without z)")
    return _m2.mamba2_chunk_scan(x, dt, A, B, C, chunk_size, D=D, dt_bias=dt_bias,
                                 initial_states=initial_states, dt_softplus=dt_softplus,
                                 return_final_states=return_final_states)


def mamba2_selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                                  dt_softplus=False):
    heads = state.unsqueeze(2)  # (b, d, 1, n): a view, so the update lands in ``state``
    out = _m2.mamba2_selective_state_update(
        heads, x.unsqueeze(-1), dt.unsqueeze(-1), A.unsqueeze(1), B.unsqueeze(1), C.unsqueeze(1),
        D=None if D is None else D.unsqueeze(-1), dt_bias=None if dt_bias is None else dt_bias.unsqueeze(-1),
        dt_softplus=dt_softplus, z=None if z is None else z.unsqueeze(-1))
    return out.squeeze(-1)
