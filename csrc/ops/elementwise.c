/* elementwise.c: float32 activations (relu, leaky_relu, silu, gelu, sigmoid, tanh,
 * hardswish, hardsigmoid), softmax and log_softmax along a dim, and dropout.
 *
 * Each activation is a pair of loops (forward, then backward right after it) over
 * contiguous rows, compiled for AVX-512 and portably (TG_SIMD_FUNCTION), with
 * exp/tanh/erfc from vmath.h so that the loops vectorize; ACTIVATION_OP turns the
 * pair into an op, with its ONNX mapping (op_onnx). Not here: broadcasting arithmetic (arith.c), sum/mean (reduce.c). */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "../export/onnx.h"
#include "op.h"
#include "reduce.h"
#include "vmath.h"

static const char *const unary_inputs[] = {"x", NULL};

#define TG_ELEMENTWISE_GRAIN 16384

/* ---- the activation driver ---- */

/* y[i] = f(x[i]) for i < n. NOTE: x and y are not restrict: an in-place step runs with
 * y == x (each y[i] is written after x[i] is read, never read again). */
typedef void (*activation_forward_fn)(const float *x, float *y, int64_t n, const void *attrs);
/* gx[i] += gy[i] * f'(x[i]); y is the forward's output. */
typedef void (*activation_backward_fn)(const float *restrict x, const float *restrict y, const float *restrict gy,
                                       float *restrict gx, int64_t n, const void *attrs);

#define FORWARD_PARAMS (const float *x, float *y, int64_t n, const void *attrs)
#define FORWARD_ARGS (x, y, n, attrs)
#define BACKWARD_PARAMS \
    (const float *restrict x, const float *restrict y, const float *restrict gy, float *restrict gx, int64_t n, \
     const void *attrs)
#define BACKWARD_ARGS (x, y, gy, gx, n, attrs)

/* Elements a fresh gradient is zeroed by before its loop adds into them: small enough
 * that the zeros are still in L1 when the loop reads them. */
#define TG_FRESH_BLOCK 2048

typedef struct activation_ctx {
    activation_forward_fn forward;
    activation_backward_fn backward;
    const float *x, *y, *gy;   /* [n] */
    float *out;                /* [n]: y in forward, gx in backward */
    const void *attrs;
    int fresh;                 /* backward: gx holds garbage; write it */
} activation_ctx;

static tg_status activation_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                  tg_op_sizes *sizes)
{
    (void)n_in; (void)attrs; (void)sizes;
    TG_TRY(tg_check_dtype(in[0], TG_DTYPE_F32, "activation", "x"));
    return tg_tensor_set_shape(out, TG_DTYPE_F32, in[0]->ndim, in[0]->shape);
}

static void activation_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const activation_ctx *c = arg;
    c->forward(c->x + begin, c->out + begin, end - begin, c->attrs);
}

static tg_status activation_forward(const tg_op_io *io, activation_forward_fn fn)
{
    activation_ctx c = {.forward = fn, .x = io->in[0]->data, .out = io->out->data, .attrs = io->attrs};
    tg_parallel_for(tg_tensor_numel(io->out), TG_ELEMENTWISE_GRAIN, activation_forward_range, &c);
    return TG_STATUS_OK;
}

static void activation_backward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const activation_ctx *c = arg;
    if (!c->fresh) {
        c->backward(c->x + begin, c->y + begin, c->gy + begin, c->out + begin, end - begin, c->attrs);
        return;
    }
    /* NOTE: zeroing each block just before adding into it gives exactly the bits of
     * zero-then-accumulate (0 + v, so -0 becomes +0) without a pass over memory. */
    for (int64_t i = begin; i < end; i += TG_FRESH_BLOCK) {
        int64_t n = end - i < TG_FRESH_BLOCK ? end - i : TG_FRESH_BLOCK;
        memset(c->out + i, 0, (size_t)n * sizeof(float));
        c->backward(c->x + i, c->y + i, c->gy + i, c->out + i, n, c->attrs);
    }
}

static tg_status activation_backward(const tg_op_io *io, activation_backward_fn fn)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    activation_ctx c = {.backward = fn, .x = io->in[0]->data, .y = io->out->data, .gy = io->grad_out->data,
                        .out = io->grad_in[0]->data, .attrs = io->attrs, .fresh = (int)(io->grad_in_fresh & 1u)};
    tg_parallel_for(tg_tensor_numel(io->out), TG_ELEMENTWISE_GRAIN, activation_backward_range, &c);
    return TG_STATUS_OK;
}

/* What an activation's backward reads, for the memory plan: its input x, or only its
 * output y (then it may run in place: y overwrites x). */
#define ACTIVATION_READS_INPUT .backward_skips_output = 1
#define ACTIVATION_READS_OUTPUT .backward_skips_inputs = 1, .forward_in_place = 1

/* Defines tg_op_<op> from op_forward_rows, op_backward_rows and op_onnx. */
#define ACTIVATION_OP(op, specs, n_specs, attrs_bytes, reads)                                               \
    static tg_status op##_forward(const tg_op_io *io) { return activation_forward(io, op##_forward_rows); }   \
    static tg_status op##_backward(const tg_op_io *io) { return activation_backward(io, op##_backward_rows); } \
    const tg_op_def tg_op_##op = {                                                                          \
        .name = #op, .input_names = unary_inputs,                                                           \
        .attr_specs = specs, .n_attrs = n_specs, .attrs_size = attrs_bytes,                                 \
        .infer = activation_infer, .forward = op##_forward, .backward = op##_backward,                      \
        .onnx = op##_onnx, reads, .backward_writes_fresh = 1,                                               \
    }

/* ---- relu: y = max(x, 0) ---- */

TG_SIMD_FUNCTION(relu_forward_rows, FORWARD_PARAMS, FORWARD_ARGS)
{
    (void)attrs;
    /* NOTE: "x < 0 ? 0 : x", not "x > 0 ? x : 0": a NaN passes through, as in PyTorch */
    for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

/* NOTE: reads y, not x (y > 0 exactly where x > 0, NaN and -0 included), so that relu
 * can run in place. */
TG_SIMD_FUNCTION(relu_backward_rows, BACKWARD_PARAMS, BACKWARD_ARGS)
{
    (void)x; (void)attrs;
    for (int64_t i = 0; i < n; i++) gx[i] += y[i] > 0.0f ? gy[i] : 0.0f;
}

static tg_status relu_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    return tg_onnx_unary(e, n, "Relu", NULL, 0);
}

ACTIVATION_OP(relu, NULL, 0, 0, ACTIVATION_READS_OUTPUT);

/* ---- leaky_relu: y = x > 0 ? x : negative_slope * x ---- */

typedef struct leaky_relu_attrs {
    double negative_slope;
} leaky_relu_attrs;

static const tg_attr_spec leaky_relu_attr_specs[] = {
    {"negative_slope", TG_ATTR_KIND_FLOAT, offsetof(leaky_relu_attrs, negative_slope), 0.01, 0},
};

TG_SIMD_FUNCTION(leaky_relu_forward_rows, FORWARD_PARAMS, FORWARD_ARGS)
{
    const float slope = (float)((const leaky_relu_attrs *)attrs)->negative_slope;
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
}

TG_SIMD_FUNCTION(leaky_relu_backward_rows, BACKWARD_PARAMS, BACKWARD_ARGS)
{
    (void)y;
    const float slope = (float)((const leaky_relu_attrs *)attrs)->negative_slope;
    for (int64_t i = 0; i < n; i++) gx[i] += x[i] > 0.0f ? gy[i] : gy[i] * slope;
}

static tg_status leaky_relu_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    tg_onnx_attr alpha = tg_onnx_attr_float("alpha", ((const leaky_relu_attrs *)n->attrs)->negative_slope);
    return tg_onnx_unary(e, n, "LeakyRelu", &alpha, 1);
}

ACTIVATION_OP(leaky_relu, leaky_relu_attr_specs, 1, sizeof(leaky_relu_attrs), ACTIVATION_READS_INPUT);

/* ---- sigmoid: y = 1 / (1 + e^-x) ---- */

TG_SIMD_FUNCTION(sigmoid_forward_rows, FORWARD_PARAMS, FORWARD_ARGS)
{
    (void)attrs;
    for (int64_t i = 0; i < n; i++) y[i] = tg_vsigmoidf(x[i]);
}

TG_SIMD_FUNCTION(sigmoid_backward_rows, BACKWARD_PARAMS, BACKWARD_ARGS)
{
    (void)x; (void)attrs;
    for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * (1.0f - y[i]) * y[i];
}

static tg_status sigmoid_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    return tg_onnx_unary(e, n, "Sigmoid", NULL, 0);
}

ACTIVATION_OP(sigmoid, NULL, 0, 0, ACTIVATION_READS_OUTPUT);

/* ---- tanh ---- */

TG_SIMD_FUNCTION(tanh_forward_rows, FORWARD_PARAMS, FORWARD_ARGS)
{
    (void)attrs;
    for (int64_t i = 0; i < n; i++) y[i] = tg_vtanhf(x[i]);
}

TG_SIMD_FUNCTION(tanh_backward_rows, BACKWARD_PARAMS, BACKWARD_ARGS)
{
    (void)x; (void)attrs;
    for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * (1.0f - y[i] * y[i]);
}

static tg_status tanh_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    return tg_onnx_unary(e, n, "Tanh", NULL, 0);
}

ACTIVATION_OP(tanh, NULL, 0, 0, ACTIVATION_READS_OUTPUT);

/* ---- silu: y = x * sigmoid(x) ---- */

TG_SIMD_FUNCTION(silu_forward_rows, FORWARD_PARAMS, FORWARD_ARGS)
{
    (void)attrs;
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * tg_vsigmoidf(x[i]);
}

TG_SIMD_FUNCTION(silu_backward_rows, BACKWARD_PARAMS, BACKWARD_ARGS)
{
    (void)y; (void)attrs;
    for (int64_t i = 0; i < n; i++) {
        float s = tg_vsigmoidf(x[i]);
        gx[i] += gy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

/* x * Sigmoid(x): opset 17 has no SiLU. */
static tg_status silu_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const char *s;
    TG_TRY(tg_onnx_temp_name(e, n->output, &s));
    TG_TRY(tg_onnx_node(e, "Sigmoid", &n->input[0], 1, s, NULL, 0));
    const char *product[2] = {n->input[0], s};
    return tg_onnx_node(e, "Mul", product, 2, n->output, NULL, 0);
}

ACTIVATION_OP(silu, NULL, 0, 0, ACTIVATION_READS_INPUT);

/* ---- gelu: y = x * Phi(x), or with approximate: x * sigmoid(2u),
 *      u = sqrt(2/pi) (x + 0.044715 x^3), which equals PyTorch's 0.5 x (1 + tanh u)
 *      without its cancellation for negative x ---- */

typedef struct gelu_attrs {
    int approximate;   /* 1: PyTorch's approximate='tanh'; 0: 'none' (the exact erf form) */
} gelu_attrs;

static const tg_attr_spec gelu_attr_specs[] = {
    {"approximate", TG_ATTR_KIND_BOOL, offsetof(gelu_attrs, approximate), 0, 0},
};

#define GELU_BETA 0.7978845608028654f   /* sqrt(2 / pi) */
#define GELU_KAPPA 0.044715f
#define GELU_INV_SQRT_2PI 0.3989422804014327f

TG_SIMD_FUNCTION(gelu_forward_rows, FORWARD_PARAMS, FORWARD_ARGS)
{
    if (((const gelu_attrs *)attrs)->approximate) {
        for (int64_t i = 0; i < n; i++) {
            float u = GELU_BETA * (x[i] + GELU_KAPPA * x[i] * x[i] * x[i]);
            y[i] = x[i] * tg_vsigmoidf(2.0f * u);
        }
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * tg_vnormal_cdf(x[i]);
    }
}

TG_SIMD_FUNCTION(gelu_backward_rows, BACKWARD_PARAMS, BACKWARD_ARGS)
{
    (void)y;
    if (((const gelu_attrs *)attrs)->approximate) {
        for (int64_t i = 0; i < n; i++) {
            float x2 = x[i] * x[i];
            float u = GELU_BETA * (x[i] + GELU_KAPPA * x2 * x[i]);
            float du = GELU_BETA * (1.0f + 3.0f * GELU_KAPPA * x2);
            float s = tg_vsigmoidf(2.0f * u);
            gx[i] += gy[i] * (s + 2.0f * x[i] * s * (1.0f - s) * du);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float pdf = GELU_INV_SQRT_2PI * tg_vexpf(-0.5f * x[i] * x[i]);
            gx[i] += gy[i] * (tg_vnormal_cdf(x[i]) + x[i] * pdf);
        }
    }
}

/* Opset 17 has no Gelu: exact: x * 0.5 * (1 + Erf(x / sqrt 2));
 * approximate: 0.5 x (1 + Tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
static tg_status gelu_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const char *x = n->input[0], *inner, *curve, *one, *half, *shifted, *halved;
    if (((const gelu_attrs *)n->attrs)->approximate) {
        const char *kappa, *beta, *x2, *x3, *kx3, *sum;
        TG_TRY(tg_onnx_const_scalar(e, n->output, GELU_KAPPA, &kappa));
        TG_TRY(tg_onnx_const_scalar(e, n->output, GELU_BETA, &beta));
        TG_TRY(tg_onnx_temp_name(e, n->output, &x2));
        TG_TRY(tg_onnx_temp_name(e, n->output, &x3));
        TG_TRY(tg_onnx_temp_name(e, n->output, &kx3));
        TG_TRY(tg_onnx_temp_name(e, n->output, &sum));
        TG_TRY(tg_onnx_temp_name(e, n->output, &inner));
        const char *xx[2] = {x, x}, *x2x[2] = {x2, x}, *kx[2] = {x3, kappa}, *s[2] = {x, kx3}, *b[2] = {sum, beta};
        TG_TRY(tg_onnx_node(e, "Mul", xx, 2, x2, NULL, 0));
        TG_TRY(tg_onnx_node(e, "Mul", x2x, 2, x3, NULL, 0));
        TG_TRY(tg_onnx_node(e, "Mul", kx, 2, kx3, NULL, 0));
        TG_TRY(tg_onnx_node(e, "Add", s, 2, sum, NULL, 0));
        TG_TRY(tg_onnx_node(e, "Mul", b, 2, inner, NULL, 0));
        TG_TRY(tg_onnx_temp_name(e, n->output, &curve));
        TG_TRY(tg_onnx_node(e, "Tanh", &inner, 1, curve, NULL, 0));
    } else {
        const char *root2;
        TG_TRY(tg_onnx_const_scalar(e, n->output, 1.4142135623730951f, &root2));
        TG_TRY(tg_onnx_temp_name(e, n->output, &inner));
        const char *d[2] = {x, root2};
        TG_TRY(tg_onnx_node(e, "Div", d, 2, inner, NULL, 0));
        TG_TRY(tg_onnx_temp_name(e, n->output, &curve));
        TG_TRY(tg_onnx_node(e, "Erf", &inner, 1, curve, NULL, 0));
    }
    TG_TRY(tg_onnx_const_scalar(e, n->output, 1.0f, &one));
    TG_TRY(tg_onnx_const_scalar(e, n->output, 0.5f, &half));
    TG_TRY(tg_onnx_temp_name(e, n->output, &shifted));
    TG_TRY(tg_onnx_temp_name(e, n->output, &halved));
    const char *a[2] = {curve, one}, *h[2] = {x, half}, *m[2] = {halved, shifted};
    TG_TRY(tg_onnx_node(e, "Add", a, 2, shifted, NULL, 0));
    TG_TRY(tg_onnx_node(e, "Mul", h, 2, halved, NULL, 0));
    return tg_onnx_node(e, "Mul", m, 2, n->output, NULL, 0);
}

ACTIVATION_OP(gelu, gelu_attr_specs, 1, sizeof(gelu_attrs), ACTIVATION_READS_INPUT);

/* ---- hardswish: y = x * clamp(x + 3, 0, 6) / 6 ---- */

TG_SIMD_FUNCTION(hardswish_forward_rows, FORWARD_PARAMS, FORWARD_ARGS)
{
    (void)attrs;
    for (int64_t i = 0; i < n; i++) {
        float r = x[i] + 3.0f;
        r = r < 0.0f ? 0.0f : r;
        r = r > 6.0f ? 6.0f : r;
        y[i] = x[i] * r / 6.0f;
    }
}

/* NOTE: PyTorch's choice at the kinks: slope 0 up to -3, (x / 3 + 1/2) on (-3, 3), 1 from 3. */
TG_SIMD_FUNCTION(hardswish_backward_rows, BACKWARD_PARAMS, BACKWARD_ARGS)
{
    (void)y; (void)attrs;
    for (int64_t i = 0; i < n; i++) {
        float slope = x[i] <= -3.0f ? 0.0f : (x[i] < 3.0f ? x[i] / 3.0f + 0.5f : 1.0f);
        gx[i] += gy[i] * slope;
    }
}

static tg_status hardswish_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    return tg_onnx_unary(e, n, "HardSwish", NULL, 0);
}

ACTIVATION_OP(hardswish, NULL, 0, 0, ACTIVATION_READS_INPUT);

/* ---- hardsigmoid: y = clamp(x / 6 + 1/2, 0, 1) ---- */

TG_SIMD_FUNCTION(hardsigmoid_forward_rows, FORWARD_PARAMS, FORWARD_ARGS)
{
    (void)attrs;
    for (int64_t i = 0; i < n; i++) {
        float r = (x[i] + 3.0f) / 6.0f;
        r = r < 0.0f ? 0.0f : r;
        y[i] = r > 1.0f ? 1.0f : r;
    }
}

TG_SIMD_FUNCTION(hardsigmoid_backward_rows, BACKWARD_PARAMS, BACKWARD_ARGS)
{
    (void)y; (void)attrs;
    for (int64_t i = 0; i < n; i++) gx[i] += x[i] > -3.0f && x[i] < 3.0f ? gy[i] / 6.0f : 0.0f;
}

static tg_status hardsigmoid_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    tg_onnx_attr attrs[2] = {tg_onnx_attr_float("alpha", 1.0 / 6.0), tg_onnx_attr_float("beta", 0.5)};
    return tg_onnx_unary(e, n, "HardSigmoid", attrs, 2);
}

ACTIVATION_OP(hardsigmoid, NULL, 0, 0, ACTIVATION_READS_INPUT);

/* ---- softmax and log_softmax along a dim ----
 * The input is seen as [outer, D, inner]. With inner == 1 each row of D is
 * contiguous; otherwise a unit is a block of up to 64 columns of one outer index,
 * processed with the columns as the vector lanes. Each row is reduced by one
 * thread in a fixed order. NOTE: numerically stable: the row max is subtracted
 * before exp. */

#define SOFTMAX_LANES 16
#define SOFTMAX_COLUMNS 64

typedef struct softmax_attrs {
    int64_t dim;   /* negative counts from the end */
} softmax_attrs;

static const tg_attr_spec softmax_attr_specs[] = {
    {"dim", TG_ATTR_KIND_INT, offsetof(softmax_attrs, dim), -1, 0},
};

typedef struct softmax_ctx {
    int log;                  /* 1: log_softmax */
    int64_t outer, d, inner;
    const float *x, *y, *gy;  /* [outer, d, inner] */
    float *out;               /* [outer, d, inner]: y in forward, gx in backward (+=) */
} softmax_ctx;

static tg_status softmax_shape(const tg_tensor *x, const softmax_attrs *a, const char *op, softmax_ctx *c)
{
    int rank = x->ndim > 0 ? x->ndim : 1;
    if (a->dim < -rank || a->dim >= rank) {
        char buf[96];
        return tg_error(TG_STATUS_VALUE, "%s: dim %lld is out of range for shape %s; use -%d to %d", op,
                        (long long)a->dim, tg_shape_str(x, buf, sizeof buf), rank, rank - 1);
    }
    int dim = (int)(a->dim < 0 ? a->dim + rank : a->dim);
    c->outer = c->d = c->inner = 1;
    for (int i = 0; i < x->ndim; i++) {
        if (i < dim) c->outer *= x->shape[i];
        else if (i == dim) c->d = x->shape[i];
        else c->inner *= x->shape[i];
    }
    return TG_STATUS_OK;
}

static tg_status softmax_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                               tg_op_sizes *sizes)
{
    (void)n_in; (void)sizes;
    softmax_ctx c;
    TG_TRY(tg_check_dtype(in[0], TG_DTYPE_F32, "softmax", "x"));
    TG_TRY(softmax_shape(in[0], attrs, "softmax", &c));
    return tg_tensor_set_shape(out, TG_DTYPE_F32, in[0]->ndim, in[0]->shape);
}

/* *result = max of x[0..n), n >= 1. */
TG_SIMD_FUNCTION(row_max, (const float *restrict x, int64_t n, float *restrict result), (x, n, result))
{
    float lane[SOFTMAX_LANES];
    for (int k = 0; k < SOFTMAX_LANES; k++) lane[k] = x[0];
    int64_t i = 0;
    for (; i + SOFTMAX_LANES <= n; i += SOFTMAX_LANES)
        for (int k = 0; k < SOFTMAX_LANES; k++) lane[k] = x[i + k] > lane[k] ? x[i + k] : lane[k];
    for (int k = 0; i + k < n; k++) lane[k] = x[i + k] > lane[k] ? x[i + k] : lane[k];
    float m = lane[0];
    for (int k = 1; k < SOFTMAX_LANES; k++) m = lane[k] > m ? lane[k] : m;
    *result = m;
}

/* y = e^(x - shift). */
TG_SIMD_FUNCTION(row_exp_shifted, (const float *restrict x, float shift, float *restrict y, int64_t n),
                 (x, shift, y, n))
{
    for (int64_t i = 0; i < n; i++) y[i] = tg_vexpf(x[i] - shift);
}

/* y = x * scale + shift (y may be x). */
TG_SIMD_FUNCTION(row_affine, (float *y, const float *x, float scale, float shift, int64_t n),
                 (y, x, scale, shift, n))
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale + shift;
}

/* *result = sum of a[i] * b[i], in 16 lanes. */
TG_SIMD_FUNCTION(row_dot, (const float *restrict a, const float *restrict b, int64_t n, float *restrict result),
                 (a, b, n, result))
{
    float lane[SOFTMAX_LANES] = {0};
    int64_t i = 0;
    for (; i + SOFTMAX_LANES <= n; i += SOFTMAX_LANES)
        for (int k = 0; k < SOFTMAX_LANES; k++) lane[k] += a[i + k] * b[i + k];
    for (int k = 0; i + k < n; k++) lane[k] += a[i + k] * b[i + k];
    for (int width = SOFTMAX_LANES / 2; width >= 1; width /= 2)
        for (int k = 0; k < width; k++) lane[k] += lane[k + width];
    *result = lane[0];
}

/* softmax: gx += y * (gy - sum(gy * y)); log_softmax: gx += gy - e^y * sum(gy). */
TG_SIMD_FUNCTION(row_softmax_grad,
                 (int log, const float *restrict y, const float *restrict gy, float total, float *restrict gx,
                  int64_t n),
                 (log, y, gy, total, gx, n))
{
    if (log) for (int64_t i = 0; i < n; i++) gx[i] += gy[i] - tg_vexpf(y[i]) * total;
    else for (int64_t i = 0; i < n; i++) gx[i] += y[i] * (gy[i] - total);
}

static void softmax_rows_forward(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const softmax_ctx *c = arg;
    for (int64_t r = begin; r < end; r++) {
        const float *x = c->x + r * c->d;
        float *y = c->out + r * c->d; /* [d] */
        float m;
        row_max(x, c->d, &m);
        row_exp_shifted(x, m, y, c->d);
        float total = tg_sum_contiguous(y, c->d);
        if (c->log) row_affine(y, x, 1.0f, -m - logf(total), c->d);
        else row_affine(y, y, 1.0f / total, 0.0f, c->d);
    }
}

static void softmax_rows_backward(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const softmax_ctx *c = arg;
    for (int64_t r = begin; r < end; r++) {
        const float *y = c->y + r * c->d, *gy = c->gy + r * c->d; /* [d] */
        float total;
        if (c->log) total = tg_sum_contiguous(gy, c->d);
        else row_dot(gy, y, c->d, &total);
        row_softmax_grad(c->log, y, gy, total, c->out + r * c->d, c->d);
    }
}

/* Columns [col, col + w) of outer index o: the reductions run down dim D with the
 * w columns as lanes. */
TG_SIMD_FUNCTION(columns_forward,
                 (int log, const float *restrict x, float *restrict y, int64_t d, int64_t inner, int64_t w),
                 (log, x, y, d, inner, w))
{
    float m[SOFTMAX_COLUMNS], total[SOFTMAX_COLUMNS];
    for (int64_t k = 0; k < w; k++) { m[k] = x[k]; total[k] = 0.0f; }
    for (int64_t j = 1; j < d; j++)
        for (int64_t k = 0; k < w; k++) m[k] = x[j * inner + k] > m[k] ? x[j * inner + k] : m[k];
    for (int64_t j = 0; j < d; j++)
        for (int64_t k = 0; k < w; k++) {
            float e = tg_vexpf(x[j * inner + k] - m[k]);
            y[j * inner + k] = e;
            total[k] += e;
        }
    if (log) {
        for (int64_t k = 0; k < w; k++) m[k] = -m[k] - logf(total[k]);
        for (int64_t j = 0; j < d; j++)
            for (int64_t k = 0; k < w; k++) y[j * inner + k] = x[j * inner + k] + m[k];
    } else {
        for (int64_t k = 0; k < w; k++) total[k] = 1.0f / total[k];
        for (int64_t j = 0; j < d; j++)
            for (int64_t k = 0; k < w; k++) y[j * inner + k] *= total[k];
    }
}

TG_SIMD_FUNCTION(columns_backward,
                 (int log, const float *restrict y, const float *restrict gy, float *restrict gx, int64_t d,
                  int64_t inner, int64_t w),
                 (log, y, gy, gx, d, inner, w))
{
    float total[SOFTMAX_COLUMNS];
    for (int64_t k = 0; k < w; k++) total[k] = 0.0f;
    for (int64_t j = 0; j < d; j++)
        for (int64_t k = 0; k < w; k++) total[k] += log ? gy[j * inner + k] : gy[j * inner + k] * y[j * inner + k];
    for (int64_t j = 0; j < d; j++)
        for (int64_t k = 0; k < w; k++) {
            int64_t i = j * inner + k;
            gx[i] += log ? gy[i] - tg_vexpf(y[i]) * total[k] : y[i] * (gy[i] - total[k]);
        }
}

static void softmax_columns_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const softmax_ctx *c = arg;
    int64_t blocks = (c->inner + SOFTMAX_COLUMNS - 1) / SOFTMAX_COLUMNS;
    for (int64_t u = begin; u < end; u++) {
        int64_t o = u / blocks, col = (u % blocks) * SOFTMAX_COLUMNS;
        int64_t w = c->inner - col < SOFTMAX_COLUMNS ? c->inner - col : SOFTMAX_COLUMNS;
        int64_t base = o * c->d * c->inner + col;
        if (c->gy) columns_backward(c->log, c->y + base, c->gy + base, c->out + base, c->d, c->inner, w);
        else columns_forward(c->log, c->x + base, c->out + base, c->d, c->inner, w);
    }
}

static void softmax_run(softmax_ctx *c)
{
    if (c->d == 0 || c->outer == 0 || c->inner == 0) return;
    if (c->inner == 1) {
        int64_t grain = TG_ELEMENTWISE_GRAIN / c->d;
        tg_parallel_for(c->outer, grain > 1 ? grain : 1, c->gy ? softmax_rows_backward : softmax_rows_forward, c);
    } else {
        int64_t blocks = (c->inner + SOFTMAX_COLUMNS - 1) / SOFTMAX_COLUMNS;
        int64_t grain = TG_ELEMENTWISE_GRAIN / (c->d * SOFTMAX_COLUMNS);
        tg_parallel_for(c->outer * blocks, grain > 1 ? grain : 1, softmax_columns_range, c);
    }
}

static tg_status softmax_forward_log(const tg_op_io *io, int log)
{
    softmax_ctx c = {.log = log, .x = io->in[0]->data, .out = io->out->data};
    TG_TRY(softmax_shape(io->in[0], io->attrs, io->def->name, &c));
    softmax_run(&c);
    return TG_STATUS_OK;
}

static tg_status softmax_backward_log(const tg_op_io *io, int log)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    softmax_ctx c = {.log = log, .y = io->out->data, .gy = io->grad_out->data, .out = io->grad_in[0]->data};
    TG_TRY(softmax_shape(io->in[0], io->attrs, io->def->name, &c));
    softmax_run(&c);
    return TG_STATUS_OK;
}

static tg_status softmax_forward(const tg_op_io *io) { return softmax_forward_log(io, 0); }

static tg_status softmax_backward(const tg_op_io *io) { return softmax_backward_log(io, 0); }

/* Opset 13+ Softmax normalises along one axis, as PyTorch's dim. */
static tg_status softmax_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    tg_onnx_attr axis = tg_onnx_attr_int("axis", ((const softmax_attrs *)n->attrs)->dim);
    return tg_onnx_unary(e, n, "Softmax", &axis, 1);
}

static tg_status log_softmax_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    tg_onnx_attr axis = tg_onnx_attr_int("axis", ((const softmax_attrs *)n->attrs)->dim);
    return tg_onnx_unary(e, n, "LogSoftmax", &axis, 1);
}

const tg_op_def tg_op_softmax = {
    .name = "softmax", .input_names = unary_inputs,
    .attr_specs = softmax_attr_specs, .n_attrs = 1, .attrs_size = sizeof(softmax_attrs),
    .infer = softmax_infer, .forward = softmax_forward, .backward = softmax_backward, .onnx = softmax_onnx,
};

static tg_status log_softmax_forward(const tg_op_io *io) { return softmax_forward_log(io, 1); }

static tg_status log_softmax_backward(const tg_op_io *io) { return softmax_backward_log(io, 1); }

const tg_op_def tg_op_log_softmax = {
    .name = "log_softmax", .input_names = unary_inputs,
    .attr_specs = softmax_attr_specs, .n_attrs = 1, .attrs_size = sizeof(softmax_attrs),
    .infer = softmax_infer, .forward = log_softmax_forward, .backward = log_softmax_backward,
    .onnx = log_softmax_onnx,
};

/* ---- dropout: in training y = x * mask / (1 - p), mask[i] = 0 with probability p;
 *      in eval y = x ----
 * NOTE: the mask is a counter-based hash of (seed, element index), so it is the same
 * whatever the thread count or chunking; it is kept in aux ([numel] bytes) for
 * backward. */

typedef struct dropout_attrs {
    double p;   /* probability of zeroing an element, in [0, 1] */
} dropout_attrs;

static const tg_attr_spec dropout_attr_specs[] = {
    {"p", TG_ATTR_KIND_FLOAT, offsetof(dropout_attrs, p), 0.5, 0},
};

static tg_status dropout_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                               tg_op_sizes *sizes)
{
    (void)n_in;
    const dropout_attrs *a = attrs;
    TG_TRY(tg_check_dtype(in[0], TG_DTYPE_F32, "dropout", "x"));
    if (!(a->p >= 0.0 && a->p <= 1.0))
        return tg_error(TG_STATUS_VALUE, "dropout: p must be in [0, 1], got %g", a->p);
    sizes->aux_bytes = (size_t)tg_tensor_numel(in[0]); /* [numel] uint8 mask */
    return tg_tensor_set_shape(out, TG_DTYPE_F32, in[0]->ndim, in[0]->shape);
}

static inline uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A bijective 32-bit mixer (Wellons' lowbias32); 32-bit so that it vectorizes. */
TG_INLINE uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

typedef struct dropout_ctx {
    const float *x, *gy;   /* [numel] */
    float *out;            /* [numel]: y in forward (may be x: in place), gx in backward (+=) */
    uint8_t *mask;         /* [numel] */
    int fresh;             /* backward: gx holds garbage; write it */
    uint64_t seed;
    uint32_t threshold;    /* drop when hash < threshold */
    int drop_all;          /* p == 1 */
    float scale;           /* 1 / (1 - p) */
} dropout_ctx;

/* Elements first .. first + n - 1 of one 2^32 block whose key is (key0, key1). */
TG_SIMD_FUNCTION(dropout_rows,
                 (const float *x, float *y, uint8_t *restrict mask, uint32_t first, uint32_t key0,
                  uint32_t key1, uint32_t threshold, int drop_all, float scale, int64_t n),
                 (x, y, mask, first, key0, key1, threshold, drop_all, scale, n))
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t h = mix32(mix32((first + (uint32_t)i) ^ key0) + key1);
        uint8_t keep = (uint8_t)(h >= threshold && !drop_all);
        mask[i] = keep;
        y[i] = keep ? x[i] * scale : 0.0f;
    }
}

static void dropout_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const dropout_ctx *c = arg;
    for (int64_t i = begin; i < end;) {
        uint64_t block = (uint64_t)i >> 32;
        int64_t block_end = (int64_t)((block + 1) << 32);
        int64_t n = (block_end < end ? block_end : end) - i;
        uint64_t key = splitmix64(c->seed ^ splitmix64(block));
        dropout_rows(c->x + i, c->out + i, c->mask + i, (uint32_t)i, (uint32_t)key, (uint32_t)(key >> 32),
                     c->threshold, c->drop_all, c->scale, n);
        i += n;
    }
}

static void copy_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const dropout_ctx *c = arg;
    if (c->out != c->x) memcpy(c->out + begin, c->x + begin, (size_t)(end - begin) * sizeof(float));
}

static tg_status dropout_forward(const tg_op_io *io)
{
    const dropout_attrs *a = io->attrs;
    double threshold = a->p * 4294967296.0;
    dropout_ctx c = {
        .x = io->in[0]->data, .out = io->out->data, .mask = io->aux, .seed = io->seed,
        .threshold = threshold >= 4294967295.0 ? 0xffffffffU : (uint32_t)threshold,
        .drop_all = a->p >= 1.0, .scale = a->p >= 1.0 ? 0.0f : (float)(1.0 / (1.0 - a->p)),
    };
    int64_t numel = tg_tensor_numel(io->out);
    tg_parallel_for(numel, TG_ELEMENTWISE_GRAIN, io->training ? dropout_forward_range : copy_range, &c);
    return TG_STATUS_OK;
}

TG_SIMD_FUNCTION(dropout_grad_rows,
                 (const float *restrict gy, const uint8_t *restrict mask, float scale, float *restrict gx, int64_t n),
                 (gy, mask, scale, gx, n))
{
    for (int64_t i = 0; i < n; i++) gx[i] += mask[i] ? gy[i] * scale : 0.0f;
}

TG_SIMD_FUNCTION(add_rows, (const float *restrict gy, float *restrict gx, int64_t n), (gy, gx, n))
{
    for (int64_t i = 0; i < n; i++) gx[i] += gy[i];
}

static void dropout_backward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const dropout_ctx *c = arg;
    for (int64_t i = begin; i < end; i += TG_FRESH_BLOCK) {
        int64_t n = end - i < TG_FRESH_BLOCK ? end - i : TG_FRESH_BLOCK;
        if (c->fresh) memset(c->out + i, 0, (size_t)n * sizeof(float));
        if (c->mask) dropout_grad_rows(c->gy + i, c->mask + i, c->scale, c->out + i, n);
        else add_rows(c->gy + i, c->out + i, n);
    }
}

static tg_status dropout_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    const dropout_attrs *a = io->attrs;
    dropout_ctx c = {
        .gy = io->grad_out->data, .out = io->grad_in[0]->data, .mask = io->training ? io->aux : NULL,
        .scale = a->p >= 1.0 ? 0.0f : (float)(1.0 / (1.0 - a->p)), .fresh = (int)(io->grad_in_fresh & 1u),
    };
    tg_parallel_for(tg_tensor_numel(io->out), TG_ELEMENTWISE_GRAIN, dropout_backward_range, &c);
    return TG_STATUS_OK;
}

/* Inference: dropout is the identity. */
static tg_status dropout_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    return tg_onnx_unary(e, n, "Identity", NULL, 0);
}

const tg_op_def tg_op_dropout = {
    .name = "dropout", .input_names = unary_inputs,
    .attr_specs = dropout_attr_specs, .n_attrs = 1, .attrs_size = sizeof(dropout_attrs),
    .infer = dropout_infer, .forward = dropout_forward, .backward = dropout_backward, .onnx = dropout_onnx,
    .backward_skips_inputs = 1, .backward_skips_output = 1, .forward_in_place = 1, .backward_writes_fresh = 1,
};
