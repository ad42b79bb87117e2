"""Properties of OUR hybrid (Mamba + attention) stacks, implementations/{numpy,torch}/hybrid.py,
on drawn configurations, weights and inputs (properties/strategies/hybrid.py).  These judge our
own code (no user subject, no ``ssm_role``): ``--ssm-subject`` deselects them.

The NumPy stack computes in float64; the torch stack in the drawn dtype (float32 or float64), its
parameters in that dtype.  Both run the same weights: the torch stack is built from the drawn
NumPy weights and exports them back (``to_numpy``: the float32 values exactly), and the NumPy
stack, the oracle and the error bound all read that export.  Inputs are rounded to the dtype.

Tolerances: the first-order error bound E of oracle/hybrid.py (units of u, per output element),
turned into tol = SAFETY u E + output rounding by properties/tolerance.py.  An accurate
implementation in dtype u is within tol of the exact result, so

  * against the oracle (mpmath, small sizes):  |y - exact| <= tol                  (E from the oracle)
  * two runs of the same exact function, each within its own tol of it (prefill vs decode,
    prefix prefill + decode vs prefill, one sequence alone vs in a batch, NumPy vs torch):
        |y1 - y2| <= |y1 - exact| + |exact - y2| <= tol1 + tol2
    (2 tol for one dtype); E from ``hybrid_error_bound``, the oracle's float64 pass alone (cheap,
    no multiple precision);
  * causality: outputs before the changed position t have the same exact value for both inputs
    and the same bound (E at position s < t is a sum over the Jacobian of output s, which sees
    only tokens <= s), so they differ by at most 2 tol.
No other constant enters.  The oracle property shows, at the small sizes it can afford, that
both backends do sit within tol of the exact result, in both modes; the others extend the
comparison to longer sequences and batches where only the bound is computed.

Each comparison reports its largest error / tolerance to Hypothesis (``target``): the target
phase steers towards larger ratios, and ``--hypothesis-show-statistics`` prints the highest seen.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, target

from ssm_conformance.implementations.numpy import hybrid as nh
from ssm_conformance.implementations.torch import hybrid as th
from ssm_conformance.oracle import hybrid as oracle_hybrid
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.properties.strategies.hybrid import hybrid_cases, oracle_cases
from ssm_conformance.properties.tolerance import tolerance


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny tensors: one thread is fastest, and the machine is shared
    yield
    torch.set_num_threads(n)


# ================================================================================================
# Building the stacks of a case, running them, judging
# ================================================================================================

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
BACKENDS = ("numpy", "torch")


class Stacks:
    """The case's stacks: torch in case.dtype, NumPy (float64) with the torch stack's exported
    weights, the input rounded to case.dtype (as float64 values for NumPy and the oracle)."""

    def __init__(self, case):
        self.case = case
        self.torch = th.HybridStack(case.weights(), dtype=TORCH_DTYPES[case.dtype])
        self.params = self.torch.to_dict()
        self.numpy = nh.HybridStack(nh.HybridWeights.from_dict(case.config, self.params))

    def rounded(self, x):
        """x rounded to the case's dtype, as float64 values."""
        return x.astype(self.case.dtype).astype(np.float64)

    def prefill(self, backend, x, state=None):
        if backend == "numpy":
            return self.numpy.forward(x, state)
        with torch.no_grad():
            y = self.torch(torch.from_numpy(x).to(TORCH_DTYPES[self.case.dtype]), state)
        return y.double().numpy()

    def decode(self, backend, x, state=None):
        """Token by token from ``state`` (a fresh one when None): (b, l, d)."""
        stack = self.numpy if backend == "numpy" else self.torch
        state = stack.init_state(x.shape[0]) if state is None else state
        if backend == "numpy":
            return np.stack([stack.step(x[:, t], state)[0] for t in range(x.shape[1])], axis=1)
        xt = torch.from_numpy(x).to(TORCH_DTYPES[self.case.dtype])
        with torch.no_grad():
            ys = [stack.step(xt[:, t], state)[0] for t in range(x.shape[1])]
        return torch.stack(ys, dim=1).double().numpy()

    def state(self, backend, batch):
        return (self.numpy if backend == "numpy" else self.torch).init_state(batch)

    def dtype(self, backend):
        """The dtype a backend computes in (its unit roundoff enters the tolerance)."""
        return "float64" if backend == "numpy" else self.case.dtype

    def bound(self, x):
        """The oracle's float64 bound pass on x (float64 values already in the dtype): a
        Reference with the float64 value and E, no multiple precision."""
        value, E = oracle_hybrid.hybrid_error_bound(x, self.case.config, self.params)
        return Reference(value, 0.0, {"forward_error": E})

    def tol(self, ref, backend):
        """tol = SAFETY u E + output rounding, u that of the dtype ``backend`` computes in."""
        return tolerance(ref, oracle_hybrid.tolerance_terms(ref), self.dtype(backend))


def check(what, got, want, tol, case):
    """Every |got - want| <= tol; reports the largest ratio to Hypothesis and, on failure, where."""
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = np.abs(got - want)
    ratio = err / tol
    worst = np.unravel_index(np.argmax(np.where(np.isnan(ratio), np.inf, ratio)), ratio.shape)
    if np.isfinite(ratio[worst]):
        target(float(ratio[worst]), label=what)
    if not np.all(err <= tol):
        raise AssertionError(
            f"{what}: largest |error| / tolerance = {ratio[worst]:.3g} at (b, t, i) = "
            f"{tuple(int(j) for j in worst)}: {float(got[worst])!r} against {float(want[worst])!r}, "
            f"error {err[worst]:.3e}, tolerance {tol[worst]:.3e}\n  case: {case}")


# ================================================================================================
# Properties
# ================================================================================================

# The multiple-precision oracle draws the same configurations at smaller sizes (oracle_cases:
# b l n_layers <= 48, l <= 24, d_model <= 8, d_state <= 4): ~0.05 s per example, 100 examples.
@given(case=oracle_cases())
def test_hybrid_stack_matches_oracle(case):
    """Prefill and token-by-token decode, NumPy (float64) and torch (case.dtype): each within
    tol of the oracle's value (mpmath, certified), tol = tolerance(ref, tolerance_terms(ref))."""
    s = Stacks(case)
    x = s.rounded(case.x())
    ref = oracle_hybrid.hybrid_stack(x, case.config, s.params)
    for backend in BACKENDS:
        tol = s.tol(ref, backend)
        check(f"{backend} prefill vs oracle", s.prefill(backend, x), ref.value, tol, case)
        check(f"{backend} decode vs oracle", s.decode(backend, x), ref.value, tol, case)


@given(case=hybrid_cases())
def test_hybrid_prefill_equals_decode(case):
    """The whole sequence at once == token by token (Mamba conv/SSM states, KV cache), within
    2 tol (each mode within tol of the exact result)."""
    s = Stacks(case)
    x = s.rounded(case.x())
    ref = s.bound(x)
    for backend in BACKENDS:
        tol = s.tol(ref, backend)
        check(f"{backend} decode vs prefill", s.decode(backend, x), s.prefill(backend, x),
              2 * tol, case)


@given(case=hybrid_cases(min_length=2))
def test_hybrid_prefix_prefill_then_decode(case):
    """Prefill of x[:, :t] with a state, then the rest token by token == prefill of the whole x;
    the rest as a second prefill from the state (a chunk attending to the cached keys with a
    bottom-right causal mask) too.  Within 2 tol."""
    s = Stacks(case)
    x = s.rounded(case.x())
    t = case.split
    ref = s.bound(x)
    for backend in BACKENDS:
        tol = s.tol(ref, backend)
        whole = s.prefill(backend, x)
        state = s.state(backend, case.batch)
        head = s.prefill(backend, x[:, :t], state)
        got = np.concatenate([head, s.decode(backend, x[:, t:], state)], axis=1)
        check(f"{backend} prefix prefill + decode vs prefill", got, whole, 2 * tol, case)
        state = s.state(backend, case.batch)
        got = np.concatenate([s.prefill(backend, x[:, :t], state), s.prefill(backend, x[:, t:], state)],
                             axis=1)
        check(f"{backend} two-chunk prefill vs prefill", got, whole, 2 * tol, case)


@given(case=hybrid_cases(min_length=2))
def test_hybrid_causal(case):
    """Redrawing the tokens from position t on changes no output before t: within 2 tol (equal
    exact values, equal bounds; module doc)."""
    s = Stacks(case)
    x, x2 = s.rounded(case.x()), s.rounded(case.changed())
    t = case.split
    ref = s.bound(x)
    for backend in BACKENDS:
        tol = s.tol(ref, backend)
        y, y2 = s.prefill(backend, x), s.prefill(backend, x2)
        check(f"{backend} outputs before the change", y2[:, :t], y[:, :t], 2 * tol[:, :t], case)


@given(case=hybrid_cases(min_batch=2))
def test_hybrid_batch_independent(case):
    """Each sequence of a batch gives, alone, what it gives in the batch (prefill and decode),
    within 2 tol (other matrix shapes may round differently)."""
    s = Stacks(case)
    x = s.rounded(case.x())
    ref = s.bound(x)
    for backend in BACKENDS:
        tol = s.tol(ref, backend)
        rows = [x[i:i + 1] for i in range(case.batch)]
        alone = np.concatenate([s.prefill(backend, row) for row in rows])
        check(f"{backend} prefill, each sequence alone vs in the batch", alone, s.prefill(backend, x),
              2 * tol, case)
        alone = np.concatenate([s.decode(backend, row) for row in rows])
        check(f"{backend} decode, each sequence alone vs in the batch", alone, s.decode(backend, x),
              2 * tol, case)


@given(case=hybrid_cases())
def test_hybrid_numpy_equals_torch(case):
    """The NumPy stack (float64) and the torch stack (case.dtype) with the same weights (torch's
    export): within tol_dtype + tol_float64, prefill and decode."""
    s = Stacks(case)
    x = s.rounded(case.x())
    ref = s.bound(x)
    tol = s.tol(ref, "torch") + s.tol(ref, "numpy")
    check("torch prefill vs numpy prefill", s.prefill("torch", x), s.prefill("numpy", x), tol, case)
    check("torch decode vs numpy decode", s.decode("torch", x), s.decode("numpy", x), tol, case)
