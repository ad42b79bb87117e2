// Depthwise causal convolution, semantics of causal-conv1d's `causal_conv1d_fn` / `causal_conv1d_ref`:
//
//   out[b, c, t] = act( bias[c] + sum_{k=0}^{W-1} weight[c, k] * x[b, c, t - (W - 1) + k] ),
//
// x taken as 0 at negative times, so weight[:, -1] multiplies x_t; act is identity or SiLU.
// Layouts: x, out (batch, dim, seqlen) storage type T (contiguous); weight (dim, W) and bias (dim,)
// in the accumulation type.
//
// Mapping: one block of CV_TILE threads per (row = (batch, channel), tile of CV_TILE outputs);
// the tile of x with its W - 1 step causal halo and the channel's weights are staged in shared
// memory (coalesced), each thread then produces one output. fp32 accumulation (fp64 for double).
#include "ssm_common.cuh"

#define CV_TILE 256

template <typename T>
__device__ __forceinline__ void causal_conv1d_impl(const T* __restrict__ x,
                                                   const typename Num<T>::acc* __restrict__ weight,
                                                   const typename Num<T>::acc* __restrict__ bias,
                                                   T* __restrict__ out, i64 rows, i64 dim, i64 seqlen,
                                                   int width, int act_silu) {
    typedef typename Num<T>::acc acc;
    acc* s_w = reinterpret_cast<acc*>(ssm_dyn_smem);  // [width]
    acc* s_x = s_w + width;                            // [CV_TILE + width - 1]

    const i64 ntiles = (seqlen + CV_TILE - 1) / CV_TILE;
    const i64 tile = (i64)blockIdx.x % ntiles;
    const i64 row = (i64)blockIdx.x / ntiles;  // b * dim + c
    if (row >= rows) return;                   // block-uniform
    const i64 c = row % dim;
    const i64 t0 = tile * CV_TILE;
    const T* xr = x + row * seqlen;

    for (int k = threadIdx.x; k < width; k += blockDim.x) s_w[k] = weight[c * width + k];
    for (int i = threadIdx.x; i < CV_TILE + width - 1; i += blockDim.x) {
        const i64 t = t0 - (width - 1) + i;
        s_x[i] = (t >= 0 && t < seqlen) ? Num<T>::in(xr[t]) : acc(0);
    }
    __syncthreads();

    const i64 t = t0 + threadIdx.x;
    if (t < seqlen) {
        acc y = bias != nullptr ? bias[c] : acc(0);
        for (int k = 0; k < width; ++k) y += s_w[k] * s_x[threadIdx.x + k];
        if (act_silu) y = silu(y);
        out[row * seqlen + t] = Num<T>::out(y);
    }
}

#define CV_ENTRY(NAME, T)                                                                           \
    extern "C" __global__ void __launch_bounds__(CV_TILE, 4) NAME(                                    \
        const T* x, const Num<T>::acc* weight, const Num<T>::acc* bias, T* out, i64 rows, i64 dim, \
        i64 seqlen, int width, int act_silu) {                                                      \
        causal_conv1d_impl<T>(x, weight, bias, out, rows, dim, seqlen, width, act_silu);            \
    }

CV_ENTRY(causal_conv1d_fwd_f32, float)
CV_ENTRY(causal_conv1d_fwd_f16, half_t)
CV_ENTRY(causal_conv1d_fwd_bf16, bf16_t)
CV_ENTRY(causal_conv1d_fwd_f64, double)
