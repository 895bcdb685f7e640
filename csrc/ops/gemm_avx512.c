/* gemm_avx512.c: the AVX-512 float32 micro-kernels of the GEMM (a 14 x 32 register tile,
 * with variants for 1..13 rows and masked columns at the edges of C) and the packing
 * routines that feed them (float32 or bfloat16 sources, widened while packing).
 * Compiled for every CPU (target attribute), called only after runtime dispatch in gemm.c.
 * Not the driver: blocking, loop order and threads live in gemm.c. */
#include <immintrin.h>
#include <stdint.h>

#include "gemm_kernel.h"

#define TG_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define TG_AVX512_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"), always_inline)) inline

typedef uint16_t tg_bf16_bits;   /* raw bfloat16, as tg_bf16 in dtype.h */

enum { TG_MR = 14, TG_NR = 32 };

TG_AVX512_INLINE static __mmask16 first_lanes(int64_t count)
{
    return count >= 16 ? (__mmask16)0xffff : count <= 0 ? (__mmask16)0 : (__mmask16)((1u << count) - 1u);
}

/* ---- micro-kernels ---- */

/* NOTE: the full tile keeps 14 rows x 2 zmm = 28 accumulators + 2 B vectors + 1 broadcast
 * in the 32 zmm registers; per k step 2 loads and 14 broadcasts (load ports) feed 28 FMAs,
 * so both FMA units stay busy. `rows` is a compile-time constant in every caller (the
 * function is always inlined into one wrapper per row count), so the loops unroll and the
 * accumulators live in registers; the k loop is unrolled 4 times so that its pointer and
 * counter updates take fewer of the issue slots the FMAs need (measured: about 5% on its own).
 * Each C element is the same FMA chain whatever `rows`
 * and `cols` are, which keeps edge tiles bit-identical to interior ones. */
TG_AVX512_INLINE static void micro_rows(const int rows, int64_t kc, const float *restrict a,
                                        const float *restrict b, float *restrict c, int64_t ldc, int accumulate,
                                        int cols)
{
    __m512 acc0[TG_MR], acc1[TG_MR];
#pragma GCC unroll 14
    for (int r = 0; r < rows; r++) {
        acc0[r] = _mm512_setzero_ps();
        acc1[r] = _mm512_setzero_ps();
    }
#pragma GCC unroll 14
    for (int r = 0; r < rows; r++) {
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + r * ldc + 31), _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(b);   /* packed B: 64-byte aligned rows of 32 */
        __m512 b1 = _mm512_load_ps(b + 16);
        _mm_prefetch((const char *)(a + 8 * TG_MR), _MM_HINT_T0);
#pragma GCC unroll 14
        for (int r = 0; r < rows; r++) {
            __m512 ar = _mm512_set1_ps(a[r]);
            acc0[r] = _mm512_fmadd_ps(ar, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(ar, b1, acc1[r]);
        }
        a += TG_MR;
        b += TG_NR;
    }
    if (cols == TG_NR) {
#pragma GCC unroll 14
        for (int r = 0; r < rows; r++) {
            float *row = c + r * ldc;
            if (accumulate) {
                acc0[r] = _mm512_add_ps(_mm512_loadu_ps(row), acc0[r]);
                acc1[r] = _mm512_add_ps(_mm512_loadu_ps(row + 16), acc1[r]);
            }
            _mm512_storeu_ps(row, acc0[r]);
            _mm512_storeu_ps(row + 16, acc1[r]);
        }
        return;
    }
    const __mmask16 low = first_lanes(cols), high = first_lanes(cols - 16);
#pragma GCC unroll 14
    for (int r = 0; r < rows; r++) {
        float *row = c + r * ldc;
        if (accumulate) {
            acc0[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(low, row), acc0[r]);
            acc1[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(high, row + 16), acc1[r]);
        }
        _mm512_mask_storeu_ps(row, low, acc0[r]);
        _mm512_mask_storeu_ps(row + 16, high, acc1[r]);
    }
}

#define TG_MICRO(R)                                                                                         \
    TG_AVX512 static void micro_##R(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,     \
                                    int accumulate, int cols)                                              \
    {                                                                                                      \
        micro_rows(R, kc, a, b, c, ldc, accumulate, cols);                                                 \
    }
TG_MICRO(1) TG_MICRO(2) TG_MICRO(3) TG_MICRO(4) TG_MICRO(5) TG_MICRO(6) TG_MICRO(7)
TG_MICRO(8) TG_MICRO(9) TG_MICRO(10) TG_MICRO(11) TG_MICRO(12) TG_MICRO(13) TG_MICRO(14)
#undef TG_MICRO

typedef void (*micro_fixed_fn)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int accumulate,
                               int cols);
static const micro_fixed_fn micro_by_rows[TG_MR + 1] = {
    0, micro_1, micro_2, micro_3, micro_4, micro_5, micro_6, micro_7,
    micro_8, micro_9, micro_10, micro_11, micro_12, micro_13, micro_14,
};

static void micro(int64_t kc, const float *a_panel, const float *b_panel, float *c, int64_t ldc, int accumulate,
                  int rows, int cols)
{
    micro_by_rows[rows](kc, a_panel, b_panel, c, ldc, accumulate, cols);
}

/* ---- packing ---- */

/* 16 bfloat16 values widened to float32 (a bfloat16 is the top half of a float32). */
TG_AVX512_INLINE static __m512 widen_bf16(__m256i halves)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));
}

/* Up to 16 consecutive elements (mask) of a float32 or bfloat16 source, as float32. */
TG_AVX512_INLINE static __m512 load_line(const void *src, int bf16, int64_t offset, __mmask16 mask)
{
    return bf16 ? widen_bf16(_mm256_maskz_loadu_epi16(mask, (const tg_bf16_bits *)src + offset))
                : _mm512_maskz_loadu_ps(mask, (const float *)src + offset);
}

/* In-register transpose of a 16 x 16 float32 block: v[i] lane j <-> v[j] lane i. */
TG_AVX512_INLINE static void transpose_16x16(__m512 v[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        v[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        v[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        v[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        v[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    /* v[4g + s], 128-bit lane L: rows 4g .. 4g+3 of column 4L + s; the two f32x4 shuffle rounds
     * gather, for column 4L + s, lane L of v[s], v[4 + s], v[8 + s], v[12 + s] */
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(v[i], v[i + 4], 0x88);        /* lanes 0,2 of v[i]; 0,2 of v[i+4] */
        t[i + 4] = _mm512_shuffle_f32x4(v[i], v[i + 4], 0xdd);    /* lanes 1,3 */
        t[i + 8] = _mm512_shuffle_f32x4(v[i + 8], v[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(v[i + 8], v[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        v[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        v[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        v[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        v[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* Lines strided, p contiguous (a row-major A, a column-major B): 16 lines x 16 p at a time
 * are loaded as lines, transposed in registers and stored as 16 panel rows of `width`
 * floats, lanes [lane0, lane0 + 16) of each panel row (store_mask limits to the width). */
TG_AVX512_INLINE static void pack_transposed(const void *src, int bf16, int64_t line_stride, int64_t count,
                                             int64_t kc, float *panel, int width, int lane0, __mmask16 store_mask)
{
    for (int64_t p0 = 0; p0 < kc; p0 += 16) {
        const __mmask16 load_mask = first_lanes(kc - p0);
        __m512 v[16];
        for (int line = 0; line < 16; line++)
            v[line] = line < count ? load_line(src, bf16, line * line_stride + p0, load_mask) : _mm512_setzero_ps();
        transpose_16x16(v);
        const int steps = kc - p0 < 16 ? (int)(kc - p0) : 16;
        for (int q = 0; q < steps; q++) _mm512_mask_storeu_ps(panel + (p0 + q) * width + lane0, store_mask, v[q]);
    }
}

/* Packs `count` lines as ceil(count / width) micro-panels [kc][width] (width 14 or 32),
 * panel g at dst + g*kc*width, lanes past count zero (the load masks zero them).
 * Lines contiguous (line_stride 1: a column-major A, a row-major B): p outer, so each
 * source row is read once, left to right, in one run the hardware prefetcher follows
 * (NOTE: panel by panel, the rows of a wide matrix were touched 128 bytes at a time, a
 * page apart: every access missed); the row PREFETCH_ROWS ahead is prefetched as well.
 * Lines strided, p contiguous: 16 x 16 blocks transposed in registers. */
enum { PREFETCH_ROWS = 4 };

TG_AVX512_INLINE static int pack_block(const int width, const void *src, int bf16, int64_t line_stride,
                                       int64_t p_stride, int64_t count, int64_t kc, float *dst)
{
    const int64_t panels = (count + width - 1) / width, elem = bf16 ? 2 : 4;
    const __mmask16 store_mask = width == 16 || width == 32 ? (__mmask16)0xffff : first_lanes(width);
    if (line_stride == 1) {
        for (int64_t p = 0; p < kc; p++) {
            const char *ahead = (const char *)src + (p + PREFETCH_ROWS) * p_stride * elem;
            for (int64_t g = 0; g < panels; g++) {
                float *row = dst + g * kc * width + p * width;
                for (int half = 0; half * 16 < width; half++) {
                    int64_t first = g * width + half * 16;
                    if (p + PREFETCH_ROWS < kc) _mm_prefetch(ahead + first * elem, _MM_HINT_T0);
                    _mm512_mask_storeu_ps(row + half * 16, store_mask,
                                          load_line(src, bf16, p * p_stride + first, first_lanes(count - first)));
                }
            }
        }
        return 1;
    }
    if (p_stride == 1) {
        for (int64_t g = 0; g < panels; g++)
            for (int half = 0; half * 16 < width; half++) {
                int64_t first = g * width + half * 16, lines = count - first;
                const void *origin = (const char *)src + first * line_stride * elem;
                pack_transposed(origin, bf16, line_stride, lines < 16 ? lines : 16, kc, dst + g * kc * width,
                                width, half * 16, store_mask);
            }
        return 1;
    }
    return 0;
}

TG_AVX512 static int pack_14(const void *src, int bf16, int64_t line_stride, int64_t p_stride, int64_t count,
                             int64_t kc, float *dst)
{
    return pack_block(TG_MR, src, bf16, line_stride, p_stride, count, kc, dst);
}

TG_AVX512 static int pack_32(const void *src, int bf16, int64_t line_stride, int64_t p_stride, int64_t count,
                             int64_t kc, float *dst)
{
    return pack_block(TG_NR, src, bf16, line_stride, p_stride, count, kc, dst);
}

static const tg_gemm_kernel kernel_avx512 = {
    .name = "avx512-14x32", .mr = TG_MR, .nr = TG_NR, .mc = 14 * 40, .kc = 256, .nc = 4096, .micro = micro,
    .pack_a = pack_14, .pack_b = pack_32,
};

const tg_gemm_kernel *tg_gemm_kernel_avx512(void) { return &kernel_avx512; }
