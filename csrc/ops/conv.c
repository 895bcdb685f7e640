/* conv.c: conv2d and conv_transpose2d (NCHW, float32, PyTorch semantics), and the
 * im2col + GEMM engine behind them. Depthwise convs go to conv_depthwise.c.
 *
 * The engine (conv.h) works on column blocks of the virtual matrix [c*kh*kw, n*ho*wo]:
 * either a band of output rows of one image (large images; the GEMM writes straight into
 * the NCHW output with ldc = ho*wo) or several whole images (small images; the GEMM
 * writes a [o, images*ho*wo] block that is then scattered to NCHW). Scratch per block is
 * bounded by TG_CONV_COL_BUDGET floats, so the scratch never grows with the batch.
 * A 1x1 stride-1 unpadded conv reads x directly (no im2col) in the per-image mode.
 * Not here: channels_last layouts, bf16 convs, 3-D convs. */
#include <string.h>

#include "../export/onnx.h"
#include "conv.h"
#include "gemm.h"
#include "op.h"

#define TG_CONV_COL_BUDGET ((int64_t)1 << 21)  /* floats of the im2col block (8 MiB) */
#define TG_CONV_MIN_COLS 1024                   /* batch images until a block has this many columns */

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

size_t tg_conv_forward_scratch(const tg_conv_geom *g)
{
    if (tg_conv_is_depthwise(g)) return tg_conv_depthwise_forward_scratch(g);
    conv_plan p = make_plan(g);
    return col_bytes(&p) + block_bytes(g, &p);
}

size_t tg_conv_backward_scratch(const tg_conv_geom *g)
{
    if (tg_conv_is_depthwise(g)) return tg_conv_depthwise_backward_scratch(g);
    conv_plan p = make_plan(g);
    /* NOTE: the same column block serves im2col of x (weight gradient) and then the
     * data gradient's columns before col2im; direct convs need neither. */
    return col_bytes(&p) + block_bytes(g, &p);
}

/* ---- im2col / col2im over one block ---- */

typedef struct col_ctx {
    const tg_conv_geom *g;
    const conv_plan *p;
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

static void im2col_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const col_ctx *c = arg;
    const tg_conv_geom *g = c->g;
    for (int64_t r = begin; r < end; r++) {
        int64_t ch = r / (g->kh * g->kw), ki = r / g->kw % g->kh, kj = r % g->kw;
        int64_t lo, hi;
        valid_columns(g, kj, &lo, &hi);
        float *dst = c->col + r * c->cols;
        for (int64_t b = 0; b < c->images; b++) {
            const float *xp = c->x + ((c->n0 + b) * g->c + ch) * g->h * g->w; /* [h, w] */
            for (int64_t oh = c->oh0; oh < c->oh1; oh++, dst += g->wo) {
                int64_t ih = oh * g->sh - g->ph + ki * g->dh;
                if (ih < 0 || ih >= g->h) {
                    memset(dst, 0, (size_t)g->wo * sizeof(float));
                    continue;
                }
                const float *src = xp + ih * g->w + kj * g->dw - g->pw;
                for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                if (g->sw == 1) memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
                else if (g->sw == 2) for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[2 * ow];
                else for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[ow * g->sw];
                for (int64_t ow = hi; ow < g->wo; ow++) dst[ow] = 0.0f;
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

/* ---- the engine ---- */

void tg_conv_forward(const tg_conv_geom *g, const float *x, const float *w, const float *bias,
                     float *y, int accumulate, void *scratch)
{
    if (g->n == 0 || g->o == 0 || g->ho == 0 || g->wo == 0) return;
    if (tg_conv_is_depthwise(g)) {
        tg_conv_depthwise_forward(g, x, w, bias, y, accumulate, scratch);
        return;
    }
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
                col_ctx cc = {.g = g, .p = &p, .n0 = n0, .images = images, .oh0 = oh0, .oh1 = oh1,
                              .x = x, .col = col, .cols = cols};
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

void tg_conv_backward(const tg_conv_geom *g, const float *x, const float *w, const float *gy,
                      float *gx, float *gw, void *scratch)
{
    if (g->n == 0 || g->o == 0 || g->ho == 0 || g->wo == 0 || (!gx && !gw)) return;
    if (tg_conv_is_depthwise(g)) {
        tg_conv_depthwise_backward(g, x, w, gy, gx, gw, scratch);
        return;
    }
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
            col_ctx cc = {.g = g, .p = &p, .n0 = n0, .images = images, .oh0 = oh0, .oh1 = oh1,
                          .x = x, .gx = gx, .col = col, .cols = cols};
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
