// S4 convolution kernels.
//
// s4d_vandermonde   S4D (diagonal, ZOH), one of each conjugate pair kept:
//                      K_k = 2 Re sum_i C_i B_i (e^{lambda_i dt_i} - 1) / lambda_i * e^{k lambda_i dt_i}
//                   e^x - 1 is formed without cancellation as
//                      (expm1(Re x) cos(Im x) - 2 sin^2(Im x / 2)) + i e^{Re x} sin(Im x).
//                   Mapping: one thread per k; the N modes are staged in shared memory in tiles of
//                   blockDim (each block forms the tile's weights itself).
//
// dplr_cauchy       The truncated generating function of the DPLR (bilinear) kernel at the L-th
//                   roots of unity z_j = exp(-2 pi i j / L), so that K = ifft(Khat):
//                      Khat(z) = Ct (I - Abar z)^{-1} Bbar,  Ct = C (I - Abar^L),
//                      A = diag(Lambda) - P^T conj(Q)   (P, Q: r x N).
//                   With a = (1 - z)/dt, s = (1 + z)/2 and R_i = 1 / (a - s lambda_i) (this is
//                   2/(1+z) (g(z) - lambda_i)^{-1}, g = (2/dt)(1-z)/(1+z), with the removable
//                   singularity at z = -1 divided out: R_i = dt/2 there), Woodbury gives
//                      Khat = k00 - s k01 (I + s k11)^{-1} k10,
//                      k00 = sum Ct_i B_i R_i,        k01[a] = sum Ct_i P_ai R_i,
//                      k10[a] = sum conj(Q_ai) B_i R_i,  k11[a][b] = sum conj(Q_ai) P_bi R_i.
//                   The wrapper forms the numerator rows V[slot][i] in fixed slots for MAXR
//                   (slot 0: Ct B; 1 + a: Ct P_a; 1 + MAXR + a: conj(Q_a) B;
//                   1 + 2 MAXR + a MAXR + b: conj(Q_a) P_b; slots with a or b >= r are unused), so
//                   every register index is a compile-time constant; the kernel forms the Cauchy
//                   sums of the used slots for its root and solves the r x r system (Gaussian
//                   elimination with partial pivoting, padded to MAXR with identity rows).
//                   z, 1 - z and 1 + z come from half-angle sines/cosines (sincospi(j/L)), so
//                   neither 1 - z near z = 1 nor 1 + z near z = -1 suffers cancellation.
//
// Complex arrays are interleaved (re, im) in the accumulation type (float or double).
#include "ssm_common.cuh"

template <typename A> struct cplx {
    A re, im;
};
template <typename A> __device__ __forceinline__ cplx<A> cmk(A re, A im) {
    cplx<A> r;
    r.re = re;
    r.im = im;
    return r;
}
template <typename A> __device__ __forceinline__ cplx<A> cadd(cplx<A> a, cplx<A> b) { return cmk(a.re + b.re, a.im + b.im); }
template <typename A> __device__ __forceinline__ cplx<A> csub(cplx<A> a, cplx<A> b) { return cmk(a.re - b.re, a.im - b.im); }
template <typename A> __device__ __forceinline__ cplx<A> cmul(cplx<A> a, cplx<A> b) {
    return cmk(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re);
}
// a / b, scaled by the larger component of b (Smith's algorithm) to avoid overflow / underflow.
template <typename A> __device__ __forceinline__ cplx<A> cdiv(cplx<A> a, cplx<A> b) {
    if (m_abs(b.re) >= m_abs(b.im)) {
        const A rr = b.im / b.re, den = b.re + b.im * rr;
        return cmk((a.re + a.im * rr) / den, (a.im - a.re * rr) / den);
    } else {
        const A rr = b.re / b.im, den = b.re * rr + b.im;
        return cmk((a.re * rr + a.im) / den, (a.im * rr - a.re) / den);
    }
}
template <typename A> __device__ __forceinline__ A cabs1(cplx<A> a) { return m_abs(a.re) + m_abs(a.im); }

// ------------------------------------------------------------------------------- S4D Vandermonde
template <typename A>
__device__ __forceinline__ void s4d_vandermonde_impl(const A* __restrict__ lam, const A* __restrict__ Bv,
                                                     const A* __restrict__ Cv, const A* __restrict__ dt,
                                                     A* __restrict__ out, int N, i64 L) {
    A* s_xr = reinterpret_cast<A*>(ssm_dyn_smem);  // [blockDim] Re(lambda dt)
    A* s_xi = s_xr + blockDim.x;                   // Im(lambda dt)
    A* s_wr = s_xi + blockDim.x;                   // Re w,  w = C B (e^{lambda dt} - 1) / lambda
    A* s_wi = s_wr + blockDim.x;

    const i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    const A kk = A(k);
    A sum = A(0);
    for (int i0 = 0; i0 < N; i0 += blockDim.x) {
        const int i = i0 + threadIdx.x;
        if (i < N) {
            const cplx<A> l = cmk(lam[2 * i], lam[2 * i + 1]);
            const A d = dt[i];
            const A xr = l.re * d, xi = l.im * d;
            cplx<A> frac;  // (e^{x} - 1) / lambda
            if (l.re == A(0) && l.im == A(0)) {
                frac = cmk(d, A(0));  // the limit dt
            } else {
                A sn, cs, sh, ch;
                m_sincos(xi, &sn, &cs);
                m_sincos(xi * A(0.5), &sh, &ch);
                const cplx<A> em1 = cmk(m_expm1(xr) * cs - A(2) * sh * sh, m_exp(xr) * sn);
                frac = cdiv(em1, l);
            }
            const cplx<A> w = cmul(cmul(cmk(Cv[2 * i], Cv[2 * i + 1]), cmk(Bv[2 * i], Bv[2 * i + 1])), frac);
            s_xr[threadIdx.x] = xr;
            s_xi[threadIdx.x] = xi;
            s_wr[threadIdx.x] = w.re;
            s_wi[threadIdx.x] = w.im;
        }
        __syncthreads();
        const int cnt = mini((int)blockDim.x, N - i0);
        if (k < L) {
            for (int q = 0; q < cnt; ++q) {
                // Re(w e^{k x}) = e^{k Re x} (Re w cos(k Im x) - Im w sin(k Im x))
                A sn, cs;
                m_sincos(kk * s_xi[q], &sn, &cs);
                sum += m_exp(kk * s_xr[q]) * (s_wr[q] * cs - s_wi[q] * sn);
            }
        }
        __syncthreads();
    }
    if (k < L) out[k] = A(2) * sum;
}

extern "C" __global__ void __launch_bounds__(256, 2)
s4d_vandermonde_f32(const float* lam, const float* B, const float* C, const float* dt, float* out, int N, i64 L) {
    s4d_vandermonde_impl<float>(lam, B, C, dt, out, N, L);
}
extern "C" __global__ void __launch_bounds__(256, 2)
s4d_vandermonde_f64(const double* lam, const double* B, const double* C, const double* dt, double* out, int N, i64 L) {
    s4d_vandermonde_impl<double>(lam, B, C, dt, out, N, L);
}

// ------------------------------------------------------------------------------- DPLR Cauchy
#define DPLR_TILE 64  // modes staged per pass

template <typename A, int MAXR>
__device__ __forceinline__ void dplr_cauchy_impl(const A* __restrict__ lam, const A* __restrict__ V,
                                                 A* __restrict__ out, int N, i64 L, A dt, int r) {
    constexpr int MAXM = (1 + MAXR) * (1 + MAXR);  // numerator slots
    A* s_l = reinterpret_cast<A*>(ssm_dyn_smem);  // [DPLR_TILE][2]
    A* s_v = s_l + 2 * DPLR_TILE;                 // [MAXM][DPLR_TILE][2]

    const i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    // theta / 2 = pi j / L;  1 - z = 2 sh (sh + i ch),  1 + z = 2 ch (ch - i sh),  z = e^{-i theta}
    A sh, ch;
    m_sincospi(A(j) / A(L), &sh, &ch);
    const cplx<A> a = cmk(A(2) * sh * sh / dt, A(2) * sh * ch / dt);  // (1 - z) / dt
    const cplx<A> s = cmk(ch * ch, -sh * ch);                         // (1 + z) / 2

    // Which slots are used for this rank (compile-time slot, run-time r).
    bool used[MAXM];
#pragma unroll
    for (int m = 0; m < MAXM; ++m) {
        if (m == 0) used[m] = true;
        else if (m < 1 + MAXR) used[m] = (m - 1) < r;
        else if (m < 1 + 2 * MAXR) used[m] = (m - 1 - MAXR) < r;
        else used[m] = ((m - 1 - 2 * MAXR) / MAXR) < r && ((m - 1 - 2 * MAXR) % MAXR) < r;
    }

    cplx<A> k[MAXM];
#pragma unroll
    for (int m = 0; m < MAXM; ++m) k[m] = cmk(A(0), A(0));

    for (int i0 = 0; i0 < N; i0 += DPLR_TILE) {
        const int cnt = mini(DPLR_TILE, N - i0);
        for (int q = threadIdx.x; q < 2 * cnt; q += blockDim.x) s_l[q] = lam[2 * (i64)i0 + q];
        for (int q = threadIdx.x; q < MAXM * 2 * cnt; q += blockDim.x) {
            const int m = q / (2 * cnt), e = q - m * 2 * cnt;
            s_v[m * 2 * DPLR_TILE + e] = V[((i64)m * N + i0) * 2 + e];
        }
        __syncthreads();
        if (j < L) {
            for (int i = 0; i < cnt; ++i) {
                const cplx<A> R = cdiv(cmk(A(1), A(0)), csub(a, cmul(s, cmk(s_l[2 * i], s_l[2 * i + 1]))));
#pragma unroll
                for (int m = 0; m < MAXM; ++m) {
                    if (used[m]) {
                        const cplx<A> v = cmk(s_v[(m * DPLR_TILE + i) * 2], s_v[(m * DPLR_TILE + i) * 2 + 1]);
                        k[m] = cadd(k[m], cmul(v, R));
                    }
                }
            }
        }
        __syncthreads();
    }
    if (j >= L) return;

    // (I + s k11) y = k10, padded to MAXR x MAXR with identity rows and zero right-hand sides.
    cplx<A> Mx[MAXR][MAXR], y[MAXR];
#pragma unroll
    for (int p = 0; p < MAXR; ++p) {
        y[p] = p < r ? k[1 + MAXR + p] : cmk(A(0), A(0));
#pragma unroll
        for (int q = 0; q < MAXR; ++q) {
            cplx<A> e = cmk(p == q ? A(1) : A(0), A(0));
            if (p < r && q < r) e = cadd(e, cmul(s, k[1 + 2 * MAXR + p * MAXR + q]));
            Mx[p][q] = e;
        }
    }
#pragma unroll
    for (int col = 0; col < MAXR; ++col) {
        int piv = col;
        A best = cabs1(Mx[col][col]);
#pragma unroll
        for (int p = col + 1; p < MAXR; ++p) {
            const A v = cabs1(Mx[p][col]);
            if (v > best) { best = v; piv = p; }
        }
#pragma unroll
        for (int p = col + 1; p < MAXR; ++p) {
            if (p == piv) {
#pragma unroll
                for (int q = 0; q < MAXR; ++q) {
                    const cplx<A> t = Mx[col][q];
                    Mx[col][q] = Mx[p][q];
                    Mx[p][q] = t;
                }
                const cplx<A> t = y[col];
                y[col] = y[p];
                y[p] = t;
            }
        }
#pragma unroll
        for (int p = col + 1; p < MAXR; ++p) {
            const cplx<A> f = cdiv(Mx[p][col], Mx[col][col]);
#pragma unroll
            for (int q = col; q < MAXR; ++q) Mx[p][q] = csub(Mx[p][q], cmul(f, Mx[col][q]));
            y[p] = csub(y[p], cmul(f, y[col]));
        }
    }
#pragma unroll
    for (int col = MAXR - 1; col >= 0; --col) {
        cplx<A> t = y[col];
#pragma unroll
        for (int q = col + 1; q < MAXR; ++q) t = csub(t, cmul(Mx[col][q], y[q]));
        y[col] = cdiv(t, Mx[col][col]);
    }
    cplx<A> corr = cmk(A(0), A(0));
#pragma unroll
    for (int p = 0; p < MAXR; ++p)
        if (p < r) corr = cadd(corr, cmul(k[1 + p], y[p]));
    const cplx<A> res = csub(k[0], cmul(s, corr));
    out[2 * j] = res.re;
    out[2 * j + 1] = res.im;
}

#define DPLR_ENTRY(NAME, A, MAXR)                                                                   \
    extern "C" __global__ void __launch_bounds__(128, 2)                                           \
        NAME(const A* lam, const A* V, A* out, int N, i64 L, A dt, int r) {                         \
        dplr_cauchy_impl<A, MAXR>(lam, V, out, N, L, dt, r);                                        \
    }

DPLR_ENTRY(dplr_cauchy_f32_r2, float, 2)
DPLR_ENTRY(dplr_cauchy_f64_r2, double, 2)
DPLR_ENTRY(dplr_cauchy_f32_r4, float, 4)
DPLR_ENTRY(dplr_cauchy_f64_r4, double, 4)
