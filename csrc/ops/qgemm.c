/* qgemm.c: the uint8 x int8 -> int32 GEMMs of qgemm.h (rows form: packing of B, the
 * AVX-512 VNNI micro-kernel of 8 rows x 32 columns; columns form: 8 output channels x 32
 * positions), their portable kernels, the split over threads, and the row quantizer.
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
 * is B[32p + j, 4q + t], zero past n or k. Moves 4-byte groups, the unit of the layout. */
void tg_qgemm_pack_b(int64_t n, int64_t k, const int8_t *b, int64_t ldb, int8_t *packed, int32_t *row_sums)
{
    int64_t groups = round_up(k, 4) / 4, full = k / 4;
    memset(packed, 0, tg_qgemm_packed_bytes(n, k));
    for (int64_t j = 0; j < n; j++) {
        const int8_t *row = b + j * ldb;   /* [k] */
        int8_t *dst = packed + (j / TG_QGEMM_PANEL) * groups * TG_QGEMM_PANEL * 4 + (j % TG_QGEMM_PANEL) * 4;
        for (int64_t q = 0; q < full; q++) memcpy(dst + q * TG_QGEMM_PANEL * 4, row + 4 * q, 4);
        if (full < groups) memcpy(dst + full * TG_QGEMM_PANEL * 4, row + 4 * full, (size_t)(k - 4 * full));
        int32_t sum = 0;
        for (int64_t kk = 0; kk < k; kk++) sum += row[kk];
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

/* ---- the columns form: tiles of 8 output channels x 32 positions ---- */

typedef struct cols_args {
    int64_t o, p, k, groups, p_stride;
    const int8_t *w;        /* [o, ldw] */
    int64_t ldw;
    const uint8_t *x;       /* [groups][p_stride][4] */
    const tg_qgemm_dequant *dequant;   /* NULL: int32 output */
    void *c;                /* [o, ldc] int32 or float32 */
    int64_t ldc;
} cols_args;

static inline float dequantize_one(const tg_qgemm_dequant *d, int32_t acc, int64_t row)
{
    float y = (float)(acc - d->offset[row]) * d->scale[row];
    if (d->bias) y += d->bias[row];
    return d->relu && !(y > 0) ? 0.0f : y;
}

int64_t tg_qgemm_cols_stride(int64_t p) { return round_up(p, TG_QGEMM_PANEL); }

void tg_qgemm_pack_cols(int64_t k, int64_t p, const uint8_t *x, int64_t ldx, uint8_t *packed)
{
    int64_t stride = tg_qgemm_cols_stride(p);
    memset(packed, 0, (size_t)(round_up(k, 4) * stride));
    for (int64_t kk = 0; kk < k; kk++)
        for (int64_t j = 0; j < p; j++) packed[((kk / 4) * stride + j) * 4 + kk % 4] = x[kk * ldx + j];
}

static void cols_tile_portable(const cols_args *g, int64_t o0, int64_t rows, int64_t p0)
{
    int64_t cols = g->p - p0 < TG_QGEMM_PANEL ? g->p - p0 : TG_QGEMM_PANEL;
    for (int64_t r = o0; r < o0 + rows; r++) {
        const int8_t *w = g->w + r * g->ldw;   /* [groups * 4] */
        int32_t acc[TG_QGEMM_PANEL] = {0};
        for (int64_t q = 0; q < g->groups; q++) {
            const uint8_t *x = g->x + (q * g->p_stride + p0) * 4;   /* [32][4] */
            for (int64_t j = 0; j < TG_QGEMM_PANEL; j++)
                for (int t = 0; t < 4; t++) acc[j] += (int32_t)x[j * 4 + t] * (int32_t)w[4 * q + t];
        }
        if (!g->dequant) {
            memcpy((int32_t *)g->c + r * g->ldc + p0, acc, sizeof(int32_t) * (size_t)cols);
            continue;
        }
        float *y = (float *)g->c + r * g->ldc + p0;
        for (int64_t j = 0; j < cols; j++) y[j] = dequantize_one(g->dequant, acc[j], r);
    }
}

/* The float epilogue of one accumulator row: mul then add (no FMA), as dequantize_one. */
TG_VNNI static inline void store_dequantized(const tg_qgemm_dequant *d, int64_t row, float *y, __mmask16 mask,
                                             __m512i acc)
{
    __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, _mm512_set1_epi32(d->offset[row])));
    v = _mm512_mul_ps(v, _mm512_set1_ps(d->scale[row]));
    if (d->bias) v = _mm512_add_ps(v, _mm512_set1_ps(d->bias[row]));
    if (d->relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
    _mm512_mask_storeu_ps(y, mask, v);
}

#define TG_CDECLARE(r)                                                            \
    __m512i acc##r##_0 = _mm512_setzero_si512(), acc##r##_1 = _mm512_setzero_si512(); \
    const int8_t *w##r = g->w + (o0 + ((r) < rows ? (r) : rows - 1)) * g->ldw;
#define TG_CSTEP(r)                                                 \
    {                                                               \
        int32_t quad;                                               \
        memcpy(&quad, w##r + 4 * q, 4);                             \
        __m512i wr = _mm512_set1_epi32(quad);                       \
        acc##r##_0 = _mm512_dpbusd_epi32(acc##r##_0, x0, wr);       \
        acc##r##_1 = _mm512_dpbusd_epi32(acc##r##_1, x1, wr);       \
    }
#define TG_CSTORE(r)                                                                  \
    if ((r) < rows) {                                                                 \
        if (g->dequant) {                                                             \
            float *row = (float *)g->c + (o0 + (r)) * g->ldc + p0;                    \
            store_dequantized(g->dequant, o0 + (r), row, mask0, acc##r##_0);          \
            store_dequantized(g->dequant, o0 + (r), row + 16, mask1, acc##r##_1);     \
        } else {                                                                      \
            int32_t *row = (int32_t *)g->c + (o0 + (r)) * g->ldc + p0;                \
            _mm512_mask_storeu_epi32(row, mask0, acc##r##_0);                         \
            _mm512_mask_storeu_epi32(row + 16, mask1, acc##r##_1);                    \
        }                                                                             \
    }

/* NOTE: the same register budget as tile_vnni with the roles swapped: 2 loads of packed
 * positions and 8 broadcasts of 4 weight bytes feed 16 vpdpbusd per group of 4 k. */
TG_VNNI static void cols_tile_vnni(const cols_args *g, int64_t o0, int64_t rows, int64_t p0)
{
    int64_t cols = g->p - p0;
    __mmask16 mask0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
    __mmask16 mask1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
    TG_QROWS(TG_CDECLARE)
    for (int64_t q = 0; q < g->groups; q++) {
        const uint8_t *x = g->x + (q * g->p_stride + p0) * 4;
        __m512i x0 = _mm512_loadu_si512(x);
        __m512i x1 = _mm512_loadu_si512(x + 64);
        TG_QROWS(TG_CSTEP)
    }
    TG_QROWS(TG_CSTORE)
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

typedef struct cols_ctx {
    cols_args args;
    int vnni;
    int64_t p_tiles;
} cols_ctx;

/* Items: (channel tile, position tile), position tiles fastest (a channel tile's weights stay in cache). */
static void cols_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const cols_ctx *c = arg;
    for (int64_t item = begin; item < end; item++) {
        int64_t o0 = item / c->p_tiles * TG_QGEMM_ROWS, p0 = item % c->p_tiles * TG_QGEMM_PANEL;
        int64_t rows = c->args.o - o0 < TG_QGEMM_ROWS ? c->args.o - o0 : TG_QGEMM_ROWS;
        if (c->vnni) cols_tile_vnni(&c->args, o0, rows, p0);
        else cols_tile_portable(&c->args, o0, rows, p0);
    }
}

void tg_qgemm_s8u8_cols(int64_t o, int64_t p, int64_t k, const int8_t *w, int64_t ldw, const uint8_t *x_packed,
                        const tg_qgemm_dequant *dequant, void *c, int64_t ldc)
{
    if (o <= 0 || p <= 0) return;
    cols_ctx ctx = {
        .args = {.o = o, .p = p, .k = k, .groups = round_up(k, 4) / 4, .p_stride = tg_qgemm_cols_stride(p),
                 .w = w, .ldw = ldw, .x = x_packed, .dequant = dequant, .c = c, .ldc = ldc},
        .vnni = use_vnni(), .p_tiles = round_up(p, TG_QGEMM_PANEL) / TG_QGEMM_PANEL,
    };
    int64_t tiles = (o + TG_QGEMM_ROWS - 1) / TG_QGEMM_ROWS * ctx.p_tiles;
    int64_t grain = (1 << 16) / (TG_QGEMM_ROWS * TG_QGEMM_PANEL * (k > 0 ? k : 1)) + 1;
    tg_parallel_for(tiles, grain, cols_range, &ctx);
}

/* ---- the dot form: one B row against every A row, 64 k per vpdpbusd ---- */

typedef struct dot_ctx {
    int64_t m, k;
    const uint8_t *a;   /* [m, lda] */
    int64_t lda;
    const int8_t *b;    /* [n, ldb] */
    int64_t ldb;
    int32_t *c;         /* [m, ldc] */
    int64_t ldc;
    int32_t *row_sums;  /* [n] */
    int vnni;
} dot_ctx;

static void dot_row_portable(const dot_ctx *d, int64_t j)
{
    const int8_t *b = d->b + j * d->ldb;   /* [k] */
    int32_t sum = 0;
    for (int64_t kk = 0; kk < d->k; kk++) sum += b[kk];
    d->row_sums[j] = sum;
    for (int64_t i = 0; i < d->m; i++) {
        const uint8_t *a = d->a + i * d->lda;   /* [k] */
        int32_t acc = 0;
        for (int64_t kk = 0; kk < d->k; kk++) acc += (int32_t)a[kk] * (int32_t)b[kk];
        d->c[i * d->ldc + j] = acc;
    }
}

/* NOTE: the row sum is one more vpdpbusd per step, with all-ones uint8 against B. Up to
 * TG_QGEMM_DOT_MAX_ROWS accumulators plus the sum stay in registers. */
TG_VNNI static void dot_row_vnni(const dot_ctx *d, int64_t j)
{
    const int8_t *b = d->b + j * d->ldb;   /* [k] */
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i acc[TG_QGEMM_DOT_MAX_ROWS], sum = _mm512_setzero_si512();
    for (int i = 0; i < TG_QGEMM_DOT_MAX_ROWS; i++) acc[i] = _mm512_setzero_si512();
    for (int64_t kk = 0; kk < d->k; kk += 64) {
        __mmask64 mask = d->k - kk >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (d->k - kk)) - 1);
        __m512i bv = _mm512_maskz_loadu_epi8(mask, b + kk);
        sum = _mm512_dpbusd_epi32(sum, ones, bv);
        for (int64_t i = 0; i < d->m; i++)
            acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_maskz_loadu_epi8(mask, d->a + i * d->lda + kk), bv);
    }
    d->row_sums[j] = _mm512_reduce_add_epi32(sum);
    for (int64_t i = 0; i < d->m; i++) d->c[i * d->ldc + j] = _mm512_reduce_add_epi32(acc[i]);
}

static void dot_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const dot_ctx *d = arg;
    for (int64_t j = begin; j < end; j++) {
        if (d->vnni) dot_row_vnni(d, j);
        else dot_row_portable(d, j);
    }
}

/* ---- quantizing a float row ---- */

#define TG_AVX512_QUANT __attribute__((target("avx512f,avx512bw")))

/* NOTE: roundscale to nearest is round-half-even, as the magic-number rounding of
 * tg_quantize_u8; max(v, lo) puts NaN at lo as well (its second operand wins on NaN). */
TG_AVX512_QUANT static void quantize_row_avx512(const float *x, uint8_t *q, int64_t n, float scale, int32_t zero_point)
{
    __m512 s = _mm512_set1_ps(scale), lo = _mm512_set1_ps((float)-zero_point);
    __m512 hi = _mm512_set1_ps((float)(255 - zero_point));
    __m512i zp = _mm512_set1_epi32(zero_point);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_div_ps(_mm512_loadu_ps(x + i), s);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512i iv = _mm512_add_epi32(_mm512_cvtps_epi32(v), zp);
        _mm_storeu_si128((__m128i *)(q + i), _mm512_cvtepi32_epi8(iv));
    }
    if (i < n) {
        __mmask16 tail = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(tail, x + i), s);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm512_mask_cvtepi32_storeu_epi8(q + i, tail, _mm512_add_epi32(_mm512_cvtps_epi32(v), zp));
    }
}

void tg_quantize_row_u8(const float *x, uint8_t *q, int64_t n, float scale, int32_t zero_point)
{
    static int cached = -1;
    if (cached < 0) cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    if (cached && backend == TG_QGEMM_BACKEND_AUTO) {
        quantize_row_avx512(x, q, n, scale, zero_point);
        return;
    }
    for (int64_t i = 0; i < n; i++) q[i] = tg_quantize_u8(x[i], scale, zero_point);
}

void tg_qgemm_u8s8_dot(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda, const int8_t *b, int64_t ldb,
                       int32_t *c, int64_t ldc, int32_t *row_sums)
{
    if (n <= 0) return;
    dot_ctx d = {.m = m, .k = k, .a = a, .lda = lda, .b = b, .ldb = ldb, .c = c, .ldc = ldc, .row_sums = row_sums,
                 .vnni = use_vnni() && m <= TG_QGEMM_DOT_MAX_ROWS};
    tg_parallel_for(n, 1 + (1 << 14) / ((m + 1) * (k > 0 ? k : 1)), dot_range, &d);
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
