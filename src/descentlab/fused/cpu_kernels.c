/* descentlab's CPU fused optimizer steps: one OpenMP region per step over all tensors of a param group.
 * Built at first use by descentlab/fused/cpu_build.py with the system C compiler and loaded with ctypes;
 * the kernels themselves are in cpu_kernels.h, instantiated here for float32 and float64, and for bf16 / fp16
 * parameters with float32 state (mixed precision).
 *
 * Every kernel has this signature (unused state arrays are NULL; returns 0, 1 if memory ran out, 2 if a
 * required array is NULL — then nothing was touched):
 *
 *   int dl_<rule>_<f32|f64|bf16f32|f16f32>(int64_t n, const int64_t *numel,          n tensors and their sizes
 *                           void *const *param, void *const *grad,     data pointers
 *                           void *const *s0, void *const *s1, void *const *s2,   state tensors
 *                           void *const *step, void *const *extra,     0-d step counters; extra 0-d state:
 *                                                     E per tensor, extra[t*E + e] (NAdam's Π; ASGD's η_t, μ_t)
 *                           int step_f64, const double *hp,        bit 0: step float64, bit 1 + e: extra e float64
 *                           double grad_inv_scale, int nthreads);   1/GradScaler scale, 0 = none
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

/* Below this many elements in a call the step runs on one thread (starting a team costs more). */
#define DL_MIN_PARALLEL 32768

/* The calling convention's version: descentlab/fused/abi.py's KERNEL_ABI_VERSION, passed by cpu_build.py. */
#ifndef DL_ABI_VERSION
#error "compile with -DDL_ABI_VERSION=<descentlab.fused.abi.KERNEL_ABI_VERSION>"
#endif
int dl_abi_version(void) { return DL_ABI_VERSION; }

/* offsets[t] = numel[0] + … + numel[t-1]; offsets[n] is the total. Caller frees. */
static int64_t *prefix_offsets(int64_t n, const int64_t *numel) {
    int64_t *offsets = (int64_t *)malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!offsets) return NULL;
    offsets[0] = 0;
    for (int64_t t = 0; t < n; t++) offsets[t + 1] = offsets[t] + numel[t];
    return offsets;
}

/* The tensor holding global element index `at` (binary search; skips empty tensors). */
static int64_t first_tensor(const int64_t *offsets, int64_t n, int64_t at) {
    int64_t lo = 0, hi = n;
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2;
        if (offsets[mid] <= at) lo = mid; else hi = mid;
    }
    while (lo < n - 1 && offsets[lo + 1] <= at) lo++;
    return lo;
}

/* A 0-d float32 / float64 state scalar (NAdam's Π, ASGD's η_t and μ_t) read into double, and a double stored into it
 * rounded to nearest (as Tensor.fill_). */
static inline double dl_load_scalar(void *p, int f64) { return f64 ? *(double *)p : (double)*(float *)p; }
static inline void dl_store_scalar(void *p, int f64, double v) {
    if (f64) *(double *)p = v; else *(float *)p = (float)v;
}

/* bfloat16 ↔ float32: the upper half of the float's bits; rounding to nearest even as c10::BFloat16 does. */
static inline float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t float_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Parameters and gradients in the state's dtype: T throughout. */
#define PT T
#define LOADP(x) (x)
#define STOREP(x) (x)

#define T float
#define SUF f32
#define SQRT sqrtf
#define FMA fmaf
#include "cpu_kernels.h"
#undef T
#undef SUF
#undef SQRT
#undef FMA

#define T double
#define SUF f64
#define SQRT sqrt
#define FMA fma
#include "cpu_kernels.h"
#undef T
#undef SUF
#undef SQRT
#undef FMA

#undef PT
#undef LOADP
#undef STOREP

/* Mixed precision (state_dtype=torch.float32): bf16 / fp16 parameters and gradients, float32 state and
 * arithmetic, the new parameter rounded to nearest even — the reference path's float32 working copy. */
#define T float
#define SQRT sqrtf
#define FMA fmaf

#define PT uint16_t
#define LOADP(x) bf16_to_float(x)
#define STOREP(x) float_to_bf16(x)
#define SUF bf16f32
#include "cpu_kernels.h"
#undef SUF
#undef PT
#undef LOADP
#undef STOREP

#define PT _Float16
#define LOADP(x) ((float)(x))
#define STOREP(x) ((_Float16)(x))
#define SUF f16f32
#include "cpu_kernels.h"
#undef SUF
#undef PT
#undef LOADP
#undef STOREP

#undef T
#undef SQRT
#undef FMA
