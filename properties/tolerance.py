"""The tolerance model: how far a correct kernel may be from the exact answer.

For every output element i the suite admits

    tol_i = SAFETY * u * sum_k depth_k * magnitude_k[i]      (forward error of an accurate algorithm)
          + (u_out + u_64) * |y_i|                             (rounding the result, and the oracle's
                                                                own rounding to float64)
          + oracle_error_i                                     (the oracle's certified error)
          + SAFETY u depth_total tiny                          (gradual underflow)
          + tiny_out                                           (flush to zero)

u is the unit roundoff of the compute dtype (float32 for half activations, as mamba-ssm
accumulates), u_out that of the output dtype. Each role's terms (depth_k, magnitude_k) come from a
forward error bound of the computation, written beside the function that builds them; the
magnitudes are carried by the oracle (``Reference.magnitudes``), evaluated on the exact inputs.
A term is either componentwise (an array the shape of the output) or normwise (a scalar, or an
array broadcast over whole rows/columns), because some accurate algorithms -- FFT convolution,
matrix exponentials, solves -- are accurate only in norm, and a suite that demands componentwise
accuracy from them is wrong.

SAFETY covers the constants the bounds leave out (twiddle-factor accuracy, the O(u^2) terms,
the small integer constants of gamma_n = n u / (1 - n u)). It is not tuned to make anything pass:
tests/test_tolerance.py shows correct algorithms sit far below 1 and the mistakes of MATH.md far
above.
"""
from __future__ import annotations

import math

import numpy as np

from ssm_conformance.oracle.discretize import frechet_magnitude
from ssm_conformance.oracle.formats import TINY, UNIT_ROUNDOFF

SAFETY = 4.0

U64 = UNIT_ROUNDOFF["float64"]


def compute_dtype(dtype: str) -> str:
    """Half activations are accumulated in float32 (mamba-ssm, causal-conv1d, SDPA on CPU/GPU)."""
    return "float32" if dtype in ("bfloat16", "float16") else dtype


def tolerance(reference, terms, dtype: str = "float64", flush_to_zero: bool = True) -> np.ndarray:
    """Elementwise tolerance for ``reference`` (an oracle Reference) judged in ``dtype``.

    terms -- sequence of (depth, magnitude): magnitude broadcastable to the output's shape.
    flush_to_zero -- admit an absolute error up to tiny_out, the output dtype's smallest normal
    number (CONTRACT.md): FTZ hardware modes (CUDA's fast math, x86's FTZ/DAZ) and JAX on CPU
    return 0 for a result below tiny_out, an error of up to tiny_out that no depth of rounding
    covers. A flushed *intermediate* (a scan state, a product) is admitted in so far as its
    share of the output stays within that term (e.g. a flushed scan state reaching the output
    through decays and C entries of magnitude <= 1); beyond that it is a visible error.
    False (float16 attention only: its tiny, 6.1e-5, is an ordinary softmax weight, and a kernel
    that flushes it loses accuracy, oracle/attention.py underflow_weight) keeps gradual
    underflow's half a subnormal spacing, u_out tiny_out.
    """
    value = np.abs(reference.value)
    u = UNIT_ROUNDOFF[compute_dtype(dtype)]
    u_out = UNIT_ROUNDOFF[dtype]
    forward = np.zeros_like(value, dtype=np.float64)
    depth_total = 1.0
    for depth, magnitude in terms:
        forward = forward + depth * np.asarray(magnitude, dtype=np.float64)
        depth_total += depth
    # gradual underflow: an operation below tiny errs by up to half a subnormal spacing,
    # u * tiny; rounding the result to the output dtype errs by u_out tiny_out there, or by up
    # to tiny_out where the result is flushed to zero.
    return (SAFETY * u * forward
            + (u_out + U64) * value
            + reference.error
            + SAFETY * depth_total * u * TINY[compute_dtype(dtype)]
            + (1.0 if flush_to_zero else u_out) * TINY[dtype])


# --- Per-role bounds -----------------------------------------------------------------------------

def attention_tol(ref, terms, dtype: str) -> np.ndarray:
    """Attention (forward and backward): flushing results to zero is admitted, except in float16,
    whose tiny (6.1e-5) is an ordinary softmax weight (oracle.attention.underflow_weight)."""
    return tolerance(ref, terms, dtype, flush_to_zero=dtype != "float16")


def _log2_ceil(x: float) -> int:
    return max(0, math.ceil(math.log2(max(x, 1.0))))


THETA_13 = 5.371920351148152  # Higham 2005: largest ||X||_1 the degree-13 Pade handles unscaled


def expm_depths(block_norm1: float, size: int) -> tuple[float, float]:
    """Rounding depths of scaling and squaring for a size x size matrix X with ||X||_1 given.

    Returns (d_backward, d_evaluation) for the error bound
        ||fl(e^X) - e^X|| <= u (d_backward * ||X|| G + d_evaluation * G),
    G = max_s ||e^{X(1-s)}|| ||e^{Xs}|| (so ||L(X, E)|| <= G ||E||, L the Frechet derivative).
    Higham 2005 ("The scaling and squaring method for the matrix exponential revisited", sec. 4):
    s = ceil(log2(||X||_1 / theta_13)) squarings of r_13(X_s), X_s = X / 2^s. The Pade truncation
    is a backward error <= u ||X||; *evaluating* p_13, q_13 errs by gamma_{13 n} p_13(|X_s|) <=
    gamma_{13 n} e^{||X_s||/2}, and the solve with q_13(X_s) ~ e^{-X_s/2} multiplies that by up to
    e^{||X_s||/2}: an absolute perturbation of up to 13 n u e^{||X_s||_1} of X_s, hence 2^s times
    that of X; each squaring adds gamma_n |F|^2, likewise an absolute perturbation of X_s.
    (scipy.linalg.expm shows the evaluation term: [[4, 1], [0, 0]] errs by 4600 ulps in its
    (0, 0) entry; torch's Taylor-based matrix_exp shows the absolute one at ||X|| ~ 1e-4.)
    """
    s = max(0, math.ceil(math.log2(block_norm1 / THETA_13))) if block_norm1 > 0 else 0
    scaled = block_norm1 / 2.0**s
    d_backward = size * (s + 2)
    d_evaluation = size * 2.0**s * (s + 2 + 13 * math.exp(min(scaled, THETA_13)))
    return d_backward, d_evaluation


def zoh_terms(ref_Ad, ref_Bd, A, B, dt):
    """ZOH: Ad = e^{A dt}; Bd = Phi B with Phi = dt phi_1(A dt), the top-right block of the
    exponential of Xt = dt [[A, I], [0, 0]].

    The oracle's "frechet" is ||X||_2 G for X = A dt (Ad), and ||Xt||_2 G_t ||B[:, j]||_2 per
    column for Bd (Bd = Phi B: an error dPhi gives |dBd_ij| <= ||dPhi|| ||B[:, j]||), with G as in
    expm_depths; forming Phi B adds gamma_n |Phi||B| ("abs_phi_B"). The depths are those of one
    exponential of Van Loan's block dt [[A, B], [0, 0]] as a user builds it (its norm, hence its
    squarings, grows with ||B||), which also admits Ad and Bd computed by other accurate routes.
    """
    A = np.asarray(A, dtype=np.float64)
    n = A.shape[0]
    B2 = np.asarray(B, dtype=np.float64).reshape(n, -1)
    norm_A = float(np.abs(A).sum(axis=0).max(initial=0.0)) * dt
    norm_B = float(np.abs(B2).sum(axis=0).max(initial=0.0)) * dt
    size = n + B2.shape[1]
    d_back, d_eval = expm_depths(max(norm_A, norm_B), size)
    # Both outputs are also judged normwise on Van Loan's block exponential, MATH.md's robust
    # evaluation: a backward-stable expm of X_b = dt [[A, B], [0, 0]] errs by <= depth u S_b,
    # S_b = ||X_b|| max_s ||e^{X_b(1-s)}|| ||e^{X_b s}|| >= ||X_b|| (the identity block). This is
    # loose for Ad when ||B|| >> ||A||, but it is what an accurate block exponential delivers:
    # scipy's cont2discrete squares as often as the block's norm asks, and on a stiff upper-
    # triangular A (eigenvalues -50..-980) with ||B|| ~ 1e4 its Ad errs by 2.4e-18 on entries
    # of 1e-26 -- tiny against the block, garbage against Ad alone. A per-entry bound for Ad
    # would reject the reference implementation every ZOH user compares against.
    X_block = np.zeros((size, size))
    X_block[:n, :n], X_block[:n, n:] = A * dt, B2 * dt
    S_block = frechet_magnitude(X_block)
    norm_X = float(np.linalg.norm(A * dt, 2))
    Xt = np.zeros((2 * n, 2 * n))
    Xt[:n, :n], Xt[:n, n:] = A * dt, dt * np.eye(n)
    norm_Xt = float(np.linalg.norm(Xt, 2))
    S_A, S_B = ref_Ad.magnitudes["frechet"], np.asarray(ref_Bd.magnitudes["frechet"])
    G_A = S_A / norm_X if norm_X > 0 else 1.0  # X = 0: e^{Xs} = I, G = 1
    terms_Ad = [(d_back, S_A), (d_eval, G_A), (d_back, S_block)]
    terms_Bd = [(d_back, S_B), (d_eval, S_B / norm_Xt), (n, ref_Bd.magnitudes["abs_phi_B"]),
                (d_back, S_block)]
    return terms_Ad, terms_Bd


def solve_terms(ref, n: int):
    """Generalized bilinear (Euler, bilinear, backward Euler): X = M^{-1} R, M = I - a dt A.

    Forming M and R costs two roundings per element; LU with partial pivoting is backward stable,
    (M + dM) X = R + dR with |dM| <= gamma_3n |L||U| ~ 3n u ||M|| (Higham, Thm 9.4 / 7.2), so
    ||dX|| <= 3n u ||M^{-1}|| (||M|| ||X|| + ||R||): the oracle's "solve". Inverse-then-multiply
    is within the same bound up to a factor n; componentwise, "elementwise" =
    |M^{-1}| (|M||X| + |R|) is what a componentwise-stable solve achieves (Euler: |I| + |dt A|).
    """
    return [(3 * n + 2, ref.magnitudes["solve"]), (n + 2, ref.magnitudes["elementwise"])]


def causal_conv_terms(ref, length: int):
    """Causal convolution y_t = sum_k K_k u_{t-k}, length L.

    Direct summation: |fl(y_t) - y_t| <= gamma_L sum_k |K_k||u_{t-k}| (Higham, eq. 3.5): the
    oracle's componentwise "abs_conv", depth L.
    FFT with zero padding to nfft >= 2L - 1: each FFT has normwise relative error
    <= eta log2(nfft), eta ~ 6.7 u (Higham, Thm 24.2); with F unnormalized
    (||F x|| = sqrt(nfft) ||x||) the errors of F K and F u times the other factor
    (||F u||_inf <= ||u||_1) and the scaled inverse give, per element (<= the 2-norm),
    |err| <= (2 eta log2(nfft) + eta log2(nfft) + u) (||K||_2 ||u||_1 + ||K||_1 ||u||_2):
    the oracle's normwise "norm_K1_u2_plus_K2_u1", depth ~ 21 log2(nfft). nfft <= 4L covers
    next_fast_len and power-of-two padding.
    """
    log_n = _log2_ceil(4 * length)
    return [(length, ref.magnitudes["abs_conv"]),
            (21 * log_n + 1, ref.magnitudes["norm_K1_u2_plus_K2_u1"])]


# --- S4 family -----------------------------------------------------------------------------------
# Roles hippo_*, ssm_kernel, s4d_kernel, dplr_kernel (docs/s4_integration.md). Where one role admits
# several algorithms, the bound is the *maximum* over algorithm families (any of them must pass) of
# each family's bound, and a family with two valid bounds of the same computation takes their
# *minimum*; such bounds are functions of the dtype returning the tolerance array, which
# SubjectUnderTest.judge accepts in place of terms.

def hippo_tol(ref, n: int, dtype: str = "float64") -> np.ndarray:
    """HiPPO transition matrices (A or B) of size n; ``ref`` from properties/test_s4.py's
    ``hippo_reference`` (the exact SymPy entries of oracle.hippo.transition at 30 digits).

    Direct construction: every entry is at most three correctly rounded operations (two square
    roots and a product, pi times k, a product of two square roots, a sum of two terms): "abs" =
    |exact entry|, depth 3, componentwise -- exact zeros must come out zero.
    From the normal-plus-low-rank form (A = V (diag Lambda - P~^T conj P~) V^*, B = V (V^* B),
    V from a Hermitian eigensolver on -iS): LAPACK's eigensolver is backward stable,
    V Lambda V^* = S + E with ||E||_2 <= ~n u ||S||_2; forming V diag(Lambda) V^* errs by
    gamma_n |V||Lambda||V^*| <= gamma_n (||S||_2 + |shift|) per entry (rows of V are unit
    vectors); P~ = V^* P^T errs by gamma_n |V^*||P^T|, ||.||_2 <= gamma_n sqrt(n) ||P||_F
    (|| |V| ||_2 <= sqrt n), and the product V P~^T conj(P~) V^* adds gamma_2n ||P||_F^2; B the same
    with ||B||_2. The oracle's scalar "nplr" = ||S||_2 + |shift| + (1 + sqrt n) ||P||_F^2 (A) or
    (1 + sqrt n) ||B||_2 (B), depth 3n, bounds each entry's error.
    Families: max(direct, nplr).
    """
    m = ref.magnitudes
    direct = tolerance(ref, [(3, m["abs"])], dtype)
    nplr = tolerance(ref, [(3 * n, m["nplr"])], dtype)
    return np.maximum(direct, nplr)


def ssm_kernel_tol(ref, n: int, dtype: str = "float64") -> np.ndarray:
    """K_k = C Ad^k Bd (oracle.s4_kernels.ssm_kernel), n the state size.

    "abs_power" = (k+1)|C||Ad|^k|Bd|, depth n: any evaluation order of the product of k+2
    factors with inner dimension n (recurrence, repeated squaring, doubling) errs by at most
    gamma_{(k+1)n} |C||Ad|^k|Bd| (Higham, eq. (3.13)).
    "norm_bound" = ||C|| (||h_k|| + sum_j ||Ad^{k-j}|| ||Ad||_F ||h_{j-1}||), depth n: the
    normwise first-order bound of the recurrence h_j = fl(Ad h_{j-1}) (each step errs by
    gamma_n |Ad||h| <= gamma_n ||Ad||_F ||h||, carried on by Ad^{k-j}); the squarings of a doubling
    algorithm give terms of the same form. |Ad|^k can grow where ||Ad^k|| does not (non-normal
    or HiPPO Ad), so both are valid bounds of one computation: min.
    """
    m = ref.magnitudes
    return np.minimum(tolerance(ref, [(n, m["abs_power"])], dtype),
                      tolerance(ref, [(n, m["norm_bound"])], dtype))


def s4d_kernel_terms(ref, n: int, disc: str = "zoh"):
    """K_k = 2 Re sum_i C_i Bbar_i Abar_i^k (oracle.s4_kernels.s4d_kernel), n the state size.

    "abs_sum" = 2 sum_i |C_i||Bbar_i||Abar_i|^k, depth n + 4: the n products and their sum.
    "abs_power" = 2 sum_i |C_i||Bbar_i||Abar_i|^k (k+1)(1 + |x_i|), x_i = lambda_i dt (bilinear:
    |log Abar_i|), depth 6 (zoh) / 10 (bilinear): Abar_i^k as exp(k x_i) or as k products has
    relative error <= u (c + (k+1)(c' + |x_i|)) (the rounding of k x_i amplified by |k x_i|).
    "abs_bbar" = 2 sum_i |C_i||B_i| ((|x_i| + 2)|e^{x_i}| + |e^{x_i} - 1|)/|lambda_i| |Abar_i|^k,
    depth 6: S4D's (exp(x) - 1)/lambda errs by ~u (|x| + 2)|e^x|/|lambda| (expm1 does better).
    All three are errors of one computation: summed.
    """
    m = ref.magnitudes
    return [(n + 4, m["abs_sum"]), (6 if disc == "zoh" else 10, m["abs_power"]),
            (6, m["abs_bbar"])]


def dplr_kernel_tol(ref, n: int, r: int, length: int, dtype: str = "float64") -> np.ndarray:
    """K_k = C Abar^k Bbar, bilinear, A = diag(Lambda) - P^T conj(Q) of rank r
    (oracle.s4_kernels.dplr_kernel, magnitudes derived there and in oracle.dplr.cauchy_magnitudes).

    Generating-function family (S4: Cauchy sums and Woodbury at the L-th roots of unity, C~ =
    C (I - Abar^L), inverse FFT): "cond_cauchy" (depth n + r + 6; the geometric-sum bound at roots
    where g(z_j) meets an eigenvalue), "cond_ctilde" (depth 3n + 2: the dense Abar^L reaching K
    through the inverse DFT), "cond_fft" = ||K||_2 (depth 8 ceil(log2 L) + 2, Higham Thm 24.2);
    summed.
    Dense family (discretize by LU solves, then power): componentwise "abs_power" (depth n) plus
    "disc" (Oettli-Prager perturbation of the solves propagated through the powers, depth 3n + 2),
    or normwise "norm_bound" (depth 3n + 2); two bounds of one computation: min. (|Abar|^k of a
    HiPPO system explodes while ||Abar^k|| does not.)
    Families: max, leaving out a family whose bound is not finite.
    """
    m = ref.magnitudes
    cauchy = tolerance(ref, [(n + r + 6, m["cond_cauchy"]), (3 * n + 2, m["cond_ctilde"]),
                             (8 * _log2_ceil(length) + 2, m["cond_fft"])], dtype)
    dense = np.minimum(tolerance(ref, [(n, m["abs_power"]), (3 * n + 2, m["disc"])], dtype),
                       tolerance(ref, [(3 * n + 2, m["norm_bound"])], dtype))
    families = [t for t in (cauchy, dense) if np.all(np.isfinite(t))]
    return np.maximum.reduce(families) if families else dense


# --- SSD and causal conv1d -----------------------------------------------------------------------
# Roles ssd and causal_conv1d (docs/mamba_oracles.md, "Error bounds"); the magnitudes are those of
# oracle/ssd.py and oracle/causal_conv1d.py, evaluated on the exact inputs.

def ssd_terms(ref):
    """SSD (Mamba-2) output, final states, or any gradient of ``ssd_vjp`` (oracle/ssd.py and
    its long tier oracle/long_ssd.py; derivation in docs/bounds_ssd.md).

    A path-weighted bound: a rounding committed at step s reaches step t only through the decays
    between them, so every term below is a sum over paths of |path| times the roundings on it.
    "depth" (a scalar: sums of any order within a chunk, tree scans, the dots, the leaves) times
    "abs_out" (or "abs_state"), the computation on the absolute values of its leaves (Higham,
    ch. 3), and "off_depth" (sums over chunk states, state passing) times "abs_off", its part on
    the paths from an earlier chunk; "run_depth" times "run_out" ("run_state"), the running
    error of the steps: sum over s <= t of the exact |S_s| carried by the decays from s to t
    (gradients: the forward's and the reverse-time adjoint's, carried into each); "exp_cond" (depth 1): the first-order error of the exponents, formed from one
    float32 cumulative sum of Dt A per chunk of the subject (or direct segment sums), never one
    over the whole sequence. Summed: all are errors of one computation."""
    m = ref.magnitudes
    magnitude = m["abs_out"] if "abs_out" in m else m["abs_state"]
    terms = [(m["depth"], magnitude), (1, m["exp_cond"])]
    if "abs_off" in m:
        terms.append((m["off_depth"], m["abs_off"]))
    run = m.get("run_out", m.get("run_state"))
    if run is not None:
        terms.append((m["run_depth"], run))
    return terms


def causal_conv1d_terms(ref):
    """Depthwise causal conv1d (+ bias, SiLU) or a gradient of ``causal_conv1d_vjp``.

    Recursive summation of w products and the bias errs by <= gamma_{w+1} sum |weight||x| + |bias|
    (Higham, eq. 3.5): "depth" = w + 1; with SiLU, "abs_out" = |SiLU'(s)| abs_pre + |SiLU(s)|
    carries the rounded pre-activation s through SiLU. Gradients: depth w + 1 + the terms summed
    (w for dx, b l for dweight and dbias), "abs_out" the same sums on absolute values."""
    m = ref.magnitudes
    return [(m["depth"], m["abs_out"])]


def pair_tol(ref_a, terms_a, ref_b, terms_b, dtype: str) -> np.ndarray:
    """Bound on |y_a - y_b| for two results of one subject that are, exactly, the same number
    (two chunk sizes; an output before and after the future changed; one batch element alone
    and in a batch): each is within its own tolerance of the exact value, so
    |y_a - y_b| <= tol_a + tol_b (triangle inequality; no further slack)."""
    return tolerance(ref_a, terms_a, dtype) + tolerance(ref_b, terms_b, dtype)


def silu_flushed(s, dtype: str) -> np.ndarray:
    """Where an exp-based SiLU loses the value: SiLU(s) = s / (1 + e^{-s}) and sigmoid(s) =
    1 / (1 + e^{-s}), as torch (CPU and CUDA) and causal-conv1d's kernel evaluate them, return
    exactly 0 once e^{-s} overflows (float32: s < -88.72; float64: s < -709.78), and s sigmoid(s)
    has a subnormal sigmoid(s) (relative error up to 1/2) once e^{s} < tiny (float32: s < -87.34),
    although SiLU(s) = s e^{s}/(1 + e^{s}), |SiLU(s)| <= 2.6e-37 there (4e-306 in float64), is
    representable. In both cases the error is at most |SiLU(s)| (and |grad| sigma(s)(1 + |s|) for
    SiLU'). Range: s < log(tiny) + 1 of the compute dtype (one unit of margin for the rounding
    of s)."""
    tiny = TINY[compute_dtype(dtype)]
    return np.asarray(s) < math.log(tiny) + 1.0


def causal_conv1d_tol(ref, pre, activation, dtype: str) -> np.ndarray:
    """Tolerance of causal_conv1d's output: causal_conv1d_terms, plus, with SiLU, the whole
    |value| where the exact pre-activation ``pre`` lies in the range of silu_flushed (times
    SAFETY, as every forward term of the model)."""
    tol = tolerance(ref, causal_conv1d_terms(ref), dtype)
    if activation is None:
        return tol
    return tol + SAFETY * np.where(silu_flushed(pre, dtype), np.abs(ref.value), 0.0)


def causal_conv1d_vjp_tol(ref, name: str, pre, grad_out, x, weight, activation,
                          dtype: str) -> np.ndarray:
    """Tolerance of a gradient (name "x", "weight" or "bias") of causal_conv1d: the terms, plus,
    with SiLU, the flushed SiLU'(s) = sigma(s)(1 + s(1 - sigma(s))) (0 where sigma flushes,
    silu_flushed) carried to the gradient: the error of G_s = grad_out SiLU'(s) is at most
    E = |grad_out| sigma(s)(1 + |s|) there, and dx[t] = sum_k weight[k] G_s[t + w-1-k],
    dweight[k] = sum_{b,t} G_s[t] x[t - (w-1) + k], dbias = sum_{b,t} G_s take it linearly:
    the same sums on E and |.| (times SAFETY, as every forward term of the model)."""
    tol = tolerance(ref, causal_conv1d_terms(ref), dtype)
    if activation is None:
        return tol
    pre = np.asarray(pre, dtype=np.float64)
    flushed = silu_flushed(pre, dtype)
    # sigma(s)(1 + |s|) <= e^{s + log1p(|s|)} (s < 0), formed in the log domain: 1/(1 + e^{-s})
    # would itself flush in float64 for s < -709.78
    with np.errstate(over="ignore", under="ignore"):
        E = np.where(flushed, np.abs(grad_out) * np.exp(np.minimum(pre, 0.0) + np.log1p(np.abs(pre))), 0.0)
    if not E.any():
        return tol
    b, d, length = E.shape
    w = weight.shape[1]
    if name == "x":
        Epad = np.concatenate([E, np.zeros((b, d, w - 1))], axis=-1)     # G_s[t] = 0 for t >= l
        extra = sum(np.abs(weight)[None, :, k, None] * Epad[..., w - 1 - k:w - 1 - k + length]
                    for k in range(w))
    elif name == "weight":
        xpad = np.concatenate([np.zeros((b, d, w - 1)), np.abs(x)], axis=-1)  # x[t] = 0 for t < 0
        extra = np.stack([(E * xpad[..., k:k + length]).sum(axis=(0, 2)) for k in range(w)], axis=1)
    else:
        extra = E.sum(axis=(0, 2))
    return tol + SAFETY * extra


# --- Linear and selective scans ------------------------------------------------------------------
# Roles linear_scan, selective_scan and selective_state_update (docs/bounds.md: the path-weighted
# bound and how each admitted algorithm's paths fit under it); the magnitudes are those of
# oracle/scan.py, oracle/selective_scan.py and oracle/long_scan.py, evaluated on the exact inputs.

def path_terms(path, magnitude):
    """The path-weighted bound ``path`` as terms on ``magnitude`` (abs_scan, abs_out, ...):
    [(path / magnitude, magnitude), (1, the rest)], the same sum (path <= (max path depth)
    magnitude, so the rest is path where magnitude is 0 or not finite). The depth is per element,
    the average depth of the paths there: readers of the terms that weigh each magnitude by one
    rounding (properties/precision.py's floor) see the magnitude, not depth times it."""
    path = np.asarray(path, dtype=np.float64)
    magnitude = np.broadcast_to(np.asarray(magnitude, dtype=np.float64), path.shape)
    ok = np.isfinite(magnitude) & (magnitude > 0) & np.isfinite(path)
    ratio = np.divide(path, magnitude, out=np.zeros_like(path), where=ok)
    return [(ratio, magnitude), (1, np.where(ok, 0.0, path))]


def linear_scan_terms(ref):
    """linear_scan's h or a gradient of ``linear_scan_vjp``: the path-weighted bound
    "path" = sum_j |P_{j,t}||b_j| (2 (t-j) + 2 ceil(log2 l) + 2) (oracle/scan.py, module doc):
    every loop, chunked scan with state passing or tree scan rounds the term of b_j at most that
    often (path_terms on abs_scan / abs_grad)."""
    m = ref.magnitudes
    return path_terms(m["path"], m["abs_scan"] if "abs_scan" in m else m["abs_grad"])


def selective_scan_terms(ref):
    """Selective scan out / last state, state-update out / new state, a decode sequence's outs
    and final state, or a gradient of ``selective_scan_vjp``.

    Sequences (the oracle's "path" magnitude, oracle/selective_scan.py "Error model"):
    path_terms(path, abs) + [(local_depth, abs), (1, exp_cond)], abs = abs_out or abs_state. "path" is the path-weighted
    running bound: each term Dt_j B_j u_j is charged the roundings on ITS path to step t,
    3 (t-j) + 2 ceil(log2 l) + 6 (exp, multiply, add per step; a tree's additions; the leaf),
    plus (t-j+1) |sum of the exponents between j and t| (a decay formed as exp of a cumulative
    sum within a chunk), carried by the decays between j and t; "local_depth" is what the output
    side adds (n + 8 for out: C.h, D u, the gate; 0 for a state; the reductions of a gradient).
    "exp_cond": the exponents' own roundings, weight (3 + kappa_k) |Dt_k A| per factor (exp2 of
    fl(fl(Dt A) log2 e), Triton's idiom, rounds the argument three times).
    One decode step (selective_state_update's matches_oracle, no "path"): [(depth, abs), (1,
    exp_cond)], depth n + 11 for out, 8 for the state. Summed: all are errors of one
    computation."""
    m = ref.magnitudes
    magnitude = m["abs_out"] if "abs_out" in m else m["abs_state"]
    if "path" in m:
        return (path_terms(m["path"], magnitude)
                + [(m["local_depth"], magnitude), (1, m["exp_cond"])])
    return [(m["depth"], magnitude), (1, m["exp_cond"])]
