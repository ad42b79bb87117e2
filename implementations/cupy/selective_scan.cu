// Selective scan forward (Mamba-1), semantics of mamba-ssm `selective_scan_ref`:
//
//   delta' = softplus(delta + delta_bias)            (softplus optional, threshold 20)
//   h_t    = exp(delta'_t A) * h_{t-1} + delta'_t B_t u_t        per channel d and state s
//   y_t    = C_t . h_t   (2 Re(C_t . h_t) for complex A)   + D u_t,   then y_t * SiLU(z_t)
//
// Mapping: one block per (batch, channel segment, tile of `dc` channels of that segment), the
// `ngroups` segments being the lcm of B's and C's group counts, so a block's channels share one
// group of B and one of C; inside it TN = 2^tn_log2
// lanes per channel, lane j owning states j, j + TN, j + 2 TN, ... (at most MAXS of them, so
// dstate <= 32 * MAXS = 256).  The recurrence runs sequentially over l, in chunks of `lc` steps:
// per chunk the block stages delta', delta' u, D u (per channel) and the variable B / C rows (per
// state) in shared memory with coalesced loads, every lane then walks the chunk with its states in
// registers (carried from chunk to chunk), the per-step sum over states is a shuffle reduction over
// the TN lanes of the channel, and the finished chunk of y is gated and written coalesced.
// All accumulation in fp32 (fp64 for double input); all global offsets in 64-bit.
//
// Layouts (all contiguous, row-major):
//   u, delta, z, out : (batch, dim, seqlen)            storage type T
//   A                : (dim, dstate)  [complex: (dim, dstate, 2) re/im]   acc type
//   B, C constant    : (dim, dstate)  [complex: (dim, dstate, 2)]          acc type
//   B, C variable    : (batch, ngroups, dstate, seqlen) [complex: (..., 2*seqlen), re/im interleaved
//                      along time exactly as mamba-ssm's "(L two)"]          storage type T
//   D, delta_bias    : (dim,) acc type, or null
//   last_state       : (batch, dim, dstate) [complex: (..., 2)] acc type, or null
#include "ssm_common.cuh"

#define SS_MAXS 8       // states per lane
#define SS_THREADS 128  // upper bound on blockDim (the wrapper launches dc * TN <= 128, a multiple of 32)
// Entry points carry __launch_bounds__(128, MINB): MINB = 4 resident blocks (<= 128 registers) for fp32
// accumulation, 2 for fp64 (the complex fp64 variant needs ~230 registers).

// Stage `len` steps (starting at time t0) of one variable B or C row block into shared memory:
// dst[(part * dstate + s) * LCP + t], part 0 = real (or the only) part, part 1 = imaginary part.
template <typename T, bool CPLX>
__device__ __forceinline__ void ss_stage_bc(const T* __restrict__ src, typename Num<T>::acc* dst,
                                            int dstate, i64 seqlen, i64 t0, int len, int lc, int LCP) {
    typedef typename Num<T>::acc acc;
    const i64 row_len = CPLX ? 2 * seqlen : seqlen;  // elements per (batch, group, state) row
    const int width = CPLX ? 2 * lc : lc;            // elements of this chunk per row
    const i64 first = CPLX ? 2 * t0 : t0;
    for (int idx = threadIdx.x; idx < dstate * width; idx += blockDim.x) {
        const int s = idx / width;
        const int r = idx - s * width;
        const int t = CPLX ? (r >> 1) : r;
        const int part = CPLX ? (r & 1) : 0;
        acc v = acc(0);
        if (t < len) v = Num<T>::in(src[(i64)s * row_len + first + r]);
        dst[(part * dstate + s) * LCP + t] = v;
    }
}

template <typename T, bool CPLX>
__device__ __forceinline__ void selective_scan_fwd_impl(
    const T* __restrict__ u, const T* __restrict__ delta,
    const typename Num<T>::acc* __restrict__ A,
    const void* Bp, const void* Cp,
    const typename Num<T>::acc* __restrict__ D,
    const T* __restrict__ z,
    const typename Num<T>::acc* __restrict__ delta_bias,
    T* __restrict__ out,
    typename Num<T>::acc* __restrict__ last_state,
    i64 batch, i64 dim, i64 seqlen, int dstate, int ngroups, int b_groups, int c_groups,
    int var_B, int var_C, int delta_softplus, int tn_log2, int dc, int lc) {
    typedef typename Num<T>::acc acc;
    const int TN = 1 << tn_log2;
    const int LCP = lc + 1;  // padded row length: rows of shared tiles fall in different banks
    const int NP = CPLX ? 2 : 1;

    acc* s_dl = reinterpret_cast<acc*>(ssm_dyn_smem);  // [dc][LCP] delta'
    acc* s_du = s_dl + dc * LCP;                       // [dc][LCP] delta' * u
    acc* s_y = s_du + dc * LCP;                        // [dc][LCP] D u, then + C.h
    acc* s_B = s_y + dc * LCP;                         // [NP][dstate][LCP] if var_B
    acc* s_C = s_B + (var_B ? NP * dstate * LCP : 0);  // [NP][dstate][LCP] if var_C

    // Block -> (batch bb, group g, channel tile).
    const i64 dpg = dim / ngroups;  // channels per group
    const i64 tiles = (dpg + dc - 1) / dc;
    i64 bid = blockIdx.x;
    const i64 tile = bid % tiles;
    bid /= tiles;
    const int g = (int)(bid % ngroups);
    const i64 bb = bid / ngroups;

    const int tid = threadIdx.x;
    const int cl = tid >> tn_log2;  // local channel of this lane
    const int lane = tid & (TN - 1);
    const i64 cg = tile * dc + cl;  // channel index inside the group
    const bool cvalid = cg < dpg;
    const i64 ch = (i64)g * dpg + cg;  // global channel (used only when cvalid)
    const int spt = (dstate + TN - 1) >> tn_log2;

    // The block's channels lie in one group of B and one of C (ngroups = lcm of their group counts).
    const int gb = g / (ngroups / b_groups), gc = g / (ngroups / c_groups);
    const T* Bvar = var_B ? reinterpret_cast<const T*>(Bp) + ((bb * b_groups + gb) * dstate) * (NP * seqlen) : nullptr;
    const T* Cvar = var_C ? reinterpret_cast<const T*>(Cp) + ((bb * c_groups + gc) * dstate) * (NP * seqlen) : nullptr;
    const acc* Bc = reinterpret_cast<const acc*>(Bp);
    const acc* Cc = reinterpret_cast<const acc*>(Cp);

    acc h_re[SS_MAXS], h_im[SS_MAXS], a_re[SS_MAXS], a_im[SS_MAXS];
    acc b_re[SS_MAXS], b_im[SS_MAXS], c_re[SS_MAXS], c_im[SS_MAXS];
#pragma unroll
    for (int k = 0; k < SS_MAXS; ++k) {
        const int s = lane + (k << tn_log2);
        const bool sv = cvalid && k < spt && s < dstate;
        const i64 w = (ch * dstate + s) * NP;  // (dim, dstate[, 2]) element
        h_re[k] = acc(0);
        h_im[k] = acc(0);
        a_re[k] = sv ? A[w] : acc(0);
        a_im[k] = (sv && CPLX) ? A[w + 1] : acc(0);
        b_re[k] = (sv && !var_B) ? Bc[w] : acc(0);
        b_im[k] = (sv && !var_B && CPLX) ? Bc[w + 1] : acc(0);
        c_re[k] = (sv && !var_C) ? Cc[w] : acc(0);
        c_im[k] = (sv && !var_C && CPLX) ? Cc[w + 1] : acc(0);
    }

    for (i64 t0 = 0; t0 < seqlen; t0 += lc) {
        const int len = (int)min64((i64)lc, seqlen - t0);

        // ---- stage the chunk ----
        for (int idx = tid; idx < dc * lc; idx += blockDim.x) {
            const int c = idx / lc;
            const int t = idx - c * lc;
            const i64 cgi = tile * dc + c;
            acc dl = acc(0), du = acc(0), y0 = acc(0);
            if (cgi < dpg && t < len) {
                const i64 chn = (i64)g * dpg + cgi;
                const i64 off = (bb * dim + chn) * seqlen + t0 + t;
                const acc uv = Num<T>::in(u[off]);
                dl = Num<T>::in(delta[off]);
                if (delta_bias != nullptr) dl += delta_bias[chn];
                if (delta_softplus) dl = softplus20(dl);
                du = dl * uv;
                if (D != nullptr) y0 = D[chn] * uv;
            }
            s_dl[c * LCP + t] = dl;
            s_du[c * LCP + t] = du;
            s_y[c * LCP + t] = y0;
        }
        if (var_B) ss_stage_bc<T, CPLX>(Bvar, s_B, dstate, seqlen, t0, len, lc, LCP);
        if (var_C) ss_stage_bc<T, CPLX>(Cvar, s_C, dstate, seqlen, t0, len, lc, LCP);
        __syncthreads();

        // ---- sequential recurrence over the chunk (states in registers) ----
        for (int t = 0; t < len; ++t) {
            const acc dl = s_dl[cl * LCP + t];
            const acc du = s_du[cl * LCP + t];
            acc part = acc(0);
#pragma unroll
            for (int k = 0; k < SS_MAXS; ++k) {
                if (k < spt) {
                    const int s = lane + (k << tn_log2);
                    if (s < dstate) {
                        const acc br = var_B ? s_B[s * LCP + t] : b_re[k];
                        const acc cr = var_C ? s_C[s * LCP + t] : c_re[k];
                        if (!CPLX) {
                            const acc dA = m_exp(dl * a_re[k]);
                            h_re[k] = dA * h_re[k] + du * br;
                            part += h_re[k] * cr;
                        } else {
                            const acc bi = var_B ? s_B[(dstate + s) * LCP + t] : b_im[k];
                            const acc ci = var_C ? s_C[(dstate + s) * LCP + t] : c_im[k];
                            // exp(dl * (a_re + i a_im)) = e^{dl a_re} (cos(dl a_im) + i sin(dl a_im))
                            const acc er = m_exp(dl * a_re[k]);
                            acc sn, cs;
                            m_sincos(dl * a_im[k], &sn, &cs);
                            const acc dAr = er * cs, dAi = er * sn;
                            const acc hr = dAr * h_re[k] - dAi * h_im[k] + du * br;
                            const acc hi = dAr * h_im[k] + dAi * h_re[k] + du * bi;
                            h_re[k] = hr;
                            h_im[k] = hi;
                            part += hr * cr - hi * ci;  // Re(h * C)
                        }
                    }
                }
            }
            // Sum over the TN lanes of this channel (xor offsets < TN stay inside the segment).
            for (int off = TN >> 1; off > 0; off >>= 1) part += __shfl_xor_sync(0xffffffffu, part, off);
            if (lane == 0 && cvalid) s_y[cl * LCP + t] += CPLX ? acc(2) * part : part;
        }
        __syncthreads();

        // ---- gate and write the chunk ----
        for (int idx = tid; idx < dc * lc; idx += blockDim.x) {
            const int c = idx / lc;
            const int t = idx - c * lc;
            const i64 cgi = tile * dc + c;
            if (cgi < dpg && t < len) {
                const i64 chn = (i64)g * dpg + cgi;
                const i64 off = (bb * dim + chn) * seqlen + t0 + t;
                acc y = s_y[c * LCP + t];
                if (z != nullptr) y *= silu(Num<T>::in(z[off]));
                out[off] = Num<T>::out(y);
            }
        }
        __syncthreads();  // the next chunk overwrites the tiles
    }

    if (last_state != nullptr && cvalid) {
#pragma unroll
        for (int k = 0; k < SS_MAXS; ++k) {
            const int s = lane + (k << tn_log2);
            if (k < spt && s < dstate) {
                const i64 w = ((bb * dim + ch) * dstate + s) * NP;
                last_state[w] = h_re[k];
                if (CPLX) last_state[w + 1] = h_im[k];
            }
        }
    }
}

#define SS_ENTRY(NAME, T, CPLX, MINB)                                                                   \
    extern "C" __global__ void __launch_bounds__(SS_THREADS, MINB) NAME(                                  \
        const T* u, const T* delta, const Num<T>::acc* A, const void* B, const void* C,             \
        const Num<T>::acc* D, const T* z, const Num<T>::acc* delta_bias, T* out,                    \
        Num<T>::acc* last_state, i64 batch, i64 dim, i64 seqlen, int dstate, int ngroups,           \
        int b_groups, int c_groups, int var_B, int var_C, int delta_softplus, int tn_log2, int dc,  \
        int lc) {                                                                                   \
        selective_scan_fwd_impl<T, CPLX>(u, delta, A, B, C, D, z, delta_bias, out, last_state,      \
                                         batch, dim, seqlen, dstate, ngroups, b_groups, c_groups,   \
                                         var_B, var_C, delta_softplus, tn_log2, dc, lc);            \
    }

SS_ENTRY(selective_scan_fwd_f32_real, float, false, 4)
SS_ENTRY(selective_scan_fwd_f16_real, half_t, false, 4)
SS_ENTRY(selective_scan_fwd_bf16_real, bf16_t, false, 4)
SS_ENTRY(selective_scan_fwd_f64_real, double, false, 2)
SS_ENTRY(selective_scan_fwd_f32_cplx, float, true, 4)
SS_ENTRY(selective_scan_fwd_f16_cplx, half_t, true, 4)
SS_ENTRY(selective_scan_fwd_bf16_cplx, bf16_t, true, 4)
SS_ENTRY(selective_scan_fwd_f64_cplx, double, true, 2)
