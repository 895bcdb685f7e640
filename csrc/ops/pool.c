/* pool.c: 2-D pooling over NCHW float32, PyTorch semantics: max_pool2d (argmax kept
 * for backward), avg_pool2d, adaptive_avg_pool2d and global_avg_pool.
 * Not here: 1-D/3-D pooling, adaptive max pooling, channels-last layouts.
 *
 * Every kernel works on whole planes (one (n, c) pair per work item): forward
 * outputs are independent, and backward scatters into its own plane only, in a
 * fixed order, so results do not depend on the thread count. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <immintrin.h>

#include "../export/onnx.h"
#include "op.h"
#include "vmath.h"

static const char *const pool_inputs[] = {"x", NULL};

/* Geometry of one pooling call: an NCHW input, an output of out_h x out_w. */
typedef struct pool_geometry {
    int64_t planes, in_h, in_w, out_h, out_w;   /* planes = N * C */
    int64_t kernel[2], stride[2], padding[2], dilation[2];
} pool_geometry;

/* Planes per chunk so that one chunk has at least ~16K elements of work. */
static int64_t pool_grain(int64_t work_per_plane)
{
    int64_t grain = 16384 / (work_per_plane > 0 ? work_per_plane : 1);
    return grain > 0 ? grain : 1;
}

/* floor(a / b) for b > 0 (C division truncates toward zero). */
static int64_t pool_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* PyTorch's pooling_output_shape: with ceil_mode the last window must start inside
 * the input or its left padding. */
static int64_t pool_output_size(int64_t in, int64_t kernel, int64_t pad, int64_t stride, int64_t dilation, int ceil_mode)
{
    int64_t out = pool_floor_div(in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0), stride) + 1;
    if (ceil_mode && (out - 1) * stride >= in + pad) out--;
    return out;
}

/* Checks x, kernel/stride/padding/dilation and fills g (stride 0 means the kernel size).
 * max_pad_of_kernel: padding may be at most half the (dilated) kernel, as in PyTorch. */
static tg_status pool_geometry_init(pool_geometry *g, const tg_tensor *x, const char *op, const int64_t *kernel,
                                    const int64_t *stride, const int64_t *padding, const int64_t *dilation,
                                    int ceil_mode)
{
    char buf[96];
    TG_TRY(tg_check_dtype(x, TG_DTYPE_F32, op, "x"));
    TG_TRY(tg_check_ndim(x, 4, op, "x [N, C, H, W]"));
    memset(g, 0, sizeof *g);
    g->planes = x->shape[0] * x->shape[1];
    g->in_h = x->shape[2];
    g->in_w = x->shape[3];
    for (int d = 0; d < 2; d++) {
        g->kernel[d] = kernel[d];
        g->stride[d] = stride[d] == 0 ? kernel[d] : stride[d];
        g->padding[d] = padding[d];
        g->dilation[d] = dilation ? dilation[d] : 1;
        if (g->kernel[d] < 1 || g->stride[d] < 1 || g->dilation[d] < 1 || g->padding[d] < 0)
            return tg_error(TG_STATUS_VALUE, "%s: kernel_size (%lld, %lld), stride (%lld, %lld) and dilation must be >= 1 "
                            "and padding >= 0 (stride 0 means the kernel size)", op, (long long)kernel[0],
                            (long long)kernel[1], (long long)stride[0], (long long)stride[1]);
        int64_t effective = (g->kernel[d] - 1) * g->dilation[d] + 1;
        int64_t limit = dilation ? effective / 2 : g->kernel[d] / 2;
        if (g->padding[d] > limit)
            return tg_error(TG_STATUS_VALUE, "%s: padding %lld must be at most half the kernel size (%lld) in dim %d",
                            op, (long long)g->padding[d], (long long)limit, d);
    }
    g->out_h = pool_output_size(g->in_h, g->kernel[0], g->padding[0], g->stride[0], g->dilation[0], ceil_mode);
    g->out_w = pool_output_size(g->in_w, g->kernel[1], g->padding[1], g->stride[1], g->dilation[1], ceil_mode);
    if (g->out_h < 1 || g->out_w < 1)
        return tg_error(TG_STATUS_SHAPE, "%s: x %s is too small for kernel_size (%lld, %lld) with padding (%lld, %lld): "
                        "the output would be %lld x %lld", op, tg_shape_str(x, buf, sizeof buf),
                        (long long)g->kernel[0], (long long)g->kernel[1], (long long)g->padding[0],
                        (long long)g->padding[1], (long long)g->out_h, (long long)g->out_w);
    return TG_STATUS_OK;
}

static tg_status pool_set_output(tg_tensor *out, const tg_tensor *x, int64_t out_h, int64_t out_w)
{
    int64_t shape[4] = {x->shape[0], x->shape[1], out_h, out_w};
    return tg_tensor_set_shape(out, TG_DTYPE_F32, 4, shape);
}

typedef struct pool_ctx {
    pool_geometry g;
    const float *x;        /* [planes, in_h, in_w] */
    float *y;              /* [planes, out_h, out_w] */
    int32_t *argmax;       /* [planes, out_h, out_w]: h * in_w + w within the plane (max_pool2d) */
    const float *gy;       /* [planes, out_h, out_w] */
    float *gx;             /* [planes, in_h, in_w] (+=) */
    int count_include_pad;
    int64_t divisor_override;
    int fresh;             /* backward: gx holds garbage; each plane is zeroed before its scatter */
} pool_ctx;

/* ---- max_pool2d ---- */

typedef struct max_pool2d_attrs {
    int64_t kernel_size[2], stride[2], padding[2], dilation[2];
    int ceil_mode;
} max_pool2d_attrs;

static const tg_attr_spec max_pool2d_attr_specs[] = {
    {"kernel_size", TG_ATTR_KIND_INT_PAIR, offsetof(max_pool2d_attrs, kernel_size), 0, 1},
    {"stride", TG_ATTR_KIND_INT_PAIR, offsetof(max_pool2d_attrs, stride), 0, 0},
    {"padding", TG_ATTR_KIND_INT_PAIR, offsetof(max_pool2d_attrs, padding), 0, 0},
    {"dilation", TG_ATTR_KIND_INT_PAIR, offsetof(max_pool2d_attrs, dilation), 1, 0},
    {"ceil_mode", TG_ATTR_KIND_BOOL, offsetof(max_pool2d_attrs, ceil_mode), 0, 0},
};

static tg_status max_pool2d_geometry(pool_geometry *g, const tg_tensor *x, const max_pool2d_attrs *a)
{
    return pool_geometry_init(g, x, "max_pool2d", a->kernel_size, a->stride, a->padding, a->dilation, a->ceil_mode);
}

static tg_status max_pool2d_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                  tg_op_sizes *sizes)
{
    (void)n_in;
    pool_geometry g;
    TG_TRY(max_pool2d_geometry(&g, in[0], attrs));
    if (g.in_h * g.in_w > INT32_MAX)
        return tg_error(TG_STATUS_SHAPE, "max_pool2d: planes of %lld x %lld exceed the int32 argmax index",
                        (long long)g.in_h, (long long)g.in_w);
    sizes->aux_bytes = tg_align64((size_t)(g.planes * g.out_h * g.out_w) * sizeof(int32_t)); /* argmax [N, C, OH, OW] */
    return pool_set_output(out, in[0], g.out_h, g.out_w);
}

/* One plane, any geometry: the reference loop. */
static void max_pool2d_plane_scalar(const pool_geometry *g, const float *x, float *y, int32_t *arg_out)
{
    const int64_t kh = g->kernel[0], kw = g->kernel[1], sh = g->stride[0], sw = g->stride[1];
    const int64_t dh = g->dilation[0], dw = g->dilation[1], ph = g->padding[0], pw = g->padding[1];
    const int64_t in_h = g->in_h, in_w = g->in_w, out_h = g->out_h, out_w = g->out_w;
    for (int64_t oh = 0; oh < out_h; oh++) {
        int64_t h0 = oh * sh - ph, h1 = h0 + (kh - 1) * dh + 1;
        if (h1 > in_h) h1 = in_h;
        while (h0 < 0) h0 += dh;
        for (int64_t ow = 0; ow < out_w; ow++) {
            int64_t w0 = ow * sw - pw, w1 = w0 + (kw - 1) * dw + 1;
            if (w1 > in_w) w1 = in_w;
            while (w0 < 0) w0 += dw;
            int64_t best = h0 * in_w + w0;
            float best_value = -INFINITY;
            for (int64_t h = h0; h < h1; h += dh)
                for (int64_t w = w0; w < w1; w += dw) {
                    float v = x[h * in_w + w];
                    /* NOTE: as PyTorch, a NaN wins (propagates), and among equal maxima the first in
                     * row-major order. */
                    if (v > best_value || isnan(v)) {
                        best_value = v;
                        best = h * in_w + w;
                    }
                }
            y[oh * out_w + ow] = best_value;
            arg_out[oh * out_w + ow] = (int32_t)best;
        }
    }
}

/* Lanes l in [0, 16) whose column base + step * l lies in [0, width), as a mask over the
 * first `span` loaded elements (span = 16 * step); step is 1 or 2. */
static __mmask32 max_pool2d_column_mask(int64_t base, int64_t width, int64_t span)
{
    int64_t lo = base < 0 ? -base : 0, hi = width - base;
    if (hi > span) hi = span;
    if (hi <= lo) return 0;
    uint64_t bits = ((hi - lo) >= 64 ? ~0ull : ((1ull << (hi - lo)) - 1)) << lo;
    return (__mmask32)bits;
}

/* One plane with dilation 1 and a column stride of 1 or 2: 16 outputs of a row at once.
 * Each lane visits its window in the scalar loop's order with the same comparison, and
 * columns outside the input read as -inf, which never wins, so the values and argmax
 * indices equal max_pool2d_plane_scalar's bit for bit. */
TG_TARGET_AVX512 static void max_pool2d_plane_avx512(const pool_geometry *g, const float *x, float *y,
                                                      int32_t *arg_out)
{
    const int64_t kh = g->kernel[0], kw = g->kernel[1], sh = g->stride[0], sw = g->stride[1];
    const int64_t ph = g->padding[0], pw = g->padding[1];
    const int64_t in_h = g->in_h, in_w = g->in_w, out_h = g->out_h, out_w = g->out_w;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i lane_column = sw == 1 ? lane : _mm512_slli_epi32(lane, 1);   /* step * l */
    const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
    for (int64_t oh = 0; oh < out_h; oh++) {
        int64_t h0 = oh * sh - ph, h1 = h0 + kh;
        if (h1 > in_h) h1 = in_h;
        if (h0 < 0) h0 = 0;
        for (int64_t ow0 = 0; ow0 < out_w; ow0 += 16) {
            int64_t lanes = out_w - ow0 < 16 ? out_w - ow0 : 16;
            __mmask16 active = (__mmask16)((1u << lanes) - 1);
            /* first column of each lane's window, clamped into the input: [16] */
            __m512i first = _mm512_max_epi32(_mm512_add_epi32(_mm512_set1_epi32((int32_t)(ow0 * sw - pw)), lane_column),
                                             _mm512_setzero_si512());
            __m512i best_index = _mm512_add_epi32(first, _mm512_set1_epi32((int32_t)(h0 * in_w)));
            __m512 best = neg_inf;
            for (int64_t h = h0; h < h1; h++) {
                const float *row = x + h * in_w;   /* [in_w] */
                for (int64_t kj = 0; kj < kw; kj++) {
                    int64_t base = ow0 * sw - pw + kj;   /* column of lane 0 */
                    __m512 v;
                    if (sw == 1) {
                        __mmask16 m = (__mmask16)max_pool2d_column_mask(base, in_w, 16);
                        v = _mm512_mask_loadu_ps(neg_inf, m, (const void *)((uintptr_t)row + (uintptr_t)(base * 4)));
                    } else {
                        __mmask32 m = max_pool2d_column_mask(base, in_w, 32);
                        __m512 lo = _mm512_mask_loadu_ps(neg_inf, (__mmask16)m,
                                                         (const void *)((uintptr_t)row + (uintptr_t)(base * 4)));
                        __m512 hi = _mm512_mask_loadu_ps(neg_inf, (__mmask16)(m >> 16),
                                                         (const void *)((uintptr_t)row + (uintptr_t)((base + 16) * 4)));
                        v = _mm512_permutex2var_ps(lo, even, hi);
                    }
                    __mmask16 wins = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                    best = _mm512_mask_mov_ps(best, wins, v);
                    best_index = _mm512_mask_mov_epi32(best_index, wins,
                                                       _mm512_add_epi32(_mm512_set1_epi32((int32_t)(h * in_w + base)),
                                                                        lane_column));
                }
            }
            _mm512_mask_storeu_ps(y + oh * out_w + ow0, active, best);
            _mm512_mask_storeu_epi32(arg_out + oh * out_w + ow0, active, best_index);
        }
    }
}

static void max_pool2d_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const pool_ctx *c = arg;
    const pool_geometry *g = &c->g;
    const int64_t in_plane = g->in_h * g->in_w, out_plane = g->out_h * g->out_w;
    int vector = tg_cpu_has_avx512() && g->dilation[0] == 1 && g->dilation[1] == 1 &&
                 (g->stride[1] == 1 || g->stride[1] == 2);
    for (int64_t p = begin; p < end; p++) {
        const float *x = c->x + p * in_plane;   /* [in_h, in_w] */
        float *y = c->y + p * out_plane;        /* [out_h, out_w] */
        int32_t *arg_out = c->argmax + p * out_plane;
        if (vector) max_pool2d_plane_avx512(g, x, y, arg_out);
        else max_pool2d_plane_scalar(g, x, y, arg_out);
    }
}

static tg_status max_pool2d_forward(const tg_op_io *io)
{
    pool_ctx c = {.x = io->in[0]->data, .y = io->out->data, .argmax = io->aux};
    TG_TRY(max_pool2d_geometry(&c.g, io->in[0], io->attrs));
    tg_parallel_for(c.g.planes, pool_grain(c.g.out_h * c.g.out_w * c.g.kernel[0] * c.g.kernel[1]),
                    max_pool2d_forward_range, &c);
    return TG_STATUS_OK;
}

static void max_pool2d_backward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const pool_ctx *c = arg;
    const int64_t in_plane = c->g.in_h * c->g.in_w, out_plane = c->g.out_h * c->g.out_w;
    for (int64_t p = begin; p < end; p++) {
        float *gx = c->gx + p * in_plane;
        const float *gy = c->gy + p * out_plane;
        const int32_t *idx = c->argmax + p * out_plane;
        if (c->fresh) memset(gx, 0, (size_t)in_plane * sizeof(float));
        for (int64_t o = 0; o < out_plane; o++) gx[idx[o]] += gy[o];
    }
}

static tg_status max_pool2d_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    pool_ctx c = {.argmax = io->aux, .gy = io->grad_out->data, .gx = io->grad_in[0]->data,
                  .fresh = (int)(io->grad_in_fresh & 1u)};
    TG_TRY(max_pool2d_geometry(&c.g, io->in[0], io->attrs));
    tg_parallel_for(c.g.planes, pool_grain(c.g.out_h * c.g.out_w), max_pool2d_backward_range, &c);
    return TG_STATUS_OK;
}

static tg_status max_pool2d_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const max_pool2d_attrs *a = n->attrs;
    pool_geometry g;
    TG_TRY(max_pool2d_geometry(&g, n->in[0], a));
    const int64_t pads[4] = {g.padding[0], g.padding[1], g.padding[0], g.padding[1]};
    tg_onnx_attr attrs[5] = {
        tg_onnx_attr_ints("kernel_shape", g.kernel, 2), tg_onnx_attr_ints("strides", g.stride, 2),
        tg_onnx_attr_ints("pads", pads, 4), tg_onnx_attr_ints("dilations", g.dilation, 2),
        tg_onnx_attr_int("ceil_mode", a->ceil_mode),
    };
    return tg_onnx_unary(e, n, "MaxPool", attrs, 5);
}

const tg_op_def tg_op_max_pool2d = {
    .name = "max_pool2d", .input_names = pool_inputs,
    .attr_specs = max_pool2d_attr_specs, .n_attrs = 5, .attrs_size = sizeof(max_pool2d_attrs),
    .infer = max_pool2d_infer, .forward = max_pool2d_forward, .backward = max_pool2d_backward,
    .onnx = max_pool2d_onnx, .backward_skips_inputs = 1, .backward_skips_output = 1, .backward_writes_fresh = 1,
};

/* ---- avg_pool2d ---- */

typedef struct avg_pool2d_attrs {
    int64_t kernel_size[2], stride[2], padding[2];
    int ceil_mode, count_include_pad;
    int64_t divisor_override;
} avg_pool2d_attrs;

static const tg_attr_spec avg_pool2d_attr_specs[] = {
    {"kernel_size", TG_ATTR_KIND_INT_PAIR, offsetof(avg_pool2d_attrs, kernel_size), 0, 1},
    {"stride", TG_ATTR_KIND_INT_PAIR, offsetof(avg_pool2d_attrs, stride), 0, 0},
    {"padding", TG_ATTR_KIND_INT_PAIR, offsetof(avg_pool2d_attrs, padding), 0, 0},
    {"ceil_mode", TG_ATTR_KIND_BOOL, offsetof(avg_pool2d_attrs, ceil_mode), 0, 0},
    {"count_include_pad", TG_ATTR_KIND_BOOL, offsetof(avg_pool2d_attrs, count_include_pad), 1, 0},
    {"divisor_override", TG_ATTR_KIND_INT, offsetof(avg_pool2d_attrs, divisor_override), 0, 0},
};

static tg_status avg_pool2d_geometry(pool_geometry *g, const tg_tensor *x, const avg_pool2d_attrs *a)
{
    TG_TRY(pool_geometry_init(g, x, "avg_pool2d", a->kernel_size, a->stride, a->padding, NULL, a->ceil_mode));
    if (a->divisor_override < 0)
        return tg_error(TG_STATUS_VALUE, "avg_pool2d: divisor_override must be > 0 (0: none), got %lld",
                        (long long)a->divisor_override);
    return TG_STATUS_OK;
}

static tg_status avg_pool2d_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                  tg_op_sizes *sizes)
{
    (void)n_in; (void)sizes;
    pool_geometry g;
    TG_TRY(avg_pool2d_geometry(&g, in[0], attrs));
    return pool_set_output(out, in[0], g.out_h, g.out_w);
}

/* The window of output (oh, ow) clipped to the input, and its divisor (PyTorch's rule:
 * with count_include_pad the window counts the padding but not what lies past it). */
static float avg_pool2d_window(const pool_ctx *c, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1, int64_t *w0,
                               int64_t *w1)
{
    const pool_geometry *g = &c->g;
    int64_t hs = oh * g->stride[0] - g->padding[0], ws = ow * g->stride[1] - g->padding[1];
    int64_t he = hs + g->kernel[0], we = ws + g->kernel[1];
    if (he > g->in_h + g->padding[0]) he = g->in_h + g->padding[0];
    if (we > g->in_w + g->padding[1]) we = g->in_w + g->padding[1];
    int64_t padded_size = (he - hs) * (we - ws);
    *h0 = hs > 0 ? hs : 0;
    *w0 = ws > 0 ? ws : 0;
    *h1 = he < g->in_h ? he : g->in_h;
    *w1 = we < g->in_w ? we : g->in_w;
    if (c->divisor_override) return (float)c->divisor_override;
    return (float)(c->count_include_pad ? padded_size : (*h1 - *h0) * (*w1 - *w0));
}

static void avg_pool2d_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const pool_ctx *c = arg;
    const int64_t in_w = c->g.in_w, out_h = c->g.out_h, out_w = c->g.out_w;
    for (int64_t p = begin; p < end; p++) {
        const float *x = c->x + p * c->g.in_h * in_w;
        float *y = c->y + p * out_h * out_w;
        for (int64_t oh = 0; oh < out_h; oh++)
            for (int64_t ow = 0; ow < out_w; ow++) {
                int64_t h0, h1, w0, w1;
                float divisor = avg_pool2d_window(c, oh, ow, &h0, &h1, &w0, &w1);
                float sum = 0.0f;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) sum += x[h * in_w + w];
                y[oh * out_w + ow] = (h0 < h1 && w0 < w1) ? sum / divisor : 0.0f;
            }
    }
}

static tg_status avg_pool2d_forward(const tg_op_io *io)
{
    const avg_pool2d_attrs *a = io->attrs;
    pool_ctx c = {.x = io->in[0]->data, .y = io->out->data, .count_include_pad = a->count_include_pad,
                  .divisor_override = a->divisor_override};
    TG_TRY(avg_pool2d_geometry(&c.g, io->in[0], a));
    tg_parallel_for(c.g.planes, pool_grain(c.g.out_h * c.g.out_w * c.g.kernel[0] * c.g.kernel[1]),
                    avg_pool2d_forward_range, &c);
    return TG_STATUS_OK;
}

static void avg_pool2d_backward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const pool_ctx *c = arg;
    const int64_t in_w = c->g.in_w, out_h = c->g.out_h, out_w = c->g.out_w;
    for (int64_t p = begin; p < end; p++) {
        float *gx = c->gx + p * c->g.in_h * in_w;
        const float *gy = c->gy + p * out_h * out_w;
        if (c->fresh) memset(gx, 0, (size_t)(c->g.in_h * in_w) * sizeof(float));
        for (int64_t oh = 0; oh < out_h; oh++)
            for (int64_t ow = 0; ow < out_w; ow++) {
                int64_t h0, h1, w0, w1;
                float g = gy[oh * out_w + ow] / avg_pool2d_window(c, oh, ow, &h0, &h1, &w0, &w1);
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) gx[h * in_w + w] += g;
            }
    }
}

static tg_status avg_pool2d_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    const avg_pool2d_attrs *a = io->attrs;
    pool_ctx c = {.gy = io->grad_out->data, .gx = io->grad_in[0]->data, .count_include_pad = a->count_include_pad,
                  .divisor_override = a->divisor_override, .fresh = (int)(io->grad_in_fresh & 1u)};
    TG_TRY(avg_pool2d_geometry(&c.g, io->in[0], a));
    tg_parallel_for(c.g.planes, pool_grain(c.g.out_h * c.g.out_w * c.g.kernel[0] * c.g.kernel[1]),
                    avg_pool2d_backward_range, &c);
    return TG_STATUS_OK;
}

/* AveragePool; count_include_pad maps to ONNX's attr of the same name. */
static tg_status avg_pool2d_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const avg_pool2d_attrs *a = n->attrs;
    if (a->divisor_override)
        return tg_error(TG_STATUS_UNSUPPORTED, "avg_pool2d (layer '%s'): divisor_override %lld has no ONNX "
                        "AveragePool equivalent; export a model without it", n->layer, (long long)a->divisor_override);
    pool_geometry g;
    TG_TRY(avg_pool2d_geometry(&g, n->in[0], a));
    const int64_t pads[4] = {g.padding[0], g.padding[1], g.padding[0], g.padding[1]};
    tg_onnx_attr attrs[5] = {
        tg_onnx_attr_ints("kernel_shape", g.kernel, 2), tg_onnx_attr_ints("strides", g.stride, 2),
        tg_onnx_attr_ints("pads", pads, 4), tg_onnx_attr_int("ceil_mode", a->ceil_mode),
        tg_onnx_attr_int("count_include_pad", a->count_include_pad),
    };
    return tg_onnx_unary(e, n, "AveragePool", attrs, 5);
}

const tg_op_def tg_op_avg_pool2d = {
    .name = "avg_pool2d", .input_names = pool_inputs,
    .attr_specs = avg_pool2d_attr_specs, .n_attrs = 6, .attrs_size = sizeof(avg_pool2d_attrs),
    .infer = avg_pool2d_infer, .forward = avg_pool2d_forward, .backward = avg_pool2d_backward,
    .onnx = avg_pool2d_onnx, .backward_skips_inputs = 1, .backward_skips_output = 1, .backward_writes_fresh = 1,
};

/* ---- adaptive_avg_pool2d and global_avg_pool ---- */

/* PyTorch's adaptive windows: output o of O over I covers [floor(o*I/O), ceil((o+1)*I/O)). */
static int64_t adaptive_start(int64_t o, int64_t out, int64_t in) { return (o * in) / out; }
static int64_t adaptive_end(int64_t o, int64_t out, int64_t in) { return ((o + 1) * in + out - 1) / out; }

/* *sum = x[0..n) in 16 lanes combined pairwise, then the tail (a fixed order; the
 * AVX-512 and portable copies give the same bits). */
TG_SIMD_FUNCTION(pool_plane_sum_into, (const float *restrict x, int64_t n, float *restrict sum), (x, n, sum))
{
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += x[i + j];
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    float tail = 0.0f;
    for (; i < n; i++) tail += x[i];
    *sum = acc[0] + tail;
}

static float pool_plane_sum(const float *x, int64_t n)
{
    float sum;
    pool_plane_sum_into(x, n, &sum);
    return sum;
}

/* gx[i] += g, or gx[i] = 0 + g when fresh: a global pool's gradient over one plane. */
TG_SIMD_FUNCTION(pool_plane_spread, (float *restrict gx, int64_t n, float g, int fresh), (gx, n, g, fresh))
{
    if (fresh) for (int64_t i = 0; i < n; i++) gx[i] = 0.0f + g;
    else for (int64_t i = 0; i < n; i++) gx[i] += g;
}

static void adaptive_avg_pool2d_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const pool_ctx *c = arg;
    const int64_t in_h = c->g.in_h, in_w = c->g.in_w, out_h = c->g.out_h, out_w = c->g.out_w;
    for (int64_t p = begin; p < end; p++) {
        const float *x = c->x + p * in_h * in_w;
        float *y = c->y + p * out_h * out_w;
        if (out_h == 1 && out_w == 1) {
            y[0] = pool_plane_sum(x, in_h * in_w) / (float)(in_h * in_w);
            continue;
        }
        for (int64_t oh = 0; oh < out_h; oh++) {
            int64_t h0 = adaptive_start(oh, out_h, in_h), h1 = adaptive_end(oh, out_h, in_h);
            for (int64_t ow = 0; ow < out_w; ow++) {
                int64_t w0 = adaptive_start(ow, out_w, in_w), w1 = adaptive_end(ow, out_w, in_w);
                float sum = 0.0f;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) sum += x[h * in_w + w];
                y[oh * out_w + ow] = sum / (float)((h1 - h0) * (w1 - w0));
            }
        }
    }
}

static void adaptive_avg_pool2d_backward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const pool_ctx *c = arg;
    const int64_t in_h = c->g.in_h, in_w = c->g.in_w, out_h = c->g.out_h, out_w = c->g.out_w;
    for (int64_t p = begin; p < end; p++) {
        float *restrict gx = c->gx + p * in_h * in_w;
        const float *gy = c->gy + p * out_h * out_w;
        if (out_h == 1 && out_w == 1) {
            pool_plane_spread(gx, in_h * in_w, gy[0] / (float)(in_h * in_w), c->fresh);
            continue;
        }
        if (c->fresh) memset(gx, 0, (size_t)(in_h * in_w) * sizeof(float));
        for (int64_t oh = 0; oh < out_h; oh++) {
            int64_t h0 = adaptive_start(oh, out_h, in_h), h1 = adaptive_end(oh, out_h, in_h);
            for (int64_t ow = 0; ow < out_w; ow++) {
                int64_t w0 = adaptive_start(ow, out_w, in_w), w1 = adaptive_end(ow, out_w, in_w);
                float g = gy[oh * out_w + ow] / (float)((h1 - h0) * (w1 - w0));
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) gx[h * in_w + w] += g;
            }
        }
    }
}

/* Geometry of an adaptive pool of x to out_h x out_w (no kernel/stride fields). */
static tg_status adaptive_geometry(pool_geometry *g, const tg_tensor *x, const char *op, int64_t out_h, int64_t out_w)
{
    TG_TRY(tg_check_dtype(x, TG_DTYPE_F32, op, "x"));
    TG_TRY(tg_check_ndim(x, 4, op, "x [N, C, H, W]"));
    if (out_h < 1 || out_w < 1)
        return tg_error(TG_STATUS_VALUE, "%s: output_size must be >= 1, got (%lld, %lld)", op, (long long)out_h,
                        (long long)out_w);
    if (x->shape[2] < 1 || x->shape[3] < 1) {
        char buf[96];
        return tg_error(TG_STATUS_SHAPE, "%s: x %s has an empty plane", op, tg_shape_str(x, buf, sizeof buf));
    }
    memset(g, 0, sizeof *g);
    g->planes = x->shape[0] * x->shape[1];
    g->in_h = x->shape[2];
    g->in_w = x->shape[3];
    g->out_h = out_h;
    g->out_w = out_w;
    return TG_STATUS_OK;
}

static tg_status adaptive_run(const tg_op_io *io, const char *op, int64_t out_h, int64_t out_w, int backward)
{
    pool_ctx c = {.x = io->in[0]->data, .y = io->out->data};
    TG_TRY(adaptive_geometry(&c.g, io->in[0], op, out_h, out_w));
    int64_t grain = pool_grain(c.g.in_h * c.g.in_w);
    if (!backward) {
        tg_parallel_for(c.g.planes, grain, adaptive_avg_pool2d_forward_range, &c);
        return TG_STATUS_OK;
    }
    if (!io->grad_in[0]) return TG_STATUS_OK;
    c.gy = io->grad_out->data;
    c.gx = io->grad_in[0]->data;
    c.fresh = (int)(io->grad_in_fresh & 1u);
    tg_parallel_for(c.g.planes, grain, adaptive_avg_pool2d_backward_range, &c);
    return TG_STATUS_OK;
}

typedef struct adaptive_avg_pool2d_attrs {
    int64_t output_size[2];
} adaptive_avg_pool2d_attrs;

static const tg_attr_spec adaptive_avg_pool2d_attr_specs[] = {
    {"output_size", TG_ATTR_KIND_INT_PAIR, offsetof(adaptive_avg_pool2d_attrs, output_size), 0, 1},
};

static tg_status adaptive_avg_pool2d_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                           tg_op_sizes *sizes)
{
    (void)n_in; (void)sizes;
    const adaptive_avg_pool2d_attrs *a = attrs;
    pool_geometry g;
    TG_TRY(adaptive_geometry(&g, in[0], "adaptive_avg_pool2d", a->output_size[0], a->output_size[1]));
    return pool_set_output(out, in[0], a->output_size[0], a->output_size[1]);
}

static tg_status adaptive_avg_pool2d_forward(const tg_op_io *io)
{
    const adaptive_avg_pool2d_attrs *a = io->attrs;
    return adaptive_run(io, "adaptive_avg_pool2d", a->output_size[0], a->output_size[1], 0);
}

static tg_status adaptive_avg_pool2d_backward(const tg_op_io *io)
{
    const adaptive_avg_pool2d_attrs *a = io->attrs;
    return adaptive_run(io, "adaptive_avg_pool2d", a->output_size[0], a->output_size[1], 1);
}

/* The adaptive pool along one axis as a matrix: 1 / |bin o| where input i is in bin o,
 * stored [out, in] (o_stride in, i_stride 1) or transposed [in, out] (o_stride 1, i_stride out). */
static void adaptive_bins(int64_t in, int64_t out, float *bins, int64_t o_stride, int64_t i_stride)
{
    for (int64_t o = 0; o < out; o++) {
        int64_t start = adaptive_start(o, out, in), end = adaptive_end(o, out, in);
        for (int64_t i = 0; i < in; i++)
            bins[o * o_stride + i * i_stride] = i >= start && i < end ? 1.0f / (float)(end - start) : 0.0f;
    }
}

/* To 1 x 1: GlobalAveragePool; bins of equal size: AveragePool; otherwise (VGG's 7 x 7
 * from a smaller map) two MatMuls with the bin matrices, x @ Bw^T then Bh @ that.
 * NOTE: the matrices are exact for every size, including outputs larger than the input. */
static tg_status adaptive_avg_pool2d_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const adaptive_avg_pool2d_attrs *a = n->attrs;
    const int64_t in_h = n->in[0]->shape[2], in_w = n->in[0]->shape[3];
    const int64_t out_h = a->output_size[0], out_w = a->output_size[1];
    if (out_h == 1 && out_w == 1) return tg_onnx_unary(e, n, "GlobalAveragePool", NULL, 0);
    if (in_h % out_h == 0 && in_w % out_w == 0) {
        const int64_t kernel[2] = {in_h / out_h, in_w / out_w};
        tg_onnx_attr attrs[2] = {tg_onnx_attr_ints("kernel_shape", kernel, 2), tg_onnx_attr_ints("strides", kernel, 2)};
        return tg_onnx_unary(e, n, "AveragePool", attrs, 2);
    }
    float *bins = malloc(sizeof *bins * (size_t)(in_h * out_h + in_w * out_w));   /* [out_h, in_h] then [in_w, out_w] */
    if (!bins) return tg_error(TG_STATUS_NOMEM, "adaptive_avg_pool2d (layer '%s'): out of memory for the export", n->layer);
    float *rows = bins, *cols = bins + in_h * out_h;
    adaptive_bins(in_h, out_h, rows, in_h, 1);
    adaptive_bins(in_w, out_w, cols, 1, out_w);
    const char *rows_name, *cols_name, *pooled_w;
    const int64_t rows_shape[2] = {out_h, in_h}, cols_shape[2] = {in_w, out_w};
    tg_status status = tg_onnx_const_f32(e, n->output, 2, rows_shape, rows, &rows_name);
    if (status == TG_STATUS_OK) status = tg_onnx_const_f32(e, n->output, 2, cols_shape, cols, &cols_name);
    free(bins);
    TG_TRY(status);
    TG_TRY(tg_onnx_temp_name(e, n->output, &pooled_w));
    const char *first[2] = {n->input[0], cols_name}, *second[2] = {rows_name, pooled_w};
    TG_TRY(tg_onnx_node(e, "MatMul", first, 2, pooled_w, NULL, 0));
    return tg_onnx_node(e, "MatMul", second, 2, n->output, NULL, 0);
}

const tg_op_def tg_op_adaptive_avg_pool2d = {
    .name = "adaptive_avg_pool2d", .input_names = pool_inputs,
    .attr_specs = adaptive_avg_pool2d_attr_specs, .n_attrs = 1, .attrs_size = sizeof(adaptive_avg_pool2d_attrs),
    .infer = adaptive_avg_pool2d_infer, .forward = adaptive_avg_pool2d_forward,
    .backward = adaptive_avg_pool2d_backward, .onnx = adaptive_avg_pool2d_onnx,
    .backward_skips_inputs = 1, .backward_skips_output = 1, .backward_writes_fresh = 1,
};

/* global_avg_pool: x [N, C, H, W] -> [N, C, 1, 1], the adaptive pool to 1 x 1. */

static tg_status global_avg_pool_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                       tg_op_sizes *sizes)
{
    (void)n_in; (void)attrs; (void)sizes;
    pool_geometry g;
    TG_TRY(adaptive_geometry(&g, in[0], "global_avg_pool", 1, 1));
    return pool_set_output(out, in[0], 1, 1);
}

static tg_status global_avg_pool_forward(const tg_op_io *io) { return adaptive_run(io, "global_avg_pool", 1, 1, 0); }

static tg_status global_avg_pool_backward(const tg_op_io *io) { return adaptive_run(io, "global_avg_pool", 1, 1, 1); }

static tg_status global_avg_pool_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    return tg_onnx_unary(e, n, "GlobalAveragePool", NULL, 0);
}

const tg_op_def tg_op_global_avg_pool = {
    .name = "global_avg_pool", .input_names = pool_inputs,
    .infer = global_avg_pool_infer, .forward = global_avg_pool_forward, .backward = global_avg_pool_backward,
    .onnx = global_avg_pool_onnx, .backward_skips_inputs = 1, .backward_skips_output = 1, .backward_writes_fresh = 1,
};
