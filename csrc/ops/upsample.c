/* upsample.c: 2-D resizing of NCHW float32 with torch.nn.functional.interpolate's
 * index rules: upsample_nearest (mode='nearest') and upsample_bilinear
 * (mode='bilinear', align_corners true or false), forward and backward.
 * The output size is `size`, or floor(in * scale_factor) with one scale for both
 * dims; as in interpolate with recompute_scale_factor unset, a given scale_factor
 * (not out / in) is what maps output to input coordinates.
 * Not here: 'nearest-exact', bicubic, area, antialiasing, per-dim scale factors. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../export/onnx.h"
#include "op.h"

static const char *const upsample_inputs[] = {"x", NULL};

typedef struct upsample_attrs {
    int64_t size[2];
    double scale_factor;
    int align_corners;
} upsample_attrs;

static const tg_attr_spec upsample_nearest_attr_specs[] = {
    {"size", TG_ATTR_KIND_INT_PAIR, offsetof(upsample_attrs, size), 0, 0},
    {"scale_factor", TG_ATTR_KIND_FLOAT, offsetof(upsample_attrs, scale_factor), 0, 0},
};

static const tg_attr_spec upsample_bilinear_attr_specs[] = {
    {"size", TG_ATTR_KIND_INT_PAIR, offsetof(upsample_attrs, size), 0, 0},
    {"scale_factor", TG_ATTR_KIND_FLOAT, offsetof(upsample_attrs, scale_factor), 0, 0},
    {"align_corners", TG_ATTR_KIND_BOOL, offsetof(upsample_attrs, align_corners), 0, 0},
};

/* The output height and width from size or scale_factor (exactly one of them). */
static tg_status upsample_output_size(const tg_tensor *x, const upsample_attrs *a, const char *op, int64_t *out_hw)
{
    char buf[96];
    TG_TRY(tg_check_dtype(x, TG_DTYPE_F32, op, "x"));
    TG_TRY(tg_check_ndim(x, 4, op, "x [N, C, H, W]"));
    int has_size = a->size[0] != 0 || a->size[1] != 0;
    int has_scale = a->scale_factor != 0.0;
    if (has_size == has_scale)
        return tg_error(TG_STATUS_VALUE, "%s: give exactly one of size and scale_factor (got %s)", op,
                        has_size ? "both" : "neither");
    for (int d = 0; d < 2; d++) {
        if (has_size) {
            out_hw[d] = a->size[d];
        } else {
            if (!(a->scale_factor > 0.0) || !isfinite(a->scale_factor))
                return tg_error(TG_STATUS_VALUE, "%s: scale_factor must be a finite number > 0, got %g", op, a->scale_factor);
            out_hw[d] = (int64_t)floor((double)x->shape[2 + d] * a->scale_factor);
        }
    }
    if (out_hw[0] < 1 || out_hw[1] < 1 || x->shape[2] < 1 || x->shape[3] < 1)
        return tg_error(TG_STATUS_VALUE, "%s: input %s and output (%lld, %lld) must have every spatial dim >= 1", op,
                        tg_shape_str(x, buf, sizeof buf), (long long)out_hw[0], (long long)out_hw[1]);
    return TG_STATUS_OK;
}

/* PyTorch's compute_scales_value in float: the given scale's inverse, else in / out. */
static float upsample_scale(const upsample_attrs *a, int64_t in, int64_t out)
{
    return a->scale_factor > 0.0 ? (float)(1.0 / a->scale_factor) : (float)in / (float)out;
}

/* The per-dim tables, laid out in scratch as idx0 [OH + OW], idx1 [OH + OW] (int64),
 * then lambda0 [OH + OW], lambda1 [OH + OW] (float); nearest uses idx0 only. */
static size_t upsample_table_bytes(int64_t out_h, int64_t out_w)
{
    size_t n = (size_t)(out_h + out_w);
    return tg_align64(2 * n * sizeof(int64_t) + 2 * n * sizeof(float));
}

typedef struct upsample_ctx {
    int64_t planes, in_h, in_w, out_h, out_w;
    const float *x;               /* [planes, in_h, in_w] */
    float *y;                     /* [planes, out_h, out_w] */
    const float *gy;              /* [planes, out_h, out_w] */
    float *gx;                    /* [planes, in_h, in_w] (+=) */
    int64_t *idx0, *idx1;         /* [out_h + out_w]: rows first, then columns */
    float *lambda0, *lambda1;     /* [out_h + out_w] */
} upsample_ctx;

static tg_status upsample_context(upsample_ctx *c, const tg_op_io *io, const char *op)
{
    int64_t out_hw[2];
    TG_TRY(upsample_output_size(io->in[0], io->attrs, op, out_hw));
    const tg_tensor *x = io->in[0];
    memset(c, 0, sizeof *c);
    c->planes = x->shape[0] * x->shape[1];
    c->in_h = x->shape[2];
    c->in_w = x->shape[3];
    c->out_h = out_hw[0];
    c->out_w = out_hw[1];
    int64_t n = c->out_h + c->out_w;
    c->idx0 = io->scratch;
    c->idx1 = c->idx0 + n;
    c->lambda0 = (float *)(c->idx1 + n);
    c->lambda1 = c->lambda0 + n;
    c->x = x->data;
    c->y = io->out->data;
    if (io->grad_out) {
        c->gy = io->grad_out->data;
        c->gx = io->grad_in[0] ? io->grad_in[0]->data : NULL;
    }
    return TG_STATUS_OK;
}

static tg_status upsample_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                tg_op_sizes *sizes, const char *op)
{
    (void)n_in;
    int64_t out_hw[2];
    TG_TRY(upsample_output_size(in[0], attrs, op, out_hw));
    sizes->scratch_forward = sizes->scratch_backward = upsample_table_bytes(out_hw[0], out_hw[1]);
    int64_t shape[4] = {in[0]->shape[0], in[0]->shape[1], out_hw[0], out_hw[1]};
    return tg_tensor_set_shape(out, TG_DTYPE_F32, 4, shape);
}

/* ---- ONNX: Resize with interpolate's coordinate rules ----
 * A scale_factor becomes Resize's scales (the same factor maps coordinates, and
 * floor(in * scale) is the output size in both); a size becomes Resize's sizes,
 * built as Concat(Shape(x)[0:2], [H, W]) so that the batch stays dynamic. */
static tg_status upsample_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n, const tg_onnx_attr *attrs, int n_attrs)
{
    const upsample_attrs *a = n->attrs;
    const char *inputs[4] = {n->input[0], "", "", ""};
    if (a->scale_factor > 0.0) {
        const float scales[4] = {1.0f, 1.0f, (float)a->scale_factor, (float)a->scale_factor};
        TG_TRY(tg_onnx_const_float32(e, n->output, 4, scales, &inputs[2]));
        return tg_onnx_node(e, "Resize", inputs, 3, n->output, attrs, n_attrs);
    }
    static const int64_t zero = 0, two = 2;
    const char *shape, *starts, *ends, *leading, *size, *sizes;
    TG_TRY(tg_onnx_temp_name(e, n->output, &shape));
    TG_TRY(tg_onnx_node(e, "Shape", &n->input[0], 1, shape, NULL, 0));
    TG_TRY(tg_onnx_const_i64(e, n->output, 1, &zero, &starts));
    TG_TRY(tg_onnx_const_i64(e, n->output, 1, &two, &ends));
    TG_TRY(tg_onnx_temp_name(e, n->output, &leading));
    const char *slice[3] = {shape, starts, ends};
    TG_TRY(tg_onnx_node(e, "Slice", slice, 3, leading, NULL, 0));
    TG_TRY(tg_onnx_const_i64(e, n->output, 2, &n->out->shape[2], &size));
    TG_TRY(tg_onnx_temp_name(e, n->output, &sizes));
    const char *parts[2] = {leading, size};
    tg_onnx_attr axis = tg_onnx_attr_int("axis", 0);
    TG_TRY(tg_onnx_node(e, "Concat", parts, 2, sizes, &axis, 1));
    inputs[3] = sizes;
    return tg_onnx_node(e, "Resize", inputs, 4, n->output, attrs, n_attrs);
}

/* ---- upsample_nearest: src = min(floor(dst * scale), in - 1) ---- */

/* PyTorch's nearest_idx, including its exact shortcuts for out == in and out == 2 * in. */
static void nearest_table(int64_t *idx, int64_t in, int64_t out, float scale)
{
    for (int64_t o = 0; o < out; o++) {
        int64_t src;
        if (out == in) src = o;
        else if (out == 2 * in) src = o >> 1;
        else src = (int64_t)floorf((float)o * scale);
        idx[o] = src < in - 1 ? src : in - 1;
    }
}

static void nearest_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const upsample_ctx *c = arg;
    const int64_t *restrict col = c->idx0 + c->out_h;
    for (int64_t r = begin; r < end; r++) {   /* r = plane * out_h + oh */
        int64_t p = r / c->out_h, oh = r % c->out_h;
        const float *restrict x = c->x + (p * c->in_h + c->idx0[oh]) * c->in_w;
        float *restrict y = c->y + r * c->out_w;
        for (int64_t ow = 0; ow < c->out_w; ow++) y[ow] = x[col[ow]];
    }
}

static void nearest_backward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const upsample_ctx *c = arg;
    const int64_t *restrict col = c->idx0 + c->out_h;
    for (int64_t p = begin; p < end; p++)
        for (int64_t oh = 0; oh < c->out_h; oh++) {
            float *restrict gx = c->gx + (p * c->in_h + c->idx0[oh]) * c->in_w;
            const float *restrict gy = c->gy + (p * c->out_h + oh) * c->out_w;
            for (int64_t ow = 0; ow < c->out_w; ow++) gx[col[ow]] += gy[ow];
        }
}

static tg_status upsample_nearest_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                        tg_op_sizes *sizes)
{
    return upsample_infer(in, n_in, attrs, out, sizes, "upsample_nearest");
}

static tg_status upsample_nearest_prepare(upsample_ctx *c, const tg_op_io *io)
{
    TG_TRY(upsample_context(c, io, "upsample_nearest"));
    nearest_table(c->idx0, c->in_h, c->out_h, upsample_scale(io->attrs, c->in_h, c->out_h));
    nearest_table(c->idx0 + c->out_h, c->in_w, c->out_w, upsample_scale(io->attrs, c->in_w, c->out_w));
    return TG_STATUS_OK;
}

static tg_status upsample_nearest_forward(const tg_op_io *io)
{
    upsample_ctx c;
    TG_TRY(upsample_nearest_prepare(&c, io));
    int64_t grain = 16384 / c.out_w + 1;
    tg_parallel_for(c.planes * c.out_h, grain, nearest_forward_range, &c);
    return TG_STATUS_OK;
}

static tg_status upsample_nearest_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    upsample_ctx c;
    TG_TRY(upsample_nearest_prepare(&c, io));
    int64_t grain = 16384 / (c.out_h * c.out_w) + 1;
    tg_parallel_for(c.planes, grain, nearest_backward_range, &c);
    return TG_STATUS_OK;
}

/* interpolate's 'nearest' is ONNX's asymmetric coordinates rounded down. */
static tg_status upsample_nearest_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    tg_onnx_attr attrs[3] = {
        tg_onnx_attr_string("mode", "nearest"), tg_onnx_attr_string("coordinate_transformation_mode", "asymmetric"),
        tg_onnx_attr_string("nearest_mode", "floor"),
    };
    return upsample_onnx(e, n, attrs, 3);
}

const tg_op_def tg_op_upsample_nearest = {
    .name = "upsample_nearest", .input_names = upsample_inputs,
    .attr_specs = upsample_nearest_attr_specs, .n_attrs = 2, .attrs_size = sizeof(upsample_attrs),
    .infer = upsample_nearest_infer, .forward = upsample_nearest_forward, .backward = upsample_nearest_backward,
    .onnx = upsample_nearest_onnx,
};

/* ---- upsample_bilinear ---- */

/* PyTorch's compute_source_index_and_lambda (float math), for one dim. */
static void bilinear_table(int64_t *idx0, int64_t *idx1, float *lambda0, float *lambda1, int64_t in, int64_t out,
                           const upsample_attrs *a)
{
    float scale;
    if (a->align_corners) scale = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    else scale = upsample_scale(a, in, out);
    for (int64_t o = 0; o < out; o++) {
        if (out == in) {
            idx0[o] = idx1[o] = o;
            lambda0[o] = 1.0f;
            lambda1[o] = 0.0f;
            continue;
        }
        float real;
        if (a->align_corners) {
            real = scale * (float)o;
        } else {
            real = scale * ((float)o + 0.5f) - 0.5f;
            if (real < 0.0f) real = 0.0f;
        }
        int64_t i0 = (int64_t)floorf(real);
        if (i0 > in - 1) i0 = in - 1;
        float l1 = real - (float)i0;
        l1 = l1 < 0.0f ? 0.0f : (l1 > 1.0f ? 1.0f : l1);
        idx0[o] = i0;
        idx1[o] = i0 + (i0 < in - 1 ? 1 : 0);
        lambda1[o] = l1;
        lambda0[o] = 1.0f - l1;
    }
}

static tg_status upsample_bilinear_prepare(upsample_ctx *c, const tg_op_io *io)
{
    TG_TRY(upsample_context(c, io, "upsample_bilinear"));
    const upsample_attrs *a = io->attrs;
    bilinear_table(c->idx0, c->idx1, c->lambda0, c->lambda1, c->in_h, c->out_h, a);
    int64_t h = c->out_h;
    bilinear_table(c->idx0 + h, c->idx1 + h, c->lambda0 + h, c->lambda1 + h, c->in_w, c->out_w, a);
    return TG_STATUS_OK;
}

/* NOTE: the arithmetic order is PyTorch's: interpolate along W inside, then along H. */
static void bilinear_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const upsample_ctx *c = arg;
    const int64_t h = c->out_h;
    const int64_t *restrict c0 = c->idx0 + h, *restrict c1 = c->idx1 + h;
    const float *restrict cl0 = c->lambda0 + h, *restrict cl1 = c->lambda1 + h;
    for (int64_t r = begin; r < end; r++) {   /* r = plane * out_h + oh */
        int64_t p = r / h, oh = r % h;
        const float *restrict x0 = c->x + (p * c->in_h + c->idx0[oh]) * c->in_w;
        const float *restrict x1 = c->x + (p * c->in_h + c->idx1[oh]) * c->in_w;
        float h0 = c->lambda0[oh], h1 = c->lambda1[oh];
        float *restrict y = c->y + r * c->out_w;
        for (int64_t ow = 0; ow < c->out_w; ow++) {
            float t0 = x0[c0[ow]] * cl0[ow] + x0[c1[ow]] * cl1[ow];
            float t1 = x1[c0[ow]] * cl0[ow] + x1[c1[ow]] * cl1[ow];
            y[ow] = t0 * h0 + t1 * h1;
        }
    }
}

static void bilinear_backward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const upsample_ctx *c = arg;
    const int64_t h = c->out_h;
    const int64_t *restrict c0 = c->idx0 + h, *restrict c1 = c->idx1 + h;
    const float *restrict cl0 = c->lambda0 + h, *restrict cl1 = c->lambda1 + h;
    for (int64_t p = begin; p < end; p++)
        for (int64_t oh = 0; oh < h; oh++) {
            float *gx0 = c->gx + (p * c->in_h + c->idx0[oh]) * c->in_w;
            float *gx1 = c->gx + (p * c->in_h + c->idx1[oh]) * c->in_w;
            float h0 = c->lambda0[oh], h1 = c->lambda1[oh];
            const float *restrict gy = c->gy + (p * h + oh) * c->out_w;
            for (int64_t ow = 0; ow < c->out_w; ow++) {
                float g = gy[ow];
                gx0[c0[ow]] += h0 * cl0[ow] * g;
                gx0[c1[ow]] += h0 * cl1[ow] * g;
                gx1[c0[ow]] += h1 * cl0[ow] * g;
                gx1[c1[ow]] += h1 * cl1[ow] * g;
            }
        }
}

static tg_status upsample_bilinear_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                         tg_op_sizes *sizes)
{
    return upsample_infer(in, n_in, attrs, out, sizes, "upsample_bilinear");
}

static tg_status upsample_bilinear_forward(const tg_op_io *io)
{
    upsample_ctx c;
    TG_TRY(upsample_bilinear_prepare(&c, io));
    int64_t grain = 8192 / c.out_w + 1;
    tg_parallel_for(c.planes * c.out_h, grain, bilinear_forward_range, &c);
    return TG_STATUS_OK;
}

static tg_status upsample_bilinear_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    upsample_ctx c;
    TG_TRY(upsample_bilinear_prepare(&c, io));
    int64_t grain = 8192 / (c.out_h * c.out_w) + 1;
    tg_parallel_for(c.planes, grain, bilinear_backward_range, &c);
    return TG_STATUS_OK;
}

/* NOTE: 'pytorch_half_pixel' is half_pixel except for an output of size 1, where it
 * samples index 0 as interpolate does; both clamp negative coordinates to 0. */
static tg_status upsample_bilinear_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    int align_corners = ((const upsample_attrs *)n->attrs)->align_corners;
    tg_onnx_attr attrs[2] = {
        tg_onnx_attr_string("mode", "linear"),
        tg_onnx_attr_string("coordinate_transformation_mode", align_corners ? "align_corners" : "pytorch_half_pixel"),
    };
    return upsample_onnx(e, n, attrs, 2);
}

const tg_op_def tg_op_upsample_bilinear = {
    .name = "upsample_bilinear", .input_names = upsample_inputs,
    .attr_specs = upsample_bilinear_attr_specs, .n_attrs = 3, .attrs_size = sizeof(upsample_attrs),
    .infer = upsample_bilinear_infer, .forward = upsample_bilinear_forward, .backward = upsample_bilinear_backward,
    .onnx = upsample_bilinear_onnx,
};
