/* qgemm.c: the uint8 x int8 -> int32 GEMM of qgemm.h: packing of B, the AVX-512 VNNI
 * micro-kernel (8 rows x 32 columns), the portable kernel, and the row split over threads.
 * Not here: quantisation parameters or im2col (quantized.c). */
#include "qgemm.h"

#include <immintrin.h>
#include <string.h>

#include "../core/threads.h"

#define TG_QGEMM_ROWS 8   /* A rows per micro-tile */

static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

int64_t tg_qgemm_lda(int64_t k) { return round_up(k, 4); }

size_t tg_qgemm_packed_bytes(int64_t n, int64_t k)
{
    return (size_t)(round_up(n, TG_QGEMM_PANEL) * round_up(k, 4));
}

/* Panel p holds B rows [32p, 32p + 32) as [k / 4][32][4]: byte t of lane j of group q
 * is B[32p + j, 4q + t], zero past n or k. */
void tg_qgemm_pack_b(int64_t n, int64_t k, const int8_t *b, int64_t ldb, int8_t *packed, int32_t *row_sums)
{
    int64_t groups = round_up(k, 4) / 4;
    memset(packed, 0, tg_qgemm_packed_bytes(n, k));
    for (int64_t j = 0; j < n; j++) {
        const int8_t *row = b + j * ldb;   /* [k] */
        int8_t *dst = packed + (j / TG_QGEMM_PANEL) * groups * TG_QGEMM_PANEL * 4 + (j % TG_QGEMM_PANEL) * 4;
        int32_t sum = 0;
        for (int64_t kk = 0; kk < k; kk++) {
            dst[(kk / 4) * TG_QGEMM_PANEL * 4 + kk % 4] = row[kk];
            sum += row[kk];
        }
        row_sums[j] = sum;
    }
}

/* ---- kernels: one tile of rows [r0, r0 + rows) x columns of one panel ---- */

typedef struct qgemm_args {
    int64_t m, n, k;
    const uint8_t *a;       /* [m, lda] */
    int64_t lda;
    const int8_t *packed;   /* tg_qgemm_pack_b */
    int32_t *c;             /* [m, ldc] */
    int64_t ldc;
} qgemm_args;

static void tile_portable(const qgemm_args *g, int64_t r0, int64_t rows, int64_t panel)
{
    int64_t groups = round_up(g->k, 4) / 4;
    const int8_t *p = g->packed + panel * groups * TG_QGEMM_PANEL * 4;   /* [groups][32][4] */
    int64_t cols = g->n - panel * TG_QGEMM_PANEL;
    if (cols > TG_QGEMM_PANEL) cols = TG_QGEMM_PANEL;
    for (int64_t r = r0; r < r0 + rows; r++) {
        const uint8_t *a = g->a + r * g->lda;   /* [k] */
        int32_t acc[TG_QGEMM_PANEL] = {0};
        for (int64_t q = 0; q < groups; q++)
            for (int64_t j = 0; j < TG_QGEMM_PANEL; j++)
                for (int t = 0; t < 4; t++)
                    acc[j] += (int32_t)a[4 * q + t] * (int32_t)p[(q * TG_QGEMM_PANEL + j) * 4 + t];
        memcpy(g->c + r * g->ldc + panel * TG_QGEMM_PANEL, acc, sizeof(int32_t) * (size_t)cols);
    }
}

#define TG_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

/* NOTE: 8 rows x 2 zmm = 16 accumulators; per group of 4 k, 2 loads of B and 8
 * broadcasts of 4 A bytes feed 16 vpdpbusd. A missing row (the last tile) reads the
 * tile's last real row again and is not stored, so the loop has no branches. */
#define TG_QROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define TG_QDECLARE(r)                                                            \
    __m512i acc##r##_0 = _mm512_setzero_si512(), acc##r##_1 = _mm512_setzero_si512(); \
    const uint8_t *a##r = g->a + (r0 + ((r) < rows ? (r) : rows - 1)) * g->lda;
#define TG_QSTEP(r)                                                 \
    {                                                               \
        int32_t quad;                                               \
        memcpy(&quad, a##r + 4 * q, 4);                             \
        __m512i ar = _mm512_set1_epi32(quad);                       \
        acc##r##_0 = _mm512_dpbusd_epi32(acc##r##_0, ar, b0);       \
        acc##r##_1 = _mm512_dpbusd_epi32(acc##r##_1, ar, b1);       \
    }
#define TG_QSTORE(r)                                                              \
    if ((r) < rows) {                                                             \
        int32_t *row = g->c + (r0 + (r)) * g->ldc + panel * TG_QGEMM_PANEL;       \
        _mm512_mask_storeu_epi32(row, mask0, acc##r##_0);                         \
        _mm512_mask_storeu_epi32(row + 16, mask1, acc##r##_1);                    \
    }

TG_VNNI static void tile_vnni(const qgemm_args *g, int64_t r0, int64_t rows, int64_t panel)
{
    int64_t groups = round_up(g->k, 4) / 4;
    const int8_t *p = g->packed + panel * groups * TG_QGEMM_PANEL * 4;   /* [groups][32][4] */
    int64_t cols = g->n - panel * TG_QGEMM_PANEL;
    __mmask16 mask0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
    __mmask16 mask1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
    TG_QROWS(TG_QDECLARE)
    for (int64_t q = 0; q < groups; q++) {
        __m512i b0 = _mm512_loadu_si512(p + q * TG_QGEMM_PANEL * 4);
        __m512i b1 = _mm512_loadu_si512(p + q * TG_QGEMM_PANEL * 4 + 64);
        TG_QROWS(TG_QSTEP)
    }
    TG_QROWS(TG_QSTORE)
}

/* ---- dispatch and threads ---- */

static tg_qgemm_backend backend = TG_QGEMM_BACKEND_AUTO;

static int use_vnni(void)
{
    static int cached = -1;
    if (cached < 0)
        cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vnni");
    return backend == TG_QGEMM_BACKEND_AUTO && cached;
}

tg_qgemm_backend tg_qgemm_backend_set(tg_qgemm_backend value)
{
    tg_qgemm_backend previous = backend;
    backend = value;
    return previous;
}

const char *tg_qgemm_kernel_name(void) { return use_vnni() ? "avx512-vnni-8x32" : "portable"; }

typedef struct qgemm_ctx {
    qgemm_args args;
    int vnni;
} qgemm_ctx;

/* Items are row tiles; each runs over every panel (a panel stays in cache across tiles). */
static void qgemm_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const qgemm_ctx *c = arg;
    int64_t panels = round_up(c->args.n, TG_QGEMM_PANEL) / TG_QGEMM_PANEL;
    for (int64_t panel = 0; panel < panels; panel++)
        for (int64_t tile = begin; tile < end; tile++) {
            int64_t r0 = tile * TG_QGEMM_ROWS;
            int64_t rows = c->args.m - r0 < TG_QGEMM_ROWS ? c->args.m - r0 : TG_QGEMM_ROWS;
            if (c->vnni) tile_vnni(&c->args, r0, rows, panel);
            else tile_portable(&c->args, r0, rows, panel);
        }
}

void tg_qgemm_u8s8(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda, const int8_t *packed,
                   int32_t *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    qgemm_ctx ctx = {
        .args = {.m = m, .n = n, .k = k, .a = a, .lda = lda, .packed = packed, .c = c, .ldc = ldc},
        .vnni = use_vnni(),
    };
    int64_t tiles = (m + TG_QGEMM_ROWS - 1) / TG_QGEMM_ROWS;
    int64_t work_per_tile = TG_QGEMM_ROWS * round_up(n, TG_QGEMM_PANEL) * (k > 0 ? k : 1);
    int64_t grain = (1 << 18) / work_per_tile + 1;
    tg_parallel_for(tiles, grain, qgemm_range, &ctx);
}
