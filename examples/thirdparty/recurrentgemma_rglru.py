"""RecurrentGemma's own torch RG-LRU layer as an ``rg_lru`` subject (docs/rg_lru.md).

The layer is ``recurrentgemma.torch.layers.RGLRU`` (google-deepmind/recurrentgemma, PyPI
``recurrentgemma``), called unchanged through its ``forward(x, segment_pos, cache,
return_cache)``. The role has the two gate projections already applied, so the adapter
replaces the layer's ``input_gate`` and ``a_gate`` (BlockDiagonalLinear) by modules that return
the given pre-activations gate_x, gate_a, and its ``a_param`` by the given fp32 tensor (a leaf of
the caller's graph, so its gradient is the layer's); reset becomes ``segment_pos == 0`` (the
layer's own definition of a reset), h0 its ``cache``, h_last its returned cache.

Install: ``pip install --no-deps recurrentgemma einops jaxtyping`` (the torch layers need einops
and jaxtyping; the package's top-level __init__ imports its JAX version, which needs flax, so
the adapter imports recurrentgemma/torch/layers.py without running the package __init__ files).

The layer computes in the activations' dtype with an fp32 cache and asserts that its decay has
x's dtype: with fp32 a_param it runs in float32 only.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

import torch
from torch import nn

_LAYERS = None


def layers():
    """recurrentgemma.torch.layers, imported without the package __init__ files (module doc)."""
    global _LAYERS
    if _LAYERS is None:
        spec = importlib.util.find_spec("recurrentgemma")
        if spec is None or spec.origin is None:
            raise ImportError("recurrentgemma is not installed: pip install --no-deps "
                              "recurrentgemma einops jaxtyping")
        root = os.path.dirname(spec.origin)
        for name, path in (("recurrentgemma", root),
                           ("recurrentgemma.torch", os.path.join(root, "torch"))):
            if name not in sys.modules:
                package = types.ModuleType(name)
                package.__path__ = [path]
                sys.modules[name] = package
        _LAYERS = importlib.import_module("recurrentgemma.torch.layers")
    return _LAYERS


class _Given(nn.Module):
    """A gate 'projection' that returns the given pre-activation, whatever its input."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return self.value


def rg_lru(x, gate_x, gate_a, a_param, reset=None, h0=None, return_last_state=False):
    b, l, d = x.shape
    layer = layers().RGLRU(width=d, num_heads=1, device=x.device, dtype=x.dtype)
    del layer.a_param          # the registered parameter, replaced by the given tensor
    layer.a_param = a_param
    layer.input_gate = _Given(gate_x)
    layer.a_gate = _Given(gate_a)
    segment_pos = torch.ones((b, l), dtype=torch.int32, device=x.device)
    if reset is not None:
        segment_pos = torch.where(reset, torch.zeros_like(segment_pos), segment_pos)
    y, last = layer(x, segment_pos, cache=h0, return_cache=True)
    return (y, last) if return_last_state else y
