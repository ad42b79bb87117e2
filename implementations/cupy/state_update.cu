// Selective state update: one decode step of Mamba, semantics of mamba-ssm
// `selective_state_update_ref` (mamba_ssm/ops/triton/selective_state_update.py):
//
//   dt'      = softplus(dt + dt_bias)                        (softplus optional, threshold 20)
//   state    = state * exp(dt' A) + (dt' B) x                (written back in place)
//   out      = C . state + D x,   then out * SiLU(z)
//
// Shapes in the general "heads" form (the (b, d, n) form is nheads = ngroups = 1):
//   state (batch, nheads, dim, dstate), any strides (updated in place), storage type S
//   x, dt, z, out (batch, nheads, dim);  A (nheads, dim, dstate);  B, C (batch, ngroups, dstate);
//   D, dt_bias (nheads, dim).   x, dt, z, A, B, C, D, dt_bias arrive contiguous in the accumulation
//   type `acc` (the wrapper widens these O(b d n)-sized inputs); out is written in storage type T.
//
// Mapping: one warp per (batch, head, channel) row, lane j owning states j, j + 32, ...; the sum
// over states is a warp reduction. 4 warps per block.  All global offsets in 64-bit.
#include "ssm_common.cuh"

#define SU_WARPS 4

template <typename S, typename T>
__device__ __forceinline__ void state_update_impl(
    S* __restrict__ state, i64 st_b, i64 st_h, i64 st_d, i64 st_n,
    const typename Num<T>::acc* __restrict__ x, const typename Num<T>::acc* __restrict__ dt,
    const typename Num<T>::acc* __restrict__ A, const typename Num<T>::acc* __restrict__ B,
    const typename Num<T>::acc* __restrict__ C, const typename Num<T>::acc* __restrict__ D,
    const typename Num<T>::acc* __restrict__ z, const typename Num<T>::acc* __restrict__ dt_bias,
    T* __restrict__ out, i64 batch, int nheads, i64 dim, int dstate, int ngroups, int dt_softplus) {
    typedef typename Num<T>::acc acc;
    const int lane = threadIdx.x & 31;
    const i64 row = (i64)blockIdx.x * SU_WARPS + (threadIdx.x >> 5);
    if (row >= batch * nheads * dim) return;  // whole warp leaves together
    const i64 d = row % dim;
    const i64 bh = row / dim;
    const int h = (int)(bh % nheads);
    const i64 b = bh / nheads;
    const int g = h / (nheads / ngroups);

    const i64 hd = (i64)h * dim + d;  // index into (nheads, dim) arrays
    acc dtv = dt[row];
    if (dt_bias != nullptr) dtv += dt_bias[hd];
    if (dt_softplus) dtv = softplus20(dtv);
    const acc xv = x[row];
    const acc* Arow = A + hd * dstate;
    const acc* Brow = B + ((i64)b * ngroups + g) * dstate;
    const acc* Crow = C + ((i64)b * ngroups + g) * dstate;
    S* srow = state + b * st_b + (i64)h * st_h + d * st_d;

    acc part = acc(0);
    for (int s = lane; s < dstate; s += 32) {
        S* p = srow + (i64)s * st_n;
        const acc old = acc(Num<S>::in(*p));
        const acc dA = m_exp(dtv * Arow[s]);
        const acc hn = old * dA + (dtv * Brow[s]) * xv;  // state * dA + dB * x, dB = dt * B
        *p = Num<S>::out(hn);
        part += hn * Crow[s];
    }
    part = warp_sum(part);
    if (lane == 0) {
        acc y = part;
        if (D != nullptr) y += xv * D[hd];
        if (z != nullptr) y *= silu(z[row]);
        out[row] = Num<T>::out(y);
    }
}

#define SU_ENTRY(NAME, S, T)                                                                        \
    extern "C" __global__ void __launch_bounds__(32 * SU_WARPS, 4) NAME(                              \
        S* state, i64 st_b, i64 st_h, i64 st_d, i64 st_n, const Num<T>::acc* x,                     \
        const Num<T>::acc* dt, const Num<T>::acc* A, const Num<T>::acc* B, const Num<T>::acc* C,    \
        const Num<T>::acc* D, const Num<T>::acc* z, const Num<T>::acc* dt_bias, T* out, i64 batch,  \
        int nheads, i64 dim, int dstate, int ngroups, int dt_softplus) {                            \
        state_update_impl<S, T>(state, st_b, st_h, st_d, st_n, x, dt, A, B, C, D, z, dt_bias, out,  \
                                batch, nheads, dim, dstate, ngroups, dt_softplus);                  \
    }

// Name: state_update_<state dtype>_<x dtype>.
SU_ENTRY(state_update_f32_f32, float, float)
SU_ENTRY(state_update_f32_f16, float, half_t)
SU_ENTRY(state_update_f32_bf16, float, bf16_t)
SU_ENTRY(state_update_f32_f64, float, double)
SU_ENTRY(state_update_f16_f32, half_t, float)
SU_ENTRY(state_update_f16_f16, half_t, half_t)
SU_ENTRY(state_update_f16_bf16, half_t, bf16_t)
SU_ENTRY(state_update_f16_f64, half_t, double)
SU_ENTRY(state_update_bf16_f32, bf16_t, float)
SU_ENTRY(state_update_bf16_f16, bf16_t, half_t)
SU_ENTRY(state_update_bf16_bf16, bf16_t, bf16_t)
SU_ENTRY(state_update_bf16_f64, bf16_t, double)
SU_ENTRY(state_update_f64_f32, double, float)
SU_ENTRY(state_update_f64_f16, double, half_t)
SU_ENTRY(state_update_f64_bf16, double, bf16_t)
SU_ENTRY(state_update_f64_f64, double, double)
