"""Subjects: mamba-ssm's and causal-conv1d's pure-PyTorch reference functions, and mambapy's
``pscan``, loaded on a CPU-only machine (no CUDA extension, no Triton). See docs/mamba_adapters.md.

``import mamba_ssm`` fails without Triton (its ``__init__`` imports the Triton kernels), and
``import causal_conv1d`` fails without its CUDA extension, although the reference functions
themselves need only torch and einops. So this module reads the package *source files* -- from
an installed package, located with ``importlib.util.find_spec`` (which does not execute it), or
from a checkout named by an environment variable -- takes the named top-level functions with
``ast``, and executes only those in a namespace holding torch, ``F`` and einops' ``rearrange`` /
``repeat``. The code that runs is upstream's, unchanged.

    MAMBA_SSM_SRC      checkout of state-spaces/mamba (or its mamba_ssm/ folder)
    CAUSAL_CONV1D_SRC  checkout of Dao-AILab/causal-conv1d (or its causal_conv1d/ folder)
    MAMBAPY_SRC        checkout of alxndrTL/mamba.py (or its mambapy/ folder)

Each subject keeps the contract's call signature. Where the reference lacks a feature of the
role the adapter says so (NotImplementedError naming the ``--ssm-without`` features to drop);
where it only needs its input shaped differently (padding to a multiple of the chunk size,
groups repeated per head) the adapter does that and nothing else.
"""
from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import math
import os

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------
# Loading upstream functions from source
# ----------------------------------------------------------------------------------------------

def _source_path(package: str, relpath: str, env: str) -> str:
    """Path of ``package/relpath`` in $env (checkout or package folder) or the installed package."""
    tried = []
    root = os.environ.get(env)
    if root:
        for cand in (os.path.join(root, package, relpath), os.path.join(root, relpath)):
            tried.append(cand)
            if os.path.isfile(cand):
                return cand
    spec = importlib.util.find_spec(package)  # top-level package: located, not executed
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            cand = os.path.join(loc, relpath)
            tried.append(cand)
            if os.path.isfile(cand):
                return cand
    raise ImportError(
        f"mamba_refs: cannot find {package}/{relpath}. Install the package without building its "
        f"kernels (see docs/mamba_adapters.md) or set {env} to a checkout. Looked in: {tried or 'nothing'}")


def _namespace():
    try:
        import einops
    except ImportError as e:
        raise ImportError("mamba_refs: the upstream reference functions need einops "
                          "(pip install einops)") from e
    return {"torch": torch, "F": F, "math": math,
            "rearrange": einops.rearrange, "repeat": einops.repeat}


def _exec_functions(path: str, names, ns: dict) -> dict:
    """Execute only the top-level definitions ``names`` of the file at ``path`` into ``ns``."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    body = [node for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names]
    missing = set(names) - {node.name for node in body}
    if missing:
        raise ImportError(f"mamba_refs: {path} has no top-level {sorted(missing)}")
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), ns)  # noqa: S102
    return ns


@functools.cache
def _causal_conv1d():
    ns = _namespace()
    _exec_functions(_source_path("causal_conv1d", "causal_conv1d_interface.py", "CAUSAL_CONV1D_SRC"),
                    ["causal_conv1d_ref", "causal_conv1d_update_ref"], ns)
    return ns


@functools.cache
def _mamba():
    ns = _namespace()
    src = lambda rel: _source_path("mamba_ssm", rel, "MAMBA_SSM_SRC")  # noqa: E731
    _exec_functions(src("ops/selective_scan_interface.py"), ["selective_scan_ref", "mamba_inner_ref"], ns)
    _exec_functions(src("ops/triton/selective_state_update.py"), ["selective_state_update_ref"], ns)
    _exec_functions(src("ops/triton/ssd_chunk_state.py"), ["chunk_state_ref"], ns)
    _exec_functions(src("ops/triton/ssd_state_passing.py"), ["state_passing_ref"], ns)
    _exec_functions(src("ops/triton/ssd_chunk_scan.py"), ["chunk_scan_ref"], ns)
    _exec_functions(src("ops/triton/ssd_combined.py"), ["ssd_chunk_scan_combined_ref"], ns)
    _exec_functions(src("modules/ssd_minimal.py"), ["segsum", "ssd_minimal_discrete"], ns)
    # mamba_inner_ref calls these two fused kernels; their references stand in for them.
    ns["selective_scan_fn"] = ns["selective_scan_ref"]
    try:
        ns["causal_conv1d_fn"] = _causal_conv1d()["causal_conv1d_ref"]
    except ImportError:
        ns["causal_conv1d_fn"] = None
    return ns


@functools.cache
def _mambapy_pscan():
    try:
        return importlib.import_module("mambapy.pscan").pscan
    except ImportError:
        pass
    path = _source_path("mambapy", "pscan.py", "MAMBAPY_SRC")
    spec = importlib.util.spec_from_file_location("_mambapy_pscan", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # pscan.py imports only math and torch
    return mod.pscan


def available(which: str = "mamba_ssm"):
    """(True, '') if the named source ('mamba_ssm', 'causal_conv1d', 'mambapy') loads, else
    (False, reason)."""
    loader = {"mamba_ssm": _mamba, "causal_conv1d": _causal_conv1d, "mambapy": _mambapy_pscan}[which]
    try:
        loader()
    except ImportError as e:
        return False, str(e)
    return True, ""


# ----------------------------------------------------------------------------------------------
# Subjects, in the contract's call signatures
# ----------------------------------------------------------------------------------------------

def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False):
    """mamba_ssm.ops.selective_scan_interface.selective_scan_ref, as is."""
    return _mamba()["selective_scan_ref"](u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                          return_last_state)


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """mamba_ssm.ops.triton.selective_state_update.selective_state_update_ref, as is."""
    return _mamba()["selective_state_update_ref"](state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)


def _pad_time(t, pad):
    """Zero-pad axis 1 (time) of a (b, l, ...) tensor at the end."""
    if t is None or pad == 0:
        return t
    return F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))


def ssd(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
        dt_softplus=False, return_final_states=False):
    """mamba_ssm.ops.triton.ssd_combined.ssd_chunk_scan_combined_ref. It has no initial or final
    states (NotImplementedError: run with --ssm-without initial_states,final_states), and its
    chunk_scan_ref asserts l % chunk_size == 0, so the adapter zero-pads x, dt, B, C, z at the end
    and cuts the output back to l (outputs are causal: padding after t never changes y_t)."""
    if initial_states is not None or return_final_states:
        raise NotImplementedError("ssd_chunk_scan_combined_ref has no initial/final states: "
                                  "--ssm-without initial_states,final_states")
    l = x.shape[1]
    pad = -l % chunk_size
    y = _mamba()["ssd_chunk_scan_combined_ref"](
        _pad_time(x, pad), _pad_time(dt, pad), A, _pad_time(B, pad), _pad_time(C, pad), chunk_size,
        D=D, z=_pad_time(z, pad), dt_bias=dt_bias, dt_softplus=dt_softplus)
    return y[:, :l]


def ssd_minimal(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                dt_softplus=False, return_final_states=False):
    """mamba_ssm.modules.ssd_minimal.ssd_minimal_discrete (Listing 1 of the Mamba-2 paper), which
    takes the discretized X = x dt, A dt and per-head B, C. The adapter does the dt transform
    (bias, softplus), repeats the groups per head, zero-pads to a multiple of the chunk size
    (padded steps have dt = 0: no input, decay 1, so the final state is untouched), and adds the
    D skip and the SiLU(z) gate, none of which the minimal function has."""
    b, l, h, p = x.shape
    g = B.shape[2]
    dtype = x.dtype
    dt = dt.to(dtype)
    if dt_bias is not None:
        dt = dt + dt_bias.to(dtype)
    if dt_softplus:
        dt = F.softplus(dt)
    pad = -l % chunk_size
    X = _pad_time(x * dt.unsqueeze(-1), pad)
    Adt = _pad_time(A.to(dtype) * dt, pad)
    Bh = _pad_time(B.to(dtype).repeat_interleave(h // g, dim=2), pad)
    Ch = _pad_time(C.to(dtype).repeat_interleave(h // g, dim=2), pad)
    h0 = None if initial_states is None else initial_states.to(dtype).unsqueeze(1)
    y, final = _mamba()["ssd_minimal_discrete"](X, Adt, Bh, Ch, chunk_size, initial_states=h0)
    y = y[:, :l]
    if D is not None:
        y = y + x * (D[:, None] if D.dim() == 1 else D)
    if z is not None:
        y = y * F.silu(z)
    y = y.to(dtype)
    return (y, final) if return_final_states else y


def causal_conv1d(x, weight, bias=None, activation=None):
    """causal_conv1d.causal_conv1d_interface.causal_conv1d_ref, as is."""
    return _causal_conv1d()["causal_conv1d_ref"](x, weight, bias, activation=activation)


def mamba_inner(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight,
                out_proj_bias, A, B=None, C=None, D=None, delta_bias=None, B_proj_bias=None,
                C_proj_bias=None, delta_softplus=True):
    """mamba_ssm's mamba_inner_ref (the whole Mamba mixer after in_proj) with causal_conv1d_ref and
    selective_scan_ref in place of the fused kernels it calls. Not a contract role: used to check
    our Mamba blocks."""
    return _mamba()["mamba_inner_ref"](xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight,
                                       out_proj_weight, out_proj_bias, A, B, C, D, delta_bias,
                                       B_proj_bias, C_proj_bias, delta_softplus)


def linear_scan(a, b):
    """mambapy's ``pscan`` (Blelloch scan, alxndrTL/mamba.py) on a, b (..., l): the adapter lays
    the leading axes out as pscan's (B=1, L, D, N=1); pscan pads L to a power of two itself."""
    pscan = _mambapy_pscan()
    shape = torch.broadcast_shapes(a.shape, b.shape)
    l = shape[-1]
    dtype = torch.promote_types(a.dtype, b.dtype)
    to4 = lambda t: t.to(dtype).expand(shape).reshape(-1, l).transpose(0, 1).contiguous().unsqueeze(0).unsqueeze(-1)  # noqa: E731
    h = pscan(to4(a), to4(b))                              # (1, l, M, 1)
    return h[0, :, :, 0].transpose(0, 1).reshape(shape)
