/* conv.c: conv2d and conv_transpose2d (NCHW, float32, PyTorch semantics), and the
 * im2col + GEMM engine behind them. Depthwise convs go to conv_depthwise.c.
 *
 * The engine (conv.h) works on column blocks of the virtual matrix [c*kh*kw, n*ho*wo]:
 * either a band of output rows of one image (large images; the GEMM writes straight into
 * the NCHW output with ldc = ho*wo) or several whole images (small images; the GEMM
 * writes a [o, images*ho*wo] block that is then scattered to NCHW). Two paths:
 *   - tiled (weights that fit L2, most layers): TG_CONV_SLOTS fixed slots each run whole
 *     L2-sized tiles on one thread (im2col, then single-threaded GEMMs); the weight
 *     gradient sums per slot and the slots are added in order; a stride-1 data gradient
 *     is the forward conv of gy with flipped weights (no col2im);
 *   - shared block (wide layers): one block of up to TG_CONV_COL_BUDGET floats at a
 *     time, im2col and GEMM each split over the threads.
 * Scratch never grows with the batch. A 1x1 stride-1 unpadded conv reads x directly.
 * Not here: channels_last layouts, bf16 convs, 3-D convs. */
#include <string.h>

#include <immintrin.h>

#include "../export/onnx.h"
#include "conv.h"
#include "gemm.h"
#include "op.h"

#define TG_CONV_COL_BUDGET ((int64_t)1 << 21)  /* floats of the im2col block (8 MiB) */
#define TG_CONV_MIN_COLS 1024                   /* batch images until a block has this many columns */
#define TG_CONV_SLOTS 4                         /* fixed work slots of the tiled path */
#define TG_CONV_TILE_FLOATS ((int64_t)160 << 10) /* floats of a tiled-path column tile (640 KiB: in L2) */
#define TG_CONV_TILE_MIN_COLS 128               /* narrowest tile */
#define TG_CONV_TILE_MAX_COLS 1024              /* widest tile */
#define TG_CONV_DATA_CONV_MIN_CHANNELS 16       /* input channels per group from which data_as_conv runs */
#define TG_CONV_TILED_MAX_WEIGHTS ((int64_t)320 << 10) /* weights (floats) up to which the tiled path runs */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* How the columns are cut into blocks. */
typedef struct conv_plan {
    int64_t rows;        /* c * kh * kw: rows of the column matrix */
    int64_t plane;       /* ho * wo */
    int per_image;       /* 1: blocks are bands of out_rows output rows of one image */
    int64_t out_rows;    /* per_image: output rows per band */
    int64_t images;      /* !per_image: images per block */
    int64_t max_cols;    /* columns of the largest block */
    int direct;          /* 1x1, stride 1, no padding, per_image: x is its own column matrix */
} conv_plan;

static conv_plan make_plan(const tg_conv_geom *g)
{
    conv_plan p;
    p.rows = g->c * g->kh * g->kw;
    p.plane = g->ho * g->wo;
    int64_t budget_cols = max64(g->wo, TG_CONV_COL_BUDGET / max64(p.rows, 1));
    if (p.plane >= TG_CONV_MIN_COLS || g->n == 1) {
        p.per_image = 1;
        p.out_rows = max64(1, min64(g->ho, budget_cols / max64(g->wo, 1)));
        p.images = 1;
        p.max_cols = p.out_rows * g->wo;
    } else {
        p.per_image = 0;
        p.out_rows = g->ho;
        int64_t want = (TG_CONV_MIN_COLS + p.plane - 1) / max64(p.plane, 1);
        p.images = max64(1, min64(g->n, min64(want, budget_cols / max64(p.plane, 1))));
        p.max_cols = p.images * p.plane;
    }
    p.direct = p.per_image && g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
    return p;
}

/* Scratch layout: col [rows, max_cols], then (batched mode) an [o, max_cols] block. */
static size_t col_bytes(const conv_plan *p) { return p->direct ? 0 : tg_align64((size_t)(p->rows * p->max_cols) * sizeof(float)); }
static size_t block_bytes(const tg_conv_geom *g, const conv_plan *p)
{
    return p->per_image ? 0 : tg_align64((size_t)(g->o * p->max_cols) * sizeof(float));
}

/* ---- im2col / col2im over one block ---- */

typedef struct col_ctx {
    const tg_conv_geom *g;
    int64_t n0, images, oh0, oh1; /* the block: images [n0, n0 + images), output rows [oh0, oh1) */
    const float *x;               /* [n, c, h, w] */
    float *gx;                    /* [n, c, h, w] (col2im target) */
    float *col;                   /* [rows, cols] */
    int64_t cols;
} col_ctx;

/* Output columns [lo, hi) whose input column ow*sw - pw + kj*dw is inside [0, w). */
static void valid_columns(const tg_conv_geom *g, int64_t kj, int64_t *lo, int64_t *hi)
{
    int64_t shift = g->pw - kj * g->dw;  /* iw = ow*sw - shift */
    int64_t a = shift > 0 ? (shift + g->sw - 1) / g->sw : 0;
    int64_t b = g->w + shift > 0 ? (g->w + shift + g->sw - 1) / g->sw : 0;
    *lo = min64(a, g->wo);
    *hi = max64(*lo, min64(b, g->wo));
}

/* One output row of a column row: dst[ow] = src[ow * sw] for ow in [lo, hi), zero elsewhere. */
static void im2col_row_portable(float *restrict dst, const float *restrict src, int64_t wo, int64_t lo, int64_t hi,
                                int64_t sw)
{
    for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
    if (sw == 1) memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
    else if (sw == 2) for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[2 * ow];
    else for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[ow * sw];
    for (int64_t ow = hi; ow < wo; ow++) dst[ow] = 0.0f;
}

/* NOTE: rows are short (wo floats), so inline vector copies beat a memcpy call per row. */
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static void im2col_row_avx512(float *restrict dst, const float *restrict src, int64_t wo, int64_t lo, int64_t hi,
                              int64_t sw)
{
    const __m512 zero = _mm512_setzero_ps();
    int64_t ow = 0;
    for (; ow + 16 <= lo; ow += 16) _mm512_storeu_ps(dst + ow, zero);
    for (; ow < lo; ow++) dst[ow] = 0.0f;
    if (sw == 1) {
        for (; ow + 16 <= hi; ow += 16) _mm512_storeu_ps(dst + ow, _mm512_loadu_ps(src + ow));
        if (ow < hi) {
            __mmask16 m = (__mmask16)((1u << (hi - ow)) - 1u);
            _mm512_mask_storeu_ps(dst + ow, m, _mm512_maskz_loadu_ps(m, src + ow));
            ow = hi;
        }
    } else if (sw == 2) {
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        for (; ow + 16 <= hi; ow += 16) {
            __m512 a = _mm512_loadu_ps(src + 2 * ow), b = _mm512_maskz_loadu_ps(0x7fff, src + 2 * ow + 16);
            _mm512_storeu_ps(dst + ow, _mm512_permutex2var_ps(a, even, b));
        }
        for (; ow < hi; ow++) dst[ow] = src[2 * ow];
    } else {
        for (; ow < hi; ow++) dst[ow] = src[ow * sw];
    }
    for (; ow + 16 <= wo; ow += 16) _mm512_storeu_ps(dst + ow, zero);
    for (; ow < wo; ow++) dst[ow] = 0.0f;
}

static int have_avx512(void)
{
    static int cached = -1;
    if (cached < 0) cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
    return cached;
}

static void im2col_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const col_ctx *c = arg;
    const tg_conv_geom *g = c->g;
    int avx512 = have_avx512();
    for (int64_t r = begin; r < end; r++) {
        int64_t ch = r / (g->kh * g->kw), ki = r / g->kw % g->kh, kj = r % g->kw;
        int64_t lo, hi;
        valid_columns(g, kj, &lo, &hi);
        float *dst = c->col + r * c->cols;
        for (int64_t b = 0; b < c->images; b++) {
            const float *xp = c->x + ((c->n0 + b) * g->c + ch) * g->h * g->w; /* [h, w] */
            for (int64_t oh = c->oh0; oh < c->oh1; oh++, dst += g->wo) {
                int64_t ih = oh * g->sh - g->ph + ki * g->dh;
                int inside = ih >= 0 && ih < g->h;
                const float *src = inside ? xp + ih * g->w + kj * g->dw - g->pw : xp;
                int64_t row_lo = inside ? lo : 0, row_hi = inside ? hi : 0;
                if (avx512) im2col_row_avx512(dst, src, g->wo, row_lo, row_hi, g->sw);
                else im2col_row_portable(dst, src, g->wo, row_lo, row_hi, g->sw);
            }
        }
    }
}

/* NOTE: one item per input channel: the kh*kw rows of a channel only touch that
 * channel's gx plane, in a fixed order, so col2im is deterministic. */
static void col2im_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const col_ctx *c = arg;
    const tg_conv_geom *g = c->g;
    for (int64_t ch = begin; ch < end; ch++)
        for (int64_t ki = 0; ki < g->kh; ki++)
            for (int64_t kj = 0; kj < g->kw; kj++) {
                int64_t lo, hi;
                valid_columns(g, kj, &lo, &hi);
                const float *src = c->col + ((ch * g->kh + ki) * g->kw + kj) * c->cols;
                for (int64_t b = 0; b < c->images; b++) {
                    float *gp = c->gx + ((c->n0 + b) * g->c + ch) * g->h * g->w; /* [h, w] */
                    for (int64_t oh = c->oh0; oh < c->oh1; oh++, src += g->wo) {
                        int64_t ih = oh * g->sh - g->ph + ki * g->dh;
                        if (ih < 0 || ih >= g->h) continue;
                        float *restrict dst = gp + ih * g->w + kj * g->dw - g->pw;
                        if (g->sw == 1) for (int64_t ow = lo; ow < hi; ow++) dst[ow] += src[ow];
                        else for (int64_t ow = lo; ow < hi; ow++) dst[ow * g->sw] += src[ow];
                    }
                }
            }
}

/* ---- moving [o, images*plane] blocks to and from NCHW ---- */

typedef struct block_ctx {
    const tg_conv_geom *g;
    int64_t n0, images, plane;
    float *nchw;          /* [n, o, plane] */
    float *block;         /* [o, images * plane] */
    const float *bias;    /* [o] or NULL */
    int accumulate;
} block_ctx;

static void scatter_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const block_ctx *c = arg;
    for (int64_t o = begin; o < end; o++) {
        float b = c->bias ? c->bias[o] : 0.0f;
        for (int64_t i = 0; i < c->images; i++) {
            const float *restrict src = c->block + (o * c->images + i) * c->plane;
            float *restrict dst = c->nchw + ((c->n0 + i) * c->g->o + o) * c->plane;
            if (c->accumulate) for (int64_t j = 0; j < c->plane; j++) dst[j] += src[j] + b;
            else for (int64_t j = 0; j < c->plane; j++) dst[j] = src[j] + b;
        }
    }
}

static void gather_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const block_ctx *c = arg;
    for (int64_t o = begin; o < end; o++)
        for (int64_t i = 0; i < c->images; i++)
            memcpy(c->block + (o * c->images + i) * c->plane, c->nchw + ((c->n0 + i) * c->g->o + o) * c->plane,
                   (size_t)c->plane * sizeof(float));
}

/* Fills (or adds) the bias into rows [oh0, oh1) of image n of y. */
typedef struct bias_ctx {
    float *y;              /* [o, plane] of one image */
    const float *bias;     /* [o] */
    int64_t plane, begin_col, cols;
    int accumulate;
} bias_ctx;

static void bias_fill_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const bias_ctx *c = arg;
    for (int64_t o = begin; o < end; o++) {
        float *restrict dst = c->y + o * c->plane + c->begin_col;
        float b = c->bias ? c->bias[o] : 0.0f;
        if (c->accumulate) for (int64_t j = 0; j < c->cols; j++) dst[j] += b;
        else for (int64_t j = 0; j < c->cols; j++) dst[j] = b;
    }
}

static int64_t row_grain(int64_t cols) { return max64(1, 16384 / max64(cols, 1)); }

/* ---- the shared-block path: threads share one column block, the GEMM splits itself ---- */

static void shared_forward(const tg_conv_geom *g, const float *x, const float *w, const float *bias, float *y,
                           int accumulate, void *scratch)
{
    conv_plan p = make_plan(g);
    int64_t cg = g->c / g->groups, og = g->o / g->groups, kg = cg * g->kh * g->kw;
    float *col = scratch;                                            /* [rows, max_cols] */
    float *block = (float *)((char *)scratch + col_bytes(&p));       /* [o, max_cols] */
    for (int64_t n0 = 0; n0 < g->n; n0 += p.images) {
        int64_t images = min64(p.images, g->n - n0);
        for (int64_t oh0 = 0; oh0 < g->ho; oh0 += p.out_rows) {
            int64_t oh1 = min64(g->ho, oh0 + p.out_rows);
            int64_t cols = images * (oh1 - oh0) * g->wo;
            const float *b_mat = col;   /* [rows, ldb] */
            int64_t ldb = cols;
            if (p.direct) {
                b_mat = x + n0 * g->c * p.plane + oh0 * g->wo;
                ldb = p.plane;
            } else {
                col_ctx cc = {.g = g, .n0 = n0, .images = images, .oh0 = oh0, .oh1 = oh1, .x = x, .col = col,
                              .cols = cols};
                tg_parallel_for(p.rows, row_grain(cols), im2col_range, &cc);
            }
            float *c_mat;
            int64_t ldc;
            float beta;
            if (p.per_image) {
                c_mat = y + n0 * g->o * p.plane + oh0 * g->wo;
                ldc = p.plane;
                beta = accumulate ? 1.0f : 0.0f;
                if (bias) {
                    bias_ctx bc = {.y = y + n0 * g->o * p.plane, .bias = bias, .plane = p.plane,
                                   .begin_col = oh0 * g->wo, .cols = cols, .accumulate = accumulate};
                    tg_parallel_for(g->o, row_grain(cols), bias_fill_range, &bc);
                    beta = 1.0f;
                }
            } else {
                c_mat = block;
                ldc = cols;
                beta = 0.0f;
            }
            for (int64_t gr = 0; gr < g->groups; gr++)
                tg_gemm_f32(0, 0, og, cols, kg, w + gr * og * kg, kg, b_mat + gr * kg * ldb, ldb,
                            beta, c_mat + gr * og * ldc, ldc);
            if (!p.per_image) {
                block_ctx bc = {.g = g, .n0 = n0, .images = images, .plane = p.plane, .nchw = y,
                                .block = block, .bias = bias, .accumulate = accumulate};
                tg_parallel_for(g->o, row_grain(cols), scatter_range, &bc);
            }
        }
    }
}

/* gw += weight adjoint and / or gx += data adjoint (col2im), each when non-NULL. */
static void shared_backward(const tg_conv_geom *g, const float *x, const float *w, const float *gy,
                            float *gx, float *gw, void *scratch)
{
    conv_plan p = make_plan(g);
    int64_t cg = g->c / g->groups, og = g->o / g->groups, kg = cg * g->kh * g->kw;
    float *col = scratch;                                            /* [rows, max_cols] */
    float *block = (float *)((char *)scratch + col_bytes(&p));       /* [o, max_cols] */
    for (int64_t n0 = 0; n0 < g->n; n0 += p.images) {
        int64_t images = min64(p.images, g->n - n0);
        for (int64_t oh0 = 0; oh0 < g->ho; oh0 += p.out_rows) {
            int64_t oh1 = min64(g->ho, oh0 + p.out_rows);
            int64_t cols = images * (oh1 - oh0) * g->wo;
            const float *gy_mat;  /* [o, ld_gy] */
            int64_t ld_gy;
            if (p.per_image) {
                gy_mat = gy + n0 * g->o * p.plane + oh0 * g->wo;
                ld_gy = p.plane;
            } else {
                block_ctx bc = {.g = g, .n0 = n0, .images = images, .plane = p.plane,
                                .nchw = (float *)gy, .block = block};
                tg_parallel_for(g->o, row_grain(cols), gather_range, &bc);
                gy_mat = block;
                ld_gy = cols;
            }
            col_ctx cc = {.g = g, .n0 = n0, .images = images, .oh0 = oh0, .oh1 = oh1, .x = x, .gx = gx,
                          .col = col, .cols = cols};
            if (gw) {
                const float *x_mat = col; /* [rows, ld_x] */
                int64_t ld_x = cols;
                if (p.direct) {
                    x_mat = x + n0 * g->c * p.plane + oh0 * g->wo;
                    ld_x = p.plane;
                } else {
                    tg_parallel_for(p.rows, row_grain(cols), im2col_range, &cc);
                }
                /* NOTE: blocks add into gw in block order with beta = 1: a fixed order. */
                for (int64_t gr = 0; gr < g->groups; gr++)
                    tg_gemm_f32(0, 1, og, kg, cols, gy_mat + gr * og * ld_gy, ld_gy, x_mat + gr * kg * ld_x, ld_x,
                                1.0f, gw + gr * og * kg, kg);
            }
            if (gx) {
                if (p.direct) {
                    for (int64_t gr = 0; gr < g->groups; gr++)
                        tg_gemm_f32(1, 0, cg, cols, og, w + gr * og * kg, kg, gy_mat + gr * og * ld_gy, ld_gy,
                                    1.0f, gx + n0 * g->c * p.plane + oh0 * g->wo + gr * cg * p.plane, p.plane);
                } else {
                    for (int64_t gr = 0; gr < g->groups; gr++)
                        tg_gemm_f32(1, 0, kg, cols, og, w + gr * og * kg, kg, gy_mat + gr * og * ld_gy, ld_gy,
                                    0.0f, col + gr * kg * cols, cols);
                    tg_parallel_for(g->c, 1, col2im_range, &cc);
                }
            }
        }
    }
}

/* ---- the tiled path: TG_CONV_SLOTS fixed slots, each with its own L2-sized column tile,
 * run whole tiles (im2col, GEMM, scatter) on one thread; no barrier inside a pass ---- */

/* Tiles cut the columns as bands of output rows of one image, or as groups of whole images. */
typedef struct tile_plan {
    int64_t rows;       /* c * kh * kw */
    int64_t plane;      /* ho * wo */
    int64_t images;     /* images per tile; > 1 only when out_rows == ho */
    int64_t out_rows;   /* output rows per tile */
    int64_t bands;      /* tiles per image group */
    int64_t tiles;
    int64_t max_cols;
    int direct;         /* 1x1, stride 1, unpadded, one image per tile: x is its own column matrix */
} tile_plan;

typedef struct tile {
    int64_t n0, images, oh0, oh1, cols;
} tile;

/* NOTE: the tiled path pays one packing of the weights per tile and per slot partial
 * weight gradients; it is for convs whose weights fit L2 (most layers of small nets and
 * the early layers of large ones); wider layers run the shared-block path. */
static int tiled(const tg_conv_geom *g) { return g->o * (g->c / g->groups) * g->kh * g->kw <= TG_CONV_TILED_MAX_WEIGHTS; }

static tile_plan make_tile_plan(const tg_conv_geom *g)
{
    tile_plan p;
    p.rows = g->c * g->kh * g->kw;
    p.plane = g->ho * g->wo;
    int64_t want = min64(TG_CONV_TILE_MAX_COLS, max64(TG_CONV_TILE_MIN_COLS, TG_CONV_TILE_FLOATS / max64(p.rows, 1)));
    if (p.plane >= want || g->n == 1) {
        p.images = 1;
        p.out_rows = max64(1, min64(g->ho, want / max64(g->wo, 1)));
    } else {
        p.images = max64(1, min64(g->n, want / max64(p.plane, 1)));
        p.out_rows = g->ho;
    }
    p.bands = (g->ho + p.out_rows - 1) / p.out_rows;
    p.tiles = (g->n + p.images - 1) / p.images * p.bands;
    p.max_cols = p.images * p.out_rows * g->wo;
    p.direct = p.images == 1 && g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
    return p;
}

static tile tile_at(const tg_conv_geom *g, const tile_plan *p, int64_t t)
{
    tile tl;
    tl.n0 = t / p->bands * p->images;
    tl.images = min64(p->images, g->n - tl.n0);
    tl.oh0 = t % p->bands * p->out_rows;
    tl.oh1 = min64(g->ho, tl.oh0 + p->out_rows);
    tl.cols = tl.images * (tl.oh1 - tl.oh0) * g->wo;
    return tl;
}

/* Slot layout: col [rows, max_cols], then block [o, max_cols] (tiles of several images). */
static size_t tile_col_bytes(const tile_plan *p) { return p->direct ? 0 : tg_align64((size_t)(p->rows * p->max_cols) * sizeof(float)); }
static size_t tile_block_bytes(const tg_conv_geom *g, const tile_plan *p)
{
    return p->images > 1 ? tg_align64((size_t)(g->o * p->max_cols) * sizeof(float)) : 0;
}
static size_t weight_bytes(const tg_conv_geom *g) { return tg_align64((size_t)(g->o * (g->c / g->groups) * g->kh * g->kw) * sizeof(float)); }

typedef struct tile_ctx {
    const tg_conv_geom *g;
    const tile_plan *p;
    const float *x;      /* [n, c, h, w] */
    const float *wt;     /* [groups][c / groups * kh * kw][o / groups]: the weights transposed */
    const float *bias;   /* [o] or NULL */
    const float *gy;     /* [n, o, ho, wo] */
    float *y;            /* [n, o, ho, wo] */
    float *gw_slots;     /* [TG_CONV_SLOTS][gw_stride]: partial weight gradients */
    int64_t gw_stride;
    int accumulate;
    char *scratch;       /* [TG_CONV_SLOTS][slot_bytes] */
    size_t slot_bytes;
} tile_ctx;

/* The tile's column matrix: im2col into col, or x itself when direct. */
static const float *tile_columns(const tile_ctx *c, const tile *tl, float *col, int64_t *ld)
{
    const tg_conv_geom *g = c->g;
    if (c->p->direct) {
        *ld = c->p->plane;
        return c->x + tl->n0 * g->c * c->p->plane + tl->oh0 * g->wo;
    }
    col_ctx cc = {.g = g, .n0 = tl->n0, .images = tl->images, .oh0 = tl->oh0, .oh1 = tl->oh1, .x = c->x,
                  .col = col, .cols = tl->cols};
    im2col_range(&cc, 0, c->p->rows, 0);
    *ld = tl->cols;
    return col;
}

static void forward_tile(const tile_ctx *c, int64_t t, float *col, float *block)
{
    const tg_conv_geom *g = c->g;
    const tile_plan *p = c->p;
    int64_t cg = g->c / g->groups, og = g->o / g->groups, kg = cg * g->kh * g->kw;
    tile tl = tile_at(g, p, t);
    int64_t ldb;
    const float *b_mat = tile_columns(c, &tl, col, &ldb); /* [rows, ldb] */
    if (tl.images == 1) {
        float *y_img = c->y + tl.n0 * g->o * p->plane; /* [o, plane] */
        float beta = c->accumulate ? 1.0f : 0.0f;
        if (c->bias) {
            bias_ctx bc = {.y = y_img, .bias = c->bias, .plane = p->plane, .begin_col = tl.oh0 * g->wo,
                           .cols = tl.cols, .accumulate = c->accumulate};
            bias_fill_range(&bc, 0, g->o, 0);
            beta = 1.0f;
        }
        for (int64_t gr = 0; gr < g->groups; gr++)
            tg_gemm_f32(1, 0, og, tl.cols, kg, c->wt + gr * og * kg, og, b_mat + gr * kg * ldb, ldb, beta,
                        y_img + gr * og * p->plane + tl.oh0 * g->wo, p->plane);
        return;
    }
    for (int64_t gr = 0; gr < g->groups; gr++)
        tg_gemm_f32(1, 0, og, tl.cols, kg, c->wt + gr * og * kg, og, b_mat + gr * kg * ldb, ldb, 0.0f,
                    block + gr * og * tl.cols, tl.cols);
    block_ctx bc = {.g = g, .n0 = tl.n0, .images = tl.images, .plane = p->plane, .nchw = c->y, .block = block,
                    .bias = c->bias, .accumulate = c->accumulate};
    scatter_range(&bc, 0, g->o, 0);
}

static void forward_slots(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const tile_ctx *c = arg;
    for (int64_t s = begin; s < end; s++) {
        float *col = (float *)(c->scratch + (size_t)s * c->slot_bytes);
        float *block = (float *)((char *)col + tile_col_bytes(c->p));
        for (int64_t t = c->p->tiles * s / TG_CONV_SLOTS; t < c->p->tiles * (s + 1) / TG_CONV_SLOTS; t++)
            forward_tile(c, t, col, block);
    }
}

/* ---- transposes for the weight gradient's GEMM ---- */

/* dst[j * ldd + i] = (or +=) src[i * lds + j] for i < rows, j < cols. */
static void transpose_portable(const float *restrict src, int64_t lds, int64_t rows, int64_t cols, float *restrict dst,
                               int64_t ldd, int accumulate)
{
    for (int64_t i0 = 0; i0 < rows; i0 += 16)
        for (int64_t j0 = 0; j0 < cols; j0 += 16)
            for (int64_t i = i0; i < min64(rows, i0 + 16); i++)
                for (int64_t j = j0; j < min64(cols, j0 + 16); j++) {
                    float v = src[i * lds + j];
                    dst[j * ldd + i] = accumulate ? dst[j * ldd + i] + v : v;
                }
}

/* NOTE: a 16 x 16 block in registers: rows are paired (ps unpack), then quads (pd
 * unpack), then 128-bit lanes are exchanged twice; output row c = 4k + m comes out of
 * quad m, lane k. */
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static void transpose_avx512(const float *restrict src, int64_t lds, int64_t rows, int64_t cols, float *restrict dst,
                             int64_t ldd, int accumulate)
{
    int64_t full_rows = rows & ~(int64_t)15, full_cols = cols & ~(int64_t)15;
    for (int64_t i0 = 0; i0 < full_rows; i0 += 16)
        for (int64_t j0 = 0; j0 < full_cols; j0 += 16) {
            __m512 r[16], t[16];
            for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + (i0 + i) * lds + j0);
            for (int i = 0; i < 8; i++) {
                t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
            for (int q = 0; q < 4; q++) {
                __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 1]);
                __m512d c = _mm512_castps_pd(t[4 * q + 2]), d = _mm512_castps_pd(t[4 * q + 3]);
                r[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
                r[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
                r[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
                r[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
            }
            for (int m = 0; m < 4; m++) {
                __m512 v1 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88), v2 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xdd);
                __m512 w1 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88);
                __m512 w2 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xdd);
                t[m] = _mm512_shuffle_f32x4(v1, w1, 0x88);
                t[4 + m] = _mm512_shuffle_f32x4(v2, w2, 0x88);
                t[8 + m] = _mm512_shuffle_f32x4(v1, w1, 0xdd);
                t[12 + m] = _mm512_shuffle_f32x4(v2, w2, 0xdd);
            }
            for (int j = 0; j < 16; j++) {
                float *out = dst + (j0 + j) * ldd + i0;
                _mm512_storeu_ps(out, accumulate ? _mm512_add_ps(_mm512_loadu_ps(out), t[j]) : t[j]);
            }
        }
    if (full_cols < cols)
        transpose_portable(src + full_cols, lds, full_rows, cols - full_cols, dst + full_cols * ldd, ldd, accumulate);
    if (full_rows < rows)
        transpose_portable(src + full_rows * lds, lds, rows - full_rows, cols, dst + full_rows, ldd, accumulate);
}


void tg_conv_transpose(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd,
                       int accumulate)
{
    if (have_avx512()) transpose_avx512(src, lds, rows, cols, dst, ldd, accumulate);
    else transpose_portable(src, lds, rows, cols, dst, ldd, accumulate);
}

/* Weight-pass slot layout: col [rows, max_cols], col_t [max_cols, rows], gy_t [max_cols, o]. */
static size_t weight_slot_bytes(const tg_conv_geom *g, const tile_plan *p)
{
    return tile_col_bytes(p) + tg_align64((size_t)(p->rows * p->max_cols) * sizeof(float)) +
           tg_align64((size_t)(g->o * p->max_cols) * sizeof(float));
}

/* Adds one tile's weight gradient into the slot's partial gw.
 * NOTE: the GEMM sums over the tile's pixels, the contiguous dim of both NCHW operands;
 * both are transposed first (pixel-major), so that the GEMM packs them with plain loads. */
static void weight_tile(const tile_ctx *c, int64_t t, float *slot, float *gw)
{
    const tg_conv_geom *g = c->g;
    const tile_plan *p = c->p;
    int64_t cg = g->c / g->groups, og = g->o / g->groups, kg = cg * g->kh * g->kw;
    tile tl = tile_at(g, p, t);
    float *col = slot;                                                                   /* [rows, cols] */
    float *col_t = (float *)((char *)slot + tile_col_bytes(p));                           /* [cols, rows] */
    float *gy_t = col_t + tg_align64((size_t)(p->rows * p->max_cols) * sizeof(float)) / sizeof(float); /* [cols, o] */
    int64_t per_image = (tl.oh1 - tl.oh0) * g->wo;
    for (int64_t i = 0; i < tl.images; i++)
        tg_conv_transpose(c->gy + (tl.n0 + i) * g->o * p->plane + tl.oh0 * g->wo, p->plane, g->o, per_image,
                  gy_t + i * per_image * g->o, g->o, 0);
    int64_t ld_x;
    const float *x_mat = tile_columns(c, &tl, col, &ld_x); /* [rows, ld_x] */
    tg_conv_transpose(x_mat, ld_x, p->rows, tl.cols, col_t, p->rows, 0);
    for (int64_t gr = 0; gr < g->groups; gr++)
        tg_gemm_f32(1, 0, og, kg, tl.cols, gy_t + gr * og, g->o, col_t + gr * kg, p->rows, 1.0f,
                    gw + gr * og * kg, kg);
}

static void weight_slots(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const tile_ctx *c = arg;
    size_t gw_floats = (size_t)(c->g->o * (c->g->c / c->g->groups) * c->g->kh * c->g->kw);
    for (int64_t s = begin; s < end; s++) {
        float *slot = (float *)(c->scratch + (size_t)s * c->slot_bytes);
        float *gw = c->gw_slots + s * c->gw_stride;
        memset(gw, 0, gw_floats * sizeof(float));
        for (int64_t t = c->p->tiles * s / TG_CONV_SLOTS; t < c->p->tiles * (s + 1) / TG_CONV_SLOTS; t++)
            weight_tile(c, t, slot, gw);
    }
}

typedef struct sum_ctx {
    const float *parts;  /* [TG_CONV_SLOTS][stride] */
    float *dst;          /* [count] */
    int64_t stride;
} sum_ctx;

/* NOTE: dst += ((part 0 + part 1) + part 2) + ...: the slots' order, whatever the threads. */
static void sum_slots_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const sum_ctx *c = arg;
    for (int64_t i = begin; i < end; i++) {
        float s = c->parts[i];
        for (int k = 1; k < TG_CONV_SLOTS; k++) s += c->parts[k * c->stride + i];
        c->dst[i] += s;
    }
}

/* ---- the data gradient of a stride-1 conv as a forward conv of gy ---- */

/* For stride 1, gx = conv(gy, w flipped in space with in/out channels swapped) with
 * padding d * (k - 1) - p: fills t with that conv; 0 when it does not apply. */
static int data_as_conv(const tg_conv_geom *g, tg_conv_geom *t)
{
    if (g->sh != 1 || g->sw != 1) return 0;
    *t = (tg_conv_geom){.n = g->n, .c = g->o, .h = g->ho, .w = g->wo, .o = g->c, .ho = g->h, .wo = g->w,
                        .kh = g->kh, .kw = g->kw, .sh = 1, .sw = 1, .ph = g->dh * (g->kh - 1) - g->ph,
                        .pw = g->dw * (g->kw - 1) - g->pw, .dh = g->dh, .dw = g->dw, .groups = g->groups};
    if (t->ph < 0 || t->pw < 0) return 0;
    if (t->h + 2 * t->ph - t->dh * (t->kh - 1) != t->ho || t->w + 2 * t->pw - t->dw * (t->kw - 1) != t->wo) return 0;
    /* NOTE: t's GEMMs have m = c / groups rows: with few input channels (a stem) the
     * micro-kernel's 14-row tiles would run mostly empty, and col2im is cheaper. */
    return g->c / g->groups >= TG_CONV_DATA_CONV_MIN_CHANNELS && tiled(t) && !tg_conv_is_depthwise(t);
}

typedef struct transpose_ctx {
    const tg_conv_geom *g;
    const float *w;   /* [o, c / groups, kh, kw] */
    float *wt;        /* see transpose_range */
    int flip;
} transpose_ctx;

/* NOTE: the tiled GEMMs take the weights as a transposed A, [groups][kg][og], whose
 * packing is one contiguous load per k (a non-transposed A packs with gathers).
 * flip == 0: wt[gr][ci * taps + k][oi] = w[gr * og + oi][ci][k], the conv's own weights;
 * flip == 1: wt[gr][oi * taps + k][ci] = w[gr * og + oi][ci][taps - 1 - k], the weights
 * of the data-gradient conv (data_as_conv). One item per (group, oi). */
static void transpose_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const transpose_ctx *f = arg;
    const tg_conv_geom *g = f->g;
    int64_t cg = g->c / g->groups, og = g->o / g->groups, taps = g->kh * g->kw, kg = cg * taps;
    for (int64_t item = begin; item < end; item++) {
        int64_t gr = item / og, oi = item % og;
        const float *src = f->w + item * kg;   /* [cg, taps] */
        float *wt = f->wt + gr * og * kg;      /* this group's block */
        if (f->flip) {
            for (int64_t ci = 0; ci < cg; ci++)
                for (int64_t k = 0; k < taps; k++) wt[(oi * taps + k) * cg + ci] = src[ci * taps + taps - 1 - k];
        } else {
            for (int64_t r = 0; r < kg; r++) wt[r * og + oi] = src[r];
        }
    }
}

static void transpose_weights(const tg_conv_geom *g, const float *w, float *wt, int flip)
{
    transpose_ctx f = {.g = g, .w = w, .wt = wt, .flip = flip};
    tg_parallel_for(g->o, 16, transpose_range, &f);
}

/* y = conv(x, w) + bias (or +=) on the tiled path, with wt the transposed weights. */
static void tiled_forward(const tg_conv_geom *g, const float *x, const float *wt, const float *bias, float *y,
                          int accumulate, void *scratch)
{
    tile_plan p = make_tile_plan(g);
    tile_ctx c = {.g = g, .p = &p, .x = x, .wt = wt, .bias = bias, .y = y, .accumulate = accumulate,
                  .scratch = scratch, .slot_bytes = tile_col_bytes(&p) + tile_block_bytes(g, &p)};
    tg_parallel_for(TG_CONV_SLOTS, 1, forward_slots, &c);
}

/* ---- the engine ---- */

static size_t tiled_forward_scratch(const tg_conv_geom *g)
{
    tile_plan p = make_tile_plan(g);
    return weight_bytes(g) + TG_CONV_SLOTS * (tile_col_bytes(&p) + tile_block_bytes(g, &p));
}

size_t tg_conv_forward_scratch(const tg_conv_geom *g)
{
    if (tg_conv_is_depthwise(g)) return tg_conv_depthwise_forward_scratch(g);
    if (tiled(g)) return tiled_forward_scratch(g);
    conv_plan p = make_plan(g);
    return col_bytes(&p) + block_bytes(g, &p);
}

size_t tg_conv_backward_scratch(const tg_conv_geom *g)
{
    if (tg_conv_is_depthwise(g)) return tg_conv_depthwise_backward_scratch(g);
    conv_plan p = make_plan(g);
    /* NOTE: the weight pass and then the data pass reuse the same scratch. */
    size_t shared = col_bytes(&p) + block_bytes(g, &p);
    tile_plan p_w = make_tile_plan(g);
    size_t weight = tiled(g) ? TG_CONV_SLOTS * (weight_bytes(g) + weight_slot_bytes(g, &p_w)) : shared;
    tg_conv_geom t;
    size_t data = data_as_conv(g, &t) ? tiled_forward_scratch(&t) : shared;
    return weight > data ? weight : data;
}

void tg_conv_forward(const tg_conv_geom *g, const float *x, const float *w, const float *bias,
                     float *y, int accumulate, void *scratch)
{
    if (g->n == 0 || g->o == 0 || g->ho == 0 || g->wo == 0) return;
    if (tg_conv_is_depthwise(g)) {
        tg_conv_depthwise_forward(g, x, w, bias, y, accumulate, scratch);
        return;
    }
    if (!tiled(g)) {
        shared_forward(g, x, w, bias, y, accumulate, scratch);
        return;
    }
    float *wt = scratch; /* [groups][c / groups * kh * kw][o / groups] */
    transpose_weights(g, w, wt, 0);
    tiled_forward(g, x, wt, bias, y, accumulate, (char *)scratch + weight_bytes(g));
}

void tg_conv_backward(const tg_conv_geom *g, const float *x, const float *w, const float *gy,
                      float *gx, float *gw, void *scratch)
{
    if (g->n == 0 || g->o == 0 || g->ho == 0 || g->wo == 0 || (!gx && !gw)) return;
    if (tg_conv_is_depthwise(g)) {
        tg_conv_depthwise_backward(g, x, w, gy, gx, gw, scratch);
        return;
    }
    tg_conv_geom t;
    int weight_tiled = gw && tiled(g), data_conv = gx && data_as_conv(g, &t);
    if ((gw && !weight_tiled) || (gx && !data_conv))
        shared_backward(g, x, w, gy, data_conv ? NULL : gx, weight_tiled ? NULL : gw, scratch);
    if (weight_tiled) {
        tile_plan p = make_tile_plan(g);
        float *parts = scratch;  /* [TG_CONV_SLOTS][o, c / groups * kh * kw], slots weight_bytes apart */
        int64_t stride = (int64_t)(weight_bytes(g) / sizeof(float));
        tile_ctx c = {.g = g, .p = &p, .x = x, .gy = gy, .gw_slots = parts, .gw_stride = stride,
                      .scratch = (char *)scratch + TG_CONV_SLOTS * weight_bytes(g),
                      .slot_bytes = weight_slot_bytes(g, &p)};
        tg_parallel_for(TG_CONV_SLOTS, 1, weight_slots, &c);
        sum_ctx sc = {.parts = parts, .dst = gw, .stride = stride};
        tg_parallel_for(g->o * (g->c / g->groups) * g->kh * g->kw, 4096, sum_slots_range, &sc);
    }
    if (data_conv) {
        float *wt = scratch;  /* [groups][o / groups * kh * kw][c / groups]: t's transposed weights */
        transpose_weights(g, w, wt, 1);
        tiled_forward(&t, gy, wt, NULL, gx, 1, (char *)scratch + weight_bytes(g));
    }
}

typedef struct bias_grad_ctx {
    int64_t n, o, plane;
    const float *gy;  /* [n, o, plane] */
    float *gb;        /* [o] */
} bias_grad_ctx;

static void bias_grad_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const bias_grad_ctx *c = arg;
    for (int64_t o = begin; o < end; o++) {
        float lanes[16] = {0};
        for (int64_t i = 0; i < c->n; i++) {
            const float *restrict src = c->gy + (i * c->o + o) * c->plane;
            int64_t j = 0;
            for (; j + 16 <= c->plane; j += 16)
                for (int l = 0; l < 16; l++) lanes[l] += src[j + l];
            for (; j < c->plane; j++) lanes[j % 16] += src[j];
        }
        float s = 0.0f;
        for (int l = 0; l < 16; l++) s += lanes[l];
        c->gb[o] += s;
    }
}

void tg_conv_bias_grad(int64_t n, int64_t o, int64_t plane, const float *gy, float *gb)
{
    bias_grad_ctx c = {.n = n, .o = o, .plane = plane, .gy = gy, .gb = gb};
    tg_parallel_for(o, 1, bias_grad_range, &c);
}

/* ---- conv2d: x [N, C, H, W], weight [O, C/groups, kH, kW], bias [O] -> [N, O, Ho, Wo] ---- */

typedef struct conv2d_attrs {
    int64_t stride[2], padding[2], dilation[2];
    int64_t groups;
} conv2d_attrs;

static const char *const conv2d_inputs[] = {"x", "weight", "?bias", NULL};

static const tg_attr_spec conv2d_attr_specs[] = {
    {"stride", TG_ATTR_KIND_INT_PAIR, offsetof(conv2d_attrs, stride), 1, 0},
    {"padding", TG_ATTR_KIND_INT_PAIR, offsetof(conv2d_attrs, padding), 0, 0},
    {"dilation", TG_ATTR_KIND_INT_PAIR, offsetof(conv2d_attrs, dilation), 1, 0},
    {"groups", TG_ATTR_KIND_INT, offsetof(conv2d_attrs, groups), 1, 0},
};

/* Checks the shared attrs and the inputs' dtypes and ranks. */
static tg_status check_common(const char *op, const tg_tensor *const *in, int n_in, const int64_t *stride,
                              const int64_t *padding, const int64_t *dilation, int64_t groups)
{
    TG_TRY(tg_check_dtype(in[0], TG_DTYPE_F32, op, "x"));
    TG_TRY(tg_check_dtype(in[1], TG_DTYPE_F32, op, "weight"));
    TG_TRY(tg_check_ndim(in[0], 4, op, "x"));
    TG_TRY(tg_check_ndim(in[1], 4, op, "weight"));
    if (n_in > 2 && in[2]) {
        TG_TRY(tg_check_dtype(in[2], TG_DTYPE_F32, op, "bias"));
        TG_TRY(tg_check_ndim(in[2], 1, op, "bias"));
    }
    for (int i = 0; i < 2; i++) {
        if (stride[i] < 1)
            return tg_error(TG_STATUS_VALUE, "%s: stride must be >= 1, got (%lld, %lld)", op,
                            (long long)stride[0], (long long)stride[1]);
        if (dilation[i] < 1)
            return tg_error(TG_STATUS_VALUE, "%s: dilation must be >= 1, got (%lld, %lld)", op,
                            (long long)dilation[0], (long long)dilation[1]);
        if (padding[i] < 0)
            return tg_error(TG_STATUS_VALUE, "%s: padding must be >= 0, got (%lld, %lld)", op,
                            (long long)padding[0], (long long)padding[1]);
    }
    if (groups < 1) return tg_error(TG_STATUS_VALUE, "%s: groups must be >= 1, got %lld", op, (long long)groups);
    return TG_STATUS_OK;
}

static tg_status conv2d_geom(const tg_tensor *const *in, int n_in, const conv2d_attrs *a, tg_conv_geom *g)
{
    char xs[96], ws[96], bs[96];
    TG_TRY(check_common("conv2d", in, n_in, a->stride, a->padding, a->dilation, a->groups));
    const tg_tensor *x = in[0], *w = in[1];
    *g = (tg_conv_geom){.n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
                        .o = w->shape[0], .kh = w->shape[2], .kw = w->shape[3],
                        .sh = a->stride[0], .sw = a->stride[1], .ph = a->padding[0], .pw = a->padding[1],
                        .dh = a->dilation[0], .dw = a->dilation[1], .groups = a->groups};
    if (g->c % g->groups || g->o % g->groups || w->shape[1] * g->groups != g->c)
        return tg_error(TG_STATUS_SHAPE, "conv2d: x %s and weight %s do not match groups=%lld; weight must be "
                        "[out_channels, in_channels / groups, kH, kW] with both channel counts divisible by groups",
                        tg_shape_str(x, xs, sizeof xs), tg_shape_str(w, ws, sizeof ws), (long long)g->groups);
    if (n_in > 2 && in[2] && in[2]->shape[0] != g->o)
        return tg_error(TG_STATUS_SHAPE, "conv2d: bias has shape %s, expected (%lld,) (the weight's out_channels)",
                        tg_shape_str(in[2], bs, sizeof bs), (long long)g->o);
    int64_t eff_h = g->dh * (g->kh - 1) + 1, eff_w = g->dw * (g->kw - 1) + 1;
    if (g->h + 2 * g->ph < eff_h || g->w + 2 * g->pw < eff_w || g->kh < 1 || g->kw < 1)
        return tg_error(TG_STATUS_SHAPE, "conv2d: x %s padded by (%lld, %lld) is smaller than the dilated kernel "
                        "(%lld, %lld); use a larger input or more padding", tg_shape_str(x, xs, sizeof xs),
                        (long long)g->ph, (long long)g->pw, (long long)eff_h, (long long)eff_w);
    g->ho = (g->h + 2 * g->ph - eff_h) / g->sh + 1;
    g->wo = (g->w + 2 * g->pw - eff_w) / g->sw + 1;
    return TG_STATUS_OK;
}

static tg_status conv2d_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out, tg_op_sizes *sizes)
{
    tg_conv_geom g;
    TG_TRY(conv2d_geom(in, n_in, attrs, &g));
    sizes->scratch_forward = tg_conv_forward_scratch(&g);
    sizes->scratch_backward = tg_conv_backward_scratch(&g);
    int64_t shape[4] = {g.n, g.o, g.ho, g.wo};
    return tg_tensor_set_shape(out, TG_DTYPE_F32, 4, shape);
}

static tg_status conv2d_forward(const tg_op_io *io)
{
    tg_conv_geom g;
    TG_TRY(conv2d_geom(io->in, io->n_in, io->attrs, &g));
    const float *bias = io->n_in > 2 && io->in[2] ? io->in[2]->data : NULL;
    tg_conv_forward(&g, io->in[0]->data, io->in[1]->data, bias, io->out->data, 0, io->scratch);
    return TG_STATUS_OK;
}

static tg_status conv2d_backward(const tg_op_io *io)
{
    tg_conv_geom g;
    TG_TRY(conv2d_geom(io->in, io->n_in, io->attrs, &g));
    tg_tensor *gx = io->grad_in[0], *gw = io->grad_in[1], *gb = io->n_in > 2 ? io->grad_in[2] : NULL;
    tg_conv_backward(&g, io->in[0]->data, io->in[1]->data, io->grad_out->data, gx ? gx->data : NULL,
                     gw ? gw->data : NULL, io->scratch);
    if (gb) tg_conv_bias_grad(g.n, g.o, g.ho * g.wo, io->grad_out->data, gb->data);
    return TG_STATUS_OK;
}

/* Conv with the same weight layout; pads are [top, left, bottom, right]. */
static tg_status conv2d_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const conv2d_attrs *a = n->attrs;
    const int64_t kernel[2] = {n->in[1]->shape[2], n->in[1]->shape[3]};
    const int64_t pads[4] = {a->padding[0], a->padding[1], a->padding[0], a->padding[1]};
    tg_onnx_attr attrs[5] = {
        tg_onnx_attr_ints("kernel_shape", kernel, 2), tg_onnx_attr_ints("strides", a->stride, 2),
        tg_onnx_attr_ints("pads", pads, 4), tg_onnx_attr_ints("dilations", a->dilation, 2),
        tg_onnx_attr_int("group", a->groups),
    };
    int n_inputs = n->n_in > 2 && n->input[2] ? 3 : 2;
    return tg_onnx_node(e, "Conv", n->input, n_inputs, n->output, attrs, 5);
}

const tg_op_def tg_op_conv2d = {
    .name = "conv2d", .input_names = conv2d_inputs,
    .attr_specs = conv2d_attr_specs, .n_attrs = 4, .attrs_size = sizeof(conv2d_attrs),
    .infer = conv2d_infer, .forward = conv2d_forward, .backward = conv2d_backward, .onnx = conv2d_onnx,
};

/* ---- conv_transpose2d: x [N, C, H, W], weight [C, O/groups, kH, kW], bias [O] -> [N, O, Ho, Wo]
 * with Ho = (H - 1)*stride - 2*padding + dilation*(kH - 1) + output_padding + 1.
 * It is the data adjoint of the conv G: [N, O, Ho, Wo] -> [N, C, H, W] with the same
 * weight (G's weight layout [C, O/groups, kH, kW] is exactly conv2d's), so forward runs
 * G's data gradient, the input gradient runs G's forward and the weight gradient G's. ---- */

typedef struct conv_transpose2d_attrs {
    int64_t stride[2], padding[2], output_padding[2], dilation[2];
    int64_t groups;
} conv_transpose2d_attrs;

static const tg_attr_spec conv_transpose2d_attr_specs[] = {
    {"stride", TG_ATTR_KIND_INT_PAIR, offsetof(conv_transpose2d_attrs, stride), 1, 0},
    {"padding", TG_ATTR_KIND_INT_PAIR, offsetof(conv_transpose2d_attrs, padding), 0, 0},
    {"output_padding", TG_ATTR_KIND_INT_PAIR, offsetof(conv_transpose2d_attrs, output_padding), 0, 0},
    {"dilation", TG_ATTR_KIND_INT_PAIR, offsetof(conv_transpose2d_attrs, dilation), 1, 0},
    {"groups", TG_ATTR_KIND_INT, offsetof(conv_transpose2d_attrs, groups), 1, 0},
};

/* Fills g with the conv G whose data adjoint is this transposed conv. */
static tg_status conv_transpose2d_geom(const tg_tensor *const *in, int n_in, const conv_transpose2d_attrs *a,
                                       tg_conv_geom *g)
{
    const char *op = "conv_transpose2d";
    char xs[96], ws[96], bs[96];
    TG_TRY(check_common(op, in, n_in, a->stride, a->padding, a->dilation, a->groups));
    const tg_tensor *x = in[0], *w = in[1];
    int64_t groups = a->groups;
    if (x->shape[1] != w->shape[0] || x->shape[1] % groups)
        return tg_error(TG_STATUS_SHAPE, "%s: x %s and weight %s do not match groups=%lld; weight must be "
                        "[in_channels, out_channels / groups, kH, kW] with in_channels divisible by groups", op,
                        tg_shape_str(x, xs, sizeof xs), tg_shape_str(w, ws, sizeof ws), (long long)groups);
    int64_t out_c = w->shape[1] * groups;
    if (n_in > 2 && in[2] && in[2]->shape[0] != out_c)
        return tg_error(TG_STATUS_SHAPE, "%s: bias has shape %s, expected (%lld,) (weight.shape[1] * groups)", op,
                        tg_shape_str(in[2], bs, sizeof bs), (long long)out_c);
    for (int i = 0; i < 2; i++)
        if (a->output_padding[i] < 0 || (a->output_padding[i] >= a->stride[i] && a->output_padding[i] >= a->dilation[i]))
            return tg_error(TG_STATUS_VALUE, "%s: output_padding (%lld, %lld) must be >= 0 and smaller than "
                            "either stride or dilation", op, (long long)a->output_padding[0],
                            (long long)a->output_padding[1]);
    int64_t kh = w->shape[2], kw = w->shape[3];
    int64_t ho = (x->shape[2] - 1) * a->stride[0] - 2 * a->padding[0] + a->dilation[0] * (kh - 1) + a->output_padding[0] + 1;
    int64_t wo = (x->shape[3] - 1) * a->stride[1] - 2 * a->padding[1] + a->dilation[1] * (kw - 1) + a->output_padding[1] + 1;
    if (ho < 1 || wo < 1 || kh < 1 || kw < 1)
        return tg_error(TG_STATUS_SHAPE, "%s: x %s with weight %s gives an empty output (%lld, %lld); reduce padding",
                        op, tg_shape_str(x, xs, sizeof xs), tg_shape_str(w, ws, sizeof ws), (long long)ho, (long long)wo);
    *g = (tg_conv_geom){.n = x->shape[0], .c = out_c, .h = ho, .w = wo, .o = x->shape[1],
                        .ho = x->shape[2], .wo = x->shape[3], .kh = kh, .kw = kw,
                        .sh = a->stride[0], .sw = a->stride[1], .ph = a->padding[0], .pw = a->padding[1],
                        .dh = a->dilation[0], .dw = a->dilation[1], .groups = groups};
    return TG_STATUS_OK;
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

static tg_status conv_transpose2d_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                        tg_op_sizes *sizes)
{
    tg_conv_geom g;
    TG_TRY(conv_transpose2d_geom(in, n_in, attrs, &g));
    sizes->scratch_forward = tg_conv_backward_scratch(&g);
    sizes->scratch_backward = max_size(tg_conv_forward_scratch(&g), tg_conv_backward_scratch(&g));
    int64_t shape[4] = {g.n, g.c, g.h, g.w};
    return tg_tensor_set_shape(out, TG_DTYPE_F32, 4, shape);
}

typedef struct fill_ctx {
    float *y;            /* [n, c, plane] */
    const float *bias;   /* [c] or NULL */
    int64_t c, plane;
} fill_ctx;

static void fill_bias_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const fill_ctx *f = arg;
    for (int64_t i = begin; i < end; i++) {
        float b = f->bias ? f->bias[i % f->c] : 0.0f;
        float *restrict dst = f->y + i * f->plane;
        for (int64_t j = 0; j < f->plane; j++) dst[j] = b;
    }
}

static tg_status conv_transpose2d_forward(const tg_op_io *io)
{
    tg_conv_geom g;
    TG_TRY(conv_transpose2d_geom(io->in, io->n_in, io->attrs, &g));
    fill_ctx f = {.y = io->out->data, .bias = io->n_in > 2 && io->in[2] ? io->in[2]->data : NULL,
                  .c = g.c, .plane = g.h * g.w};
    tg_parallel_for(g.n * g.c, max64(1, 16384 / max64(f.plane, 1)), fill_bias_range, &f);
    tg_conv_backward(&g, NULL, io->in[1]->data, io->in[0]->data, io->out->data, NULL, io->scratch);
    return TG_STATUS_OK;
}

static tg_status conv_transpose2d_backward(const tg_op_io *io)
{
    tg_conv_geom g;
    TG_TRY(conv_transpose2d_geom(io->in, io->n_in, io->attrs, &g));
    tg_tensor *gx = io->grad_in[0], *gw = io->grad_in[1], *gb = io->n_in > 2 ? io->grad_in[2] : NULL;
    if (gx) tg_conv_forward(&g, io->grad_out->data, io->in[1]->data, NULL, gx->data, 1, io->scratch);
    if (gw) tg_conv_backward(&g, io->grad_out->data, NULL, io->in[0]->data, NULL, gw->data, io->scratch);
    if (gb) tg_conv_bias_grad(g.n, g.c, g.h * g.w, io->grad_out->data, gb->data);
    return TG_STATUS_OK;
}

/* ConvTranspose with PyTorch's weight layout [C, O/groups, kH, kW], which is ONNX's. */
static tg_status conv_transpose2d_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const conv_transpose2d_attrs *a = n->attrs;
    const int64_t kernel[2] = {n->in[1]->shape[2], n->in[1]->shape[3]};
    const int64_t pads[4] = {a->padding[0], a->padding[1], a->padding[0], a->padding[1]};
    tg_onnx_attr attrs[6] = {
        tg_onnx_attr_ints("kernel_shape", kernel, 2), tg_onnx_attr_ints("strides", a->stride, 2),
        tg_onnx_attr_ints("pads", pads, 4), tg_onnx_attr_ints("dilations", a->dilation, 2),
        tg_onnx_attr_ints("output_padding", a->output_padding, 2), tg_onnx_attr_int("group", a->groups),
    };
    int n_inputs = n->n_in > 2 && n->input[2] ? 3 : 2;
    return tg_onnx_node(e, "ConvTranspose", n->input, n_inputs, n->output, attrs, 6);
}

const tg_op_def tg_op_conv_transpose2d = {
    .name = "conv_transpose2d", .input_names = conv2d_inputs,
    .attr_specs = conv_transpose2d_attr_specs, .n_attrs = 5, .attrs_size = sizeof(conv_transpose2d_attrs),
    .infer = conv_transpose2d_infer, .forward = conv_transpose2d_forward, .backward = conv_transpose2d_backward,
    .onnx = conv_transpose2d_onnx,
};
