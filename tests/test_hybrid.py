"""The hybrid (attention + Mamba) stack: the oracle's pieces (oracle/hybrid.py) against exact cases
and float64 formulas; our NumPy and torch stacks (implementations/{numpy,torch}/hybrid.py) against
the oracle, prefill against decode, prefix prefill + decode, causality, batch independence, NumPy
against torch, the weights exchange and input checking.

Tolerances: the oracle's first-order bound E (units of u) of an accurate implementation, in
properties/tolerance.py's form SAFETY u E + output rounding.  Two runs that are each within tol
of the exact result are within 2 tol of each other (prefill vs decode, NumPy vs torch); there the
bound comes from ``hybrid_error_bound`` (the float64 pass only, no multiple precision).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssm_conformance.implementations.numpy import hybrid as nh
from ssm_conformance.implementations.numpy.hybrid import HybridConfig, HybridWeights
from ssm_conformance.implementations.torch import hybrid as th
from ssm_conformance.oracle import hybrid as oh
from ssm_conformance.properties.tolerance import tolerance

def small(mixer="mamba1", **kw):
    base = dict(d_model=8, n_layers=4, pattern="MMAM", mixer=mixer, n_heads=2, d_state=4, d_conv=3,
                headdim=4, chunk_size=4, mlp_hidden=12)
    base.update(kw)
    return HybridConfig(**base)


def tol_of(ref, dtype):
    return tolerance(ref, oh.tolerance_terms(ref), dtype)


def bound_tol(x, cfg, params, dtype):
    """Tolerance from the float64 error-bound pass alone (as tol_of, without the oracle value)."""
    value, E = oh.hybrid_error_bound(x, cfg, params)
    return tolerance(oh.Reference(value, 0.0, {"forward_error": E}), [(1.0, E)], dtype)


def decode_all(stack, x, state=None, start=0):
    st = stack.init_state(x.shape[0]) if state is None else state
    return [stack.step(x[:, t], st)[0] for t in range(start, x.shape[1])], st


def T(a, dtype=torch.float64):
    return torch.from_numpy(np.asarray(a)).to(dtype)


# ================================================================================================
# Oracle pieces
# ================================================================================================

def test_rms_norm_exact_constant_rows():
    """x = c (1, ..., 1), eps = 0: x / sqrt(mean x^2) = sign(c) exactly, so y = sign(c) w."""
    w = np.array([0.5, -1.25, 3.0, 7.0])
    x = np.array([[3.0] * 4, [-0.125] * 4, [1e-30] * 4])
    ref = oh.rms_norm(x, w, eps=0.0)
    np.testing.assert_array_equal(ref.value, np.sign(x[:, :1]) * w)


def test_layer_norm_exact_two_elements():
    """x = (a, b), eps = 0: x - mean = +-(a - b)/2, var = ((a - b)/2)^2, so y = +-w + bias."""
    w, bias = np.array([1.5, -2.0]), np.array([0.25, 4.0])
    x = np.array([[3.0, -1.0], [-7.5, 2.0]])
    ref = oh.layer_norm(x, w, bias, eps=0.0)
    s = np.sign(x[:, 0] - x[:, 1])
    np.testing.assert_array_equal(ref.value, np.stack([s, -s], axis=1) * w + bias)


def test_pieces_against_float64_formulas():
    """Float64 formulas written here (loops for GELU via math.erf) lie within the oracle's
    tolerance at u = 2^-53, and the tolerance is small (not vacuous)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6))
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    up, gate, down = rng.standard_normal((5, 6)), rng.standard_normal((5, 6)), rng.standard_normal((6, 5))
    silu = lambda t: t / (1 + np.exp(-t))                                           # noqa: E731
    gelu = np.vectorize(lambda t: 0.5 * t * (1 + math.erf(t / math.sqrt(2))))
    xc = x - x.mean(axis=1, keepdims=True)
    cases = [
        (oh.rms_norm(x, w, 1e-5), x / np.sqrt((x * x).mean(axis=1, keepdims=True) + 1e-5) * w),
        (oh.layer_norm(x, w, b, 1e-5), xc / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + 1e-5) * w + b),
        (oh.mlp(x, up, down, gate), (silu(x @ gate.T) * (x @ up.T)) @ down.T),
        (oh.mlp(x, up, down, activation="gelu"), gelu(x @ up.T) @ down.T),
        (oh.mlp(x, up, down, activation="silu"), silu(x @ up.T) @ down.T),
    ]
    for ref, want in cases:
        tol = tol_of(ref, "float64")
        assert np.all(np.abs(want - ref.value) <= tol)
        assert np.max(tol / np.abs(ref.value).max()) < 1e-12


def test_piece_bounds_cover_float32_computations():
    """The same formulas in float32 (inputs float32) are within the bound at u = 2^-24."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 16)).astype(np.float32)
    w = (1 + 0.1 * rng.standard_normal(16)).astype(np.float32)
    up = (rng.standard_normal((24, 16)) / 4).astype(np.float32)
    gate = (rng.standard_normal((24, 16)) / 4).astype(np.float32)
    down = (rng.standard_normal((16, 24)) / 5).astype(np.float32)
    silu = lambda t: t / (np.float32(1) + np.exp(-t))                              # noqa: E731
    d64 = lambda a: a.astype(np.float64)                                           # noqa: E731
    eps = np.float32(1e-5)
    got = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * w
    ref = oh.rms_norm(d64(x), d64(w), 1e-5)
    assert np.all(np.abs(d64(got) - ref.value) <= tol_of(ref, "float32"))
    got = (silu(x @ gate.T) * (x @ up.T)) @ down.T
    ref = oh.mlp(d64(x), d64(up), d64(down), d64(gate))
    assert np.all(np.abs(d64(got) - ref.value) <= tol_of(ref, "float32"))


def test_piece_inputs_checked():
    with pytest.raises(ValueError, match="weight must have shape"):
        oh.rms_norm(np.ones((2, 3)), np.ones(4))
    with pytest.raises(ValueError, match="down_weight must have shape"):
        oh.mlp(np.ones((2, 3)), np.ones((5, 3)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="activation"):
        oh.mlp(np.ones((2, 3)), np.ones((5, 3)), np.ones((3, 5)), np.ones((5, 3)), activation="gelu")


# ================================================================================================
# The stack against the oracle
# ================================================================================================

@pytest.mark.parametrize("mixer,norm,mlp", [("mamba1", "rmsnorm", "gated_silu"), ("mamba2", "layernorm", "gelu"),
                                            ("mamba2", "rmsnorm", "silu")])
def test_numpy_stack_against_oracle(mixer, norm, mlp):
    """Prefill and decode of the float64 NumPy stack, within the oracle's tolerance at u = 2^-53;
    the tolerance is far below the output (so e.g. a misplaced eps would fail)."""
    cfg = small(mixer, norm=norm, mlp=mlp)
    W = HybridWeights.random(cfg, seed=3)
    x = np.random.default_rng(4).standard_normal((2, 7, 8))
    ref = oh.hybrid_stack(x, cfg, W.to_dict())
    tol = tol_of(ref, "float64")
    stack = nh.HybridStack(W)
    assert np.all(np.abs(stack.forward(x) - ref.value) <= tol)
    assert np.all(np.abs(np.stack(decode_all(stack, x)[0], axis=1) - ref.value) <= tol)
    assert np.max(tol) < 1e-11 * np.abs(ref.value).max()


@pytest.mark.parametrize("mixer", ["mamba1", "mamba2"])
def test_torch_float32_stack_against_oracle(mixer):
    """Weights held in float32 (exported exactly with to_numpy), inputs rounded to float32, the
    oracle on those values: prefill, decode and prefix prefill + decode within tol at 2^-24."""
    cfg = small(mixer)
    stack = th.HybridStack(HybridWeights.random(cfg, seed=5))           # float32 parameters
    x = T(np.random.default_rng(6).standard_normal((2, 7, 8)), torch.float32)
    ref = oh.hybrid_stack(x.double().numpy(), cfg, stack.to_dict())
    tol = tol_of(ref, "float32")
    with torch.no_grad():
        outs = {"prefill": stack(x), "decode": torch.stack(decode_all(stack, x)[0], 1)}
        st = stack.init_state(2)
        head = stack(x[:, :3], st)
        outs["prefix+decode"] = torch.cat([head, torch.stack(decode_all(stack, x, st, 3)[0], 1)], 1)
    for name, y in outs.items():
        assert y.dtype == torch.float32
        assert np.all(np.abs(y.double().numpy() - ref.value) <= tol), name


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_torch_half_activations_against_oracle(dtype):
    """bf16 / fp16 activations: computed in float32 inside, returned in the half dtype."""
    cfg = small("mamba2", pattern="MA", n_layers=2)
    stack = th.HybridStack(HybridWeights.random(cfg, seed=7))
    x = T(np.random.default_rng(8).standard_normal((1, 6, 8)), getattr(torch, dtype))
    ref = oh.hybrid_stack(x.double().numpy(), cfg, stack.to_dict())
    with torch.no_grad():
        y = stack(x)
    assert y.dtype == x.dtype
    assert np.all(np.abs(y.double().numpy() - ref.value) <= tol_of(ref, dtype))


def test_tolerance_rejects_wrong_stacks(monkeypatch):
    """Not vacuous: the NumPy stack with its attention mask off by one (each query also sees the
    next key) fails even the float32 tolerance; RMSNorm with eps outside the root fails float64."""
    cfg = small("mamba1")
    W = HybridWeights.random(cfg, seed=9)
    x = np.random.default_rng(10).standard_normal((1, 6, 8))
    ref = oh.hybrid_stack(x, cfg, W.to_dict())
    right = nh.attention
    monkeypatch.setattr(nh, "attention", lambda q, k, v, is_causal: right(q, k, v, is_causal, offset=1))
    assert np.max(np.abs(nh.HybridStack(W).forward(x) - ref.value) / tol_of(ref, "float32")) > 100
    monkeypatch.undo()
    monkeypatch.setattr(nh, "rms_norm", lambda v, w, eps: v / (np.sqrt(np.mean(v * v, -1, keepdims=True)) + eps) * w)
    assert np.max(np.abs(nh.HybridStack(W).forward(x) - ref.value) / tol_of(ref, "float64")) > 100


# ================================================================================================
# Modes, causality, batches, backends (no multiple precision: bound from the float64 pass)
# ================================================================================================

@pytest.mark.parametrize("mixer", ["mamba1", "mamba2"])
def test_prefill_decode_and_chunked_prefill_agree(mixer):
    """Whole-sequence prefill == token-by-token decode == prefill(prefix) then decode ==
    prefill in two chunks (the second continuing from the state: a bottom-right aligned
    attention mask over the cache), within 2 tol, for NumPy (float64) and torch (float32)."""
    cfg = small(mixer, chunk_size=3)
    W = HybridWeights.random(cfg, seed=11)
    x = np.random.default_rng(12).standard_normal((2, 8, 8))
    tol64 = bound_tol(x, cfg, W.to_dict(), "float64")
    ns = nh.HybridStack(W)
    full = ns.forward(x)
    st = ns.init_state(2)
    variants = {"decode": np.stack(decode_all(ns, x)[0], 1)}
    head = ns.forward(x[:, :5], st)
    variants["prefix+decode"] = np.concatenate([head, np.stack(decode_all(ns, x, st, 5)[0], 1)], 1)
    st = ns.init_state(2)
    variants["two chunks"] = np.concatenate([ns.forward(x[:, :3], st), ns.forward(x[:, 3:], st)], 1)
    assert st.position == 8
    for name, y in variants.items():
        assert np.all(np.abs(y - full) <= 2 * tol64), name

    ts = th.HybridStack(W)
    x32 = T(x, torch.float32)
    tol32 = bound_tol(x32.double().numpy(), cfg, ts.to_dict(), "float32")
    with torch.no_grad():
        full = ts(x32).double().numpy()
        st = ts.init_state(2)
        two = torch.cat([ts(x32[:, :3], st), ts(x32[:, 3:], st)], 1).double().numpy()
        dec = torch.stack(decode_all(ts, x32)[0], 1).double().numpy()
    assert np.all(np.abs(two - full) <= 2 * tol32) and np.all(np.abs(dec - full) <= 2 * tol32)


@pytest.mark.parametrize("mixer", ["mamba1", "mamba2"])
def test_causality(mixer):
    """Changing token t changes no output before t (exactly: masked keys and later inputs enter
    with weight 0), and does change the output at t."""
    cfg = small(mixer)
    W = HybridWeights.random(cfg, seed=13)
    x = np.random.default_rng(14).standard_normal((1, 7, 8))
    for t in (2, 5):
        x2 = x.copy()
        x2[:, t] += 1.0
        for run in (nh.HybridStack(W).forward,
                    lambda a: th.HybridStack(W, dtype=torch.float64)(T(a)).detach().numpy()):
            y, y2 = run(x), run(x2)
            np.testing.assert_array_equal(y[:, :t], y2[:, :t])
            assert np.all(np.abs(y[:, t] - y2[:, t]).max() > 1e-3)


def test_batch_independence_and_numpy_equals_torch():
    """Each sequence of a batch gives what it gives alone (within 2 tol: other matrix shapes may
    round differently), and NumPy float64 == torch float64 within 2 tol."""
    cfg = small("mamba2")
    W = HybridWeights.random(cfg, seed=15)
    x = np.random.default_rng(16).standard_normal((3, 6, 8))
    tol = bound_tol(x, cfg, W.to_dict(), "float64")
    ns, ts = nh.HybridStack(W), th.HybridStack(W, dtype=torch.float64)
    y = ns.forward(x)
    for i in range(3):
        assert np.all(np.abs(ns.forward(x[i:i + 1]) - y[i:i + 1]) <= 2 * tol[i:i + 1])
    assert np.all(np.abs(ts(T(x)).detach().numpy() - y) <= 2 * tol)


# ================================================================================================
# Configuration, weights exchange, errors
# ================================================================================================

def test_patterns_and_jamba_placement():
    assert small(pattern="MA", n_layers=4).layer_types == ("mamba", "attention") * 2
    assert small(pattern=["A", "mamba", "M", "attention"]).layer_types == ("attention", "mamba", "mamba", "attention")
    cfg = HybridConfig.jamba(8, 16, attn_period=8, attn_offset=4, n_heads=2)
    assert [i for i, t in enumerate(cfg.layer_types) if t == "attention"] == [4, 12]


def test_weights_exchange_roundtrip():
    """NumPy -> dict -> torch (float64) -> NumPy gives the same arrays; float32 parameters export
    their float32 values exactly; Mamba-2 and LayerNorm biases included."""
    cfg = small("mamba2", norm="layernorm", mlp="gelu")
    W = HybridWeights.random(cfg, seed=17)
    d = W.to_dict()
    assert "layers.0.mixer_norm.bias" in d and "layers.2.mixer.q_proj_weight" in d
    back = th.HybridStack.from_dict(cfg, d, dtype=torch.float64).to_dict()
    assert back.keys() == d.keys()
    for k in d:
        np.testing.assert_array_equal(back[k], d[k])
    d32 = th.HybridStack(W).to_dict()
    for k in d:
        np.testing.assert_array_equal(d32[k], d[k].astype(np.float32).astype(np.float64))
    again = nh.HybridWeights.from_dict(cfg, d32).to_dict()
    assert all(np.array_equal(again[k], d32[k]) for k in d)


@pytest.mark.parametrize("kw,match", [
    (dict(pattern="MXA"), "pattern string must consist"),
    (dict(pattern="MMA", n_layers=4), "multiple of the pattern length"),
    (dict(pattern=["M", "A"], n_layers=4), "needs n_layers = 4 entries"),
    (dict(n_heads=3), "multiple of n_heads"),
    (dict(mixer="mamba3"), "mixer must be one of"),
    (dict(mixer="mamba2", headdim=5), "multiple of headdim"),
    (dict(mlp="relu"), "mlp must be one of"),
    (dict(d_state=0), "d_state must be a positive integer"),
])
def test_bad_configs(kw, match):
    with pytest.raises(ValueError, match=match):
        small(**kw)


def test_bad_weights_and_inputs():
    cfg = small("mamba1")
    W = HybridWeights.random(cfg, seed=18)
    d = W.to_dict()
    missing = dict(d)
    del missing["layers.1.mixer.A_log"]
    with pytest.raises(ValueError, match=r"missing parameter 'layers.1.mixer.A_log' of shape \(16, 4\)"):
        HybridWeights.from_dict(cfg, missing)
    bad = dict(d, **{"layers.2.mixer.k_proj_weight": np.ones((8, 7))})
    with pytest.raises(ValueError, match=r"'layers.2.mixer.k_proj_weight' must have shape \(8, 8\)"):
        HybridWeights.from_dict(cfg, bad)
    with pytest.raises(ValueError, match="not used by this config"):
        HybridWeights.from_dict(cfg, dict(d, **{"layers.9.mlp.up_weight": np.ones(3)}))
    with pytest.raises(ValueError, match="multiple of the pattern length|missing parameter"):
        HybridWeights.from_dict(small("mamba1", pattern="MA", n_layers=2), d)
    with pytest.raises(ValueError, match="shape"):
        oh.hybrid_stack(np.ones((1, 3, 8)), cfg, bad)
    ns, ts = nh.HybridStack(W), th.HybridStack(W)
    with pytest.raises(ValueError, match=r"x must have shape \(b, l, d_model\) with d_model = 8"):
        ns.forward(np.ones((1, 3, 7)))
    with pytest.raises(ValueError, match=r"x must have shape \(b, d_model\)"):
        ts.step(torch.ones(1, 1, 8), ts.init_state(1))
    with pytest.raises(ValueError, match="made for batch 2"):
        ns.step(np.ones((1, 8)), ns.init_state(2))
    with pytest.raises(TypeError, match="HybridState"):
        ts.forward(torch.ones(1, 3, 8), state=ns.init_state(1))
    with pytest.raises(TypeError, match="HybridWeights"):
        nh.HybridStack(d)
