"""Selective scan (Mamba-1) oracle, its one-step decode update, and its vector-Jacobian product.

Semantics: mamba-ssm ``selective_scan_ref`` (mamba_ssm/ops/selective_scan_interface.py) and
``selective_state_update_ref`` (mamba_ssm/ops/triton/selective_state_update.py), read at commit
e9594ce of state-spaces/mamba; see docs/mamba_oracles.md.  Per batch b, channel d, state n:

    x_t   = delta_t + delta_bias                     (bias added BEFORE softplus)
    Dt_t  = softplus(x_t) if delta_softplus else x_t,  softplus(x) = x if x > 20 else log1p(e^x)
    h_t   = exp(Dt_t A) h_{t-1} + Dt_t B_t u_t,       h_{-1} = 0  (ZOH for A, Euler for B)
    y_t   = sum_n C_t h_t          (real A);   y_t = 2 Re sum_n C_t h_t   (complex A: the ref's
                                                `y.real * 2`, no conjugate on C)
    out_t = (y_t + D u_t) * SiLU(z_t)

B, C: constant (d, n); variable (b, n, l); grouped (b, g, n, l), channel d reading group
d // (d/g) (einops ``repeat "B G N L -> B (G H) N L"``).  With complex A a variable B/C is a REAL
array whose last axis interleaves (Re, Im): shape (b, n, 2l) / (b, g, n, 2l), B[..., 2t] + i
B[..., 2t+1] (``view_as_complex(rearrange(B, "... (L two) -> ... L two", two=2))``); a complex
(b, n, l) array is accepted too.  A constant B/C may be real or complex with complex A.

Values are computed in multiple precision (MPFR through gmpy2, at mpmath's working precision) at a
precision certified by ``oracle.precision.verified``.

Error model (for ``properties/tolerance.py``; each oracle output carries these magnitudes;
docs/bounds.md has the derivation and how each admitted algorithm fits):
  The computation is multilinear in its "leaves" a_k = exp(Dt_k A), b_j = Dt_j B_j u_j, C, D u,
  SiLU(z): h_t = sum_j P_{j,t} b_j, P_{j,t} = a_t ... a_{j+1}.
  abs_out  -- the same computation on the absolute values of the leaves (2 * sum for complex A).
  path     -- the PATH-WEIGHTED bound (units of u): the term of b_j in h_t is charged the
              roundings on its own path, carried by |P_{j,t}|:
                  path(h_t) = sum_j |P_{j,t}| |b_j| (3 (t-j) + c0 + (t-j+1) S_{j,t}),
              3 per step (exp, multiply, add), c0 = 2 ceil(log2 l) + 2 + 4 (a tree scan's
              additions; the leaf b_j: bias add, softplus, Dt u, times B), S_{j,t} =
              sum_{k=j+1..t} |Dt_k A| (a decay formed as exp of a cumulative sum of exponents
              within a chunk: that sum's rounding, <= (t-j+1) u S_{j,t}, is a relative error of
              the decay). Loops, chunked scans with state passing at any chunk size, and
              Hillis-Steele / Blelloch trees all fit under it (docs/bounds.md). Evaluated as
              running recurrences beside abs (oracle/scan.py, path_bound): cost linear in l.
              out: |gate| sum_n |C| path(h_t); last state: path(h_{l-1}).
  local_depth -- what the output side adds, times abs_out: n + 8 for out (C.h n, D u 2, gate 5,
              2 Re 1); 0 for a state; for a gradient CHAIN_DEPTH + the terms it sums.
  exp_cond -- the exponents' own roundings: exp(Dt_k A) is computed from the ROUNDED argument,
              whose error u |Dt_k A| (3 + kappa_k) (3: exp2(fl(fl(Dt A) log2 e)), Triton's idiom,
              rounds the argument three times; 1 for a plain exp) becomes a relative error of
              the factor (exp's condition number is its argument).  kappa_k is the relative
              sensitivity of Dt_k to rounding x_k = delta_k + delta_bias (0 without delta_bias;
              |x| sigmoid(x)/softplus(x) with softplus, 1 without) -- also carried by the leaf
              Dt_j B_j u_j.  exp_cond = sum over terms of |term| * (sum of the weights of its
              factors) = d/d(eps) of abs_out with every leaf scaled by e^{eps * weight}, eps -> 0
              (the leaves are nonnegative, so a one-sided difference bounds it from above).
  depth    -- the older uniform bound's rounding count on the longest path, 3 (t+1) + n + 8
              (depth * abs_out >= path + local_depth * abs_out up to c0), kept for callers.
  tolerance: SAFETY * u * (path + local_depth * abs_out + exp_cond) + output rounding.
  VJP: the adjoint Gh_t = conj(a_{t+1}) Gh_{t+1} + 2 g_t conj(C_t) is the same recurrence
  backwards in time, with its own path-weighted bound; a leaf gradient (a product of the adjoint
  and a forward state) errs by each factor's bound times the other's magnitude (vjp_leaf_paths),
  carried to the input gradients by the chain rule on magnitudes (_chain, vjp_paths).
  NOT admitted: a decay exp(G_t - G_j) from ONE cumulative sum G over the whole sequence: its
  exponent errs by ~u |G_t|, growing with t however short the path (tests/subjects: the
  global-cumsum meta-test subjects).
"""
from __future__ import annotations

import contextlib

import gmpy2
import mpmath
import numpy as np

from ssm_conformance.oracle.precision import to_float, verified
from ssm_conformance.oracle.reference import Reference
from ssm_conformance.oracle.scan import path_bound, tree_slack

SOFTPLUS_THRESHOLD = 20.0  # F.softplus(beta=1, threshold=20) and the Triton kernels' `dt <= 20.0`

# The path-weighted bound's constants (module doc, "Error model"; docs/bounds.md)
STEP_DEPTH = 3.0          # per step on a term's path: exp (or exp2), multiply, add
EXP_ARG_ROUNDINGS = 3.0   # exp2(fl(fl(Dt A) log2 e)): Dt A, times log2 e, log2 e itself
SOURCE_LEAF = 4.0         # Dt_j B_j u_j: bias add, softplus, Dt u, times B
ADJOINT_LEAF = 6.0        # the adjoint's source 2 g_out SiLU(z) conj(C): SiLU (4), two products
CHAIN_DEPTH = 10.0        # leaf gradients -> input gradients (_chain): products and softplus'


def out_local_depth(n: int) -> float:
    """What the output side adds to a state's path: C.h (n), D u and its add (2), the gate
    SiLU(z) (4) and its product (1), 2 Re for complex A (1)."""
    return float(n + 8)


def state_c0(length: int) -> float:
    """c0 of the state recurrence: the source leaf's roundings and a tree's additions."""
    return tree_slack(length) + SOURCE_LEAF

# ----------------------------------------------------------------------------------------------
# The value pass runs on MPFR numbers (gmpy2, the library under mpmath's gmpy backend) at mpmath's
# working precision, so that ``oracle.precision.verified`` (mpmath.workdps doubling) drives it:
# the same correctly rounded arithmetic as mpmath, without mpmath's Python-level overhead per
# operation (~16x faster for products and sums on object arrays, measured).


@contextlib.contextmanager
def hp_context():
    """MPFR context at mpmath's current working precision (bits)."""
    with gmpy2.context(gmpy2.get_context(), precision=mpmath.mp.prec):
        yield


def _hp(v):
    """One number -> MPFR, exactly (float64, complex128, Python int, mpmath, gmpy2)."""
    if isinstance(v, mpmath.mpc):
        return gmpy2.mpc(_hp(v.real), _hp(v.imag))
    if isinstance(v, mpmath.mpf):
        sign, man, exp, _ = v._mpf_
        if not man:
            return gmpy2.mpfr(0)
        return gmpy2.mul_2exp(gmpy2.mpfr(-man if sign else man, max(int(man).bit_length(), 2)), exp)
    if isinstance(v, (complex, np.complexfloating)):
        return gmpy2.mpc(complex(v))
    if isinstance(v, (gmpy2.mpfr, gmpy2.mpc)):
        return v
    return gmpy2.mpfr(float(v))


_hp_array = np.frompyfunc(_hp, 1, 1)


def mp_of(v):
    """float64/complex128 array, or object array of mpmath / gmpy2 numbers -> object array of
    MPFR numbers with exactly the same values."""
    return _hp_array(np.asarray(v)).astype(object)


def _to_mpmath(v):
    if isinstance(v, gmpy2.mpc):
        return mpmath.mpc(_to_mpmath(v.real), _to_mpmath(v.imag))
    man, exp = v.as_mantissa_exp()
    return mpmath.mpf((int(man), int(exp)))


to_mpmath = np.frompyfunc(_to_mpmath, 1, 1)  # for callers that continue in mpmath (tests)


def _mp_softplus(x):
    return x if x > SOFTPLUS_THRESHOLD else gmpy2.log1p(gmpy2.exp(x))


def _mp_sigmoid(x):
    return 1 / (1 + gmpy2.exp(-x))


def _mp_silu(x):
    return x * _mp_sigmoid(x)


def _mp_dsilu(x):  # d/dx x sigma(x) = sigma(x) (1 + x (1 - sigma(x)))
    s = _mp_sigmoid(x)
    return s * (1 + x * (1 - s))


def _mp_dsoftplus(x):  # derivative of the thresholded softplus: sigma(x) below, 1 above
    return gmpy2.mpfr(1) if x > SOFTPLUS_THRESHOLD else _mp_sigmoid(x)


mp_exp = np.frompyfunc(gmpy2.exp, 1, 1)
mp_softplus = np.frompyfunc(_mp_softplus, 1, 1)
mp_silu = np.frompyfunc(_mp_silu, 1, 1)
mp_dsilu = np.frompyfunc(_mp_dsilu, 1, 1)
mp_dsoftplus = np.frompyfunc(_mp_dsoftplus, 1, 1)
mp_re = np.frompyfunc(lambda v: v.real, 1, 1)
mp_im = np.frompyfunc(lambda v: v.imag, 1, 1)
mp_conj = np.frompyfunc(lambda v: v.conjugate(), 1, 1)
mp_complex = np.frompyfunc(gmpy2.mpc, 2, 1)


def f_sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def f_softplus(x):
    with np.errstate(over="ignore"):
        return np.where(x > SOFTPLUS_THRESHOLD, x, np.log1p(np.exp(np.minimum(x, SOFTPLUS_THRESHOLD))))


def dsilu_magnitude(z):
    """Magnitude of computing SiLU'(z) = sigma (1 + z (1 - sigma)): sigma (1 + |z|), not |SiLU'(z)|.
    SiLU' vanishes near z = -1.28 by cancellation, and 1 - sigma carries an absolute error ~u
    (times |z|) for large z; both are covered by sigma (1 + |z|) (torch's silu backward uses
    this formula)."""
    return f_sigmoid(z) * (1 + np.abs(z))


def softplus_kappa(x, has_bias, softplus):
    """Relative sensitivity of Dt to the rounding of x = delta + bias (see the module doc)."""
    x = np.asarray(x, dtype=np.float64)
    if not has_bias:
        return np.zeros_like(x)
    if not softplus:
        return np.ones_like(x)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ratio = np.where(x < -30.0, 1.0, f_sigmoid(x) / f_softplus(x))  # -> 1 as x -> -inf
    return np.where(x > SOFTPLUS_THRESHOLD, 1.0, np.abs(x) * ratio)


def dsoftplus_kappa(x, has_bias, softplus):
    """Relative sensitivity of sigmoid(x) (the softplus derivative) to rounding x: |x| (1-sigma)."""
    x = np.asarray(x, dtype=np.float64)
    if not (has_bias and softplus):
        return np.zeros_like(x)
    return np.where(x > SOFTPLUS_THRESHOLD, 0.0, np.abs(x) * (1.0 - f_sigmoid(x)))


class MP:
    """Operations of the value pass (object arrays of MPFR numbers, real or complex)."""
    re = staticmethod(mp_re)
    conj = staticmethod(mp_conj)


class ABS:
    """Operations of the magnitude pass (nonnegative float64 arrays): Re and conj are the
    identity, since |Re w| <= |w| and |conj w| = |w|."""
    re = staticmethod(lambda v: v)
    conj = staticmethod(lambda v: v)


# ----------------------------------------------------------------------------------------------
# input checking


def as_array(x, name, *, real=False):
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a numeric NumPy array, got dtype {arr.dtype}")
    if real and np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    arr = arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries (NaN or Inf)")
    return arr


def check_shape(arr, name, shape, what=None):
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {what or tuple(shape)}, got {arr.shape}")


class _BC:
    """A B or C argument: its kind ('const', 'var', 'group'), the complex (b, d, l, n)-broadcast
    view, and how to map a gradient back to the argument's own shape."""

    def __init__(self, arr, name, b, d, n, l, cplx):
        self.name, self.raw = name, arr  # raw: the validated argument in its input layout
        self.interleaved = False
        if arr.ndim == 2:
            self.kind = "const"
            check_shape(arr, name, (d, n), f"(d, n) = {(d, n)} (constant)")
            if np.iscomplexobj(arr) and not cplx:
                raise TypeError(f"{name} is complex but A is real; complex B/C needs complex A")
        elif arr.ndim in (3, 4):
            self.kind = "var" if arr.ndim == 3 else "group"
            lead = (b,) if arr.ndim == 3 else (b, arr.shape[1])
            if arr.ndim == 4:
                g = arr.shape[1]
                if g < 1 or d % g != 0:
                    raise ValueError(f"{name} has {g} groups, which must divide d = {d}")
            if cplx and not np.iscomplexobj(arr):
                self.interleaved = True
                check_shape(arr, name, lead + (n, 2 * l),
                            f"{lead + (n, 2 * l)}: real, (Re, Im) interleaved on the last axis for complex A")
                arr = arr[..., 0::2] + 1j * arr[..., 1::2]  # exact: pairs two float64s
            else:
                if np.iscomplexobj(arr) and not cplx:
                    raise TypeError(f"{name} is complex but A is real; complex B/C needs complex A")
                check_shape(arr, name, lead + (n, l))
        else:
            raise ValueError(f"{name} must have shape (d, n), (b, n, l) or (b, g, n, l), got {arr.shape}")
        self.arr = arr  # complex (..., l) if interleaved
        self.is_complex = np.iscomplexobj(arr)
        self.full = (b, d, l, n)

    def mp_expanded(self, raw):
        """Raw argument values (float array or object array of mp numbers, input layout) ->
        expanded object array of mp numbers, (Re, Im) pairs joined if interleaved."""
        m = mp_of(raw)
        if self.interleaved:
            m = mp_complex(m[..., 0::2], m[..., 1::2])
        return self.expand(m)

    def expand(self, X):
        """(array of this argument's shape, values of any type) -> read-only (b, d, l, n) view;
        channel d of a grouped argument reads group d // (d/g)."""
        d = self.full[1]
        if self.kind == "const":
            X = X[None, :, None, :]
        elif self.kind == "var":
            X = np.swapaxes(X, 1, 2)[:, None, :, :]
        else:
            X = np.swapaxes(X[:, np.arange(d) // (d // X.shape[1])], 2, 3)
        return np.broadcast_to(X, self.full)

    def reduce(self, G):
        """Gradient w.r.t. the (b, d, l, n) expansion -> gradient w.r.t. the argument."""
        if self.kind == "const":
            return G.sum(axis=(0, 2))
        if self.kind == "var":
            return np.swapaxes(G.sum(axis=1), 1, 2)
        b, d, l, n = G.shape
        g = self.arr.shape[1]
        return np.swapaxes(G.reshape(b, g, d // g, l, n).sum(axis=2), 2, 3)

    def reduce_count(self, b, l):
        """How many terms each gradient element sums (the depth of that reduction)."""
        d = self.full[1]
        if self.kind == "const":
            return b * l
        return d if self.kind == "var" else d // self.arr.shape[1]

    def to_input_layout(self, G, values_complex):
        """Map a complex gradient back to interleaved (Re, Im) when the input was interleaved.
        values_complex: G's elements are complex (mp value pass) rather than magnitudes."""
        if not self.interleaved:
            return G
        out = np.empty(G.shape[:-1] + (2 * G.shape[-1],), dtype=G.dtype)
        out[..., 0::2] = mp_re(G) if values_complex else G
        out[..., 1::2] = mp_im(G) if values_complex else G
        return out


def _check_inputs(u, delta, A, B, C, D, z, delta_bias):
    u = as_array(u, "u", real=True)
    if u.ndim != 3 or 0 in u.shape:
        raise ValueError(f"u must have shape (b, d, l) with every size >= 1, got {u.shape}")
    b, d, l = u.shape
    delta = as_array(delta, "delta", real=True)
    check_shape(delta, "delta", u.shape, f"(b, d, l) = {u.shape}")
    A = as_array(A, "A")
    if A.ndim != 2 or A.shape[0] != d or A.shape[1] < 1:
        raise ValueError(f"A must have shape (d, n) = ({d}, n) with n >= 1, got {A.shape}")
    n = A.shape[1]
    cplx = np.iscomplexobj(A)
    Bi = _BC(as_array(B, "B"), "B", b, d, n, l, cplx)
    Ci = _BC(as_array(C, "C"), "C", b, d, n, l, cplx)
    if D is not None:
        D = as_array(D, "D", real=True)
        check_shape(D, "D", (d,))
    if z is not None:
        z = as_array(z, "z", real=True)
        check_shape(z, "z", u.shape, f"(b, d, l) = {u.shape}")
    if delta_bias is not None:
        delta_bias = as_array(delta_bias, "delta_bias", real=True)
        check_shape(delta_bias, "delta_bias", (d,))
    return u, delta, A, Bi, Ci, D, z, delta_bias, cplx


def _raw(u, delta, A, Bi, Ci, D, z, delta_bias):
    return dict(u=u, delta=delta, A=A, B=Bi.raw, C=Ci.raw, D=D, z=z, delta_bias=delta_bias)


# ----------------------------------------------------------------------------------------------
# the computation on leaves (shared by the multiple-precision value pass and the float64
# magnitude pass: only +, *, sums, Re and conj, so on absolute values it gives the magnitude)


def forward_core(dA, bu, Cx, Du, gate, cplx, ops, h0=None, keep_states=False):
    """h_t = dA_t h_{t-1} + bu_t (h_{-1} = h0 or 0); y_t = [2 Re] sum_n C_t h_t;
    out = (y + Du) * gate.  dA, bu (b, d, l, n); Cx broadcastable; Du, gate (b, d, l) or None.
    Returns out, pre (= y + Du), last state, [states]."""
    length = bu.shape[2]
    h, ys, states = h0, [], []
    for t in range(length):
        h = bu[:, :, t] if h is None else dA[:, :, t] * h + bu[:, :, t]
        if keep_states:
            states.append(h)
        ys.append((h * Cx[:, :, t]).sum(axis=-1))
    y = np.stack(ys, axis=2)
    if cplx:
        y = 2 * ops.re(y)
    pre = y if Du is None else y + Du
    out = pre if gate is None else pre * gate
    return out, pre, h, states


def backward_core(gout, dA, bu, Cx, gate, pre, states, cplx, ops, h0=None, glast=None):
    """Adjoint of forward_core.  Complex gradients follow PyTorch: G = dL/dRe + i dL/dIm, so for
    w = a v: G_a = G_w conj(v), G_v = G_w conj(a); for y = 2 Re(C h): G_h = 2 G_y conj(C).
    Returns gradients w.r.t. the leaves: dict dA, bu, Cx (b, d, l, n), Du, gate (b, d, l),
    and h0 (if given)."""
    b, d, length, n = bu.shape
    g_pre = gout if gate is None else gout * gate
    coef = 2 if cplx else 1
    G_dA = np.empty(bu.shape, dtype=object if bu.dtype == object else np.float64)
    G_bu = np.empty_like(G_dA)
    G_C = np.empty_like(G_dA)
    Gh = None
    for t in reversed(range(length)):
        gy = coef * g_pre[:, :, t, None]
        from_y = gy * ops.conj(Cx[:, :, t])
        Gh = from_y if Gh is None else from_y + ops.conj(dA[:, :, t + 1]) * Gh
        if t == length - 1 and glast is not None:
            Gh = Gh + glast
        G_bu[:, :, t] = Gh
        prev = states[t - 1] if t > 0 else h0
        G_dA[:, :, t] = 0 * Gh if prev is None else Gh * ops.conj(prev)
        G_C[:, :, t] = gy * ops.conj(states[t])
    grads = {"dA": G_dA, "bu": G_bu, "Cx": G_C, "Du": g_pre,
             "gate": None if gate is None else gout * pre}
    if h0 is not None:
        grads["h0"] = ops.conj(dA[:, :, 0]) * Gh
    return grads


# ----------------------------------------------------------------------------------------------
# the path-weighted bound (module doc, "Error model"), on the magnitude leaves of _leaves_abs


def exponent_magnitude(lv):
    """|Dt_k A| (b, d, l, n): the exponent of each decay (S_{j,t} sums it along a path)."""
    return lv["Dt"][..., None] * lv["A"][None, :, None, :]


def forward_paths(lv, cplx, h0=None):
    """Path-weighted bounds (units of u) from the magnitude leaves ``lv`` (and |h_{-1}| h0):
    H, E (b, d, l, n): the states' abs and path (path_bound with STEP_DEPTH a step, c0 =
    state_c0(l), the exponents |Dt A|); y (b, d, l): sum_n |C| E ([x2] complex A); out: y times
    |SiLU(z)|; last (b, d, n)."""
    shape = np.broadcast_shapes(lv["dA"].shape, lv["bu"].shape)
    H, E = path_bound(lv["dA"], lv["bu"], STEP_DEPTH, state_c0(shape[2]),
                      w=exponent_magnitude(lv), h0=None if h0 is None else np.abs(h0), axis=2)
    with np.errstate(invalid="ignore", over="ignore"):
        y = (2.0 if cplx else 1.0) * (E * lv["Cx"]).sum(axis=-1)
        out = y if lv["gate"] is None else y * lv["gate"]
    return dict(H=H, E=E, y=y, out=out, last=E[:, :, -1])


def vjp_leaf_paths(lv, gout, glast, cplx, fwd):
    """Path-weighted bounds (units of u) of the leaf gradients of backward_core, from the
    magnitude leaves, |grad_out|, |grad_last_state| and forward_paths' ``fwd``. The adjoint
    Gh_t = conj(dA_{t+1}) Gh_{t+1} + 2 g_pre_t conj(C_t) is the same recurrence backwards in time
    (path_bound in reverse, c0 = tree_slack(l) + ADJOINT_LEAF); a leaf gradient that is a
    product of the adjoint and a forward state errs by each factor's bound times the other's
    magnitude plus one rounding of the product."""
    b, d, length, n = fwd["H"].shape
    H, E = fwd["H"], fwd["E"]
    gate = lv["gate"]
    g_pre = gout if gate is None else gout * gate
    gy = (2.0 if cplx else 1.0) * g_pre[..., None]
    src = np.array(np.broadcast_to(gy * lv["Cx"], H.shape))
    if glast is not None:
        src[:, :, -1] += glast
    a_next = np.ones(H.shape)
    a_next[:, :, :-1] = np.broadcast_to(lv["dA"], H.shape)[:, :, 1:]
    w_next = np.zeros(H.shape)
    w_next[:, :, :-1] = np.broadcast_to(exponent_magnitude(lv), H.shape)[:, :, 1:]
    GH, EG = path_bound(a_next, src, STEP_DEPTH, tree_slack(length) + ADJOINT_LEAF, w=w_next,
                        axis=2, reverse=True)
    Hp, Ep = np.zeros_like(H), np.zeros_like(E)
    Hp[:, :, 1:], Ep[:, :, 1:] = H[:, :, :-1], E[:, :, :-1]
    abs_y = (2.0 if cplx else 1.0) * (H * lv["Cx"]).sum(axis=-1)
    abs_pre = abs_y if lv["Du"] is None else abs_y + lv["Du"]
    with np.errstate(invalid="ignore", over="ignore"):
        grads = {"bu": EG, "dA": EG * Hp + GH * Ep + GH * Hp, "Cx": gy * (E + 4.0 * H),
                 "Du": 3.0 * g_pre,
                 "gate": None if gate is None else gout * (fwd["y"] + (n + 4.0) * abs_pre)}
    return grads


# ----------------------------------------------------------------------------------------------
# leaves


def _leaves_mp(raw, Bi, Ci, delta_softplus):
    """Inputs (float64 arrays read exactly, or object arrays of mp numbers) -> mpmath leaves at
    the working precision.  raw: dict u, delta, A, B, C, D, z, delta_bias (B, C in input layout)."""
    um, dm, Am = mp_of(raw["u"]), mp_of(raw["delta"]), mp_of(raw["A"])
    x = dm if raw["delta_bias"] is None else dm + mp_of(raw["delta_bias"])[None, :, None]
    Dt = mp_softplus(x) if delta_softplus else x
    Bx, Cx = Bi.mp_expanded(raw["B"]), Ci.mp_expanded(raw["C"])
    D = None if raw["D"] is None else mp_of(raw["D"])
    zm = None if raw["z"] is None else mp_of(raw["z"])
    return dict(
        Dt=Dt, A=Am, u=um, Bx=Bx, Cx=Cx, D=D,
        dA=mp_exp(Dt[..., None] * Am[None, :, None, :]),
        bu=(Dt * um)[..., None] * Bx,
        Du=None if D is None else D[None, :, None] * um,
        gate=None if zm is None else mp_silu(zm),
        dgate=None if zm is None else mp_dsilu(zm),
        dsp=mp_dsoftplus(x) if delta_softplus else None,
    )


def _leaves_abs(u, delta, A, Bi, Ci, D, z, delta_bias, delta_softplus):
    """float64 magnitudes of the leaves, and the exp_cond weight of each (see module doc)."""
    x = delta if delta_bias is None else delta + delta_bias[None, :, None]
    Dt = np.abs(f_softplus(x) if delta_softplus else x)
    kappa = softplus_kappa(x, delta_bias is not None, delta_softplus)
    absA = np.abs(A)
    Bx, Cx = Bi.expand(np.abs(Bi.arr)), Ci.expand(np.abs(Ci.arr))
    with np.errstate(over="ignore", invalid="ignore"):
        lv = dict(
            Dt=Dt, A=absA, u=np.abs(u), Bx=Bx, Cx=Cx,
            dA=np.exp(Dt[..., None] * A.real[None, :, None, :]),  # |e^{Dt A}| = e^{Dt Re A}
            bu=(Dt * np.abs(u))[..., None] * Bx,
            D=None if D is None else np.abs(D),
            Du=None if D is None else np.abs(D)[None, :, None] * np.abs(u),
            gate=None if z is None else np.abs(z * f_sigmoid(z)),
            dgate=None if z is None else dsilu_magnitude(z),
            dsp=None if not delta_softplus else np.where(x > SOFTPLUS_THRESHOLD, 1.0, f_sigmoid(x)),
        )
    weights = dict(
        dA=(Dt[..., None] * absA[None, :, None, :]) * (EXP_ARG_ROUNDINGS + kappa)[..., None],
        bu=kappa[..., None], Dt=kappa,
        dsp=dsoftplus_kappa(x, delta_bias is not None, delta_softplus),
    )
    # a monomial holds at most l factors dA (one per step) and a few of the others
    path = (np.max(np.sum(weights["dA"], axis=2), initial=0.0)
            + 3 * np.max(kappa, initial=0.0) + np.max(weights["dsp"], initial=0.0))
    return lv, weights, path


def scaled(leaves, weights, eps):
    """Leaves with each weighted one multiplied by e^{eps * weight} (for exp_cond)."""
    out = dict(leaves)
    for k, w in weights.items():
        if out.get(k) is not None:
            out[k] = out[k] * np.exp(eps * w)
    return out


def exp_cond_of(run, leaves, weights, path_weight):
    """exp_cond = (F(eps) - F(0)) / eps for each output F of run(), a nonnegative multilinear
    function of the leaves, with each weighted leaf scaled by e^{eps * weight}.  Every monomial
    is then c e^{eps W} with W <= path_weight, convex in eps, so the difference quotient is >= the
    derivative at 0 (an upper bound) and exceeds it by a factor <= e^{eps W} ~ 1 + 2^-20.
    Returns (F(0) list, exp_cond list)."""
    eps = 2.0**-20 / max(1.0, float(path_weight))
    base = run(leaves)
    bumped = run(scaled(leaves, weights, eps))
    out = []
    for f0, f1 in zip(base, bumped):
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.maximum((f1 - f0) / eps, 0.0)
        out.append(np.where(np.isfinite(f0), diff, np.inf))
    return base, out


def verified_many(compute, scales, dps=30):
    """verified() for a computation with several outputs: compute() returns a list of object
    arrays, of the shapes of ``scales``; each element's acceptance is judged against its own
    magnitude (its scale), not against the largest element of all outputs."""
    shapes = [np.shape(s) for s in scales]
    scale = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in scales])
    scale = np.where(np.isfinite(scale), scale, 0.0)

    def flat():
        with hp_context():
            parts = compute()
        return np.concatenate([np.asarray(p, dtype=object).reshape(sh).ravel()
                               for p, sh in zip(parts, shapes)])

    hi, err = verified(flat, dps=dps, scale=scale)
    out, start = [], 0
    for sh in shapes:
        size = int(np.prod(sh))
        out.append((hi[start:start + size].reshape(sh), err[start:start + size].reshape(sh)))
        start += size
    return out


def reference(hi_err, magnitudes, cplx):
    hi, err = hi_err
    return Reference(to_float(hi, complex_out=cplx), err, magnitudes)


# ----------------------------------------------------------------------------------------------
# the oracles


def _depth_out(length, n):
    return 3.0 * np.arange(1, length + 1) + n + 8  # (l,): broadcasts over (b, d, l)


def _depth_state(length):
    return 3.0 * length + 5


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False):
    """Oracle of mamba-ssm ``selective_scan_ref`` (argument order and shapes as there).

    u, delta (b, d, l); A (d, n) real or complex; B, C (d, n) | (b, n, l) | (b, g, n, l)
    (complex A: (b, n, 2l) | (b, g, n, 2l) real interleaved, or complex (.., l)); D, delta_bias
    (d,); z (b, d, l).  Returns Reference out (b, d, l) [, Reference last_state (b, d, n),
    complex for complex A].  Magnitudes: "abs_out", "exp_cond", "depth" (module doc); the last
    state has "abs_state", "exp_cond", "depth" (3 l + 5).
    """
    u, delta, A, Bi, Ci, D, z, delta_bias, cplx = _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    b, d, length = u.shape
    n = A.shape[1]

    def run_abs(lv):
        out, _, last, _ = forward_core(lv["dA"], lv["bu"], lv["Cx"], lv["Du"], lv["gate"], cplx, ABS)
        return [out, last]

    lv_abs, weights, path = _leaves_abs(u, delta, A, Bi, Ci, D, z, delta_bias, delta_softplus)
    (abs_out, abs_last), (cond_out, cond_last) = exp_cond_of(run_abs, lv_abs, weights, path)

    def compute():
        lv = _leaves_mp(_raw(u, delta, A, Bi, Ci, D, z, delta_bias), Bi, Ci, delta_softplus)
        out, _, last, _ = forward_core(lv["dA"], lv["bu"], lv["Cx"], lv["Du"], lv["gate"], cplx, MP)
        return [out, last] if return_last_state else [out]

    paths = forward_paths(lv_abs, cplx)
    scales = [abs_out, abs_last] if return_last_state else [abs_out]
    parts = verified_many(compute, scales)
    out_mag, last_mag = sequence_magnitudes(abs_out, cond_out, abs_last, cond_last, paths, length, n)
    out_ref = reference(parts[0], out_mag, False)
    if not return_last_state:
        return out_ref
    return out_ref, reference(parts[1], last_mag, cplx)


def sequence_magnitudes(abs_out, cond_out, abs_last, cond_last, paths, length, n):
    """The magnitude dicts of a scan's out and last state (module doc): "abs_out"/"abs_state",
    "exp_cond", "path" (forward_paths), "local_depth" (out: out_local_depth(n); state: 0) and
    the older uniform "depth" (3 (t+1) + n + 8 / 3 l + 5)."""
    out = {"abs_out": abs_out, "exp_cond": cond_out, "path": paths["out"],
           "local_depth": out_local_depth(n), "depth": _depth_out(length, n)}
    last = {"abs_state": abs_last, "exp_cond": cond_last, "path": paths["last"],
            "local_depth": 0.0, "depth": _depth_state(length)}
    return out, last


def selective_scan_mp(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """(out, last_state) as object arrays of mpmath numbers, computed at the current working
    precision.  The inputs may be float64 arrays or object arrays of mpmath numbers (finite
    differences in tests)."""
    raw = dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
    _, _, _, Bi, Ci, _, _, _, cplx = _check_inputs(*[_floatish(raw[k]) for k in _ORDER])
    with hp_context():
        lv = _leaves_mp(raw, Bi, Ci, delta_softplus)
        out, _, last, _ = forward_core(lv["dA"], lv["bu"], lv["Cx"], lv["Du"], lv["gate"], cplx, MP)
    return to_mpmath(out), to_mpmath(last)


_ORDER = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def _floatish(v):
    """Object array of mp numbers -> float64/complex128 (for the shape and type checks only)."""
    if v is None:
        return None
    arr = np.asarray(v)
    if arr.dtype == object:
        cplx = any(isinstance(e, (mpmath.mpc, gmpy2.mpc)) for e in arr.flat)
        return to_float(arr, complex_out=cplx)
    return arr


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """Oracle of mamba-ssm ``selective_state_update_ref``: one decode step.

    Contract shapes: state (b, d, n), x, dt (b, d), A (d, n), B, C (b, n), D, dt_bias (d,),
    z (b, d).  The ref's head shapes are accepted too: state (b, h, p, n), x, dt, z (b, h, p),
    A (h, p, n), B, C (b, g, n), D, dt_bias (h, p) -- head hh reads group hh // (h/g).
    Real only (the ref has no complex path).
        dt' = softplus(dt + dt_bias);  new_state = state * exp(dt' A) + dt' B x
        out = (sum_n new_state C + D x) * SiLU(z)
    Returns (out Reference (b, d) | (b, h, p), new_state Reference (b, d, n) | (b, h, p, n)).
    It is one step of the selective scan started from ``state`` (tests check this).
    """
    state = as_array(state, "state", real=True)
    if state.ndim not in (3, 4) or 0 in state.shape:
        raise ValueError(f"state must have shape (b, d, n) or (b, h, p, n), got {state.shape}")
    heads = state.ndim == 4
    b, n = state.shape[0], state.shape[-1]
    chan = state.shape[1:-1]  # (d,) or (h, p)
    dch = int(np.prod(chan))
    x = as_array(x, "x", real=True)
    check_shape(x, "x", (b,) + chan)
    dt = as_array(dt, "dt", real=True)
    check_shape(dt, "dt", (b,) + chan)
    A = as_array(A, "A", real=True)
    check_shape(A, "A", chan + (n,))
    B = as_array(B, "B", real=True)
    C = as_array(C, "C", real=True)
    if heads:
        if B.ndim != 3 or B.shape[0] != b or B.shape[2] != n:
            raise ValueError(f"B must have shape (b, g, n) = ({b}, g, {n}), got {B.shape}")
        g = B.shape[1]
        if g < 1 or chan[0] % g != 0:
            raise ValueError(f"B has {g} groups, which must divide the number of heads {chan[0]}")
        check_shape(C, "C", B.shape)
    else:
        check_shape(B, "B", (b, n))
        check_shape(C, "C", (b, n))
        g = 1
    D = None if D is None else as_array(D, "D", real=True)
    dt_bias = None if dt_bias is None else as_array(dt_bias, "dt_bias", real=True)
    for name, v in (("D", D), ("dt_bias", dt_bias)):
        if v is not None:
            check_shape(v, name, chan)
    if z is not None:
        z = as_array(z, "z", real=True)
        check_shape(z, "z", (b,) + chan)

    # Heads flatten into channels: channel c = hh * p + k reads group hh // (h/g) = c // (dch/g),
    # the grouped-B rule of the scan; B, C become a length-1 grouped (b, g, n, 1).
    def seq(v):  # (b, *chan) -> (b, dch, 1)
        return None if v is None else v.reshape(b, dch, 1)

    def per_channel(v):  # chan -> (dch,)
        return None if v is None else v.reshape(dch)

    out_ref, st_ref = _scan_from_state(
        state.reshape(b, dch, n), seq(x), seq(dt), A.reshape(dch, n),
        B.reshape(b, g, n, 1), C.reshape(b, g, n, 1), per_channel(D), seq(z), per_channel(dt_bias),
        dt_softplus)
    return _reshaped(out_ref, (b,) + chan), _reshaped(st_ref, (b,) + chan + (n,))


def _reshaped(ref, shape):
    mags = {k: (np.reshape(v, shape) if np.ndim(v) > 0 else v) for k, v in ref.magnitudes.items()}
    return Reference(ref.value.reshape(shape), ref.error.reshape(shape), mags)


def _scan_from_state(h0, u, delta, A, B, C, D, z, delta_bias, softplus):
    """Selective scan with initial state h0 (b, d, n) (real), l = 1 here; grouped B, C."""
    u, delta, A, Bi, Ci, D, z, delta_bias, cplx = _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    n = A.shape[1]

    def run_abs(lv):
        out, _, last, _ = forward_core(lv["dA"], lv["bu"], lv["Cx"], lv["Du"], lv["gate"], False, ABS,
                                       h0=lv["h0"])
        return [out[:, :, 0], last]

    lv_abs, weights, path = _leaves_abs(u, delta, A, Bi, Ci, D, z, delta_bias, softplus)
    lv_abs["h0"] = np.abs(h0)
    (abs_out, abs_st), (cond_out, cond_st) = exp_cond_of(run_abs, lv_abs, weights, path)
    h0m = mp_of(h0)

    def compute():
        lv = _leaves_mp(_raw(u, delta, A, Bi, Ci, D, z, delta_bias), Bi, Ci, softplus)
        out, _, last, _ = forward_core(lv["dA"], lv["bu"], lv["Cx"], lv["Du"], lv["gate"], False, MP, h0=h0m)
        return [out[:, :, 0], last]

    p_out, p_st = verified_many(compute, [abs_out, abs_st])
    return (reference(p_out, {"abs_out": abs_out, "exp_cond": cond_out, "depth": float(n + 11)}, False),
            reference(p_st, {"abs_state": abs_st, "exp_cond": cond_st, "depth": 8.0}, False))


# ----------------------------------------------------------------------------------------------
# vector-Jacobian product


def _chain(gl, lv, Bi, Ci, cplx, ops, has):
    """Leaf gradients -> input gradients (same multilinear formulas for values and magnitudes).

    w = Dt A:  G_w = G_dA conj(dA);  G_A = sum_{b,l} G_w Dt;  G_Dt += sum_n Re(G_w conj(A)).
    bu = Dt u B:  G_B = G_bu Dt u;  G_Dt += sum_n Re(G_bu conj(B)) u;  G_u = sum_n Re(G_bu conj(B)) Dt.
    Du:  G_u += G_Du D;  G_D = sum_{b,l} G_Du u.   gate = SiLU(z):  G_z = G_gate SiLU'(z).
    Dt = softplus(x):  G_x = G_Dt softplus'(x);  G_delta = G_x;  G_delta_bias = sum_{b,l} G_x.
    """
    Dt, u = lv["Dt"], lv["u"]
    G_w = gl["dA"] * ops.conj(lv["dA"])
    g = {}
    G_A = (G_w * Dt[..., None]).sum(axis=(0, 2))
    g["A"] = G_A if cplx else ops.re(G_A)
    GbB = ops.re(gl["bu"] * ops.conj(lv["Bx"]))
    G_Dt = ops.re(G_w * ops.conj(lv["A"])[None, :, None, :]).sum(axis=-1) + (GbB * u[..., None]).sum(axis=-1)
    G_u = (GbB * Dt[..., None]).sum(axis=-1)
    if has["D"]:
        G_u = G_u + gl["Du"] * lv["D"][None, :, None]
        g["D"] = (gl["Du"] * u).sum(axis=(0, 2))
    g["u"] = G_u
    G_B = Bi.reduce(gl["bu"] * (Dt * u)[..., None])
    g["B"] = G_B if Bi.is_complex else ops.re(G_B)
    G_C = Ci.reduce(gl["Cx"])
    g["C"] = G_C if Ci.is_complex else ops.re(G_C)
    if has["z"]:
        g["z"] = gl["gate"] * lv["dgate"]
    G_x = G_Dt if lv["dsp"] is None else G_Dt * lv["dsp"]
    g["delta"] = G_x
    if has["delta_bias"]:
        g["delta_bias"] = G_x.sum(axis=(0, 2))
    return g


def selective_scan_vjp(grad_out, u, delta, A, B, C, D=None, z=None, delta_bias=None,
                       delta_softplus=False, grad_last_state=None):
    """Vector-Jacobian product of ``selective_scan``: for L = sum(grad_out * out)
    [+ Re sum(conj(grad_last_state) * last_state)], returns {name: Reference} with the gradient
    of L w.r.t. every differentiable input given: u, delta, A, B, C, and D, z, delta_bias when
    present.  Shapes are the inputs' (interleaved B/C get interleaved gradients).  Complex
    inputs get PyTorch's complex gradient dL/dRe + i dL/dIm.  Computed by the adjoint (reverse)
    scan in multiple precision.  Magnitudes: "abs_out" (the adjoint on absolute values), "exp_cond",
    "depth" = 2 (3 l + n + 8) + the number of terms the gradient sums over (b l for A, D,
    delta_bias, constant B/C; d or d/g for variable/grouped B/C)."""
    u, delta, A, Bi, Ci, D, z, delta_bias, cplx = _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    b, d, length = u.shape
    n = A.shape[1]
    grad_out = as_array(grad_out, "grad_out", real=True)
    check_shape(grad_out, "grad_out", u.shape)
    if grad_last_state is not None:
        grad_last_state = as_array(grad_last_state, "grad_last_state")
        check_shape(grad_last_state, "grad_last_state", (b, d, n))
    has = {"D": D is not None, "z": z is not None, "delta_bias": delta_bias is not None}
    names = ["u", "delta", "A", "B", "C"] + [k for k in ("D", "z", "delta_bias") if has[k]]

    def run(lv, ops, gout, glast):
        _, pre, _, states = forward_core(lv["dA"], lv["bu"], lv["Cx"], lv["Du"], lv["gate"], cplx, ops,
                                         keep_states=True)
        gl = backward_core(gout, lv["dA"], lv["bu"], lv["Cx"], lv["gate"], pre, states, cplx, ops,
                           glast=glast)
        g = _chain(gl, lv, Bi, Ci, cplx, ops, has)
        return [g[k] for k in names]

    lv_abs, weights, path = _leaves_abs(u, delta, A, Bi, Ci, D, z, delta_bias, delta_softplus)
    gabs = np.abs(grad_out)
    glabs = None if grad_last_state is None else np.abs(grad_last_state)
    base, cond = exp_cond_of(lambda lv: run(lv, ABS, gabs, glabs), lv_abs, weights, path)

    gmp = mp_of(grad_out)
    glmp = None if grad_last_state is None else mp_of(grad_last_state)

    def compute():
        lv = _leaves_mp(_raw(u, delta, A, Bi, Ci, D, z, delta_bias), Bi, Ci, delta_softplus)
        return run(lv, MP, gmp, glmp)

    paths = vjp_paths(lv_abs, gabs, glabs, cplx, Bi, Ci, has, names)
    parts = verified_many(compute, base)
    depths = vjp_depths(names, Bi, Ci, b, length, n)
    is_cplx = {"A": cplx, "B": Bi.is_complex, "C": Ci.is_complex}
    result = {}
    for k, part, mag, ec, path in zip(names, parts, base, cond, paths):
        hi, err = part
        info = {"B": Bi, "C": Ci}.get(k)
        if info is not None and info.interleaved:
            hi = info.to_input_layout(hi, True)
            err, mag, ec, path = (np.repeat(x, 2, axis=-1) for x in (err, mag, ec, path))
            out_cplx = False
        else:
            out_cplx = is_cplx.get(k, False)
        result[k] = Reference(to_float(hi, complex_out=out_cplx), err,
                              {"abs_out": mag, "exp_cond": ec, "path": path, **depths[k]})
    return result


def vjp_paths(lv_abs, gabs, glabs, cplx, Bi, Ci, has, names):
    """"path" of each gradient in ``names`` (units of u): vjp_leaf_paths pushed through _chain
    (linear in the leaf gradients, nonnegative coefficients on magnitudes)."""
    fwd = forward_paths(lv_abs, cplx)
    gl = vjp_leaf_paths(lv_abs, gabs, glabs, cplx, fwd)
    g = _chain(gl, lv_abs, Bi, Ci, cplx, ABS, has)
    return [np.where(np.isnan(g[k]), np.inf, g[k]) for k in names]


def vjp_depths(names, Bi, Ci, b, length, n):
    """Per gradient: "local_depth" = CHAIN_DEPTH + the number of terms it sums (b l for A, D,
    delta_bias and constant B/C -- a reduction in any order, sequential included, errs by up to
    that many roundings of its terms' magnitudes; n for u, delta; d or d/g for variable/grouped
    B/C), and the older uniform "depth" 2 (3 l + n + 8) + that number."""
    counts = {"u": n, "delta": n, "A": b * length, "D": b * length, "delta_bias": b * length,
              "z": 1, "B": Bi.reduce_count(b, length), "C": Ci.reduce_count(b, length)}
    base_depth = 2 * (3 * length + n + 8)
    return {k: {"local_depth": CHAIN_DEPTH + counts[k], "depth": float(base_depth + counts[k])}
            for k in names}
