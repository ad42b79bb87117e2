"""The scan operator (exact rationals) and the ``linear_scan`` oracle."""
from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest

from ssm_conformance.oracle.scan import (
    IDENTITY, all_bracketings, combine, exact_pairs, linear_scan, linear_scan_vjp, path_bound,
    path_bound_sequential, scan_blelloch, scan_blocks, scan_every_bracketing, scan_hillis_steele,
    scan_sequential, states, tree_slack,
)

U64 = 2.0**-53
U32 = 2.0**-24
SAFETY = 4.0  # as properties/tolerance.py


def _rand_elems(rng, n):
    return exact_pairs(rng.uniform(-1.5, 1.5, n), rng.standard_normal(n))


def _recurrence(elems):
    """h_t = a_t h_{t-1} + b_t directly, h_{-1} = 0 (exact)."""
    h, out = Fraction(0), []
    for a, b in elems:
        h = a * h + b
        out.append(h)
    return out


# ----------------------------------------------------------------------------------------------
# the operator


def test_operator_is_associative_exactly():
    rng = np.random.default_rng(0)
    for _ in range(50):
        e1, e2, e3 = _rand_elems(rng, 3)
        assert combine(e3, combine(e2, e1)) == combine(combine(e3, e2), e1)


def test_operator_is_not_commutative():
    e1, e2 = (Fraction(2), Fraction(1)), (Fraction(3), Fraction(5))
    assert combine(e2, e1) == (Fraction(6), Fraction(8))   # 3 (2 h + 1) + 5
    assert combine(e1, e2) == (Fraction(6), Fraction(11))  # 2 (3 h + 5) + 1
    assert combine(e2, e1) != combine(e1, e2)


def test_identity():
    e = (Fraction(3, 7), Fraction(-2, 5))
    assert combine(e, IDENTITY) == e == combine(IDENTITY, e)


def test_every_bracketing_gives_the_same_exact_result():
    rng = np.random.default_rng(1)
    elems = _rand_elems(rng, 7)
    results = all_bracketings(elems)
    assert len(results) == 132  # Catalan(6): all bracketings of 7 factors
    assert len(set(results)) == 1
    prefixes = scan_every_bracketing(elems)
    assert all(len(s) == 1 for s in prefixes)
    assert [next(iter(s)) for s in prefixes] == scan_sequential(elems)


def test_a_non_associative_operator_is_caught():
    """The bracketing check can fail: (a2, b2) * (a1, b1) = (a2 a1, a2 b1 + b2 + 1) is not
    associative, and the Catalan enumeration sees different values."""
    elems = _rand_elems(np.random.default_rng(2), 4)

    def bad(later, earlier):
        return (later[0] * earlier[0], later[0] * earlier[1] + later[1] + 1)

    vals = {bad(bad(elems[3], elems[2]), bad(elems[1], elems[0])),
            bad(elems[3], bad(elems[2], bad(elems[1], elems[0])))}
    assert len(vals) == 2


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 16])
def test_tree_and_block_scans_equal_the_sequential_scan_exactly(n):
    rng = np.random.default_rng(n)
    elems = _rand_elems(rng, n)
    seq = scan_sequential(elems)
    assert scan_hillis_steele(elems) == seq
    assert scan_blelloch(elems) == seq
    r = random.Random(n)
    for _ in range(5):
        splits = r.sample(range(1, n + 1), k=min(n, r.randint(0, 4)))
        assert scan_blocks(elems, splits) == seq
    assert states(seq) == _recurrence(elems)


# ----------------------------------------------------------------------------------------------
# the oracle


def _half_ulp(v):
    return 0.5 * np.spacing(np.abs(v))


def test_linear_scan_real_is_the_exact_scan_rounded_once():
    rng = np.random.default_rng(3)
    a = rng.uniform(-1.2, 1.2, (3, 40))
    b = rng.standard_normal((3, 40))
    ref = linear_scan(a, b)
    for r in range(3):
        exact = _recurrence(exact_pairs(a[r], b[r]))
        for t, h in enumerate(exact):
            # oracle = exact rounded once, up to its certified error (<= 2^-64 of abs_scan)
            assert abs(Fraction(ref.value[r, t]) - h) <= Fraction(_half_ulp(float(h))) + Fraction(ref.error[r, t])
    assert np.all(ref.error <= 2.0**-64 * ref.magnitudes["abs_scan"])


def test_linear_scan_complex_against_exact_gaussian_rationals():
    rng = np.random.default_rng(4)
    a = rng.uniform(-1, 1, 25) + 1j * rng.uniform(-1, 1, 25)
    b = rng.standard_normal(25) + 1j * rng.standard_normal(25)
    ref = linear_scan(a, b)
    assert ref.value.dtype == np.complex128
    hr, hi = Fraction(0), Fraction(0)
    for t in range(25):
        ar, ai = Fraction(a[t].real), Fraction(a[t].imag)
        hr, hi = ar * hr - ai * hi + Fraction(b[t].real), ar * hi + ai * hr + Fraction(b[t].imag)
        for part, exact in ((ref.value[t].real, hr), (ref.value[t].imag, hi)):
            assert abs(Fraction(part) - exact) <= Fraction(_half_ulp(float(exact))) + Fraction(ref.error[t])


def _float_scan(a, b, dtype):
    h, out = dtype(0), []
    for x, y in zip(a.astype(dtype), b.astype(dtype)):
        h = x * h + y
        out.append(h)
    return np.array(out, dtype=np.float64)


def test_tolerance_from_magnitudes_admits_sequential_and_tree_scans():
    """|fl(h_t) - h_t| <= gamma_{2t+1} abs_scan_t (sequential); tree scans obey the same bound."""
    rng = np.random.default_rng(5)
    length = 200
    a = rng.uniform(-1.05, 1.05, length).astype(np.float32).astype(np.float64)
    b = rng.standard_normal(length).astype(np.float32).astype(np.float64)
    ref = linear_scan(a, b)
    mag, depth = ref.magnitudes["abs_scan"], ref.magnitudes["depth"]
    for u, dtype in ((U64, np.float64), (U32, np.float32)):
        tol = SAFETY * u * depth * mag + (u + U64) * np.abs(ref.value)
        seq = _float_scan(a, b, dtype)
        assert np.all(np.abs(seq - ref.value) <= tol)
        pairs = [(dtype(x), dtype(y)) for x, y in zip(a, b)]
        for tree in (scan_hillis_steele(pairs), scan_blelloch(pairs, identity=(dtype(1), dtype(0)))):
            h = np.array([float(p[1]) for p in tree])
            assert np.all(np.abs(h - ref.value) <= tol)


def _path_by_definition(a, b, step, c0, w=None, h0=None):
    """sum_j |P_{j,t}||b_j| (step (t-j) + c0 + (t-j+1) S_{j,t}) term by term (1-D; h0: j = -1)."""
    length = len(a)
    terms = [(-1, h0)] if h0 is not None else []
    terms += list(enumerate(b))
    out = np.zeros(length)
    for t in range(length):
        for j, bj in terms:
            if j > t:
                continue
            P = np.prod(np.abs(a[j + 1:t + 1]))
            S = 0.0 if w is None else np.sum(w[j + 1:t + 1])
            out[t] += P * abs(bj) * (step * (t - j) + c0 + (t - j + 1) * S)
    return out


@pytest.mark.parametrize("with_w,h0,reverse", [(False, None, False), (True, None, False),
                                               (True, 0.7, False), (True, None, True)])
def test_path_bound_is_its_definition(with_w, h0, reverse):
    """The running recurrences (sequential and blocked) equal the sum over terms of |term| times
    its path's depth (oracle/scan.py, module doc), at lengths with a partial last block."""
    rng = np.random.default_rng(8)
    for length in (1, 2, 5, 17, 40):
        a, b = rng.uniform(0.3, 1.0, length), rng.standard_normal(length)
        w = rng.uniform(0.0, 0.5, length) if with_w else None
        want = _path_by_definition(*(x if x is None or not reverse else x[::-1]
                                     for x in (a, b)), 3.0, 7.0,
                                   None if w is None else (w[::-1] if reverse else w), h0)
        if reverse:
            want = want[::-1]
        for fn in (path_bound, path_bound_sequential):
            H, path = fn(np.abs(a), np.abs(b), 3.0, 7.0, w=w,
                         h0=None if h0 is None else np.array(h0), reverse=reverse)
            np.testing.assert_allclose(path, want, rtol=1e-12)


def test_path_weighted_tolerance_admits_loop_chunks_and_trees():
    """tol = SAFETY u path (+ rounding): a float32 loop, chunked scans with state passing at
    several chunk sizes, Hillis-Steele and Blelloch, on decays near one (long memory) and mixed,
    each within it; path is far below the uniform depth * abs_scan late in a fast channel."""
    rng = np.random.default_rng(5)
    length = 300
    for a in (rng.uniform(-1.05, 1.05, length), rng.uniform(0.97, 1.0, length)):
        a = a.astype(np.float32).astype(np.float64)
        b = rng.standard_normal(length).astype(np.float32).astype(np.float64)
        ref = linear_scan(a, b)
        tol = SAFETY * U32 * ref.magnitudes["path"] + (U32 + U64) * np.abs(ref.value)
        pairs = [(np.float32(x), np.float32(y)) for x, y in zip(a, b)]
        results = [_float_scan(a, b, np.float32)]
        results += [states(scan_blocks(pairs, range(0, length, q))) for q in (1, 7, 64, 256)]
        results += [states(scan_hillis_steele(pairs)),
                    states(scan_blelloch(pairs, identity=(np.float32(1), np.float32(0))))]
        for h in results:
            assert np.all(np.abs(np.array(h, dtype=np.float64) - ref.value) <= tol)
    fast = linear_scan(np.full(4096, 0.5), np.ones(4096))
    ratio = fast.magnitudes["path"] / (fast.magnitudes["depth"] * fast.magnitudes["abs_scan"])
    assert ratio[-1] < (2 * 1 + tree_slack(4096)) / 8192 * 2   # ~ (2 / (1 - a) + c0) / 2t


def test_linear_scan_vjp_path_is_the_products_bound():
    """dL/da_t = g_t h_{t-1}: path_a = path_g |h_{t-1}| + |g_t| path_h + |g_t h_{t-1}|."""
    rng = np.random.default_rng(9)
    a, b, v = rng.uniform(-1, 1, 50), rng.standard_normal(50), rng.standard_normal(50)
    refs, h = linear_scan_vjp(a, b, v), linear_scan(a, b)
    g = refs["b"]
    m = h.magnitudes
    prev, path_prev = np.r_[0.0, m["abs_scan"][:-1]], np.r_[0.0, m["path"][:-1]]
    want = g.magnitudes["path"] * prev + g.magnitudes["abs_grad"] * (path_prev + prev)
    np.testing.assert_allclose(refs["a"].magnitudes["path"], want, rtol=1e-12)


def test_a_commuted_scan_is_far_outside_the_tolerance():
    """A scan that combines in the wrong order (P_t = P_{t-1} o e_t) is caught."""
    rng = np.random.default_rng(6)
    a, b = rng.uniform(-1, 1, 30), rng.standard_normal(30)
    ref = linear_scan(a, b)
    acc, wrong = None, []
    for e in zip(a, b):
        acc = e if acc is None else combine(acc, e)  # operands swapped
        wrong.append(acc[1])
    tol = SAFETY * U32 * ref.magnitudes["depth"] * ref.magnitudes["abs_scan"]
    assert np.max(np.abs(np.array(wrong) - ref.value) / tol) > 1e3


def test_linear_scan_batch_axes_and_length_one():
    a = np.array([[0.5], [2.0]])
    b = np.array([[3.0], [-1.0]])
    ref = linear_scan(a, b)
    assert ref.value.shape == (2, 1)
    np.testing.assert_array_equal(ref.value, b)  # h_0 = b_0
    ref = linear_scan(np.full((2, 3, 4), 0.5), np.ones((2, 3, 4)))
    np.testing.assert_array_equal(ref.value[1, 2], [1.0, 1.5, 1.75, 1.875])


def test_linear_scan_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        linear_scan(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="l >= 1"):
        linear_scan(np.ones((2, 0)), np.ones((2, 0)))
    with pytest.raises(ValueError, match="non-finite"):
        linear_scan(np.array([1.0, math.nan]), np.ones(2))
    with pytest.raises(TypeError, match="numeric"):
        linear_scan(np.array(["a"]), np.ones(1))
