/* optim.c: SGD, Adam and AdamW updates, gradient norm and clipping. */
#include "optim.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/threads.h"

#define TG_OPTIM_GRAIN 16384
#define TG_NORM_BLOCK 4096

void tg_optim_config_default(tg_optim_config *config, tg_optim_kind kind)
{
    memset(config, 0, sizeof *config);
    config->kind = kind;
    config->beta1 = 0.9;
    config->beta2 = 0.999;
    config->eps = 1e-8;
    config->weight_decay = kind == TG_OPTIM_KIND_ADAMW ? 0.01 : 0.0;
}

static tg_status check_config(const tg_optim_config *c)
{
    if (c->momentum < 0 || c->weight_decay < 0 || c->eps < 0 || c->dampening < 0)
        return tg_error(TG_STATUS_VALUE, "optimizer: momentum, dampening, weight_decay and eps must be >= 0 "
                        "(got %g, %g, %g, %g)", c->momentum, c->dampening, c->weight_decay, c->eps);
    if (c->beta1 < 0 || c->beta1 >= 1 || c->beta2 < 0 || c->beta2 >= 1)
        return tg_error(TG_STATUS_VALUE, "optimizer: betas must be in [0, 1), got (%g, %g)", c->beta1, c->beta2);
    if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
        return tg_error(TG_STATUS_VALUE, "optimizer: nesterov needs momentum > 0 and dampening 0");
    return TG_STATUS_OK;
}

tg_status tg_optimizer_init(tg_optimizer *opt, const tg_optim_config *config, tg_graph *graph)
{
    memset(opt, 0, sizeof *opt);
    TG_TRY(check_config(config));
    opt->config = *config;
    int count = 0;
    size_t floats = 0;
    int moments = config->kind == TG_OPTIM_KIND_SGD ? (config->momentum > 0) : 2;
    for (int i = 0; i < graph->n_nodes; i++) {
        tg_node *node = &graph->nodes[i];
        if (node->kind != TG_NODE_KIND_PARAM || !node->requires_grad) continue;
        count++;
        floats += (size_t)tg_tensor_numel(&node->value) * (size_t)moments;
    }
    opt->slots = calloc((size_t)(count ? count : 1), sizeof *opt->slots);
    opt->state = floats ? tg_aligned_alloc(floats * sizeof(float)) : NULL;
    if (!opt->slots || (floats && !opt->state)) {
        tg_optimizer_free(opt);
        return tg_error(TG_STATUS_NOMEM, "optimizer: out of memory for %zu floats of state", floats);
    }
    if (floats) memset(opt->state, 0, floats * sizeof(float));
    opt->graph = graph;
    opt->nodes_at_init = graph->nodes;
    opt->state_floats = floats;
    float *cursor = opt->state;
    for (int i = 0; i < graph->n_nodes; i++) {
        tg_node *node = &graph->nodes[i];
        if (node->kind != TG_NODE_KIND_PARAM || !node->requires_grad) continue;
        tg_optim_slot *slot = &opt->slots[opt->n_slots++];
        int64_t n = tg_tensor_numel(&node->value);
        slot->param = &node->value;
        slot->grad = &node->grad;
        slot->name = node->name;
        slot->lr_scale = 1.0;
        slot->weight_decay = (node->value.ndim <= 1 && !config->decay_norm_and_bias) ? 0.0 : config->weight_decay;
        if (moments >= 1) { slot->m = cursor; cursor += n; }
        if (moments >= 2) { slot->v = cursor; cursor += n; }
    }
    return TG_STATUS_OK;
}

void tg_optimizer_free(tg_optimizer *opt)
{
    free(opt->slots);
    tg_aligned_free(opt->state);
    memset(opt, 0, sizeof *opt);
}

tg_status tg_optimizer_set_lr_scale(tg_optimizer *opt, const char *pattern, double scale, int *matched)
{
    if (scale < 0) return tg_error(TG_STATUS_VALUE, "optimizer: lr scale for '%s' must be >= 0, got %g", pattern, scale);
    int count = 0;
    for (int i = 0; i < opt->n_slots; i++)
        if (fnmatch(pattern, opt->slots[i].name, 0) == 0) {
            opt->slots[i].lr_scale = scale;
            count++;
        }
    if (matched) *matched = count;
    return TG_STATUS_OK;
}

typedef struct update_ctx {
    const tg_optim_slot *slot;
    const tg_optim_config *config;
    float lr;
    float bias1, bias2_sqrt;   /* Adam bias corrections */
    int first_momentum;        /* SGD: first step copies the gradient into the buffer */
} update_ctx;

static void sgd_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    const update_ctx *c = arg;
    float *restrict p = c->slot->param->data;
    const float *restrict g = c->slot->grad->data;
    float *restrict buf = c->slot->m;
    const float wd = (float)c->slot->weight_decay, mu = (float)c->config->momentum;
    const float damp = 1.0f - (float)c->config->dampening, lr = c->lr;
    for (int64_t i = begin; i < end; i++) {
        float d = g[i] + wd * p[i];
        if (buf) {
            buf[i] = c->first_momentum ? d : mu * buf[i] + damp * d;
            d = c->config->nesterov ? d + mu * buf[i] : buf[i];
        }
        p[i] -= lr * d;
    }
}

static void adam_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    const update_ctx *c = arg;
    float *restrict p = c->slot->param->data;
    const float *restrict g = c->slot->grad->data;
    float *restrict m = c->slot->m, *restrict v = c->slot->v;
    const float b1 = (float)c->config->beta1, b2 = (float)c->config->beta2, eps = (float)c->config->eps;
    const float wd = (float)c->slot->weight_decay, lr = c->lr;
    const int decoupled = c->config->kind == TG_OPTIM_KIND_ADAMW;
    const float step_size = lr / c->bias1;
    for (int64_t i = begin; i < end; i++) {
        float grad = g[i];
        if (decoupled) p[i] *= 1.0f - lr * wd;
        else grad += wd * p[i];
        m[i] = b1 * m[i] + (1.0f - b1) * grad;
        v[i] = b2 * v[i] + (1.0f - b2) * grad * grad;
        float denom = sqrtf(v[i]) / c->bias2_sqrt + eps;
        p[i] -= step_size * m[i] / denom;
    }
}

tg_status tg_optimizer_step(tg_optimizer *opt, double lr)
{
    if (!(lr >= 0)) return tg_error(TG_STATUS_VALUE, "optimizer: learning rate must be >= 0, got %g", lr);
    if (opt->graph && opt->graph->nodes != opt->nodes_at_init)
        return tg_error(TG_STATUS_VALUE, "optimizer: the graph changed since the optimizer was made; make a new one");
    opt->step++;
    double bias1 = 1.0 - pow(opt->config.beta1, (double)opt->step);
    double bias2 = 1.0 - pow(opt->config.beta2, (double)opt->step);
    for (int i = 0; i < opt->n_slots; i++) {
        update_ctx c = {
            .slot = &opt->slots[i], .config = &opt->config, .lr = (float)(lr * opt->slots[i].lr_scale),
            .bias1 = (float)bias1, .bias2_sqrt = (float)sqrt(bias2), .first_momentum = !opt->momentum_started,
        };
        tg_range_fn fn = opt->config.kind == TG_OPTIM_KIND_SGD ? sgd_range : adam_range;
        tg_parallel_for(tg_tensor_numel(opt->slots[i].param), TG_OPTIM_GRAIN, fn, &c);
    }
    opt->momentum_started = 1;
    return TG_STATUS_OK;
}

typedef struct norm_ctx {
    const float *g;    /* [n] */
    int64_t n;
    double *partial;   /* [blocks] */
} norm_ctx;

static void norm_blocks(void *arg, int64_t begin, int64_t end, int thread_index)
{
    const norm_ctx *c = arg;
    for (int64_t b = begin; b < end; b++) {
        int64_t lo = b * TG_NORM_BLOCK, hi = lo + TG_NORM_BLOCK < c->n ? lo + TG_NORM_BLOCK : c->n;
        double sum = 0.0;
        for (int64_t i = lo; i < hi; i++) sum += (double)c->g[i] * c->g[i];
        c->partial[b] = sum;
    }
}

static void scale_range(void *arg, int64_t begin, int64_t end, int thread_index)
{
    const float *scale = ((void **)arg)[1];
    float *g = ((void **)arg)[0];
    for (int64_t i = begin; i < end; i++) g[i] *= *scale;
}

double tg_clip_grad_norm(tg_optimizer *opt, double max_norm)
{
    double total = 0.0;
    for (int i = 0; i < opt->n_slots; i++) {
        const tg_tensor *g = opt->slots[i].grad;
        int64_t n = tg_tensor_numel(g), blocks = (n + TG_NORM_BLOCK - 1) / TG_NORM_BLOCK;
        /* NOTE: block partials summed in block order keep the norm independent of the
         * thread count; they are taken 256 blocks at a time on the stack (no allocation). */
        double partial[256];
        for (int64_t start = 0; start < blocks; start += 256) {
            int64_t count = blocks - start < 256 ? blocks - start : 256;
            norm_ctx c = {.g = (const float *)g->data + start * TG_NORM_BLOCK,
                          .n = n - start * TG_NORM_BLOCK, .partial = partial};
            tg_parallel_for(count, 4, norm_blocks, &c);
            for (int64_t b = 0; b < count; b++) total += partial[b];
        }
    }
    double norm = sqrt(total);
    if (max_norm > 0 && norm > max_norm) {
        tg_optimizer_scale_grads(opt, max_norm / (norm + 1e-6));
    }
    return norm;
}

void tg_optimizer_scale_grads(tg_optimizer *opt, double factor)
{
    float scale = (float)factor;
    for (int i = 0; i < opt->n_slots; i++) {
        void *ctx[2] = {opt->slots[i].grad->data, &scale};
        tg_parallel_for(tg_tensor_numel(opt->slots[i].grad), TG_OPTIM_GRAIN, scale_range, ctx);
    }
}

void tg_clip_grad_value(tg_optimizer *opt, double value)
{
    float v = (float)value;
    for (int i = 0; i < opt->n_slots; i++) {
        float *g = opt->slots[i].grad->data;
        for (int64_t k = 0; k < tg_tensor_numel(opt->slots[i].grad); k++) g[k] = g[k] > v ? v : (g[k] < -v ? -v : g[k]);
    }
}

const char *tg_optimizer_first_nonfinite_grad(const tg_optimizer *opt)
{
    for (int i = 0; i < opt->n_slots; i++) {
        const float *g = opt->slots[i].grad->data;
        for (int64_t k = 0; k < tg_tensor_numel(opt->slots[i].grad); k++)
            if (!isfinite(g[k])) return opt->slots[i].name;
    }
    return NULL;
}
