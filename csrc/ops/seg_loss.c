/* seg_loss.c: the pieces a segmentation model's combined loss is composed of that
 * loss.c lacks: softmax_focal_loss (the multi-class focal loss on logits [N, C, *]
 * against int64 class indices [N, *]) and scale (y = factor * x, a constant weight
 * of one term of a weighted sum of losses).
 *
 * softmax_focal_loss per pixel with target y != ignore_index, p = softmax(x)_y:
 *     loss = -a_y w_y (1 - p)^gamma log p      (w_y = weight[y], or 1 without weight)
 * with the focal alpha a_y = alpha for a foreground class (y != 0) and 1 - alpha for the
 * background class 0 (the RetinaNet / torchvision sigmoid_focal_loss convention, class 0
 * being "negative"), or a_y = 1 when alpha < 0 (the default: no alpha).
 * reduction 0 none ([N, *], 0 at ignored pixels), 1 mean, 2 sum.
 * NOTE: the mean divides by the number of pixels that are not ignored, NOT by the
 * summed class weights as cross_entropy does: the weights act like alpha_t
 * factors (kornia / segmentation_models_pytorch's FocalLoss convention), so
 * weighting the rare class raises the loss instead of being normalised away.
 * gamma = 0 without weights is exactly cross_entropy.
 * Not here: the sigmoid (per-element) focal loss, which is loss.c's sigmoid_focal_loss.
 *
 * Determinism: a work unit is (sample, chunk of SEG_LOSS_PIXELS pixels); each unit
 * writes its own partial sums, added in unit order on one thread. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "../export/onnx.h"
#include "op.h"
#include "vmath.h"

#define SEG_LOSS_PIXELS 256
#define SEG_SCALE_GRAIN 16384

typedef enum seg_loss_reduction {
    SEG_LOSS_REDUCTION_NONE = 0,
    SEG_LOSS_REDUCTION_MEAN = 1,
    SEG_LOSS_REDUCTION_SUM = 2,
} seg_loss_reduction;

/* ================= softmax_focal_loss ================= */

typedef struct softmax_focal_loss_attrs {
    double gamma;
    int64_t ignore_index;
    int64_t reduction;
    double alpha;          /* < 0: none */
} softmax_focal_loss_attrs;

static const tg_attr_spec softmax_focal_loss_attr_specs[] = {
    {"gamma", TG_ATTR_KIND_FLOAT, offsetof(softmax_focal_loss_attrs, gamma), 2.0, 0},
    {"ignore_index", TG_ATTR_KIND_INT, offsetof(softmax_focal_loss_attrs, ignore_index), -100, 0},
    {"reduction", TG_ATTR_KIND_INT, offsetof(softmax_focal_loss_attrs, reduction), SEG_LOSS_REDUCTION_MEAN, 0},
    {"alpha", TG_ATTR_KIND_FLOAT, offsetof(softmax_focal_loss_attrs, alpha), -1.0, 0},
};

static const char *const softmax_focal_loss_inputs[] = {"input", "target", "?weight", NULL};

/* N samples, C classes, S pixels per sample; logit (n, c, s) at (n * C + c) * S + s. */
typedef struct focal_layout {
    int64_t batch, classes, pixels, chunks_per_sample, units;
} focal_layout;

static tg_status focal_layout_init(focal_layout *l, const tg_tensor *const *in, int n_in)
{
    char sa[96], sb[96];
    const tg_tensor *logits = in[0], *target = in[1];
    TG_TRY(tg_check_dtype(logits, TG_DTYPE_F32, "softmax_focal_loss", "input"));
    TG_TRY(tg_check_dtype(target, TG_DTYPE_I64, "softmax_focal_loss", "target (class indices)"));
    int ok = logits->ndim >= 2 && target->ndim == logits->ndim - 1 && target->shape[0] == logits->shape[0];
    for (int d = 2; ok && d < logits->ndim; d++) ok = target->shape[d - 1] == logits->shape[d];
    if (!ok)
        return tg_error(TG_STATUS_SHAPE, "softmax_focal_loss: input must be [N, C, *] and target [N, *] with the same N "
                        "and *, got input %s and target %s", tg_shape_str(logits, sa, sizeof sa),
                        tg_shape_str(target, sb, sizeof sb));
    if (logits->shape[1] < 1)
        return tg_error(TG_STATUS_SHAPE, "softmax_focal_loss: input %s has no classes", tg_shape_str(logits, sa, sizeof sa));
    l->batch = logits->shape[0];
    l->classes = logits->shape[1];
    l->pixels = 1;
    for (int d = 2; d < logits->ndim; d++) l->pixels *= logits->shape[d];
    l->chunks_per_sample = (l->pixels + SEG_LOSS_PIXELS - 1) / SEG_LOSS_PIXELS;
    l->units = l->batch * l->chunks_per_sample;
    const tg_tensor *weight = n_in > 2 ? in[2] : NULL;
    if (weight) {
        TG_TRY(tg_check_dtype(weight, TG_DTYPE_F32, "softmax_focal_loss", "weight"));
        if (weight->ndim != 1 || weight->shape[0] != l->classes)
            return tg_error(TG_STATUS_SHAPE, "softmax_focal_loss: weight must have shape (%lld,) (one per class), got %s",
                            (long long)l->classes, tg_shape_str(weight, sa, sizeof sa));
    }
    return TG_STATUS_OK;
}

static tg_status softmax_focal_loss_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                          tg_op_sizes *sizes)
{
    const softmax_focal_loss_attrs *a = attrs;
    focal_layout l = {0};
    TG_TRY(focal_layout_init(&l, in, n_in));
    if (a->reduction < SEG_LOSS_REDUCTION_NONE || a->reduction > SEG_LOSS_REDUCTION_SUM)
        return tg_error(TG_STATUS_VALUE, "softmax_focal_loss: reduction must be 0 (none), 1 (mean) or 2 (sum), got %lld",
                        (long long)a->reduction);
    if (!(a->gamma >= 0.0) || !isfinite(a->gamma))
        return tg_error(TG_STATUS_VALUE, "softmax_focal_loss: gamma must be a finite number >= 0, got %g", a->gamma);
    if (!(a->alpha <= 1.0))
        return tg_error(TG_STATUS_VALUE, "softmax_focal_loss: alpha must be in [0, 1] (the foreground classes' weight), "
                        "or negative for none; got %g", a->alpha);
    /* aux: lse [N * S] floats, then the mean's denominator (one double) */
    sizes->aux_bytes = tg_align64((size_t)(l.batch * l.pixels) * sizeof(float)) + 64;
    sizes->scratch_forward = tg_align64(2 * (size_t)l.units * sizeof(double)); /* loss, count partials [units] each */
    if (a->reduction == SEG_LOSS_REDUCTION_NONE) return tg_tensor_set_shape(out, TG_DTYPE_F32, in[1]->ndim, in[1]->shape);
    return tg_tensor_set_shape(out, TG_DTYPE_F32, 0, NULL);
}

typedef struct focal_ctx {
    focal_layout l;
    const float *x;            /* [N, C, S] */
    const int64_t *target;     /* [N, S] */
    const float *weight;       /* [C] or NULL */
    int64_t ignore_index;
    float gamma;
    float alpha;               /* < 0: none */
    float *lse;                /* [N, S], aux */
    float *out;                /* [N, S] for reduction none */
    double *partial_loss, *partial_count; /* [units] each */
    const float *gy;           /* [N, S] for none, [1] otherwise */
    float gy_scale;            /* 1 / count for mean, 1 otherwise */
    int per_element_grad;
    float *gx;                 /* [N, C, S] (+=) */
} focal_ctx;

/* (1 - p)^gamma with 0^0 = 1, and gamma 1 and 2 without powf. */
static inline float focal_power(float one_minus_p, float gamma)
{
    if (gamma == 0.0f) return 1.0f;
    if (gamma == 1.0f) return one_minus_p;
    if (gamma == 2.0f) return one_minus_p * one_minus_p;
    return one_minus_p > 0.0f ? powf(one_minus_p, gamma) : 0.0f;
}

/* a_y w_y: the focal alpha of class y times its weight (1 where absent). */
static inline float focal_class_factor(const focal_ctx *c, int64_t y)
{
    float w = c->weight ? c->weight[y] : 1.0f;
    if (c->alpha >= 0.0f) w *= y == 0 ? 1.0f - c->alpha : c->alpha;
    return w;
}

/* lse[j] = log(sum_c exp(x_c)) of pixels [0, m) of a chunk (max-shifted). */
static void focal_logsumexp(const float *restrict x, int64_t classes, int64_t pixels, int64_t m, float *restrict lse)
{
    float mx[SEG_LOSS_PIXELS], sum[SEG_LOSS_PIXELS];
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
        for (int64_t j = 0; j < m; j++) sum[j] += tg_vexpf(row[j] - mx[j]);
    }
    for (int64_t j = 0; j < m; j++) lse[j] = mx[j] + logf(sum[j]);
}

static void focal_forward_units(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const focal_ctx *c = arg;
    const int64_t classes = c->l.classes, pixels = c->l.pixels;
    for (int64_t u = begin; u < end; u++) {
        int64_t n = u / c->l.chunks_per_sample, s0 = (u % c->l.chunks_per_sample) * SEG_LOSS_PIXELS;
        int64_t m = pixels - s0 < SEG_LOSS_PIXELS ? pixels - s0 : SEG_LOSS_PIXELS;
        const float *x = c->x + n * classes * pixels + s0;
        const int64_t *target = c->target + n * pixels + s0;
        float *lse = c->lse + n * pixels + s0;
        focal_logsumexp(x, classes, pixels, m, lse);
        double loss_sum = 0.0, count = 0.0;
        for (int64_t j = 0; j < m; j++) {
            int64_t y = target[j];
            float loss = 0.0f;
            if (y != c->ignore_index) {
                float log_p = x[y * pixels + j] - lse[j];
                float p = expf(log_p);
                loss = -focal_class_factor(c, y) * focal_power(1.0f - p, c->gamma) * log_p;
                count += 1.0;
            }
            if (c->out) c->out[n * pixels + s0 + j] = loss;
            loss_sum += loss;
        }
        c->partial_loss[u] = loss_sum;
        c->partial_count[u] = count;
    }
}

static double *focal_denominator(const tg_op_io *io, const focal_layout *l)
{
    return (double *)((char *)io->aux + tg_align64((size_t)(l->batch * l->pixels) * sizeof(float)));
}

static focal_ctx focal_context(const tg_op_io *io)
{
    const softmax_focal_loss_attrs *a = io->attrs;
    focal_ctx c = {
        .x = io->in[0]->data, .target = io->in[1]->data,
        .weight = io->n_in > 2 && io->in[2] ? io->in[2]->data : NULL,
        .ignore_index = a->ignore_index, .gamma = (float)a->gamma, .alpha = a->alpha < 0.0 ? -1.0f : (float)a->alpha,
        .lse = io->aux,
    };
    focal_layout_init(&c.l, io->in, io->n_in);
    return c;
}

static tg_status softmax_focal_loss_forward(const tg_op_io *io)
{
    const softmax_focal_loss_attrs *a = io->attrs;
    focal_ctx c = focal_context(io);
    const int64_t count = c.l.batch * c.l.pixels;
    for (int64_t i = 0; i < count; i++)
        if ((c.target[i] < 0 || c.target[i] >= c.l.classes) && c.target[i] != c.ignore_index)
            return tg_error(TG_STATUS_VALUE, "softmax_focal_loss: target[%lld] = %lld is not a class index in [0, %lld) "
                            "nor ignore_index %lld", (long long)i, (long long)c.target[i], (long long)c.l.classes,
                            (long long)c.ignore_index);
    c.out = a->reduction == SEG_LOSS_REDUCTION_NONE ? io->out->data : NULL;
    c.partial_loss = io->scratch;
    c.partial_count = c.partial_loss + c.l.units;
    int64_t grain = 4096 / (c.l.classes * SEG_LOSS_PIXELS) + 1;
    tg_parallel_for(c.l.units, grain, focal_forward_units, &c);
    double loss = 0.0, denominator = 0.0;
    for (int64_t u = 0; u < c.l.units; u++) {
        loss += c.partial_loss[u];
        denominator += c.partial_count[u];
    }
    *focal_denominator(io, &c.l) = denominator;
    /* NOTE: every pixel ignored gives 0 / 0 = NaN for the mean, as cross_entropy. */
    if (a->reduction == SEG_LOSS_REDUCTION_MEAN) *(float *)io->out->data = (float)(loss / denominator);
    else if (a->reduction == SEG_LOSS_REDUCTION_SUM) *(float *)io->out->data = (float)loss;
    return TG_STATUS_OK;
}

/* With l = log p_y: d loss / d l = a_y w_y (gamma (1 - p)^(gamma - 1) p l - (1 - p)^gamma) and
 * d l / d x_c = [c == y] - p_c, so dx_c = coef ([c == y] - p_c) per pixel. */
static void focal_backward_units(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const focal_ctx *c = arg;
    const int64_t classes = c->l.classes, pixels = c->l.pixels;
    for (int64_t u = begin; u < end; u++) {
        int64_t n = u / c->l.chunks_per_sample, s0 = (u % c->l.chunks_per_sample) * SEG_LOSS_PIXELS;
        int64_t m = pixels - s0 < SEG_LOSS_PIXELS ? pixels - s0 : SEG_LOSS_PIXELS;
        const float *x = c->x + n * classes * pixels + s0;
        float *gx = c->gx + n * classes * pixels + s0;
        const int64_t *target = c->target + n * pixels + s0;
        const float *lse = c->lse + n * pixels + s0;
        float coef[SEG_LOSS_PIXELS];
        for (int64_t j = 0; j < m; j++) {
            int64_t y = target[j];
            if (y == c->ignore_index) {
                coef[j] = 0.0f;
                continue;
            }
            float g = (c->per_element_grad ? c->gy[n * pixels + s0 + j] : c->gy[0]) * c->gy_scale;
            float log_p = x[y * pixels + j] - lse[j];
            float p = expf(log_p), one_minus_p = 1.0f - p;
            float d = -focal_power(one_minus_p, c->gamma);
            if (c->gamma != 0.0f && one_minus_p > 0.0f)
                d += c->gamma * focal_power(one_minus_p, c->gamma - 1.0f) * p * log_p;
            coef[j] = g * focal_class_factor(c, y) * d;
        }
        for (int64_t k = 0; k < classes; k++) {
            const float *restrict row = x + k * pixels;
            float *restrict grow = gx + k * pixels;
            for (int64_t j = 0; j < m; j++) grow[j] -= coef[j] * tg_vexpf(row[j] - lse[j]);
        }
        for (int64_t j = 0; j < m; j++) {
            int64_t y = target[j];
            if (y != c->ignore_index) gx[y * pixels + j] += coef[j];
        }
    }
}

static tg_status softmax_focal_loss_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    const softmax_focal_loss_attrs *a = io->attrs;
    focal_ctx c = focal_context(io);
    c.gy = io->grad_out->data;
    c.gx = io->grad_in[0]->data;
    c.per_element_grad = a->reduction == SEG_LOSS_REDUCTION_NONE;
    c.gy_scale = a->reduction == SEG_LOSS_REDUCTION_MEAN ? (float)(1.0 / *focal_denominator(io, &c.l)) : 1.0f;
    int64_t grain = 4096 / (c.l.classes * SEG_LOSS_PIXELS) + 1;
    tg_parallel_for(c.l.units, grain, focal_backward_units, &c);
    return TG_STATUS_OK;
}

const tg_op_def tg_op_softmax_focal_loss = {
    .name = "softmax_focal_loss", .input_names = softmax_focal_loss_inputs, .no_grad_inputs = (1u << 1) | (1u << 2),
    .attr_specs = softmax_focal_loss_attr_specs, .n_attrs = 4, .attrs_size = sizeof(softmax_focal_loss_attrs),
    .infer = softmax_focal_loss_infer, .forward = softmax_focal_loss_forward, .backward = softmax_focal_loss_backward,
};

/* ================= scale: y = factor * x ================= */

typedef struct scale_attrs {
    double factor;
} scale_attrs;

static const tg_attr_spec scale_attr_specs[] = {
    {"factor", TG_ATTR_KIND_FLOAT, offsetof(scale_attrs, factor), 1.0, 0},
};

static const char *const scale_inputs[] = {"x", NULL};

static tg_status scale_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out, tg_op_sizes *sizes)
{
    (void)n_in; (void)sizes;
    const scale_attrs *a = attrs;
    TG_TRY(tg_check_dtype(in[0], TG_DTYPE_F32, "scale", "x"));
    if (!isfinite(a->factor)) return tg_error(TG_STATUS_VALUE, "scale: factor must be finite, got %g", a->factor);
    return tg_tensor_set_shape(out, TG_DTYPE_F32, in[0]->ndim, in[0]->shape);
}

typedef struct scale_ctx {
    const float *src;   /* [n]: x in forward, grad_out in backward */
    float *dst;         /* [n]: y (=) in forward, grad_in (+=) in backward */
    float factor;
    int accumulate;
} scale_ctx;

static void scale_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const scale_ctx *c = arg;
    const float *restrict src = c->src;
    float *restrict dst = c->dst;
    const float factor = c->factor;
    if (c->accumulate)
        for (int64_t i = begin; i < end; i++) dst[i] += factor * src[i];
    else
        for (int64_t i = begin; i < end; i++) dst[i] = factor * src[i];
}

static tg_status scale_forward(const tg_op_io *io)
{
    const scale_attrs *a = io->attrs;
    scale_ctx c = {.src = io->in[0]->data, .dst = io->out->data, .factor = (float)a->factor, .accumulate = 0};
    tg_parallel_for(tg_tensor_numel(io->out), SEG_SCALE_GRAIN, scale_range, &c);
    return TG_STATUS_OK;
}

static tg_status scale_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    const scale_attrs *a = io->attrs;
    scale_ctx c = {.src = io->grad_out->data, .dst = io->grad_in[0]->data, .factor = (float)a->factor, .accumulate = 1};
    tg_parallel_for(tg_tensor_numel(io->out), SEG_SCALE_GRAIN, scale_range, &c);
    return TG_STATUS_OK;
}

static tg_status scale_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const char *inputs[2] = {n->input[0]};
    TG_TRY(tg_onnx_const_scalar(e, n->output, (float)((const scale_attrs *)n->attrs)->factor, &inputs[1]));
    return tg_onnx_node(e, "Mul", inputs, 2, n->output, NULL, 0);
}

const tg_op_def tg_op_scale = {
    .name = "scale", .input_names = scale_inputs,
    .attr_specs = scale_attr_specs, .n_attrs = 1, .attrs_size = sizeof(scale_attrs),
    .infer = scale_infer, .forward = scale_forward, .backward = scale_backward, .onnx = scale_onnx,
};
