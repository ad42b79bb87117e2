"""The tolerance model: how far a correct kernel may be from the exact answer.

For every output element i the suite admits

    tol_i = SAFETY * u * sum_k depth_k * magnitude_k[i]      (forward error of an accurate algorithm)
          + (u_out + u_64) * |y_i|                             (rounding the result, and the oracle's
                                                                own rounding to float64)
          + oracle_error_i                                     (the oracle's certified error)
          + depth_total * tiny(dtype)                          (gradual underflow)

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

SAFETY = 4.0

UNIT_ROUNDOFF = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "bfloat16": 2.0**-8,
    "float16": 2.0**-11,
}
TINY = {  # smallest normal number: below it, each rounding may lose up to tiny absolutely
    "float64": np.finfo(np.float64).tiny,
    "float32": float(np.finfo(np.float32).tiny),
    "bfloat16": 2.0**-126,
    "float16": float(np.finfo(np.float16).tiny),
}
U64 = UNIT_ROUNDOFF["float64"]


def compute_dtype(dtype: str) -> str:
    """Half activations are accumulated in float32 (mamba-ssm, causal-conv1d, SDPA on CPU/GPU)."""
    return "float32" if dtype in ("bfloat16", "float16") else dtype


def tolerance(reference, terms, dtype: str = "float64") -> np.ndarray:
    """Elementwise tolerance for ``reference`` (an oracle Reference) judged in ``dtype``.

    terms -- sequence of (depth, magnitude): magnitude broadcastable to the output's shape.
    """
    value = np.abs(reference.value)
    u = UNIT_ROUNDOFF[compute_dtype(dtype)]
    u_out = UNIT_ROUNDOFF[dtype]
    forward = np.zeros_like(value, dtype=np.float64)
    depth_total = 1.0
    for depth, magnitude in terms:
        forward = forward + depth * np.asarray(magnitude, dtype=np.float64)
        depth_total += depth
    return (SAFETY * u * forward
            + (u_out + U64) * value
            + reference.error
            + depth_total * TINY[compute_dtype(dtype)])


# --- Per-role bounds -----------------------------------------------------------------------------

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
    d_back, d_eval = expm_depths(max(norm_A, norm_B), n + B2.shape[1])
    norm_X = float(np.linalg.norm(A * dt, 2))
    Xt = np.zeros((2 * n, 2 * n))
    Xt[:n, :n], Xt[:n, n:] = A * dt, dt * np.eye(n)
    norm_Xt = float(np.linalg.norm(Xt, 2))
    S_A, S_B = ref_Ad.magnitudes["frechet"], np.asarray(ref_Bd.magnitudes["frechet"])
    G_A = S_A / norm_X if norm_X > 0 else 1.0  # X = 0: e^{Xs} = I, G = 1
    terms_Ad = [(d_back, S_A), (d_eval, G_A)]
    terms_Bd = [(d_back, S_B), (d_eval, S_B / norm_Xt), (n, ref_Bd.magnitudes["abs_phi_B"])]
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
