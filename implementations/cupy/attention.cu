// Scaled dot-product attention (no mask tensor, no dropout), semantics of
// torch.nn.functional.scaled_dot_product_attention:
//
//   out[i] = sum_j softmax_j(scale * q_i . k_j) v_j,   with is_causal keeping j <= i
//            (the top-left aligned lower triangle, torch.ones(L, S).tril()).
//
// Layouts (contiguous): q (BH, L, E), k (BH, S, E), v (BH, S, EV), out (BH, L, EV), storage type T.
//
// Mapping: a straightforward tiled kernel with online softmax (one pass over the keys):
// one block of AT_WARPS warps per (batch*head, AT_WARPS consecutive query rows), one warp per row.
// Keys are processed in tiles of 32: the block stages K and V of the tile in shared memory, lane j
// scores key j of the tile, the warp keeps the running maximum m and normalizer l, and lanes split
// the EV output columns (column lane + 32 r kept in register o[r]).  fp32 accumulation (fp64 for
// double), exp from the accurate library.
#include "ssm_common.cuh"

#define AT_WARPS 8
#define AT_MAXR 8  // EV <= 32 * AT_MAXR = 256

template <typename T>
__device__ __forceinline__ void attention_impl(const T* __restrict__ q, const T* __restrict__ k,
                                               const T* __restrict__ v, T* __restrict__ out, i64 bh_count,
                                               i64 L, i64 S, int E, int EV,
                                               typename Num<T>::acc scale, int causal) {
    typedef typename Num<T>::acc acc;
    const int EP = E + 1;                                 // padded K row: lane j reads row j
    acc* s_k = reinterpret_cast<acc*>(ssm_dyn_smem);      // [32][EP]
    acc* s_v = s_k + 32 * EP;                             // [32][EV]
    acc* s_q = s_v + 32 * EV;                             // [AT_WARPS][E]
    acc* s_p = s_q + AT_WARPS * E;                        // [AT_WARPS][32] probabilities

    const i64 row_blocks = (L + AT_WARPS - 1) / AT_WARPS;
    const i64 bh = (i64)blockIdx.x / row_blocks;
    const i64 r0 = ((i64)blockIdx.x % row_blocks) * AT_WARPS;
    if (bh >= bh_count) return;  // block-uniform
    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const i64 row = r0 + warp;
    const bool rvalid = row < L;

    for (int i = threadIdx.x; i < AT_WARPS * E; i += blockDim.x) {
        const int w = i / E, e = i - w * E;
        s_q[i] = (r0 + w < L) ? Num<T>::in(q[(bh * L + r0 + w) * E + e]) : acc(0);
    }

    // Keys this block needs: causal rows r0..r0+AT_WARPS-1 see keys j <= row.
    const i64 kend = causal ? min64(S, r0 + AT_WARPS) : S;
    const acc NEG_INF = neg_inf<acc>();
    acc m = NEG_INF, l = acc(0);
    acc o[AT_MAXR];
#pragma unroll
    for (int r = 0; r < AT_MAXR; ++r) o[r] = acc(0);

    for (i64 k0 = 0; k0 < kend; k0 += 32) {
        __syncthreads();  // previous tile fully consumed (and s_q written, on the first pass)
        for (int i = threadIdx.x; i < 32 * E; i += blockDim.x) {
            const int j = i / E, e = i - j * E;
            s_k[j * EP + e] = (k0 + j < S) ? Num<T>::in(k[(bh * S + k0 + j) * E + e]) : acc(0);
        }
        for (int i = threadIdx.x; i < 32 * EV; i += blockDim.x) {
            const int j = i / EV, e = i - j * EV;
            s_v[i] = (k0 + j < S) ? Num<T>::in(v[(bh * S + k0 + j) * EV + e]) : acc(0);
        }
        __syncthreads();

        const i64 key = k0 + lane;
        acc sc = NEG_INF;
        if (rvalid && key < S && (!causal || key <= row)) {
            acc dot = acc(0);
            const acc* qr = s_q + warp * E;
            const acc* kr = s_k + lane * EP;
            for (int e = 0; e < E; ++e) dot += qr[e] * kr[e];
            sc = dot * scale;
        }
        const acc mt = warp_max(sc);
        const acc mn = mt > m ? mt : m;
        // Masked scores contribute exactly 0; while no key has been seen m stays -inf.
        const acc p = (sc == NEG_INF) ? acc(0) : m_exp(sc - mn);
        const acc alpha = (m == NEG_INF) ? acc(0) : m_exp(m - mn);
        l = l * alpha + warp_sum(p);
        m = mn;
        s_p[warp * 32 + lane] = p;
        __syncwarp();
#pragma unroll
        for (int r = 0; r < AT_MAXR; ++r) {
            const int e = lane + 32 * r;
            if (e < EV) {
                acc a = o[r] * alpha;
                for (int j = 0; j < 32; ++j) a += s_p[warp * 32 + j] * s_v[j * EV + e];
                o[r] = a;
            }
        }
        __syncwarp();  // s_p of this warp is rewritten next tile
    }

    if (rvalid) {
        // l > 0 whenever at least one key is visible (S >= 1 and key 0 is always visible);
        // with S == 0 the output is the empty sum, 0, as the math of SDPA gives.
#pragma unroll
        for (int r = 0; r < AT_MAXR; ++r) {
            const int e = lane + 32 * r;
            if (e < EV) out[(bh * L + row) * EV + e] = Num<T>::out(l > acc(0) ? o[r] / l : acc(0));
        }
    }
}

#define AT_ENTRY(NAME, T)                                                                           \
    extern "C" __global__ void __launch_bounds__(32 * AT_WARPS, 2) NAME(                              \
        const T* q, const T* k, const T* v, T* out, i64 bh_count, i64 L, i64 S, int E, int EV,      \
        Num<T>::acc scale, int causal) {                                                            \
        attention_impl<T>(q, k, v, out, bh_count, L, S, E, EV, scale, causal);                      \
    }

AT_ENTRY(attention_fwd_f32, float)
AT_ENTRY(attention_fwd_f16, half_t)
AT_ENTRY(attention_fwd_bf16, bf16_t)
AT_ENTRY(attention_fwd_f64, double)
