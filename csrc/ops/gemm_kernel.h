/* gemm_kernel.h: the micro-kernel interface between the GEMM driver (gemm.c) and its
 * instruction-set variants (gemm_avx512.c). Private to csrc/ops; callers use gemm.h.
 *
 * A micro-kernel computes one mr x nr tile of C from a packed A micro-panel and a
 * packed B micro-panel:
 *   acc[r][j] = sum over p in [0, kc), in increasing p, of a_panel[p*mr + r] * b_panel[p*nr + j]
 *   c[r*ldc + j] = acc[r][j]              (accumulate == 0)
 *   c[r*ldc + j] = c[r*ldc + j] + acc[r][j] (accumulate == 1)
 * NOTE: acc always starts from zero and C is added once at the end, so a tile computed
 * into a scratch tile and merged later gives the same bits as one written in place;
 * that is what makes edge tiles and thread splits invisible in the results. */
#ifndef TG_GEMM_KERNEL_H
#define TG_GEMM_KERNEL_H

#include <stdint.h>

typedef void (*tg_gemm_micro_fn)(int64_t kc, const float *a_panel, const float *b_panel,
                                 float *c, int64_t ldc, int accumulate);

/* What a packing reads: float32, bfloat16, or float32 rounded to bfloat16 precision as it
 * is packed (round-to-nearest-even, NaN kept quiet; tg_gemm_set_bf16_operands). */
typedef enum tg_gemm_source {
    TG_GEMM_SOURCE_F32 = 0,
    TG_GEMM_SOURCE_BF16 = 1,
    TG_GEMM_SOURCE_F32_ROUNDED = 2,
} tg_gemm_source;

/* Packs one micro-panel: count (<= mr or nr) lines of kc elements of a matrix of `source`
 * elements, element (line, p) at src[line*line_stride + p*p_stride], into
 * panel[p*width + line] (width = mr or nr), zeros past count. Returns 0 when it does
 * not handle these strides (the driver then packs with plain loops). */
typedef int (*tg_gemm_pack_fn)(const void *src, tg_gemm_source source, int64_t line_stride, int64_t p_stride,
                               int64_t count, int64_t kc, float *panel);

typedef struct tg_gemm_kernel {
    const char *name;
    int mr, nr;             /* register tile */
    int64_t mc, kc, nc;     /* cache blocks: A block mc x kc (L2), B micro-panel kc x nr (L1), B block kc x nc */
    tg_gemm_micro_fn micro;
    tg_gemm_pack_fn pack_a; /* width mr; NULL: plain loops */
    tg_gemm_pack_fn pack_b; /* width nr; NULL: plain loops */
} tg_gemm_kernel;

/* The AVX-512 kernel (gemm_avx512.c); only call it where __builtin_cpu_supports("avx512f"). */
const tg_gemm_kernel *tg_gemm_kernel_avx512(void);

#endif
