/* loss.c: training losses, float32, with PyTorch's semantics and names:
 * pointwise losses mse_loss, l1_loss, smooth_l1_loss, binary_cross_entropy_with_logits
 * and sigmoid_focal_loss (torchvision.ops.sigmoid_focal_loss: per-element sigmoid
 * focal loss on logits and float targets, also what a multi-label segmentation head
 * uses; NOT the softmax multi-class variant), then cross_entropy (class-index targets,
 * class weights, label smoothing, ignore_index) and dice_loss (softmax over classes
 * against class-index targets, mean over classes).
 * Reduction is the int attr `reduction`: 0 none (per-element output), 1 mean (scalar,
 * the default), 2 sum (scalar); dice_loss is always a scalar.
 * Targets, class weights and pos_weight get no gradient.
 * Not here: probability (soft) targets for cross_entropy, nll_loss on log-probabilities,
 * per-element `weight` of BCE.
 *
 * Determinism: scalar reductions sum fixed blocks of elements (TG_LOSS_BLOCK, or one
 * (sample, pixel chunk) unit for the class losses) into per-block partials, then add
 * the partials in block order on one thread; nothing depends on the thread count. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "broadcast.h"
#include "op.h"

#define TG_LOSS_BLOCK 2048       /* elements per partial sum of the pointwise losses */
#define TG_LOSS_PIXELS 256       /* pixels per work unit of the class losses */
#define TG_LOSS_LANES 16

typedef enum loss_reduction {
    LOSS_REDUCTION_NONE = 0,
    LOSS_REDUCTION_MEAN = 1,
    LOSS_REDUCTION_SUM = 2,
} loss_reduction;

static tg_status loss_check_reduction(int64_t reduction, const char *op)
{
    if (reduction < LOSS_REDUCTION_NONE || reduction > LOSS_REDUCTION_SUM)
        return tg_error(TG_STATUS_VALUE, "%s: reduction must be 0 (none), 1 (mean) or 2 (sum), got %lld", op,
                        (long long)reduction);
    return TG_STATUS_OK;
}

/* Sum of v[0..n) in 16 lanes combined pairwise, then the tail (a fixed order). */
static float loss_lane_sum(const float *restrict v, int64_t n)
{
    float acc[TG_LOSS_LANES] = {0};
    int64_t i = 0;
    for (; i + TG_LOSS_LANES <= n; i += TG_LOSS_LANES)
        for (int j = 0; j < TG_LOSS_LANES; j++) acc[j] += v[i + j];
    for (int w = TG_LOSS_LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    float tail = 0.0f;
    for (; i < n; i++) tail += v[i];
    return acc[0] + tail;
}

/* Sum of partials in index order (one thread). */
static double loss_sum_partials(const double *partial, int64_t count)
{
    double sum = 0.0;
    for (int64_t i = 0; i < count; i++) sum += partial[i];
    return sum;
}

/* NOTE: the kernels below are compiled without trapping math (FP exceptions are never
 * inspected here), which lets GCC if-convert and vectorize the clamps of loss_exp;
 * results are unchanged. */
#pragma GCC optimize("no-trapping-math")

/* exp(x) in plain float arithmetic that compilers vectorize (Cephes' expf polynomial,
 * ~1 ulp), for the softmax loops; x is clamped to [-87, 88], so exp of a very negative
 * number is ~1e-38 instead of 0. NOTE: the rounding constant trick needs the default
 * (non -ffast-math) float semantics the build uses. */
static inline float loss_exp(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round(x / ln 2) */
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { float f; int32_t i; } bits = {.f = p};
    bits.i += (int32_t)((uint32_t)(int32_t)k << 23);
    return bits.f;
}

/* log(1 + exp(-|x|)) + max(-x, 0) = -log(sigmoid(x)), stable for any x. */
static inline float loss_neg_log_sigmoid(float x)
{
    return log1pf(expf(-fabsf(x))) + (x < 0.0f ? -x : 0.0f);
}

static inline float loss_sigmoid(float x)
{
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* ================= pointwise losses: loss(x, t) per element ================= */

typedef enum loss_kind {
    LOSS_KIND_MSE,
    LOSS_KIND_L1,
    LOSS_KIND_SMOOTH_L1,
    LOSS_KIND_BCE_WITH_LOGITS,
    LOSS_KIND_SIGMOID_FOCAL,
} loss_kind;

typedef struct pointwise_attrs {
    int64_t reduction;
    double beta;           /* smooth_l1_loss */
    double alpha, gamma;   /* sigmoid_focal_loss */
} pointwise_attrs;

static const tg_attr_spec reduction_only_attr_specs[] = {
    {"reduction", TG_ATTR_KIND_INT, offsetof(pointwise_attrs, reduction), LOSS_REDUCTION_MEAN, 0},
};

static const tg_attr_spec smooth_l1_loss_attr_specs[] = {
    {"reduction", TG_ATTR_KIND_INT, offsetof(pointwise_attrs, reduction), LOSS_REDUCTION_MEAN, 0},
    {"beta", TG_ATTR_KIND_FLOAT, offsetof(pointwise_attrs, beta), 1.0, 0},
};

static const tg_attr_spec sigmoid_focal_loss_attr_specs[] = {
    {"alpha", TG_ATTR_KIND_FLOAT, offsetof(pointwise_attrs, alpha), 0.25, 0},
    {"gamma", TG_ATTR_KIND_FLOAT, offsetof(pointwise_attrs, gamma), 2.0, 0},
    {"reduction", TG_ATTR_KIND_INT, offsetof(pointwise_attrs, reduction), LOSS_REDUCTION_MEAN, 0},
};

static const char *const pointwise_inputs[] = {"input", "target", NULL};
static const char *const bce_inputs[] = {"input", "target", "?pos_weight", NULL};

typedef struct pointwise_ctx {
    loss_kind kind;
    int64_t n;
    const float *x, *t;          /* [n] each (same shape) */
    const float *pos_weight;     /* broadcast to x by bc, or NULL */
    tg_broadcast bc;
    float beta, alpha, gamma;
    float *out;                  /* [n] for reduction none */
    double *partial;             /* [ceil(n / TG_LOSS_BLOCK)] for mean/sum */
    const float *gy;             /* [n] for none, [1] otherwise */
    float gy_scale;              /* 1/n for mean, 1 for sum */
    int per_element_grad;        /* 1: gy has n elements */
    float *gx;                   /* [n] (+=) */
} pointwise_ctx;

static inline float pos_weight_at(const pointwise_ctx *c, int64_t i)
{
    return c->pos_weight ? c->pos_weight[tg_broadcast_offset(&c->bc, 1, i)] : 1.0f;
}

/* Element losses of [begin, begin + n) into v[0..n). */
static void pointwise_values(const pointwise_ctx *c, int64_t begin, int64_t n, float *restrict v)
{
    const float *restrict x = c->x + begin, *restrict t = c->t + begin;
    switch (c->kind) {
    case LOSS_KIND_MSE:
        for (int64_t i = 0; i < n; i++) v[i] = (x[i] - t[i]) * (x[i] - t[i]);
        break;
    case LOSS_KIND_L1:
        for (int64_t i = 0; i < n; i++) v[i] = fabsf(x[i] - t[i]);
        break;
    case LOSS_KIND_SMOOTH_L1:
        for (int64_t i = 0; i < n; i++) {
            float d = fabsf(x[i] - t[i]);
            v[i] = d < c->beta ? 0.5f * d * d / c->beta : d - 0.5f * c->beta;
        }
        break;
    case LOSS_KIND_BCE_WITH_LOGITS:
        /* (1 - t) x + (1 + (pw - 1) t) (-log sigmoid(x)) */
        for (int64_t i = 0; i < n; i++) {
            float log_weight = 1.0f + (pos_weight_at(c, begin + i) - 1.0f) * t[i];
            v[i] = (1.0f - t[i]) * x[i] + log_weight * loss_neg_log_sigmoid(x[i]);
        }
        break;
    case LOSS_KIND_SIGMOID_FOCAL:
        /* torchvision: ce * (1 - p_t)^gamma * alpha_t, alpha_t only when alpha >= 0 */
        for (int64_t i = 0; i < n; i++) {
            float p = loss_sigmoid(x[i]);
            float ce = (1.0f - t[i]) * x[i] + loss_neg_log_sigmoid(x[i]);
            float p_t = p * t[i] + (1.0f - p) * (1.0f - t[i]);
            float loss = ce * powf(1.0f - p_t, c->gamma);
            if (c->alpha >= 0.0f) loss *= c->alpha * t[i] + (1.0f - c->alpha) * (1.0f - t[i]);
            v[i] = loss;
        }
        break;
    }
}

static void pointwise_forward_blocks(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const pointwise_ctx *c = arg;
    float values[TG_LOSS_BLOCK];
    for (int64_t b = begin; b < end; b++) {
        int64_t first = b * TG_LOSS_BLOCK, count = c->n - first < TG_LOSS_BLOCK ? c->n - first : TG_LOSS_BLOCK;
        if (c->out) {
            pointwise_values(c, first, count, c->out + first);
        } else {
            pointwise_values(c, first, count, values);
            c->partial[b] = loss_lane_sum(values, count);
        }
    }
}

/* d loss / d x of [begin, end), times the incoming gradient, added into gx. */
static void pointwise_backward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const pointwise_ctx *c = arg;
    const float *restrict x = c->x, *restrict t = c->t;
    float *restrict gx = c->gx;
    for (int64_t i = begin; i < end; i++) {
        float g = (c->per_element_grad ? c->gy[i] : c->gy[0]) * c->gy_scale;
        float d = x[i] - t[i], dx = 0.0f;
        switch (c->kind) {
        case LOSS_KIND_MSE: dx = 2.0f * d; break;
        case LOSS_KIND_L1: dx = (float)((d > 0.0f) - (d < 0.0f)); break;
        case LOSS_KIND_SMOOTH_L1:
            dx = fabsf(d) < c->beta ? d / c->beta : (float)((d > 0.0f) - (d < 0.0f));
            break;
        case LOSS_KIND_BCE_WITH_LOGITS: {
            float log_weight = 1.0f + (pos_weight_at(c, i) - 1.0f) * t[i];
            dx = (1.0f - t[i]) - log_weight * (1.0f - loss_sigmoid(x[i]));
            break;
        }
        case LOSS_KIND_SIGMOID_FOCAL: {
            float p = loss_sigmoid(x[i]);
            float ce = (1.0f - t[i]) * x[i] + loss_neg_log_sigmoid(x[i]);
            float m = 1.0f - (p * t[i] + (1.0f - p) * (1.0f - t[i]));      /* 1 - p_t */
            float dm = -p * (1.0f - p) * (2.0f * t[i] - 1.0f);             /* d m / d x */
            float dce = p - t[i];
            dx = dce * powf(m, c->gamma);
            if (c->gamma != 0.0f && m > 0.0f) dx += ce * c->gamma * powf(m, c->gamma - 1.0f) * dm;
            if (c->alpha >= 0.0f) dx *= c->alpha * t[i] + (1.0f - c->alpha) * (1.0f - t[i]);
            break;
        }
        }
        gx[i] += g * dx;
    }
}

static const char *loss_kind_name(loss_kind kind)
{
    switch (kind) {
    case LOSS_KIND_MSE: return "mse_loss";
    case LOSS_KIND_L1: return "l1_loss";
    case LOSS_KIND_SMOOTH_L1: return "smooth_l1_loss";
    case LOSS_KIND_BCE_WITH_LOGITS: return "binary_cross_entropy_with_logits";
    case LOSS_KIND_SIGMOID_FOCAL: return "sigmoid_focal_loss";
    }
    return "loss";
}

static int64_t pointwise_blocks(int64_t n) { return (n + TG_LOSS_BLOCK - 1) / TG_LOSS_BLOCK; }

static tg_status pointwise_infer(loss_kind kind, const tg_tensor *const *in, int n_in, const pointwise_attrs *a,
                                 tg_tensor *out, tg_op_sizes *sizes)
{
    const char *op = loss_kind_name(kind);
    char sa[96], sb[96];
    TG_TRY(tg_check_dtype(in[0], TG_DTYPE_F32, op, "input"));
    TG_TRY(tg_check_dtype(in[1], TG_DTYPE_F32, op, "target"));
    TG_TRY(loss_check_reduction(a->reduction, op));
    if (!tg_shape_equal(in[0], in[1]))
        return tg_error(TG_STATUS_SHAPE, "%s: target %s must have the shape of input %s", op,
                        tg_shape_str(in[1], sb, sizeof sb), tg_shape_str(in[0], sa, sizeof sa));
    if (n_in > 2 && in[2]) {
        tg_broadcast bc;
        TG_TRY(tg_check_dtype(in[2], TG_DTYPE_F32, op, "pos_weight"));
        TG_TRY(tg_broadcast_init(&bc, in[0], in[2], op));
        int same = bc.ndim == in[0]->ndim;
        for (int d = 0; same && d < bc.ndim; d++) same = bc.shape[d] == in[0]->shape[d];
        if (!same)
            return tg_error(TG_STATUS_SHAPE, "%s: pos_weight %s must broadcast to input %s without growing it", op,
                            tg_shape_str(in[2], sb, sizeof sb), tg_shape_str(in[0], sa, sizeof sa));
    }
    if (kind == LOSS_KIND_SMOOTH_L1 && !(a->beta >= 0.0))
        return tg_error(TG_STATUS_VALUE, "smooth_l1_loss: beta must be >= 0, got %g", a->beta);
    if (kind == LOSS_KIND_SIGMOID_FOCAL && !(a->gamma >= 0.0))
        return tg_error(TG_STATUS_VALUE, "sigmoid_focal_loss: gamma must be >= 0, got %g", a->gamma);
    if (a->reduction == LOSS_REDUCTION_NONE) return tg_tensor_set_shape(out, TG_DTYPE_F32, in[0]->ndim, in[0]->shape);
    sizes->scratch_forward = tg_align64((size_t)pointwise_blocks(tg_tensor_numel(in[0])) * sizeof(double)); /* partials */
    return tg_tensor_set_shape(out, TG_DTYPE_F32, 0, NULL);
}

static pointwise_ctx pointwise_context(loss_kind kind, const tg_op_io *io)
{
    const pointwise_attrs *a = io->attrs;
    pointwise_ctx c = {
        .kind = kind, .n = tg_tensor_numel(io->in[0]), .x = io->in[0]->data, .t = io->in[1]->data,
        .beta = (float)a->beta, .alpha = (float)a->alpha, .gamma = (float)a->gamma,
    };
    /* NOTE: smooth_l1 with beta 0 is l1, as in PyTorch (avoids dividing by zero). */
    if (kind == LOSS_KIND_SMOOTH_L1 && c.beta == 0.0f) c.kind = LOSS_KIND_L1;
    if (io->n_in > 2 && io->in[2]) {
        c.pos_weight = io->in[2]->data;
        tg_broadcast_init(&c.bc, io->in[0], io->in[2], loss_kind_name(kind));
    }
    return c;
}

static tg_status pointwise_forward(loss_kind kind, const tg_op_io *io)
{
    const pointwise_attrs *a = io->attrs;
    pointwise_ctx c = pointwise_context(kind, io);
    int64_t blocks = pointwise_blocks(c.n);
    if (a->reduction == LOSS_REDUCTION_NONE) {
        c.out = io->out->data;
        tg_parallel_for(blocks, 8, pointwise_forward_blocks, &c);
        return TG_STATUS_OK;
    }
    c.partial = io->scratch;
    tg_parallel_for(blocks, 8, pointwise_forward_blocks, &c);
    double sum = loss_sum_partials(c.partial, blocks);
    /* NOTE: the mean of an empty input is NaN, as in PyTorch. */
    *(float *)io->out->data = (float)(a->reduction == LOSS_REDUCTION_MEAN ? sum / (double)c.n : sum);
    return TG_STATUS_OK;
}

static tg_status pointwise_backward(loss_kind kind, const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    const pointwise_attrs *a = io->attrs;
    pointwise_ctx c = pointwise_context(kind, io);
    c.gy = io->grad_out->data;
    c.gx = io->grad_in[0]->data;
    c.per_element_grad = a->reduction == LOSS_REDUCTION_NONE;
    c.gy_scale = a->reduction == LOSS_REDUCTION_MEAN ? 1.0f / (float)c.n : 1.0f;
    tg_parallel_for(c.n, TG_LOSS_BLOCK * 4, pointwise_backward_range, &c);
    return TG_STATUS_OK;
}

/* ---- mse_loss: (x - t)^2 ---- */

static tg_status mse_loss_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                tg_op_sizes *sizes)
{
    return pointwise_infer(LOSS_KIND_MSE, in, n_in, attrs, out, sizes);
}

static tg_status mse_loss_forward(const tg_op_io *io) { return pointwise_forward(LOSS_KIND_MSE, io); }

static tg_status mse_loss_backward(const tg_op_io *io) { return pointwise_backward(LOSS_KIND_MSE, io); }

const tg_op_def tg_op_mse_loss = {
    .name = "mse_loss", .input_names = pointwise_inputs, .no_grad_inputs = 1u << 1,
    .attr_specs = reduction_only_attr_specs, .n_attrs = 1, .attrs_size = sizeof(pointwise_attrs),
    .infer = mse_loss_infer, .forward = mse_loss_forward, .backward = mse_loss_backward,
};

/* ---- l1_loss: |x - t| (gradient sign(x - t), 0 at 0 as PyTorch) ---- */

static tg_status l1_loss_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                               tg_op_sizes *sizes)
{
    return pointwise_infer(LOSS_KIND_L1, in, n_in, attrs, out, sizes);
}

static tg_status l1_loss_forward(const tg_op_io *io) { return pointwise_forward(LOSS_KIND_L1, io); }

static tg_status l1_loss_backward(const tg_op_io *io) { return pointwise_backward(LOSS_KIND_L1, io); }

const tg_op_def tg_op_l1_loss = {
    .name = "l1_loss", .input_names = pointwise_inputs, .no_grad_inputs = 1u << 1,
    .attr_specs = reduction_only_attr_specs, .n_attrs = 1, .attrs_size = sizeof(pointwise_attrs),
    .infer = l1_loss_infer, .forward = l1_loss_forward, .backward = l1_loss_backward,
};

/* ---- smooth_l1_loss: 0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere ---- */

static tg_status smooth_l1_loss_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                      tg_op_sizes *sizes)
{
    return pointwise_infer(LOSS_KIND_SMOOTH_L1, in, n_in, attrs, out, sizes);
}

static tg_status smooth_l1_loss_forward(const tg_op_io *io) { return pointwise_forward(LOSS_KIND_SMOOTH_L1, io); }

static tg_status smooth_l1_loss_backward(const tg_op_io *io) { return pointwise_backward(LOSS_KIND_SMOOTH_L1, io); }

const tg_op_def tg_op_smooth_l1_loss = {
    .name = "smooth_l1_loss", .input_names = pointwise_inputs, .no_grad_inputs = 1u << 1,
    .attr_specs = smooth_l1_loss_attr_specs, .n_attrs = 2, .attrs_size = sizeof(pointwise_attrs),
    .infer = smooth_l1_loss_infer, .forward = smooth_l1_loss_forward, .backward = smooth_l1_loss_backward,
};

/* ---- binary_cross_entropy_with_logits: optional pos_weight broadcast to the input ---- */

static tg_status bce_with_logits_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                       tg_op_sizes *sizes)
{
    return pointwise_infer(LOSS_KIND_BCE_WITH_LOGITS, in, n_in, attrs, out, sizes);
}

static tg_status bce_with_logits_forward(const tg_op_io *io) { return pointwise_forward(LOSS_KIND_BCE_WITH_LOGITS, io); }

static tg_status bce_with_logits_backward(const tg_op_io *io)
{
    return pointwise_backward(LOSS_KIND_BCE_WITH_LOGITS, io);
}

const tg_op_def tg_op_binary_cross_entropy_with_logits = {
    .name = "binary_cross_entropy_with_logits", .input_names = bce_inputs, .no_grad_inputs = (1u << 1) | (1u << 2),
    .attr_specs = reduction_only_attr_specs, .n_attrs = 1, .attrs_size = sizeof(pointwise_attrs),
    .infer = bce_with_logits_infer, .forward = bce_with_logits_forward, .backward = bce_with_logits_backward,
};

/* ---- sigmoid_focal_loss (torchvision.ops.sigmoid_focal_loss; default reduction mean here) ---- */

static tg_status sigmoid_focal_loss_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                          tg_op_sizes *sizes)
{
    return pointwise_infer(LOSS_KIND_SIGMOID_FOCAL, in, n_in, attrs, out, sizes);
}

static tg_status sigmoid_focal_loss_forward(const tg_op_io *io) { return pointwise_forward(LOSS_KIND_SIGMOID_FOCAL, io); }

static tg_status sigmoid_focal_loss_backward(const tg_op_io *io)
{
    return pointwise_backward(LOSS_KIND_SIGMOID_FOCAL, io);
}

const tg_op_def tg_op_sigmoid_focal_loss = {
    .name = "sigmoid_focal_loss", .input_names = pointwise_inputs, .no_grad_inputs = 1u << 1,
    .attr_specs = sigmoid_focal_loss_attr_specs, .n_attrs = 3, .attrs_size = sizeof(pointwise_attrs),
    .infer = sigmoid_focal_loss_infer, .forward = sigmoid_focal_loss_forward, .backward = sigmoid_focal_loss_backward,
};

/* ================= class losses: logits [N, C, *] against int64 targets [N, *] ================= */

/* Layout of a class loss: N samples, C classes, S pixels per sample (1 for [N, C]);
 * logit (n, c, s) is at (n * C + c) * S + s and target (n, s) at n * S + s. A work unit
 * is (n, a chunk of up to TG_LOSS_PIXELS pixels). */
typedef struct class_layout {
    int64_t batch, classes, pixels;
    int64_t chunks_per_sample, units;
} class_layout;

static tg_status class_layout_init(class_layout *l, const tg_tensor *logits, const tg_tensor *target, const char *op)
{
    char sa[96], sb[96];
    TG_TRY(tg_check_dtype(logits, TG_DTYPE_F32, op, "input"));
    TG_TRY(tg_check_dtype(target, TG_DTYPE_I64, op, "target (class indices)"));
    int ok = logits->ndim >= 2 && target->ndim == logits->ndim - 1 && target->shape[0] == logits->shape[0];
    for (int d = 2; ok && d < logits->ndim; d++) ok = target->shape[d - 1] == logits->shape[d];
    if (!ok)
        return tg_error(TG_STATUS_SHAPE, "%s: input must be [N, C, *] and target [N, *] with the same N and *, got input %s "
                        "and target %s", op, tg_shape_str(logits, sa, sizeof sa), tg_shape_str(target, sb, sizeof sb));
    if (logits->shape[1] < 1)
        return tg_error(TG_STATUS_SHAPE, "%s: input %s has no classes", op, tg_shape_str(logits, sa, sizeof sa));
    l->batch = logits->shape[0];
    l->classes = logits->shape[1];
    l->pixels = 1;
    for (int d = 2; d < logits->ndim; d++) l->pixels *= logits->shape[d];
    l->chunks_per_sample = (l->pixels + TG_LOSS_PIXELS - 1) / TG_LOSS_PIXELS;
    l->units = l->batch * l->chunks_per_sample;
    return TG_STATUS_OK;
}

/* Fails naming the first target outside [0, C) that is not ignore_index (one thread, in order). */
static tg_status class_check_targets(const int64_t *target, int64_t count, int64_t classes, int64_t ignore_index,
                                     const char *op)
{
    for (int64_t i = 0; i < count; i++)
        if ((target[i] < 0 || target[i] >= classes) && target[i] != ignore_index)
            return tg_error(TG_STATUS_VALUE, "%s: target[%lld] = %lld is not a class index in [0, %lld) nor ignore_index %lld",
                            op, (long long)i, (long long)target[i], (long long)classes, (long long)ignore_index);
    return TG_STATUS_OK;
}

/* log(sum_c exp(x_c)) of one contiguous row (logits [N, C]): 16 lanes, a fixed order. */
static float class_row_logsumexp(const float *restrict x, int64_t classes)
{
    float mx[TG_LOSS_LANES], acc[TG_LOSS_LANES] = {0};
    for (int j = 0; j < TG_LOSS_LANES; j++) mx[j] = x[0];
    int64_t i = 0;
    for (; i + TG_LOSS_LANES <= classes; i += TG_LOSS_LANES)
        for (int j = 0; j < TG_LOSS_LANES; j++) mx[j] = x[i + j] > mx[j] ? x[i + j] : mx[j];
    float top = x[0];
    for (int j = 0; j < TG_LOSS_LANES; j++) top = mx[j] > top ? mx[j] : top;
    for (int64_t k = i; k < classes; k++) top = x[k] > top ? x[k] : top;
    for (i = 0; i + TG_LOSS_LANES <= classes; i += TG_LOSS_LANES)
        for (int j = 0; j < TG_LOSS_LANES; j++) acc[j] += loss_exp(x[i + j] - top);
    for (int w = TG_LOSS_LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    float tail = 0.0f;
    for (; i < classes; i++) tail += loss_exp(x[i] - top);
    return top + logf(acc[0] + tail);
}

/* For the pixels [s0, s0 + m) of sample n: lse[j] = log(sum_c exp(x_c)) (max-shifted). */
static void class_logsumexp(const float *restrict x, int64_t classes, int64_t pixels, int64_t m, float *restrict lse)
{
    if (pixels == 1) {
        lse[0] = class_row_logsumexp(x, classes);
        return;
    }
    float mx[TG_LOSS_PIXELS], sum[TG_LOSS_PIXELS];
    for (int64_t j = 0; j < m; j++) {
        mx[j] = x[j];
        sum[j] = 0.0f;
    }
    for (int64_t c = 1; c < classes; c++) {
        const float *restrict row = x + c * pixels;
        for (int64_t j = 0; j < m; j++) mx[j] = row[j] > mx[j] ? row[j] : mx[j];
    }
    for (int64_t c = 0; c < classes; c++) {
        const float *restrict row = x + c * pixels;
        for (int64_t j = 0; j < m; j++) sum[j] += loss_exp(row[j] - mx[j]);
    }
    for (int64_t j = 0; j < m; j++) lse[j] = mx[j] + logf(sum[j]);
}

/* ---- cross_entropy ---- */

typedef struct cross_entropy_attrs {
    int64_t ignore_index;
    int64_t reduction;
    double label_smoothing;
} cross_entropy_attrs;

static const tg_attr_spec cross_entropy_attr_specs[] = {
    {"ignore_index", TG_ATTR_KIND_INT, offsetof(cross_entropy_attrs, ignore_index), -100, 0},
    {"reduction", TG_ATTR_KIND_INT, offsetof(cross_entropy_attrs, reduction), LOSS_REDUCTION_MEAN, 0},
    {"label_smoothing", TG_ATTR_KIND_FLOAT, offsetof(cross_entropy_attrs, label_smoothing), 0.0, 0},
};

static const char *const class_loss_inputs[] = {"input", "target", "?weight", NULL};

static tg_status cross_entropy_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                     tg_op_sizes *sizes)
{
    const cross_entropy_attrs *a = attrs;
    class_layout l;
    TG_TRY(class_layout_init(&l, in[0], in[1], "cross_entropy"));
    TG_TRY(loss_check_reduction(a->reduction, "cross_entropy"));
    if (!(a->label_smoothing >= 0.0 && a->label_smoothing <= 1.0))
        return tg_error(TG_STATUS_VALUE, "cross_entropy: label_smoothing must be in [0, 1], got %g", a->label_smoothing);
    const tg_tensor *weight = n_in > 2 ? in[2] : NULL;
    if (weight) {
        char buf[96];
        TG_TRY(tg_check_dtype(weight, TG_DTYPE_F32, "cross_entropy", "weight"));
        if (weight->ndim != 1 || weight->shape[0] != l.classes)
            return tg_error(TG_STATUS_SHAPE, "cross_entropy: weight must have shape (%lld,) (one per class), got %s",
                            (long long)l.classes, tg_shape_str(weight, buf, sizeof buf));
    }
    /* aux: lse [N * S] floats, then the mean's denominator (one double) */
    sizes->aux_bytes = tg_align64((size_t)(l.batch * l.pixels) * sizeof(float)) + 64;
    sizes->scratch_forward = tg_align64(2 * (size_t)l.units * sizeof(double)); /* loss, weight partials [units] */
    if (a->reduction == LOSS_REDUCTION_NONE) return tg_tensor_set_shape(out, TG_DTYPE_F32, in[1]->ndim, in[1]->shape);
    return tg_tensor_set_shape(out, TG_DTYPE_F32, 0, NULL);
}

typedef struct cross_entropy_ctx {
    class_layout l;
    const float *x;            /* [N, C, S] */
    const int64_t *target;     /* [N, S] */
    const float *weight;       /* [C] or NULL */
    float weight_sum;          /* sum of weight (C when absent) */
    int64_t ignore_index;
    float smoothing;           /* label_smoothing */
    float *lse;                /* [N, S], aux */
    float *out;                /* [N, S] for reduction none */
    double *partial_loss, *partial_weight; /* [units] */
    const float *gy;           /* [N, S] for none, [1] otherwise */
    float gy_scale;            /* 1 / denominator for mean, 1 otherwise */
    int per_element_grad;
    float *gx;                 /* [N, C, S] (+=) */
} cross_entropy_ctx;

static void cross_entropy_forward_units(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const cross_entropy_ctx *c = arg;
    const int64_t classes = c->l.classes, pixels = c->l.pixels;
    for (int64_t u = begin; u < end; u++) {
        int64_t n = u / c->l.chunks_per_sample, s0 = (u % c->l.chunks_per_sample) * TG_LOSS_PIXELS;
        int64_t m = pixels - s0 < TG_LOSS_PIXELS ? pixels - s0 : TG_LOSS_PIXELS;
        const float *x = c->x + n * classes * pixels + s0;
        const int64_t *target = c->target + n * pixels + s0;
        float *lse = c->lse + n * pixels + s0;
        class_logsumexp(x, classes, pixels, m, lse);
        float smooth[TG_LOSS_PIXELS];
        if (c->smoothing > 0.0f) {
            /* smooth[j] = sum_c w_c (lse - x_c) = -sum_c w_c log p_c */
            for (int64_t j = 0; j < m; j++) smooth[j] = 0.0f;
            for (int64_t k = 0; k < classes; k++) {
                const float *restrict row = x + k * pixels;
                float w = c->weight ? c->weight[k] : 1.0f;
                for (int64_t j = 0; j < m; j++) smooth[j] += w * (lse[j] - row[j]);
            }
        }
        double loss_sum = 0.0, weight_sum = 0.0;
        for (int64_t j = 0; j < m; j++) {
            int64_t y = target[j];
            float loss = 0.0f;
            if (y != c->ignore_index) {
                float w = c->weight ? c->weight[y] : 1.0f;
                loss = (1.0f - c->smoothing) * w * (lse[j] - x[y * pixels + j]);
                if (c->smoothing > 0.0f) loss += c->smoothing / (float)classes * smooth[j];
                weight_sum += w;
            }
            if (c->out) c->out[n * pixels + s0 + j] = loss;
            loss_sum += loss;
        }
        c->partial_loss[u] = loss_sum;
        c->partial_weight[u] = weight_sum;
    }
}

static cross_entropy_ctx cross_entropy_context(const tg_op_io *io)
{
    const cross_entropy_attrs *a = io->attrs;
    cross_entropy_ctx c = {
        .x = io->in[0]->data, .target = io->in[1]->data,
        .weight = io->n_in > 2 && io->in[2] ? io->in[2]->data : NULL,
        .ignore_index = a->ignore_index, .smoothing = (float)a->label_smoothing, .lse = io->aux,
    };
    class_layout_init(&c.l, io->in[0], io->in[1], "cross_entropy");
    double weight_sum = 0.0;
    for (int64_t k = 0; k < c.l.classes; k++) weight_sum += c.weight ? c.weight[k] : 1.0f;
    c.weight_sum = (float)weight_sum;
    return c;
}

static double *cross_entropy_denominator(const tg_op_io *io, const class_layout *l)
{
    return (double *)((char *)io->aux + tg_align64((size_t)(l->batch * l->pixels) * sizeof(float)));
}

static tg_status cross_entropy_forward(const tg_op_io *io)
{
    const cross_entropy_attrs *a = io->attrs;
    cross_entropy_ctx c = cross_entropy_context(io);
    TG_TRY(class_check_targets(c.target, c.l.batch * c.l.pixels, c.l.classes, c.ignore_index, "cross_entropy"));
    c.out = a->reduction == LOSS_REDUCTION_NONE ? io->out->data : NULL;
    c.partial_loss = io->scratch;
    c.partial_weight = c.partial_loss + c.l.units;
    int64_t grain = 4096 / (c.l.classes * TG_LOSS_PIXELS) + 1;
    tg_parallel_for(c.l.units, grain, cross_entropy_forward_units, &c);
    double loss = loss_sum_partials(c.partial_loss, c.l.units);
    double denominator = loss_sum_partials(c.partial_weight, c.l.units);
    *cross_entropy_denominator(io, &c.l) = denominator;
    /* NOTE: as PyTorch, the mean divides by the summed class weights of the targets that are
     * not ignored (the count without weights), label smoothing included; all ignored gives
     * 0 / 0 = NaN. */
    if (a->reduction == LOSS_REDUCTION_MEAN) *(float *)io->out->data = (float)(loss / denominator);
    else if (a->reduction == LOSS_REDUCTION_SUM) *(float *)io->out->data = (float)loss;
    return TG_STATUS_OK;
}

/* dx_c = g * [p_c ((1 - eps) w_y + eps / C * sum(w)) - (1 - eps) w_y [c == y] - eps / C * w_c] */
static void cross_entropy_backward_units(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const cross_entropy_ctx *c = arg;
    const int64_t classes = c->l.classes, pixels = c->l.pixels;
    const float eps_c = c->smoothing / (float)classes;
    for (int64_t u = begin; u < end; u++) {
        int64_t n = u / c->l.chunks_per_sample, s0 = (u % c->l.chunks_per_sample) * TG_LOSS_PIXELS;
        int64_t m = pixels - s0 < TG_LOSS_PIXELS ? pixels - s0 : TG_LOSS_PIXELS;
        const float *x = c->x + n * classes * pixels + s0;
        float *gx = c->gx + n * classes * pixels + s0;
        const int64_t *target = c->target + n * pixels + s0;
        const float *lse = c->lse + n * pixels + s0;
        float g[TG_LOSS_PIXELS], total[TG_LOSS_PIXELS];   /* per pixel: scale, and the p_c coefficient */
        g[0] = total[0] = 0.0f;
        for (int64_t j = 0; j < m; j++) {
            int64_t y = target[j];
            if (y == c->ignore_index) {
                g[j] = total[j] = 0.0f;
                continue;
            }
            g[j] = (c->per_element_grad ? c->gy[n * pixels + s0 + j] : c->gy[0]) * c->gy_scale;
            float w = c->weight ? c->weight[y] : 1.0f;
            total[j] = (1.0f - c->smoothing) * w + eps_c * c->weight_sum;
        }
        if (pixels == 1) {   /* logits [N, C]: the row is contiguous */
            const float *restrict row = x;
            float *restrict grow = gx;
            const float *restrict weight = c->weight;
            float g0 = g[0], total0 = total[0], lse0 = lse[0];
            if (g0 != 0.0f)
                for (int64_t k = 0; k < classes; k++)
                    grow[k] += g0 * (loss_exp(row[k] - lse0) * total0 - eps_c * (weight ? weight[k] : 1.0f));
        } else {
            for (int64_t k = 0; k < classes; k++) {
                const float *restrict row = x + k * pixels;
                float *restrict grow = gx + k * pixels;
                float wk = eps_c * (c->weight ? c->weight[k] : 1.0f);
                for (int64_t j = 0; j < m; j++) grow[j] += g[j] * (loss_exp(row[j] - lse[j]) * total[j] - wk);
            }
        }
        for (int64_t j = 0; j < m; j++) {
            int64_t y = target[j];
            if (y == c->ignore_index) continue;
            float w = c->weight ? c->weight[y] : 1.0f;
            gx[y * pixels + j] -= g[j] * (1.0f - c->smoothing) * w;
        }
    }
}

static tg_status cross_entropy_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    const cross_entropy_attrs *a = io->attrs;
    cross_entropy_ctx c = cross_entropy_context(io);
    c.gy = io->grad_out->data;
    c.gx = io->grad_in[0]->data;
    c.per_element_grad = a->reduction == LOSS_REDUCTION_NONE;
    c.gy_scale = a->reduction == LOSS_REDUCTION_MEAN ? (float)(1.0 / *cross_entropy_denominator(io, &c.l)) : 1.0f;
    int64_t grain = 4096 / (c.l.classes * TG_LOSS_PIXELS) + 1;
    tg_parallel_for(c.l.units, grain, cross_entropy_backward_units, &c);
    return TG_STATUS_OK;
}

const tg_op_def tg_op_cross_entropy = {
    .name = "cross_entropy", .input_names = class_loss_inputs, .no_grad_inputs = (1u << 1) | (1u << 2),
    .attr_specs = cross_entropy_attr_specs, .n_attrs = 3, .attrs_size = sizeof(cross_entropy_attrs),
    .infer = cross_entropy_infer, .forward = cross_entropy_forward, .backward = cross_entropy_backward,
};

/* ---- dice_loss: 1 - mean_c (2 I_c + smooth) / (P_c + T_c + smooth) ----
 * p = softmax over classes, t = one-hot target; I_c = sum p_c t_c, P_c = sum p_c,
 * T_c = sum t_c, each summed over the batch and every pixel whose target is not
 * ignore_index (the segmentation_models_pytorch-style "dims=(0, 2)" multi-class dice). */

typedef struct dice_loss_attrs {
    double smooth;
    int64_t ignore_index;
} dice_loss_attrs;

static const tg_attr_spec dice_loss_attr_specs[] = {
    {"smooth", TG_ATTR_KIND_FLOAT, offsetof(dice_loss_attrs, smooth), 1.0, 0},
    {"ignore_index", TG_ATTR_KIND_INT, offsetof(dice_loss_attrs, ignore_index), -100, 0},
};

static const char *const dice_loss_inputs[] = {"input", "target", NULL};

static tg_status dice_loss_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                 tg_op_sizes *sizes)
{
    (void)n_in;
    const dice_loss_attrs *a = attrs;
    class_layout l;
    TG_TRY(class_layout_init(&l, in[0], in[1], "dice_loss"));
    if (!(a->smooth >= 0.0)) return tg_error(TG_STATUS_VALUE, "dice_loss: smooth must be >= 0, got %g", a->smooth);
    /* aux: lse [N * S] floats, then I, P, T [C] doubles each */
    sizes->aux_bytes = tg_align64((size_t)(l.batch * l.pixels) * sizeof(float)) + 3 * (size_t)l.classes * sizeof(double);
    sizes->scratch_forward = tg_align64(3 * (size_t)(l.units * l.classes) * sizeof(double)); /* [units, 3, C] */
    sizes->scratch_backward = tg_align64(2 * (size_t)l.classes * sizeof(float));              /* coef_a, coef_b [C] */
    return tg_tensor_set_shape(out, TG_DTYPE_F32, 0, NULL);
}

typedef struct dice_ctx {
    class_layout l;
    const float *x;            /* [N, C, S] */
    const int64_t *target;     /* [N, S] */
    int64_t ignore_index;
    float *lse;                /* [N, S], aux */
    double *sums;              /* [3, C] in aux: I, P, T */
    double *partial;           /* [units, 3, C] scratch */
    const float *coef_a, *coef_b; /* [C] each: d loss / d p_c = b_c + a_c [c == y] (backward) */
    float *gx;                 /* [N, C, S] (+=) */
} dice_ctx;

static void dice_forward_units(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const dice_ctx *c = arg;
    const int64_t classes = c->l.classes, pixels = c->l.pixels;
    for (int64_t u = begin; u < end; u++) {
        int64_t n = u / c->l.chunks_per_sample, s0 = (u % c->l.chunks_per_sample) * TG_LOSS_PIXELS;
        int64_t m = pixels - s0 < TG_LOSS_PIXELS ? pixels - s0 : TG_LOSS_PIXELS;
        const float *x = c->x + n * classes * pixels + s0;
        const int64_t *target = c->target + n * pixels + s0;
        float *lse = c->lse + n * pixels + s0;
        double *inter = c->partial + u * 3 * classes, *psum = inter + classes, *tsum = psum + classes;
        class_logsumexp(x, classes, pixels, m, lse);
        float valid[TG_LOSS_PIXELS];
        for (int64_t j = 0; j < m; j++) valid[j] = target[j] == c->ignore_index ? 0.0f : 1.0f;
        for (int64_t k = 0; k < classes; k++) {
            const float *restrict row = x + k * pixels;
            float acc = 0.0f;
            for (int64_t j = 0; j < m; j++) acc += valid[j] * loss_exp(row[j] - lse[j]);
            psum[k] = acc;
            inter[k] = tsum[k] = 0.0;
        }
        for (int64_t j = 0; j < m; j++) {
            int64_t y = target[j];
            if (y == c->ignore_index) continue;
            inter[y] += loss_exp(x[y * pixels + j] - lse[j]);
            tsum[y] += 1.0;
        }
    }
}

static dice_ctx dice_context(const tg_op_io *io)
{
    const dice_loss_attrs *a = io->attrs;
    dice_ctx c = {.x = io->in[0]->data, .target = io->in[1]->data, .ignore_index = a->ignore_index, .lse = io->aux};
    class_layout_init(&c.l, io->in[0], io->in[1], "dice_loss");
    c.sums = (double *)((char *)io->aux + tg_align64((size_t)(c.l.batch * c.l.pixels) * sizeof(float)));
    return c;
}

static tg_status dice_loss_forward(const tg_op_io *io)
{
    const dice_loss_attrs *a = io->attrs;
    dice_ctx c = dice_context(io);
    TG_TRY(class_check_targets(c.target, c.l.batch * c.l.pixels, c.l.classes, c.ignore_index, "dice_loss"));
    c.partial = io->scratch;
    const int64_t classes = c.l.classes;
    int64_t grain = 4096 / (classes * TG_LOSS_PIXELS) + 1;
    tg_parallel_for(c.l.units, grain, dice_forward_units, &c);
    for (int64_t i = 0; i < 3 * classes; i++) c.sums[i] = 0.0;
    for (int64_t u = 0; u < c.l.units; u++)
        for (int64_t i = 0; i < 3 * classes; i++) c.sums[i] += c.partial[u * 3 * classes + i];
    double dice_sum = 0.0;
    for (int64_t k = 0; k < classes; k++) {
        double inter = c.sums[k], psum = c.sums[classes + k], tsum = c.sums[2 * classes + k];
        dice_sum += (2.0 * inter + a->smooth) / (psum + tsum + a->smooth);
    }
    *(float *)io->out->data = (float)(1.0 - dice_sum / (double)classes);
    return TG_STATUS_OK;
}

/* Softmax backward per pixel: dx_c = p_c (dp_c - sum_k p_k dp_k), dp_c = b_c + a_c [c == y]. */
static void dice_backward_units(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const dice_ctx *c = arg;
    const int64_t classes = c->l.classes, pixels = c->l.pixels;
    for (int64_t u = begin; u < end; u++) {
        int64_t n = u / c->l.chunks_per_sample, s0 = (u % c->l.chunks_per_sample) * TG_LOSS_PIXELS;
        int64_t m = pixels - s0 < TG_LOSS_PIXELS ? pixels - s0 : TG_LOSS_PIXELS;
        const float *x = c->x + n * classes * pixels + s0;
        float *gx = c->gx + n * classes * pixels + s0;
        const int64_t *target = c->target + n * pixels + s0;
        const float *lse = c->lse + n * pixels + s0;
        float dot[TG_LOSS_PIXELS], valid[TG_LOSS_PIXELS];
        for (int64_t j = 0; j < m; j++) {
            int64_t y = target[j];
            valid[j] = y == c->ignore_index ? 0.0f : 1.0f;
            dot[j] = y == c->ignore_index ? 0.0f : loss_exp(x[y * pixels + j] - lse[j]) * c->coef_a[y];
        }
        for (int64_t k = 0; k < classes; k++) {
            const float *restrict row = x + k * pixels;
            float b = c->coef_b[k];
            for (int64_t j = 0; j < m; j++) dot[j] += loss_exp(row[j] - lse[j]) * b;
        }
        for (int64_t k = 0; k < classes; k++) {
            const float *restrict row = x + k * pixels;
            float *restrict grow = gx + k * pixels;
            float b = c->coef_b[k];
            for (int64_t j = 0; j < m; j++) grow[j] += valid[j] * loss_exp(row[j] - lse[j]) * (b - dot[j]);
        }
        for (int64_t j = 0; j < m; j++) {
            int64_t y = target[j];
            if (y == c->ignore_index) continue;
            gx[y * pixels + j] += loss_exp(x[y * pixels + j] - lse[j]) * c->coef_a[y];
        }
    }
}

static tg_status dice_loss_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    const dice_loss_attrs *a = io->attrs;
    dice_ctx c = dice_context(io);
    c.gx = io->grad_in[0]->data;
    const int64_t classes = c.l.classes;
    float *coef_a = io->scratch, *coef_b = coef_a + classes;
    double g = *(const float *)io->grad_out->data / (double)classes;
    for (int64_t k = 0; k < classes; k++) {
        double inter = c.sums[k], denom = c.sums[classes + k] + c.sums[2 * classes + k] + a->smooth;
        coef_a[k] = (float)(-g * 2.0 / denom);
        coef_b[k] = (float)(g * (2.0 * inter + a->smooth) / (denom * denom));
    }
    c.coef_a = coef_a;
    c.coef_b = coef_b;
    int64_t grain = 4096 / (classes * TG_LOSS_PIXELS) + 1;
    tg_parallel_for(c.l.units, grain, dice_backward_units, &c);
    return TG_STATUS_OK;
}

const tg_op_def tg_op_dice_loss = {
    .name = "dice_loss", .input_names = dice_loss_inputs, .no_grad_inputs = 1u << 1,
    .attr_specs = dice_loss_attr_specs, .n_attrs = 2, .attrs_size = sizeof(dice_loss_attrs),
    .infer = dice_loss_infer, .forward = dice_loss_forward, .backward = dice_loss_backward,
};
