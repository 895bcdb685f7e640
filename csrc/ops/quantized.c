/* quantized.c: quantized_conv2d and quantized_linear, the int8 inference ops that
 * models/quantize.c puts in place of conv2d and linear.
 *
 * Both quantize their float32 x to uint8 with the calibrated input_scale and
 * input_zero_point (exactly ONNX QuantizeLinear), multiply it by int8 weights that are
 * quantized symmetrically per output channel (weight_scale [O], zero point 0) with
 * int32 accumulation (qgemm.c), and dequantize to float32 adding the float bias:
 *   y[., o] = input_scale * weight_scale[o] * sum_k (q[., k] - zero_point) * w[o, k] + bias[o]
 * then max(y, 0) when the attr relu is set (the rewrite fuses a following relu).
 * Inference only (no backward). Their ONNX form is QDQ: QuantizeLinear ->
 * DequantizeLinear on x, DequantizeLinear (axis 0) on the int8 weight, then Conv or
 * Gemm, which onnxruntime and TensorRT fuse into integer kernels.
 * Not here: choosing the scales (models/quantize.c); uint8 outputs (each op
 * dequantizes, and the ops after it run in float32). */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../export/onnx.h"
#include "conv.h"
#include "op.h"
#include "qgemm.h"

#define TG_QCONV_MIN_ROWS 1024                 /* images per block until the block has this many positions */
#define TG_QCONV_COL_BUDGET ((int64_t)1 << 23) /* bytes of the im2col block */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- shared pieces ---- */

/* input_scale > 0 and finite, input_zero_point in [0, 255]. */
static tg_status check_input_quantization(const char *op, double scale, int64_t zero_point)
{
    if (!(scale > 0) || !isfinite(scale) || !isfinite((float)scale) || (float)scale == 0.0f)
        return tg_error(TG_STATUS_VALUE, "%s: input_scale must be a positive finite float32, got %g", op, scale);
    if (zero_point < 0 || zero_point > 255)
        return tg_error(TG_STATUS_VALUE, "%s: input_zero_point must be in [0, 255] (uint8), got %lld", op,
                        (long long)zero_point);
    return TG_STATUS_OK;
}

/* weight int8 [O, ...], weight_scale float32 [O], bias float32 [O] or absent. */
static tg_status check_weight(const char *op, const tg_tensor *const *in, int n_in, int weight_ndim)
{
    char ws[96], ss[96];
    TG_TRY(tg_check_dtype(in[0], TG_DTYPE_F32, op, "x"));
    TG_TRY(tg_check_dtype(in[1], TG_DTYPE_I8, op, "weight"));
    TG_TRY(tg_check_ndim(in[1], weight_ndim, op, "weight"));
    TG_TRY(tg_check_dtype(in[2], TG_DTYPE_F32, op, "weight_scale"));
    int64_t o = in[1]->shape[0];
    if (in[2]->ndim != 1 || in[2]->shape[0] != o)
        return tg_error(TG_STATUS_SHAPE, "%s: weight_scale has shape %s, expected (%lld,) (one per output channel "
                        "of weight %s)", op, tg_shape_str(in[2], ss, sizeof ss), (long long)o,
                        tg_shape_str(in[1], ws, sizeof ws));
    if (n_in > 3 && in[3]) {
        TG_TRY(tg_check_dtype(in[3], TG_DTYPE_F32, op, "bias"));
        if (in[3]->ndim != 1 || in[3]->shape[0] != o)
            return tg_error(TG_STATUS_SHAPE, "%s: bias has shape %s, expected (%lld,) (the weight's output channels)",
                            op, tg_shape_str(in[3], ss, sizeof ss), (long long)o);
    }
    return TG_STATUS_OK;
}

/* The per-channel dequantisation of quantized_linear's int32 output (the conv's GEMM
 * dequantizes in its own epilogue, tg_qgemm_dequant). */
typedef struct dequant_ctx {
    const int32_t *acc;      /* [rows, ldacc] */
    int64_t ldacc;
    const int32_t *sums;     /* [channels] weight row sums */
    const float *scale;      /* [channels] weight_scale */
    const float *bias;       /* [channels] or NULL */
    float input_scale;
    int32_t zero_point;
    float *y;                /* [rows, channels] */
    int64_t channels;
    int relu;
} dequant_ctx;

static inline float dequantize(const dequant_ctx *c, int32_t acc, int64_t j)
{
    float value = (float)(acc - c->zero_point * c->sums[j]) * (c->input_scale * c->scale[j]);
    if (c->bias) value += c->bias[j];
    return c->relu && !(value > 0) ? 0.0f : value;
}

/* ---- quantized_conv2d: x [N, C, H, W] float32, weight [O, C/groups, kH, kW] int8,
 * weight_scale [O], bias [O] -> [N, O, Ho, Wo] float32 ----
 * The batch is cut into blocks of images (fixed by the shapes). Per block, x is quantized
 * to uint8 channels-last; then per group and image, im2col writes the columns
 * [kh, kw, c] x [oh, ow] straight into the columns-form packing of qgemm.h, and the GEMM
 * with the weight permuted to [o, kh, kw, c] gives the channel-major int32 output that
 * is dequantized row by row into NCHW. */

typedef struct qconv_attrs {
    int64_t stride[2], padding[2], dilation[2];
    int64_t groups;
    double input_scale;
    int64_t input_zero_point;
    int relu;
} qconv_attrs;

static const char *const qconv_inputs[] = {"x", "weight", "weight_scale", "?bias", NULL};

static const tg_attr_spec qconv_attr_specs[] = {
    {"stride", TG_ATTR_KIND_INT_PAIR, offsetof(qconv_attrs, stride), 1, 0},
    {"padding", TG_ATTR_KIND_INT_PAIR, offsetof(qconv_attrs, padding), 0, 0},
    {"dilation", TG_ATTR_KIND_INT_PAIR, offsetof(qconv_attrs, dilation), 1, 0},
    {"groups", TG_ATTR_KIND_INT, offsetof(qconv_attrs, groups), 1, 0},
    {"input_scale", TG_ATTR_KIND_FLOAT, offsetof(qconv_attrs, input_scale), 0, 1},
    {"input_zero_point", TG_ATTR_KIND_INT, offsetof(qconv_attrs, input_zero_point), 0, 0},
    {"relu", TG_ATTR_KIND_BOOL, offsetof(qconv_attrs, relu), 0, 0},
};

/* The shapes of one call and how its scratch is cut. */
typedef struct qconv_plan {
    tg_conv_geom g;
    int64_t cg, og, k, ldw;   /* channels in / out per group, k = kh*kw*cg, permuted weight row stride */
    int64_t plane, stride;    /* ho * wo; positions per packed column row */
    int64_t col_bytes;        /* packed columns of one image and group */
    int64_t images;           /* per block */
    /* scratch offsets */
    size_t off_weight, off_offsets, off_scales, off_xq, off_col, total;
} qconv_plan;

static tg_status qconv_make_plan(const tg_tensor *const *in, int n_in, const qconv_attrs *a, qconv_plan *p)
{
    const char *op = "quantized_conv2d";
    char xs[96], ws[96];
    TG_TRY(check_weight(op, in, n_in, 4));
    TG_TRY(tg_check_ndim(in[0], 4, op, "x"));
    TG_TRY(check_input_quantization(op, a->input_scale, a->input_zero_point));
    for (int i = 0; i < 2; i++)
        if (a->stride[i] < 1 || a->dilation[i] < 1 || a->padding[i] < 0)
            return tg_error(TG_STATUS_VALUE, "quantized_conv2d: stride and dilation must be >= 1 and padding >= 0, "
                            "got stride (%lld, %lld), padding (%lld, %lld), dilation (%lld, %lld)",
                            (long long)a->stride[0], (long long)a->stride[1], (long long)a->padding[0],
                            (long long)a->padding[1], (long long)a->dilation[0], (long long)a->dilation[1]);
    const tg_tensor *x = in[0], *w = in[1];
    tg_conv_geom *g = &p->g;
    *g = (tg_conv_geom){.n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
                        .o = w->shape[0], .kh = w->shape[2], .kw = w->shape[3],
                        .sh = a->stride[0], .sw = a->stride[1], .ph = a->padding[0], .pw = a->padding[1],
                        .dh = a->dilation[0], .dw = a->dilation[1], .groups = a->groups};
    if (g->groups < 1 || g->c % g->groups || g->o % g->groups || w->shape[1] * g->groups != g->c)
        return tg_error(TG_STATUS_SHAPE, "quantized_conv2d: x %s and weight %s do not match groups=%lld; weight must "
                        "be [out_channels, in_channels / groups, kH, kW]", tg_shape_str(x, xs, sizeof xs),
                        tg_shape_str(w, ws, sizeof ws), (long long)g->groups);
    int64_t eff_h = g->dh * (g->kh - 1) + 1, eff_w = g->dw * (g->kw - 1) + 1;
    if (g->kh < 1 || g->kw < 1 || g->h + 2 * g->ph < eff_h || g->w + 2 * g->pw < eff_w)
        return tg_error(TG_STATUS_SHAPE, "quantized_conv2d: x %s padded by (%lld, %lld) is smaller than the dilated "
                        "kernel (%lld, %lld); use a larger input or more padding", tg_shape_str(x, xs, sizeof xs),
                        (long long)g->ph, (long long)g->pw, (long long)eff_h, (long long)eff_w);
    g->ho = (g->h + 2 * g->ph - eff_h) / g->sh + 1;
    g->wo = (g->w + 2 * g->pw - eff_w) / g->sw + 1;
    p->cg = g->c / g->groups;
    p->og = g->o / g->groups;
    p->k = p->cg * g->kh * g->kw;
    if (p->k > TG_QGEMM_MAX_K)
        return tg_error(TG_STATUS_SHAPE, "quantized_conv2d: in_channels / groups * kH * kW = %lld exceeds %d, where "
                        "int32 accumulation could overflow; keep this layer in float32", (long long)p->k,
                        TG_QGEMM_MAX_K);
    p->ldw = tg_qgemm_lda(p->k);
    p->plane = g->ho * g->wo;
    p->stride = tg_qgemm_cols_stride(p->plane);
    p->col_bytes = p->ldw * p->stride;
    int64_t want = (TG_QCONV_MIN_ROWS + p->plane - 1) / max64(p->plane, 1);
    int64_t budget = TG_QCONV_COL_BUDGET / max64(p->col_bytes, 1);
    p->images = max64(1, min64(g->n, min64(want, budget)));
    p->off_weight = 0;
    p->off_offsets = tg_align64((size_t)(g->o * p->ldw));
    p->off_scales = p->off_offsets + tg_align64(sizeof(int32_t) * (size_t)g->o);
    p->off_xq = p->off_scales + tg_align64(sizeof(float) * (size_t)g->o);
    p->off_col = p->off_xq + tg_align64((size_t)(p->images * g->h * g->w * g->c));
    p->total = p->off_col + tg_align64((size_t)(p->images * p->col_bytes));
    return TG_STATUS_OK;
}

static tg_status qconv_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                             tg_op_sizes *sizes)
{
    qconv_plan p = {0};
    TG_TRY(qconv_make_plan(in, n_in, attrs, &p));
    sizes->scratch_forward = p.total;
    int64_t shape[4] = {p.g.n, p.g.o, p.g.ho, p.g.wo};
    return tg_tensor_set_shape(out, TG_DTYPE_F32, 4, shape);
}

typedef struct qconv_ctx {
    const qconv_plan *p;
    const float *x;          /* [N, C, H, W] */
    uint8_t *xq;             /* [images, H, W, C] */
    uint8_t *col;            /* [images][ldw / 4][stride][4] */
    int64_t first_image;     /* of the block */
    int64_t group;
    float input_scale;
    int32_t zero_point;
} qconv_ctx;

#define TG_QCONV_CHUNK 64   /* floats quantized at once before the scatter to channels-last */

/* Items: (image, input row) of the block; x NCHW -> xq NHWC uint8. */
static void qconv_quantize_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const qconv_ctx *c = arg;
    const tg_conv_geom *g = &c->p->g;
    uint8_t chunk[TG_QCONV_CHUNK];
    for (int64_t item = begin; item < end; item++) {
        int64_t image = item / g->h, h = item % g->h;
        const float *src = c->x + ((c->first_image + image) * g->c * g->h + h) * g->w;   /* channel 0's row */
        uint8_t *dst = c->xq + (image * g->h + h) * g->w * g->c;                          /* [W, C] */
        for (int64_t ch = 0; ch < g->c; ch++)
            for (int64_t w0 = 0; w0 < g->w; w0 += TG_QCONV_CHUNK) {
                int64_t count = min64(TG_QCONV_CHUNK, g->w - w0);
                tg_quantize_row_u8(src + ch * g->h * g->w + w0, chunk, count, c->input_scale, c->zero_point);
                for (int64_t i = 0; i < count; i++) dst[(w0 + i) * g->c + ch] = chunk[i];
            }
    }
}

/* dst[i] = the 4 bytes at src + i * stride, for i < count (the im2col of 4 channels). */
__attribute__((target("avx512f"))) static void gather_words_avx512(uint8_t *dst, const uint8_t *src, int64_t count,
                                                                    int64_t stride)
{
    const __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int32_t)stride));
    int64_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_si512(dst + i * 4, _mm512_i32gather_epi32(index, (const void *)(src + i * stride), 1));
    for (; i < count; i++) memcpy(dst + i * 4, src + i * stride, 4);
}

static void gather_words(uint8_t *dst, const uint8_t *src, int64_t count, int64_t stride)
{
    static int cached = -1;
    if (cached < 0) cached = __builtin_cpu_supports("avx512f");
    /* NOTE: 16 offsets i * stride must fit the gather's int32 indices */
    if (cached && count >= 16 && stride * 16 < INT32_MAX) {
        gather_words_avx512(dst, src, count, stride);
        return;
    }
    for (int64_t i = 0; i < count; i++) memcpy(dst + i * 4, src + i * stride, 4);
}

/* Items: (image, output row) of the block: the columns of those positions, packed as
 * [k / 4][stride][4] with k = (kh, kw, c of the group). Each (tap, k) writes one
 * contiguous run of the row's positions: 4 channels (one uint32) at a time when the
 * group's channels are a multiple of 4, else byte by byte. */
static void qconv_im2col_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const qconv_ctx *c = arg;
    const qconv_plan *p = c->p;
    const tg_conv_geom *g = &p->g;
    uint8_t zp = (uint8_t)c->zero_point;
    uint32_t zp4 = 0x01010101u * zp;
    for (int64_t item = begin; item < end; item++) {
        int64_t image = item / g->ho, oh = item % g->ho, first = oh * g->wo;
        uint8_t *col = c->col + image * p->col_bytes;   /* [ldw / 4][stride][4] */
        if (oh == 0)   /* the padding positions [plane, stride) of every group of 4 k */
            for (int64_t q = 0; q < p->ldw / 4; q++)
                memset(col + (q * p->stride + p->plane) * 4, 0, (size_t)((p->stride - p->plane) * 4));
        for (int64_t i = 0; i < g->kh; i++) {
            int64_t ih = oh * g->sh - g->ph + i * g->dh;
            int row_inside = ih >= 0 && ih < g->h;
            const uint8_t *src_row = c->xq + (image * g->h + (row_inside ? ih : 0)) * g->w * g->c + c->group * p->cg;
            for (int64_t j = 0; j < g->kw; j++) {
                /* positions [lo, hi) of the row read inside the image; the rest read padding */
                int64_t shift = j * g->dw - g->pw, lo = 0, hi = g->wo;
                while (lo < hi && lo * g->sw + shift < 0) lo++;
                while (hi > lo && (hi - 1) * g->sw + shift >= g->w) hi--;
                if (!row_inside) hi = lo = 0;
                int64_t k0 = (i * g->kw + j) * p->cg;
                if (p->cg % 4 == 0) {
                    for (int64_t ci = 0; ci < p->cg; ci += 4) {
                        uint8_t *dst = col + (((k0 + ci) >> 2) * p->stride + first) * 4;   /* [wo][4] */
                        const uint8_t *src = src_row + shift * g->c + ci;
                        for (int64_t ow = 0; ow < lo; ow++) memcpy(dst + ow * 4, &zp4, 4);
                        gather_words(dst + lo * 4, src + lo * g->sw * g->c, hi - lo, g->sw * g->c);
                        for (int64_t ow = hi; ow < g->wo; ow++) memcpy(dst + ow * 4, &zp4, 4);
                    }
                } else {
                    for (int64_t ci = 0; ci < p->cg; ci++) {
                        int64_t k = k0 + ci;
                        uint8_t *dst = col + ((k >> 2) * p->stride + first) * 4 + (k & 3);   /* [wo] every 4 bytes */
                        const uint8_t *src = src_row + shift * g->c + ci;
                        for (int64_t ow = 0; ow < lo; ow++) dst[ow * 4] = zp;
                        for (int64_t ow = lo; ow < hi; ow++) dst[ow * 4] = src[ow * g->sw * g->c];
                        for (int64_t ow = hi; ow < g->wo; ow++) dst[ow * 4] = zp;
                    }
                }
            }
        }
        for (int64_t k = p->k; k < p->ldw; k++) {
            uint8_t *dst = col + ((k >> 2) * p->stride + first) * 4;
            for (int64_t ow = 0; ow < g->wo; ow++) dst[ow * 4 + (k & 3)] = 0;
        }
    }
}

static tg_status qconv_forward(const tg_op_io *io)
{
    qconv_plan p = {0};
    const qconv_attrs *a = io->attrs;
    TG_TRY(qconv_make_plan(io->in, io->n_in, a, &p));
    const tg_conv_geom *g = &p.g;
    unsigned char *scratch = io->scratch;
    int8_t *weight = (int8_t *)(scratch + p.off_weight);       /* [O, ldw]: [o, kh, kw, c], zero padded */
    int32_t *offsets = (int32_t *)(scratch + p.off_offsets);   /* [O] zero_point * row sum */
    float *scales = (float *)(scratch + p.off_scales);         /* [O] input_scale * weight_scale */
    const int8_t *w = io->in[1]->data;                         /* [O, cg, kh, kw] */
    const float *weight_scale = io->in[2]->data;               /* [O] */
    const float *bias = io->n_in > 3 && io->in[3] ? io->in[3]->data : NULL;   /* [O] */
    int64_t taps = g->kh * g->kw;
    for (int64_t o = 0; o < g->o; o++) {
        int8_t *row = weight + o * p.ldw;
        int32_t sum = 0;
        for (int64_t ci = 0; ci < p.cg; ci++)
            for (int64_t t = 0; t < taps; t++) {
                row[t * p.cg + ci] = w[(o * p.cg + ci) * taps + t];
                sum += w[(o * p.cg + ci) * taps + t];
            }
        memset(row + p.k, 0, (size_t)(p.ldw - p.k));
        offsets[o] = (int32_t)a->input_zero_point * sum;
        scales[o] = (float)a->input_scale * weight_scale[o];
    }
    qconv_ctx c = {
        .p = &p, .x = io->in[0]->data, .xq = scratch + p.off_xq, .col = scratch + p.off_col,
        .input_scale = (float)a->input_scale, .zero_point = (int32_t)a->input_zero_point,
    };
    float *y = io->out->data;   /* [N, O, plane] */
    for (c.first_image = 0; c.first_image < g->n; c.first_image += p.images) {
        int64_t images = min64(p.images, g->n - c.first_image);
        tg_parallel_for(images * g->h, 4, qconv_quantize_range, &c);
        for (c.group = 0; c.group < g->groups; c.group++) {
            int64_t first = c.group * p.og;
            tg_qgemm_dequant dequant = {.offset = offsets + first, .scale = scales + first,
                                        .bias = bias ? bias + first : NULL, .relu = a->relu};
            tg_parallel_for(images * g->ho, 4, qconv_im2col_range, &c);
            for (int64_t image = 0; image < images; image++)
                tg_qgemm_s8u8_cols(p.og, p.plane, p.k, weight + first * p.ldw, p.ldw, c.col + image * p.col_bytes,
                                   &dequant, y + ((c.first_image + image) * g->o + first) * p.plane, p.plane);
        }
    }
    return TG_STATUS_OK;
}

/* Emits QuantizeLinear -> DequantizeLinear of input 0 and DequantizeLinear (axis 0) of the
 * int8 weight (input 1, scale input 2); sets the dequantized names. */
static tg_status emit_qdq(tg_onnx_emitter *e, const tg_onnx_node_ctx *n, double input_scale, int64_t zero_point,
                          const char **x_float, const char **w_float)
{
    if (tg_onnx_float_type(e) != TG_ONNX_DTYPE_FLOAT)
        return tg_error(TG_STATUS_UNSUPPORTED, "export_onnx: %s (layer '%s') is int8; export a quantized model in "
                        "float32, not float16", n->op->name, n->layer);
    const char *scalar_scale, *zp, *q, *w_zp;
    uint8_t zp_value = (uint8_t)zero_point;
    TG_TRY(tg_onnx_const_scalar(e, n->output, (float)input_scale, &scalar_scale));
    TG_TRY(tg_onnx_const_bytes(e, n->output, TG_ONNX_DTYPE_UINT8, 0, 1, &zp_value, &zp));
    TG_TRY(tg_onnx_temp_name(e, n->output, &q));
    TG_TRY(tg_onnx_temp_name(e, n->output, x_float));
    const char *quantize_in[3] = {n->input[0], scalar_scale, zp};
    TG_TRY(tg_onnx_node(e, "QuantizeLinear", quantize_in, 3, q, NULL, 0));
    const char *dequantize_in[3] = {q, scalar_scale, zp};
    TG_TRY(tg_onnx_node(e, "DequantizeLinear", dequantize_in, 3, *x_float, NULL, 0));
    int64_t o = n->in[1]->shape[0];
    int8_t *zeros = calloc((size_t)o, 1);   /* [O] */
    if (!zeros) return tg_error(TG_STATUS_NOMEM, "export_onnx: out of memory for %lld zero points", (long long)o);
    tg_status status = tg_onnx_const_bytes(e, n->output, TG_ONNX_DTYPE_INT8, 1, (int)o, zeros, &w_zp);
    free(zeros);
    TG_TRY(status);
    TG_TRY(tg_onnx_temp_name(e, n->output, w_float));
    const char *weight_in[3] = {n->input[1], n->input[2], w_zp};
    tg_onnx_attr axis = tg_onnx_attr_int("axis", 0);
    return tg_onnx_node(e, "DequantizeLinear", weight_in, 3, *w_float, &axis, 1);
}

/* op_type(inputs; bias when inputs[2]) into the node's output, through a Relu when relu. */
static tg_status emit_with_relu(tg_onnx_emitter *e, const tg_onnx_node_ctx *n, const char *op_type,
                                const char *const *inputs, const tg_onnx_attr *attrs, int n_attrs, int relu)
{
    const char *product = n->output;
    if (relu) TG_TRY(tg_onnx_temp_name(e, n->output, &product));
    TG_TRY(tg_onnx_node(e, op_type, inputs, inputs[2] ? 3 : 2, product, attrs, n_attrs));
    return relu ? tg_onnx_node(e, "Relu", &product, 1, n->output, NULL, 0) : TG_STATUS_OK;
}

static tg_status qconv_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const qconv_attrs *a = n->attrs;
    const char *x_float, *w_float;
    TG_TRY(emit_qdq(e, n, a->input_scale, a->input_zero_point, &x_float, &w_float));
    const int64_t kernel[2] = {n->in[1]->shape[2], n->in[1]->shape[3]};
    const int64_t pads[4] = {a->padding[0], a->padding[1], a->padding[0], a->padding[1]};
    tg_onnx_attr attrs[5] = {
        tg_onnx_attr_ints("kernel_shape", kernel, 2), tg_onnx_attr_ints("strides", a->stride, 2),
        tg_onnx_attr_ints("pads", pads, 4), tg_onnx_attr_ints("dilations", a->dilation, 2),
        tg_onnx_attr_int("group", a->groups),
    };
    const char *inputs[3] = {x_float, w_float, n->n_in > 3 ? n->input[3] : NULL};
    return emit_with_relu(e, n, "Conv", inputs, attrs, 5, a->relu);
}

const tg_op_def tg_op_quantized_conv2d = {
    .name = "quantized_conv2d", .input_names = qconv_inputs, .no_grad_inputs = 0xf,
    .attr_specs = qconv_attr_specs, .n_attrs = 7, .attrs_size = sizeof(qconv_attrs),
    .infer = qconv_infer, .forward = qconv_forward, .backward = NULL, .onnx = qconv_onnx,
};

/* ---- quantized_linear: x [M, K] float32, weight [N, K] int8, weight_scale [N],
 * bias [N] -> [M, N] float32 ---- */

typedef struct qlinear_attrs {
    double input_scale;
    int64_t input_zero_point;
    int relu;
} qlinear_attrs;

static const char *const qlinear_inputs[] = {"x", "weight", "weight_scale", "?bias", NULL};

static const tg_attr_spec qlinear_attr_specs[] = {
    {"input_scale", TG_ATTR_KIND_FLOAT, offsetof(qlinear_attrs, input_scale), 0, 1},
    {"input_zero_point", TG_ATTR_KIND_INT, offsetof(qlinear_attrs, input_zero_point), 0, 0},
    {"relu", TG_ATTR_KIND_BOOL, offsetof(qlinear_attrs, relu), 0, 0},
};

typedef struct qlinear_plan {
    int64_t m, k, n, lda;
    size_t off_packed, off_sums, off_a, off_acc, total;
} qlinear_plan;

static tg_status qlinear_make_plan(const tg_tensor *const *in, int n_in, const qlinear_attrs *a, qlinear_plan *p)
{
    const char *op = "quantized_linear";
    char xs[96], ws[96];
    TG_TRY(check_weight(op, in, n_in, 2));
    TG_TRY(tg_check_ndim(in[0], 2, op, "x"));
    TG_TRY(check_input_quantization(op, a->input_scale, a->input_zero_point));
    p->m = in[0]->shape[0];
    p->k = in[0]->shape[1];
    p->n = in[1]->shape[0];
    if (in[1]->shape[1] != p->k)
        return tg_error(TG_STATUS_SHAPE, "quantized_linear: x %s and weight %s do not match; weight must be "
                        "[out_features, %lld]", tg_shape_str(in[0], xs, sizeof xs), tg_shape_str(in[1], ws, sizeof ws),
                        (long long)p->k);
    if (p->k > TG_QGEMM_MAX_K)
        return tg_error(TG_STATUS_SHAPE, "quantized_linear: in_features = %lld exceeds %d, where int32 accumulation "
                        "could overflow; keep this layer in float32", (long long)p->k, TG_QGEMM_MAX_K);
    p->lda = tg_qgemm_lda(p->k);
    p->off_packed = 0;
    p->off_sums = tg_align64(tg_qgemm_packed_bytes(p->n, p->k));
    p->off_a = p->off_sums + tg_align64(sizeof(int32_t) * (size_t)p->n);
    p->off_acc = p->off_a + tg_align64((size_t)(p->m * p->lda));
    p->total = p->off_acc + tg_align64(sizeof(int32_t) * (size_t)(p->m * p->n));
    return TG_STATUS_OK;
}

static tg_status qlinear_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                               tg_op_sizes *sizes)
{
    qlinear_plan p = {0};
    TG_TRY(qlinear_make_plan(in, n_in, attrs, &p));
    sizes->scratch_forward = p.total;
    int64_t shape[2] = {p.m, p.n};
    return tg_tensor_set_shape(out, TG_DTYPE_F32, 2, shape);
}

typedef struct qlinear_ctx {
    const qlinear_plan *p;
    const float *x;   /* [m, k] */
    uint8_t *a;       /* [m, lda] */
    dequant_ctx dq;
} qlinear_ctx;

static void qlinear_quantize_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const qlinear_ctx *c = arg;
    const qlinear_plan *p = c->p;
    for (int64_t r = begin; r < end; r++) {
        const float *x = c->x + r * p->k;   /* [k] */
        uint8_t *a = c->a + r * p->lda;     /* [lda] */
        tg_quantize_row_u8(x, a, p->k, c->dq.input_scale, c->dq.zero_point);
        memset(a + p->k, 0, (size_t)(p->lda - p->k));
    }
}

static void qlinear_dequantize_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const qlinear_ctx *c = arg;
    const dequant_ctx *d = &c->dq;
    for (int64_t r = begin; r < end; r++) {
        const int32_t *acc = d->acc + r * d->ldacc;   /* [n] */
        float *y = d->y + r * d->channels;            /* [n] */
        for (int64_t j = 0; j < d->channels; j++) y[j] = dequantize(d, acc[j], j);
    }
}

static tg_status qlinear_forward(const tg_op_io *io)
{
    qlinear_plan p = {0};
    const qlinear_attrs *a = io->attrs;
    TG_TRY(qlinear_make_plan(io->in, io->n_in, a, &p));
    unsigned char *scratch = io->scratch;
    int8_t *packed = (int8_t *)(scratch + p.off_packed);
    int32_t *sums = (int32_t *)(scratch + p.off_sums);   /* [n] */
    int32_t *acc = (int32_t *)(scratch + p.off_acc);     /* [m, n] */
    int dot = p.m < TG_QGEMM_DOT_MAX_ROWS;   /* a few rows: B read as it is, no packing */
    if (!dot) tg_qgemm_pack_b(p.n, p.k, io->in[1]->data, p.k, packed, sums);
    qlinear_ctx c = {
        .p = &p, .x = io->in[0]->data, .a = scratch + p.off_a,
        .dq = {.acc = acc, .ldacc = p.n, .sums = sums, .scale = io->in[2]->data,
               .bias = io->n_in > 3 && io->in[3] ? io->in[3]->data : NULL, .input_scale = (float)a->input_scale,
               .zero_point = (int32_t)a->input_zero_point, .y = io->out->data, .channels = p.n, .relu = a->relu},
    };
    tg_parallel_for(p.m, max64(1, 4096 / max64(p.k, 1)), qlinear_quantize_range, &c);
    if (dot) tg_qgemm_u8s8_dot(p.m, p.n, p.k, c.a, p.lda, io->in[1]->data, p.k, acc, p.n, sums);
    else tg_qgemm_u8s8(p.m, p.n, p.k, c.a, p.lda, packed, acc, p.n);
    tg_parallel_for(p.m, max64(1, 4096 / max64(p.n, 1)), qlinear_dequantize_range, &c);
    return TG_STATUS_OK;
}

static tg_status qlinear_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const qlinear_attrs *a = n->attrs;
    const char *x_float, *w_float;
    TG_TRY(emit_qdq(e, n, a->input_scale, a->input_zero_point, &x_float, &w_float));
    const char *inputs[3] = {x_float, w_float, n->n_in > 3 ? n->input[3] : NULL};
    tg_onnx_attr trans_b = tg_onnx_attr_int("transB", 1);
    return emit_with_relu(e, n, "Gemm", inputs, &trans_b, 1, a->relu);
}

const tg_op_def tg_op_quantized_linear = {
    .name = "quantized_linear", .input_names = qlinear_inputs, .no_grad_inputs = 0xf,
    .attr_specs = qlinear_attr_specs, .n_attrs = 3, .attrs_size = sizeof(qlinear_attrs),
    .infer = qlinear_infer, .forward = qlinear_forward, .backward = NULL, .onnx = qlinear_onnx,
};
