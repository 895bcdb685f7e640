/* stochastic_depth.c: per-sample stochastic depth (torchvision.ops.stochastic_depth,
 * mode "row"): in training each sample n of x [N, ...] is kept with probability
 * 1 - p and scaled by 1 / (1 - p), or zeroed whole; in eval it is the identity.
 * The residual branch of an EfficientNet block goes through it.
 * Not here: mode "batch" (one draw for the whole batch).
 *
 * NOTE: the draw of sample n is a hash of (seed, n), so it is the same whatever the
 * thread count; the per-sample scales are kept in aux ([N] floats) for backward. */
#include <stddef.h>
#include <string.h>

#include "../export/onnx.h"
#include "op.h"

#define STOCHASTIC_DEPTH_GRAIN 16384

typedef struct stochastic_depth_attrs {
    double p;   /* probability of zeroing a sample, in [0, 1] */
} stochastic_depth_attrs;

static const tg_attr_spec stochastic_depth_attr_specs[] = {
    {"p", TG_ATTR_KIND_FLOAT, offsetof(stochastic_depth_attrs, p), 0.2, 0},
};

static const char *const stochastic_depth_inputs[] = {"x", NULL};

static tg_status stochastic_depth_infer(const tg_tensor *const *in, int n_in, const void *attrs, tg_tensor *out,
                                        tg_op_sizes *sizes)
{
    (void)n_in;
    const stochastic_depth_attrs *a = attrs;
    TG_TRY(tg_check_dtype(in[0], TG_DTYPE_F32, "stochastic_depth", "x"));
    if (in[0]->ndim < 1)
        return tg_error(TG_STATUS_SHAPE, "stochastic_depth: x needs a batch dim [N, ...], got a 0-d tensor");
    if (!(a->p >= 0.0 && a->p <= 1.0))
        return tg_error(TG_STATUS_VALUE, "stochastic_depth: p must be in [0, 1], got %g", a->p);
    sizes->aux_bytes = (size_t)in[0]->shape[0] * sizeof(float); /* [N] per-sample scales */
    return tg_tensor_set_shape(out, TG_DTYPE_F32, in[0]->ndim, in[0]->shape);
}

static uint64_t stochastic_depth_hash(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

typedef struct stochastic_depth_ctx {
    const float *x;        /* [N, per_sample] (forward) */
    const float *gy;       /* [N, per_sample] (backward) */
    float *out;            /* [N, per_sample]: y (forward, =; may be x: in place) or gx (backward, +=) */
    const float *scale;    /* [N]; NULL: the identity (eval) */
    int64_t per_sample;
    int fresh;             /* backward: gx holds garbage; write it (as += into zeros) */
} stochastic_depth_ctx;

static void stochastic_depth_forward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const stochastic_depth_ctx *c = arg;
    if (!c->scale) {
        if (c->out != c->x) memcpy(c->out + begin, c->x + begin, (size_t)(end - begin) * sizeof(float));
        return;
    }
    for (int64_t i = begin; i < end;) {
        int64_t n = i / c->per_sample, stop = (n + 1) * c->per_sample < end ? (n + 1) * c->per_sample : end;
        const float s = c->scale[n];
        const float *x = c->x;   /* NOTE: not restrict: in place, y is x */
        float *y = c->out;
        for (int64_t j = i; j < stop; j++) y[j] = x[j] * s;
        i = stop;
    }
}

static tg_status stochastic_depth_forward(const tg_op_io *io)
{
    const stochastic_depth_attrs *a = io->attrs;
    const tg_tensor *x = io->in[0];
    int64_t batch = x->shape[0], numel = tg_tensor_numel(x);
    float *scale = io->aux; /* [N] */
    int drop = io->training && a->p > 0.0;
    if (drop) {
        float keep_scale = a->p >= 1.0 ? 0.0f : (float)(1.0 / (1.0 - a->p));
        for (int64_t n = 0; n < batch; n++) {
            double u = (double)(stochastic_depth_hash(io->seed ^ stochastic_depth_hash((uint64_t)n)) >> 11) * 0x1.0p-53;
            scale[n] = u >= a->p ? keep_scale : 0.0f;
        }
    }
    stochastic_depth_ctx c = {
        .x = x->data, .out = io->out->data, .scale = drop ? scale : NULL,
        .per_sample = batch ? numel / batch : 1,
    };
    if (numel) tg_parallel_for(numel, STOCHASTIC_DEPTH_GRAIN, stochastic_depth_forward_range, &c);
    return TG_STATUS_OK;
}

static void stochastic_depth_backward_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    (void)thread_index;
    const stochastic_depth_ctx *c = arg;
    for (int64_t i = begin; i < end;) {
        int64_t n = i / c->per_sample, stop = (n + 1) * c->per_sample < end ? (n + 1) * c->per_sample : end;
        const float s = c->scale ? c->scale[n] : 1.0f;
        const float *restrict gy = c->gy;
        float *restrict gx = c->out;
        if (c->fresh) for (int64_t j = i; j < stop; j++) gx[j] = 0.0f + gy[j] * s;
        else for (int64_t j = i; j < stop; j++) gx[j] += gy[j] * s;
        i = stop;
    }
}

static tg_status stochastic_depth_backward(const tg_op_io *io)
{
    if (!io->grad_in[0]) return TG_STATUS_OK;
    const stochastic_depth_attrs *a = io->attrs;
    const tg_tensor *x = io->in[0];
    int64_t batch = x->shape[0], numel = tg_tensor_numel(x);
    stochastic_depth_ctx c = {
        .gy = io->grad_out->data, .out = io->grad_in[0]->data,
        .scale = io->training && a->p > 0.0 ? io->aux : NULL, .per_sample = batch ? numel / batch : 1,
        .fresh = (int)(io->grad_in_fresh & 1u),
    };
    if (numel) tg_parallel_for(numel, STOCHASTIC_DEPTH_GRAIN, stochastic_depth_backward_range, &c);
    return TG_STATUS_OK;
}

/* Inference: stochastic depth is the identity. */
static tg_status stochastic_depth_onnx(tg_onnx_emitter *e, const tg_onnx_node_ctx *n)
{
    return tg_onnx_unary(e, n, "Identity", NULL, 0);
}

const tg_op_def tg_op_stochastic_depth = {
    .name = "stochastic_depth", .input_names = stochastic_depth_inputs,
    .attr_specs = stochastic_depth_attr_specs, .n_attrs = 1, .attrs_size = sizeof(stochastic_depth_attrs),
    .infer = stochastic_depth_infer, .forward = stochastic_depth_forward, .backward = stochastic_depth_backward,
    .onnx = stochastic_depth_onnx, .backward_skips_inputs = 1, .backward_skips_output = 1, .forward_in_place = 1,
    .backward_writes_fresh = 1,
};
