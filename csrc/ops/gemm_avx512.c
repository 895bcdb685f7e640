/* gemm_avx512.c: the AVX-512 float32 micro-kernel of the GEMM (14 x 32 register tile).
 * Compiled for every CPU (target attribute), called only after runtime dispatch in gemm.c.
 * Not the driver: packing, blocking and threads live in gemm.c. */
#include <immintrin.h>
#include <stdint.h>

#include "gemm_kernel.h"

#define TG_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

typedef uint16_t tg_bf16_bits;   /* raw bfloat16, as tg_bf16 in dtype.h */

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

/* ---- packing ---- */

/* 16 bfloat16 values widened to float32 (a bfloat16 is the top half of a float32). */
TG_AVX512 static inline __m512 widen_bf16(__m256i halves)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));
}

TG_AVX512 static inline __mmask16 first_lanes(int64_t count)
{
    return count >= 16 ? (__mmask16)0xffff : count <= 0 ? (__mmask16)0 : (__mmask16)((1u << count) - 1u);
}

/* 16 float32 values rounded to bfloat16 precision (round-to-nearest-even, NaN kept quiet). */
TG_AVX512 static inline __m512 round_bf16_ps(__m512 v)
{
    const __m512i b = _mm512_castps_si512(v), high = _mm512_set1_epi32((int)0xffff0000u);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), lsb), high);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    __m512i quieted = _mm512_or_si512(_mm512_and_si512(b, high), _mm512_set1_epi32(0x00400000));
    return _mm512_castsi512_ps(_mm512_mask_blend_epi32(nan, rounded, quieted));
}

/* A float32 vector as the packing stores it: rounded for TG_GEMM_SOURCE_F32_ROUNDED. */
TG_AVX512 static inline __m512 as_packed(__m512 v, tg_gemm_source source)
{
    return source == TG_GEMM_SOURCE_F32_ROUNDED ? round_bf16_ps(v) : v;
}

/* Lines contiguous (line_stride 1): one masked load per p. Lines strided and p contiguous
 * (p_stride 1, float32): a gather of the lines per p. */
TG_AVX512 static int pack_14(const void *src, tg_gemm_source source, int64_t line_stride, int64_t p_stride,
                             int64_t count, int64_t kc, float *panel)
{
    const __mmask16 store_mask = 0x3fff, load_mask = first_lanes(count);
    const int bf16 = source == TG_GEMM_SOURCE_BF16;
    if (line_stride == 1) {
        for (int64_t p = 0; p < kc; p++) {
            __m512 v = bf16 ? widen_bf16(_mm256_maskz_loadu_epi16(load_mask, (const tg_bf16_bits *)src + p * p_stride))
                            : as_packed(_mm512_maskz_loadu_ps(load_mask, (const float *)src + p * p_stride), source);
            _mm512_mask_storeu_ps(panel + p * 14, store_mask, v);
        }
        return 1;
    }
    if (p_stride == 1 && !bf16 && line_stride <= INT32_MAX / 16) {
        const int s = (int)line_stride;
        const __m512i index = _mm512_setr_epi32(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s, 8 * s, 9 * s,
                                                10 * s, 11 * s, 12 * s, 13 * s, 0, 0);
        const float *f = src;
        for (int64_t p = 0; p < kc; p++) {
            __m512 v = as_packed(_mm512_mask_i32gather_ps(_mm512_setzero_ps(), load_mask, index, f + p, 4), source);
            _mm512_mask_storeu_ps(panel + p * 14, store_mask, v);
        }
        return 1;
    }
    return 0;
}

TG_AVX512 static int pack_32(const void *src, tg_gemm_source source, int64_t line_stride, int64_t p_stride,
                             int64_t count, int64_t kc, float *panel)
{
    const __mmask16 low = first_lanes(count), high = first_lanes(count - 16);
    const int bf16 = source == TG_GEMM_SOURCE_BF16;
    if (line_stride == 1) {
        for (int64_t p = 0; p < kc; p++) {
            __m512 v0, v1;
            if (bf16) {
                const tg_bf16_bits *h = (const tg_bf16_bits *)src + p * p_stride;
                v0 = widen_bf16(_mm256_maskz_loadu_epi16(low, h));
                v1 = widen_bf16(_mm256_maskz_loadu_epi16(high, h + 16));
            } else {
                const float *f = (const float *)src + p * p_stride;
                v0 = as_packed(_mm512_maskz_loadu_ps(low, f), source);
                v1 = as_packed(_mm512_maskz_loadu_ps(high, f + 16), source);
            }
            _mm512_store_ps(panel + p * 32, v0);
            _mm512_store_ps(panel + p * 32 + 16, v1);
        }
        return 1;
    }
    if (p_stride == 1 && !bf16 && line_stride <= INT32_MAX / 32) {
        const int s = (int)line_stride;
        const __m512i index0 = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                  _mm512_set1_epi32(s));
        const __m512i index1 = _mm512_add_epi32(index0, _mm512_set1_epi32(16 * s));
        const float *f = src;
        for (int64_t p = 0; p < kc; p++) {
            _mm512_store_ps(panel + p * 32,
                            as_packed(_mm512_mask_i32gather_ps(_mm512_setzero_ps(), low, index0, f + p, 4), source));
            _mm512_store_ps(panel + p * 32 + 16,
                            as_packed(_mm512_mask_i32gather_ps(_mm512_setzero_ps(), high, index1, f + p, 4), source));
        }
        return 1;
    }
    return 0;
}

static const tg_gemm_kernel kernel_avx512 = {
    .name = "avx512-14x32", .mr = 14, .nr = 32, .mc = 14 * 40, .kc = 256, .nc = 4096, .micro = micro_14x32,
    .pack_a = pack_14, .pack_b = pack_32,
};

const tg_gemm_kernel *tg_gemm_kernel_avx512(void) { return &kernel_avx512; }
