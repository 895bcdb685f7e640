/* qgemm.h: the integer matrix multiply of the quantized ops (quantized.c), and the
 * float <-> uint8 conversions around it. Internal to csrc/ops; not an op.
 *
 *   C[m, n] = sum_k A[m, k] * B[n, k]      A uint8 [M, K], B int8 [N, K], C int32 [M, N]
 *
 * B is packed once per call (tg_qgemm_pack_b) into panels of 32 rows with k in groups
 * of 4, the layout of AVX-512 VNNI's vpdpbusd (4 uint8 x int8 products summed into
 * each int32 lane). The result is exact integer arithmetic, so the VNNI kernel and
 * the portable one give identical integers, whatever the thread count.
 *
 * The columns form (convolutions) puts output positions in the vector lanes instead:
 *   C[o, p] = sum_k W[o, k] * X[k, p]      W int8 [O, K], X uint8 [K, P], C int32 [O, P]
 * with X packed as [K / 4][p_stride][4] (what a convolution's im2col writes directly),
 * so that C comes out channel-major, as NCHW wants, and W needs no packing.
 * NOTE: no overflow is possible while K < 2^31 / (255 * 128) = 65 793, which every
 * conv and linear of the zoo satisfies; the caller checks it.
 * Not here: requantisation to uint8 outputs (the quantized ops dequantize to float32). */
#ifndef TG_QGEMM_H
#define TG_QGEMM_H

#include <stddef.h>
#include <stdint.h>

#define TG_QGEMM_PANEL 32          /* B rows (output columns) per packed panel */
#define TG_QGEMM_MAX_K 65536       /* longest dot product without int32 overflow (see NOTE) */

/* Row stride (bytes) A must have for a given K: K rounded up to 4. The bytes between
 * K and the stride are read but multiply packed zeros, so any value is fine there. */
int64_t tg_qgemm_lda(int64_t k);

/* Bytes of B [n, k] once packed. */
size_t tg_qgemm_packed_bytes(int64_t n, int64_t k);

/* Packs B (int8 [n, k], row stride ldb) into `packed` (tg_qgemm_packed_bytes) and
 * writes row_sums[j] = sum_k B[j, k] ([n]), for the zero-point correction. */
void tg_qgemm_pack_b(int64_t n, int64_t k, const int8_t *b, int64_t ldb, int8_t *packed, int32_t *row_sums);

/* C = A @ B^T as int32 (row stride ldc); A uint8 [m, k] with row stride lda >= tg_qgemm_lda(k).
 * Splits rows over the thread pool (inline when called from a worker). */
void tg_qgemm_u8s8(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda, const int8_t *packed,
                   int32_t *c, int64_t ldc);

/* Columns form: positions per packed row of X (P rounded up to 32). */
int64_t tg_qgemm_cols_stride(int64_t p);

/* Packs X (uint8 [k, p], row stride ldx) as [k / 4][p_stride][4], zero past k and p. */
void tg_qgemm_pack_cols(int64_t k, int64_t p, const uint8_t *x, int64_t ldx, uint8_t *packed);

/* What the columns form writes: int32 C, or (dequantized, the quantized ops' case)
 * float32 y[o, p] = (float)(C[o, p] - offset[o]) * scale[o] + bias[o], then max(y, 0)
 * when relu. bias may be NULL. */
typedef struct tg_qgemm_dequant {
    const int32_t *offset;   /* [o] zero_point * sum_k W[o, k] */
    const float *scale;      /* [o] input_scale * weight_scale[o] */
    const float *bias;       /* [o] or NULL */
    int relu;
} tg_qgemm_dequant;

/* C = W @ X (row stride ldc): W int8 [o, k] with row stride ldw >= tg_qgemm_lda(k) and
 * zeros between k and ldw; X packed by tg_qgemm_pack_cols (or the same layout). Writes
 * int32 into c when dequant is NULL, else float32 as dequant says. Splits tiles over the
 * thread pool. */
void tg_qgemm_s8u8_cols(int64_t o, int64_t p, int64_t k, const int8_t *w, int64_t ldw, const uint8_t *x_packed,
                        const tg_qgemm_dequant *dequant, void *c, int64_t ldc);

/* q[i] = tg_quantize_u8(x[i], scale, zero_point) for i < n (AVX-512 where available;
 * identical results). */
void tg_quantize_row_u8(const float *x, uint8_t *q, int64_t n, float scale, int32_t zero_point);

/* Dot form (a linear layer on a few rows, where packing B would cost more than the
 * product): C[m, n] = A[m, k] . B[n, k] read straight from B's own layout (row stride ldb),
 * and row_sums[j] = sum_k B[j, k]. Rows of A need stride lda >= k only. */
#define TG_QGEMM_DOT_MAX_ROWS 4   /* quantized_linear uses the dot form below this many rows */
void tg_qgemm_u8s8_dot(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda, const int8_t *b, int64_t ldb,
                       int32_t *c, int64_t ldc, int32_t *row_sums);

typedef enum tg_qgemm_backend {
    TG_QGEMM_BACKEND_AUTO = 0,    /* VNNI where the CPU has it, else portable */
    TG_QGEMM_BACKEND_PORTABLE,    /* plain C loops */
} tg_qgemm_backend;

/* Sets the backend (tests compare the two) and returns the previous one. */
tg_qgemm_backend tg_qgemm_backend_set(tg_qgemm_backend backend);

/* "avx512-vnni-8x32" or "portable": what the next call will run. */
const char *tg_qgemm_kernel_name(void);

/* ONNX QuantizeLinear to uint8: q = saturate(round_half_even(x / scale) + zero_point). */
static inline uint8_t tg_quantize_u8(float x, float scale, int32_t zero_point)
{
    float v = x / scale;
    float lo = (float)-zero_point, hi = (float)(255 - zero_point);
    /* NOTE: clamping before rounding gives the same result (the bounds are integers),
     * and keeps |v| < 2^22 so that adding and removing 1.5 * 2^23 rounds to the nearest
     * integer, ties to even (the FPU's default mode), as ONNX and numpy round. NaN
     * goes to the low bound. */
    v = v >= lo ? v : lo;
    v = v > hi ? hi : v;
    v = (v + 12582912.0f) - 12582912.0f;
    return (uint8_t)((int32_t)v + zero_point);
}

#endif
