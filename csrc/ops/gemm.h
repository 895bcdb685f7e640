/* gemm.h: the matrix multiply every heavy op stands on (linear, matmul, conv).
 *
 *   C[m, n] = op(A)[m, k] @ op(B)[k, n] + beta * C[m, n]
 * row-major; op(X) = X or its transpose; lda/ldb/ldc are row strides in elements.
 * beta is 0 (overwrite; C may hold garbage, even NaN) or 1 (accumulate).
 * Splits work over the thread pool itself (inline when called from a worker).
 * NOTE: each C element is summed over k in an order fixed by the shapes alone,
 * never by the thread count, so results are bit-identical for any thread count. */
#ifndef TG_GEMM_H
#define TG_GEMM_H

#include <stdint.h>

#include "../core/dtype.h"

void tg_gemm_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                 const float *a, int64_t lda, const float *b, int64_t ldb,
                 float beta, float *c, int64_t ldc);

/* The same with bfloat16 A and B and float32 C (mixed precision). */
void tg_gemm_bf16(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                  const tg_bf16 *a, int64_t lda, const tg_bf16 *b, int64_t ldb,
                  float beta, float *c, int64_t ldc);

/* Mixed precision for float32 callers: while on, tg_gemm_f32 rounds every element of A
 * and B to bfloat16 (round-to-nearest-even, as a cast to torch.bfloat16 does) as it
 * packs them, and accumulates in float32: conv, linear and matmul then compute like
 * PyTorch's bfloat16 autocast (before autocast rounds the output to bfloat16; C stays
 * float32 here). Global like the backend: the trainer turns it on around the steps of a
 * train.bf16 run. Returns the previous setting. */
int tg_gemm_set_bf16_operands(int on);
int tg_gemm_bf16_operands(void);

typedef enum tg_gemm_backend {
    TG_GEMM_BACKEND_AUTO = 0,   /* our packed GEMM with the best micro-kernel of this CPU */
    TG_GEMM_BACKEND_PORTABLE,   /* our packed GEMM with the portable micro-kernel */
    TG_GEMM_BACKEND_OPENBLAS,   /* cblas_sgemm: the reference */
} tg_gemm_backend;

/* Sets the backend and returns the previous one. The first GEMM call reads it from
 * TRUGRADE_GEMM (openblas | portable; anything else: auto). For tests and benchmarks;
 * not while another thread is inside a GEMM. */
tg_gemm_backend tg_gemm_backend_set(tg_gemm_backend backend);

/* "avx512-14x32", "portable-4x16" or "openblas": what the next call will run. */
const char *tg_gemm_kernel_name(void);

#endif
