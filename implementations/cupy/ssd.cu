// SSD (Mamba-2) chunked forward, semantics of mamba-ssm `mamba_chunk_scan_combined`
// (mamba_ssm/ops/triton/ssd_combined.py), in the same four steps as its Triton kernels:
//
//   1. ssd_cumsum       dt' = clamp(softplus?(dt + dt_bias), dt_min, dt_max) and, per chunk of Q
//                       steps, the inclusive cumulative sum cs_t = sum_{k<=t} dt'_k A_h
//                       (products and sums in fp64: cs_t - cs_j below is then accurate to the
//                       rounding of the segment itself, not of the whole chunk's sum).
//   2. ssd_chunk_state  the state each chunk produces from a zero start:
//                       S_c[p, n] = sum_j exp(cs_last - cs_j) dt'_j x_j[p] B_j[n].
//   3. ssd_state_passing  S_in(0) = initial state (or 0), S_in(c+1) = exp(cs_last(c)) S_in(c) + S_c;
//                       overwrites S_c with S_in(c) and writes the final state.
//   4. ssd_chunk_scan   y_t = exp(cs_t) C_t . S_in[p, :]
//                           + sum_{j<=t in chunk} (C_t . B_j) exp(cs_t - cs_j) dt'_j x_j[p]
//                           + D x_t[p],   then y_t * SiLU(z_t).
//
// Layouts (contiguous): x, z, out (batch, L, H, P); dt (batch, L, H); B, C (batch, L, G, N);
// A, dt_bias (H,) and D (H,) or (H, P) in the accumulation type; initial states (batch, H, P, N) in
// the accumulation type; final states (batch, H, P, N) in the storage type T.
// Work buffers: dtw, cs (batch, H, nchunks, Q) (acc / fp64; positions past L hold dt' = 0, so cs
// stays constant there); states (batch, nchunks, H, P, N) acc.
// Any L >= 1 and any chunk size Q >= 1; the matmul-like steps use 32 x 32 tiles in shared memory,
// 256 threads = 32 columns x 8 row groups, 4 rows per thread.  All global offsets in 64-bit.
#include "ssm_common.cuh"

#define SSD_T 32  // tile edge

// ---------------------------------------------------------------- 1. dt' and chunk cumsums
template <typename TD, typename acc>
__device__ __forceinline__ void ssd_cumsum_impl(const TD* __restrict__ dt, const acc* __restrict__ A,
                                                const acc* __restrict__ dt_bias, acc* __restrict__ dtw,
                                                double* __restrict__ cs, i64 batch, i64 L, int H, int Q,
                                                i64 nc, int dt_softplus, acc dt_min, acc dt_max) {
    const i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;  // (b, c, h), h fastest
    if (idx >= batch * nc * H) return;
    const int h = (int)(idx % H);
    const i64 bc = idx / H;
    const i64 c = bc % nc;
    const i64 b = bc / nc;
    const double a = (double)A[h];
    const i64 o = ((b * H + h) * nc + c) * Q;
    double run = 0.0;
    for (int j = 0; j < Q; ++j) {
        const i64 t = c * Q + j;
        acc v = acc(0);
        if (t < L) {
            v = acc(Num<TD>::in(dt[(b * L + t) * H + h]));
            if (dt_bias != nullptr) v += dt_bias[h];
            if (dt_softplus) v = softplus20(v);
            v = v < dt_min ? dt_min : v;  // mamba-ssm's dt_limit clamp, default (0, inf)
            v = v > dt_max ? dt_max : v;
        }
        run += (double)v * a;
        dtw[o + j] = v;
        cs[o + j] = run;
    }
}

#define SSD_CUMSUM_ENTRY(NAME, TD, ACC)                                                             \
    extern "C" __global__ void __launch_bounds__(256, 4) NAME(                                     \
        const TD* dt, const ACC* A, const ACC* dt_bias, ACC* dtw, double* cs, i64 batch, i64 L,     \
        int H, int Q, i64 nc, int dt_softplus, ACC dt_min, ACC dt_max) {                            \
        ssd_cumsum_impl<TD, ACC>(dt, A, dt_bias, dtw, cs, batch, L, H, Q, nc, dt_softplus, dt_min,  \
                                 dt_max);                                                           \
    }

// Name: ssd_cumsum_<dt dtype>_<accumulation dtype>.
SSD_CUMSUM_ENTRY(ssd_cumsum_f32_f32, float, float)
SSD_CUMSUM_ENTRY(ssd_cumsum_f16_f32, half_t, float)
SSD_CUMSUM_ENTRY(ssd_cumsum_bf16_f32, bf16_t, float)
SSD_CUMSUM_ENTRY(ssd_cumsum_f64_f32, double, float)
SSD_CUMSUM_ENTRY(ssd_cumsum_f32_f64, float, double)
SSD_CUMSUM_ENTRY(ssd_cumsum_f16_f64, half_t, double)
SSD_CUMSUM_ENTRY(ssd_cumsum_bf16_f64, bf16_t, double)
SSD_CUMSUM_ENTRY(ssd_cumsum_f64_f64, double, double)

// ---------------------------------------------------------------- 2. per-chunk states
// Block: (b, c, h, p-tile, n-tile); thread (tx = n column, ty) owns rows p = ty + 8 i.
template <typename T>
__device__ __forceinline__ void ssd_chunk_state_impl(const T* __restrict__ x, const T* __restrict__ Bm,
                                                     const typename Num<T>::acc* __restrict__ dtw,
                                                     const double* __restrict__ cs,
                                                     typename Num<T>::acc* __restrict__ states, i64 batch,
                                                     i64 L, int H, int P, int G, int N, int Q, i64 nc) {
    typedef typename Num<T>::acc acc;
    __shared__ acc s_x[SSD_T][SSD_T + 1];  // [j][p]
    __shared__ acc s_b[SSD_T][SSD_T + 1];  // [j][n]
    __shared__ acc s_w[SSD_T];             // exp(cs_last - cs_j) dt'_j

    const int ntp = (P + SSD_T - 1) / SSD_T, ntn = (N + SSD_T - 1) / SSD_T;
    i64 bid = blockIdx.x;
    const int nt = (int)(bid % ntn); bid /= ntn;
    const int pt = (int)(bid % ntp); bid /= ntp;
    const int h = (int)(bid % H); bid /= H;
    const i64 c = bid % nc;
    const i64 b = bid / nc;
    if (b >= batch) return;  // block-uniform
    const int g = h / (H / G);
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const int p0 = pt * SSD_T, n0 = nt * SSD_T;
    const i64 cstart = c * Q;
    const int Qv = (int)min64((i64)Q, L - cstart);
    const i64 csb = ((b * H + h) * nc + c) * Q;
    const double cs_last = cs[csb + Q - 1];

    acc accv[4] = {acc(0), acc(0), acc(0), acc(0)};
    for (int j0 = 0; j0 < Qv; j0 += SSD_T) {
        if (threadIdx.x < SSD_T) {
            const int jl = j0 + threadIdx.x;
            s_w[threadIdx.x] = jl < Qv ? m_exp(acc(cs_last - cs[csb + jl])) * dtw[csb + jl] : acc(0);
        }
        for (int i = threadIdx.x; i < SSD_T * SSD_T; i += blockDim.x) {
            const int j = i / SSD_T, q = i % SSD_T;
            const int jl = j0 + j;
            const i64 t = cstart + jl;
            s_x[j][q] = (jl < Qv && p0 + q < P) ? Num<T>::in(x[((b * L + t) * H + h) * P + p0 + q]) : acc(0);
            s_b[j][q] = (jl < Qv && n0 + q < N) ? Num<T>::in(Bm[((b * L + t) * G + g) * N + n0 + q]) : acc(0);
        }
        __syncthreads();
#pragma unroll 4
        for (int j = 0; j < SSD_T; ++j) {
            const acc wb = s_w[j] * s_b[j][tx];
#pragma unroll
            for (int i = 0; i < 4; ++i) accv[i] += s_x[j][ty + 8 * i] * wb;
        }
        __syncthreads();
    }
    const i64 sb = ((b * nc + c) * H + h) * (i64)P * N;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int p = p0 + ty + 8 * i, n = n0 + tx;
        if (p < P && n < N) states[sb + (i64)p * N + n] = accv[i];
    }
}

#define SSD_STATE_ENTRY(NAME, T)                                                                    \
    extern "C" __global__ void __launch_bounds__(256, 2) NAME(                                     \
        const T* x, const T* B, const Num<T>::acc* dtw, const double* cs, Num<T>::acc* states,     \
        i64 batch, i64 L, int H, int P, int G, int N, int Q, i64 nc) {                              \
        ssd_chunk_state_impl<T>(x, B, dtw, cs, states, batch, L, H, P, G, N, Q, nc);                \
    }

SSD_STATE_ENTRY(ssd_chunk_state_f32, float)
SSD_STATE_ENTRY(ssd_chunk_state_f16, half_t)
SSD_STATE_ENTRY(ssd_chunk_state_bf16, bf16_t)
SSD_STATE_ENTRY(ssd_chunk_state_f64, double)

// ---------------------------------------------------------------- 3. state passing
// One thread per (b, h, p, n) element, sequential over chunks.
template <typename T>
__device__ __forceinline__ void ssd_state_passing_impl(typename Num<T>::acc* __restrict__ states,
                                                       const double* __restrict__ cs,
                                                       const typename Num<T>::acc* __restrict__ init,
                                                       T* __restrict__ final_states, i64 batch, int H,
                                                       i64 PN, int Q, i64 nc) {
    typedef typename Num<T>::acc acc;
    const i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;  // (b, h, p*N + n)
    if (idx >= batch * H * PN) return;
    const i64 e = idx % PN;
    const i64 bh = idx / PN;
    const int h = (int)(bh % H);
    const i64 b = bh / H;
    acc S = init != nullptr ? init[idx] : acc(0);
    for (i64 c = 0; c < nc; ++c) {
        const i64 off = ((b * nc + c) * H + h) * PN + e;
        const acc produced = states[off];
        states[off] = S;  // the state entering chunk c
        const acc decay = m_exp(acc(cs[((b * H + h) * nc + c) * Q + Q - 1]));
        S = decay * S + produced;
    }
    if (final_states != nullptr) final_states[idx] = Num<T>::out(S);
}

#define SSD_PASS_ENTRY(NAME, T)                                                                     \
    extern "C" __global__ void __launch_bounds__(256, 4) NAME(                                     \
        Num<T>::acc* states, const double* cs, const Num<T>::acc* init, T* final_states, i64 batch, \
        int H, i64 PN, int Q, i64 nc) {                                                             \
        ssd_state_passing_impl<T>(states, cs, init, final_states, batch, H, PN, Q, nc);             \
    }

SSD_PASS_ENTRY(ssd_state_passing_f32, float)
SSD_PASS_ENTRY(ssd_state_passing_f16, half_t)
SSD_PASS_ENTRY(ssd_state_passing_bf16, bf16_t)
SSD_PASS_ENTRY(ssd_state_passing_f64, double)

// ---------------------------------------------------------------- 4. chunk scan (outputs)
// Block: (b, c, h, t-tile of 32 rows of the chunk, p-tile of 32); thread (tx = p column, ty) owns
// rows t = ty + 8 i.
template <typename T>
__device__ __forceinline__ void ssd_chunk_scan_impl(
    const T* __restrict__ x, const T* __restrict__ Bm, const T* __restrict__ Cm, const T* __restrict__ z,
    const typename Num<T>::acc* __restrict__ D, int D_has_p,
    const typename Num<T>::acc* __restrict__ dtw, const double* __restrict__ cs,
    const typename Num<T>::acc* __restrict__ states, T* __restrict__ out, i64 batch, i64 L, int H,
    int P, int G, int N, int Q, i64 nc) {
    typedef typename Num<T>::acc acc;
    __shared__ acc s_c[SSD_T][SSD_T + 1];   // [t][n]   C rows of this t-tile
    __shared__ acc s_o[SSD_T][SSD_T + 1];   // [p][n] state tile, then [j][n] B tile
    __shared__ acc s_m[SSD_T][SSD_T + 1];   // [t][j]   decayed, masked C.B dt'
    __shared__ acc s_x[SSD_T][SSD_T + 1];   // [j][p]
    __shared__ double s_cst[SSD_T], s_csj[SSD_T];
    __shared__ acc s_dtj[SSD_T];

    const int ntt = (Q + SSD_T - 1) / SSD_T, ntp = (P + SSD_T - 1) / SSD_T;
    i64 bid = blockIdx.x;
    const int pt = (int)(bid % ntp); bid /= ntp;
    const int tt = (int)(bid % ntt); bid /= ntt;
    const int h = (int)(bid % H); bid /= H;
    const i64 c = bid % nc;
    const i64 b = bid / nc;
    const i64 cstart = c * Q;
    const int Qv = (int)min64((i64)Q, L - cstart);
    const int t0 = tt * SSD_T, p0 = pt * SSD_T;
    if (b >= batch || t0 >= Qv) return;  // block-uniform: tiles past the end of a short last chunk
    const int g = h / (H / G);
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const i64 csb = ((b * H + h) * nc + c) * Q;
    const i64 sb = ((b * nc + c) * H + h) * (i64)P * N;

    if (threadIdx.x < SSD_T) {
        const int tl = t0 + threadIdx.x;
        s_cst[threadIdx.x] = tl < Qv ? cs[csb + tl] : 0.0;
    }

    // C rows t0..t0+31, columns n0..n0+31 of this chunk
#define SSD_LOAD_C_TILE(n0)                                                                         \
    for (int i = threadIdx.x; i < SSD_T * SSD_T; i += blockDim.x) {                                 \
        const int r = i / SSD_T, q = i % SSD_T;                                                     \
        const int tl = t0 + r;                                                                      \
        s_c[r][q] = (tl < Qv && (n0) + q < N)                                                       \
                        ? Num<T>::in(Cm[((b * L + cstart + tl) * G + g) * N + (n0) + q])            \
                        : acc(0);                                                                   \
    }

    // ---- inter-chunk part: exp(cs_t) * C_t . S_in[p, :]
    acc accv[4] = {acc(0), acc(0), acc(0), acc(0)};
    for (int n0 = 0; n0 < N; n0 += SSD_T) {
        SSD_LOAD_C_TILE(n0)
        for (int i = threadIdx.x; i < SSD_T * SSD_T; i += blockDim.x) {
            const int r = i / SSD_T, q = i % SSD_T;
            s_o[r][q] = (p0 + r < P && n0 + q < N) ? states[sb + (i64)(p0 + r) * N + n0 + q] : acc(0);
        }
        __syncthreads();
#pragma unroll 4
        for (int k = 0; k < SSD_T; ++k) {
            const acc sv = s_o[tx][k];
#pragma unroll
            for (int i = 0; i < 4; ++i) accv[i] += s_c[ty + 8 * i][k] * sv;
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) accv[i] *= m_exp(acc(s_cst[ty + 8 * i]));

    // ---- intra-chunk part over key tiles j0 <= last row of this tile (causal)
    const int jend = mini(t0 + SSD_T, Qv);
    for (int j0 = 0; j0 < jend; j0 += SSD_T) {
        if (threadIdx.x < SSD_T) {
            const int jl = j0 + threadIdx.x;
            s_csj[threadIdx.x] = jl < Qv ? cs[csb + jl] : 0.0;
            s_dtj[threadIdx.x] = jl < Qv ? dtw[csb + jl] : acc(0);
        }
        acc cb[4] = {acc(0), acc(0), acc(0), acc(0)};  // C_t . B_j for j = j0 + tx
        for (int n0 = 0; n0 < N; n0 += SSD_T) {
            SSD_LOAD_C_TILE(n0)
            for (int i = threadIdx.x; i < SSD_T * SSD_T; i += blockDim.x) {
                const int r = i / SSD_T, q = i % SSD_T;
                const int jl = j0 + r;
                s_o[r][q] = (jl < Qv && n0 + q < N)
                                ? Num<T>::in(Bm[((b * L + cstart + jl) * G + g) * N + n0 + q])
                                : acc(0);
            }
            __syncthreads();
#pragma unroll 4
            for (int k = 0; k < SSD_T; ++k) {
                const acc bv = s_o[tx][k];
#pragma unroll
                for (int i = 0; i < 4; ++i) cb[i] += s_c[ty + 8 * i][k] * bv;
            }
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int r = ty + 8 * i;
            const int tl = t0 + r, jl = j0 + tx;
            acc mv = acc(0);
            if (jl <= tl && tl < Qv)  // jl <= tl < Qv also keeps jl valid
                mv = cb[i] * m_exp(acc(s_cst[r] - s_csj[tx])) * s_dtj[tx];
            s_m[r][tx] = mv;
        }
        for (int i = threadIdx.x; i < SSD_T * SSD_T; i += blockDim.x) {
            const int r = i / SSD_T, q = i % SSD_T;
            const int jl = j0 + r;
            s_x[r][q] = (jl < Qv && p0 + q < P)
                            ? Num<T>::in(x[((b * L + cstart + jl) * H + h) * P + p0 + q])
                            : acc(0);
        }
        __syncthreads();
#pragma unroll 4
        for (int j = 0; j < SSD_T; ++j) {
            const acc xv = s_x[j][tx];
#pragma unroll
            for (int i = 0; i < 4; ++i) accv[i] += s_m[ty + 8 * i][j] * xv;
        }
        __syncthreads();
    }
#undef SSD_LOAD_C_TILE

    // ---- skip connection, gate, store
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int tl = t0 + ty + 8 * i, p = p0 + tx;
        if (tl < Qv && p < P) {
            const i64 o = ((b * L + cstart + tl) * H + h) * P + p;
            acc y = accv[i];
            if (D != nullptr) y += D[D_has_p ? (i64)h * P + p : (i64)h] * Num<T>::in(x[o]);
            if (z != nullptr) y *= silu(Num<T>::in(z[o]));
            out[o] = Num<T>::out(y);
        }
    }
}

#define SSD_SCAN_ENTRY(NAME, T)                                                                     \
    extern "C" __global__ void __launch_bounds__(256, 2) NAME(                                     \
        const T* x, const T* B, const T* C, const T* z, const Num<T>::acc* D, int D_has_p,          \
        const Num<T>::acc* dtw, const double* cs, const Num<T>::acc* states, T* out, i64 batch,     \
        i64 L, int H, int P, int G, int N, int Q, i64 nc) {                                         \
        ssd_chunk_scan_impl<T>(x, B, C, z, D, D_has_p, dtw, cs, states, out, batch, L, H, P, G, N,  \
                               Q, nc);                                                              \
    }

SSD_SCAN_ENTRY(ssd_chunk_scan_f32, float)
SSD_SCAN_ENTRY(ssd_chunk_scan_f16, half_t)
SSD_SCAN_ENTRY(ssd_chunk_scan_bf16, bf16_t)
SSD_SCAN_ENTRY(ssd_chunk_scan_f64, double)
