/* norm.c: normalisation layers, float32, PyTorch semantics: batchnorm2d (training
 * with batch statistics and a running-statistics update, eval with the running
 * statistics), batchnorm2d_silu (batchnorm2d then SiLU in one op: the normalised
 * values are never stored), layernorm (over the trailing dims) and groupnorm.
 * Not here: instance norm, batchnorm of other ranks, momentum=None (cumulative
 * averaging), affine-free groupnorm variants beyond absent weight/bias.
 *
 * Determinism: every statistic is a sum in a fixed order inside one work item (a
 * channel, a row, a group), with 16 float lanes per contiguous run combined
 * pairwise and runs combined in double; no sum depends on the thread count. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../export/onnx.h"
#include "op.h"
#include "vmath.h"

#define TG_NORM_LANES 16

/* NOTE: the sums below are compiled twice (TG_SIMD_FUNCTION: AVX-512 and portable) with
 * the same 16-lane order and no contraction, so both copies give the same bits. */

/* *sum = x[0..n) in a fixed order: 16 lanes, combined pairwise, then the tail. */
TG_SIMD_FUNCTION(norm_sum_into, (const float *restrict x, int64_t n, float *restrict sum), (x, n, sum))
{
    float acc[TG_NORM_LANES] = {0};
    int64_t i = 0;
    for (; i + TG_NORM_LANES <= n; i += TG_NORM_LANES)
        for (int j = 0; j < TG_NORM_LANES; j++) acc[j] += x[i + j];
    for (int w = TG_NORM_LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    float tail = 0.0f;
    for (; i < n; i++) tail += x[i];
    *sum = acc[0] + tail;
}

static float norm_sum(const float *x, int64_t n)
{
    float sum;
    norm_sum_into(x, n, &sum);
    return sum;
}

/* *sum = sum of (x[i] - mean)^2, same order as norm_sum. */
TG_SIMD_FUNCTION(norm_sum_sq_dev_into, (const float *restrict x, int64_t n, float mean, float *restrict sum),
                 (x, n, mean, sum))
{
    float acc[TG_NORM_LANES] = {0};
    int64_t i = 0;
    for (; i + TG_NORM_LANES <= n; i += TG_NORM_LANES)
        for (int j = 0; j < TG_NORM_LANES; j++) {
            float d = x[i + j] - mean;
            acc[j] += d * d;
        }
    for (int w = TG_NORM_LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    float tail = 0.0f;
    for (; i < n; i++) tail += (x[i] - mean) * (x[i] - mean);
    *sum = acc[0] + tail;
}

static float norm_sum_sq_dev(const float *x, int64_t n, float mean)
{
    float sum;
    norm_sum_sq_dev_into(x, n, mean, &sum);
    return sum;
}

/* *sum = sum of g[i] * (x[i] - mean), same order as norm_sum. */
TG_SIMD_FUNCTION(norm_dot_dev_into,
                 (const float *restrict g, const float *restrict x, int64_t n, float mean, float *restrict sum),
                 (g, x, n, mean, sum))
{
    float acc[TG_NORM_LANES] = {0};
    int64_t i = 0;
    for (; i + TG_NORM_LANES <= n; i += TG_NORM_LANES)
        for (int j = 0; j < TG_NORM_LANES; j++) acc[j] += g[i + j] * (x[i + j] - mean);
    for (int w = TG_NORM_LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    float tail = 0.0f;
    for (; i < n; i++) tail += g[i] * (x[i] - mean);
    *sum = acc[0] + tail;
}

/* norm_sum(g) and norm_dot_dev(g, x, mean) in one pass over g: the same two orders. */
TG_SIMD_FUNCTION(norm_sum_and_dot_dev_into,
                 (const float *restrict g, const float *restrict x, int64_t n, float mean, float *restrict sums),
                 (g, x, n, mean, sums))
{
    float acc[TG_NORM_LANES] = {0}, dot[TG_NORM_LANES] = {0};
    int64_t i = 0;
    for (; i + TG_NORM_LANES <= n; i += TG_NORM_LANES)
        for (int j = 0; j < TG_NORM_LANES; j++) {
            acc[j] += g[i + j];
            dot[j] += g[i + j] * (x[i + j] - mean);
        }
    for (int w = TG_NORM_LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) {
            acc[j] += acc[j + w];
            dot[j] += dot[j + w];
        }
    float tail = 0.0f, tail_dot = 0.0f;
    for (; i < n; i++) {
        tail += g[i];
        tail_dot += g[i] * (x[i] - mean);
    }
    sums[0] = acc[0] + tail;
    sums[1] = dot[0] + tail_dot;
}

static float norm_dot_dev(const float *g, const float *x, int64_t n, float mean)
{
    float sum;
    norm_dot_dev_into(g, x, n, mean, &sum);
    return sum;
}

/* y[i] = x[i] * scale + shift */
TG_SIMD_FUNCTION(norm_affine, (const float *restrict x, float *restrict y, int64_t n, float scale, float shift),
                 (x, y, n, scale, shift))
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale + shift;
}

/* The batchnorm input gradient of one contiguous run: o = scale * (g - mean_g - (x - mean) * k),
 * written (0 + v) when fresh, else added. */
TG_SIMD_FUNCTION(norm_input_grad,
                 (const float *restrict g, const float *restrict x, float *restrict o, int64_t n, float scale,
                  float mean_g, float mean, float k, int fresh),
                 (g, x, o, n, scale, mean_g, mean, k, fresh))
{
    if (fresh) for (int64_t i = 0; i < n; i++) o[i] = 0.0f + scale * (g[i] - mean_g - (x[i] - mean) * k);
    else for (int64_t i = 0; i < n; i++) o[i] += scale * (g[i] - mean_g - (x[i] - mean) * k);
}

/* y[i] = silu(z), z = x[i] * scale + shift: the same float operations as norm_affine
 * followed by elementwise.c's silu, so the fused op matches the pair bit for bit. */
TG_SIMD_FUNCTION(norm_affine_silu, (const float *restrict x, float *restrict y, int64_t n, float scale, float shift),
                 (x, y, n, scale, shift))
{
    for (int64_t i = 0; i < n; i++) {
        float z = x[i] * scale + shift;
        y[i] = z * tg_vsigmoidf(z);
    }
}

/* g[i] = gy[i] * silu'(z), z = x[i] * scale + shift: elementwise.c's silu backward
 * written fresh (0 + v), on the recomputed batchnorm output. */
TG_SIMD_FUNCTION(norm_silu_grad,
                 (const float *restrict x, const float *restrict gy, float *restrict g, int64_t n, float scale,
                  float shift),
                 (x, gy, g, n, scale, shift))
{
    for (int64_t i = 0; i < n; i++) {
        float z = x[i] * scale + shift;
        float s = tg_vsigmoidf(z);
        g[i] = 0.0f + gy[i] * s * (1.0f + z * (1.0f - s));
    }
}

static tg_status norm_check_param(const tg_tensor *t, int64_t count, const char *op, const char *arg)
{
    if (!t) return TG_STATUS_OK;
    TG_TRY(tg_check_dtype(t, TG_DTYPE_F32, op, arg));
    if (t->ndim != 1 || t->shape[0] != count) {
        char buf[96];
        return tg_error(TG_STATUS_SHAPE, "%s: %s must have shape (%lld,) (one value per channel), got %s", op, arg,
                        (long long)count, tg_shape_str(t, buf, sizeof buf));
    }
    return TG_STATUS_OK;
}

/* ---- batchnorm2d: y = (x - mean) / sqrt(var + eps) * weight + bias, per channel ---- */

typedef struct batchnorm2d_attrs {
    double momentum;
    double eps;
} batchnorm2d_attrs;

static const tg_attr_spec batchnorm2d_attr_specs[] = {
    {"momentum", TG_ATTR_KIND_FLOAT, offsetof(batchnorm2d_attrs, momentum), 0.1, 0},
    {"eps", TG_ATTR_KIND_FLOAT, offsetof(batchnorm2d_attrs, eps), 1e-5, 0},
};

static const char *const batchnorm2d_inputs[] = {"x", "?weight", "?bias", "?running_mean", "?running_var", NULL};

static tg_status batchnorm2d_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                   tg_op_sizes *sizes)
{
    const batchnorm2d_attrs *a = attrs;
    const tg_tensor *x = in[0];
    TG_TRY(tg_check_dtype(x, TG_DTYPE_F32, "batchnorm2d", "x"));
    TG_TRY(tg_check_ndim(x, 4, "batchnorm2d", "x [N, C, H, W]"));
    int64_t channels = x->shape[1];
    static const char *const names[] = {"x", "weight", "bias", "running_mean", "running_var"};
    for (int i = 1; i < n_in; i++) TG_TRY(norm_check_param(in[i], channels, "batchnorm2d", names[i]));
    const tg_tensor *running_mean = n_in > 3 ? in[3] : NULL, *running_var = n_in > 4 ? in[4] : NULL;
    if ((running_mean == NULL) != (running_var == NULL))
        return tg_error(TG_STATUS_VALUE, "batchnorm2d: running_mean and running_var go together; give both or neither");
    if (!(a->eps > 0.0))
        return tg_error(TG_STATUS_VALUE, "batchnorm2d: eps must be > 0, got %g", a->eps);
    if (!(a->momentum >= 0.0 && a->momentum <= 1.0))
        return tg_error(TG_STATUS_VALUE, "batchnorm2d: momentum must be in [0, 1], got %g", a->momentum);
    sizes->aux_bytes = tg_align64(2 * (size_t)channels * sizeof(float)); /* mean [C], invstd [C] */
    return tg_tensor_set_shape(out, TG_DTYPE_F32, 4, x->shape);
}

typedef struct batchnorm2d_ctx {
    const batchnorm2d_attrs *attrs;
    int64_t batch, channels, plane;   /* N, C, H*W */
    const float *x;                   /* [N, C, H, W] */
    const float *weight, *bias;       /* [C] or NULL */
    float *running_mean, *running_var; /* [C] or NULL: updated in place when use_batch_stats */
    float *y;                         /* [N, C, H, W] */
    float *mean, *invstd;             /* [C] each, in aux */
    const float *gy;                  /* [N, C, H, W] (backward) */
    float *gx;                        /* [N, C, H, W] or NULL (backward, +=) */
    float *gweight, *gbias;           /* [C] or NULL (backward, +=) */
    int gx_fresh;                     /* gx holds garbage: write it (as += into zeros) */
    float *gz;                        /* [N, C, H, W] scratch (backward, silu): d loss / d batchnorm output */
    int silu;                         /* batchnorm2d_silu: y = silu(batchnorm(x)) */
    int use_batch_stats;
    double eps, momentum;
} batchnorm2d_ctx;

static void batchnorm2d_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const batchnorm2d_ctx *c = arg;
    const int64_t plane = c->plane, stride = c->channels * plane;
    for (int64_t ch = begin; ch < end; ch++) {
        const float *x = c->x + ch * plane;
        double mean, var;
        if (c->use_batch_stats) {
            const int64_t count = c->batch * plane;
            double sum = 0.0;
            for (int64_t n = 0; n < c->batch; n++) sum += norm_sum(x + n * stride, plane);
            mean = sum / (double)count;
            double sq = 0.0;
            for (int64_t n = 0; n < c->batch; n++) sq += norm_sum_sq_dev(x + n * stride, plane, (float)mean);
            var = sq / (double)count;
            if (c->running_mean) {
                /* NOTE: PyTorch updates the running variance with the unbiased (n - 1) estimate
                 * while normalising with the biased one. */
                double unbiased = sq / (double)(count - 1);
                c->running_mean[ch] = (float)((1.0 - c->momentum) * c->running_mean[ch] + c->momentum * mean);
                c->running_var[ch] = (float)((1.0 - c->momentum) * c->running_var[ch] + c->momentum * unbiased);
            }
        } else {
            mean = c->running_mean[ch];
            var = c->running_var[ch];
        }
        float invstd = (float)(1.0 / sqrt(var + c->eps));
        c->mean[ch] = (float)mean;
        c->invstd[ch] = invstd;
        float scale = invstd * (c->weight ? c->weight[ch] : 1.0f);
        float shift = (c->bias ? c->bias[ch] : 0.0f) - (float)mean * scale;
        for (int64_t n = 0; n < c->batch; n++) {
            if (c->silu) norm_affine_silu(x + n * stride, c->y + ch * plane + n * stride, plane, scale, shift);
            else norm_affine(x + n * stride, c->y + ch * plane + n * stride, plane, scale, shift);
        }
    }
}

extern const tg_op_def tg_op_batchnorm2d_silu;

static batchnorm2d_ctx batchnorm2d_context(const tg_op_io *io)
{
    const tg_tensor *x = io->in[0];
    const tg_tensor *w = io->n_in > 1 ? io->in[1] : NULL, *b = io->n_in > 2 ? io->in[2] : NULL;
    const tg_tensor *rm = io->n_in > 3 ? io->in[3] : NULL, *rv = io->n_in > 4 ? io->in[4] : NULL;
    const batchnorm2d_attrs *a = io->attrs;
    int64_t channels = x->shape[1];
    batchnorm2d_ctx c = {
        .attrs = a, .batch = x->shape[0], .channels = channels, .plane = x->shape[2] * x->shape[3],
        .x = x->data, .weight = w ? w->data : NULL, .bias = b ? b->data : NULL,
        /* NOTE: the running statistics are inputs (const tensors in the interface) that
         * a training forward deliberately updates in place, as PyTorch does: they are the
         * layer's buffers, owned by the model, and get no gradient. */
        .running_mean = rm ? rm->data : NULL, .running_var = rv ? rv->data : NULL,
        .y = io->out->data, .mean = io->aux, .invstd = (float *)io->aux + channels,
        .use_batch_stats = io->training || !rm, .eps = a->eps, .momentum = a->momentum,
        .silu = io->def == &tg_op_batchnorm2d_silu,
    };
    return c;
}

static tg_status batchnorm2d_forward(const tg_op_io *io)
{
    batchnorm2d_ctx c = batchnorm2d_context(io);
    if (c.use_batch_stats && c.batch * c.plane < 2) {
        char buf[96];
        return tg_error(TG_STATUS_VALUE, "%s: training needs more than 1 value per channel, got x of shape %s; "
                        "use a larger batch or eval mode", io->def->name, tg_shape_str(io->in[0], buf, sizeof buf));
    }
    tg_parallel_for(c.channels, 1, batchnorm2d_forward_range, &c);
    return TG_STATUS_OK;
}

static void batchnorm2d_backward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const batchnorm2d_ctx *c = arg;
    const int64_t plane = c->plane, stride = c->channels * plane, count = c->batch * plane;
    for (int64_t ch = begin; ch < end; ch++) {
        const float *x = c->x + ch * plane, *gy = c->gy + ch * plane;
        float mean = c->mean[ch], invstd = c->invstd[ch];
        if (c->silu) {
            /* the gradient at the batchnorm output, from the forward's own scale and shift */
            float scale = invstd * (c->weight ? c->weight[ch] : 1.0f);
            float shift = (c->bias ? c->bias[ch] : 0.0f) - mean * scale;
            for (int64_t n = 0; n < c->batch; n++)
                norm_silu_grad(x + n * stride, gy + n * stride, c->gz + ch * plane + n * stride, plane, scale, shift);
            gy = c->gz + ch * plane;
        }
        double sum_gy = 0.0, sum_gy_dev = 0.0;
        for (int64_t n = 0; n < c->batch; n++) {
            float sums[2];
            norm_sum_and_dot_dev_into(gy + n * stride, x + n * stride, plane, mean, sums);
            sum_gy += sums[0];
            sum_gy_dev += sums[1];
        }
        if (c->gbias) c->gbias[ch] += (float)sum_gy;
        if (c->gweight) c->gweight[ch] += (float)(sum_gy_dev * invstd);
        if (!c->gx) continue;
        float scale = invstd * (c->weight ? c->weight[ch] : 1.0f);
        float *gx = c->gx + ch * plane;
        /* NOTE: a fresh gx is written as 0 + v, the bits of zero-then-accumulate (-0 becomes +0) */
        if (!c->use_batch_stats) {
            for (int64_t n = 0; n < c->batch; n++) {
                const float *restrict g = gy + n * stride;
                float *restrict o = gx + n * stride;
                if (c->gx_fresh) for (int64_t i = 0; i < plane; i++) o[i] = 0.0f + g[i] * scale;
                else for (int64_t i = 0; i < plane; i++) o[i] += g[i] * scale;
            }
            continue;
        }
        /* dx = scale * (gy - mean(gy) - xhat * mean(gy * xhat)), xhat = (x - mean) * invstd */
        float mean_gy = (float)(sum_gy / (double)count);
        float k = (float)(sum_gy_dev / (double)count) * invstd * invstd;
        for (int64_t n = 0; n < c->batch; n++)
            norm_input_grad(gy + n * stride, x + n * stride, gx + n * stride, plane, scale, mean_gy, mean, k,
                            c->gx_fresh);
    }
}

static tg_status batchnorm2d_backward(const tg_op_io *io)
{
    batchnorm2d_ctx c = batchnorm2d_context(io);
    c.gy = io->grad_out->data;
    c.gz = io->scratch;
    c.gx = io->grad_in[0] ? io->grad_in[0]->data : NULL;
    c.gx_fresh = (int)(io->grad_in_fresh & 1u);
    tg_zero_fresh_grads(io, 1u);
    c.gweight = io->n_in > 1 && io->grad_in[1] ? io->grad_in[1]->data : NULL;
    c.gbias = io->n_in > 2 && io->grad_in[2] ? io->grad_in[2]->data : NULL;
    tg_parallel_for(c.channels, 1, batchnorm2d_backward_range, &c);
    return TG_STATUS_OK;
}

/* BatchNormalization in inference mode (running statistics). A missing weight or bias
 * becomes a constant of ones or zeros; without running statistics eval normalises
 * with the batch's own, which ONNX's inference BatchNormalization cannot express. */
static tg_status batchnorm2d_onnx_to(tg_onnx_emitter *e, const tg_onnx_node_ctx *n, const char *output)
{
    if (n->n_in < 5 || !n->input[3] || !n->input[4])
        return tg_error(TG_STATUS_UNSUPPORTED, "batchnorm2d (layer '%s'): export needs running_mean and running_var "
                        "(eval without them uses batch statistics, which ONNX inference cannot express)", n->layer);
    const int64_t channels = n->in[0]->shape[1];
    const char *inputs[5] = {n->input[0], n->input[1], n->input[2], n->input[3], n->input[4]};
    for (int i = 1; i <= 2; i++) {
        if (inputs[i]) continue;
        float *fill = malloc(sizeof *fill * (size_t)channels);   /* [C] */
        if (!fill) return tg_error(TG_STATUS_NOMEM, "batchnorm2d (layer '%s'): out of memory for the export", n->layer);
        for (int64_t c = 0; c < channels; c++) fill[c] = i == 1 ? 1.0f : 0.0f;
        tg_status status = tg_onnx_const_f32(e, n->output, 1, &channels, fill, &inputs[i]);
        free(fill);
        TG_TRY(status);
    }
    tg_onnx_attr eps = tg_onnx_attr_float("epsilon", ((const batchnorm2d_attrs *)n->attrs)->eps);
    return tg_onnx_node(e, "BatchNormalization", inputs, 5, output, &eps, 1);
}

static tg_status batchnorm2d_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    return batchnorm2d_onnx_to(e, n, n->output);
}

const tg_op_def tg_op_batchnorm2d = {
    .name = "batchnorm2d", .input_names = batchnorm2d_inputs, .no_grad_inputs = (1u << 3) | (1u << 4),
    .attr_specs = batchnorm2d_attr_specs, .n_attrs = 2, .attrs_size = sizeof(batchnorm2d_attrs),
    .infer = batchnorm2d_infer, .forward = batchnorm2d_forward, .backward = batchnorm2d_backward,
    .onnx = batchnorm2d_onnx, .backward_skips_output = 1, .backward_writes_fresh = 1,
};

/* ---- batchnorm2d_silu: y = silu(batchnorm2d(x)), one op ----
 * EfficientNet's Conv2dNormActivation. Backward recomputes the normalised values from
 * x and the saved statistics, so the step keeps x only (batchnorm2d then silu would
 * keep both x and the batchnorm output); results equal the pair's bit for bit. */

static tg_status batchnorm2d_silu_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                        tg_op_sizes *sizes)
{
    TG_TRY(batchnorm2d_infer(in, n_in, attrs, out, sizes));
    sizes->scratch_backward = tg_align64((size_t)tg_tensor_numel(in[0]) * sizeof(float)); /* gz [N, C, H, W] */
    return TG_STATUS_OK;
}

/* BatchNormalization, then x * Sigmoid(x) (opset 17 has no SiLU). */
static tg_status batchnorm2d_silu_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    const char *normalised, *gate;
    TG_TRY(tg_onnx_temp_name(e, n->output, &normalised));
    TG_TRY(batchnorm2d_onnx_to(e, n, normalised));
    TG_TRY(tg_onnx_temp_name(e, n->output, &gate));
    TG_TRY(tg_onnx_node(e, "Sigmoid", &normalised, 1, gate, NULL, 0));
    const char *product[2] = {normalised, gate};
    return tg_onnx_node(e, "Mul", product, 2, n->output, NULL, 0);
}

const tg_op_def tg_op_batchnorm2d_silu = {
    .name = "batchnorm2d_silu", .input_names = batchnorm2d_inputs, .no_grad_inputs = (1u << 3) | (1u << 4),
    .attr_specs = batchnorm2d_attr_specs, .n_attrs = 2, .attrs_size = sizeof(batchnorm2d_attrs),
    .infer = batchnorm2d_silu_infer, .forward = batchnorm2d_forward, .backward = batchnorm2d_backward,
    .onnx = batchnorm2d_silu_onnx, .backward_skips_output = 1, .backward_writes_fresh = 1,
};

/* ---- layernorm: normalise each row over the trailing dims normalized_shape ---- */

typedef struct layernorm_attrs {
    tg_int_list normalized_shape;
    double eps;
} layernorm_attrs;

static const tg_attr_spec layernorm_attr_specs[] = {
    {"normalized_shape", TG_ATTR_KIND_INT_LIST, offsetof(layernorm_attrs, normalized_shape), 0, 1},
    {"eps", TG_ATTR_KIND_FLOAT, offsetof(layernorm_attrs, eps), 1e-5, 0},
};

static const char *const affine_norm_inputs[] = {"x", "?weight", "?bias", NULL};

/* Rows M and row length K of x for normalized_shape; fails naming the mismatch. */
static tg_status layernorm_split(const tg_tensor *x, const layernorm_attrs *a, int64_t *rows, int64_t *row_len)
{
    const tg_int_list *ns = &a->normalized_shape;
    char buf[96];
    if (ns->count < 1 || ns->count > x->ndim)
        return tg_error(TG_STATUS_SHAPE, "layernorm: normalized_shape has %d dims; it must name 1 to %d trailing dims of x %s",
                        ns->count, x->ndim, tg_shape_str(x, buf, sizeof buf));
    int64_t k = 1, m = 1;
    for (int i = 0; i < ns->count; i++) {
        int64_t dim = x->shape[x->ndim - ns->count + i];
        if (ns->values[i] != dim)
            return tg_error(TG_STATUS_SHAPE, "layernorm: normalized_shape[%d] = %lld does not match x %s (trailing dim %lld)",
                            i, (long long)ns->values[i], tg_shape_str(x, buf, sizeof buf), (long long)dim);
        k *= dim;
    }
    for (int i = 0; i < x->ndim - ns->count; i++) m *= x->shape[i];
    *rows = m;
    *row_len = k;
    return TG_STATUS_OK;
}

static tg_status layernorm_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                 tg_op_sizes *sizes)
{
    const layernorm_attrs *a = attrs;
    const tg_tensor *x = in[0];
    TG_TRY(tg_check_dtype(x, TG_DTYPE_F32, "layernorm", "x"));
    int64_t rows, row_len;
    TG_TRY(layernorm_split(x, a, &rows, &row_len));
    static const char *const names[] = {"x", "weight", "bias"};
    for (int i = 1; i < n_in; i++) {
        if (!in[i]) continue;
        TG_TRY(tg_check_dtype(in[i], TG_DTYPE_F32, "layernorm", names[i]));
        int ok = in[i]->ndim == a->normalized_shape.count;
        for (int d = 0; ok && d < in[i]->ndim; d++) ok = in[i]->shape[d] == a->normalized_shape.values[d];
        if (!ok) {
            char buf[96];
            return tg_error(TG_STATUS_SHAPE, "layernorm: %s must have the shape normalized_shape, got %s", names[i],
                            tg_shape_str(in[i], buf, sizeof buf));
        }
    }
    if (!(a->eps > 0.0)) return tg_error(TG_STATUS_VALUE, "layernorm: eps must be > 0, got %g", a->eps);
    sizes->aux_bytes = tg_align64(2 * (size_t)rows * sizeof(float));          /* mean [M], invstd [M] */
    sizes->scratch_backward = tg_align64(2 * (size_t)row_len * sizeof(float)); /* gweight, gbias sums [K] each */
    return tg_tensor_set_shape(out, TG_DTYPE_F32, x->ndim, x->shape);
}

typedef struct layernorm_ctx {
    int64_t rows, row_len;            /* M, K */
    const float *x;                   /* [M, K] */
    const float *weight, *bias;       /* [K] or NULL */
    float *y;                         /* [M, K] */
    float *mean, *invstd;             /* [M] each, in aux */
    const float *gy;                  /* [M, K] */
    float *gx;                        /* [M, K] or NULL (+=) */
    float *gweight, *gbias;           /* [K] or NULL (+=) */
    float *sum_gw, *sum_gb;           /* [K] each, scratch */
    double eps;
} layernorm_ctx;

static void layernorm_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const layernorm_ctx *c = arg;
    const int64_t k = c->row_len;
    for (int64_t m = begin; m < end; m++) {
        const float *restrict x = c->x + m * k;
        float *restrict y = c->y + m * k;
        float mean = (float)((double)norm_sum(x, k) / (double)k);
        float invstd = (float)(1.0 / sqrt((double)norm_sum_sq_dev(x, k, mean) / (double)k + c->eps));
        c->mean[m] = mean;
        c->invstd[m] = invstd;
        const float *restrict w = c->weight, *restrict b = c->bias;
        if (w && b)
            for (int64_t i = 0; i < k; i++) y[i] = (x[i] - mean) * invstd * w[i] + b[i];
        else if (w)
            for (int64_t i = 0; i < k; i++) y[i] = (x[i] - mean) * invstd * w[i];
        else if (b)
            for (int64_t i = 0; i < k; i++) y[i] = (x[i] - mean) * invstd + b[i];
        else
            for (int64_t i = 0; i < k; i++) y[i] = (x[i] - mean) * invstd;
    }
}

static int64_t norm_row_grain(int64_t row_len)
{
    int64_t grain = 8192 / (row_len > 0 ? row_len : 1);
    return grain > 0 ? grain : 1;
}

static layernorm_ctx layernorm_context(const tg_op_io *io)
{
    const layernorm_attrs *a = io->attrs;
    layernorm_ctx c = {
        .x = io->in[0]->data,
        .weight = io->n_in > 1 && io->in[1] ? io->in[1]->data : NULL,
        .bias = io->n_in > 2 && io->in[2] ? io->in[2]->data : NULL,
        .y = io->out->data, .eps = a->eps,
    };
    layernorm_split(io->in[0], a, &c.rows, &c.row_len);
    c.mean = io->aux;
    c.invstd = (float *)io->aux + c.rows;
    return c;
}

static tg_status layernorm_forward(const tg_op_io *io)
{
    layernorm_ctx c = layernorm_context(io);
    tg_parallel_for(c.rows, norm_row_grain(c.row_len), layernorm_forward_range, &c);
    return TG_STATUS_OK;
}

/* dx per row: g = gy * w; dx = invstd * (g - mean(g) - xhat * mean(g * xhat)). */
static void layernorm_backward_rows(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const layernorm_ctx *c = arg;
    const int64_t k = c->row_len;
    const float *restrict w = c->weight;
    for (int64_t m = begin; m < end; m++) {
        const float *restrict x = c->x + m * k, *restrict gy = c->gy + m * k;
        float *restrict gx = c->gx + m * k;
        float mean = c->mean[m], invstd = c->invstd[m];
        float acc_g[TG_NORM_LANES] = {0}, acc_gx[TG_NORM_LANES] = {0};
        int64_t i = 0;
        for (; i + TG_NORM_LANES <= k; i += TG_NORM_LANES)
            for (int j = 0; j < TG_NORM_LANES; j++) {
                float g = gy[i + j] * (w ? w[i + j] : 1.0f);
                acc_g[j] += g;
                acc_gx[j] += g * (x[i + j] - mean);
            }
        for (int s = TG_NORM_LANES / 2; s >= 1; s /= 2)
            for (int j = 0; j < s; j++) {
                acc_g[j] += acc_g[j + s];
                acc_gx[j] += acc_gx[j + s];
            }
        float tail_g = 0.0f, tail_gx = 0.0f;
        for (; i < k; i++) {
            float g = gy[i] * (w ? w[i] : 1.0f);
            tail_g += g;
            tail_gx += g * (x[i] - mean);
        }
        float mean_g = (acc_g[0] + tail_g) / (float)k;
        float coef = (acc_gx[0] + tail_gx) / (float)k * invstd * invstd;
        for (int64_t t = 0; t < k; t++) {
            float g = gy[t] * (w ? w[t] : 1.0f);
            gx[t] += invstd * (g - mean_g - (x[t] - mean) * coef);
        }
    }
}

/* gweight[k] += sum_m gy * xhat, gbias[k] += sum_m gy; each column block sums rows in order. */
static void layernorm_backward_columns(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const layernorm_ctx *c = arg;
    const int64_t k = c->row_len;
    float *restrict sw = c->sum_gw, *restrict sb = c->sum_gb;
    for (int64_t i = begin; i < end; i++) sw[i] = sb[i] = 0.0f;
    for (int64_t m = 0; m < c->rows; m++) {
        const float *restrict x = c->x + m * k, *restrict gy = c->gy + m * k;
        float mean = c->mean[m], invstd = c->invstd[m];
        for (int64_t i = begin; i < end; i++) {
            sw[i] += gy[i] * (x[i] - mean) * invstd;
            sb[i] += gy[i];
        }
    }
    for (int64_t i = begin; i < end; i++) {
        if (c->gweight) c->gweight[i] += sw[i];
        if (c->gbias) c->gbias[i] += sb[i];
    }
}

static tg_status layernorm_backward(const tg_op_io *io)
{
    layernorm_ctx c = layernorm_context(io);
    c.gy = io->grad_out->data;
    c.gx = io->grad_in[0] ? io->grad_in[0]->data : NULL;
    c.gweight = io->n_in > 1 && io->grad_in[1] ? io->grad_in[1]->data : NULL;
    c.gbias = io->n_in > 2 && io->grad_in[2] ? io->grad_in[2]->data : NULL;
    c.sum_gw = io->scratch;
    c.sum_gb = (float *)io->scratch + c.row_len;
    if (c.gx) tg_parallel_for(c.rows, norm_row_grain(c.row_len), layernorm_backward_rows, &c);
    if (c.gweight || c.gbias) tg_parallel_for(c.row_len, 256, layernorm_backward_columns, &c);
    return TG_STATUS_OK;
}

const tg_op_def tg_op_layernorm = {
    .name = "layernorm", .input_names = affine_norm_inputs,
    .attr_specs = layernorm_attr_specs, .n_attrs = 2, .attrs_size = sizeof(layernorm_attrs),
    .infer = layernorm_infer, .forward = layernorm_forward, .backward = layernorm_backward,
};

/* ---- groupnorm: x [N, C, *], statistics per (sample, group of C / num_groups channels) ---- */

typedef struct groupnorm_attrs {
    int64_t num_groups;
    double eps;
} groupnorm_attrs;

static const tg_attr_spec groupnorm_attr_specs[] = {
    {"num_groups", TG_ATTR_KIND_INT, offsetof(groupnorm_attrs, num_groups), 0, 1},
    {"eps", TG_ATTR_KIND_FLOAT, offsetof(groupnorm_attrs, eps), 1e-5, 0},
};

static tg_status groupnorm_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                 tg_op_sizes *sizes)
{
    const groupnorm_attrs *a = attrs;
    const tg_tensor *x = in[0];
    char buf[96];
    TG_TRY(tg_check_dtype(x, TG_DTYPE_F32, "groupnorm", "x"));
    if (x->ndim < 2)
        return tg_error(TG_STATUS_SHAPE, "groupnorm: x must be [N, C, *] with at least 2 dims, got %s",
                        tg_shape_str(x, buf, sizeof buf));
    int64_t channels = x->shape[1];
    if (a->num_groups < 1 || channels % a->num_groups != 0)
        return tg_error(TG_STATUS_VALUE, "groupnorm: num_groups = %lld must be >= 1 and divide the %lld channels of x %s",
                        (long long)a->num_groups, (long long)channels, tg_shape_str(x, buf, sizeof buf));
    static const char *const names[] = {"x", "weight", "bias"};
    for (int i = 1; i < n_in; i++) TG_TRY(norm_check_param(in[i], channels, "groupnorm", names[i]));
    if (!(a->eps > 0.0)) return tg_error(TG_STATUS_VALUE, "groupnorm: eps must be > 0, got %g", a->eps);
    sizes->aux_bytes = tg_align64(2 * (size_t)(x->shape[0] * a->num_groups) * sizeof(float)); /* mean, invstd [N*G] */
    return tg_tensor_set_shape(out, TG_DTYPE_F32, x->ndim, x->shape);
}

typedef struct groupnorm_ctx {
    int64_t batch, channels, groups, spatial;  /* N, C, G, S = prod(dims after C) */
    const float *x;                   /* [N, C, S] */
    const float *weight, *bias;       /* [C] or NULL */
    float *y;                         /* [N, C, S] */
    float *mean, *invstd;             /* [N, G] each, in aux */
    const float *gy;                  /* [N, C, S] */
    float *gx;                        /* [N, C, S] or NULL (+=) */
    float *gweight, *gbias;           /* [C] or NULL (+=) */
    double eps;
} groupnorm_ctx;

static groupnorm_ctx groupnorm_context(const tg_op_io *io)
{
    const groupnorm_attrs *a = io->attrs;
    const tg_tensor *x = io->in[0];
    groupnorm_ctx c = {
        .batch = x->shape[0], .channels = x->shape[1], .groups = a->num_groups, .spatial = 1,
        .x = x->data, .weight = io->n_in > 1 && io->in[1] ? io->in[1]->data : NULL,
        .bias = io->n_in > 2 && io->in[2] ? io->in[2]->data : NULL, .y = io->out->data, .eps = a->eps,
    };
    for (int d = 2; d < x->ndim; d++) c.spatial *= x->shape[d];
    c.mean = io->aux;
    c.invstd = (float *)io->aux + c.batch * c.groups;
    return c;
}

static void groupnorm_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const groupnorm_ctx *c = arg;
    const int64_t per_group = c->channels / c->groups, len = per_group * c->spatial;
    for (int64_t ng = begin; ng < end; ng++) {
        const float *x = c->x + ng * len;   /* a group's channels are contiguous */
        double sum = 0.0;
        for (int64_t ch = 0; ch < per_group; ch++) sum += norm_sum(x + ch * c->spatial, c->spatial);
        float mean = (float)(sum / (double)len);
        double sq = 0.0;
        for (int64_t ch = 0; ch < per_group; ch++) sq += norm_sum_sq_dev(x + ch * c->spatial, c->spatial, mean);
        float invstd = (float)(1.0 / sqrt(sq / (double)len + c->eps));
        c->mean[ng] = mean;
        c->invstd[ng] = invstd;
        int64_t first = (ng % c->groups) * per_group;
        for (int64_t ch = 0; ch < per_group; ch++) {
            float scale = invstd * (c->weight ? c->weight[first + ch] : 1.0f);
            float shift = (c->bias ? c->bias[first + ch] : 0.0f) - mean * scale;
            norm_affine(x + ch * c->spatial, c->y + ng * len + ch * c->spatial, c->spatial, scale, shift);
        }
    }
}

static tg_status groupnorm_forward(const tg_op_io *io)
{
    groupnorm_ctx c = groupnorm_context(io);
    int64_t len = c.channels / c.groups * c.spatial;
    tg_parallel_for(c.batch * c.groups, norm_row_grain(len), groupnorm_forward_range, &c);
    return TG_STATUS_OK;
}

/* dx per group: g = gy * w[c]; dx = invstd * (g - mean(g) - xhat * mean(g * xhat)). */
static void groupnorm_backward_groups(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const groupnorm_ctx *c = arg;
    const int64_t per_group = c->channels / c->groups, s = c->spatial, len = per_group * s;
    for (int64_t ng = begin; ng < end; ng++) {
        const float *x = c->x + ng * len, *gy = c->gy + ng * len;
        float *gx = c->gx + ng * len;
        float mean = c->mean[ng], invstd = c->invstd[ng];
        int64_t first = (ng % c->groups) * per_group;
        double sum_g = 0.0, sum_gdev = 0.0;
        for (int64_t ch = 0; ch < per_group; ch++) {
            float w = c->weight ? c->weight[first + ch] : 1.0f;
            sum_g += (double)w * norm_sum(gy + ch * s, s);
            sum_gdev += (double)w * norm_dot_dev(gy + ch * s, x + ch * s, s, mean);
        }
        float mean_g = (float)(sum_g / (double)len);
        float coef = (float)(sum_gdev / (double)len) * invstd * invstd;
        for (int64_t ch = 0; ch < per_group; ch++) {
            float w = c->weight ? c->weight[first + ch] : 1.0f;
            const float *restrict xv = x + ch * s, *restrict g = gy + ch * s;
            float *restrict o = gx + ch * s;
            for (int64_t i = 0; i < s; i++) o[i] += invstd * (g[i] * w - mean_g - (xv[i] - mean) * coef);
        }
    }
}

/* gweight[c] += sum over n, s of gy * xhat; gbias[c] += sum of gy; one channel per item. */
static void groupnorm_backward_channels(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const groupnorm_ctx *c = arg;
    const int64_t per_group = c->channels / c->groups, s = c->spatial;
    for (int64_t ch = begin; ch < end; ch++) {
        double sum_gy = 0.0, sum_gy_xhat = 0.0;
        for (int64_t n = 0; n < c->batch; n++) {
            int64_t ng = n * c->groups + ch / per_group;
            const float *x = c->x + (n * c->channels + ch) * s, *gy = c->gy + (n * c->channels + ch) * s;
            sum_gy += norm_sum(gy, s);
            sum_gy_xhat += (double)norm_dot_dev(gy, x, s, c->mean[ng]) * c->invstd[ng];
        }
        if (c->gweight) c->gweight[ch] += (float)sum_gy_xhat;
        if (c->gbias) c->gbias[ch] += (float)sum_gy;
    }
}

static tg_status groupnorm_backward(const tg_op_io *io)
{
    groupnorm_ctx c = groupnorm_context(io);
    c.gy = io->grad_out->data;
    c.gx = io->grad_in[0] ? io->grad_in[0]->data : NULL;
    c.gweight = io->n_in > 1 && io->grad_in[1] ? io->grad_in[1]->data : NULL;
    c.gbias = io->n_in > 2 && io->grad_in[2] ? io->grad_in[2]->data : NULL;
    int64_t len = c.channels / c.groups * c.spatial;
    if (c.gx) tg_parallel_for(c.batch * c.groups, norm_row_grain(len), groupnorm_backward_groups, &c);
    if (c.gweight || c.gbias) tg_parallel_for(c.channels, norm_row_grain(c.batch * c.spatial), groupnorm_backward_channels, &c);
    return TG_STATUS_OK;
}

const tg_op_def tg_op_groupnorm = {
    .name = "groupnorm", .input_names = affine_norm_inputs,
    .attr_specs = groupnorm_attr_specs, .n_attrs = 2, .attrs_size = sizeof(groupnorm_attrs),
    .infer = groupnorm_infer, .forward = groupnorm_forward, .backward = groupnorm_backward,
};
