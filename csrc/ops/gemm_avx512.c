/* gemm_avx512.c: the AVX-512 float32 micro-kernel of the GEMM (14 x 32 register tile).
 * Compiled for every CPU (target attribute), called only after runtime dispatch in gemm.c.
 * Not the driver: packing, blocking and threads live in gemm.c. */
#include <immintrin.h>

#include "gemm_kernel.h"

#define TG_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

/* NOTE: 14 rows x 2 zmm = 28 accumulators + 2 B vectors + 1 broadcast = 31 of the 32
 * zmm registers; per k step 2 loads and 14 broadcasts (load ports) feed 28 FMAs, so the
 * two FMA units stay busy. Each accumulator is a named variable so they stay in registers. */
#define TG_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)
#define TG_DECLARE(r) __m512 acc##r##_0 = _mm512_setzero_ps(), acc##r##_1 = _mm512_setzero_ps();
#define TG_STEP(r)                                      \
    {                                                   \
        __m512 ar = _mm512_set1_ps(a[r]);               \
        acc##r##_0 = _mm512_fmadd_ps(ar, b0, acc##r##_0); \
        acc##r##_1 = _mm512_fmadd_ps(ar, b1, acc##r##_1); \
    }
#define TG_STORE(r)                                                              \
    {                                                                            \
        float *row = c + (r) * ldc;                                              \
        if (accumulate) {                                                        \
            acc##r##_0 = _mm512_add_ps(_mm512_loadu_ps(row), acc##r##_0);        \
            acc##r##_1 = _mm512_add_ps(_mm512_loadu_ps(row + 16), acc##r##_1);   \
        }                                                                        \
        _mm512_storeu_ps(row, acc##r##_0);                                       \
        _mm512_storeu_ps(row + 16, acc##r##_1);                                  \
    }
#define TG_PREFETCH_C(r) _mm_prefetch((const char *)(c + (r) * ldc), _MM_HINT_T0); \
                         _mm_prefetch((const char *)(c + (r) * ldc + 31), _MM_HINT_T0);

TG_AVX512 static void micro_14x32(int64_t kc, const float *restrict a, const float *restrict b,
                                  float *restrict c, int64_t ldc, int accumulate)
{
    TG_ROWS(TG_DECLARE)
    TG_ROWS(TG_PREFETCH_C)
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(b);      /* packed B: 64-byte aligned rows of 32 */
        __m512 b1 = _mm512_load_ps(b + 16);
        _mm_prefetch((const char *)(b + 256), _MM_HINT_T0);
        TG_ROWS(TG_STEP)
        a += 14;
        b += 32;
    }
    TG_ROWS(TG_STORE)
}

static const tg_gemm_kernel kernel_avx512 = {
    .name = "avx512-14x32", .mr = 14, .nr = 32, .mc = 14 * 24, .kc = 256, .nc = 4096, .micro = micro_14x32,
};

const tg_gemm_kernel *tg_gemm_kernel_avx512(void) { return &kernel_avx512; }
