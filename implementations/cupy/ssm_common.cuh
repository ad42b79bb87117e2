// Helpers shared by the kernels of implementations/cupy.
//
// Deliberately header-free (no <cuda_fp16.h>, <cuda_bf16.h>, <cmath>): the same text compiles under
// NVRTC (what the loader uses at run time, without any CUDA include path) and under nvcc (what the
// compile test uses).  Half and bfloat16 are stored as raw 16-bit words and converted with single
// PTX `cvt` instructions (round to nearest even), which is exactly what __half / __nv_bfloat16 do.
#pragma once

typedef long long i64;

struct half_t { unsigned short bits; };  // IEEE binary16 storage (torch.float16)
struct bf16_t { unsigned short bits; };  // bfloat16 storage (torch.bfloat16)

// Num<T>: the accumulation type of a storage type and exact conversions to/from it.
// fp32 accumulation for float / half / bfloat16, fp64 for double.
template <typename T> struct Num;

template <> struct Num<float> {
    typedef float acc;
    static __device__ __forceinline__ float in(float x) { return x; }
    static __device__ __forceinline__ float out(float x) { return x; }
};

template <> struct Num<double> {
    typedef double acc;
    static __device__ __forceinline__ double in(double x) { return x; }
    static __device__ __forceinline__ double out(double x) { return x; }
};

template <> struct Num<half_t> {
    typedef float acc;
    static __device__ __forceinline__ float in(half_t x) {
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
        return f;
    }
    static __device__ __forceinline__ half_t out(float f) {
        half_t r;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(f));
        return r;
    }
};

template <> struct Num<bf16_t> {
    typedef float acc;
    // bfloat16 is the upper half of a binary32: widening is a shift (exact).
    static __device__ __forceinline__ float in(bf16_t x) {
        return __uint_as_float(((unsigned int)x.bits) << 16);
    }
    static __device__ __forceinline__ bf16_t out(float f) {
        bf16_t r;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r.bits) : "f"(f));
        return r;
    }
};

// Math on the accumulation type (accurate library versions; the loader never passes fast-math).
__device__ __forceinline__ float  m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float  m_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double m_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float  m_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double m_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float  m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float  m_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_abs(double x) { return fabs(x); }
__device__ __forceinline__ void m_sincos(float x, float* s, float* c) { sincosf(x, s, c); }
__device__ __forceinline__ void m_sincos(double x, double* s, double* c) { sincos(x, s, c); }
__device__ __forceinline__ void m_sincospi(float x, float* s, float* c) { sincospif(x, s, c); }
__device__ __forceinline__ void m_sincospi(double x, double* s, double* c) { sincospi(x, s, c); }

template <typename A> __device__ __forceinline__ A neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double neg_inf<double>() {
    return __longlong_as_double(0xfff0000000000000LL);
}

// softplus with PyTorch's / mamba-ssm's threshold: x for x > 20, else log(1 + e^x).
template <typename A> __device__ __forceinline__ A softplus20(A x) {
    return x <= A(20) ? m_log1p(m_exp(x)) : x;
}

// SiLU(z) = z * sigmoid(z) = z / (1 + e^{-z}), as torch.nn.functional.silu.
template <typename A> __device__ __forceinline__ A silu(A z) {
    return z / (A(1) + m_exp(-z));
}

__device__ __forceinline__ i64 min64(i64 a, i64 b) { return a < b ? a : b; }
__device__ __forceinline__ int mini(int a, int b) { return a < b ? a : b; }

// Sum over all 32 lanes of a warp (every lane gets the total). The caller guarantees the whole warp
// is converged here.
template <typename A> __device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

template <typename A> __device__ __forceinline__ A warp_max(A v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        A o = __shfl_xor_sync(0xffffffffu, v, off);
        v = o > v ? o : v;
    }
    return v;
}

// Dynamic shared memory, 16-byte aligned; each kernel carves it with reinterpret_cast.
extern __shared__ __align__(16) unsigned long long ssm_dyn_smem[];
