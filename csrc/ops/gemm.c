/* gemm.c: GEMM through OpenBLAS's cblas (the reference path). */
#include "gemm.h"

#include <cblas.h>
#include <stdlib.h>

#include "../core/tensor.h"

void tg_gemm_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                 const float *a, int64_t lda, const float *b, int64_t ldb,
                 float beta, float *c, int64_t ldc)
{
    if (m == 0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static float *widen(const tg_bf16 *x, int64_t rows, int64_t cols, int64_t ld)
{
    float *out = tg_aligned_alloc((size_t)(rows * cols) * sizeof(float));
    if (!out) return NULL;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) out[i * cols + j] = tg_bf16_to_f32(x[i * ld + j]);
    return out;
}

void tg_gemm_bf16(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                  const tg_bf16 *a, int64_t lda, const tg_bf16 *b, int64_t ldb,
                  float beta, float *c, int64_t ldc)
{
    float *fa = trans_a ? widen(a, k, m, lda) : widen(a, m, k, lda);
    float *fb = trans_b ? widen(b, n, k, ldb) : widen(b, k, n, ldb);
    if (fa && fb)
        tg_gemm_f32(trans_a, trans_b, m, n, k, fa, trans_a ? m : k, fb, trans_b ? k : n, beta, c, ldc);
    tg_aligned_free(fa);
    tg_aligned_free(fb);
}
